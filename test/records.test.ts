/**
 * Stored records: the JSON text of a value received in an entry is stored as
 * is (not serialised again); it must read back exactly like a serialised one.
 */
import { describe, expect, it } from 'vitest'
import { decodeRecord, encodeRecord } from '../src/store/records.js'
import type { RecordState } from '../src/store/records.js'
import type { JsonObject } from '../src/node/types.js'

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

  it('a tombstone ignores any raw text', () => {
    const state: RecordState = { version, rule: 'r1' }
    expect(decodeRecord(encodeRecord({ ...state, raw: Buffer.from('{"x":1}') }))).toEqual(state)
  })
})
