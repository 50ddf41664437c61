/**
 * Records as stored: the live value or a tombstone, plus the version of the
 * write that produced it. Tombstones are kept so that an older write arriving
 * late cannot resurrect a deleted record.
 */
import type { Hlc } from '../core/hlc.js'
import { compareHlc, formatHlc } from '../core/hlc.js'
import type { JsonObject, RecordVersion, StoredRecord } from '../core/types.js'
import { decodeJson, encodeJson } from './db.js'

export interface Version {
  hlc: Hlc
  origin: string
  seq: number
}

export interface RecordState {
  /** undefined for a tombstone */
  value?: JsonObject
  version: Version
  /** Rule that wrote the record, absent for local writes. */
  rule?: string
  /** Id of the source record the rule wrote it from, when it differs from the record's id (--key rules). */
  source?: string
  /** Position of the record's newest change in the changes feed (absent: written before the feed existed). */
  cursor?: number
  /** `value` as JSON text, when the write path has it (the entry's bytes): stored without serialising `value` again. Not stored. */
  raw?: Uint8Array
  /**
   * A tombstone of a local delete (with rule streams): the write it removed,
   * another origin's, and the rule that had placed it. A rule stream that
   * never sent the record sends the delete later all the same, naming that
   * write (WritePath deletesLeftOut; its fill reads it here).
   */
  removed?: Version
  removedRule?: string
}

interface EncodedRecord {
  v?: JsonObject
  w: number
  l: number
  o: string
  s: number
  r?: string
  i?: string
  c?: number
  /** removed: wall, logical, origin, seq */
  p?: [number, number, string, number]
  /** removedRule */
  q?: string
}

const CLOSE = 0x7d // }

/**
 * A record state with every field in the literal: V8 then keeps them all in
 * the object (a field set later, like the feed cursor, would cost a second
 * object per record; see newEntry in src/log/entry.ts).
 */
export function recordState (version: Version, value: JsonObject | undefined, rule?: string, source?: string, raw?: Uint8Array): RecordState {
  return { value, version, rule, source, cursor: undefined, raw, removed: undefined, removedRule: undefined }
}

/** The JSON text of the last origin encoded: a node writes runs of records from the same origin. */
let lastOrigin = ''
let lastOriginJson = '""'

export function encodeRecord (state: RecordState): Uint8Array {
  const version = state.version
  if (state.value === undefined || state.raw === undefined) {
    // JSON.stringify leaves out the fields that are undefined
    const removed = state.value === undefined ? state.removed : undefined
    const enc: EncodedRecord = { w: version.hlc.wall, l: version.hlc.logical, o: version.origin, s: version.seq, r: state.rule, i: state.source, c: state.cursor, v: state.value }
    if (removed !== undefined) {
      enc.p = [removed.hlc.wall, removed.hlc.logical, removed.origin, removed.seq]
      enc.q = state.removedRule
    }
    return encodeJson(enc)
  }
  if (version.origin !== lastOrigin) {
    lastOriginJson = JSON.stringify(version.origin)
    lastOrigin = version.origin
  }
  // {"w":…,…,"v": + the value's own JSON text + } (Buffer: small allocations come from a pool)
  let head = `{"w":${version.hlc.wall},"l":${version.hlc.logical},"o":${lastOriginJson},"s":${version.seq}`
  if (state.rule !== undefined) head += `,"r":${JSON.stringify(state.rule)}`
  if (state.source !== undefined) head += `,"i":${JSON.stringify(state.source)}`
  if (state.cursor !== undefined) head += `,"c":${state.cursor}`
  head += ',"v":'
  const headLength = Buffer.byteLength(head)
  const out = Buffer.allocUnsafe(headLength + state.raw.byteLength + 1)
  out.write(head, 0, 'utf8')
  out.set(state.raw, headLength)
  out[headLength + state.raw.byteLength] = CLOSE
  return out
}

export function decodeRecord (bytes: Uint8Array): RecordState {
  const enc = decodeJson<EncodedRecord>(bytes)
  const p = enc.p
  const removed = Array.isArray(p) && p.length === 4 ? { hlc: { wall: p[0], logical: p[1] }, origin: p[2], seq: p[3] } : undefined
  return { value: enc.v, version: { hlc: { wall: enc.w, logical: enc.l }, origin: enc.o, seq: enc.s }, rule: enc.r, source: enc.i, cursor: enc.c, raw: undefined, removed, removedRule: removed !== undefined ? enc.q : undefined }
}

/**
 * The JSON text of a stored record's value, as a slice of `bytes` (the
 * record as stored, `state` what decodeRecord read from it), or undefined
 * when the record has no value or was not written in the layout encodeRecord
 * writes (its fields in that order, the value last): checked byte for byte
 * against the text encodeRecord would put before the value. Lets a reader
 * send a stored value on without serialising it again.
 */
export function storedValueText (bytes: Uint8Array, state: RecordState): Uint8Array | undefined {
  if (state.value === undefined) return undefined
  const v = state.version
  let head = `{"w":${v.hlc.wall},"l":${v.hlc.logical},"o":${JSON.stringify(v.origin)},"s":${v.seq}`
  if (state.rule !== undefined) head += `,"r":${JSON.stringify(state.rule)}`
  if (state.source !== undefined) head += `,"i":${JSON.stringify(state.source)}`
  if (state.cursor !== undefined) head += `,"c":${state.cursor}`
  head += ',"v":'
  const expected = Buffer.from(head, 'utf8')
  if (bytes.byteLength < expected.length + 3 || bytes[bytes.byteLength - 1] !== CLOSE) return undefined
  if (Buffer.compare(expected, bytes.subarray(0, expected.length)) !== 0) return undefined
  return bytes.subarray(expected.length, bytes.byteLength - 1)
}

/**
 * Total order of writes: HLC, then origin, then seq. Every node compares the
 * same way, so concurrent writes to one record resolve identically everywhere
 * (last writer wins).
 */
export function compareVersion (a: Version, b: Version): number {
  const c = compareHlc(a.hlc, b.hlc)
  if (c !== 0) return c
  if (a.origin !== b.origin) return a.origin < b.origin ? -1 : 1
  return a.seq === b.seq ? 0 : (a.seq < b.seq ? -1 : 1)
}

export function publicVersion (v: Version): RecordVersion {
  return { hlc: formatHlc(v.hlc), origin: v.origin, seq: v.seq }
}

export function toStoredRecord (collection: string, id: string, state: RecordState): StoredRecord | undefined {
  if (state.value === undefined) return undefined
  return { collection, id, value: state.value, version: publicVersion(state.version) }
}
