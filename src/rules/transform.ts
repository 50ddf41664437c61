/**
 * Field transforms a rule applies to each source value before writing it to the target, and the
 * choice of the target record's id.
 *
 * Order: include → exclude → rename, all on top-level fields.
 *   - include: keep only the listed fields (absent ones are ignored); empty or undefined keeps all.
 *   - exclude: drop the listed fields.
 *   - rename (old → new): applied simultaneously to the result of include/exclude, so a field that
 *     was not included or was excluded is not renamed, chains do not cascade ({"a": "b", "b": "c"}
 *     moves a to b and the old b to c) and swaps work ({"a": "b", "b": "a"}). Renaming onto an
 *     existing field overwrites it; renaming a missing field does nothing (an existing field with
 *     the target name is then kept).
 *
 * Field names are top-level keys taken literally: "a.b" names the key "a.b", not a nested field.
 * The input is never mutated; the result is a new top-level object whose nested values are shared
 * with the input (treat both as immutable), or the input itself when the spec is empty (no
 * include, exclude or rename: the common case, which then costs nothing per record).
 *
 * Malformed specs throw InvalidInputError with code INVALID_TRANSFORM.
 */
import { InvalidInputError } from '../core/errors.js'
import type { JsonObject, JsonValue } from '../core/types.js'
import { fieldGetter } from './filter.js'

export interface FieldTransformSpec {
  /** Keep only these top-level fields; empty or undefined keeps all. */
  include?: string[]
  /** Drop these top-level fields. */
  exclude?: string[]
  /** old field name → new field name */
  rename?: Record<string, string>
}

/**
 * Validate a transform spec and compile it into a function from source value to target value.
 * @throws InvalidInputError with code INVALID_TRANSFORM for empty or non-string field names,
 * a rename that is not an object, or two fields renamed to the same name.
 */
export function compileFieldTransform (spec: FieldTransformSpec): (value: JsonObject) => JsonObject {
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) {
    throw invalid('a field transform must be an object with optional "include", "exclude" and "rename"')
  }
  const include = checkFieldList(spec.include, 'include')
  const exclude = checkFieldList(spec.exclude, 'exclude')
  const renames = checkRename(spec.rename)

  const hasInclude = include.length > 0
  if (!hasInclude && exclude.length === 0 && renames.length === 0) return (value) => value
  return (value) => {
    let out: JsonObject
    if (hasInclude) {
      out = {}
      for (const field of include) {
        if (Object.hasOwn(value, field)) setField(out, field, value[field])
      }
    } else {
      out = { ...value }
    }
    for (const field of exclude) delete out[field]
    if (renames.length > 0) {
      // Read every source before writing any target, so renames apply simultaneously.
      const moved: Array<[string, JsonValue]> = []
      for (const [from, to] of renames) {
        if (Object.hasOwn(out, from)) {
          moved.push([to, out[from]])
          delete out[from]
        }
      }
      for (const [to, fieldValue] of moved) setField(out, to, fieldValue)
    }
    return out
  }
}

/**
 * The id of the target record: `sourceId` when the rule has no key field; otherwise the value at
 * `keyField` (a dotted path with the filter's path rules) when it is a non-empty string or a finite
 * number (stringified, e.g. 42 → "42"). Any other value, or a missing field, gives `undefined`:
 * the record cannot be placed and the caller skips it.
 */
export function targetId (value: JsonObject, sourceId: string, keyField: string | undefined): string | undefined {
  if (keyField === undefined) return sourceId
  const key = fieldGetter(keyField)(value)
  if (typeof key === 'string') return key === '' ? undefined : key
  if (typeof key === 'number' && Number.isFinite(key)) return String(key)
  return undefined
}

/**
 * Parse "old=new,a=b" into {old: "new", a: "b"}. Whitespace around names is trimmed and empty
 * entries (",,", a trailing ",") are ignored; "" gives {}.
 * @throws InvalidInputError with code INVALID_TRANSFORM for a pair without exactly one "=", an empty
 * name, a field renamed twice, or two fields renamed to the same name.
 */
export function parseRenameList (text: string): Record<string, string> {
  const out: Record<string, string> = {}
  const targets = new Set<string>()
  for (const raw of text.split(',')) {
    const entry = raw.trim()
    if (entry === '') continue
    const parts = entry.split('=')
    const from = parts[0].trim()
    const to = (parts[1] ?? '').trim()
    if (parts.length !== 2 || from === '' || to === '') {
      throw invalid(`malformed rename "${entry}": write old=new pairs separated by commas, e.g. "title=name,body=text"`)
    }
    if (Object.hasOwn(out, from)) {
      throw invalid(`field "${from}" is renamed twice ("${from}=${out[from]}" and "${entry}"); keep one of them`)
    }
    if (targets.has(to)) {
      throw invalid(`two fields are renamed to "${to}"; each new name can be used once`)
    }
    targets.add(to)
    setField(out, from, to)
  }
  return out
}

/** Parse "a, b,c" into ["a", "b", "c"]: names are trimmed, empty entries and repeats dropped. */
export function parseFieldList (text: string): string[] {
  const out: string[] = []
  for (const raw of text.split(',')) {
    const name = raw.trim()
    if (name !== '' && !out.includes(name)) out.push(name)
  }
  return out
}

function checkFieldList (list: unknown, what: 'include' | 'exclude'): string[] {
  if (list === undefined) return []
  if (!Array.isArray(list)) {
    throw invalid(`"${what}" must be an array of field names, e.g. ["title", "body"]`)
  }
  for (const field of list) {
    if (typeof field !== 'string' || field === '') {
      throw invalid(`"${what}" lists ${field === '' ? 'an empty field name' : `a ${field === null ? 'null' : typeof field}`}; field names are non-empty strings`)
    }
  }
  return [...new Set(list as string[])]
}

function checkRename (rename: unknown): Array<[string, string]> {
  if (rename === undefined) return []
  if (typeof rename !== 'object' || rename === null || Array.isArray(rename)) {
    throw invalid('"rename" must be an object of old name → new name, e.g. {"title": "name"}')
  }
  const pairs: Array<[string, string]> = []
  const targets = new Map<string, string>()
  for (const [from, to] of Object.entries(rename)) {
    if (from === '') throw invalid('"rename" has an empty field name; field names are non-empty strings')
    if (typeof to !== 'string' || to === '') {
      throw invalid(`"rename" maps "${from}" to ${to === '' ? 'an empty name' : 'a non-string'}; the new name must be a non-empty string`)
    }
    const other = targets.get(to)
    if (other !== undefined) {
      throw invalid(`"rename" maps both "${other}" and "${from}" to "${to}"; each new name can be used once`)
    }
    targets.set(to, from)
    pairs.push([from, to])
  }
  return pairs
}

/** Assign an own property, also for the key "__proto__" (which plain assignment would not create). */
function setField<T> (target: Record<string, T>, key: string, value: T): void {
  if (key === '__proto__') {
    Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true })
  } else {
    target[key] = value
  }
}

function invalid (message: string): InvalidInputError {
  return new InvalidInputError(message, 'INVALID_TRANSFORM')
}
