/**
 * Stored records: the JSON text of a value received in an entry is stored as
 * is (not serialised again); it must read back exactly like a serialised one.
 */
import { describe, expect, it } from 'vitest'
import { decodeRecord, encodeRecord, storedValueText } from '../../src/store/records.js'
import type { RecordState } from '../../src/store/records.js'
import type { JsonObject } from '../../src/core/types.js'

const version = { hlc: { wall: 1_700_000_000_000, logical: 3 }, origin: '12D3KooWExampleOrigin', seq: 42 }

describe('encodeRecord', () => {
  const values: JsonObject[] = [
    {},
    { a: 1 },
    { title: 'héllo ✓ \u2028 "quoted"', nested: { list: [1, 2.5, null, true, { deep: 'x' }] } },
    { v: 'has a "v" field of its own', w: 'and a w' }
  ]

  it.each(values)('stores the value text as received and reads back the same state (%j)', (value) => {
    const states: RecordState[] = [
      { value, version },
      { value, version, rule: 'r1', source: 'src-id', cursor: 17 }
    ]
    for (const state of states) {
      // received text may differ from JSON.stringify (spacing): stored as is, same value
      const raw = Buffer.from(JSON.stringify(value, null, 1))
      const spliced = encodeRecord({ ...state, raw })
      expect(decodeRecord(spliced)).toEqual(decodeRecord(encodeRecord(state)))
      expect(decodeRecord(spliced)).toEqual(state)
      expect(Buffer.from(spliced).includes(raw)).toBe(true)
    }
  })

  it('with the value\'s own JSON.stringify text, the bytes are exactly those of the serialised record', () => {
    const origins = ['12D3KooWExampleOrigin', 'ü-origin "quoted"']
    const counts = [0, 1, 9, 10, 99, 100, 1_700_000_000_000, Number.MAX_SAFE_INTEGER]
    for (const origin of origins) {
      for (const n of counts) {
        const value = { n, s: 'x' }
        const states: RecordState[] = [
          { value, version: { hlc: { wall: n === 0 ? 1 : n, logical: n }, origin, seq: n } },
          { value, version: { hlc: { wall: 1_700_000_000_000, logical: 0 }, origin, seq: n }, rule: `rule-${n} ✓`, source: 'src "id"', cursor: n },
          { value, version, rule: 'r2', cursor: n }
        ]
        for (const state of states) {
          const raw = Buffer.from(JSON.stringify(value))
          expect(Buffer.from(encodeRecord({ ...state, raw })).toString()).toBe(Buffer.from(encodeRecord(state)).toString())
        }
      }
    }
  })

  it('a tombstone ignores any raw text', () => {
    const state: RecordState = { version, rule: 'r1' }
    expect(decodeRecord(encodeRecord({ ...state, raw: Buffer.from('{"x":1}') }))).toEqual(state)
  })
})

describe('storedValueText', () => {
  const version = { hlc: { wall: 1765000000000, logical: 3 }, origin: '12D3KooWTestOrigin', seq: 42 }
  const value: JsonObject = { a: 1, nested: { v: 'x', w: 2 }, s: 'a,"v":b', list: [1, { v: null }] }
  const text = JSON.stringify(value)

  it('is the value\'s own JSON text in a record encodeRecord wrote, with or without its raw text, whatever fields it has', () => {
    for (const extra of [{}, { rule: 'r-1' }, { rule: 'r-1', source: 'src"id' }, { cursor: 7 }, { rule: 'r-2', source: 's', cursor: 9 }]) {
      for (const raw of [undefined, Buffer.from(text)]) {
        const state: RecordState = { value, version, raw, ...extra }
        const bytes = encodeRecord(state)
        const got = storedValueText(bytes, decodeRecord(bytes))
        expect(got === undefined ? undefined : Buffer.from(got).toString()).toBe(text)
      }
    }
  })

  it('is undefined for a tombstone, and for a record in another layout (not the text before the value encodeRecord writes)', () => {
    const tomb = encodeRecord({ value: undefined, version })
    expect(storedValueText(tomb, decodeRecord(tomb))).toBeUndefined()
    const other = Buffer.from(JSON.stringify({ v: value, w: version.hlc.wall, l: 3, o: version.origin, s: 42 }))
    expect(storedValueText(other, decodeRecord(other))).toBeUndefined()
    const reordered = Buffer.from(`{"w":${version.hlc.wall},"o":"${version.origin}","l":3,"s":42,"v":${text}}`)
    expect(storedValueText(reordered, decodeRecord(reordered))).toBeUndefined()
  })

  it('is the value\'s exact text or undefined for records in the layouts earlier releases wrote (the value before the rule, source and cursor), and for numbers and strings any encoder writes alike', () => {
    const earlier = [
      { w: 1, l: 0, o: 'x', s: 1, v: value },
      { w: 1, l: 0, o: 'x', s: 1, v: value, r: 'r-1' },
      { w: 1, l: 0, o: 'x', s: 1, v: value, r: 'r-1', i: 'src', c: 3 },
      { w: 1, l: 0, o: 'x', s: 1, v: value, c: 3 }
    ]
    for (const enc of earlier) {
      const bytes = Buffer.from(JSON.stringify(enc))
      const got = storedValueText(bytes, decodeRecord(bytes))
      if (got !== undefined) expect(Buffer.from(got).toString()).toBe(text)
    }
    for (const wall of [1e21, -0, 0.5]) {
      for (const origin of ['ö"\\\ud800', '']) {
        for (const raw of [undefined, Buffer.from(text)]) {
          const bytes = encodeRecord({ value, version: { hlc: { wall, logical: -0 }, origin, seq: 1e21 }, rule: 'r"\ud83d', source: '', cursor: 1e21, raw })
          const got = storedValueText(bytes, decodeRecord(bytes))
          expect(got === undefined ? undefined : Buffer.from(got).toString()).toBe(text)
        }
      }
    }
  })
})
