/**
 * A registry no clock can rewrite, against real node processes: a member
 * holding the mesh key writes signed entries of its own by hand (stamped
 * years ahead, claiming names, re-registering a revoked peer id) and relays
 * deliver them; the nodes must refuse what the clock bound and the registry
 * rules refuse, across restarts (docs/trust.md).
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { rm } from 'node:fs/promises'
import { afterAll, describe, expect, it } from 'vitest'
import type { LogEntry } from '../../src/log/entry.js'
import { Attester } from '../../src/log/signing.js'
import { encodeJson } from '../../src/store/db.js'
import { NodeProcess, tempDir, waitFor } from '../../scripts/lib/cluster.js'
import { attestedBatchFrame } from '../helpers/attested.js'
import { EITHER_SYNC_PROTOCOL, RawPeer } from '../helpers/raw-peer.js'

const KEY = 'b0a710ad0b0a710ad0b0a710ad0b0a710ad0b0'
const ALONE = ['--target-peers', '0']
const TEN_YEARS = 10 * 365 * 86_400_000

/** An identity whose key the test holds: it signs entries of its own log, sent by itself or by a relay. */
class Member {
  readonly key: PrivateKey
  readonly id: string
  readonly peer = new RawPeer(KEY)
  private readonly signer: Attester

  private constructor (key: PrivateKey) {
    this.key = key
    this.id = peerIdFromPrivateKey(key).toString()
    this.signer = new Attester(key, this.id)
  }

  static async create (): Promise<Member> {
    const m = new Member(await generateKeyPair('Ed25519'))
    await m.peer.start(m.key)
    return m
  }

  /** Entry `seq` of this member's log, stamped `ahead` ms from now. */
  entry (seq: number, collection: string, id: string, value: object | undefined, ahead = 0): LogEntry {
    const e: LogEntry = { origin: this.id, seq, hlc: { wall: Date.now() + ahead, logical: 0 }, collection, id, op: value === undefined ? 'del' : 'put' }
    if (value !== undefined) e.value = encodeJson(value)
    return e
  }

  /** A self-registration under `name`. */
  claim (seq: number, name: string, ahead = 0): LogEntry {
    return this.entry(seq, '$platforms', name, { name, peerId: this.id, addrs: [] }, ahead)
  }

  /** One signed run of consecutive entries, as a Batch frame. */
  batch (entries: LogEntry[]): Uint8Array {
    const from = entries[0].seq - 1
    const to = entries[entries.length - 1].seq
    return attestedBatchFrame(this.id, from, to, entries, [this.signer.run(from, to, entries.map(e => ({ ...e }))).cert])
  }

  /** Send the run to `target` in a new session of `via` (this member itself by default). */
  async send (target: NodeProcess, entries: LogEntry[], via: RawPeer = this.peer): Promise<void> {
    const { framed } = await via.session(target.multiaddr, { name: 'member', protocol: EITHER_SYNC_PROTOCOL })
    framed.sendNow(this.batch(entries))
  }
}

type Platform = { name: string, peerId: string, revoked?: boolean }
const platforms = async (n: NodeProcess): Promise<Platform[]> => (await n.request<Platform[]>('GET', '/v1/platforms')).body
const platform = async (n: NodeProcess, name: string): Promise<Platform | undefined> => (await platforms(n)).find(p => p.name === name)
const seqOf = async (n: NodeProcess, origin: string): Promise<number> => ((await n.status()).origins as Array<{ origin: string, seq: number }>).find(o => o.origin === origin)?.seq ?? 0
const offences = async (n: NodeProcess, peer: string): Promise<number> => ((await n.status()).peers as Array<{ peerId: string, offences?: number }>).find(p => p.peerId === peer)?.offences ?? 0
const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

describe('registry trust', () => {
  const cleanup: Array<() => Promise<void>> = []
  afterAll(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => {})
  })

  async function nodes (names: string[]): Promise<NodeProcess[]> {
    const parent = await tempDir()
    cleanup.push(async () => await rm(parent, { recursive: true, force: true }))
    const out = await Promise.all(names.map(async n => await NodeProcess.create(n, KEY, { parent })))
    for (const n of out) cleanup.push(async () => await n.kill())
    return out
  }

  async function member (): Promise<Member> {
    const m = await Member.create()
    cleanup.push(async () => await m.peer.stop())
    return m
  }

  /** Start `admin` alone to learn its peer id, then it and `others` with it as the only registry admin (`options`: of every start). */
  async function withAdmin (admin: NodeProcess, others: NodeProcess[], extra: string[] = [], options: { env?: NodeJS.ProcessEnv } = {}): Promise<string[]> {
    await admin.start(ALONE, options)
    const flags = [...ALONE, '--admin', admin.peerId, ...extra]
    await admin.stop()
    await admin.start(flags, options)
    for (const n of others) await n.start(flags, options)
    for (const n of others) await n.addPeer(admin.multiaddr)
    return flags
  }

  it('refuses entries stamped beyond the clock bound (an offence of their origin), never an honest clock within it', async () => {
    const [v] = await nodes(['V'])
    await v.start([...ALONE, '--max-clock-ahead-ms', '5000'])
    expect((await v.status()).registry.maxClockAheadMs).toBe(5000)
    const m = await member()

    // within the bound: stored, and the node's clock moves past it (its next write orders after it)
    const skewed = m.entry(1, 'notes', 'a', { n: 1 }, 3000)
    await m.send(v, [skewed])
    await waitFor(async () => await seqOf(v, m.id) === 1, 'the entry 3 s ahead to be stored')
    await v.put('mine', 'x', { n: 1 })
    const mine = (await v.request<{ version: { hlc: string } }>('GET', '/v1/collections/mine/records/x')).body
    expect(Number(mine.version.hlc.split('.')[0])).toBeGreaterThanOrEqual(skewed.hlc.wall)

    // ten years ahead, from the origin itself: refused, nothing stored, an offence
    await m.send(v, [m.entry(2, 'notes', 'b', { n: 2 }, TEN_YEARS)])
    await waitFor(async () => await offences(v, m.id) === 1, 'the origin to be counted an offence')
    expect(v.stderr).toMatch(/CLOCK_AHEAD/)
    expect(await seqOf(v, m.id)).toBe(1)
    expect(await v.get('notes', 'b')).toBeUndefined()

    // relayed a little beyond the bound (the relay's clock may be ahead of ours): not stored yet, no offence;
    // sent again once this node's clock has caught up, stored
    const o = await member()
    const relay = new RawPeer(KEY)
    await relay.start()
    cleanup.push(async () => await relay.stop())
    const early = o.entry(1, 'notes', 'c', { n: 3 }, 7000)
    await o.send(v, [early], relay)
    await sleep(1000)
    expect(await seqOf(v, o.id)).toBe(0)
    expect(await offences(v, relay.peerId)).toBe(0)
    await sleep(Math.max(0, early.hlc.wall - 5000 - Date.now()) + 500)
    await o.send(v, [early], relay)
    await waitFor(async () => await seqOf(v, o.id) === 1, 'the relayed entry to be stored once within the bound')
    // relayed years ahead: no honest relay accepts that, so the relay is the offender
    await o.send(v, [o.entry(2, 'notes', 'd', { n: 4 }, TEN_YEARS)], relay)
    await waitFor(async () => await offences(v, relay.peerId) === 1, 'the relay to be counted an offence')
    expect(await seqOf(v, o.id)).toBe(1)
    expect((await v.request<{ ok: boolean }>('GET', '/v1/health')).body.ok).toBe(true)
  }, 120_000)

  it('a revocation holds against a self-registration stamped ten years ahead, on every node', async () => {
    const [a, v] = await nodes(['A', 'V'])
    // records through whole logs: M's notes reach V from M's whole log by the admin's rule (with rule streams they travel
    // in M's encrypted stream; a revoked peer's streams take no entry: test/unit/log-id.test.ts; what a revoked node wrote
    // before stays: e2e-trust.test.ts, "a revoked node reaches no one", in both designs)
    await withAdmin(a, [v], [], { env: { SYNCMESH_STREAMS: '0' } })
    const m = await member()
    await m.send(v, [m.claim(1, 'M')])
    await waitFor(async () => (await platform(a, 'M'))?.peerId === m.id, 'M\'s registration to reach the admin')

    // M re-registers itself ten years ahead, so that no later write would win over it by last-writer-wins
    await m.send(v, [m.claim(2, 'M', TEN_YEARS)])
    await waitFor(async () => await offences(v, m.id) === 1, 'the entry stamped ten years ahead to be refused as an offence')
    expect(await seqOf(v, m.id)).toBe(1)

    // what M writes before its revocation reaches V through an admin's rule
    await a.addRule({ from: { platform: 'M', collection: 'notes' }, to: { platform: 'V', collection: 'notes' } })
    await waitFor(async () => ((await v.status()).rules as unknown[]).length === 1, 'the rule to reach V')
    await m.send(v, [m.entry(2, 'notes', 'early', { n: 1 })])
    await waitFor(async () => (await v.get('notes', 'early'))?.n === 1, 'M\'s note to be applied on V')
    await waitFor(async () => await seqOf(a, m.id) === 2, 'M\'s note to reach the admin')

    const revoked = await a.request<{ revoked?: boolean }>('POST', '/v1/platforms/M/revoke', {})
    expect(revoked.status).toBe(200)
    expect(revoked.body.revoked).toBe(true)
    await waitFor(async () => (await platform(v, 'M'))?.revoked === true, 'the revocation to hold on V')

    // M is refused, and what it writes after its revocation is stored nowhere, whoever relays it
    await expect(m.peer.session(v.multiaddr, { protocol: EITHER_SYNC_PROTOCOL })).rejects.toThrow()
    const relay = new RawPeer(KEY)
    await relay.start()
    cleanup.push(async () => await relay.stop())
    await m.send(v, [m.claim(3, 'M', 30_000), m.entry(4, 'notes', 'late', { n: 2 })], relay)
    await sleep(1500)
    expect(await v.get('notes', 'late')).toBeUndefined()
    expect(await v.get('notes', 'early')).toEqual({ n: 1 })
    expect((await platform(v, 'M'))?.revoked).toBe(true)
    expect((await platform(a, 'M'))?.revoked).toBe(true)
  }, 120_000)

  it('revokes every name of a revoked peer id, across a restart, and never registers the id again', async () => {
    const [a, v] = await nodes(['A', 'V'])
    const flags = await withAdmin(a, [v])
    const m = await member()
    // one peer id under two names: its own registration "zeta", and "alpha" bound by the admin
    await m.send(v, [m.claim(1, 'zeta')])
    await waitFor(async () => (await platform(a, 'zeta'))?.peerId === m.id, 'zeta to reach the admin')
    expect((await a.request('POST', '/v1/platforms', { name: 'alpha', peerId: m.id })).status).toBe(201)
    await waitFor(async () => (await platform(v, 'alpha'))?.peerId === m.id, 'alpha to reach V')

    expect((await a.request('POST', '/v1/platforms/zeta/revoke', {})).status).toBe(200)
    await waitFor(async () => (await platform(v, 'zeta'))?.revoked === true, 'the revocation to reach V')
    expect((await platform(v, 'alpha'))?.revoked).toBe(true)
    await expect(m.peer.session(v.multiaddr, { protocol: EITHER_SYNC_PROTOCOL })).rejects.toThrow()

    // the admin cannot register the id again, under any name: refused with a code, nothing written
    const again = await a.request<{ error: { code: string } }>('POST', '/v1/platforms', { name: 'gamma', peerId: m.id })
    expect(again.status).toBe(409)
    expect(again.body.error.code).toBe('PEER_REVOKED')
    expect(await platform(a, 'gamma')).toBeUndefined()

    // after a restart (names come back in key order: "alpha" before "zeta") the id is still refused
    await v.stop()
    await v.start(flags)
    await v.addPeer(a.multiaddr)
    expect((await platform(v, 'alpha'))?.revoked).toBe(true)
    expect((await platform(v, 'zeta'))?.revoked).toBe(true)
    await expect(m.peer.session(v.multiaddr, { protocol: EITHER_SYNC_PROTOCOL })).rejects.toThrow()
  }, 120_000)

  it('without admins, no member re-registers a revoked peer id, whatever its clock', async () => {
    const [v, w] = await nodes(['V', 'W'])
    await v.start(ALONE)
    await w.start(ALONE)
    await w.addPeer(v.multiaddr)
    const m = await member()
    const n = await member()
    await m.send(v, [m.claim(1, 'M')])
    await waitFor(async () => (await platform(w, 'M'))?.peerId === m.id, 'M to reach W')
    expect((await w.request('POST', '/v1/platforms/M/revoke', {})).status).toBe(200)
    await waitFor(async () => (await platform(v, 'M'))?.revoked === true, 'the revocation to reach V')

    // another member binds M's peer id again, under its old name and a new one, stamped later than the revocation
    await n.send(v, [
      n.entry(1, '$platforms', 'M', { name: 'M', peerId: m.id, addrs: [] }, 50_000),
      n.entry(2, '$platforms', 'M2', { name: 'M2', peerId: m.id, addrs: [] }, 50_000)
    ])
    await waitFor(async () => await seqOf(w, n.id) === 2, 'the re-registrations to reach W')
    for (const node of [v, w]) {
      expect((await platform(node, 'M'))?.revoked).toBe(true)
      expect((await platform(node, 'M2'))?.revoked).toBe(true)
    }
    await expect(m.peer.session(v.multiaddr, { protocol: EITHER_SYNC_PROTOCOL })).rejects.toThrow()
  }, 120_000)

  it('a name claimed ahead of its node belongs to whom an admin binds it, whatever the claim\'s clock', async () => {
    const [a, v] = await nodes(['A', 'V'])
    await withAdmin(a, [v])
    const m = await member()
    const realC = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()

    // a member claims the name "C" (no node holds it yet) ten years ahead: refused
    await m.send(v, [m.claim(1, 'C', TEN_YEARS)])
    await waitFor(async () => await offences(v, m.id) === 1, 'the claim ten years ahead to be an offence')
    expect(await platform(v, 'C')).toBeUndefined()

    // the same claim on time binds the free name to the member, for now
    await m.send(v, [m.claim(1, 'C')])
    await waitFor(async () => (await platform(a, 'C'))?.peerId === m.id, 'the claim to reach the admin')

    // the admin binds C to its real node, then the member claims it again stamped later than the binding
    const bound = await a.request<Platform>('POST', '/v1/platforms', { name: 'C', peerId: realC })
    expect(bound.status).toBe(201)
    expect(bound.body.peerId).toBe(realC)
    await waitFor(async () => (await platform(v, 'C'))?.peerId === realC, 'the admin\'s binding to hold on V')
    await m.send(v, [m.claim(2, 'C', 45_000)])
    await waitFor(async () => await seqOf(a, m.id) === 2, 'the later claim to reach the admin')
    for (const node of [a, v]) expect((await platform(node, 'C'))?.peerId).toBe(realC)

  }, 120_000)
})
