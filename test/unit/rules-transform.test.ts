import { describe, expect, it } from 'vitest'
import { InvalidInputError } from '../../src/core/errors.js'
import type { JsonObject } from '../../src/core/types.js'
import { compileFieldTransform, parseFieldList, parseRenameList, targetId, type FieldTransformSpec } from '../../src/rules/transform.js'

const apply = (spec: FieldTransformSpec, value: JsonObject): JsonObject => compileFieldTransform(spec)(value)

function expectInvalid (fn: () => unknown, pattern: RegExp): void {
  let caught: unknown
  try {
    fn()
  } catch (err) {
    caught = err
  }
  expect(caught).toBeInstanceOf(InvalidInputError)
  const err = caught as InvalidInputError
  expect(err.code).toBe('INVALID_TRANSFORM')
  expect(err.status).toBe(400)
  expect(err.message).toMatch(pattern)
}

const record = (): JsonObject => ({ id: 1, title: 'T', body: 'B', meta: { tags: ['a'] }, secret: 's' })

describe('compileFieldTransform', () => {
  it('with an empty spec returns the input itself (nothing to copy)', () => {
    const value = record()
    for (const spec of [{}, { include: [] }, { exclude: [] }, { rename: {} }]) {
      const out = apply(spec, value)
      expect(out).toBe(value)
    }
  })

  it('include keeps only the listed top-level fields', () => {
    expect(apply({ include: ['title', 'meta'] }, record())).toEqual({ title: 'T', meta: { tags: ['a'] } })
  })

  it('include ignores absent fields and keeps present null values', () => {
    expect(apply({ include: ['title', 'missing'] }, record())).toEqual({ title: 'T' })
    expect(apply({ include: ['x'] }, { x: null })).toEqual({ x: null })
    expect(apply({ include: ['missing'] }, record())).toEqual({})
  })

  it('include names top-level keys literally', () => {
    expect(apply({ include: ['meta.tags'] }, record())).toEqual({})
    expect(apply({ include: ['a.b'] }, { 'a.b': 1, a: { b: 2 } })).toEqual({ 'a.b': 1 })
  })

  it('include does not pick up inherited properties', () => {
    expect(apply({ include: ['toString', 'constructor'] }, { a: 1 })).toEqual({})
  })

  it('exclude drops the listed fields', () => {
    expect(apply({ exclude: ['secret', 'body', 'missing'] }, record())).toEqual({ id: 1, title: 'T', meta: { tags: ['a'] } })
  })

  it('exclude applies after include', () => {
    expect(apply({ include: ['title', 'secret'], exclude: ['secret'] }, record())).toEqual({ title: 'T' })
  })

  it('rename moves fields to new names', () => {
    expect(apply({ rename: { title: 'name', body: 'text' } }, record()))
      .toEqual({ id: 1, name: 'T', text: 'B', meta: { tags: ['a'] }, secret: 's' })
  })

  it('renaming onto an existing field overwrites it', () => {
    expect(apply({ rename: { title: 'body' } }, record())).toEqual({ id: 1, body: 'T', meta: { tags: ['a'] }, secret: 's' })
  })

  it('renaming a missing field does nothing, also to an existing target', () => {
    expect(apply({ rename: { missing: 'x' } }, record())).toEqual(record())
    expect(apply({ rename: { missing: 'title' } }, record())).toEqual(record())
  })

  it('renames a field whose value is null', () => {
    expect(apply({ rename: { a: 'b' } }, { a: null })).toEqual({ b: null })
  })

  it('applies renames simultaneously (no cascade, swaps work)', () => {
    expect(apply({ rename: { a: 'b', b: 'c' } }, { a: 1, b: 2 })).toEqual({ b: 1, c: 2 })
    expect(apply({ rename: { b: 'c', a: 'b' } }, { a: 1, b: 2 })).toEqual({ b: 1, c: 2 })
    expect(apply({ rename: { a: 'b', b: 'a' } }, { a: 1, b: 2 })).toEqual({ a: 2, b: 1 })
    expect(apply({ rename: { a: 'b', b: 'c' } }, { a: 1 })).toEqual({ b: 1 })
  })

  it('renaming a field to itself keeps it', () => {
    expect(apply({ rename: { a: 'a' } }, { a: 1, b: 2 })).toEqual({ a: 1, b: 2 })
  })

  it('renames only fields that survived include and exclude', () => {
    expect(apply({ include: ['title'], rename: { body: 'text' } }, record())).toEqual({ title: 'T' })
    expect(apply({ exclude: ['body'], rename: { body: 'text' } }, { body: 'B', x: 1 })).toEqual({ x: 1 })
    expect(apply({ include: ['title', 'body'], exclude: ['body'], rename: { title: 'name' } }, record())).toEqual({ name: 'T' })
  })

  it('never mutates the input', () => {
    const value = record()
    const before = structuredClone(value)
    const specs: FieldTransformSpec[] = [
      {},
      { include: ['title'] },
      { exclude: ['title', 'secret'] },
      { rename: { title: 'body', body: 'x' } },
      { include: ['title', 'body', 'secret'], exclude: ['secret'], rename: { title: 'name' } }
    ]
    for (const spec of specs) {
      const out = apply(spec, value)
      if (Object.keys(spec).length > 0) expect(out).not.toBe(value)
      expect(value).toEqual(before)
    }
    expect(Object.keys(value)).toEqual(Object.keys(before))
  })

  it('does not depend on the spec after compiling', () => {
    const spec = { include: ['a', 'b'], rename: { a: 'x' } as Record<string, string> }
    const transform = compileFieldTransform(spec)
    spec.include.push('c')
    spec.rename.b = 'y'
    expect(transform({ a: 1, b: 2, c: 3 })).toEqual({ x: 1, b: 2 })
  })

  it('handles a "__proto__" field as an ordinary own field', () => {
    const value = JSON.parse('{"__proto__": {"polluted": true}, "a": 1}') as JsonObject
    const kept = apply({ include: ['__proto__'] }, value)
    expect(Object.hasOwn(kept, '__proto__')).toBe(true)
    expect(Object.getPrototypeOf(kept)).toBe(Object.prototype)
    const renamed = apply({ rename: { a: '__proto__' } }, { a: { polluted: true } })
    expect(Object.hasOwn(renamed, '__proto__')).toBe(true)
    expect(JSON.parse(JSON.stringify(renamed))).toEqual(JSON.parse('{"__proto__": {"polluted": true}}'))
    expect(Object.getPrototypeOf(renamed)).toBe(Object.prototype)
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    expect(apply({ exclude: ['__proto__'] }, value)).toEqual({ a: 1 })
  })

  describe('validation', () => {
    it('rejects a spec that is not an object', () => {
      expectInvalid(() => compileFieldTransform(null as unknown as FieldTransformSpec), /must be an object/)
    })

    it('rejects include/exclude that are not arrays of non-empty strings', () => {
      expectInvalid(() => compileFieldTransform({ include: 'title' as unknown as string[] }), /"include" must be an array/)
      expectInvalid(() => compileFieldTransform({ include: ['a', ''] }), /"include" lists an empty field name/)
      expectInvalid(() => compileFieldTransform({ exclude: [''] }), /"exclude" lists an empty field name/)
      expectInvalid(() => compileFieldTransform({ exclude: [1] as unknown as string[] }), /"exclude" lists a number/)
      expectInvalid(() => compileFieldTransform({ include: [null] as unknown as string[] }), /"include" lists a null/)
    })

    it('accepts repeated names in include/exclude', () => {
      expect(apply({ include: ['a', 'a'], exclude: ['b', 'b'] }, { a: 1, b: 2 })).toEqual({ a: 1 })
    })

    it('rejects a malformed rename', () => {
      expectInvalid(() => compileFieldTransform({ rename: [] as unknown as Record<string, string> }), /"rename" must be an object/)
      expectInvalid(() => compileFieldTransform({ rename: 'a=b' as unknown as Record<string, string> }), /"rename" must be an object/)
      expectInvalid(() => compileFieldTransform({ rename: { '': 'x' } }), /empty field name/)
      expectInvalid(() => compileFieldTransform({ rename: { a: '' } }), /maps "a" to an empty name/)
      expectInvalid(() => compileFieldTransform({ rename: { a: 1 } as unknown as Record<string, string> }), /maps "a" to a non-string/)
    })

    it('rejects duplicate rename targets', () => {
      expectInvalid(() => compileFieldTransform({ rename: { a: 'x', b: 'x' } }), /maps both "a" and "b" to "x"/)
    })
  })
})

describe('targetId', () => {
  it('returns the source id without a key field', () => {
    expect(targetId({ id: 'other' }, 'src-1', undefined)).toBe('src-1')
  })

  it('uses a non-empty string field', () => {
    expect(targetId({ slug: 'hello' }, 'src-1', 'slug')).toBe('hello')
    expect(targetId({ slug: ' ' }, 'src-1', 'slug')).toBe(' ')
  })

  it('stringifies finite numbers', () => {
    expect(targetId({ n: 42 }, 's', 'n')).toBe('42')
    expect(targetId({ n: 0 }, 's', 'n')).toBe('0')
    expect(targetId({ n: -0 }, 's', 'n')).toBe('0')
    expect(targetId({ n: 1.5 }, 's', 'n')).toBe('1.5')
    expect(targetId({ n: -7 }, 's', 'n')).toBe('-7')
  })

  it('reads dotted paths', () => {
    expect(targetId({ author: { id: 'ada' } }, 's', 'author.id')).toBe('ada')
    expect(targetId({ ids: ['first', 'second'] }, 's', 'ids.1')).toBe('second')
    expect(targetId({ author: 'ada' }, 's', 'author.id')).toBeUndefined()
  })

  it('returns undefined when the record cannot be placed', () => {
    expect(targetId({}, 's', 'slug')).toBeUndefined()
    expect(targetId({ slug: '' }, 's', 'slug')).toBeUndefined()
    expect(targetId({ slug: null }, 's', 'slug')).toBeUndefined()
    expect(targetId({ slug: true }, 's', 'slug')).toBeUndefined()
    expect(targetId({ slug: ['a'] }, 's', 'slug')).toBeUndefined()
    expect(targetId({ slug: { a: 1 } }, 's', 'slug')).toBeUndefined()
    expect(targetId({ n: Number.NaN }, 's', 'n')).toBeUndefined()
    expect(targetId({ n: Infinity }, 's', 'n')).toBeUndefined()
    expect(targetId({}, 's', 'toString')).toBeUndefined()
  })
})

describe('parseRenameList', () => {
  it('parses old=new pairs', () => {
    expect(parseRenameList('old=new,a=b')).toEqual({ old: 'new', a: 'b' })
    expect(parseRenameList('title=name')).toEqual({ title: 'name' })
  })

  it('trims whitespace and ignores empty entries', () => {
    expect(parseRenameList(' old = new , a=b ,, ')).toEqual({ old: 'new', a: 'b' })
    expect(parseRenameList('a=b,')).toEqual({ a: 'b' })
    expect(parseRenameList('')).toEqual({})
    expect(parseRenameList('  ')).toEqual({})
  })

  it('keeps dots and other characters in names', () => {
    expect(parseRenameList('a.b=c-d')).toEqual({ 'a.b': 'c-d' })
  })

  it('rejects malformed pairs', () => {
    expectInvalid(() => parseRenameList('old'), /malformed rename "old": write old=new pairs/)
    expectInvalid(() => parseRenameList('a=b,c'), /malformed rename "c"/)
    expectInvalid(() => parseRenameList('=new'), /malformed rename "=new"/)
    expectInvalid(() => parseRenameList('old='), /malformed rename "old="/)
    expectInvalid(() => parseRenameList('a=b=c'), /malformed rename "a=b=c"/)
    expectInvalid(() => parseRenameList(' = '), /malformed rename/)
  })

  it('rejects a field renamed twice and duplicate targets', () => {
    expectInvalid(() => parseRenameList('a=b,a=c'), /field "a" is renamed twice/)
    expectInvalid(() => parseRenameList('a=x,b=x'), /two fields are renamed to "x"/)
  })

  it('produces a map compileFieldTransform accepts', () => {
    const rename = parseRenameList('title=name,__proto__=x')
    expect(Object.hasOwn(rename, '__proto__')).toBe(true)
    expect(Object.getPrototypeOf(rename)).toBe(Object.prototype)
    const out = compileFieldTransform({ rename })(JSON.parse('{"title": "T", "__proto__": 1}') as JsonObject)
    expect(out).toEqual({ name: 'T', x: 1 })
  })
})

describe('parseFieldList', () => {
  it('splits, trims and drops empty entries', () => {
    expect(parseFieldList('a,b,c')).toEqual(['a', 'b', 'c'])
    expect(parseFieldList(' a , b ,,c, ')).toEqual(['a', 'b', 'c'])
    expect(parseFieldList('')).toEqual([])
    expect(parseFieldList(' , ')).toEqual([])
  })

  it('drops repeated names, keeping the first position', () => {
    expect(parseFieldList('b,a,b')).toEqual(['b', 'a'])
  })

  it('keeps names with dots and spaces inside', () => {
    expect(parseFieldList('author.name, first name')).toEqual(['author.name', 'first name'])
  })
})
