/**
 * A hostile relay holding the mesh key: it forwards another origin's signed
 * log, then alters a value, reorders entries and replays batches. A real node
 * process must store nothing tampered (and forward nothing of it), penalise
 * the relay, and ignore replays.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { rm } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { createConnection } from 'node:net'
import { afterAll, describe, expect, it } from 'vitest'
import { encodeJson } from '../../src/store/db.js'
import type { LogEntry } from '../../src/log/entry.js'
import { Attester } from '../../src/log/signing.js'
import type { AttestedCert } from '../../src/log/signing.js'
import { VersionVector } from '../../src/log/vector.js'
import type { FramedStream } from '../../src/network/frames.js'
import { encodeVector } from '../../src/network/sync/codec.js'

const encodeVectorFrame = (): Uint8Array => encodeVector(new VersionVector())
import { NodeProcess, tempDir, waitFor } from '../../scripts/lib/cluster.js'
import { attestedBatchFrame } from '../helpers/attested.js'
import { EITHER_SYNC_PROTOCOL, RawPeer } from '../helpers/raw-peer.js'

const KEY = 'c0ffee00c0ffee00c0ffee00c0ffee00c0ffee'

/** A relay holding the mesh key that sends frames by hand; what the victim sends it is ignored. */
class EvilRelay {
  private readonly peer: RawPeer

  /** `localAddress`: the loopback address it connects from (a ban refuses the address too). */
  constructor (localAddress?: string) {
    this.peer = new RawPeer(KEY, { localAddress })
  }

  async start (): Promise<void> {
    await this.peer.start()
  }

  get peerId (): string {
    return this.peer.peerId
  }

  async session (target: string): Promise<FramedStream> {
    return (await this.peer.session(target, { name: 'evil', protocol: EITHER_SYNC_PROTOCOL })).framed
  }

  async stop (): Promise<void> {
    await this.peer.stop()
  }
}

function batch (origin: string, from: number, to: number, entries: LogEntry[], certs: AttestedCert[]): Uint8Array {
  return attestedBatchFrame(origin, from, to, entries, certs)
}

describe('garbage and floods on the peer port', () => {
  const cleanup: Array<() => Promise<void>> = []
  afterAll(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => {})
  })

  it('leave the node healthy and syncing', async () => {
    const parent = await tempDir()
    cleanup.push(async () => await rm(parent, { recursive: true, force: true }))
    const v = await NodeProcess.create('V', KEY, { parent })
    const w = await NodeProcess.create('W', KEY, { parent })
    cleanup.push(async () => await v.kill(), async () => await w.kill())
    await v.start(['--target-peers', '0'])
    await w.start(['--target-peers', '0'])
    await w.addPeer(v.multiaddr)
    await w.addRule({ from: { platform: 'W', collection: 'in' }, to: { platform: 'V', collection: 'in' } })

    // 1. raw garbage at the TCP port, many connections (from an address of its own: failing connections
    // get their address refused)
    const [, , host, , port] = v.multiaddr.split('/')
    await Promise.all(Array.from({ length: 30 }, async (_, i) => await new Promise<void>(resolve => {
      const sock = createConnection({ host, port: Number(port), localAddress: '127.0.0.2' }, () => {
        sock.write(randomBytes(1000 + i * 100))
        setTimeout(() => { sock.destroy(); resolve() }, 200)
      })
      sock.on('error', () => resolve())
    })))

    // 2. an authenticated peer flooding control frames, then ignoring its credit, then oversized frames
    const evil = new EvilRelay()
    await evil.start()
    cleanup.push(async () => await evil.stop())
    let s = await evil.session(v.multiaddr)
    for (let i = 0; i < 20_000; i++) s.sendNow(encodeVectorFrame())
    s = await evil.session(v.multiaddr)
    const junk = Array.from({ length: 40 }, (_, i) => ({ origin: evil.peerId, seq: i + 1, hlc: { wall: Date.now(), logical: 0 }, collection: 'junk', id: `j${i}`, op: 'put' as const, value: encodeJson({ pad: 'x'.repeat(50_000) }) }))
    for (let i = 0; i < 40; i++) s.sendNow(batch(evil.peerId, i, i + 1, [junk[i]], []))
    s = await evil.session(v.multiaddr)
    const huge = new Uint8Array(5 * 1024 * 1024 + 10)
    huge[0] = 0xff; huge[1] = 0xff; huge[2] = 0xff; huge[3] = 0x7f
    s.sendNow(huge)

    // the node is healthy and still syncing
    await w.put('in', 'after-flood', { ok: true })
    await waitFor(async () => (await v.get('in', 'after-flood'))?.ok === true, 'W to V sync after the floods')
    const health = await v.request<{ ok: boolean }>('GET', '/v1/health')
    expect(health.body.ok).toBe(true)
    expect(await v.count('junk')).toBe(0)
  }, 120_000)
})

describe('hostile relay', () => {
  const cleanup: Array<() => Promise<void>> = []
  afterAll(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => {})
  })

  it('catches altered, reordered and replayed batches of another origin; stores and forwards nothing tampered', async () => {
    const parent = await tempDir()
    cleanup.push(async () => await rm(parent, { recursive: true, force: true }))
    const victim = await NodeProcess.create('V', KEY, { parent })
    const witness = await NodeProcess.create('W', KEY, { parent })
    cleanup.push(async () => await victim.kill(), async () => await witness.kill())
    // whole-log relay mechanics: A's posts travel in its whole log (with rule streams, in an encrypted stream:
    // test/integration/stream-logs.test.ts and rule-streams-attacks.test.ts alter, move, reorder and replay those)
    const wholeLogs = { env: { SYNCMESH_STREAMS: '0' } }
    await victim.start(['--target-peers', '0'], wholeLogs)
    await witness.start(['--target-peers', '0'], wholeLogs)
    await witness.addPeer(victim.multiaddr)

    // origin A exists only as a key: the relay forwards A's genuinely signed log
    const aKey = await generateKeyPair('Ed25519')
    const A = peerIdFromPrivateKey(aKey).toString()
    const signer = new Attester(aKey, A)
    let seq = 0
    const wall = Date.now() - 10_000
    const entry = (collection: string, id: string, value: object): LogEntry => {
      seq++
      return { origin: A, seq, hlc: { wall: wall + seq, logical: 0 }, collection, id, op: 'put', value: encodeJson(value) }
    }
    const run1 = [
      entry('$platforms', 'A', { name: 'A', peerId: A, addrs: [] }),
      entry('$rules', 'r-evil-test', { id: 'r-evil-test', from: { platform: 'A', collection: 'posts' }, to: { platform: 'V', collection: 'posts' }, mode: 'merge', createdAt: new Date().toISOString() })
    ]
    const cert1 = signer.run(0, 2, run1.map(e => ({ ...e }))).cert
    const run2 = Array.from({ length: 10 }, (_, i) => entry('posts', `p${i}`, { title: `post ${i}`, price: i }))
    const cert2 = signer.run(2, 12, run2.map(e => ({ ...e }))).cert

    const evil = new EvilRelay('127.0.0.4')
    await evil.start()
    cleanup.push(async () => await evil.stop())
    let s = await evil.session(victim.multiaddr)
    s.sendNow(batch(A, 0, 2, run1, [cert1]))
    await waitFor(async () => (await victim.request<unknown[]>('GET', '/v1/rules')).body.length === 1, 'the genuine registry entries to be accepted', 10_000)

    const seqOfA = async (node: NodeProcess): Promise<number> => ((await node.status()).origins as Array<{ origin: string, seq: number }>).find(o => o.origin === A)?.seq ?? 0
    const offences = async (): Promise<number> => ((await victim.status()).peers as Array<{ peerId: string, offences?: number }>).find(p => p.peerId === evil.peerId)?.offences ?? 0

    // 1. an altered value
    const altered = run2.map(e => ({ ...e }))
    altered[4] = { ...altered[4], value: encodeJson({ title: 'post 4', price: 0.01 }) }
    s.sendNow(batch(A, 2, 12, altered, [cert2]))
    await waitFor(async () => await offences() === 1, 'the victim to record the first offence')
    expect(victim.stderr).toMatch(/does not match its origin's attestation/)

    // 2. reordered entries (contents of seq 3 and 4 swapped, seqs kept in order)
    s = await evil.session(victim.multiaddr)
    const reordered = run2.map(e => ({ ...e }))
    reordered[0] = { ...run2[1], seq: run2[0].seq }
    reordered[1] = { ...run2[0], seq: run2[1].seq }
    s.sendNow(batch(A, 2, 12, reordered, [cert2]))
    await waitFor(async () => await offences() === 2, 'the victim to record the second offence')

    // 3. a forged run: entries signed by the relay's own key, claimed as A's
    s = await evil.session(victim.multiaddr)
    const forgedSigner = new Attester(await generateKeyPair('Ed25519'), A)
    s.sendNow(batch(A, 2, 12, run2, [forgedSigner.run(2, 12, run2.map(e => ({ ...e, bytes: undefined, leaf: undefined }))).cert]))
    await waitFor(async () => await offences() === 3, 'the victim to record the third offence')

    // three offences: the relay is refused
    await expect(evil.session(victim.multiaddr)).rejects.toThrow()

    // nothing tampered is stored or forwarded anywhere
    expect(await seqOfA(victim)).toBe(2)
    expect(await victim.count('posts')).toBe(0)
    await waitFor(async () => await seqOfA(witness) === 2, 'the witness to hold the genuine registry part of A')
    expect(await witness.count('posts')).toBe(0)

    // 4. an honest relay (at another address: the ban refused the evil relay's) delivers the genuine run;
    // replays of old batches change nothing
    const honest = new EvilRelay('127.0.0.3')
    await honest.start()
    cleanup.push(async () => await honest.stop())
    s = await honest.session(victim.multiaddr)
    s.sendNow(batch(A, 2, 12, run2, [cert2]))
    await waitFor(async () => await victim.count('posts') === 10, 'the genuine posts to be applied')
    const before = await victim.all('posts')
    const appliedBefore = ((await victim.status()).rules as Array<{ applied: number }>)[0].applied
    s.sendNow(batch(A, 0, 2, run1, [cert1]))
    s.sendNow(batch(A, 2, 12, run2, [cert2]))
    s.sendNow(batch(A, 0, 12, [...run1, ...run2], [cert1, cert2]))
    await new Promise(resolve => setTimeout(resolve, 500))
    expect(await victim.all('posts')).toEqual(before)
    expect(((await victim.status()).rules as Array<{ applied: number }>)[0].applied).toBe(appliedBefore)
    expect(await seqOfA(victim)).toBe(12)
    expect((await victim.get('posts', 'p4'))?.price).toBe(4)
    await waitFor(async () => await seqOfA(witness) === 12, 'the witness to receive the genuine run through the victim')
  }, 120_000)
})
