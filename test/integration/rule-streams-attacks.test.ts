/**
 * Attacks on rule streams (protocols/sync/streams.md, encryption.md) against
 * real nodes: real libp2p over TCP on 127.0.0.1, real LevelDB in temp dirs,
 * every node started with `streams: true`. A hostile member writes envelopes
 * of another node's stream key; a hostile relay (test/helpers/raw-peer.ts)
 * moves genuine encrypted entries; a hostile origin signs entries whose
 * encrypted payload is malformed, or sends its stream in clear. Each is
 * refused or skipped with a reason, nothing of it is applied, and the target
 * keeps reading the real stream.
 */
import { randomBytes } from 'node:crypto'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { afterEach, describe, expect, it } from 'vitest'
import { newEntry } from '../../src/log/entry.js'
import type { LogEntry } from '../../src/log/entry.js'
import { logId, parseLogId } from '../../src/log/log-id.js'
import { blindedIdHex } from '../../src/log/sealed-entry.js'
import { encryptEntry, SealIdentity, openStreamKey, sealStreamKey, StreamKey } from '../../src/log/seal.js'
import { Attester } from '../../src/log/signing.js'
import { SYNC_PROTOCOL_STREAMS } from '../../src/network/constants.js'
import { MAX_ENTRY_VALUE_BYTES } from '../../src/network/sync/codec.js'
import { loadIdentity } from '../../src/node/config.js'
import { createSyncNode } from '../../src/node/node.js'
import type { SyncNode } from '../../src/node/node.js'
import type { IngestResult, LocalOp } from '../../src/node/ingest.js'
import type { StreamKeys } from '../../src/node/stream-keys.js'
import { envelopeId, FIRST_EPOCH } from '../../src/node/stream-keys.js'
import { encodeJson } from '../../src/store/db.js'
import { keys } from '../../src/store/keys.js'
import { KEYS_COLLECTION, PLATFORMS_COLLECTION, RULES_COLLECTION, SEALED_COLLECTION } from '../../src/store/names.js'
import { decodeRecord } from '../../src/store/records.js'
import { attestedBatchFrame } from '../helpers/attested.js'
import { RawPeer } from '../helpers/raw-peer.js'
import { eventually, KEY, recordsOf, removeDir, tempDir } from '../helpers/nodes.js'

interface Running { node: SyncNode, dir: string }

/** What the tests reach inside a node: its stream keys, its database, its own registry writes, what its rules skip. */
interface Inside {
  ingestor: { streamKeys?: StreamKeys }
  store: { db: { get: (key: string) => Promise<Uint8Array | undefined> } }
  writeLocal: (ops: LocalOp[]) => Promise<unknown>
  ruleService: { afterCommit: (result: IngestResult) => void }
}

function inside (node: SyncNode): Inside {
  return node as unknown as Inside
}

/** A node with rule streams that dials only the peers it is given: the test decides the links. */
async function start (name: string, dir?: string): Promise<Running> {
  const d = dir ?? await tempDir()
  const node = await createSyncNode({ dataDir: d, key: KEY, name, listen: ['/ip4/127.0.0.1/tcp/0'], targetConnections: 0, streams: true })
  await node.start()
  return { node, dir: d }
}

async function seqOf (node: SyncNode, origin: string): Promise<number> {
  return (await node.status()).origins.find(o => o.origin === origin)?.seq ?? 0
}

/** Every reason the node's rules gave for skipping an entry, from now on. */
function skippedOn (node: SyncNode): Array<{ id: string, reason: string }> {
  const seen: Array<{ id: string, reason: string }> = []
  const rules = inside(node).ruleService
  const afterCommit = rules.afterCommit.bind(rules)
  rules.afterCommit = (result) => {
    for (const s of result.skipped) seen.push({ id: s.id, reason: s.reason })
    afterCommit(result)
  }
  return seen
}

/** The payload of an encrypted entry (src/log/sealed-entry.ts), built by hand: version, collection, id, target id, value. */
function payload (collection: string, id: string, targetId: string, value: Uint8Array = new Uint8Array(0), version = 1): Buffer {
  const str = (s: string): Buffer => {
    const b = Buffer.from(s, 'utf8')
    const len = Buffer.alloc(2)
    len.writeUInt16BE(b.length)
    return Buffer.concat([len, b])
  }
  return Buffer.concat([Buffer.of(version), str(collection), str(id), str(targetId), value])
}

/**
 * A stream's origin, played by the test with the origin's identity and
 * stream key: it signs whatever entries it likes into its stream, as a
 * hostile origin would.
 */
class Origin {
  readonly peer: string
  readonly stream: string
  private readonly attester: Attester

  constructor (readonly streamLog: string, identity: PrivateKey, readonly key: StreamKey) {
    const parts = parseLogId(streamLog)
    this.peer = parts.peer
    this.stream = parts.stream as string
    this.attester = new Attester(identity, this.peer).forLog(streamLog)
  }

  /** An encrypted entry at `seq` carrying `body` (encrypted under `key` for `encSeq`), named by the blinded id of `blind`. */
  sealed (seq: number, op: 'put' | 'del' | 'unmatch', body: Uint8Array, blind: [string, string], options: { key?: StreamKey, encSeq?: number, epoch?: number } = {}): LogEntry {
    const key = options.key ?? this.key
    const epoch = options.epoch ?? FIRST_EPOCH
    const ciphertext = encryptEntry(key, { origin: this.peer, stream: this.stream, epoch, seq: options.encSeq ?? seq }, body)
    return newEntry(this.streamLog, seq, { wall: Date.now(), logical: 0 }, SEALED_COLLECTION, blindedIdHex(key, blind[0], blind[1]), op, ciphertext, this.peer, 0, undefined, undefined, epoch)
  }

  /** A put of `value` to record `id` of `collection`, encrypted as the source encrypts it. */
  put (seq: number, collection: string, id: string, value: object): LogEntry {
    return this.sealed(seq, 'put', payload(collection, id, id, encodeJson(value)), [collection, id])
  }

  /** The Batch frame of `entries`, the run (from, from + n] signed as the origin signs its runs. */
  frame (from: number, entries: LogEntry[], origin = this.streamLog): Uint8Array {
    const to = from + entries.length
    const cert = this.attester.run(from, to, entries.map(e => ({ ...e }))).cert
    return attestedBatchFrame(origin, from, to, entries.map(e => ({ ...e, origin })), [cert])
  }
}

describe('attacks on rule streams', () => {
  const running: Running[] = []
  const raw: RawPeer[] = []
  afterEach(async () => {
    for (const p of raw.splice(0)) await p.stop().catch(() => {})
    for (const r of running.splice(0)) {
      await r.node.stop().catch(() => {})
      await removeDir(r.dir)
    }
  })

  /** alpha's posts go to beta by a rule (a stream of alpha's); beta holds p1 through it. */
  async function pair (): Promise<{ alpha: Running, beta: Running, streamLog: string }> {
    const alpha = await start('alpha')
    const beta = await start('beta')
    running.push(alpha, beta)
    await beta.node.peers.add(alpha.node.getMultiaddrs()[0])
    await eventually(() => [alpha, beta].every(n => n.node.registry.platforms().length === 2), 'two platforms everywhere')
    await alpha.node.registry.addRule({ from: { platform: 'alpha', collection: 'posts' }, to: { platform: 'beta', collection: 'posts' } })
    await alpha.node.records.put('posts', 'p1', { title: 'one' })
    await eventually(async () => (await recordsOf(beta.node, 'posts')).p1 !== undefined, 'beta to hold p1 through the rule stream')
    const streamLog = (await beta.node.status()).origins.find(o => o.origin.startsWith(`${alpha.node.peerId}/r.`))?.origin
    if (streamLog === undefined) throw new Error('no rule stream of alpha on beta')
    return { alpha, beta, streamLog }
  }

  /** alpha stops; the test plays alpha from then on, with its identity and its stream's key, over a raw session to beta. */
  async function playOrigin (alpha: Running, streamLog: string): Promise<Origin> {
    const current = inside(alpha.node).ingestor.streamKeys?.currentIfAny(parseLogId(streamLog).stream as string)
    if (current === undefined) throw new Error('alpha holds no key of its stream')
    await alpha.node.stop()
    return new Origin(streamLog, await loadIdentity(alpha.dir), current.key)
  }

  async function rawPeer (localAddress: string): Promise<RawPeer> {
    const p = new RawPeer(KEY, { localAddress })
    raw.push(p)
    await p.start()
    return p
  }

  it('a member\'s envelope of another node\'s stream key is refused: the target keeps the origin\'s key and reads the real stream; a node outside the rule holds no envelope that opens', async () => {
    const { alpha, beta, streamLog } = await pair()
    const mallory = await start('mallory')
    running.push(mallory)
    await mallory.node.peers.add(beta.node.getMultiaddrs()[0])
    await eventually(() => mallory.node.registry.platforms().length === 3 && beta.node.registry.platforms().length === 3, 'three platforms on beta and mallory')
    const { stream } = parseLogId(streamLog) as { stream: string }
    const id = envelopeId(alpha.node.peerId, stream, FIRST_EPOCH, beta.node.peerId)

    // mallory is outside the rule: no envelope is sealed to it, and the one sealed to beta does not open for it
    await eventually(async () => await inside(mallory.node).store.db.get(keys.record(KEYS_COLLECTION, id)) !== undefined, 'mallory to relay alpha\'s envelope for beta')
    const genuine = decodeRecord((await inside(mallory.node).store.db.get(keys.record(KEYS_COLLECTION, id)))!)
    const malloryIdentity = SealIdentity.fromPrivateKey(await loadIdentity(mallory.dir))
    expect(() => openStreamKey(malloryIdentity, Buffer.from(String(genuine.value?.box), 'base64'), { origin: alpha.node.peerId, stream, epoch: FIRST_EPOCH })).toThrow(/does not open/)
    expect(await inside(mallory.node).store.db.get(keys.record(KEYS_COLLECTION, envelopeId(alpha.node.peerId, stream, FIRST_EPOCH, mallory.node.peerId)))).toBeUndefined()
    expect(await inside(mallory.node).ingestor.streamKeys?.keyFor(streamLog, FIRST_EPOCH)).toBeUndefined()
    expect(await recordsOf(mallory.node, 'posts')).toEqual({})

    // mallory seals a key of its own to beta under alpha's stream, later than alpha's envelope
    const forgedKey = StreamKey.generate()
    const box = Buffer.from(sealStreamKey(beta.node.peerId, forgedKey, { origin: alpha.node.peerId, stream, epoch: FIRST_EPOCH })).toString('base64')
    await inside(mallory.node).writeLocal([{ collection: KEYS_COLLECTION, id, op: 'put', value: { box } }])
    await eventually(async () => await seqOf(beta.node, mallory.node.peerId) === await seqOf(mallory.node, mallory.node.peerId), 'beta to hold mallory\'s log')
    const refusals = (await beta.node.status()).registry?.refusals ?? []
    expect(refusals.some(r => r.origin === mallory.node.peerId && r.collection === KEYS_COLLECTION && r.id === id)).toBe(true)
    // beta holds alpha's envelope, not mallory's
    const held = decodeRecord((await inside(beta.node).store.db.get(keys.record(KEYS_COLLECTION, id)))!)
    expect(held.version.origin).toBe(alpha.node.peerId)
    expect(held.value).toEqual(genuine.value)

    // restarted (no key cached), beta still reads alpha's stream with alpha's key
    await beta.node.stop()
    const beta2 = await start('beta', beta.dir)
    running.push(beta2)
    await beta2.node.peers.add(alpha.node.getMultiaddrs()[0])
    await alpha.node.records.put('posts', 'p2', { title: 'two' })
    await eventually(async () => (await recordsOf(beta2.node, 'posts')).p2 !== undefined, 'beta to hold p2 after the forged envelope')
    expect(await recordsOf(beta2.node, 'posts')).toEqual({ p1: { title: 'one' }, p2: { title: 'two' } })
  }, 120_000)

  it('a member\'s $keys records that are not envelopes (another id, a large or other value) are refused; its own envelope is taken', async () => {
    const beta = await start('beta')
    const mallory = await start('mallory')
    running.push(beta, mallory)
    await mallory.node.peers.add(beta.node.getMultiaddrs()[0])
    await eventually(() => beta.node.registry.platforms().length === 2, 'two platforms on beta')
    const m = mallory.node.peerId
    const stream = 'r.0123456789abcdef0123'
    const box = Buffer.from(sealStreamKey(beta.node.peerId, StreamKey.generate(), { origin: m, stream, epoch: 1 })).toString('base64')
    const own = envelopeId(m, stream, 1, beta.node.peerId)
    const junk: Array<[string, object]> = [
      [`${m}/anything`, { box }],
      [`${m}/${stream}/0/${beta.node.peerId}`, { box }],
      [`${m}/s.other/1/${beta.node.peerId}`, { box }],
      [envelopeId(m, stream, 2, beta.node.peerId), { box: 'A'.repeat(100_000) }],
      [envelopeId(m, stream, 3, beta.node.peerId), { box, more: 'x' }]
    ]
    await inside(mallory.node).writeLocal([...junk.map(([id, value]) => ({ collection: KEYS_COLLECTION, id, op: 'put' as const, value: value as Record<string, string> })), { collection: KEYS_COLLECTION, id: own, op: 'put', value: { box } }])
    await eventually(async () => await seqOf(beta.node, m) === await seqOf(mallory.node, m), 'beta to hold mallory\'s log')
    const refused = ((await beta.node.status()).registry?.refusals ?? []).filter(r => r.origin === m).map(r => r.id)
    expect(refused.sort()).toEqual(junk.map(([id]) => id).sort())
    for (const [id] of junk) expect(await inside(beta.node).store.db.get(keys.record(KEYS_COLLECTION, id))).toBeUndefined()
    expect(decodeRecord((await inside(beta.node).store.db.get(keys.record(KEYS_COLLECTION, own)))!).value).toEqual({ box })
  }, 120_000)

  it('a relay that moves a genuine encrypted run to another seq, another stream or the whole log is refused with an offence; a replayed run changes nothing', async () => {
    const { alpha, beta, streamLog } = await pair()
    const origin = await playOrigin(alpha, streamLog)
    const addr = beta.node.getMultiaddrs()[0].toString()
    const held = await seqOf(beta.node, streamLog)
    // alpha's next run, genuinely signed and encrypted: the relay holds it and cannot read it
    const run = [origin.put(held + 1, 'posts', 'g1', { title: 'g-one' }), origin.put(held + 2, 'posts', 'g2', { title: 'g-two' })]
    const genuine = origin.frame(held, run)
    const relay = await rawPeer('127.0.0.7')
    const offences = async (): Promise<{ total: number, byCheck: Record<string, number> }> => {
      const p = (await beta.node.status()).peers.find(x => x.peerId === relay.peerId)
      return { total: p?.offences ?? 0, byCheck: p?.offencesByCheck ?? {} }
    }
    const session = async (): Promise<ReturnType<RawPeer['session']>> => await relay.session(addr, { protocol: SYNC_PROTOCOL_STREAMS })

    // 1. the run one seq further on, under the origin's attestation of it moved along
    let s = await session()
    const genuineCert = new Attester(await loadIdentity(alpha.dir), origin.peer).forLog(streamLog).run(held, held + 2, run.map(e => ({ ...e }))).cert
    const shifted = run.map(e => ({ ...e, seq: e.seq + 1 }))
    s.framed.sendNow(attestedBatchFrame(streamLog, held + 1, held + 3, shifted, [{ ...genuineCert, from: held + 1, to: held + 3, asOf: genuineCert.asOf + 1 }]))
    await eventually(async () => (await offences()).total === 1, 'the run moved to another seq to be an offence')
    // 2. the entries' payloads swapped between their seqs
    s = await session()
    const swapped = [{ ...run[0], id: run[1].id, value: run[1].value }, { ...run[1], id: run[0].id, value: run[0].value }]
    s.framed.sendNow(attestedBatchFrame(streamLog, held, held + 2, swapped, [genuineCert]))
    await eventually(async () => (await offences()).total === 2, 'the payloads swapped between seqs to be an offence')
    // 3. the run presented as another stream of alpha's
    const other = logId(origin.peer, 'r.00000000000000000000')
    s = await session()
    s.framed.sendNow(attestedBatchFrame(other, held, held + 2, run.map(e => ({ ...e, origin: other })), [genuineCert]))
    await eventually(async () => (await offences()).total === 3, 'the run moved to another stream to be an offence')
    expect((await offences()).byCheck).toEqual({ RUN_SIGNATURE_MISMATCH: 3 })
    // 4. the run presented as alpha's whole log: an encrypted entry outside a rule stream is a malformed frame,
    // refused (sent twice: a stall) from another relay (three offences closed this node to the first)
    const whole = await seqOf(beta.node, origin.peer)
    const asWhole = attestedBatchFrame(origin.peer, whole, whole + 2, run.map((e, i) => ({ ...e, origin: origin.peer, seq: whole + i + 1 })), [{ ...genuineCert, from: whole, to: whole + 2, asOf: whole + 2 }])
    const relay2 = await rawPeer('127.0.0.10')
    for (let i = 0; i < 2; i++) {
      s = await relay2.session(addr, { protocol: SYNC_PROTOCOL_STREAMS })
      s.framed.sendNow(asWhole)
      await new Promise(resolve => setTimeout(resolve, 200))
    }
    await eventually(async () => (await beta.node.status()).stalls?.recent.some(x => x.origin === origin.peer && x.code === 'FRAME_INVALID') === true, 'the run moved to the whole log to be refused')
    expect(await seqOf(beta.node, origin.peer)).toBe(whole)

    // nothing of them is stored or applied
    expect(await seqOf(beta.node, streamLog)).toBe(held)
    expect(await seqOf(beta.node, other)).toBe(0)
    expect(await recordsOf(beta.node, 'posts')).toEqual({ p1: { title: 'one' } })

    // the genuine run, from an honest relay, is applied; sent again, it changes nothing
    const honest = await rawPeer('127.0.0.8')
    s = await honest.session(addr, { protocol: SYNC_PROTOCOL_STREAMS })
    s.framed.sendNow(genuine)
    await eventually(async () => (await recordsOf(beta.node, 'posts')).g2 !== undefined, 'beta to apply the genuine run')
    const before = await beta.node.records.get('posts', 'g1')
    s = await honest.session(addr, { protocol: SYNC_PROTOCOL_STREAMS })
    s.framed.sendNow(genuine)
    s.framed.sendNow(origin.frame(held + 2, [origin.put(held + 3, 'posts', 'g3', { title: 'g-three' })]))
    await eventually(async () => (await recordsOf(beta.node, 'posts')).g3 !== undefined, 'beta to apply the run after the replay')
    expect(await beta.node.records.get('posts', 'g1')).toEqual(before)
    expect(await recordsOf(beta.node, 'posts')).toEqual({ p1: { title: 'one' }, g1: { title: 'g-one' }, g2: { title: 'g-two' }, g3: { title: 'g-three' } })
    expect((await beta.node.status()).peers.find(x => x.peerId === honest.peerId)?.offences ?? 0).toBe(0)
  }, 120_000)

  it('a hostile origin\'s entries whose encrypted payload is malformed, moved or under another key are skipped with a reason; the target applies the rest and keeps running', async () => {
    const { alpha, beta, streamLog } = await pair()
    const origin = await playOrigin(alpha, streamLog)
    const skipped = skippedOn(beta.node)
    const held = await seqOf(beta.node, streamLog)
    const json = (v: unknown): Uint8Array => encodeJson(v)
    let seq = held
    const bad: Array<[LogEntry, string, RegExp]> = [
      [origin.sealed(++seq, 'put', payload('posts', 'x1', 'x1', json({ a: 1 }), 3), ['posts', 'x1']), 'x1', /payload version 3 is not supported/],
      // version 2 is a delete naming the write it removes
      [origin.sealed(++seq, 'put', payload('posts', 'x0', 'x0', json({ a: 0 }), 2), ['posts', 'x0']), 'x0', /a put naming a write it removes/],
      [origin.sealed(++seq, 'put', Buffer.of(1, 0, 50, 0x70, 0x70, 0x70, 0x70, 0x70), ['posts', 'x2']), 'x2', /payload is truncated/],
      [origin.sealed(++seq, 'put', payload('posts', 'x3', 'x3', json({ a: 3 })), ['posts', 'p1']), 'x3', /blinded id is not its record's/],
      [origin.sealed(++seq, 'del', payload('posts', 'p1', '', json({ a: 4 })), ['posts', 'p1']), 'p1', /a del with a value/],
      [origin.sealed(++seq, 'put', payload('posts', 'x5', 'x5', Buffer.from('not json')), ['posts', 'x5']), 'x5', /not a JSON object/],
      [origin.sealed(++seq, 'put', payload('posts', 'x6', 'x6', json([1, 2])), ['posts', 'x6']), 'x6', /not a JSON object/],
      [origin.sealed(++seq, 'put', payload('posts', 'x7', 'x7', Buffer.from('{"a":'.repeat(500) + '1' + '}'.repeat(500))), ['posts', 'x7']), 'x7', /nests more than/],
      // the origin's own ciphertext of another seq, signed again at this one
      [origin.sealed(++seq, 'put', payload('posts', 'x8', 'x8', json({ a: 8 })), ['posts', 'x8'], { encSeq: seq + 100 }), 'x8', /does not decrypt/],
      // encrypted under a key no envelope gave
      [origin.sealed(++seq, 'put', payload('posts', 'x9', 'x9', json({ a: 9 })), ['posts', 'x9'], { key: StreamKey.generate() }), 'x9', /does not decrypt/],
      // names and ids the codec refuses in clear: a control character ("\0" separates the store's key parts), none, too long
      [origin.sealed(++seq, 'put', payload('posts', 'x10\u0000r', 'x10\u0000r', json({ a: 10 })), ['posts', 'x10\u0000r']), 'x10\u0000r', /invalid record id/],
      [origin.sealed(++seq, 'put', payload('posts', '', '', json({ a: 11 })), ['posts', '']), '', /invalid record id/],
      [origin.sealed(++seq, 'put', payload('posts', 'y'.repeat(600), 'y'.repeat(600), json({ a: 12 })), ['posts', 'y'.repeat(600)]), 'y'.repeat(600), /invalid record id/],
      [origin.sealed(++seq, 'put', payload('posts', 'x13', 'x13\u0001', json({ a: 13 })), ['posts', 'x13']), 'x13', /invalid target id/],
      [origin.sealed(++seq, 'put', payload('po\u0000sts', 'x14', 'x14', json({ a: 14 })), ['po\u0000sts', 'x14']), 'x14', /invalid collection/]
    ]
    const entries = [...bad.map(b => b[0]), origin.put(++seq, 'posts', 'ok', { title: 'fine' })]
    const evil = await rawPeer('127.0.0.9')
    const s = await evil.session(beta.node.getMultiaddrs()[0].toString(), { protocol: SYNC_PROTOCOL_STREAMS })
    s.framed.sendNow(origin.frame(held, entries))
    await eventually(async () => (await recordsOf(beta.node, 'posts')).ok !== undefined, 'beta to apply the good entry after the bad ones')
    // stored and served on (the origin signed them), not applied
    expect(await seqOf(beta.node, streamLog)).toBe(seq)
    expect(await recordsOf(beta.node, 'posts')).toEqual({ p1: { title: 'one' }, ok: { title: 'fine' } })
    for (const [e, id, reason] of bad) {
      const found = skipped.find(x => x.id === `#${e.seq}` || x.id === id)
      expect(found?.reason ?? `nothing skipped for entry ${e.seq}`).toMatch(reason)
    }
    expect(skipped).toHaveLength(bad.length)
    expect((await beta.node.status()).peers.find(x => x.peerId === evil.peerId)?.offences ?? 0).toBe(0)
  }, 120_000)

  it('a hostile origin\'s encrypted value with a byte order mark, invalid UTF-8 or too many bytes is skipped with a reason, and every record stays readable', async () => {
    const { alpha, beta, streamLog } = await pair()
    const origin = await playOrigin(alpha, streamLog)
    const skipped = skippedOn(beta.node)
    const held = await seqOf(beta.node, streamLog)
    const bom = Buffer.concat([Buffer.of(0xef, 0xbb, 0xbf), Buffer.from('{"t":"bom"}')])
    const latin1 = Buffer.concat([Buffer.from('{"t":"'), Buffer.of(0xff, 0xfe), Buffer.from('"}')])
    // valid JSON, larger than any entry's value may be
    const huge = encodeJson({ t: 'x'.repeat(MAX_ENTRY_VALUE_BYTES + 1000) })
    const entries = [
      origin.sealed(held + 1, 'put', payload('posts', 'bom', 'bom', bom), ['posts', 'bom']),
      origin.sealed(held + 2, 'put', payload('posts', 'utf', 'utf', latin1), ['posts', 'utf']),
      origin.sealed(held + 3, 'put', payload('posts', 'huge', 'huge', huge), ['posts', 'huge']),
      origin.put(held + 4, 'posts', 'ok', { title: 'fine' })
    ]
    const evil = await rawPeer('127.0.0.11')
    const s = await evil.session(beta.node.getMultiaddrs()[0].toString(), { protocol: SYNC_PROTOCOL_STREAMS })
    s.framed.sendNow(origin.frame(held, entries))
    await eventually(async () => await seqOf(beta.node, streamLog) === held + 4, 'beta to store the run')
    await eventually(async () => (await recordsOf(beta.node, 'posts')).ok !== undefined, 'beta to apply the good entry')
    expect(await recordsOf(beta.node, 'posts')).toEqual({ p1: { title: 'one' }, ok: { title: 'fine' } })
    expect(skipped.map(x => x.id)).toEqual([`#${held + 1}`, `#${held + 2}`, `#${held + 3}`])
    expect(skipped[0].reason).toMatch(/not a JSON object in UTF-8/)
    expect(skipped[1].reason).toMatch(/not a JSON object in UTF-8/)
    expect(skipped[2].reason).toMatch(/its value is \d+ bytes \(limit/)
  }, 120_000)

  it('entries in clear in a rule stream are not applied: neither a record nor a registry record (a rule, a platform claim), live or after a restart', async () => {
    const { alpha, beta, streamLog } = await pair()
    const origin = await playOrigin(alpha, streamLog)
    const held = await seqOf(beta.node, streamLog)
    const rule = beta.node.registry.rules()[0]
    const injected = { ...rule, id: 'r-injected', to: { ...rule.to, collection: 'injected' } }
    const ghost = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    const clear = (seq: number, collection: string, id: string, value: object): LogEntry => newEntry(streamLog, seq, { wall: Date.now(), logical: 0 }, collection, id, 'put', encodeJson(value), origin.peer, 0)
    const entries = [
      clear(held + 1, 'posts', 'clear', { title: 'in clear' }),
      clear(held + 2, RULES_COLLECTION, injected.id, injected),
      clear(held + 3, PLATFORMS_COLLECTION, 'ghost', { name: 'ghost', peerId: ghost, addrs: [] }),
      origin.put(held + 4, 'posts', 'ok', { title: 'fine' })
    ]
    const evil = await rawPeer('127.0.0.12')
    const s = await evil.session(beta.node.getMultiaddrs()[0].toString(), { protocol: SYNC_PROTOCOL_STREAMS })
    s.framed.sendNow(origin.frame(held, entries))
    await eventually(async () => await seqOf(beta.node, streamLog) === held + 4, 'beta to store the run')
    await eventually(async () => (await recordsOf(beta.node, 'posts')).ok !== undefined, 'beta to apply the encrypted entry')
    const check = async (node: SyncNode, when: string): Promise<void> => {
      expect(await recordsOf(node, 'posts'), when).toEqual({ p1: { title: 'one' }, ok: { title: 'fine' } })
      expect(node.registry.rules().map(r => r.id), when).toEqual([rule.id])
      expect(node.registry.platforms().map(p => p.name).sort(), when).toEqual(['alpha', 'beta'])
    }
    await check(beta.node, 'live')
    // the registry a node loads at start reads claims from the logs it holds
    await beta.node.stop()
    const again = await start('beta', beta.dir)
    running.push(again)
    await check(again.node, 'after a restart')
  }, 120_000)

  it('a record the rule\'s projection makes larger than an entry may be does not stall the rule\'s stream: it is not sent, and what follows is', async () => {
    const alpha = await start('alpha')
    const beta = await start('beta')
    running.push(alpha, beta)
    await beta.node.peers.add(alpha.node.getMultiaddrs()[0])
    await eventually(() => [alpha, beta].every(n => n.node.registry.platforms().length === 2), 'two platforms everywhere')
    // renaming 40 short fields to 200-character names grows a record by 8 KB
    const fields = Array.from({ length: 40 }, (_, i) => `f${i}`)
    const rename = Object.fromEntries(fields.map(f => [f, `${f}_${'n'.repeat(200)}`]))
    await alpha.node.registry.addRule({ from: { platform: 'alpha', collection: 'posts' }, to: { platform: 'beta', collection: 'posts' }, rename })
    await alpha.node.records.put('posts', 'before', { title: 'before' })
    await eventually(async () => (await recordsOf(beta.node, 'posts')).before !== undefined, 'beta to hold the first post')
    const big: Record<string, number | string> = Object.fromEntries(fields.map(f => [f, 1]))
    big.pad = 'p'.repeat(MAX_ENTRY_VALUE_BYTES - encodeJson({ ...big, pad: '' }).byteLength)
    expect(encodeJson(big).byteLength).toBe(MAX_ENTRY_VALUE_BYTES)
    await alpha.node.records.put('posts', 'big', big)
    await alpha.node.records.put('posts', 'after', { title: 'after' })
    await eventually(async () => (await recordsOf(beta.node, 'posts')).after !== undefined, 'beta to hold the post written after the large one', 30_000)
    expect(Object.keys(await recordsOf(beta.node, 'posts')).sort()).toEqual(['after', 'before'])
  }, 120_000)

  it('a member\'s own envelopes for a target do not make the target read another origin\'s stream again; that origin\'s envelope does', async () => {
    const { alpha, beta, streamLog } = await pair()
    const mallory = await start('mallory')
    running.push(mallory)
    await mallory.node.peers.add(beta.node.getMultiaddrs()[0])
    await eventually(() => beta.node.registry.platforms().length === 3, 'three platforms on beta')
    const alphaId = alpha.node.peerId
    const identity = await loadIdentity(alpha.dir)
    const origin = await playOrigin(alpha, streamLog)
    // alpha's stream gets an entry of an epoch whose key beta does not hold yet: beta's rule waits for it
    const held = await seqOf(beta.node, streamLog)
    const epoch7 = StreamKey.generate()
    const evil = await rawPeer('127.0.0.13')
    let s = await evil.session(beta.node.getMultiaddrs()[0].toString(), { protocol: SYNC_PROTOCOL_STREAMS })
    s.framed.sendNow(origin.frame(held, [origin.sealed(held + 1, 'put', payload('posts', 'e7', 'e7', encodeJson({ title: 'seven' })), ['posts', 'e7'], { key: epoch7, epoch: 7 })]))
    const ingestor = inside(beta.node).ingestor as unknown as { awaitingKey: Set<string>, clearAwaitingKey: (id: string) => Promise<void> }
    await eventually(() => ingestor.awaitingKey.size === 1, 'beta\'s rule to wait for the key of epoch 7')
    const rereads: string[] = []
    const clear = ingestor.clearAwaitingKey.bind(ingestor)
    ingestor.clearAwaitingKey = async (id) => { rereads.push(id); await clear(id) }

    // mallory writes envelopes of its own streams for beta: beta has nothing to read again
    const ms = 'r.0123456789abcdef0123'
    for (let e = 1; e <= 3; e++) {
      const box = Buffer.from(sealStreamKey(beta.node.peerId, StreamKey.generate(), { origin: mallory.node.peerId, stream: ms, epoch: e })).toString('base64')
      await inside(mallory.node).writeLocal([{ collection: KEYS_COLLECTION, id: envelopeId(mallory.node.peerId, ms, e, beta.node.peerId), op: 'put', value: { box } }])
    }
    await eventually(async () => await seqOf(beta.node, mallory.node.peerId) === await seqOf(mallory.node, mallory.node.peerId), 'beta to hold mallory\'s envelopes')
    await new Promise(resolve => setTimeout(resolve, 1000))
    expect(rereads).toEqual([])

    // alpha's envelope of epoch 7 for beta (an entry of alpha's whole log): beta reads alpha's stream again and opens the entry
    const whole = await seqOf(beta.node, alphaId)
    const envelope = newEntry(alphaId, whole + 1, { wall: Date.now(), logical: 0 }, KEYS_COLLECTION, envelopeId(alphaId, origin.stream, 7, beta.node.peerId), 'put', encodeJson({ box: Buffer.from(sealStreamKey(beta.node.peerId, epoch7, { origin: alphaId, stream: origin.stream, epoch: 7 })).toString('base64') }))
    const cert = new Attester(identity, alphaId).run(whole, whole + 1, [{ ...envelope }]).cert
    s = await evil.session(beta.node.getMultiaddrs()[0].toString(), { protocol: SYNC_PROTOCOL_STREAMS })
    s.framed.sendNow(attestedBatchFrame(alphaId, whole, whole + 1, [envelope], [cert]))
    await eventually(async () => (await recordsOf(beta.node, 'posts')).e7 !== undefined, 'beta to apply the entry of epoch 7 once its key arrived')
    expect(rereads).toHaveLength(1)
  }, 120_000)

  it('a hostile origin\'s envelope that does not open, or opens for another epoch, makes the target skip that epoch\'s entries with a reason, and nothing else', async () => {
    const { alpha, beta, streamLog } = await pair()
    const alphaId = alpha.node.peerId
    const identity = await loadIdentity(alpha.dir)
    const origin = await playOrigin(alpha, streamLog)
    const skipped = skippedOn(beta.node)
    const key8 = StreamKey.generate()
    const key9 = StreamKey.generate()
    const box = (bytes: Uint8Array): object => ({ box: Buffer.from(bytes).toString('base64') })
    // epoch 8: random bytes the size of an envelope; epoch 9: a key sealed to beta for epoch 8, filed under epoch 9
    const whole = await seqOf(beta.node, alphaId)
    const envelopes = [
      newEntry(alphaId, whole + 1, { wall: Date.now(), logical: 0 }, KEYS_COLLECTION, envelopeId(alphaId, origin.stream, 8, beta.node.peerId), 'put', encodeJson(box(randomBytes(81)))),
      newEntry(alphaId, whole + 2, { wall: Date.now(), logical: 1 }, KEYS_COLLECTION, envelopeId(alphaId, origin.stream, 9, beta.node.peerId), 'put', encodeJson(box(sealStreamKey(beta.node.peerId, key9, { origin: alphaId, stream: origin.stream, epoch: 8 }))))
    ]
    const cert = new Attester(identity, alphaId).run(whole, whole + 2, envelopes.map(e => ({ ...e }))).cert
    const evil = await rawPeer('127.0.0.14')
    let s = await evil.session(beta.node.getMultiaddrs()[0].toString(), { protocol: SYNC_PROTOCOL_STREAMS })
    s.framed.sendNow(attestedBatchFrame(alphaId, whole, whole + 2, envelopes, [cert]))
    await eventually(async () => await seqOf(beta.node, alphaId) === whole + 2, 'beta to hold alpha\'s envelopes')
    const held = await seqOf(beta.node, streamLog)
    const entries = [
      origin.sealed(held + 1, 'put', payload('posts', 'e8', 'e8', encodeJson({ t: 8 })), ['posts', 'e8'], { key: key8, epoch: 8 }),
      origin.sealed(held + 2, 'put', payload('posts', 'e9', 'e9', encodeJson({ t: 9 })), ['posts', 'e9'], { key: key9, epoch: 9 }),
      origin.put(held + 3, 'posts', 'ok', { title: 'fine' })
    ]
    s = await evil.session(beta.node.getMultiaddrs()[0].toString(), { protocol: SYNC_PROTOCOL_STREAMS })
    s.framed.sendNow(origin.frame(held, entries))
    await eventually(async () => (await recordsOf(beta.node, 'posts')).ok !== undefined, 'beta to apply the entry of epoch 1')
    expect(await recordsOf(beta.node, 'posts')).toEqual({ p1: { title: 'one' }, ok: { title: 'fine' } })
    expect(skipped.map(x => x.id)).toEqual([`#${held + 1}`, `#${held + 2}`])
    for (const x of skipped) expect(x.reason).toMatch(/the key of epoch \d of stream .* does not open/)
    const ruleId = beta.node.registry.rules()[0].id
    expect((await beta.node.status()).rules.find(r => r.id === ruleId)?.unreadable).toBe(2)
  }, 120_000)
})
