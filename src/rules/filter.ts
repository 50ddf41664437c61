/**
 * The `--where` filter language: a small, MongoDB-style query over one JSON
 * record value. A rule only carries the records whose value matches.
 *
 * Examples (as given to `--where` or in a rule's `where`):
 *
 *   {"status": "published"}                          status equals "published"
 *   {"views": {"$gte": 100, "$lt": 1000}}            100 <= views < 1000
 *   {"author.name": "ada"}                           dotted path into nested objects
 *   {"tags": "news"}                                 tags is "news" or an array containing "news"
 *   {"lang": {"$in": ["en", "fr"]}}                  lang is one of the list
 *   {"deletedAt": {"$exists": false}}                the field is absent
 *   {"$or": [{"pinned": true}, {"score": {"$gt": 9}}]}
 *   {"$not": {"draft": true}}                        anything except drafts (also records without "draft")
 *   {"meta": {"kind": "post", "v": 2}}               deep equality with the whole object
 *
 * Grammar
 *   expression  := { key: …, … }   an implicit AND of all its keys ({} matches everything)
 *   key         := field path → condition
 *                | "$and": [expression, …]   (non-empty)
 *                | "$or":  [expression, …]   (non-empty)
 *                | "$not": expression
 *   condition   := operator object   (an object with at least one key, all keys starting with "$";
 *                                      several operators are ANDed)
 *                | any other JSON value (equality; this includes objects whose keys do not all
 *                                      start with "$", and the empty object {})
 *   operator    := "$eq" | "$ne" | "$gt" | "$gte" | "$lt" | "$lte" | "$in" | "$nin" | "$exists"
 *
 * Field paths
 *   Segments are separated by "."; each descends into an object (own keys only). A segment that is
 *   a non-negative integer ("items.0.sku") also indexes into an array. Paths do not fan out over
 *   arrays of objects: "items.sku" on {"items": [{"sku": 1}]} is missing. A path cannot start with
 *   "$" (keys starting with "$" are logical operators), and no segment may be empty.
 *
 * Semantics
 *   - Equality (a plain value or "$eq") is deep: objects compare key by key regardless of key order,
 *     arrays element by element in order. A field holding an array also matches when one of its
 *     elements equals the value (for any value, scalar or not), so {"tags": "a"} matches
 *     {"tags": ["a", "b"]} and {"tags": ["a", "b"]} matches it as well.
 *   - "$gt" "$gte" "$lt" "$lte" take a number or a string (anything else is rejected when the filter
 *     is compiled). They only compare a number with a number or a string with a string (strings by
 *     UTF-16 code units, like JavaScript's `<`); any other pairing is false. On an array field they
 *     match when any element satisfies them. Each operator of an operator object is evaluated on its
 *     own, so {"$gt": 1, "$lt": 5} on [0, 9] matches (0 < 5 and 9 > 1), as in MongoDB.
 *   - "$in": [v, …] matches when the field equals one of the values (with the same array rule as
 *     equality). "$ne" and "$nin" are the exact negations of "$eq" and "$in".
 *   - "$exists": true matches any present field, including one that is null; false only a missing one.
 *   - A missing field matches "$ne", "$nin" and "$exists": false, and nothing else; in particular
 *     {"field": null} does not match a record without "field" (unlike MongoDB).
 *   - "$not" negates a whole expression, so it also matches records where the inner fields are missing.
 *
 * Limits (checked when compiling; violations and every other malformed filter throw
 * InvalidInputError with code INVALID_FILTER and a message naming the bad part):
 *   - at most 16 levels of nested objects and arrays in the whole filter, literal values included;
 *   - at most 256 nodes, where a node is an expression object, a logical operator, a field condition
 *     or a field operator;
 *   - "$in" and "$nin" lists of at most 1000 values.
 *
 * `compileWhere` parses and validates once and returns a closure; evaluating it never re-parses.
 */
import { InvalidInputError } from '../core/errors.js'
import type { JsonObject, JsonValue } from '../core/types.js'

export type Predicate = (value: JsonObject) => boolean

export const MAX_FILTER_DEPTH = 16
export const MAX_FILTER_NODES = 256
export const MAX_IN_VALUES = 1000

const FIELD_OPERATORS = ['$eq', '$ne', '$gt', '$gte', '$lt', '$lte', '$in', '$nin', '$exists']
const LOGICAL_OPERATORS = ['$and', '$or', '$not']

/** A test on a field's value; `undefined` means the field is missing. */
type FieldTest = (value: JsonValue | undefined) => boolean

const matchAll: Predicate = () => true

/**
 * Compile a `where` expression into a predicate on record values.
 * `undefined` and `{}` match everything.
 * @throws InvalidInputError with code INVALID_FILTER when the expression is malformed or too large.
 */
export function compileWhere (where: JsonObject | undefined): Predicate {
  if (where === undefined) return matchAll
  if (!isPlainObject(where)) {
    throw invalid(`a filter must be a JSON object such as {"status": "published"}, got ${describe(where)}`)
  }
  checkJson(where, 1, '')
  const compiler = new Compiler()
  return compiler.expression(where, '')
}

/**
 * Read a (dotted) field path from a value with the filter's path rules; `undefined` when missing.
 * When reading the same path repeatedly, prefer `fieldGetter`.
 */
export function getField (value: JsonObject, path: string): JsonValue | undefined {
  return fieldGetter(path)(value)
}

/** A reader for one (dotted) field path, see the "Field paths" rules above. */
export function fieldGetter (path: string): (value: JsonObject) => JsonValue | undefined {
  const segments = path.split('.')
  if (segments.length === 1) {
    const key = segments[0]
    return (value) => Object.hasOwn(value, key) ? value[key] : undefined
  }
  const indexes = segments.map((segment) => /^(0|[1-9][0-9]*)$/.test(segment) ? Number(segment) : -1)
  return (value) => {
    let current: JsonValue | undefined = value
    for (let i = 0; i < segments.length; i++) {
      if (typeof current !== 'object' || current === null) return undefined
      if (Array.isArray(current)) {
        const index = indexes[i]
        if (index < 0 || index >= current.length) return undefined
        current = current[index]
      } else {
        const key = segments[i]
        if (!Object.hasOwn(current, key)) return undefined
        current = current[key]
      }
    }
    return current
  }
}

/** Deep equality of JSON values: objects by own keys in any order, arrays in order. */
export function jsonEqual (a: JsonValue, b: JsonValue): boolean {
  if (a === b) return true
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false
    for (let i = 0; i < a.length; i++) {
      if (!jsonEqual(a[i], b[i])) return false
    }
    return true
  }
  if (Array.isArray(b)) return false
  const keys = Object.keys(a)
  if (keys.length !== Object.keys(b).length) return false
  for (const key of keys) {
    if (!Object.hasOwn(b, key) || !jsonEqual(a[key], b[key])) return false
  }
  return true
}

class Compiler {
  private nodes = 0

  private count (at: string): void {
    this.nodes++
    if (this.nodes > MAX_FILTER_NODES) {
      throw invalid(`filter is too large ${location(at)}: at most ${MAX_FILTER_NODES} nodes (expression objects, operators and field conditions); split it into several rules or use "$in" for long alternatives`)
    }
  }

  expression (expr: unknown, at: string): Predicate {
    if (!isPlainObject(expr)) {
      throw invalid(`expected a filter expression (an object such as {"status": "published"}) ${location(at)}, got ${describe(expr)}`)
    }
    this.count(at)
    const parts: Predicate[] = []
    for (const key of Object.keys(expr)) {
      const arg = expr[key]
      const keyAt = join(at, key)
      if (key.startsWith('$')) {
        parts.push(this.logical(key, arg, at, keyAt))
      } else {
        parts.push(this.field(key, arg, keyAt))
      }
    }
    return allOf(parts)
  }

  private logical (op: string, arg: unknown, at: string, opAt: string): Predicate {
    switch (op) {
      case '$and':
      case '$or': {
        this.count(opAt)
        if (!Array.isArray(arg) || arg.length === 0) {
          throw invalid(`"${op}" ${location(at)} needs a non-empty array of expressions, e.g. {"${op}": [{"a": 1}, {"b": 2}]}; got ${describe(arg)}`)
        }
        const parts = arg.map((item, i) => this.expression(item, `${opAt}[${i}]`))
        return op === '$and' ? allOf(parts) : anyOf(parts)
      }
      case '$not': {
        this.count(opAt)
        const inner = this.expression(arg, opAt)
        return (value) => !inner(value)
      }
      default: {
        const hint = FIELD_OPERATORS.includes(op)
          ? `; field operators go inside a field's condition, e.g. {"views": {"${op}": …}}`
          : '; field names cannot start with "$"'
        throw invalid(`unknown logical operator "${op}" ${location(at)}; use one of ${LOGICAL_OPERATORS.join(' ')} or a field name${hint}`)
      }
    }
  }

  private field (path: string, condition: unknown, at: string): Predicate {
    if (path.split('.').some((segment) => segment === '')) {
      throw invalid(`invalid field path "${path}": segments cannot be empty; write dotted paths like "author.name"`)
    }
    this.count(at)
    const get = fieldGetter(path)
    const test = this.condition(condition as JsonValue, at)
    return (value) => test(get(value))
  }

  private condition (condition: JsonValue, at: string): FieldTest {
    if (isPlainObject(condition)) {
      const keys = Object.keys(condition)
      if (keys.length > 0 && keys.every((key) => key.startsWith('$'))) {
        return allTests(keys.map((op) => this.operator(op, condition[op], at)))
      }
    }
    return equalTo(condition)
  }

  private operator (op: string, arg: JsonValue, at: string): FieldTest {
    this.count(at)
    switch (op) {
      case '$eq':
        return equalTo(arg)
      case '$ne': {
        const equal = equalTo(arg)
        return (value) => !equal(value)
      }
      case '$gt':
      case '$gte':
      case '$lt':
      case '$lte':
        return comparison(op, arg, at)
      case '$in':
        return oneOf(op, arg, at)
      case '$nin': {
        const included = oneOf(op, arg, at)
        return (value) => !included(value)
      }
      case '$exists': {
        if (typeof arg !== 'boolean') {
          throw invalid(`"$exists" ${location(at)} needs true or false, got ${describe(arg)}`)
        }
        return arg ? (value) => value !== undefined : (value) => value === undefined
      }
      default: {
        const hint = LOGICAL_OPERATORS.includes(op)
          ? ` ("${op}" combines whole expressions: {"${op}": …} goes next to field names, not inside a field's condition)`
          : ''
        throw invalid(`unknown operator "${op}" ${location(at)}; use one of ${FIELD_OPERATORS.join(' ')}${hint}`)
      }
    }
  }
}

/** Equality with the array rule: the field equals `expected`, or is an array with an element equal to it. */
function equalTo (expected: JsonValue): FieldTest {
  if (typeof expected !== 'object' || expected === null) {
    return (value) => value === expected || (Array.isArray(value) && value.includes(expected))
  }
  return (value) => value !== undefined &&
    (jsonEqual(value, expected) || (Array.isArray(value) && value.some((item) => jsonEqual(item, expected))))
}

function comparison (op: '$gt' | '$gte' | '$lt' | '$lte', arg: JsonValue, at: string): FieldTest {
  let one: (value: JsonValue) => boolean
  if (typeof arg === 'number') {
    one = numberComparison(op, arg)
  } else if (typeof arg === 'string') {
    one = stringComparison(op, arg)
  } else {
    throw invalid(`"${op}" ${location(at)} needs a number or a string, got ${describe(arg)}`)
  }
  return (value) => value !== undefined && (one(value) || (Array.isArray(value) && value.some(one)))
}

function numberComparison (op: '$gt' | '$gte' | '$lt' | '$lte', arg: number): (value: JsonValue) => boolean {
  switch (op) {
    case '$gt': return (value) => typeof value === 'number' && value > arg
    case '$gte': return (value) => typeof value === 'number' && value >= arg
    case '$lt': return (value) => typeof value === 'number' && value < arg
    case '$lte': return (value) => typeof value === 'number' && value <= arg
  }
}

function stringComparison (op: '$gt' | '$gte' | '$lt' | '$lte', arg: string): (value: JsonValue) => boolean {
  switch (op) {
    case '$gt': return (value) => typeof value === 'string' && value > arg
    case '$gte': return (value) => typeof value === 'string' && value >= arg
    case '$lt': return (value) => typeof value === 'string' && value < arg
    case '$lte': return (value) => typeof value === 'string' && value <= arg
  }
}

/** "$in": the field equals one of the values (scalars through a Set), with the array rule. */
function oneOf (op: '$in' | '$nin', arg: JsonValue, at: string): FieldTest {
  if (!Array.isArray(arg)) {
    throw invalid(`"${op}" ${location(at)} needs an array of values, e.g. {"${op}": ["a", "b"]}; got ${describe(arg)}`)
  }
  if (arg.length > MAX_IN_VALUES) {
    throw invalid(`"${op}" ${location(at)} lists ${arg.length} values; at most ${MAX_IN_VALUES} are allowed`)
  }
  const scalars = new Set<JsonValue>()
  const composites: JsonValue[] = []
  for (const item of arg) {
    if (typeof item === 'object' && item !== null) composites.push(item)
    else scalars.add(item)
  }
  const one = composites.length === 0
    ? (value: JsonValue): boolean => scalars.has(value)
    : (value: JsonValue): boolean => scalars.has(value) || composites.some((item) => jsonEqual(value, item))
  return (value) => value !== undefined && (one(value) || (Array.isArray(value) && value.some(one)))
}

function allOf (parts: Predicate[]): Predicate {
  if (parts.length === 0) return matchAll
  if (parts.length === 1) return parts[0]
  if (parts.length === 2) {
    const [a, b] = parts
    return (value) => a(value) && b(value)
  }
  return (value) => {
    for (const part of parts) {
      if (!part(value)) return false
    }
    return true
  }
}

function anyOf (parts: Predicate[]): Predicate {
  if (parts.length === 1) return parts[0]
  return (value) => {
    for (const part of parts) {
      if (part(value)) return true
    }
    return false
  }
}

function allTests (tests: FieldTest[]): FieldTest {
  if (tests.length === 1) return tests[0]
  return (value) => {
    for (const test of tests) {
      if (!test(value)) return false
    }
    return true
  }
}

/** Reject non-JSON values (callers outside the JSON parser can pass anything) and excessive nesting. */
function checkJson (value: unknown, depth: number, at: string): void {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw invalid(`the value ${location(at)} is ${value}, which is not a JSON number`)
    return
  }
  if (value === undefined) {
    throw invalid(`the value ${location(at)} is undefined, which is not a JSON value; leave the key out instead`)
  }
  if (typeof value !== 'object') {
    throw invalid(`the value ${location(at)} is a ${typeof value}, which is not a JSON value`)
  }
  if (depth > MAX_FILTER_DEPTH) {
    throw invalid(`filter nests too deeply ${location(at)}: at most ${MAX_FILTER_DEPTH} levels of objects and arrays are allowed; flatten the expression (e.g. merge nested "$and"s)`)
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) checkJson(value[i], depth + 1, `${at}[${i}]`)
    return
  }
  if (!isPlainObject(value)) {
    throw invalid(`the value ${location(at)} is ${describe(value)}, which is not a JSON value`)
  }
  for (const key of Object.keys(value)) checkJson(value[key], depth + 1, join(at, key))
}

function isPlainObject (value: unknown): value is JsonObject {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

function describe (value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'object') return isPlainObject(value) ? 'an object' : `a ${value.constructor?.name ?? 'non-JSON'} object`
  if (typeof value === 'string') return `the string ${JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value)}`
  if (typeof value === 'undefined') return 'nothing'
  return `${typeof value} ${String(value)}`
}

function join (at: string, key: string): string {
  return at === '' ? key : `${at}.${key}`
}

function location (at: string): string {
  return at === '' ? 'at the top level' : `at "${at}"`
}

function invalid (message: string): InvalidInputError {
  return new InvalidInputError(message, 'INVALID_FILTER')
}
