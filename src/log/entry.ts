/**
 * A log entry: one change in one origin's append-only log.
 * On disk and on the wire it is the protobuf `Entry` of protocols/sync/sync.proto;
 * the origin is carried by the storage key or the enclosing Batch.
 */
import { Entry as PbEntry, Op as PbOp } from '../wire/pb/sync.js'
import type { Hlc } from '../core/hlc.js'
import { utf8Range, WireReader } from './wire.js'

/** `unmatch` only in rule streams (protocols/sync/streams.md §3): the source record stopped matching the rule. */
export type EntryOp = 'put' | 'del' | 'unmatch'

export interface LogEntry {
  origin: string
  seq: number
  hlc: Hlc
  collection: string
  id: string
  op: EntryOp
  /** UTF-8 JSON object for `put`; absent for `del`. */
  value?: Uint8Array
  /**
   * The origin of the write this entry carries on, when it is not `origin`'s
   * own (chaining: a rule on `origin` wrote the record from that write), and
   * the write's seq in that origin's log (`writerSeq`, 0 when the write is
   * not in its log as such). With `hlc` they are the write's identity (see
   * entryVersion in src/rules/engine.ts). Absent for the origin's own writes.
   */
  writer?: string
  writerSeq?: number
  /**
   * A delete only: the write it removed, when `origin` held the record from
   * another origin's write (a rule placed it there). A rule reading
   * `origin`'s collection that passes records on as they are applies the
   * delete to the record of that id it did not place itself, when that
   * record is shared (see sharedRecord in src/rules/engine.ts): a relay does
   * not log the puts it only passes on (RuleSet relayedPutsLeftOut), so the rule
   * never placed them. Absent otherwise.
   */
  prev?: WriteId
  /** Rule streams only: the target record's id, when the rule's key makes it differ from `id` (the source record's). */
  targetId?: string
  /** Rule streams only: the epoch of the stream key the entry is encrypted under (absent: plaintext). See src/log/sealed-entry.ts. */
  epoch?: number
  /** Canonical protobuf encoding, once computed (signing, verification, storage share it). */
  bytes?: Uint8Array
  /** Merkle leaf hash of `bytes`, as signing.ts holds digests (32 latin1 characters). */
  leaf?: string
  /** `value` parsed (a JSON object), when the entry was validated on receipt: rules use it instead of parsing again. Never mutated. */
  parsed?: object
}

/** A write's identity as a delete names it: its origin and clock. */
export interface WriteId {
  origin: string
  hlc: Hlc
}

const EMPTY = new Uint8Array(0)

/**
 * A new entry, every field in the literal: V8 then keeps them all in the
 * object (the fields set later, `bytes`, `leaf`, `parsed`, would otherwise
 * cost a second object per entry).
 */
export function newEntry (origin: string, seq: number, hlc: Hlc, collection: string, id: string, op: EntryOp, value: Uint8Array | undefined, writer?: string, writerSeq?: number, prev?: WriteId, targetId?: string, epoch?: number): LogEntry {
  // a writer equal to the origin is no writer (the origin's own write): never encoded as one
  if (writer === undefined || writer === '' || writer === origin) {
    writer = undefined
    writerSeq = undefined
  } else {
    writerSeq ??= 0
  }
  // only a delete names what it removed, and never a write of its own origin
  if (op !== 'del' || prev?.origin === origin || prev?.origin === '') prev = undefined
  if (targetId === '' || targetId === id) targetId = undefined
  if (epoch === 0) epoch = undefined
  return { origin, seq, hlc, collection, id, op, value, writer, writerSeq, prev, targetId, epoch, bytes: undefined, leaf: undefined, parsed: undefined }
}

export function toPbEntry (e: LogEntry): PbEntry {
  return {
    seq: e.seq,
    hlcWall: e.hlc.wall,
    hlcLogical: e.hlc.logical,
    collection: e.collection,
    id: e.id,
    op: e.op === 'put' ? PbOp.PUT : e.op === 'del' ? PbOp.DEL : PbOp.UNMATCH,
    value: (e.value ?? EMPTY) as Uint8Array<ArrayBuffer>,
    writer: e.writer ?? '',
    writerSeq: e.writer !== undefined ? e.writerSeq ?? 0 : 0,
    prevOrigin: e.prev?.origin ?? '',
    prevHlcWall: e.prev?.hlc.wall ?? 0,
    prevHlcLogical: e.prev?.hlc.logical ?? 0,
    targetId: e.targetId ?? '',
    epoch: e.epoch ?? 0
  }
}

export function fromPbEntry (origin: string, pb: PbEntry): LogEntry {
  const op = pb.op === PbOp.DEL ? 'del' : pb.op === PbOp.UNMATCH ? 'unmatch' : 'put'
  if (pb.prevOrigin !== '' && op !== 'del') throw new Error(`entry ${pb.seq} is a put naming a write it removed`)
  const prev = pb.prevOrigin !== '' ? { origin: pb.prevOrigin, hlc: { wall: pb.prevHlcWall, logical: pb.prevHlcLogical } } : undefined
  return newEntry(origin, pb.seq, { wall: pb.hlcWall, logical: pb.hlcLogical }, pb.collection, pb.id, op, op === 'put' || pb.epoch !== 0 ? pb.value : undefined, pb.writer, pb.writerSeq, prev, pb.targetId, pb.epoch)
}

export function encodeEntry (e: LogEntry): Uint8Array {
  return PbEntry.encode(toPbEntry(e))
}

/**
 * Decode an Entry's bytes straight into a LogEntry, by the rules of proto3
 * (fields in any order, the last of a repeated field wins, unknown fields
 * skipped, absent fields zero or empty): what `fromPbEntry(origin,
 * Entry.decode(bytes))` gives, without protons' intermediate object and its
 * JavaScript UTF-8 decoder (every received and every backfilled entry is
 * decoded: `npm run profile:ingest` measured them at ~1 KB of garbage per
 * entry). A put keeps a view of its value in `bytes`, not a copy.
 * Throws on malformed bytes, an unknown op, and a delete with a value.
 */
export function decodeEntry (origin: string, bytes: Uint8Array): LogEntry {
  const r = new WireReader(bytes)
  let seq = 0
  let wall = 0
  let logical = 0
  let collection = ''
  let id = ''
  let op = 0
  let valueStart = 0
  let valueEnd = 0
  let writer = ''
  let writerSeq = 0
  let prevOrigin = ''
  let prevWall = 0
  let prevLogical = 0
  let targetId = ''
  let epoch = 0
  while (r.pos < r.end) {
    const tag = r.varint()
    const wireType = tag & 7
    switch (wireType === 0 ? tag : wireType === 2 ? -tag : 0) {
      case 0x08: seq = r.varint(); break
      case 0x10: wall = r.varint(); break
      case 0x18: logical = r.varint() >>> 0; break
      case 0x30: op = r.varint(); break
      case -0x22: { const n = r.skipLengthDelimited(); collection = utf8Range(bytes, r.pos - n, r.pos); break }
      case -0x2a: { const n = r.skipLengthDelimited(); id = utf8Range(bytes, r.pos - n, r.pos); break }
      case -0x3a: { const n = r.skipLengthDelimited(); valueStart = r.pos - n; valueEnd = r.pos; break }
      case -0x42: { const n = r.skipLengthDelimited(); writer = utf8Range(bytes, r.pos - n, r.pos); break }
      case 0x48: writerSeq = r.varint(); break
      case -0x52: { const n = r.skipLengthDelimited(); prevOrigin = utf8Range(bytes, r.pos - n, r.pos); break }
      case 0x58: prevWall = r.varint(); break
      case 0x60: prevLogical = r.varint() >>> 0; break
      case -0x6a: { const n = r.skipLengthDelimited(); targetId = utf8Range(bytes, r.pos - n, r.pos); break }
      case 0x70: epoch = r.varint() >>> 0; break
      default: r.skip(wireType)
    }
  }
  if (op !== 0 && op !== 1 && op !== 2) throw new Error(`entry ${seq} has an unknown op`)
  if (op !== 0 && valueEnd > valueStart && epoch === 0) throw new Error(`entry ${seq} is a ${op === 1 ? 'delete' : 'unmatch'} with a value`)
  if (prevOrigin !== '' && op !== 1) throw new Error(`entry ${seq} is a put naming a write it removed`)
  const prev = prevOrigin !== '' ? { origin: prevOrigin, hlc: { wall: prevWall, logical: prevLogical } } : undefined
  return newEntry(origin, seq, { wall, logical }, collection, id, op === 1 ? 'del' : op === 2 ? 'unmatch' : 'put', op === 0 || epoch !== 0 ? bytes.subarray(valueStart, valueEnd) : undefined, writer, writerSeq, prev, targetId, epoch)
}
