/**
 * decodeEntry reads Entry bytes in place (src/log/wire.ts); it must give
 * what protons' generated decoder gives for every Entry, including the
 * encodings a canonical encoder never produces (fields out of order,
 * repeated, unknown).
 */
import { describe, expect, it } from 'vitest'
import { decodeEntry, encodeEntry, fromPbEntry } from '../../src/log/entry.js'
import type { LogEntry } from '../../src/log/entry.js'
import { writeVarint } from '../../src/network/frames.js'
import { Entry as PbEntry } from '../../src/wire/pb/sync.js'

const ORIGIN = '12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf'
const enc = new TextEncoder()

function viaProtons (bytes: Uint8Array): LogEntry {
  return fromPbEntry(ORIGIN, PbEntry.decode(bytes))
}

/** A field: tag then payload (varint or length-delimited). */
function field (no: number, value: number | Uint8Array): Uint8Array {
  const out = new Uint8Array(24 + (typeof value === 'number' ? 0 : value.byteLength))
  if (typeof value === 'number') {
    let o = writeVarint(out, 0, no * 8)
    o = writeVarint(out, o, value)
    return out.subarray(0, o)
  }
  let o = writeVarint(out, 0, no * 8 + 2)
  o = writeVarint(out, o, value.byteLength)
  out.set(value, o)
  return out.subarray(0, o + value.byteLength)
}

function concat (...parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts))
}

/** Compare as plain data (a Uint8Array view and a copy of the same bytes are equal). */
function plain (e: LogEntry): unknown {
  return { ...e, value: e.value === undefined ? undefined : Buffer.from(e.value).toString('hex') }
}

describe('decodeEntry', () => {
  it('gives what protons gives for canonical entries', () => {
    const samples: LogEntry[] = [
      { origin: ORIGIN, seq: 1, hlc: { wall: 1_700_000_000_000, logical: 0 }, collection: 'articles', id: 'a1', op: 'put', value: enc.encode('{"title":"x"}') },
      { origin: ORIGIN, seq: 2 ** 53 - 1, hlc: { wall: 2 ** 53 - 1, logical: 2 ** 32 - 1 }, collection: '$rules', id: 'x'.repeat(512), op: 'del' },
      { origin: ORIGIN, seq: 300, hlc: { wall: 5, logical: 128 }, collection: 'c', id: '日本語 🎉 a b/c', op: 'put', value: enc.encode('{}') },
      { origin: ORIGIN, seq: 7, hlc: { wall: 9, logical: 1 }, collection: 'c', id: 'empty-value', op: 'put', value: new Uint8Array(0) }
    ]
    for (const e of samples) {
      const bytes = encodeEntry(e)
      expect(plain(decodeEntry(ORIGIN, bytes))).toEqual(plain(viaProtons(bytes)))
    }
  })

  it('reads fields in any order, keeps the last of a repeated field and skips unknown fields', () => {
    const bytes = concat(
      field(7, enc.encode('{"a":1}')),
      field(5, enc.encode('first')),
      field(99, 12345), // unknown varint
      field(98, enc.encode('unknown bytes')),
      field(3, 4),
      field(1, 10),
      field(4, enc.encode('coll')),
      field(5, enc.encode('second')),
      field(2, 1234567),
      field(1, 11)
    )
    const e = decodeEntry(ORIGIN, bytes)
    expect(plain(e)).toEqual(plain(viaProtons(bytes)))
    expect(e).toMatchObject({ seq: 11, id: 'second', collection: 'coll', hlc: { wall: 1234567, logical: 4 }, op: 'put' })
  })

  it('a put keeps a view of the value, not a copy', () => {
    const bytes = encodeEntry({ origin: ORIGIN, seq: 1, hlc: { wall: 1, logical: 0 }, collection: 'c', id: 'i', op: 'put', value: enc.encode('{"v":2}') })
    const e = decodeEntry(ORIGIN, bytes)
    expect(e.value?.buffer).toBe(bytes.buffer)
  })

  it('an absent op is a put, an absent value of a put is empty', () => {
    const bytes = concat(field(1, 1), field(2, 1), field(4, enc.encode('c')), field(5, enc.encode('i')))
    const e = decodeEntry(ORIGIN, bytes)
    expect(e.op).toBe('put')
    expect(e.value?.byteLength).toBe(0)
    expect(plain(e)).toEqual(plain(viaProtons(bytes)))
  })

  it('a chained entry names the write it carries (writer, writer seq); entries encoded without them read as the origin\'s own', () => {
    const WRITER = '12D3KooWKoemE7esT8sRQLcFnupwG3ankmVoCfRhdk6ReXV6NxRH'
    const chained: LogEntry = { origin: ORIGIN, seq: 4, hlc: { wall: 1_700_000_000_000, logical: 2 }, collection: 'events', id: 'e1', op: 'put', value: enc.encode('{"n":1}'), writer: WRITER, writerSeq: 17 }
    const bytes = encodeEntry(chained)
    const e = decodeEntry(ORIGIN, bytes)
    expect(plain(e)).toEqual(plain(viaProtons(bytes)))
    expect({ writer: e.writer, writerSeq: e.writerSeq }).toEqual({ writer: WRITER, writerSeq: 17 })
    // a writer's seq 0 (a write its rules made) is not encoded, and reads back as 0
    const zero = decodeEntry(ORIGIN, encodeEntry({ ...chained, writerSeq: 0 }))
    expect({ writer: zero.writer, writerSeq: zero.writerSeq }).toEqual({ writer: WRITER, writerSeq: 0 })
    // the bytes of an entry without a writer are exactly what they were before the fields existed
    const own = { ...chained, writer: undefined, writerSeq: undefined }
    const old = concat(field(1, 4), field(2, 1_700_000_000_000), field(3, 2), field(4, enc.encode('events')), field(5, enc.encode('e1')), field(7, enc.encode('{"n":1}')))
    expect(Buffer.from(encodeEntry(own)).equals(Buffer.from(old))).toBe(true)
    const read = decodeEntry(ORIGIN, old)
    expect({ writer: read.writer, writerSeq: read.writerSeq }).toEqual({ writer: undefined, writerSeq: undefined })
    expect(plain(read)).toEqual(plain(viaProtons(old)))
    // a writer naming the origin itself is the origin's own write
    const self = decodeEntry(ORIGIN, concat(old, field(8, enc.encode(ORIGIN)), field(9, 3)))
    expect({ writer: self.writer, writerSeq: self.writerSeq }).toEqual({ writer: undefined, writerSeq: undefined })
  })

  it('a delete names the write it removed (prev origin and clock); a put or the origin itself never', () => {
    const WRITER = '12D3KooWKoemE7esT8sRQLcFnupwG3ankmVoCfRhdk6ReXV6NxRH'
    const del: LogEntry = { origin: ORIGIN, seq: 5, hlc: { wall: 1_700_000_000_100, logical: 0 }, collection: 'events', id: 'e1', op: 'del', prev: { origin: WRITER, hlc: { wall: 1_700_000_000_000, logical: 3 } } }
    const bytes = encodeEntry(del)
    const e = decodeEntry(ORIGIN, bytes)
    expect(plain(e)).toEqual(plain(viaProtons(bytes)))
    expect(e.prev).toEqual({ origin: WRITER, hlc: { wall: 1_700_000_000_000, logical: 3 } })
    // a delete without it is encoded exactly as before the fields existed
    const bare = concat(field(1, 5), field(2, 1_700_000_000_100), field(4, enc.encode('events')), field(5, enc.encode('e1')), field(6, 1))
    expect(Buffer.from(encodeEntry({ ...del, prev: undefined })).equals(Buffer.from(bare))).toBe(true)
    expect(decodeEntry(ORIGIN, bare).prev).toBeUndefined()
    // naming a write of the origin itself names nothing
    expect(decodeEntry(ORIGIN, concat(bare, field(10, enc.encode(ORIGIN)), field(11, 5))).prev).toBeUndefined()
    // a put that names one is malformed
    expect(() => decodeEntry(ORIGIN, concat(field(1, 1), field(7, enc.encode('{}')), field(10, enc.encode(WRITER)), field(11, 5)))).toThrow(/put naming a write it removed/)
  })

  it('rejects malformed bytes, unknown ops and deletes with a value', () => {
    const ok = encodeEntry({ origin: ORIGIN, seq: 1, hlc: { wall: 1, logical: 0 }, collection: 'c', id: 'i', op: 'put', value: enc.encode('{}') })
    expect(() => decodeEntry(ORIGIN, ok.subarray(0, ok.byteLength - 1))).toThrow(/past the end/)
    expect(() => decodeEntry(ORIGIN, concat(field(1, 1), new Uint8Array([0x10, 0x80])))).toThrow(/truncated varint/)
    expect(() => decodeEntry(ORIGIN, concat(field(1, 1), field(6, 3)))).toThrow(/unknown op/)
    expect(() => decodeEntry(ORIGIN, concat(field(1, 1), field(6, 1), field(7, enc.encode('{}'))))).toThrow(/delete with a value/)
    // an unmatch (rule streams) carries no value either, unless encrypted (an epoch: its payload names the record)
    expect(() => decodeEntry(ORIGIN, concat(field(1, 1), field(6, 2), field(7, enc.encode('{}'))))).toThrow(/unmatch with a value/)
    expect(decodeEntry(ORIGIN, concat(field(1, 1), field(6, 2))).op).toBe('unmatch')
    expect(decodeEntry(ORIGIN, concat(field(1, 1), field(6, 1), field(7, enc.encode('x')), field(14, 1))).value).toEqual(enc.encode('x'))
    expect(() => decodeEntry(ORIGIN, concat(field(1, 1), new Uint8Array([0x0b])))).toThrow(/wire type/)
  })
})
