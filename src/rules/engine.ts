/**
 * Rule application: turn a source log entry into a write on the target
 * collection of this node, in the caller's transaction.
 *
 * Idempotent by construction: the target record carries the version (HLC,
 * origin, seq) of the entry that produced it, and a write only lands when its
 * version is newer than the record's (last writer wins), so applying the same
 * entry twice changes nothing.
 */
import { InvalidInputError } from '../errors.js'
import type { LogEntry } from '../log/entry.js'
import type { ChangeEvent, JsonObject, Rule } from '../node/types.js'
import { decodeJson, utf8 } from '../store/db.js'
import type { Txn } from '../store/db.js'
import { keys } from '../store/keys.js'
import { isValidId } from '../store/names.js'
import { compareVersion, decodeRecord, encodeRecord, publicVersion } from '../store/records.js'
import type { Version } from '../store/records.js'
import { compileWhere } from './filter.js'
import type { Predicate } from './filter.js'
import { compileFieldTransform, targetId } from './transform.js'

export interface CompiledRule {
  rule: Rule
  /** Peer id of the source platform, resolved through the registry. */
  sourcePeer: string
  matches: Predicate
  transform: (value: JsonObject) => JsonObject
}

/** Compile a rule's filter and transforms; throws InvalidInputError when they are invalid. */
export function compileRule (rule: Rule, sourcePeer: string): CompiledRule {
  if (rule.mode === 'mirror') {
    throw new InvalidInputError('mode "mirror" is not available in this version; use "merge" or "insert-only"', 'MODE_UNSUPPORTED')
  }
  return {
    rule,
    sourcePeer,
    matches: compileWhere(rule.where),
    transform: compileFieldTransform({ include: rule.include, exclude: rule.exclude, rename: rule.rename })
  }
}

/** What one entry does to one rule's target, before touching the store. */
export type Plan =
  | { kind: 'put', targetId: string, value: JsonObject }
  | { kind: 'del' }
  | { kind: 'skip', reason?: string }

export function planEntry (rule: CompiledRule, entry: LogEntry, value: JsonObject | undefined): Plan {
  if (entry.op === 'del') return rule.rule.mode === 'insert-only' ? { kind: 'skip' } : { kind: 'del' }
  if (value === undefined) return { kind: 'skip', reason: 'entry value is not a JSON object' }
  if (!rule.matches(value)) return { kind: 'skip' }
  const id = targetId(value, entry.id, rule.rule.key)
  if (id === undefined || !isValidId(id)) return { kind: 'skip', reason: `record ${entry.id} has no usable "${rule.rule.key ?? 'id'}" field` }
  return { kind: 'put', targetId: id, value: rule.transform(value) }
}

/** Parse an entry's JSON value once for all rules that need it. */
export function parseEntryValue (entry: LogEntry): JsonObject | undefined {
  if (entry.value === undefined) return undefined
  try {
    const v = decodeJson<unknown>(entry.value)
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? v as JsonObject : undefined
  } catch {
    return undefined
  }
}

export function entryVersion (entry: LogEntry): Version {
  return { hlc: entry.hlc, origin: entry.origin, seq: entry.seq }
}

/** Store keys a plan will read, so a whole batch can be prefetched at once. */
export function planKeys (rule: CompiledRule, entry: LogEntry, plan: Plan): string[] {
  const mapKey = keys.targetMap(rule.rule.id, entry.id)
  if (plan.kind === 'put') return [mapKey, keys.record(rule.rule.to.collection, plan.targetId)]
  if (plan.kind === 'del') return [mapKey]
  return []
}

/**
 * Apply a plan in `txn`. Returns the change it made, or undefined when the
 * target already holds this write or a newer one.
 */
export async function applyPlan (txn: Txn, rule: CompiledRule, entry: LogEntry, plan: Plan): Promise<ChangeEvent | undefined> {
  const collection = rule.rule.to.collection
  const mapKey = keys.targetMap(rule.rule.id, entry.id)
  const version = entryVersion(entry)
  if (plan.kind === 'put') {
    const recordKey = keys.record(collection, plan.targetId)
    const existingBytes = await txn.get(recordKey)
    if (existingBytes !== undefined) {
      const existing = decodeRecord(existingBytes)
      if (rule.rule.mode === 'insert-only' && existing.value !== undefined) return undefined
      const order = compareVersion(existing.version, version)
      if (order === 0 && existing.value !== undefined) {
        // The target already holds this very write (placed by another rule, or by this rule's
        // previous incarnation): nothing changes, but this rule must know it placed it too,
        // or a later delete of the source record would not reach the target.
        const mapped = await txn.get(mapKey)
        if (mapped === undefined || utf8.decode(mapped) !== plan.targetId) txn.put(mapKey, utf8.encode(plan.targetId))
      }
      if (order >= 0) return undefined
    }
    txn.put(recordKey, encodeRecord({ value: plan.value, version, rule: rule.rule.id }))
    txn.put(mapKey, utf8.encode(plan.targetId))
    return { collection, id: plan.targetId, op: 'put', value: plan.value, version: publicVersion(version), ruleId: rule.rule.id }
  }
  if (plan.kind === 'del') {
    // Only a record this rule placed is deleted: the mapping says which.
    const mapped = await txn.get(mapKey)
    if (mapped === undefined) return undefined
    const id = utf8.decode(mapped)
    const recordKey = keys.record(collection, id)
    const existingBytes = await txn.get(recordKey)
    txn.del(mapKey)
    if (existingBytes === undefined) return undefined
    const existing = decodeRecord(existingBytes)
    if (existing.value === undefined || compareVersion(existing.version, version) >= 0) return undefined
    txn.put(recordKey, encodeRecord({ version, rule: rule.rule.id }))
    return { collection, id, op: 'del', version: publicVersion(version), ruleId: rule.rule.id }
  }
  return undefined
}
