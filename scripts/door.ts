/**
 * The door under attack: how long a fresh peer holding the mesh key takes to
 * connect to a node and prove the key, on an idle node and while an attacker
 * (another process) holds 1,000 idle sockets open to it (4 from each of 250
 * loopback addresses, reopened when closed) and keeps 32 keyless Noise
 * connections that never authenticate (8 from each of 4 addresses).
 *
 *   npm run build && node dist/scripts/door.js [--joins 10]
 *
 * Linux only (the attacker uses loopback addresses 127.0.1.1–127.0.2.4).
 */
import '../src/polyfill.js'
import { fork } from 'node:child_process'
import { rm } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { pino } from 'pino'
import { MeshAuth } from '../src/network/auth/auth.js'
import { createHost } from '../src/network/libp2p.js'
import { NodeProcess, tempDir } from './lib/cluster.js'
import { IdleSockets, NoiseFlood, loopbackAddresses } from './lib/door-attack.js'

const KEY = 'measure-the-door-'.repeat(3)

/** Milliseconds from dialling `target` to the key proved, or undefined if not within `timeoutMs`. */
async function join (target: string, timeoutMs = 10_000): Promise<number | undefined> {
  let auth: MeshAuth | undefined
  const host = await createHost({ privateKey: await generateKeyPair('Ed25519'), listen: [], localAddress: '127.0.0.1', isAuthenticated: (c) => auth?.isAuthenticated(c) ?? false })
  let done!: () => void
  const proved = new Promise<void>(resolve => { done = resolve })
  auth = new MeshAuth(host, { keys: [KEY], logger: pino({ level: 'silent' }), onAuthenticated: () => done() })
  await auth.start()
  await host.start()
  const t0 = performance.now()
  try {
    await host.dial(multiaddr(target), { signal: AbortSignal.timeout(timeoutMs) })
    const ok = await Promise.race([proved.then(() => true), new Promise<boolean>(resolve => setTimeout(() => resolve(false), timeoutMs))])
    return ok ? performance.now() - t0 : undefined
  } catch {
    return undefined
  } finally {
    await auth.stop().catch(() => {})
    await Promise.resolve(host.stop()).catch(() => {})
  }
}

function summary (label: string, ms: Array<number | undefined>): string {
  const ok = ms.filter((m): m is number => m !== undefined).sort((a, b) => a - b)
  const p = (q: number): string => ok.length === 0 ? '-' : ok[Math.min(ok.length - 1, Math.floor(q * ok.length))].toFixed(0)
  return `${label}: ${ok.length}/${ms.length} got in; p50 ${p(0.5)} ms, p90 ${p(0.9)} ms, max ${p(1)} ms (${ms.map(m => m === undefined ? 'refused' : m.toFixed(0)).join(', ')})`
}

async function attacker (target: string): Promise<void> {
  const idle = new IdleSockets(target, loopbackAddresses('127.0.1.1', 250), 4)
  const flood = new NoiseFlood(target, loopbackAddresses('127.0.2.1', 4), 8)
  idle.start()
  await flood.start()
  setInterval(() => process.send?.({ idle: idle.opened, noise: flood.connections }), 1000)
}

async function main (): Promise<void> {
  const i = process.argv.indexOf('--attacker')
  if (i !== -1) {
    await attacker(process.argv[i + 1])
    return
  }
  const j = process.argv.indexOf('--joins')
  const joins = j !== -1 ? Number(process.argv[j + 1]) : 10
  const parent = await tempDir()
  const v = await NodeProcess.create('V', KEY, { parent })
  try {
    await v.start(['--target-peers', '0'], { env: { SYNCMESH_LOG_LEVEL: 'error' } })
    const idle: Array<number | undefined> = []
    for (let n = 0; n < joins; n++) idle.push(await join(v.multiaddr))
    console.log(summary('idle node', idle))
    const child = fork(fileURLToPath(import.meta.url), ['--attacker', v.multiaddr], { stdio: 'inherit' })
    let counts = { idle: 0, noise: 0 }
    child.on('message', (m) => { counts = m as typeof counts })
    try {
      await new Promise(resolve => setTimeout(resolve, 5_000))
      const loaded: Array<number | undefined> = []
      for (let n = 0; n < joins; n++) loaded.push(await join(v.multiaddr))
      console.log(summary('under attack', loaded))
      console.log(`attacker: ${counts.idle} idle sockets opened, ${counts.noise} keyless Noise connections; node's door: ${JSON.stringify((await v.status()).door)}`)
    } finally {
      child.kill('SIGKILL')
    }
  } finally {
    await v.kill()
    await rm(parent, { recursive: true, force: true })
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
