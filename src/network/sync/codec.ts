/**
 * The sync protocol's frames (protocols/sync/): conversion between the wire
 * (protobuf `Frame`) and domain messages, with every field validated on the
 * way in. Nothing outside src/network sees a protobuf object.
 */
import { ProtocolError } from '../../core/errors.js'
import { decodeEntry, fromPbEntry } from '../../log/entry.js'
import type { LogEntry } from '../../log/entry.js'
import { VersionVector } from '../../log/vector.js'
import { isLogId, isPeerId, isRuleStreamLog } from '../../log/log-id.js'
import { levelWidths, livePositions, MAX_RUN_LENGTH } from '../../log/signing.js'
import type { AttestedCert, Cert } from '../../log/signing.js'
import { MAX_UPDATES } from '../../log/changelog.js'
import { utf8 } from '../../store/db.js'
import { isRegistryCollection, isValidCollection, isValidId, SEALED_COLLECTION } from '../../store/names.js'
import { jsonTextTooDeep, MAX_JSON_DEPTH } from '../../store/json-depth.js'
import { frame, varintLength, writeVarint } from '../frames.js'
import { utf8Range, WireReader } from '../../log/wire.js'
import { Frame, Op, RunCert } from '../../wire/pb/sync.js'

export type SyncMessage =
  | { type: 'hello', protocolVersion: number, name: string, vector: VersionVector, credit: number, relayAudience?: boolean }
  | { type: 'batch', origin: string, fromSeq: number, toSeq: number, entries: LogEntry[], certs: Cert[], attested?: AttestedFields }
  | { type: 'credit', batches: number }
  | { type: 'vector', vector: VersionVector }
  | { type: 'have', origin: string, seq: number }

/** The logs a message names (a batch's, a Have's, a vector's or hello's). */
export function logsNamed (msg: SyncMessage): Iterable<string> {
  if (msg.type === 'batch' || msg.type === 'have') return [msg.origin]
  if (msg.type === 'vector' || msg.type === 'hello') return msg.vector.origins()
  return []
}

/** A version 2 batch's certificates (attestations and gone spans) and updates (completeness.md §4). */
export interface AttestedFields {
  certs: AttestedCert[]
  updates: AttestedCert[]
}

export const MAX_VECTOR_ORIGINS = 100_000
export const MAX_BATCH_ENTRIES = 10_000
export const MAX_CREDIT = 1024
/** Same limit as a local write (src/node/node.ts MAX_VALUE_BYTES): every entry fits in a frame when forwarded. */
export const MAX_ENTRY_VALUE_BYTES = 1024 * 1024

/** A peer id (base58btc "12D3KooW…", "Qm…", or CIDv1 base32 "bafz…"): an entry's writer. */
export function isValidOrigin (origin: string): boolean {
  return isPeerId(origin)
}

/** An encrypted entry's id: the hex of a 17-byte blinded id (encryption.md §6). */
const BLINDED_ID_HEX = /^01[0-9a-f]{32}$/
/** Version, nonce and tag of an encrypted entry (encryption.md §5), plus the payload's version and three empty strings. */
const MIN_SEALED_BYTES = 1 + 12 + 16 + 7
/** What encryption and the payload's header add to a value, at most (three strings of up to 512 ids' UTF-8 and a collection name). */
const SEALED_OVERHEAD_BYTES = 1 + 12 + 16 + 1 + 3 * 2 + 128 + 2 * 512 * 3

/**
 * A log id (src/log/log-id.ts): a peer id, or a peer id, "/" and a stream
 * id. What a batch, a vector and a Have name; anything else is FRAME_INVALID.
 */
export function isValidLogId (id: string): boolean {
  return isLogId(id)
}

function checkSeq (n: number, what: string): number {
  if (!Number.isSafeInteger(n) || n < 0) throw new ProtocolError(`${what} is not a valid sequence number`, 'FRAME_INVALID')
  return n
}

function decodeVector (entries: Array<{ origin: string, seq: number }>): VersionVector {
  if (entries.length > MAX_VECTOR_ORIGINS) throw new ProtocolError(`version vector names ${entries.length} origins (limit ${MAX_VECTOR_ORIGINS})`, 'FRAME_INVALID')
  const v = new VersionVector()
  for (const e of entries) {
    if (!isValidLogId(e.origin)) throw new ProtocolError('version vector names an invalid origin (not a peer id, nor a peer id and a stream id)', 'FRAME_INVALID')
    v.advance(e.origin, checkSeq(e.seq, 'version vector seq'))
  }
  return v
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true })

/**
 * The value parsed as a JSON object, or undefined when it is not one. A leading byte order
 * mark is refused: TextDecoder drops it, so JSON.parse would not see it, but
 * the value is stored as received, inside the stored record's own JSON text,
 * where it is not allowed (the record would no longer read). So is text
 * that is not UTF-8 (stored as received, it would not read back as parsed).
 */
function parseJsonObject (bytes: Uint8Array): object | undefined {
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) return undefined
  try {
    const v: unknown = JSON.parse(strictUtf8.decode(bytes))
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? v : undefined
  } catch {
    return undefined
  }
}

/**
 * A put's value as a receiver checks it before storing it (the value goes,
 * as it is, into the stored record's JSON text): its parsed object, or what
 * is wrong with it, to follow "its value": at most MAX_ENTRY_VALUE_BYTES,
 * nesting at most MAX_JSON_DEPTH, a JSON object in UTF-8. Also what a target
 * checks of an encrypted entry's value once it opens it.
 */
export function checkPutValue (value: Uint8Array): { parsed: object } | { problem: string } {
  if (value.byteLength > MAX_ENTRY_VALUE_BYTES) return { problem: `is ${value.byteLength} bytes (limit ${MAX_ENTRY_VALUE_BYTES})` }
  if (jsonTextTooDeep(value)) return { problem: `nests more than ${MAX_JSON_DEPTH} levels` }
  const parsed = parseJsonObject(value)
  return parsed === undefined ? { problem: 'is not a JSON object in UTF-8 (without a byte order mark)' } : { parsed }
}

interface WireBatch { origin: string, fromSeq: number, toSeq: number, entries: Uint8Array[], certs: Uint8Array[], updates: Uint8Array[] }

/**
 * A frame that is exactly one Batch field, read without decoding its entries
 * (they stay the bytes the origin signed, so they are hashed and stored as
 * received); undefined for any other frame (the generic decoder takes it).
 */
function readBatchFrame (bytes: Uint8Array): WireBatch | undefined {
  if (bytes[0] !== 0x12) return undefined
  const frameReader = new WireReader(bytes, 1)
  const [start, end] = frameReader.lengthDelimited()
  if (end !== bytes.byteLength) return undefined
  const r = new WireReader(bytes, start, end)
  const out: WireBatch = { origin: '', fromSeq: 0, toSeq: 0, entries: [], certs: [], updates: [] }
  while (r.pos < end) {
    const tag = r.varint()
    const field = Math.floor(tag / 8)
    const wireType = tag & 7
    if (field === 1 && wireType === 2) {
      const [a, b] = r.lengthDelimited()
      out.origin = utf8Range(bytes, a, b)
    } else if (field === 2 && wireType === 0) {
      out.fromSeq = r.varint()
    } else if (field === 3 && wireType === 0) {
      out.toSeq = r.varint()
    } else if (field === 4 && wireType === 2) {
      if (out.entries.length >= MAX_BATCH_ENTRIES) throw new ProtocolError(`batch has more than ${MAX_BATCH_ENTRIES} entries (limit ${MAX_BATCH_ENTRIES})`, 'FRAME_INVALID')
      const [a, b] = r.lengthDelimited()
      out.entries.push(bytes.subarray(a, b))
    } else if (field === 5 && wireType === 2) {
      if (out.certs.length >= MAX_BATCH_ENTRIES) throw new ProtocolError(`batch has more than ${MAX_BATCH_ENTRIES} certificates (limit ${MAX_BATCH_ENTRIES})`, 'FRAME_INVALID')
      const [a, b] = r.lengthDelimited()
      out.certs.push(bytes.subarray(a, b))
    } else if (field === 6 && wireType === 2) {
      if (out.updates.length >= MAX_UPDATES) throw new ProtocolError(`batch has more than ${MAX_UPDATES} updates (limit ${MAX_UPDATES})`, 'FRAME_INVALID')
      const [a, b] = r.lengthDelimited()
      out.updates.push(bytes.subarray(a, b))
    } else {
      r.skip(wireType)
    }
  }
  return out
}

/**
 * The origin and range a Batch frame names, read without validating the rest
 * (to say which batch was refused when it does not decode); undefined for
 * any other frame or one too broken to tell.
 */
export function batchRangeOf (bytes: Uint8Array): { origin: string, fromSeq: number, toSeq: number } | undefined {
  try {
    const wire = readBatchFrame(bytes)
    if (wire === undefined || !isValidLogId(wire.origin)) return undefined
    return { origin: wire.origin, fromSeq: wire.fromSeq, toSeq: wire.toSeq }
  } catch {
    return undefined
  }
}

/**
 * Decode and validate one frame; throws ProtocolError when anything is off.
 * `version` 2 reads a batch's certificates as attestations and its updates
 * (completeness.md §4) into `attested`; version 1 (the default) as run
 * certificates, and ignores updates.
 */
export function decodeFrame (bytes: Uint8Array, options: { version?: number } = {}): SyncMessage {
  const version = options.version ?? 1
  let wire: WireBatch | undefined
  try {
    wire = readBatchFrame(bytes)
    if (wire !== undefined) {
      const origin = wire.origin
      const entries = wire.entries.map(raw => {
        const e = decodeEntry(origin, raw)
        e.bytes = raw
        return e
      })
      const certs = wire.certs.map(raw => RunCert.decode(raw))
      return decodeBatch(wire.origin, wire.fromSeq, wire.toSeq, entries, certs, version === 2 ? wire.updates.map(raw => RunCert.decode(raw)) : undefined)
    }
  } catch (err) {
    if (err instanceof ProtocolError) throw err
    throw new ProtocolError(`undecodable frame: ${(err as Error).message}`, 'FRAME_INVALID')
  }
  let f: Frame
  try {
    f = Frame.decode(bytes)
  } catch (err) {
    throw new ProtocolError(`undecodable frame: ${(err as Error).message}`, 'FRAME_INVALID')
  }
  const set = (f.hello !== undefined ? 1 : 0) + (f.batch !== undefined ? 1 : 0) + (f.credit !== undefined ? 1 : 0) + (f.vector !== undefined ? 1 : 0) + (f.have !== undefined ? 1 : 0)
  if (set !== 1) throw new ProtocolError(`a frame must carry exactly one message, this one carries ${set}`, 'FRAME_INVALID')
  if (f.hello !== undefined) {
    const h = f.hello
    if (h.credit === 0 || h.credit > MAX_CREDIT) throw new ProtocolError(`hello grants ${h.credit} credit (must be 1 to ${MAX_CREDIT})`, 'FRAME_INVALID')
    return { type: 'hello', protocolVersion: h.protocolVersion, name: h.name.slice(0, 64), vector: decodeVector(h.vector), credit: h.credit, relayAudience: h.relayAudience }
  }
  if (f.credit !== undefined) {
    if (f.credit.batches === 0 || f.credit.batches > MAX_CREDIT) throw new ProtocolError(`credit of ${f.credit.batches} batches is out of range`, 'FRAME_INVALID')
    return { type: 'credit', batches: f.credit.batches }
  }
  if (f.vector !== undefined) return { type: 'vector', vector: decodeVector(f.vector.vector) }
  if (f.have !== undefined) {
    if (!isValidLogId(f.have.origin)) throw new ProtocolError('have names an invalid origin (not a peer id, nor a peer id and a stream id)', 'FRAME_INVALID')
    return { type: 'have', origin: f.have.origin, seq: checkSeq(f.have.seq, 'have seq') }
  }
  const b = f.batch as NonNullable<Frame['batch']>
  const entries = b.entries.map(pb => {
    // an encrypted entry's value is its payload, whatever its op (sealed-entry.ts)
    if (pb.op === Op.DEL && pb.value.byteLength !== 0 && pb.epoch === 0) throw new ProtocolError(`entry ${pb.seq} is a delete with a value`, 'FRAME_INVALID')
    if (pb.op !== Op.DEL && pb.prevOrigin !== '') throw new ProtocolError(`entry ${pb.seq} is a put naming a write it removed`, 'FRAME_INVALID')
    return fromPbEntry(b.origin, pb)
  })
  return decodeBatch(b.origin, b.fromSeq, b.toSeq, entries, b.certs, version === 2 ? b.updates : undefined)
}

/**
 * Validate a Batch. Entries received as bytes keep them (`bytes`): they are
 * what the origin signed, unless it encoded them oddly (see verifyRuns).
 */
function decodeBatch (origin: string, rawFromSeq: number, rawToSeq: number, decoded: LogEntry[], pbCerts: RunCert[], pbUpdates?: RunCert[]): SyncMessage {
  const b = { origin, entries: decoded, certs: pbCerts }
  if (!isValidLogId(b.origin)) throw new ProtocolError('batch names an invalid origin (not a peer id, nor a peer id and a stream id)', 'FRAME_INVALID')
  const fromSeq = checkSeq(rawFromSeq, 'batch from_seq')
  const toSeq = checkSeq(rawToSeq, 'batch to_seq')
  if (toSeq <= fromSeq) throw new ProtocolError(`batch range (${fromSeq}, ${toSeq}] is empty or reversed`, 'FRAME_INVALID')
  if (b.entries.length > MAX_BATCH_ENTRIES) throw new ProtocolError(`batch has ${b.entries.length} entries (limit ${MAX_BATCH_ENTRIES})`, 'FRAME_INVALID')
  let prev = fromSeq
  const ruleStream = isRuleStreamLog(b.origin)
  for (const e of b.entries) {
    if (!ruleStream && (e.op === 'unmatch' || e.targetId !== undefined)) throw new ProtocolError(`entry ${e.seq} of ${b.origin} is an unmatch or names a target id, which only a rule stream's entries do`, 'FRAME_INVALID')
    if (e.targetId !== undefined && !isValidId(e.targetId)) throw new ProtocolError(`entry ${e.seq} names an invalid target id`, 'FRAME_INVALID')
    if (!Number.isSafeInteger(e.seq) || e.seq <= prev || e.seq > toSeq) throw new ProtocolError(`batch entry seq ${e.seq} is out of order or outside (${fromSeq}, ${toSeq}]`, 'FRAME_INVALID')
    prev = e.seq
    if (!Number.isSafeInteger(e.hlc.wall) || e.hlc.wall <= 0) throw new ProtocolError(`entry ${e.seq} has an invalid clock`, 'FRAME_INVALID')
    if (e.epoch !== undefined || e.collection === SEALED_COLLECTION) {
      // an encrypted rule stream entry (src/log/sealed-entry.ts): what is in clear is checked here, the
      // payload by the targets that hold the key
      if (!ruleStream || e.epoch === undefined) throw new ProtocolError(`entry ${e.seq} of ${b.origin} is encrypted outside a rule stream, or names "${SEALED_COLLECTION}" without an epoch`, 'FRAME_INVALID')
      if (e.collection !== SEALED_COLLECTION || !BLINDED_ID_HEX.test(e.id) || e.targetId !== undefined || e.prev !== undefined) throw new ProtocolError(`entry ${e.seq} is encrypted but names a collection, id or target id in clear`, 'FRAME_INVALID')
      if (e.value === undefined || e.value.byteLength < MIN_SEALED_BYTES || e.value.byteLength > MAX_ENTRY_VALUE_BYTES + SEALED_OVERHEAD_BYTES) throw new ProtocolError(`entry ${e.seq} carries an encrypted payload of ${e.value?.byteLength ?? 0} bytes (${MIN_SEALED_BYTES} to ${MAX_ENTRY_VALUE_BYTES + SEALED_OVERHEAD_BYTES})`, 'FRAME_INVALID')
      if (e.writer !== undefined && (!isValidOrigin(e.writer) || !Number.isSafeInteger(e.writerSeq))) throw new ProtocolError(`entry ${e.seq} names an invalid writer`, 'FRAME_INVALID')
      continue
    }
    if (!(isValidCollection(e.collection) || isRegistryCollection(e.collection))) throw new ProtocolError(`entry ${e.seq} has an invalid collection name`, 'FRAME_INVALID')
    if (!isValidId(e.id)) throw new ProtocolError(`entry ${e.seq} has an invalid record id`, 'FRAME_INVALID')
    if (e.writer !== undefined && (!isValidOrigin(e.writer) || !Number.isSafeInteger(e.writerSeq))) throw new ProtocolError(`entry ${e.seq} names an invalid writer`, 'FRAME_INVALID')
    if (e.prev !== undefined && (!isValidOrigin(e.prev.origin) || !Number.isSafeInteger(e.prev.hlc.wall) || e.prev.hlc.wall <= 0)) throw new ProtocolError(`entry ${e.seq} names an invalid write it removed`, 'FRAME_INVALID')
    if (e.op === 'put') {
      const checked = checkPutValue(e.value as Uint8Array)
      // the parsed object is not kept on the entry: a batch waits in the session's queues and in
      // writes in flight, long enough for what it holds to outlive the young generation, and most
      // entries a node receives are stored and relayed, not applied (a rule parses its own again)
      if ('problem' in checked) throw new ProtocolError(`entry ${e.seq} is a put whose value ${checked.problem}`, 'FRAME_INVALID')
    }
  }
  if (b.certs.length > MAX_BATCH_ENTRIES) throw new ProtocolError(`batch has ${b.certs.length} certificates (limit ${MAX_BATCH_ENTRIES})`, 'FRAME_INVALID')
  if (pbUpdates !== undefined) {
    const attested = decodeAttested(fromSeq, toSeq, b.certs, pbUpdates)
    return { type: 'batch', origin: b.origin, fromSeq, toSeq, entries: b.entries, certs: [], attested }
  }
  const certs: Cert[] = new Array(b.certs.length)
  let prevTo = fromSeq
  for (let i = 0; i < b.certs.length; i++) {
    const c = b.certs[i]
    const from = checkSeq(c.fromSeq, 'certificate from_seq')
    const to = checkSeq(c.toSeq, 'certificate to_seq')
    if (from < (i === 0 ? fromSeq : prevTo) || to <= from || to > toSeq || to - from > MAX_RUN_LENGTH) {
      throw new ProtocolError(`certificate (${from}, ${to}] is out of order or outside the batch (${fromSeq}, ${toSeq}]`, 'FRAME_INVALID')
    }
    prevTo = to
    if (c.sig.byteLength !== 64) throw new ProtocolError(`certificate (${from}, ${to}] has a ${c.sig.byteLength}-byte signature`, 'FRAME_INVALID')
    const widths = levelWidths(to - from)
    if (c.pruned.length > 64 * widths.length) throw new ProtocolError(`certificate (${from}, ${to}] has too many pruned nodes`, 'FRAME_INVALID')
    for (const p of c.pruned) {
      if (p.level >= widths.length || p.index >= widths[p.level] || p.hash.byteLength !== 32) throw new ProtocolError(`certificate (${from}, ${to}] has a malformed pruned node`, 'FRAME_INVALID')
    }
    certs[i] = { from, to, sig: c.sig, pruned: c.pruned.map(p => ({ level: p.level, index: p.index, hash: p.hash })) }
  }
  return { type: 'batch', origin: b.origin, fromSeq, toSeq, entries: b.entries, certs }
}

/**
 * A version 2 batch's certificates and updates, each field checked
 * (completeness.md §4): certificates in order inside the batch, as of a seq
 * at or after their end, 64-byte signatures; a gone span with no pruned
 * nodes (and any length); a live run at most MAX_RUN_LENGTH long with pruned
 * nodes inside its tree; no bitmap in a certificate (the receiver computes
 * it). Updates (at most MAX_UPDATES) end at or before the batch's start and
 * carry no pruned nodes; a live one carries a bitmap of its run's length
 * with no bit beyond it. The signatures are checked later
 * (verifyAttestedRuns, verifyUpdate).
 */
function decodeAttested (fromSeq: number, toSeq: number, pbCerts: RunCert[], pbUpdates: RunCert[]): AttestedFields {
  if (pbUpdates.length > MAX_UPDATES) throw new ProtocolError(`batch has ${pbUpdates.length} updates (limit ${MAX_UPDATES})`, 'FRAME_INVALID')
  const one = (c: RunCert, what: string): AttestedCert => {
    const from = checkSeq(c.fromSeq, `${what} from_seq`)
    const to = checkSeq(c.toSeq, `${what} to_seq`)
    const asOf = checkSeq(c.asOf, `${what} as_of`)
    if (to <= from || asOf < to) throw new ProtocolError(`${what} (${from}, ${to}] as of ${asOf} is not a valid attestation`, 'FRAME_INVALID')
    if (c.sig.byteLength !== 64) throw new ProtocolError(`${what} (${from}, ${to}] has a ${c.sig.byteLength}-byte signature`, 'FRAME_INVALID')
    if (c.gone) {
      if (c.pruned.length > 0 || c.live.byteLength > 0) throw new ProtocolError(`gone span (${from}, ${to}] carries pruned nodes or a bitmap`, 'FRAME_INVALID')
      return { from, to, asOf, sig: c.sig, pruned: [], gone: true }
    }
    if (to - from > MAX_RUN_LENGTH) throw new ProtocolError(`${what} (${from}, ${to}] is longer than ${MAX_RUN_LENGTH}`, 'FRAME_INVALID')
    const widths = levelWidths(to - from)
    if (c.pruned.length > 64 * widths.length) throw new ProtocolError(`${what} (${from}, ${to}] has too many pruned nodes`, 'FRAME_INVALID')
    for (const p of c.pruned) {
      if (p.level >= widths.length || p.index >= widths[p.level] || p.hash.byteLength !== 32) throw new ProtocolError(`${what} (${from}, ${to}] has a malformed pruned node`, 'FRAME_INVALID')
    }
    const out: AttestedCert = { from, to, asOf, sig: c.sig, pruned: c.pruned.map(p => ({ level: p.level, index: p.index, hash: p.hash })), gone: false }
    if (c.live.byteLength > 0) out.live = c.live
    return out
  }
  const certs: AttestedCert[] = new Array(pbCerts.length)
  let prevTo = fromSeq
  for (let i = 0; i < pbCerts.length; i++) {
    const c = one(pbCerts[i], 'certificate')
    if (c.from < prevTo || c.to > toSeq) throw new ProtocolError(`certificate (${c.from}, ${c.to}] is out of order or outside the batch (${fromSeq}, ${toSeq}]`, 'FRAME_INVALID')
    if (c.live !== undefined) throw new ProtocolError(`certificate (${c.from}, ${c.to}] carries a bitmap (only updates do)`, 'FRAME_INVALID')
    prevTo = c.to
    certs[i] = c
  }
  const updates = pbUpdates.map(pb => {
    const u = one(pb, 'update')
    if (u.to > fromSeq) throw new ProtocolError(`update (${u.from}, ${u.to}] does not end at or before the batch's start ${fromSeq}`, 'FRAME_INVALID')
    if (!u.gone && (u.pruned.length > 0 || u.live === undefined || livePositions(u.to - u.from, u.live) === undefined)) throw new ProtocolError(`update (${u.from}, ${u.to}] needs a bitmap of its run's length and no pruned nodes`, 'FRAME_INVALID')
    return u
  })
  return { certs, updates }
}

function vectorToWire (v: VersionVector): Array<{ origin: string, seq: number }> {
  return v.entries()
}

export function encodeHello (name: string, vector: VersionVector, credit: number, protocolVersion: number, relayAudience = false): Uint8Array {
  return frame(Frame.encode({ hello: { protocolVersion, name, vector: vectorToWire(vector), credit, relayAudience } }))
}

export function encodeCredit (batches: number): Uint8Array {
  return frame(Frame.encode({ credit: { batches } }))
}

export function encodeHave (origin: string, seq: number): Uint8Array {
  return frame(Frame.encode({ have: { origin, seq } }))
}

export function encodeVector (vector: VersionVector): Uint8Array {
  return frame(Frame.encode({ vector: { vector: vectorToWire(vector) } }))
}

/**
 * A length-prefixed Batch frame built directly from stored entry bytes (which
 * are protobuf `Entry` messages), without decoding and re-encoding them.
 * Byte-for-byte what Frame.encode({ batch }) produces.
 */
export function encodeBatchFrame (origin: string, fromSeq: number, toSeq: number, rawEntries: Uint8Array[], rawCerts: Uint8Array[] = [], rawUpdates: Uint8Array[] = []): Uint8Array {
  const originBytes = utf8.encode(origin)
  let batchLen = 1 + varintLength(originBytes.byteLength) + originBytes.byteLength
  if (fromSeq !== 0) batchLen += 1 + varintLength(fromSeq)
  if (toSeq !== 0) batchLen += 1 + varintLength(toSeq)
  for (const e of rawEntries) batchLen += 1 + varintLength(e.byteLength) + e.byteLength
  for (const c of rawCerts) batchLen += 1 + varintLength(c.byteLength) + c.byteLength
  for (const u of rawUpdates) batchLen += 1 + varintLength(u.byteLength) + u.byteLength
  const frameLen = 1 + varintLength(batchLen) + batchLen
  const out = new Uint8Array(varintLength(frameLen) + frameLen)
  let o = writeVarint(out, 0, frameLen)
  out[o++] = 0x12 // Frame.batch, length-delimited
  o = writeVarint(out, o, batchLen)
  out[o++] = 0x0a // Batch.origin
  o = writeVarint(out, o, originBytes.byteLength)
  out.set(originBytes, o)
  o += originBytes.byteLength
  if (fromSeq !== 0) {
    out[o++] = 0x10 // Batch.from_seq
    o = writeVarint(out, o, fromSeq)
  }
  if (toSeq !== 0) {
    out[o++] = 0x18 // Batch.to_seq
    o = writeVarint(out, o, toSeq)
  }
  for (const e of rawEntries) {
    out[o++] = 0x22 // Batch.entries
    o = writeVarint(out, o, e.byteLength)
    out.set(e, o)
    o += e.byteLength
  }
  for (const c of rawCerts) {
    out[o++] = 0x2a // Batch.certs
    o = writeVarint(out, o, c.byteLength)
    out.set(c, o)
    o += c.byteLength
  }
  for (const u of rawUpdates) {
    out[o++] = 0x32 // Batch.updates
    o = writeVarint(out, o, u.byteLength)
    out.set(u, o)
    o += u.byteLength
  }
  return out
}
