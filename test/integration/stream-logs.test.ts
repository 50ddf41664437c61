/**
 * Stream logs (`<peer id>/<stream>`, src/log/log-id.ts) through real nodes:
 * real libp2p over TCP on 127.0.0.1, real LevelDB in temp dirs. A node
 * writes a stream log of its own through its signing path; peers receive it,
 * verify it with its peer's key, hold the same vector and entries for it,
 * and relay it on (multi-hop). A hostile peer that forges a stream's entry
 * (also under a pruned node of the genuine attestation), withholds a live
 * one or the whole last run, or moves a stream's genuine runs to another
 * stream or to the whole log, is refused with an offence and nothing of it
 * is stored. A revoked peer's stream entries, relayed, are stored nowhere.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { afterEach, describe, expect, it } from 'vitest'
import { encodeJson } from '../../src/store/db.js'
import { encodeEntry } from '../../src/log/entry.js'
import type { LogEntry } from '../../src/log/entry.js'
import { logId } from '../../src/log/log-id.js'
import { Attester, leafHash, levelWidths, merkleRoot } from '../../src/log/signing.js'
import type { AttestedCert } from '../../src/log/signing.js'
import type { ChangeLog } from '../../src/log/changelog.js'
import { VersionVector } from '../../src/log/vector.js'
import { SESSION_MAX_UNKNOWN_ORIGINS, SYNC_PROTOCOL_STREAMS } from '../../src/network/constants.js'
import { createSyncNode } from '../../src/node/node.js'
import { PLATFORMS_COLLECTION } from '../../src/store/names.js'
import type { SyncNode } from '../../src/node/node.js'
import type { LocalOp } from '../../src/node/ingest.js'
import { attestedBatchFrame } from '../helpers/attested.js'
import { RawPeer } from '../helpers/raw-peer.js'
import { countRecords, eventually, KEY, removeDir, tempDir } from '../helpers/nodes.js'

interface Running { node: SyncNode, dir: string }

/** A node with rule streams (stream logs travel only between such nodes) that dials only the peers it is given (no registry discovery): the test decides the links. */
async function start (name: string, streams = true): Promise<Running> {
  const dir = await tempDir()
  const node = await createSyncNode({ dataDir: dir, key: KEY, name, listen: ['/ip4/127.0.0.1/tcp/0'], targetConnections: 0, streams })
  await node.start()
  return { node, dir }
}

/** The node's internal entry point to its own stream logs (SyncNode.appendOwnStream). */
async function appendOwnStream (node: SyncNode, stream: string, ops: LocalOp[]): Promise<{ origin: string, seq: number }> {
  return await (node as unknown as { appendOwnStream: (s: string, o: LocalOp[]) => Promise<{ origin: string, seq: number }> }).appendOwnStream(stream, ops)
}

function changelogOf (node: SyncNode): ChangeLog {
  return (node as unknown as { changelog: ChangeLog }).changelog
}

async function seqOf (node: SyncNode, origin: string): Promise<number> {
  return (await node.status()).origins.find(o => o.origin === origin)?.seq ?? 0
}

/** The stored log as a peer is served it (version 2): entries and attestations from seq 0. */
async function served (node: SyncNode, origin: string): Promise<{ toSeq: number, entries: string[] }> {
  const read = await changelogOf(node).readAttested(origin, 0, 10_000, 1 << 24)
  return { toSeq: read?.toSeq ?? 0, entries: (read?.entries ?? []).map(b => Buffer.from(b).toString('base64')) }
}

/** The stored entries of log `origin` on `node`, as hex (what it serves from seq 0). */
async function storedHex (node: SyncNode, origin: string): Promise<string[]> {
  return ((await changelogOf(node).readAttested(origin, 0, 100, 1 << 20))?.entries ?? []).map(b => Buffer.from(b).toString('hex'))
}

function encodedHex (entries: LogEntry[]): string[] {
  return entries.map(e => Buffer.from(encodeEntry(e)).toString('hex'))
}

/** The offences `node` counts against `peer`, in all and by check. */
async function offencesOf (node: SyncNode, peer: string): Promise<{ total: number, byCheck: Record<string, number> }> {
  const p = (await node.status()).peers.find(x => x.peerId === peer)
  return { total: p?.offences ?? 0, byCheck: p?.offencesByCheck ?? {} }
}

/**
 * A stream of an origin that exists only as a key, signed with its
 * attestations: a first run of two puts, and a second one of a delete and a
 * put, both live; with the second run's leaf hashes and root, for a hostile
 * peer to prune.
 */
async function twoRunStream (): Promise<{ stream: string, run1: LogEntry[], cert1: AttestedCert, run2: LogEntry[], cert2: AttestedCert, leaves: Uint8Array[], root: Uint8Array, rootLevel: number }> {
  const aKey = await generateKeyPair('Ed25519')
  const A = peerIdFromPrivateKey(aKey).toString()
  const stream = logId(A, 'r.test.1')
  const att = new Attester(aKey, A).forLog(stream)
  const wall = Date.now() - 10_000
  const entry = (seq: number, id: string, value?: object): LogEntry => ({ origin: stream, seq, hlc: { wall: wall + seq, logical: 0 }, collection: 'posts', id, op: value === undefined ? 'del' : 'put', ...(value !== undefined ? { value: encodeJson(value) } : {}) })
  const run1 = [entry(1, 'a', { price: 1 }), entry(2, 'b', { price: 2 })]
  const run2 = [entry(3, 'a'), entry(4, 'c', { price: 3 })]
  const leaves = run2.map(e => leafHash(encodeEntry({ ...e, bytes: undefined })))
  return {
    stream,
    run1,
    cert1: att.run(0, 2, run1.map(e => ({ ...e }))).cert,
    run2,
    cert2: att.run(2, 4, run2.map(e => ({ ...e }))).cert,
    leaves,
    root: merkleRoot(2, new Map(leaves.map((l, i) => [i, l])), []) as Uint8Array,
    rootLevel: levelWidths(2).length - 1
  }
}

describe('stream logs between real nodes', () => {
  const running: Running[] = []
  const raw: RawPeer[] = []
  afterEach(async () => {
    for (const p of raw.splice(0)) await p.stop().catch(() => {})
    for (const r of running.splice(0)) {
      await r.node.stop().catch(() => {})
      await removeDir(r.dir)
    }
  })

  it('a stream log written by A reaches B and, through B, C: verified, the same vector and entries, not applied to records', async () => {
    const a = await start('A')
    const b = await start('B')
    const c = await start('C')
    running.push(a, b, c)
    await b.node.peers.add(a.node.getMultiaddrs()[0])
    await c.node.peers.add(b.node.getMultiaddrs()[0])
    const stream = logId(a.node.peerId, 'r.test.1')
    // three appends: several runs, and records written again (compaction, re-attested runs)
    await appendOwnStream(a.node, 'r.test.1', Array.from({ length: 30 }, (_, i) => ({ collection: 'posts', id: `p${i}`, op: 'put' as const, value: { n: i, title: `post ${i}` } })))
    await appendOwnStream(a.node, 'r.test.1', [{ collection: 'posts', id: 'p3', op: 'put', value: { n: 3, title: 'changed' } }, { collection: 'posts', id: 'p4', op: 'del' }])
    const last = await appendOwnStream(a.node, 'r.test.1', Array.from({ length: 5 }, (_, i) => ({ collection: 'posts', id: `q${i}`, op: 'put' as const, value: { q: i } })))
    expect(last).toEqual({ origin: stream, seq: 37 })
    expect(await seqOf(a.node, stream)).toBe(37)

    await eventually(async () => await seqOf(b.node, stream) === 37, 'B to hold A\'s stream log up to 37')
    await eventually(async () => await seqOf(c.node, stream) === 37, 'C to hold A\'s stream log up to 37, through B')
    // C has no link to A: it got the stream log through B
    expect((await c.node.peers.list()).filter(p => p.peerId === a.node.peerId && p.authenticated === true)).toEqual([])
    // the same entries and attestations everywhere (p3's and p4's first writes compacted away)
    const atA = await served(a.node, stream)
    expect(atA.toSeq).toBe(37)
    expect(atA.entries).toHaveLength(35)
    expect(await served(b.node, stream)).toEqual(atA)
    await eventually(async () => JSON.stringify(await served(c.node, stream)) === JSON.stringify(atA), 'C to hold the compacted stream log as A attests it')
    // the stream log is a log apart: A's whole log is untouched by it, and the records of no node hold its entries
    expect(await seqOf(b.node, a.node.peerId)).toBe(await seqOf(a.node, a.node.peerId))
    for (const n of [a, b, c]) expect(await countRecords(n.node, 'posts')).toBe(0)
    // status names the stream log by its platform and stream
    const atC = (await c.node.status()).origins.find(o => o.origin === stream)
    expect(atC?.platform).toBe('A/r.test.1')
    expect(atC?.lag).toBe(0)
  }, 90_000)

  it('the streams a peer names count against the session\'s budget of origins it does not know, those of a registered peer included', async () => {
    const v = await start('V')
    running.push(v)
    const peer = new RawPeer(KEY)
    raw.push(peer)
    await peer.start()
    // V's own platform is registered: a whole log of it is known, its streams not held are not
    const named: Array<[string, number]> = []
    for (let i = 0; i < 2 * SESSION_MAX_UNKNOWN_ORIGINS; i++) named.push([logId(v.node.peerId, `s.${i}`), 5], [logId(peer.peerId, `s.${i}`), 5])
    await peer.session(v.node.getMultiaddrs()[0].toString(), { vector: VersionVector.from(named), protocol: SYNC_PROTOCOL_STREAMS })
    const session = (): { theirs: VersionVector, announced: VersionVector } | undefined => (v.node as unknown as { sync: { sessions: Map<string, { theirs: VersionVector, announced: VersionVector }> } }).sync.sessions.get(peer.peerId)
    // (V's own whole log is tracked too once V sends it to the peer: only the stream logs are counted)
    const streams = (vector: VersionVector | undefined): number => [...(vector?.origins() ?? [])].filter(o => o.includes('/')).length
    await eventually(() => streams(session()?.theirs) > 0, 'V to take the peer\'s hello')
    expect(streams(session()?.theirs)).toBe(SESSION_MAX_UNKNOWN_ORIGINS)
    expect(streams(session()?.announced)).toBe(SESSION_MAX_UNKNOWN_ORIGINS)
  }, 60_000)

  it('a hostile peer\'s forged stream entry, and a stream\'s runs moved to another stream or to the whole log, are offences; nothing of them is stored', async () => {
    const v = await start('V')
    running.push(v)
    // origin A exists only as a key: the hostile peer relays A's genuinely signed stream log
    const aKey = await generateKeyPair('Ed25519')
    const A = peerIdFromPrivateKey(aKey).toString()
    const stream = logId(A, 'r.test.1')
    const att = new Attester(aKey, A).forLog(stream)
    const wall = Date.now() - 10_000
    const entry = (origin: string, seq: number, id: string, value: object): LogEntry => ({ origin, seq, hlc: { wall: wall + seq, logical: 0 }, collection: 'posts', id, op: 'put', value: encodeJson(value) })
    const run1 = [entry(stream, 1, 'a', { price: 1 }), entry(stream, 2, 'b', { price: 2 })]
    const cert1 = att.run(0, 2, run1.map(e => ({ ...e }))).cert
    const run2 = [entry(stream, 3, 'c', { price: 3 }), entry(stream, 4, 'd', { price: 4 })]
    const cert2 = att.run(2, 4, run2.map(e => ({ ...e }))).cert

    const evil = new RawPeer(KEY, { localAddress: '127.0.0.5' })
    raw.push(evil)
    await evil.start()
    const addr = v.node.getMultiaddrs()[0].toString()
    const offences = async (): Promise<{ total: number, byCheck: Record<string, number> }> => {
      const p = (await v.node.status()).peers.find(x => x.peerId === evil.peerId)
      return { total: p?.offences ?? 0, byCheck: p?.offencesByCheck ?? {} }
    }

    // the genuine first run is stored
    let s = await evil.session(addr, { protocol: SYNC_PROTOCOL_STREAMS })
    s.framed.sendNow(attestedBatchFrame(stream, 0, 2, run1, [cert1]))
    await eventually(async () => await seqOf(v.node, stream) === 2, 'V to store the genuine run of the stream log')

    // 1. a forged entry: an altered value under A's attestation
    const forged = run2.map(e => ({ ...e }))
    forged[1] = { ...forged[1], value: encodeJson({ price: 0.01 }) }
    s.framed.sendNow(attestedBatchFrame(stream, 2, 4, forged, [cert2]))
    await eventually(async () => (await offences()).total === 1, 'the forged entry to be an offence')
    expect((await offences()).byCheck).toEqual({ RUN_SIGNATURE_MISMATCH: 1 })

    // 2. the genuine run of r.test.1 presented as r.test.2's
    const other = logId(A, 'r.test.2')
    s = await evil.session(addr, { protocol: SYNC_PROTOCOL_STREAMS })
    s.framed.sendNow(attestedBatchFrame(other, 0, 2, run1.map(e => ({ ...e, origin: other })), [cert1]))
    await eventually(async () => (await offences()).total === 2, 'the run moved to another stream to be an offence')

    // 3. the same run presented as A's whole log
    s = await evil.session(addr, { protocol: SYNC_PROTOCOL_STREAMS })
    s.framed.sendNow(attestedBatchFrame(A, 0, 2, run1.map(e => ({ ...e, origin: A })), [cert1]))
    await eventually(async () => (await offences()).total === 3, 'the run moved to the whole log to be an offence')
    expect((await offences()).byCheck).toEqual({ RUN_SIGNATURE_MISMATCH: 3 })

    // nothing of them is stored: the stream log stays at its genuine run, the others hold nothing
    expect(await seqOf(v.node, stream)).toBe(2)
    expect(await seqOf(v.node, other)).toBe(0)
    expect(await seqOf(v.node, A)).toBe(0)
    const stored = (await changelogOf(v.node).readAttested(stream, 0, 100, 1 << 20))?.entries ?? []
    // exactly the genuine entries, as A encoded them (what attestedBatchFrame sends)
    expect(stored.map(b => Buffer.from(b).toString('hex'))).toEqual(run1.map(e => Buffer.from(encodeEntry(e)).toString('hex')))

    // the genuine second run, from an honest peer, is taken
    const honest = new RawPeer(KEY, { localAddress: '127.0.0.6' })
    raw.push(honest)
    await honest.start()
    s = await honest.session(addr, { protocol: SYNC_PROTOCOL_STREAMS })
    s.framed.sendNow(attestedBatchFrame(stream, 2, 4, run2, [cert2]))
    await eventually(async () => await seqOf(v.node, stream) === 4, 'V to store the genuine second run')
    expect((await v.node.status()).peers.find(x => x.peerId === honest.peerId)?.offences ?? 0).toBe(0)
  }, 90_000)

  it('a stream\'s entries forged under a pruned node of its genuine attestation, or a live one withheld behind its leaf hash, are offences; nothing of them is stored, and the genuine run is taken', async () => {
    const v = await start('V')
    running.push(v)
    const { stream, run1, cert1, run2, cert2, leaves, root, rootLevel } = await twoRunStream()
    const evil = new RawPeer(KEY, { localAddress: '127.0.0.11' })
    raw.push(evil)
    await evil.start()
    const addr = v.node.getMultiaddrs()[0].toString()
    const offences = async (): Promise<{ total: number, byCheck: Record<string, number> }> => await offencesOf(v.node, evil.peerId)
    let s = await evil.session(addr, { protocol: SYNC_PROTOCOL_STREAMS })
    s.framed.sendNow(attestedBatchFrame(stream, 0, 2, run1, [cert1]))
    await eventually(async () => await seqOf(v.node, stream) === 2, 'V to store the genuine run of the stream log')

    // 1. forged entries under the run's root, given as the genuine attestation's pruned node
    const forged = run2.map(e => ({ ...e, op: 'put' as const, value: encodeJson({ price: 0.01 }) }))
    s.framed.sendNow(attestedBatchFrame(stream, 2, 4, forged, [{ ...cert2, pruned: [{ level: rootLevel, index: 0, hash: root }] }]))
    await eventually(async () => (await offences()).total === 1, 'the forgery under a pruned root to be an offence')
    expect((await offences()).byCheck).toEqual({ RUN_INCOMPLETE: 1 })
    // 2. the delete withheld behind its leaf hash: the run's root is unchanged, but the origin attested it live
    s = await evil.session(addr, { protocol: SYNC_PROTOCOL_STREAMS })
    s.framed.sendNow(attestedBatchFrame(stream, 2, 4, [run2[1]], [{ ...cert2, pruned: [{ level: 0, index: 0, hash: leaves[0] }] }]))
    await eventually(async () => (await offences()).total === 2, 'the withheld delete to be an offence')
    expect((await offences()).byCheck).toEqual({ RUN_INCOMPLETE: 1, RUN_SIGNATURE_MISMATCH: 1 })
    expect(await seqOf(v.node, stream)).toBe(2)

    // the genuine run, from an honest peer: the delete and the put both stored
    const honest = new RawPeer(KEY, { localAddress: '127.0.0.12' })
    raw.push(honest)
    await honest.start()
    s = await honest.session(addr, { protocol: SYNC_PROTOCOL_STREAMS })
    s.framed.sendNow(attestedBatchFrame(stream, 2, 4, run2, [cert2]))
    await eventually(async () => await seqOf(v.node, stream) === 4, 'V to store the genuine second run')
    expect(await storedHex(v.node, stream)).toEqual(encodedHex([...run1, ...run2]))
  }, 60_000)

  it('a stream\'s last run withheld as a pruned root with no entries is an offence: the delete it holds cannot be skipped, and the genuine run is taken', async () => {
    const v = await start('V')
    running.push(v)
    const { stream, run1, cert1, run2, cert2, leaves, root, rootLevel } = await twoRunStream()
    const relay = new RawPeer(KEY, { localAddress: '127.0.0.13' })
    raw.push(relay)
    await relay.start()
    const addr = v.node.getMultiaddrs()[0].toString()
    let s = await relay.session(addr, { protocol: SYNC_PROTOCOL_STREAMS })
    s.framed.sendNow(attestedBatchFrame(stream, 0, 2, run1, [cert1]))
    await eventually(async () => await seqOf(v.node, stream) === 2, 'V to store the genuine first run of the stream log')

    // the whole last run claimed compacted away: no entries, its root given as the attestation's one pruned node
    s.framed.sendNow(attestedBatchFrame(stream, 2, 4, [], [{ ...cert2, pruned: [{ level: rootLevel, index: 0, hash: root }] }]))
    await eventually(async () => (await offencesOf(v.node, relay.peerId)).total === 1, 'the last run withheld as a pruned root to be an offence')
    expect((await offencesOf(v.node, relay.peerId)).byCheck).toEqual({ RUN_INCOMPLETE: 1 })
    // the same run withheld as its pruned leaves: the root is rebuilt, but the origin attested both entries live
    s = await relay.session(addr, { protocol: SYNC_PROTOCOL_STREAMS })
    s.framed.sendNow(attestedBatchFrame(stream, 2, 4, [], [{ ...cert2, pruned: leaves.map((hash, index) => ({ level: 0, index, hash })) }]))
    await eventually(async () => (await offencesOf(v.node, relay.peerId)).total === 2, 'the last run withheld as its pruned leaves to be an offence')
    expect((await offencesOf(v.node, relay.peerId)).byCheck).toEqual({ RUN_INCOMPLETE: 1, RUN_SIGNATURE_MISMATCH: 1 })
    // nothing of it stored: the stream log is not moved past the delete
    expect(await seqOf(v.node, stream)).toBe(2)
    expect(await storedHex(v.node, stream)).toEqual(encodedHex(run1))

    // the genuine run, from an honest peer: the delete and the put both stored, no offence
    const honest = new RawPeer(KEY, { localAddress: '127.0.0.14' })
    raw.push(honest)
    await honest.start()
    s = await honest.session(addr, { protocol: SYNC_PROTOCOL_STREAMS })
    s.framed.sendNow(attestedBatchFrame(stream, 2, 4, run2, [cert2]))
    await eventually(async () => await seqOf(v.node, stream) === 4, 'V to store the genuine last run')
    expect(await storedHex(v.node, stream)).toEqual(encodedHex([...run1, ...run2]))
    expect((await offencesOf(v.node, honest.peerId)).total).toBe(0)
  }, 60_000)

  it('a revoked peer\'s stream entries written after its revocation, relayed by another peer, are not stored by a node that knows of the revocation', async () => {
    const v = await start('V')
    running.push(v)
    // origin A exists only as a key: it registers itself through its whole log, which a relay brings to V
    const aKey = await generateKeyPair('Ed25519')
    const A = peerIdFromPrivateKey(aKey).toString()
    const attester = new Attester(aKey, A)
    const stream = logId(A, 'r.test.1')
    const att = attester.forLog(stream)
    const entry = (origin: string, seq: number, collection: string, id: string, value: object): LogEntry => ({ origin, seq, hlc: { wall: Date.now() - 1000, logical: 0 }, collection, id, op: 'put', value: encodeJson(value) })
    const claim = [entry(A, 1, PLATFORMS_COLLECTION, 'A', { name: 'A', peerId: A, addrs: [] })]
    const run1 = [entry(stream, 1, 'posts', 'a', { n: 1 }), entry(stream, 2, 'posts', 'b', { n: 2 })]
    const relayKey = await generateKeyPair('Ed25519')
    const relay = new RawPeer(KEY, { localAddress: '127.0.0.15' })
    raw.push(relay)
    await relay.start(relayKey)
    const addr = v.node.getMultiaddrs()[0].toString()

    // before the revocation: A's registration and the first run of its stream, relayed, are stored
    let s = await relay.session(addr, { protocol: SYNC_PROTOCOL_STREAMS })
    s.framed.sendNow(attestedBatchFrame(A, 0, 1, claim, [attester.run(0, 1, claim.map(e => ({ ...e }))).cert]))
    s.framed.sendNow(attestedBatchFrame(stream, 0, 2, run1, [att.run(0, 2, run1.map(e => ({ ...e }))).cert]))
    await eventually(() => v.node.registry.platforms().some(p => p.name === 'A' && p.peerId === A), 'A\'s registration to hold on V')
    await eventually(async () => await seqOf(v.node, stream) === 2, 'V to store the first run of A\'s stream')

    const revoked = await v.node.registry.revokePlatform?.('A')
    expect(revoked?.revoked).toBe(true)

    // written after the revocation, genuinely signed by A, relayed by a peer that may not know of it: not stored
    const run2 = [entry(stream, 3, 'posts', 'c', { n: 3 }), entry(stream, 4, 'posts', 'a', { n: 4 })]
    s = await relay.session(addr, { protocol: SYNC_PROTOCOL_STREAMS })
    s.framed.sendNow(attestedBatchFrame(stream, 2, 4, run2, [att.run(2, 4, run2.map(e => ({ ...e }))).cert]))
    // the session goes on: a frame sent after the run is handled after it (a whole-log entry of the relay's own, stored)
    const mark = [entry(relay.peerId, 1, 'notes', 'mark', { n: 1 })]
    s.framed.sendNow(attestedBatchFrame(relay.peerId, 0, 1, mark, [new Attester(relayKey, relay.peerId).run(0, 1, mark.map(e => ({ ...e }))).cert]))
    await eventually(async () => await seqOf(v.node, relay.peerId) === 1, 'V to take the frame sent after the revoked run')
    expect(await storedHex(v.node, stream)).toEqual(encodedHex(run1))
    expect(v.node.registry.platforms().find(p => p.name === 'A')?.revoked).toBe(true)
    // dropped unverified, not an offence: the relay may not know of the revocation yet
    expect((await v.node.status()).peers.find(x => x.peerId === relay.peerId)?.offences ?? 0).toBe(0)
  }, 60_000)

  it('a node without rule streams refuses a stream log as its earlier releases do (FRAME_INVALID): nothing is stored, and it never has one to pass on', async () => {
    const v = await start('V', false)
    running.push(v)
    const aKey = await generateKeyPair('Ed25519')
    const A = peerIdFromPrivateKey(aKey).toString()
    const stream = logId(A, 'r.test.1')
    const entries: LogEntry[] = [{ origin: stream, seq: 1, hlc: { wall: Date.now() - 1000, logical: 0 }, collection: 'posts', id: 'a', op: 'put', value: encodeJson({ n: 1 }) }]
    const cert = new Attester(aKey, A).forLog(stream).run(0, 1, entries.map(e => ({ ...e }))).cert
    const peer = new RawPeer(KEY)
    raw.push(peer)
    await peer.start()
    // named in a hello: the session ends before anything is taken
    const hello = await peer.session(v.node.getMultiaddrs()[0].toString(), { vector: VersionVector.from([[stream, 1]]) }).catch(() => undefined)
    // sent as a batch on a session opened with a plain hello
    const s = hello ?? await peer.session(v.node.getMultiaddrs()[0].toString())
    s.framed.sendNow(attestedBatchFrame(stream, 0, 1, entries, [cert]))
    await eventually(async () => (await v.node.status()).origins.every(o => o.origin !== stream) && (v.node as unknown as { sync: { sessions: Map<string, unknown> } }).sync.sessions.get(peer.peerId) === undefined, 'the session to end')
    expect(await seqOf(v.node, stream)).toBe(0)
    expect((await changelogOf(v.node).readAttested(stream, 0, 100, 1 << 20))?.entries ?? []).toEqual([])
  }, 60_000)
})
