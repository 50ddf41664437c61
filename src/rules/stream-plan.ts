/**
 * Rule streams (protocols/sync/streams.md): a rule's filter, key and
 * projection run on its source node, and what the rule sends goes into the
 * rule's own stream log (`<source peer>/r.<hash>`); its targets apply that
 * stream without running them again.
 *
 * Here the pure parts: a rule's stream id, what a source record's state
 * makes the source send (sourcePlan, then streamChange against what the
 * stream last held for the record), and what a stream entry does on a
 * target (planStreamEntry).
 */
import { createHash } from 'node:crypto'
import type { LogEntry } from '../log/entry.js'
import { RULE_STREAM_PREFIX } from '../log/log-id.js'
import type { JsonObject, Rule } from '../core/types.js'
import { modeOf } from '../core/modes.js'
import { isValidId } from '../store/names.js'
import type { CompiledRule, Plan } from './engine.js'
import { targetId } from './transform.js'

/** Hex digits of the hash in a rule stream's id: 80 bits, `r.` + 20. */
const STREAM_HASH_HEX = 20

/**
 * The parts of a rule the source evaluates: when one changes, the rule gets
 * a new stream (its next generation), which the source fills from its
 * records again and the targets apply from its start.
 */
export function sourceFingerprint (rule: Rule): string {
  const { from, where, include, exclude, rename, key, targetsField } = rule
  return JSON.stringify({ id: rule.id, from, where, include, exclude, rename, key, targetsField })
}

function hex (text: string, digits: number): string {
  return createHash('sha256').update(text).digest('hex').slice(0, digits)
}

/**
 * The id of the stream a rule's source writes for its current generation:
 * `r.` and a hash of the rule's id and source-side parts. A rule with a
 * targets field sends each record only to the targets it names: one stream
 * per target platform, `r.<hash>.<hash of the platform's name>`.
 */
export function ruleStreamId (rule: Rule, target?: string): string {
  const base = RULE_STREAM_PREFIX + hex(sourceFingerprint(rule), STREAM_HASH_HEX)
  return rule.targetsField !== undefined && target !== undefined ? `${base}.${hex(target, TARGET_HASH_HEX)}` : base
}

/** Hex digits of the target platform's hash in the stream id of a rule with a targets field. */
const TARGET_HASH_HEX = 12

/** What a rule sends of one source record's current state. */
export type SourcePlan =
  | { op: 'put', targetId: string, value: JsonObject }
  /** The record no longer matches (filter, key field): `reason` when worth reporting. */
  | { op: 'unmatch', reason?: string }
  | { op: 'del' }

/**
 * What the rule sends of a record of its source collection whose value is
 * `value` (undefined: deleted), the rule compiled with its filter and
 * projection (compileRule). Pure.
 */
export function sourcePlan (rule: CompiledRule, id: string, value: JsonObject | undefined): SourcePlan {
  if (value === undefined) return { op: 'del' }
  if (!rule.matches(value)) return { op: 'unmatch' }
  // a rule with a targets field is compiled once per target platform (its localName), one stream each
  if (rule.recordTargets !== undefined && rule.localName !== undefined) {
    const t = rule.recordTargets(value)
    if (t.kind === 'invalid') return { op: 'unmatch', reason: `record ${id}: ${t.reason}` }
    if (t.kind === 'list' && !t.names.includes(rule.localName)) return { op: 'unmatch' }
  }
  const tid = targetId(value, id, rule.rule.key)
  if (tid === undefined || !isValidId(tid)) return { op: 'unmatch', reason: `record ${id} has no usable "${rule.rule.key ?? 'id'}" field` }
  return { op: 'put', targetId: tid, value: rule.transform(value) }
}

/** What the stream last held for a record: its newest entry's op and the write it carried. */
export interface StreamHead {
  op: LogEntry['op']
  writer: string
  hlc: { wall: number, logical: number }
}

/**
 * Whether the source appends an entry for `plan`, given what the stream last
 * held for the record (`head`, undefined when never sent): a delete or an
 * unmatch of a record the stream never sent, or sent as no longer there, is
 * not a change of the stream (the source sends some such deletes all the
 * same: write-txn.ts sendsRemoval, deletesLeftOut, sendsDelete); a write
 * the stream holds already (a pass over the records again) is not sent twice.
 */
export function streamChange (plan: SourcePlan, head: StreamHead | undefined, writer: string, hlc: { wall: number, logical: number }): boolean {
  if (plan.op === 'put') return head === undefined || head.op !== 'put' || head.writer !== writer || head.hlc.wall !== hlc.wall || head.hlc.logical !== hlc.logical
  if (head === undefined) return false
  if (plan.op === 'unmatch') return head.op === 'put'
  return head.op !== 'del'
}

/**
 * What a rule stream's entry does on a target: the source ran the filter,
 * the key and the projection; here the mode decides (and the transform
 * module, run after, on a put).
 */
export function planStreamEntry (rule: CompiledRule, entry: LogEntry, value: JsonObject | undefined): Plan {
  const mode = modeOf(rule.rule.mode)
  if (entry.op === 'del') return mode.deletes ? { kind: 'del' } : { kind: 'skip' }
  if (entry.op === 'unmatch') return mode.exact ? { kind: 'del', drop: true } : { kind: 'skip' }
  if (value === undefined) return { kind: 'skip', reason: 'entry value is not a JSON object' }
  return { kind: 'put', targetId: entry.targetId ?? entry.id, value }
}
