/**
 * Records as stored: the live value or a tombstone, plus the version of the
 * write that produced it. Tombstones are kept so that an older write arriving
 * late cannot resurrect a deleted record.
 */
import type { Hlc } from '../log/hlc.js'
import { compareHlc, formatHlc } from '../log/hlc.js'
import type { JsonObject, RecordVersion, StoredRecord } from '../node/types.js'
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
}

const CLOSE = 0x7d // }

export function encodeRecord (state: RecordState): Uint8Array {
  const enc: EncodedRecord = { w: state.version.hlc.wall, l: state.version.hlc.logical, o: state.version.origin, s: state.version.seq }
  if (state.rule !== undefined) enc.r = state.rule
  if (state.source !== undefined) enc.i = state.source
  if (state.cursor !== undefined) enc.c = state.cursor
  if (state.value === undefined) return encodeJson(enc)
  if (state.raw === undefined) {
    enc.v = state.value
    return encodeJson(enc)
  }
  // {"w":…,…,"v": + the value's own JSON text + } (Buffer: small allocations come from a pool)
  let head = `{"w":${enc.w},"l":${enc.l},"o":${JSON.stringify(enc.o)},"s":${enc.s}`
  if (enc.r !== undefined) head += `,"r":${JSON.stringify(enc.r)}`
  if (enc.i !== undefined) head += `,"i":${JSON.stringify(enc.i)}`
  if (enc.c !== undefined) head += `,"c":${enc.c}`
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
  const state: RecordState = { version: { hlc: { wall: enc.w, logical: enc.l }, origin: enc.o, seq: enc.s } }
  if (enc.v !== undefined) state.value = enc.v
  if (enc.r !== undefined) state.rule = enc.r
  if (enc.i !== undefined) state.source = enc.i
  if (enc.c !== undefined) state.cursor = enc.c
  return state
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
