/**
 * The door and what a peer can make a node remember, attacked over real TCP
 * on loopback against real node processes (docs/door.md):
 *
 *  - idle sockets and Noise connections that never authenticate do not keep
 *    a key holder out (the time it takes one to get in is printed);
 *  - an address whose connections keep failing is refused whatever peer id
 *    it uses next; a malformed first auth message refuses the peer for 30 s;
 *  - identify and ping answer only connections that proved the mesh key;
 *  - throwaway identities leave no state once their refusal ends;
 *  - vectors naming 300,000 made-up origins cost the node a bounded amount.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { randomBytes } from 'node:crypto'
import { readFile, rm } from 'node:fs/promises'
import { pino } from 'pino'
import { afterAll, describe, expect, it } from 'vitest'
import { VersionVector } from '../../src/log/vector.js'
import { MeshAuth } from '../../src/network/auth/auth.js'
import { AuthMessage } from '../../src/wire/pb/auth.js'
import { AUTH_PROTOCOL } from '../../src/network/constants.js'
import { createHost } from '../../src/network/libp2p.js'
import { encodeVector } from '../../src/network/sync/codec.js'
import { NodeProcess, tempDir, waitFor } from '../../scripts/lib/cluster.js'
import { IdleSockets, NoiseFlood, loopbackAddresses } from '../../scripts/lib/door-attack.js'
import { EITHER_SYNC_PROTOCOL, RawPeer } from '../helpers/raw-peer.js'

const KEY = 'd00r'.repeat(10)
const WRONG = 'n0pe'.repeat(10)

const cleanup: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => {})
})

async function node (name: string): Promise<NodeProcess> {
  const parent = await tempDir()
  cleanup.push(async () => await rm(parent, { recursive: true, force: true }))
  const n = await NodeProcess.create(name, KEY, { parent })
  cleanup.push(async () => await n.kill())
  await n.start(['--target-peers', '0'])
  return n
}

/**
 * A libp2p host with MeshAuth (holding `key`) dials `target` from
 * `localAddress` on a new connection. Resolves to the milliseconds from the
 * dial to the mesh key proved on both sides; rejects if that did not happen
 * within `timeoutMs`.
 */
async function join (target: string, options: { key?: string, localAddress?: string, privateKey?: PrivateKey, timeoutMs?: number } = {}): Promise<number> {
  let auth: MeshAuth | undefined
  const host = await createHost({ privateKey: options.privateKey ?? await generateKeyPair('Ed25519'), listen: [], localAddress: options.localAddress ?? '127.0.0.1', isAuthenticated: (c) => auth?.isAuthenticated(c) ?? false })
  let done!: () => void
  let failed!: (err: Error) => void
  const proved = new Promise<void>((resolve, reject) => { done = resolve; failed = reject })
  proved.catch(() => {}) // awaited below unless the dial fails first
  auth = new MeshAuth(host, {
    keys: [options.key ?? KEY],
    logger: pino({ level: 'silent' }),
    onAuthenticated: () => done(),
    onRejected: (_p, reason) => failed(new Error(reason))
  })
  await auth.start()
  await host.start()
  const timeoutMs = options.timeoutMs ?? 10_000
  const t0 = performance.now()
  try {
    const timer = setTimeout(() => failed(new Error(`not in within ${timeoutMs} ms`)), timeoutMs)
    try {
      const conn = await host.dial(multiaddr(target), { signal: AbortSignal.timeout(timeoutMs) })
      conn.addEventListener('close', () => failed(new Error('the node closed the connection')))
      await proved
    } finally {
      clearTimeout(timer)
    }
    return performance.now() - t0
  } finally {
    await auth.stop().catch(() => {})
    await host.stop().catch(() => {})
  }
}

/** Keep trying to join until one attempt gets in or `budgetMs` is spent; resolves to the time from the first try. */
async function getIn (target: string, budgetMs: number): Promise<{ ms: number, tries: number }> {
  const t0 = performance.now()
  let tries = 0
  let last: unknown
  while (performance.now() - t0 < budgetMs) {
    tries++
    try {
      await join(target, { timeoutMs: 5_000 })
      return { ms: performance.now() - t0, tries }
    } catch (err) {
      last = err
    }
  }
  throw new Error(`a keyed newcomer did not get in within ${budgetMs} ms (${tries} tries; last: ${(last as Error)?.message})`)
}

async function rssMiB (pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024
}

describe('the door', () => {
  it('a keyed newcomer gets in while 1,000 idle sockets and keyless Noise connections press on the door', async () => {
    const v = await node('V')
    const w = await node('W')
    await w.addPeer(v.multiaddr)
    await w.addRule({ from: { platform: 'W', collection: 'in' }, to: { platform: 'V', collection: 'in' } })
    const quiet: number[] = []
    for (let i = 0; i < 3; i++) quiet.push(await join(v.multiaddr))

    // 1,000 sockets that never speak, 4 from each of 250 addresses, reopened when closed;
    // and 4 keyless hosts holding 8 Noise connections each that never authenticate
    const idle = new IdleSockets(v.multiaddr, loopbackAddresses('127.0.1.1', 250), 4)
    const flood = new NoiseFlood(v.multiaddr, loopbackAddresses('127.0.2.1', 4), 8)
    cleanup.push(async () => idle.stop(), async () => await flood.stop())
    idle.start()
    await flood.start()
    await new Promise(resolve => setTimeout(resolve, 3_000))

    const loaded: Array<{ ms: number, tries: number }> = []
    for (let i = 0; i < 5; i++) loaded.push(await getIn(v.multiaddr, 30_000))
    const door = (await v.status()).door
    console.log(`door: keyed newcomer connect+authenticate, idle node: ${quiet.map(ms => ms.toFixed(0)).join(', ')} ms; ` +
      `under attack (${idle.opened} idle sockets opened, ${flood.connections} keyless Noise connections): ` +
      `${loaded.map(l => `${l.ms.toFixed(0)} ms${l.tries > 1 ? ` (${l.tries} tries)` : ''}`).join(', ')}; node's door: ${JSON.stringify(door)}`)
    expect(loaded.length).toBe(5)
    expect(door.pending).toBeLessThanOrEqual(64)

    // the peer that was in before keeps syncing
    await w.put('in', 'during-attack', { ok: true })
    await waitFor(async () => (await v.get('in', 'during-attack'))?.ok === true, 'W to V sync during the attack', 30_000)
    idle.stop()
    await flood.stop()
  }, 180_000)

  it('an address whose connections keep failing is refused whatever peer id it uses next', async () => {
    const v = await node('V')
    const [bad, good] = loopbackAddresses('127.0.3.1', 2)
    // wrong-key identities, each fresh, from one address
    for (let i = 0; i < 12; i++) await expect(join(v.multiaddr, { key: WRONG, localAddress: bad, timeoutMs: 5_000 })).rejects.toThrow()
    // a fresh identity with the right key from that address is refused now; from another it gets in
    await expect(join(v.multiaddr, { localAddress: bad, timeoutMs: 5_000 })).rejects.toThrow()
    expect(await join(v.multiaddr, { localAddress: good })).toBeGreaterThan(0)
    expect((await v.status()).door.refusedAddresses).toBe(1)
    expect(v.logCount(/refusing connections from 127\.0\.3\.1/)).toBe(1)
    // failure warnings are rate-limited per address
    expect(v.logCount(/mesh-key authentication failed/)).toBeLessThanOrEqual(5)
  }, 120_000)

  it('a peer id banned for invalid data is refused with its address: a fresh identity from there is refused too', async () => {
    const v = await node('V')
    const [evilAddr, otherAddr] = loopbackAddresses('127.0.3.11', 2)
    const evil = new RawPeer(KEY, { localAddress: evilAddr })
    await evil.start()
    cleanup.push(async () => await evil.stop())
    // three offences: batches whose entries do not match their origin's certificate (the full relay attack is
    // in test/e2e/e2e-security.test.ts)
    const { attestedBatchFrame } = await import('../helpers/attested.js')
    const { Attester } = await import('../../src/log/signing.js')
    const { encodeJson } = await import('../../src/store/db.js')
    const { peerIdFromPrivateKey } = await import('@libp2p/peer-id')
    const aKey = await generateKeyPair('Ed25519')
    const A = peerIdFromPrivateKey(aKey).toString()
    const entries = [1, 2].map(seq => ({ origin: A, seq, hlc: { wall: Date.now() - 1000 + seq, logical: 0 }, collection: 'x', id: `x${seq}`, op: 'put' as const, value: encodeJson({ n: seq }) }))
    const cert = new Attester(aKey, A).run(0, 2, entries.map(e => ({ ...e }))).cert
    const altered = entries.map(e => ({ ...e, value: encodeJson({ n: 99 }) }))
    for (let i = 0; i < 3; i++) {
      const s = await evil.session(v.multiaddr, { protocol: EITHER_SYNC_PROTOCOL })
      s.framed.sendNow(attestedBatchFrame(A, 0, 2, altered, [cert]))
      // the offence line itself (the disconnect line that follows it quotes the same words)
      await waitFor(() => v.logCount(/sent invalid data .* nothing of it was stored/) >= i + 1, `offence ${i + 1}`, 20_000)
    }
    await waitFor(() => v.logCount(/refusing peer .* after \d+ offences/) >= 1, 'the ban', 20_000).catch((err: Error) => {
      throw new Error(`${err.message}; the node logged:\n${v.stderr.split('\n').filter(l => /offence|refus|invalid/.test(l)).join('\n')}`)
    })
    expect(v.logCount(/refusing peer .* after \d+ offences/)).toBe(1)
    // a fresh identity holding the key, from the banned peer's address: refused
    await expect(join(v.multiaddr, { localAddress: evilAddr, timeoutMs: 5_000 })).rejects.toThrow()
    // from elsewhere: in
    expect(await join(v.multiaddr, { localAddress: otherAddr })).toBeGreaterThan(0)
  }, 120_000)

  it('a malformed first auth message refuses the peer id for 30 s', async () => {
    const v = await node('V')
    const privateKey = await generateKeyPair('Ed25519')
    const localAddress = loopbackAddresses('127.0.3.21', 1)[0]
    // a keyless host sends a first message whose nonce is 5 bytes
    const raw = await createHost({ privateKey, listen: [], localAddress })
    await raw.start()
    const conn = await raw.dial(multiaddr(v.multiaddr))
    const stream = await conn.newStream(AUTH_PROTOCOL)
    const lp = lpStream(stream)
    await lp.write(AuthMessage.encode({ nonce: new Uint8Array(5), proof: new Uint8Array(0), error: '', ok: false }))
    await waitFor(() => conn.status !== 'open', 'the node to close the connection', 10_000)
    await raw.stop()
    await waitFor(() => v.logCount(/malformed auth hello/) === 1, 'the failure to be logged', 10_000)
    // the same peer id, now with the right key, is refused within the 30 s
    await expect(join(v.multiaddr, { privateKey, localAddress, timeoutMs: 5_000 })).rejects.toThrow()
    expect((await v.status()).door.refusedPeers).toBe(1)
  }, 60_000)

  it('identify and ping answer only connections that proved the mesh key', async () => {
    const v = await node('V')
    const keyless = await createHost({ privateKey: await generateKeyPair('Ed25519'), listen: [], localAddress: '127.0.3.31' })
    await keyless.start()
    cleanup.push(async () => await keyless.stop())
    const conn = await keyless.dial(multiaddr(v.multiaddr))
    await expect(keyless.services.identify.identify(conn, { signal: AbortSignal.timeout(5_000) })).rejects.toThrow()
    // nothing learnt by any identify run (a host that identifies on connection open stores the answer here)
    const learnt = await keyless.peerStore.get(conn.remotePeer).catch(() => undefined)
    expect(learnt?.metadata.get('AgentVersion')).toBeUndefined()
    await expect(keyless.services.ping.ping(multiaddr(v.multiaddr), { signal: AbortSignal.timeout(5_000) })).rejects.toThrow()
    // nor may it make the node log a line per sync stream it opens: one line, and the connection is closed
    const conn2 = await keyless.dial(multiaddr(v.multiaddr), { force: true })
    for (let i = 0; i < 50 && conn2.status === 'open'; i++) {
      await conn2.newStream(EITHER_SYNC_PROTOCOL, { signal: AbortSignal.timeout(2_000) }).then(s => s.abort(new Error('done'))).catch(() => {})
    }
    await waitFor(() => conn2.status !== 'open', 'the node to close the connection', 10_000)
    expect(v.logCount(/refused a sync stream/)).toBeLessThanOrEqual(2)

    // a peer that proved the key is answered
    const member = new RawPeer(KEY, { localAddress: '127.0.3.32' })
    await member.start()
    cleanup.push(async () => await member.stop())
    await member.session(v.multiaddr, { protocol: EITHER_SYNC_PROTOCOL })
    const mconn = member.host.getConnections().find(c => c.remotePeer.toString() === v.peerId)
    expect(mconn).toBeDefined()
    const id = await member.host.services.identify.identify(mconn as any, { signal: AbortSignal.timeout(5_000) })
    expect(id.agentVersion).toBeTruthy()
    expect(await member.host.services.ping.ping(multiaddr(v.multiaddr), { signal: AbortSignal.timeout(5_000) })).toBeGreaterThanOrEqual(0)
  }, 60_000)
})

describe('bounded state per peer', () => {
  it('throwaway identities leave no state once their refusal ends', async () => {
    const v = await node('V')
    const before = (await v.status()).door
    expect(before).toBeDefined()
    // 20 wrong-key identities (refused 30 s each) and 20 keyless ones that connect and leave, from 8 addresses
    const addrs = loopbackAddresses('127.0.4.1', 8)
    for (let i = 0; i < 20; i++) await expect(join(v.multiaddr, { key: WRONG, localAddress: addrs[i % 4], timeoutMs: 5_000 })).rejects.toThrow()
    for (let i = 0; i < 20; i++) {
      const h = await createHost({ privateKey: await generateKeyPair('Ed25519'), listen: [], localAddress: addrs[4 + (i % 4)] })
      await h.start()
      const c = await h.dial(multiaddr(v.multiaddr))
      // it opens a stream, so the node's peer store learns a protocol of it, then leaves
      await c.newStream(AUTH_PROTOCOL).then(s => s.abort(new Error('leaving'))).catch(() => {})
      await h.stop()
    }
    // 10 identities holding the key that come and go leave nothing either
    for (let i = 0; i < 10; i++) await join(v.multiaddr, { localAddress: addrs[i % 8] })
    const during = (await v.status()).door
    // the keyless ones broke off their auth exchange before its first message: refused 30 s as well (spec §6)
    expect(during.refusedPeers).toBe(40)
    // once the refusals have ended (30 s), nothing is kept about any of them
    await waitFor(async () => {
      const d = (await v.status()).door
      return d.refusedPeers === 0 && d.trackedPeers <= before.trackedPeers && d.peerStore <= before.peerStore
    }, 'the state of the refused identities to be freed', 60_000, 1000)
    console.log(`bounded state: before ${JSON.stringify(before)}, with 20 refused + 20 gone: ${JSON.stringify(during)}, after the refusals: ${JSON.stringify((await v.status()).door)}`)
  }, 120_000)

  it('vectors naming 300,000 made-up origins cost the node a bounded amount', async () => {
    const v = await node('V')
    const rss0 = await rssMiB(v.pid as number)
    const member = new RawPeer(KEY, { localAddress: '127.0.4.21' })
    await member.start()
    cleanup.push(async () => await member.stop())
    const s = await member.session(v.multiaddr, { protocol: EITHER_SYNC_PROTOCOL })
    const alphabet = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'
    const fake = (): string => '12D3KooW' + Array.from(randomBytes(44), b => alphabet[b % alphabet.length]).join('')
    for (let f = 0; f < 6; f++) {
      const vec = new VersionVector()
      for (let i = 0; i < 50_000; i++) vec.advance(fake(), 1 + i)
      s.framed.sendNow(encodeVector(vec))
      // paced: frames the node has not read yet are buffered up to 8 MiB, beyond which the session ends
      await new Promise(resolve => setTimeout(resolve, 1_000))
    }
    await new Promise(resolve => setTimeout(resolve, 2_000))
    const t0 = performance.now()
    const status = await v.status()
    const statusMs = performance.now() - t0
    // only the origins nobody registered that one session may track (256), plus the node's own
    expect(status.origins.length).toBeLessThanOrEqual(256 + 2)
    // stall detection reports what it tracks, at most 5 lines per peer and check plus one summary line
    await waitFor(() => v.logCount(/is stuck/) > 0, 'stall detection to report', 60_000, 1000).catch((err: Error) => {
      throw new Error(`${err.message}; node log:\n${v.stderr.split('\n').filter(l => !/"level":30/.test(l)).slice(-20).join('\n')}`)
    })
    await new Promise(resolve => setTimeout(resolve, 6_000))
    expect(v.logCount(/is stuck/)).toBeLessThanOrEqual(6 * 2)
    const rss1 = await rssMiB(v.pid as number)
    console.log(`300,000 made-up origins: /v1/status ${statusMs.toFixed(0)} ms with ${String(status.origins.length)} origins; RSS ${rss0.toFixed(0)} → ${rss1.toFixed(0)} MiB; ${v.logCount(/is stuck/)} stuck lines`)
    expect(rss1 - rss0).toBeLessThan(150)
  }, 120_000)
})
