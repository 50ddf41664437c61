import { describe, expect, it } from 'vitest'
import { InvalidInputError } from '../../src/core/errors.js'
import type { JsonObject } from '../../src/core/types.js'
import { compileWhere, fieldGetter, getField, jsonEqual, MAX_FILTER_DEPTH, MAX_FILTER_NODES, MAX_IN_VALUES } from '../../src/rules/filter.js'

const match = (where: JsonObject | undefined, value: JsonObject): boolean => compileWhere(where)(value)

/** Assert compileWhere throws INVALID_FILTER with a message matching `pattern`. */
function expectInvalid (where: unknown, pattern: RegExp | string): void {
  let caught: unknown
  try {
    compileWhere(where as JsonObject)
  } catch (err) {
    caught = err
  }
  expect(caught).toBeInstanceOf(InvalidInputError)
  const err = caught as InvalidInputError
  expect(err.code).toBe('INVALID_FILTER')
  expect(err.status).toBe(400)
  expect(err.message).toMatch(pattern)
}

describe('compileWhere: empty filters', () => {
  it('undefined and {} match everything', () => {
    for (const where of [undefined, {}]) {
      expect(match(where, {})).toBe(true)
      expect(match(where, { a: 1, b: [1, 2], c: null })).toBe(true)
    }
  })

  it('{} nested in logical operators matches everything', () => {
    expect(match({ $and: [{}] }, { a: 1 })).toBe(true)
    expect(match({ $or: [{}] }, { a: 1 })).toBe(true)
    expect(match({ $not: {} }, { a: 1 })).toBe(false)
  })
})

describe('compileWhere: equality', () => {
  it('matches scalars strictly', () => {
    expect(match({ status: 'published' }, { status: 'published' })).toBe(true)
    expect(match({ status: 'published' }, { status: 'draft' })).toBe(false)
    expect(match({ n: 1 }, { n: 1 })).toBe(true)
    expect(match({ n: 1 }, { n: '1' })).toBe(false)
    expect(match({ b: true }, { b: true })).toBe(true)
    expect(match({ b: true }, { b: 1 })).toBe(false)
    expect(match({ z: null }, { z: null })).toBe(true)
    expect(match({ z: null }, { z: 0 })).toBe(false)
    expect(match({ z: 0 }, { z: false })).toBe(false)
  })

  it('treats -0 and 0 as equal', () => {
    expect(match({ n: 0 }, { n: -0 })).toBe(true)
  })

  it('ANDs the keys of an expression', () => {
    const where = { a: 1, b: 'x' }
    expect(match(where, { a: 1, b: 'x' })).toBe(true)
    expect(match(where, { a: 1, b: 'y' })).toBe(false)
    expect(match(where, { a: 2, b: 'x' })).toBe(false)
  })

  it('compares objects deeply regardless of key order', () => {
    const where = { meta: { kind: 'post', v: 2, tags: ['a', 'b'] } }
    expect(match(where, { meta: { v: 2, tags: ['a', 'b'], kind: 'post' } })).toBe(true)
    expect(match(where, { meta: { v: 2, tags: ['b', 'a'], kind: 'post' } })).toBe(false)
    expect(match(where, { meta: { v: 2, tags: ['a', 'b'], kind: 'post', extra: 1 } })).toBe(false)
    expect(match(where, { meta: { v: 2, kind: 'post' } })).toBe(false)
    expect(match(where, { meta: 'post' })).toBe(false)
  })

  it('compares arrays in order', () => {
    expect(match({ list: [1, 2] }, { list: [1, 2] })).toBe(true)
    expect(match({ list: [1, 2] }, { list: [2, 1] })).toBe(false)
    expect(match({ list: [1, 2] }, { list: [1, 2, 3] })).toBe(false)
    expect(match({ list: [] }, { list: [] })).toBe(true)
    expect(match({ list: [] }, { list: {} })).toBe(false)
  })

  it('{} as a condition is equality with the empty object', () => {
    expect(match({ o: {} }, { o: {} })).toBe(true)
    expect(match({ o: {} }, { o: { a: 1 } })).toBe(false)
    expect(match({ o: {} }, {})).toBe(false)
  })

  it('an object whose keys do not all start with "$" is an equality match', () => {
    expect(match({ o: { $gt: 1, x: 2 } }, { o: { $gt: 1, x: 2 } })).toBe(true)
    expect(match({ o: { $gt: 1, x: 2 } }, { o: 5 })).toBe(false)
    // unknown "$" keys are not checked inside such literal objects
    expect(match({ o: { a: { $foo: 1 } } }, { o: { a: { $foo: 1 } } })).toBe(true)
  })

  it('matches an array field containing the value (scalar or not)', () => {
    expect(match({ tags: 'news' }, { tags: ['sport', 'news'] })).toBe(true)
    expect(match({ tags: 'news' }, { tags: ['sport'] })).toBe(false)
    expect(match({ tags: null }, { tags: [1, null] })).toBe(true)
    expect(match({ pts: { x: 1 } }, { pts: [{ x: 2 }, { x: 1 }] })).toBe(true)
    expect(match({ m: [1, 2] }, { m: [[3], [1, 2]] })).toBe(true)
    expect(match({ m: [1, 2] }, { m: [1, 2] })).toBe(true)
    expect(match({ m: [1] }, { m: [1, 2] })).toBe(false)
  })

  it('$eq behaves like a plain value', () => {
    expect(match({ a: { $eq: 1 } }, { a: 1 })).toBe(true)
    expect(match({ a: { $eq: 1 } }, { a: 2 })).toBe(false)
    expect(match({ a: { $eq: 1 } }, { a: [0, 1] })).toBe(true)
    expect(match({ a: { $eq: { b: 1 } } }, { a: { b: 1 } })).toBe(true)
    expect(match({ a: { $eq: { $gt: 1 } } }, { a: { $gt: 1 } })).toBe(true)
    expect(match({ a: { $eq: null } }, { a: null })).toBe(true)
  })
})

describe('compileWhere: missing fields', () => {
  const empty = {}
  it('only $ne, $nin and $exists:false match a missing field', () => {
    expect(match({ a: 1 }, empty)).toBe(false)
    expect(match({ a: null }, empty)).toBe(false)
    expect(match({ a: {} }, empty)).toBe(false)
    expect(match({ a: { $eq: null } }, empty)).toBe(false)
    expect(match({ a: { $gt: 0 } }, empty)).toBe(false)
    expect(match({ a: { $gte: '' } }, empty)).toBe(false)
    expect(match({ a: { $lt: 0 } }, empty)).toBe(false)
    expect(match({ a: { $lte: 0 } }, empty)).toBe(false)
    expect(match({ a: { $in: [null, 1] } }, empty)).toBe(false)
    expect(match({ a: { $exists: true } }, empty)).toBe(false)

    expect(match({ a: { $ne: 1 } }, empty)).toBe(true)
    expect(match({ a: { $ne: null } }, empty)).toBe(true)
    expect(match({ a: { $nin: [1, null] } }, empty)).toBe(true)
    expect(match({ a: { $exists: false } }, empty)).toBe(true)
  })

  it('a missing intermediate object makes the path missing', () => {
    expect(match({ 'a.b': { $exists: false } }, { a: 1 })).toBe(true)
    expect(match({ 'a.b': { $exists: false } }, { a: null })).toBe(true)
    expect(match({ 'a.b': { $exists: false } }, { a: 'str' })).toBe(true)
    expect(match({ 'a.b': 1 }, {})).toBe(false)
  })

  it('does not read inherited properties', () => {
    expect(match({ toString: { $exists: true } }, {})).toBe(false)
    expect(match({ constructor: { $exists: false } }, {})).toBe(true)
    expect(match({ 'a.hasOwnProperty': { $exists: true } }, { a: {} })).toBe(false)
    expect(match({ 'a.length': { $exists: true } }, { a: [1] })).toBe(false)
    const parsed = JSON.parse('{"__proto__": {"x": 1}}') as JsonObject
    expect(match({ '__proto__.x': 1 }, parsed)).toBe(true)
    expect(match({ '__proto__.x': 1 }, {})).toBe(false)
  })
})

describe('compileWhere: $ne', () => {
  it('is the negation of equality', () => {
    expect(match({ a: { $ne: 1 } }, { a: 2 })).toBe(true)
    expect(match({ a: { $ne: 1 } }, { a: 1 })).toBe(false)
    expect(match({ a: { $ne: 1 } }, { a: [2, 3] })).toBe(true)
    expect(match({ a: { $ne: 1 } }, { a: [1, 3] })).toBe(false)
    expect(match({ a: { $ne: { b: 1 } } }, { a: { b: 1 } })).toBe(false)
    expect(match({ a: { $ne: { b: 1 } } }, { a: { b: 2 } })).toBe(true)
    expect(match({ a: { $ne: null } }, { a: null })).toBe(false)
    expect(match({ a: { $ne: null } }, { a: 0 })).toBe(true)
  })
})

describe('compileWhere: comparisons', () => {
  it('compares numbers', () => {
    expect(match({ v: { $gt: 5 } }, { v: 6 })).toBe(true)
    expect(match({ v: { $gt: 5 } }, { v: 5 })).toBe(false)
    expect(match({ v: { $gte: 5 } }, { v: 5 })).toBe(true)
    expect(match({ v: { $gte: 5 } }, { v: 4.9 })).toBe(false)
    expect(match({ v: { $lt: 5 } }, { v: 4 })).toBe(true)
    expect(match({ v: { $lt: 5 } }, { v: 5 })).toBe(false)
    expect(match({ v: { $lte: 5 } }, { v: 5 })).toBe(true)
    expect(match({ v: { $lte: 5 } }, { v: 6 })).toBe(false)
    expect(match({ v: { $lt: 0 } }, { v: -1.5 })).toBe(true)
  })

  it('compares strings by code units', () => {
    expect(match({ s: { $gt: 'b' } }, { s: 'c' })).toBe(true)
    expect(match({ s: { $gt: 'b' } }, { s: 'a' })).toBe(false)
    expect(match({ s: { $gte: 'b' } }, { s: 'b' })).toBe(true)
    expect(match({ s: { $lt: 'b' } }, { s: 'B' })).toBe(true) // 'B' < 'b'
    expect(match({ s: { $lte: '2024-01-31' } }, { s: '2024-01-15' })).toBe(true)
    expect(match({ s: { $lt: '10' } }, { s: '9' })).toBe(false) // not numeric
  })

  it('never compares across types', () => {
    expect(match({ v: { $gt: 5 } }, { v: '6' })).toBe(false)
    expect(match({ v: { $lt: 5 } }, { v: '4' })).toBe(false)
    expect(match({ v: { $lt: '5' } }, { v: 4 })).toBe(false)
    expect(match({ v: { $gte: 0 } }, { v: null })).toBe(false)
    expect(match({ v: { $gte: 0 } }, { v: false })).toBe(false)
    expect(match({ v: { $lte: 0 } }, { v: {} })).toBe(false)
    expect(match({ v: { $lte: '' } }, { v: { a: 1 } })).toBe(false)
  })

  it('ANDs several operators in one condition', () => {
    const where = { v: { $gte: 100, $lt: 1000 } }
    expect(match(where, { v: 100 })).toBe(true)
    expect(match(where, { v: 999 })).toBe(true)
    expect(match(where, { v: 1000 })).toBe(false)
    expect(match(where, { v: 99 })).toBe(false)
  })

  it('matches when any element of an array field satisfies the operator', () => {
    expect(match({ scores: { $gt: 5 } }, { scores: [1, 7] })).toBe(true)
    expect(match({ scores: { $gt: 5 } }, { scores: [1, 2] })).toBe(false)
    expect(match({ scores: { $gt: 5 } }, { scores: [] })).toBe(false)
    expect(match({ scores: { $gt: 5 } }, { scores: ['9'] })).toBe(false)
    // each operator is evaluated on its own (MongoDB semantics)
    expect(match({ scores: { $gt: 1, $lt: 5 } }, { scores: [0, 9] })).toBe(true)
  })
})

describe('compileWhere: $in / $nin', () => {
  it('$in matches one of the listed values', () => {
    const where = { lang: { $in: ['en', 'fr'] } }
    expect(match(where, { lang: 'en' })).toBe(true)
    expect(match(where, { lang: 'fr' })).toBe(true)
    expect(match(where, { lang: 'de' })).toBe(false)
    expect(match(where, { lang: ['de', 'fr'] })).toBe(true)
    expect(match(where, { lang: ['de'] })).toBe(false)
  })

  it('$in distinguishes types and supports null and composite values', () => {
    expect(match({ a: { $in: [1] } }, { a: '1' })).toBe(false)
    expect(match({ a: { $in: [null] } }, { a: null })).toBe(true)
    expect(match({ a: { $in: [true] } }, { a: true })).toBe(true)
    expect(match({ a: { $in: [{ x: 1 }, [1, 2]] } }, { a: { x: 1 } })).toBe(true)
    expect(match({ a: { $in: [{ x: 1 }, [1, 2]] } }, { a: [1, 2] })).toBe(true)
    expect(match({ a: { $in: [{ x: 1 }, [1, 2]] } }, { a: [[1, 2]] })).toBe(true)
    expect(match({ a: { $in: [{ x: 1 }, [1, 2]] } }, { a: [{ x: 1 }] })).toBe(true)
    expect(match({ a: { $in: [{ x: 1 }, [1, 2]] } }, { a: { x: 2 } })).toBe(false)
    expect(match({ a: { $in: ['x', { x: 1 }] } }, { a: 'x' })).toBe(true)
  })

  it('empty $in matches nothing and empty $nin everything', () => {
    expect(match({ a: { $in: [] } }, { a: 1 })).toBe(false)
    expect(match({ a: { $nin: [] } }, { a: 1 })).toBe(true)
    expect(match({ a: { $nin: [] } }, {})).toBe(true)
  })

  it('$nin is the negation of $in', () => {
    const where = { lang: { $nin: ['en', 'fr'] } }
    expect(match(where, { lang: 'de' })).toBe(true)
    expect(match(where, { lang: 'en' })).toBe(false)
    expect(match(where, { lang: ['de', 'en'] })).toBe(false)
    expect(match(where, { lang: ['de'] })).toBe(true)
    expect(match(where, {})).toBe(true)
  })

  it('accepts exactly the maximum number of values', () => {
    const values = Array.from({ length: MAX_IN_VALUES }, (_, i) => i)
    const where = { n: { $in: values } }
    expect(match(where, { n: MAX_IN_VALUES - 1 })).toBe(true)
    expect(match(where, { n: MAX_IN_VALUES })).toBe(false)
  })
})

describe('compileWhere: $exists', () => {
  it('true matches present fields including null, false only missing ones', () => {
    expect(match({ a: { $exists: true } }, { a: null })).toBe(true)
    expect(match({ a: { $exists: true } }, { a: false })).toBe(true)
    expect(match({ a: { $exists: true } }, { a: 0 })).toBe(true)
    expect(match({ a: { $exists: false } }, { a: null })).toBe(false)
    expect(match({ a: { $exists: false } }, { b: 1 })).toBe(true)
  })

  it('combines with other operators', () => {
    expect(match({ a: { $exists: true, $ne: null } }, { a: 1 })).toBe(true)
    expect(match({ a: { $exists: true, $ne: null } }, { a: null })).toBe(false)
    expect(match({ a: { $exists: true, $ne: null } }, {})).toBe(false)
  })
})

describe('compileWhere: field paths', () => {
  it('descends into nested objects', () => {
    expect(match({ 'author.name': 'ada' }, { author: { name: 'ada' } })).toBe(true)
    expect(match({ 'author.name': 'ada' }, { author: { name: 'bob' } })).toBe(false)
    expect(match({ 'a.b.c.d': { $gt: 1 } }, { a: { b: { c: { d: 2 } } } })).toBe(true)
  })

  it('indexes arrays with numeric segments', () => {
    expect(match({ 'items.0.sku': 'x' }, { items: [{ sku: 'x' }, { sku: 'y' }] })).toBe(true)
    expect(match({ 'items.1.sku': 'x' }, { items: [{ sku: 'x' }, { sku: 'y' }] })).toBe(false)
    expect(match({ 'items.2': { $exists: false } }, { items: [1, 2] })).toBe(true)
    expect(match({ 'items.01': { $exists: false } }, { items: [1, 2] })).toBe(true)
    expect(match({ 'm.0': 'zero' }, { m: { 0: 'zero' } })).toBe(true)
  })

  it('does not fan out over arrays of objects', () => {
    expect(match({ 'items.sku': 'x' }, { items: [{ sku: 'x' }] })).toBe(false)
    expect(match({ 'items.sku': { $exists: false } }, { items: [{ sku: 'x' }] })).toBe(true)
  })

  it('a literal key with a dot is not reachable as one field', () => {
    expect(match({ 'a.b': 1 }, { 'a.b': 1 })).toBe(false)
  })

  it('getField and fieldGetter read paths the same way', () => {
    const value = { a: { b: [10, { c: 'x' }] }, n: 0 }
    expect(getField(value, 'a.b.1.c')).toBe('x')
    expect(getField(value, 'a.b.0')).toBe(10)
    expect(getField(value, 'n')).toBe(0)
    expect(getField(value, 'a.z')).toBeUndefined()
    expect(fieldGetter('a.b')(value)).toEqual([10, { c: 'x' }])
  })
})

describe('compileWhere: logical operators', () => {
  it('$and requires all', () => {
    const where: JsonObject = { $and: [{ a: 1 }, { b: { $gt: 2 } }] }
    expect(match(where, { a: 1, b: 3 })).toBe(true)
    expect(match(where, { a: 1, b: 2 })).toBe(false)
    expect(match(where, { a: 0, b: 3 })).toBe(false)
  })

  it('$and allows two conditions on the same field', () => {
    const where = { $and: [{ tags: 'a' }, { tags: 'b' }] }
    expect(match(where, { tags: ['a', 'b'] })).toBe(true)
    expect(match(where, { tags: ['a'] })).toBe(false)
  })

  it('$or requires one', () => {
    const where: JsonObject = { $or: [{ pinned: true }, { score: { $gt: 9 } }, { 'a.b': 'x' }] }
    expect(match(where, { pinned: true })).toBe(true)
    expect(match(where, { score: 10 })).toBe(true)
    expect(match(where, { a: { b: 'x' } })).toBe(true)
    expect(match(where, { pinned: false, score: 9 })).toBe(false)
    expect(match(where, {})).toBe(false)
  })

  it('$not negates a whole expression and matches missing fields', () => {
    expect(match({ $not: { draft: true } }, { draft: true })).toBe(false)
    expect(match({ $not: { draft: true } }, { draft: false })).toBe(true)
    expect(match({ $not: { draft: true } }, {})).toBe(true)
    expect(match({ $not: { a: 1, b: 2 } }, { a: 1, b: 2 })).toBe(false)
    expect(match({ $not: { a: 1, b: 2 } }, { a: 1, b: 3 })).toBe(true)
    expect(match({ $not: { $not: { a: 1 } } }, { a: 1 })).toBe(true)
  })

  it('combines logical operators with fields at the same level', () => {
    const where = { type: 'post', $or: [{ lang: 'en' }, { lang: 'fr' }], $not: { hidden: true } }
    expect(match(where, { type: 'post', lang: 'fr' })).toBe(true)
    expect(match(where, { type: 'post', lang: 'fr', hidden: true })).toBe(false)
    expect(match(where, { type: 'page', lang: 'fr' })).toBe(false)
    expect(match(where, { type: 'post', lang: 'de' })).toBe(false)
  })

  it('nests', () => {
    const where: JsonObject = {
      $or: [
        { $and: [{ a: 1 }, { $or: [{ b: 1 }, { c: 1 }] }] },
        { $not: { $or: [{ d: { $exists: true } }, { e: { $exists: true } }] } }
      ]
    }
    expect(match(where, { a: 1, c: 1, d: 1 })).toBe(true)
    expect(match(where, { a: 1, d: 1 })).toBe(false)
    expect(match(where, { x: 1 })).toBe(true)
    expect(match(where, { e: 1 })).toBe(false)
  })
})

describe('compileWhere: validation', () => {
  it('rejects a non-object filter', () => {
    expectInvalid(null, /must be a JSON object/)
    expectInvalid([], /must be a JSON object/)
    expectInvalid('status', /must be a JSON object/)
    expectInvalid(new Date(), /must be a JSON object/)
  })

  it('rejects unknown field operators, naming the field and the valid ones', () => {
    expectInvalid({ views: { $gtx: 5 } }, 'unknown operator "$gtx" at "views"; use one of $eq $ne $gt $gte $lt $lte $in $nin $exists')
    expectInvalid({ $or: [{ a: 1 }, { 'x.y': { $regex: 'a' } }] }, /unknown operator "\$regex" at "\$or\[1\]\.x\.y"/)
    expectInvalid({ a: { $or: [{ b: 1 }] } }, /unknown operator "\$or" at "a".*combines whole expressions/)
    expectInvalid({ a: { $not: { $gt: 1 } } }, /unknown operator "\$not" at "a"/)
  })

  it('rejects unknown logical operators and field operators at expression level', () => {
    expectInvalid({ $nor: [{ a: 1 }] }, /unknown logical operator "\$nor" at the top level; use one of \$and \$or \$not/)
    expectInvalid({ $gt: 5 }, /unknown logical operator "\$gt".*inside a field's condition/)
    expectInvalid({ $and: [{ $foo: 1 }] }, /unknown logical operator "\$foo" at "\$and\[0\]"/)
  })

  it('rejects malformed $and / $or / $not', () => {
    expectInvalid({ $and: [] }, /"\$and" at the top level needs a non-empty array/)
    expectInvalid({ $or: { a: 1 } }, /"\$or" at the top level needs a non-empty array.*got an object/)
    expectInvalid({ $or: [1] }, /expected a filter expression .* at "\$or\[0\]", got number 1/)
    expectInvalid({ $and: [{ a: 1 }, [{ b: 1 }]] }, /at "\$and\[1\]", got an array/)
    expectInvalid({ $not: [{ a: 1 }] }, /expected a filter expression .* at "\$not"/)
    expectInvalid({ $not: null }, /at "\$not", got null/)
  })

  it('rejects operator arguments of the wrong type', () => {
    expectInvalid({ v: { $gt: null } }, /"\$gt" at "v" needs a number or a string, got null/)
    expectInvalid({ v: { $gte: true } }, /"\$gte" at "v" needs a number or a string/)
    expectInvalid({ v: { $lt: [1] } }, /"\$lt" at "v" needs a number or a string, got an array/)
    expectInvalid({ v: { $lte: { a: 1 } } }, /"\$lte" at "v" needs a number or a string, got an object/)
    expectInvalid({ v: { $in: 'a' } }, /"\$in" at "v" needs an array of values/)
    expectInvalid({ v: { $nin: { a: 1 } } }, /"\$nin" at "v" needs an array of values/)
    expectInvalid({ v: { $exists: 1 } }, /"\$exists" at "v" needs true or false, got number 1/)
    expectInvalid({ v: { $exists: 'yes' } }, /"\$exists" at "v" needs true or false/)
  })

  it('rejects bad field paths', () => {
    expectInvalid({ 'a..b': 1 }, /invalid field path "a\.\.b"/)
    expectInvalid({ '.a': 1 }, /invalid field path/)
    expectInvalid({ 'a.': 1 }, /invalid field path/)
    expectInvalid({ '': 1 }, /invalid field path/)
  })

  it('rejects non-JSON values', () => {
    expectInvalid({ a: undefined } as unknown as JsonObject, /at "a" is undefined, which is not a JSON value/)
    expectInvalid({ a: { $gt: Number.NaN } }, /at "a\.\$gt" is NaN/)
    expectInvalid({ a: Infinity }, /is Infinity, which is not a JSON number/)
    expectInvalid({ a: (() => 1) as unknown as JsonObject }, /is a function/)
    expectInvalid({ a: { $in: [1, new Map()] } } as unknown as JsonObject, /at "a\.\$in\[1\]" is a Map object/)
    expectInvalid({ a: 1n } as unknown as JsonObject, /is a bigint/)
  })

  it('checks the whole expression, not only the branches a record reaches', () => {
    expectInvalid({ $or: [{ a: 1 }, { b: { $bad: 1 } }] }, /\$bad/)
  })

  it('accepts an object with a null prototype', () => {
    const where = Object.create(null) as JsonObject
    where.a = 1
    expect(match(where, { a: 1 })).toBe(true)
  })
})

describe('compileWhere: limits', () => {
  /** An object nested `levels` deep: {a: {a: … 1}} has depth `levels`. */
  function nestedLiteral (levels: number): JsonObject {
    let value: JsonObject = { a: 1 }
    for (let i = 1; i < levels; i++) value = { a: value }
    return value
  }

  it('allows 16 levels of nesting and rejects 17', () => {
    expect(MAX_FILTER_DEPTH).toBe(16)
    // top-level object is level 1, so the literal gets 15 levels
    const ok = { x: nestedLiteral(MAX_FILTER_DEPTH - 1) }
    expect(match(ok, { x: nestedLiteral(MAX_FILTER_DEPTH - 1) })).toBe(true)
    expectInvalid({ x: nestedLiteral(MAX_FILTER_DEPTH) }, /nests too deeply .*at most 16 levels/)
  })

  it('counts logical nesting towards the depth', () => {
    let where: JsonObject = { a: 1 }
    for (let i = 0; i < 7; i++) where = { $and: [where] } // 1 + 7 * 2 = 15 levels
    expect(match(where, { a: 1 })).toBe(true)
    expect(match({ $not: where }, { a: 1 })).toBe(false) // 16 levels
    expectInvalid({ $and: [{ $not: where }] }, /nests too deeply/) // 18 levels
  })

  it('rejects very deep filters without overflowing the stack', () => {
    let where: JsonObject = { a: 1 }
    for (let i = 0; i < 100_000; i++) where = { $not: where }
    expectInvalid(where, /nests too deeply/)
  })

  it('allows 256 nodes and rejects more', () => {
    expect(MAX_FILTER_NODES).toBe(256)
    // root object (1) + $or (1) + n item objects + n field conditions
    const build = (n: number): JsonObject => ({ $or: Array.from({ length: n }, (_, i) => ({ [`f${i}`]: i })) })
    expect(match(build(127), { f126: 126 })).toBe(true) // 2 + 254 = 256 nodes
    expectInvalid(build(128), /too large .*at most 256 nodes/)
  })

  it('counts operators as nodes', () => {
    const ops = { $exists: true, $ne: null, $gt: 0, $lt: 10 }
    // root (1) + n × (field 1 + 4 operators)
    const build = (n: number): JsonObject => Object.fromEntries(Array.from({ length: n }, (_, i) => [`f${i}`, ops]))
    expect(() => compileWhere(build(51))).not.toThrow() // 256
    expectInvalid(build(52), /too large/)
  })

  it('rejects $in and $nin lists over the maximum', () => {
    const values = Array.from({ length: MAX_IN_VALUES + 1 }, (_, i) => i)
    expectInvalid({ n: { $in: values } }, /"\$in" at "n" lists 1001 values; at most 1000/)
    expectInvalid({ n: { $nin: values } }, /"\$nin" at "n" lists 1001 values/)
  })
})

describe('compileWhere: compiled once', () => {
  it('does not depend on the filter object after compiling', () => {
    const where: JsonObject = { a: { $in: [1, 2] }, b: 'x' }
    const predicate = compileWhere(where)
    ;((where.a as JsonObject).$in as number[]).push(3)
    where.b = 'y'
    expect(predicate({ a: 2, b: 'x' })).toBe(true)
    expect(predicate({ a: 3, b: 'x' })).toBe(false)
  })

  it('evaluates many records quickly', () => {
    const predicate = compileWhere({
      status: 'published',
      views: { $gte: 10 },
      lang: { $in: Array.from({ length: 1000 }, (_, i) => `l${i}`) },
      $or: [{ 'author.name': 'ada' }, { tags: 'news' }]
    })
    const records: JsonObject[] = Array.from({ length: 1000 }, (_, i) => ({
      status: i % 2 === 0 ? 'published' : 'draft',
      views: i,
      lang: `l${i % 1200}`,
      author: { name: i % 3 === 0 ? 'ada' : 'bob' },
      tags: ['x', i % 5 === 0 ? 'news' : 'y']
    }))
    const start = performance.now()
    let count = 0
    for (let round = 0; round < 100; round++) {
      for (const record of records) if (predicate(record)) count++
    }
    const elapsed = performance.now() - start
    expect(count).toBeGreaterThan(0)
    expect(elapsed).toBeLessThan(2000) // 100k evaluations; typically a few tens of ms
  })
})

describe('jsonEqual', () => {
  it('compares JSON values deeply', () => {
    expect(jsonEqual({ a: [1, { b: null }] }, { a: [1, { b: null }] })).toBe(true)
    expect(jsonEqual({ a: 1, b: 2 }, { b: 2, a: 1 })).toBe(true)
    expect(jsonEqual({ a: 1 }, { a: 1, b: undefined } as unknown as JsonObject)).toBe(false)
    expect(jsonEqual([1], { 0: 1 })).toBe(false)
    expect(jsonEqual({ 0: 1 }, [1])).toBe(false)
    expect(jsonEqual(null, {})).toBe(false)
    expect(jsonEqual('1', 1)).toBe(false)
  })
})
