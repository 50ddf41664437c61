/**
 * Rule application: turn a source log entry into a write on the target
 * collection of this node, in the caller's transaction.
 *
 * Pipeline for one source record: `where` filter → targets field → key
 * (target id) → include/exclude/rename → transform module (async, in
 * `resolvePlan`) → the write (`applyPlan`).
 *
 * Versions and who wins. A target record carries the version (HLC, origin,
 * seq) of the write that produced it: the write's identity, which a write
 * keeps wherever it travels. An entry a node logs again because one of its
 * rules wrote it into a collection other rules read (chaining, see
 * src/node/ingest.ts) keeps the HLC of the write and names the write's
 * origin and seq (`LogEntry.writer`, `writerSeq`), so every node that
 * applies it, directly or through any number of relays, stores the same
 * version (entryVersion). A rule's write lands when it is later than the
 * record's version: later HLC; for equal HLCs the greater origin. Two
 * versions with the same HLC and the same origin are the same write (a
 * relayed copy of it), as is a version with the HLC of a write this node
 * made itself (its echo coming back through a cycle of rules, from a relay
 * that does not name the writer): neither lands again nor counts as a
 * conflict, which is what makes cycles of rules (two-way sync) terminate.
 * Applying the same entry twice changes nothing.
 *
 * Modes:
 *   merge        upsert and delete by id, last writer wins against anything
 *                else on the target (local writes, other rules).
 *   insert-only  create records the target lacks; never overwrite, never delete.
 *   mirror       the target is the source's copy: a rule write replaces any
 *                version that is not an earlier write of the same source; a
 *                record that stops matching (filter, targets field, transform
 *                returning null) is removed; after each backfill the node
 *                removes target records the source lacks (see Ingestor.backfill).
 *
 * Conflicts: a rule write that meets a version written by a different origin
 * (a local write, another source) or by another source record with the same
 * key is reported to `ApplyContext.conflict` with both versions and the
 * winner, whichever won.
 */
import { InvalidInputError } from '../core/errors.js'
import type { LogEntry } from '../log/entry.js'
import { compareHlc } from '../core/hlc.js'
import type { ChangeEvent, ConflictRecord, ConflictSide, JsonObject, Rule } from '../core/types.js'
import { decodeJson, utf8 } from '../store/db.js'
import type { Txn } from '../store/db.js'
import { keys, SEP } from '../store/keys.js'
import { logId, peerOf } from '../log/log-id.js'
import { isValidId } from '../store/names.js'
import { decodeRecord, publicVersion, recordState } from '../store/records.js'
import type { RecordState, Version } from '../store/records.js'
import { compileWhere, jsonEqual } from './filter.js'
import type { Predicate } from './filter.js'
import { runTransform } from './modules.js'
import type { LoadedModule } from './modules.js'
import { isGroupSource, recordTargetsReader } from './targets.js'
import type { RecordTargets } from './targets.js'
import { compileFieldTransform, targetId } from './transform.js'
import { modeOf } from '../core/modes.js'
import { planStreamEntry } from './stream-plan.js'

/** Conflict values larger than this (serialized) are logged by size only. */
export const CONFLICT_VALUE_MAX_BYTES = 4096

export interface CompiledRule {
  rule: Rule
  /**
   * The log the rule reads: the peer id of the source platform (its whole
   * log), resolved through the registry; or, for a rule carried by a stream
   * (`stream`), the stream's log id (`<peer id>/<stream>`, src/log/log-id.ts).
   */
  sourcePeer: string
  /**
   * The rule's stream id, when the rule is carried by its source's rule
   * stream (protocols/sync/streams.md): the source ran the filter, the key
   * and the projection; this compiled form only applies (planStreamEntry).
   */
  stream?: string
  /**
   * The platform this compiled form reads. A rule with a group source (a
   * region, a tag, "*") is compiled once per platform of the group that
   * feeds this node; a rule reading one platform, once.
   */
  sourcePlatform?: string
  /** The rule reads a group of platforms: between its sources the later write wins, in every mode. */
  group: boolean
  /**
   * Under which id this compiled form keeps what is per source: which target
   * record each source record became, the backfill's progress, the pause
   * point. The rule's id for a rule reading one platform (as it always was);
   * for a group source, the rule's id and the source platform (stateIdOf).
   */
  stateId: string
  matches: Predicate
  transform: (value: JsonObject) => JsonObject
  /** This node's platform name (per-record targeting); undefined when compiled only to validate. */
  localName?: string
  recordTargets?: (value: JsonObject) => RecordTargets
  /** The loaded transform module, when the rule names one. */
  module?: LoadedModule
  /**
   * Everything that decides what the rule writes on this node: when it
   * changes, the source data is evaluated again (backfill from the start).
   */
  fingerprint: string
}

/**
 * The id of one source's state of a rule: the rule's id for a rule reading
 * one platform; the rule's id, "\x01" and the platform's name for a group
 * source ("\x01" is in no record id, so no rule id can take this form).
 */
export function stateIdOf (rule: Rule, sourcePlatform: string | undefined): string {
  return isGroupSource(rule.from) && sourcePlatform !== undefined ? `${rule.id}\x01${sourcePlatform}` : rule.id
}

/** The rule id of a state id (stateIdOf). */
export function ruleIdOfState (stateId: string): string {
  const i = stateId.indexOf('\x01')
  return i < 0 ? stateId : stateId.slice(0, i)
}

/** Compile a rule's filter and transforms; throws InvalidInputError when they are invalid. */
export function compileRule (rule: Rule, sourcePeer: string, options: { localName?: string, module?: LoadedModule, sourcePlatform?: string, stream?: string } = {}): CompiledRule {
  const stream = options.stream
  const compiled: CompiledRule = {
    rule,
    sourcePeer: stream !== undefined ? logId(sourcePeer, stream) : sourcePeer,
    group: isGroupSource(rule.from),
    stateId: stateIdOf(rule, options.sourcePlatform),
    // a stream's entries were filtered and projected on the source
    matches: stream !== undefined ? matchesAll : compileWhere(rule.where),
    transform: stream !== undefined ? unchanged : compileFieldTransform({ include: rule.include, exclude: rule.exclude, rename: rule.rename }),
    fingerprint: ruleFingerprint(rule, options.module?.hash) + (stream !== undefined ? `${SEP}${stream}` : '')
  }
  if (stream !== undefined) compiled.stream = stream
  else if (rule.targetsField !== undefined) {
    if (rule.targetsField.split('.').some(s => s === '')) {
      throw new InvalidInputError(`invalid targets field "${rule.targetsField}": segments cannot be empty; write dotted paths like "meta.platforms"`, 'INVALID_RULE')
    }
    compiled.recordTargets = recordTargetsReader(rule.targetsField)
  }
  if (options.localName !== undefined) compiled.localName = options.localName
  if (options.module !== undefined) compiled.module = options.module
  const platform = options.sourcePlatform ?? rule.from.platform
  if (platform !== undefined) compiled.sourcePlatform = platform
  return compiled
}

const matchesAll: Predicate = () => true
const unchanged = (value: JsonObject): JsonObject => value

/** The parts of a rule that decide what it writes (not its webhook, not its timestamps). */
export function ruleFingerprint (rule: Rule, moduleHash?: string): string {
  const { from, to, mode, where, include, exclude, rename, key, transform, targetsField } = rule
  return JSON.stringify({ from, to, mode, where, include, exclude, rename, key, transform, targetsField, module: moduleHash })
}

/** What one entry does to one rule's target, before touching the store. */
export type Plan =
  | { kind: 'put', targetId: string, value: JsonObject }
  /** Remove what this rule placed from this source record: the source deleted it, or (mirror, `drop`) it no longer belongs. */
  | { kind: 'del', drop?: boolean }
  | { kind: 'skip', reason?: string }
  /** The transform module failed on the record: skipped and reported. */
  | { kind: 'error', error: string }

/** Plan an entry up to the transform module (see resolvePlan). Pure. */
export function planEntry (rule: CompiledRule, entry: LogEntry, value: JsonObject | undefined): Plan {
  if (rule.stream !== undefined) return planStreamEntry(rule, entry, value)
  const mode = modeOf(rule.rule.mode)
  const mirror = mode.exact
  if (entry.op === 'del') return mode.deletes ? { kind: 'del' } : { kind: 'skip' }
  if (value === undefined) return { kind: 'skip', reason: 'entry value is not a JSON object' }
  if (!rule.matches(value)) return mirror ? { kind: 'del', drop: true } : { kind: 'skip' }
  if (rule.recordTargets !== undefined && rule.localName !== undefined) {
    const t = rule.recordTargets(value)
    if (t.kind === 'invalid') return mirror ? { kind: 'del', drop: true } : { kind: 'skip', reason: `record ${entry.id}: ${t.reason}` }
    if (t.kind === 'list' && !t.names.includes(rule.localName)) return mirror ? { kind: 'del', drop: true } : { kind: 'skip' }
  }
  const id = targetId(value, entry.id, rule.rule.key)
  if (id === undefined || !isValidId(id)) {
    const reason = `record ${entry.id} has no usable "${rule.rule.key ?? 'id'}" field`
    return mirror ? { kind: 'del', drop: true } : { kind: 'skip', reason }
  }
  return { kind: 'put', targetId: id, value: rule.transform(value) }
}

/** Run the rule's transform module on a planned put (other plans pass through). */
export async function resolvePlan (rule: CompiledRule, entry: LogEntry, source: JsonObject | undefined, plan: Plan): Promise<Plan> {
  if (plan.kind !== 'put' || rule.module === undefined || source === undefined) return plan
  const r = rule.rule
  const outcome = await runTransform(rule.module, { collection: r.to.collection, id: plan.targetId, value: plan.value }, {
    rule: { id: r.id, mode: r.mode, from: r.from, to: r.to },
    source: { platform: rule.sourcePlatform ?? '', peerId: peerOf(rule.sourcePeer), collection: entry.collection, id: entry.id, value: source, version: publicVersion(entryVersion(entry)) },
    target: { platform: rule.localName ?? '', collection: r.to.collection }
  })
  if (!outcome.ok) return { kind: 'error', error: outcome.error }
  if (outcome.value === null) return modeOf(r.mode).exact ? { kind: 'del', drop: true } : { kind: 'skip' }
  return { ...plan, value: outcome.value }
}

/** Parse an entry's JSON value once for all rules that need it. */
export function parseEntryValue (entry: LogEntry): JsonObject | undefined {
  if (entry.value === undefined) return undefined
  if (entry.parsed !== undefined) return entry.parsed as JsonObject
  try {
    const v = decodeJson<unknown>(entry.value)
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined
    entry.parsed = v
    return v as JsonObject
  } catch {
    return undefined
  }
}

/** The JSON text of `value` when it is the entry's own value, untransformed: stored as is, not serialised again. */
export function rawValueOf (entry: LogEntry, value: JsonObject | undefined): Uint8Array | undefined {
  return value !== undefined && value === entry.parsed ? entry.value : undefined
}

/**
 * The identity of the write an entry carries, as the version of what it
 * writes: the HLC, and the origin that made the write with its seq there
 * (the entry's `writer` when it carries another origin's write on).
 */
export function entryVersion (entry: LogEntry): Version {
  return entry.writer !== undefined
    ? { hlc: entry.hlc, origin: entry.writer, seq: entry.writerSeq ?? 0 }
    : { hlc: entry.hlc, origin: entry.origin, seq: entry.seq }
}

/**
 * The entry's own place in its origin's log as a version, whatever write it
 * carries: for what is applied directly, never through a rule (the node's
 * own writes, the registry, whose writer is always the origin that signed it).
 */
export function logVersion (entry: LogEntry): Version {
  return { hlc: entry.hlc, origin: entry.origin, seq: entry.seq }
}

/**
 * The store keys a plan reads and writes: the rule's mapping of the source
 * record and, for a put, the target record. Built once per plan: prefetched
 * with the batch's, then read and written through the same strings (a key
 * is ~80 characters, and V8 hashes a string once, when it first keys a Map).
 */
export interface PlanKeys { map: string, record: string | undefined }

export function planKeys (rule: CompiledRule, entry: LogEntry, plan: Plan): PlanKeys | undefined {
  if (plan.kind === 'put') return { map: keys.targetMap(rule.stateId, entry.id), record: keys.record(rule.rule.to.collection, plan.targetId) }
  if (plan.kind === 'del') return { map: keys.targetMap(rule.stateId, entry.id), record: placesEveryWrite(rule.rule) ? keys.record(rule.rule.to.collection, entry.id) : undefined }
  return undefined
}

/** Add a plan's keys to the keys a batch prefetches. */
export function pushPlanKeys (list: string[], k: PlanKeys | undefined): void {
  if (k === undefined) return
  list.push(k.map)
  if (k.record !== undefined) list.push(k.record)
}

/**
 * Whether `existing` already is the write `incoming` (or its echo): same HLC,
 * and the same origin or an origin that is this node (a write this node made,
 * come back through a cycle of rules).
 */
export function isSameWrite (existing: Version, incoming: Version, self: string): boolean {
  return compareHlc(existing.hlc, incoming.hlc) === 0 && (existing.origin === incoming.origin || existing.origin === self)
}

/** Order of two different writes: HLC, then origin (sequence numbers do not take part, see isSameWrite). */
export function compareWrites (a: Version, b: Version): number {
  const c = compareHlc(a.hlc, b.hlc)
  if (c !== 0) return c
  return a.origin === b.origin ? 0 : (a.origin < b.origin ? -1 : 1)
}

/** What applying a plan needs from the node's write path (src/node/ingest.ts). */
export interface ApplyContext {
  txn: Txn
  self: string
  /** Re-evaluating after a rule change: the same source write may now produce another value. */
  reeval: boolean
  /** A version for a write this node makes itself (a clock tick, origin self, seq 0). */
  freshVersion (): Version
  /** Whether writes to this collection are logged in this node's own log (it is the source of a rule). */
  published (collection: string): boolean
  /**
   * Whether the caller reads the change events of what is applied
   * (`Applied.change`). Without, they are built only for writes into
   * published collections, which chaining logs from them.
   */
  keepChanges: boolean
  /** Write a record (with its feed cursor, which is set on `state`); returns the cursor. `key`: the record's store key, when built already. */
  writeRecord (collection: string, id: string, state: RecordState, previous: RecordState | undefined, key?: string): number
  /** Record a conflict of a rule. */
  conflict (conflict: Omit<ConflictRecord, 'n' | 'at'>): void
  /** Platform name of a peer id, when the registry knows it. */
  platformOf (peerId: string): string | undefined
  /** Whether a rule here sends this node's `collection` to the node `peerId` (RuleSet sendsTo). */
  sendsTo (collection: string, peerId: string): boolean
}

/** A change a plan made (its event: see ApplyContext.keepChanges), with the version it was written with. */
export interface Applied {
  change: ChangeEvent | undefined
  version: Version
  /** A delete: the version of the record it removed (a relay's log entry for it names that write, LogEntry.prev). */
  removed: Version | undefined
}

/**
 * Apply a plan in `ctx.txn`. Returns the changes it made: none when the
 * target already holds this write or a later one, two when a source record's
 * key moved (the old target record is removed).
 */
export function applyPlan (ctx: ApplyContext, rule: CompiledRule, entry: LogEntry, plan: Plan, at = planKeys(rule, entry, plan)): Applied[] {
  if (at === undefined) return []
  if (plan.kind === 'put') return applyPut(ctx, rule, entry, plan, at.map, at.record ?? keys.record(rule.rule.to.collection, plan.targetId))
  if (plan.kind === 'del') {
    const mapped = ctx.txn.get(at.map)
    if (mapped !== undefined) return removePlaced(ctx, rule, entry, utf8.decode(mapped), entryVersion(entry), plan.drop === true)
    if (entry.prev !== undefined && passesOnAsIs(rule.rule) && sharedRecord(ctx, rule, entry, at.record)) return removePlaced(ctx, rule, entry, entry.id, entryVersion(entry))
    if (plan.drop !== true && placesEveryWrite(rule.rule)) return removeUnplaced(ctx, rule, entry, at.record)
    return []
  }
  return []
}

/**
 * Whether a rule places every write of its source under the record's own id
 * (no filter, key, transform module or targets field) and carries deletes:
 * then a delete of its source is a write of the target record as much as a
 * put, whether or not the put it removes reached this node (compaction drops
 * a put its delete supersedes, so a node that syncs later gets the delete
 * alone). Projections and a renamed collection do not change which records
 * a rule places.
 */
export function placesEveryWrite (rule: Rule): boolean {
  return rule.where === undefined && rule.key === undefined && rule.transform === undefined && rule.targetsField === undefined &&
    modeOf(rule.mode).deletes
}

/**
 * A delete of a rule that places every write (placesEveryWrite) of a record
 * it did not place here: applied as the write it is, so that every target
 * ends the same whatever it received before. Where the target holds no
 * record, or an older tombstone, the delete leaves a tombstone (marked as
 * the rule's): a write of another source older than the delete, arriving
 * later, loses to it as it would had the deleted put arrived first. A live
 * record loses to the delete by the same rules as one the rule placed
 * (later write wins, conflicts logged); except for a delete that names the
 * write it removed (a relay's, entry.prev), which removes only a record
 * shared with its origin (sharedRecord, decided by the caller).
 */
function removeUnplaced (ctx: ApplyContext, rule: CompiledRule, entry: LogEntry, recordKey: string | undefined): Applied[] {
  const key = recordKey ?? keys.record(rule.rule.to.collection, entry.id)
  const existing = readRecord(ctx.txn, key)
  const version = entryVersion(entry)
  if (existing === undefined || existing.value === undefined) {
    if (existing !== undefined && compareWrites(existing.version, version) >= 0) return []
    return [write(ctx, rule, entry.id, recordState(version, undefined, rule.rule.id), existing, key)]
  }
  if (entry.prev !== undefined) return []
  return removePlaced(ctx, rule, entry, entry.id, version)
}

/**
 * Whether a rule writes each source record as it is, under its own id, into
 * a collection of the same name, and keeps it apart from nothing: no filter,
 * projection, key, transform module or targets field, and not a mirror. The
 * rules of two-way sync (`X:events → *:events`) are such; a relay leaves out
 * of its log the writes such a rule of its own would only pass on (RuleSet
 * relayedPutsLeftOut), and a delete naming the write it removed reaches through them.
 */
export function passesOnAsIs (rule: Rule): boolean {
  return rule.where === undefined && rule.include === undefined && rule.exclude === undefined && rule.rename === undefined &&
    rule.key === undefined && rule.transform === undefined && rule.targetsField === undefined &&
    rule.to.collection === rule.from.collection && !modeOf(rule.mode).exact
}

/**
 * A delete naming the write it removed (`entry.prev`), whose origin held the
 * record from another origin's write and, relaying, did not log that write
 * (RuleSet relayedPutsLeftOut), so this rule never placed the record here: whether
 * the record of that id here is the same replicated record, which the delete
 * then removes by the same rules as a delete of what the rule placed. It is
 * when another rule placed it here (the write reached this node through that
 * rule, as it reached the entry's origin), or when it is this node's own
 * write and the delete names a write of this node's, or a rule here sends
 * this collection on as it is to the entry's origin (they sync both ways). A
 * record of this node's own that it shares with no one is never removed by
 * it.
 */
function sharedRecord (ctx: ApplyContext, rule: CompiledRule, entry: LogEntry, recordKey: string | undefined): boolean {
  const existing = readRecord(ctx.txn, recordKey ?? keys.record(rule.rule.to.collection, entry.id))
  if (existing === undefined || existing.value === undefined) return false
  if (existing.rule !== undefined) return true
  // this node's own write: shared when the delete names this node's write (the entry's origin held it
  // from here), or when a rule here sends the collection to the entry's origin
  // (a rule stream's entry names its origin's stream log: the peer id part is the origin)
  return existing.version.origin === ctx.self && (entry.prev?.origin === ctx.self || ctx.sendsTo(rule.rule.to.collection, peerOf(entry.origin)))
}

function readRecord (txn: Txn, key: string): RecordState | undefined {
  const bytes = txn.get(key)
  return bytes === undefined ? undefined : decodeRecord(bytes)
}

/**
 * The same write reached the target through two rules that give it different
 * values (two paths with different transforms, say `A:x → C:y` and
 * `A:x → B:x → C:y` renaming on the way): the value of the rule with the
 * smaller id stands, whichever copy came first, so every node these rules
 * target ends with the same record. (A write the target's own node made,
 * `existing.rule` undefined, always stands.)
 */
function otherRendering (existing: RecordState, ruleId: string, value: JsonObject): boolean {
  return existing.value !== undefined && existing.rule !== undefined && ruleId < existing.rule && !jsonEqual(existing.value, value)
}

/**
 * Rule streams: this rule's stream of a source sends again a write it placed
 * from that source under the same id (`mapped`). A source sends a write once
 * per stream, so this is a new stream of a rule changed on its source side
 * (where, key, include, exclude, rename: streams.md §14), whose fill carries
 * the source's records after the target's re-evaluating pass has read what
 * the stream held: the write's new value is the rule's re-evaluation.
 */
function restreamed (rule: CompiledRule, mapped: string | undefined, targetId: string): boolean {
  return rule.stream !== undefined && mapped === targetId
}

/** A version written by this rule itself on this node (a re-evaluation or a mirror removal). */
function restampedByRule (existing: RecordState, ruleId: string, self: string): boolean {
  return existing.rule === ruleId && existing.version.origin === self
}

/** Whether `existing` was written by the entry's origin (the rule's source), or by the origin of the write the entry carries. */
function sameWriter (existing: RecordState, entry: LogEntry, version: Version): boolean {
  return existing.version.origin === entry.origin || existing.version.origin === version.origin
}

/**
 * A mirror's write replaces what is not its own source's earlier write,
 * whatever the clocks say (only the source's own order counts). With a
 * group source, the rule's own writes come from several sources: between
 * them the later write wins, as in merge.
 */
function sourceOverrides (rule: CompiledRule, existing: RecordState, entry: LogEntry, version: Version): boolean {
  if (!modeOf(rule.rule.mode).sourceWins) return false
  if (existing.rule === rule.rule.id) return !rule.group && !sameWriter(existing, entry, version)
  return true
}

function conflictKind (existing: RecordState, entry: LogEntry, version: Version, ruleId: string, targetId: string, self: string): ConflictRecord['kind'] | undefined {
  const ours = sameWriter(existing, entry, version) || restampedByRule(existing, ruleId, self)
  if (!ours) return existing.rule === undefined ? 'local-write' : 'other-source'
  if (existing.rule === ruleId && existing.value !== undefined && (existing.source ?? targetId) !== entry.id) return 'key-collision'
  return undefined
}

/** One side of a conflict as the conflict log keeps it (values up to CONFLICT_VALUE_MAX_BYTES). */
export function conflictSide (state: { value?: JsonObject, version: Version, rule?: string }, self: string, platformOf: (peer: string) => string | undefined): ConflictSide {
  const s: ConflictSide = { op: state.value !== undefined ? 'put' : 'del', version: publicVersion(state.version), local: state.rule === undefined && state.version.origin === self }
  const platform = platformOf(state.version.origin)
  if (platform !== undefined) s.platform = platform
  if (state.rule !== undefined) s.ruleId = state.rule
  if (state.value !== undefined) {
    const bytes = Buffer.byteLength(JSON.stringify(state.value))
    if (bytes <= CONFLICT_VALUE_MAX_BYTES) s.value = state.value
    else s.valueBytes = bytes
  }
  return s
}

function reportConflict (ctx: ApplyContext, rule: CompiledRule, kind: ConflictRecord['kind'], targetId: string, existing: RecordState, incoming: { value?: JsonObject, version: Version }, winner: 'existing' | 'incoming'): void {
  // a re-evaluation replays writes that lost before: reported once, when they first met
  if (ctx.reeval && winner === 'existing') return
  ctx.conflict({
    ruleId: rule.rule.id,
    collection: rule.rule.to.collection,
    id: targetId,
    kind,
    existing: conflictSide(existing, ctx.self, ctx.platformOf),
    incoming: conflictSide({ ...incoming, rule: rule.rule.id }, ctx.self, ctx.platformOf),
    winner
  })
}

function write (ctx: ApplyContext, rule: CompiledRule, id: string, state: RecordState, previous: RecordState | undefined, key?: string): Applied {
  const collection = rule.rule.to.collection
  const cursor = ctx.writeRecord(collection, id, state, previous, key)
  // an event no one reads is not built (its public version formats the clock as text)
  const removed = state.value === undefined && previous?.value !== undefined ? previous.version : undefined
  if (!ctx.keepChanges && !ctx.published(collection)) return { change: undefined, version: state.version, removed }
  const version = publicVersion(state.version)
  // two shapes, each with all its fields in the literal (see recordState)
  const change: ChangeEvent = state.value !== undefined
    ? { collection, id, op: 'put', value: state.value, version, ruleId: rule.rule.id, cursor: String(cursor) }
    : { collection, id, op: 'del', version, ruleId: rule.rule.id, cursor: String(cursor) }
  return { change, version: state.version, removed }
}

/** Record that this rule placed its source record under `targetId` (unless it already is). */
function setMapping (ctx: ApplyContext, mapKey: string, mapped: string | undefined, targetId: string): void {
  if (mapped !== targetId) ctx.txn.put(mapKey, utf8.encode(targetId))
}

function applyPut (ctx: ApplyContext, rule: CompiledRule, entry: LogEntry, plan: Extract<Plan, { kind: 'put' }>, mapKey: string, recordKey: string): Applied[] {
  const r = rule.rule
  const collection = r.to.collection
  const version = entryVersion(entry)
  const out: Applied[] = []
  const mappedBytes = ctx.txn.get(mapKey)
  const mapped = mappedBytes === undefined ? undefined : utf8.decode(mappedBytes)
  const mode = modeOf(r.mode)
  if (mapped !== undefined && mapped !== plan.targetId && !mode.keepsExisting) {
    // the source record's key changed: what it placed under the old id goes
    out.push(...removePlaced(ctx, rule, entry, mapped, version))
  }
  const existing = readRecord(ctx.txn, recordKey)
  const state = recordState(version, plan.value, r.id, plan.targetId !== entry.id ? entry.id : undefined, rawValueOf(entry, plan.value))
  if (existing === undefined) {
    out.push(write(ctx, rule, plan.targetId, state, undefined, recordKey))
    setMapping(ctx, mapKey, mapped, plan.targetId)
    return out
  }
  if (mode.keepsExisting && existing.value !== undefined) return out
  if (isSameWrite(existing.version, version, ctx.self)) {
    // The target already holds this very write (placed by another rule, by this rule's previous
    // incarnation, or its echo through a cycle): nothing changes, but this rule must know it
    // placed it too, or a later delete of the source record would not reach the target.
    setMapping(ctx, mapKey, mapped, plan.targetId)
    if ((ctx.reeval || restreamed(rule, mapped, plan.targetId)) && existing.value !== undefined && existing.rule === r.id && !jsonEqual(existing.value, plan.value)) {
      // the rule changed: the same source write now gives another value
      const v = ctx.published(collection) ? ctx.freshVersion() : existing.version
      out.push(write(ctx, rule, plan.targetId, { ...state, version: v }, existing, recordKey))
    } else if (otherRendering(existing, r.id, plan.value)) {
      out.push(write(ctx, rule, plan.targetId, { ...state, version: existing.version }, existing, recordKey))
    }
    return out
  }
  const restamped = restampedByRule(existing, r.id, ctx.self)
  if (restamped && existing.value !== undefined && jsonEqual(existing.value, plan.value)) {
    setMapping(ctx, mapKey, mapped, plan.targetId)
    return out
  }
  const order = compareWrites(existing.version, version)
  const wins = order < 0 || restamped || sourceOverrides(rule, existing, entry, version)
  const kind = conflictKind(existing, entry, version, r.id, plan.targetId, ctx.self)
  if (kind !== undefined) reportConflict(ctx, rule, kind, plan.targetId, existing, { value: plan.value, version }, wins ? 'incoming' : 'existing')
  if (!wins) return out
  // landing over a later version (mirror, re-evaluation): the record's version must not go back
  // where it is logged for other nodes, or they would keep the later one
  if (order > 0 && ctx.published(collection)) state.version = ctx.freshVersion()
  out.push(write(ctx, rule, plan.targetId, state, existing, recordKey))
  setMapping(ctx, mapKey, mapped, plan.targetId)
  return out
}

/** Remove the record this rule placed from `entry.id` under `targetId`, when `version` may. */
function removePlaced (ctx: ApplyContext, rule: CompiledRule, entry: LogEntry, targetId: string, version: Version, drop = false): Applied[] {
  const r = rule.rule
  ctx.txn.del(keys.targetMap(rule.stateId, entry.id))
  const existing = readRecord(ctx.txn, keys.record(r.to.collection, targetId))
  if (existing === undefined || existing.value === undefined) return []
  // another source record with the same key holds it now
  if (existing.rule === r.id && existing.source !== undefined && existing.source !== entry.id) return []
  if (isSameWrite(existing.version, version, ctx.self)) {
    // rule streams: the same write dropped by the rule's stream that placed it is the new stream of a rule
    // changed on its source side (a stream drops a write it sent only when the record changes): the
    // rule no longer sends the record, and a mirror removes it as its sweep would
    return drop && rule.stream !== undefined && existing.rule === r.id ? [sweepRecord(ctx, rule, targetId, existing)] : []
  }
  const restamped = restampedByRule(existing, r.id, ctx.self)
  const order = compareWrites(existing.version, version)
  const wins = order < 0 || restamped || sourceOverrides(rule, existing, entry, version)
  const kind = conflictKind(existing, entry, version, r.id, targetId, ctx.self)
  if (kind !== undefined && kind !== 'key-collision') reportConflict(ctx, rule, kind, targetId, existing, { version }, wins ? 'incoming' : 'existing')
  if (!wins) return []
  const state = recordState(order > 0 && ctx.published(r.to.collection) ? ctx.freshVersion() : version, undefined, r.id)
  return [write(ctx, rule, targetId, state, existing)]
}

/**
 * Remove a record a mirror rule's source lacks (after a backfill): a
 * tombstone with a fresh version of this node, marked as the rule's.
 */
export function sweepRecord (ctx: ApplyContext, rule: CompiledRule, id: string, existing: RecordState): Applied {
  return write(ctx, rule, id, { version: ctx.freshVersion(), rule: rule.rule.id }, existing)
}
