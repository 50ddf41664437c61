/**
 * A log entry: one change in one origin's append-only log.
 * On disk and on the wire it is the protobuf `Entry` of protocols/sync/sync.proto;
 * the origin is carried by the storage key or the enclosing Batch.
 */
import { Entry as PbEntry, Op as PbOp } from '../network/sync/pb/sync.js'
import type { Hlc } from './hlc.js'

export type EntryOp = 'put' | 'del'

export interface LogEntry {
  origin: string
  seq: number
  hlc: Hlc
  collection: string
  id: string
  op: EntryOp
  /** UTF-8 JSON object for `put`; absent for `del`. */
  value?: Uint8Array
  /** Canonical protobuf encoding, once computed (signing, verification, storage share it). */
  bytes?: Uint8Array
  /** Merkle leaf hash of `bytes` (see signing.ts). */
  leaf?: Uint8Array
  /** `value` parsed (a JSON object), when the entry was validated on receipt: rules use it instead of parsing again. Never mutated. */
  parsed?: object
}

const EMPTY = new Uint8Array(0)

export function toPbEntry (e: LogEntry): PbEntry {
  return {
    seq: e.seq,
    hlcWall: e.hlc.wall,
    hlcLogical: e.hlc.logical,
    collection: e.collection,
    id: e.id,
    op: e.op === 'put' ? PbOp.PUT : PbOp.DEL,
    value: (e.value ?? EMPTY) as Uint8Array<ArrayBuffer>
  }
}

export function fromPbEntry (origin: string, pb: PbEntry): LogEntry {
  const e: LogEntry = {
    origin,
    seq: pb.seq,
    hlc: { wall: pb.hlcWall, logical: pb.hlcLogical },
    collection: pb.collection,
    id: pb.id,
    op: pb.op === PbOp.DEL ? 'del' : 'put'
  }
  if (e.op === 'put') e.value = pb.value
  return e
}

export function encodeEntry (e: LogEntry): Uint8Array {
  return PbEntry.encode(toPbEntry(e))
}

export function decodeEntry (origin: string, bytes: Uint8Array): LogEntry {
  return fromPbEntry(origin, PbEntry.decode(bytes))
}
