/**
 * `node dist/scripts/seal-bench.js [--seconds S] [--rounds R] [--bytes N]`: what the stream
 * encryption primitives (src/log/seal.ts) cost on one core, in one process:
 *
 *   entry encrypt          encryptEntry of an N-byte value (default 200)
 *   entry decrypt          decryptEntry of the same
 *   entry encrypt+decrypt  one of each
 *   blindId                one blinded id
 *   seal / open            one sealed 32-byte epoch key to a peer id / opened
 *   raw aes-256-gcm, raw chacha20-poly1305
 *                          one Node cipher call each (same nonce: for the
 *                          comparison only), the reason for the AEAD choice
 *
 * Each line gives the median over interleaved rounds of operations per second
 * of wall time and per second of this process's CPU time (user + system): on
 * a busy machine the second is the per-core figure. Run it with `nice -n 19`
 * beside other work.
 */
import { createCipheriv, randomBytes } from 'node:crypto'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { SealIdentity, StreamKey, blindId, decryptEntry, encryptEntry, seal } from '../src/log/seal.js'
import type { EntryContext } from '../src/log/seal.js'

function arg (name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`)
  return i === -1 ? fallback : Number(process.argv[i + 1])
}

const SECONDS = arg('seconds', 0.5)
const ROUNDS = arg('rounds', 7)
const BYTES = arg('bytes', 200)

interface Rate { wall: number, cpu: number }
const cases: Array<{ name: string, op: (i: number) => void, rates: Rate[] }> = []

function measure (name: string, op: (i: number) => void): void {
  cases.push({ name, op, rates: [] })
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

/** Rounds interleave the cases, so a burst of load elsewhere hits them all alike; the medians are printed. */
function runAll (): void {
  for (const c of cases) for (let i = 0; i < 1000; i++) c.op(i) // warm up
  for (let r = 0; r < ROUNDS; r++) for (const c of cases) c.rates.push(once(c.op))
  for (const c of cases) {
    const wall = median(c.rates.map(x => x.wall))
    const cpu = median(c.rates.map(x => x.cpu))
    console.log(`${c.name.padEnd(28)} ${Math.round(wall).toLocaleString('en').padStart(11)} /s wall ${Math.round(cpu).toLocaleString('en').padStart(11)} /s CPU`)
  }
}

function once (op: (i: number) => void): Rate {
  const cpu0 = process.cpuUsage()
  const t0 = process.hrtime.bigint()
  const until = t0 + BigInt(Math.round(SECONDS * 1e9))
  let n = 0
  let now = t0
  while (now < until) {
    for (let k = 0; k < 256; k++) op(n++)
    now = process.hrtime.bigint()
  }
  const cpu = process.cpuUsage(cpu0)
  return { wall: n / (Number(now - t0) / 1e9), cpu: n / ((cpu.user + cpu.system) / 1e6) }
}

async function main (): Promise<void> {
  const key = StreamKey.generate()
  const value = randomBytes(BYTES)
  const origin = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
  const ctx = (seq: number): EntryContext => ({ origin, stream: 'orders', epoch: 1, seq })
  const sample = Array.from({ length: 1024 }, (_, i) => encryptEntry(key, ctx(i), value))
  console.log(`${BYTES}-byte values, median of ${ROUNDS} interleaved rounds of ${SECONDS} s, node ${process.version}`)

  measure('entry encrypt', i => encryptEntry(key, ctx(i), value))
  measure('entry decrypt', i => decryptEntry(key, ctx(i & 1023), sample[i & 1023]))
  measure('entry encrypt+decrypt', i => decryptEntry(key, ctx(i), encryptEntry(key, ctx(i), value)))
  measure('blindId', i => blindId(key, 'orders', `o-${i}`))

  const recipientKey = await generateKeyPair('Ed25519')
  const recipient = peerIdFromPrivateKey(recipientKey).toString()
  const me = SealIdentity.fromPrivateKey(recipientKey)
  const sctx = { origin, stream: 'orders', epoch: 1 }
  const envelope = seal(recipient, key.bytes, sctx)
  measure('seal (to a peer id string)', () => seal(recipient, key.bytes, sctx))
  measure('open', () => me.open(envelope, sctx))

  const raw = randomBytes(32)
  const nonce = randomBytes(12)
  const aad = randomBytes(70)
  measure('raw aes-256-gcm', () => {
    const c = createCipheriv('aes-256-gcm', raw, nonce, { authTagLength: 16 })
    c.setAAD(aad)
    c.update(value)
    c.final()
    c.getAuthTag()
  })
  measure('raw chacha20-poly1305', () => {
    const c = createCipheriv('chacha20-poly1305', raw, nonce, { authTagLength: 16 })
    c.setAAD(aad, { plaintextLength: value.length })
    c.update(value)
    c.final()
    c.getAuthTag()
  })
  runAll()
}

await main()
