/**
 * `rule add --dry-run` / `rule update --dry-run`: what a rule would do on
 * each of its targets, computed without writing anything.
 *
 * What a node can know. Every node holds the source platform's log (when it
 * has caught up with it), so any node can tell, per target, how many source
 * records the rule would write there (`matching`: filter, targets field and
 * key applied). Only the target node holds the target collection, so only
 * there can the dry run say which of those writes create, update or leave a
 * record unchanged, what a mirror rule would delete, which writes would meet
 * a conflict, and what the transform module (which exists on the target only)
 * does. Those targets are reported with `exact: true`; every other target with
 * `exact: false` and a note saying where to run the dry run for exact numbers.
 *
 * The evaluation is the real rule engine (`applyPlan`) run against the
 * store in throwaway transactions, one per chunk of source records, so memory
 * stays bounded and nothing is committed. Mirror deletions are counted by
 * re-planning the target collection's records against the source.
 */
import type { ChangeLog } from '../log/changelog.js'
import type { LogEntry } from '../log/entry.js'
import { decodeEntry, newEntry } from '../log/entry.js'
import type { DryRunReport, DryRunTarget, JsonObject, Platform, Rule } from '../core/types.js'
import type { Registry } from '../registry/registry.js'
import type { Store } from '../store/db.js'
import { encodeJson, utf8 } from '../store/db.js'
import { keys, keySuffix, prefixRange, rangeAfter } from '../store/keys.js'
import { decodeRecord, encodeRecord, storedValueText } from '../store/records.js'
import type { RecordState } from '../store/records.js'
import { applyPlan, compileRule, parseEntryValue, planEntry, planKeys, pushPlanKeys, resolvePlan } from './engine.js'
import type { ApplyContext, CompiledRule, Plan } from './engine.js'
import type { ModuleCache } from './modules.js'
import { isGroupSource, isGroupTarget, ruleSources, ruleTargets } from './targets.js'
import { formatPlatforms } from '../registry/registry.js'
import { modeOf } from '../core/modes.js'

const CHUNK = 500
/** Target ids remembered to count a key rule's mirror deletions; beyond it the count is a lower bound. */
const MAX_PRODUCED_IDS = 200_000

export interface DryRunDeps {
  store: Store
  log: ChangeLog
  registry: Registry
  modules: ModuleCache
  localName: string
  self: string
  /** Entries of `peer`'s log this node knows it lacks, or undefined when it holds none. */
  sourceLag: (peer: string) => number | undefined
  /**
   * Rule streams: this node's records are in no log (they leave it only by
   * the streams of the rules reading them), so a dry run reads them from the
   * records of this node, the rule's source, and no other node can make one.
   */
  streams?: boolean
}

interface Evaluation {
  platform: Platform
  compiled: CompiledRule
  exact: boolean
  report: DryRunTarget
  notes: string[]
  produced?: Set<string>
  producedOverflow?: boolean
  /** Target records the planned entries delete (counted there): a mirror's sweep does not count them again. */
  deleted?: Set<string>
}

export async function dryRun (deps: DryRunDeps, rule: Rule, options: { reeval: boolean, mirrorDeletes?: boolean }): Promise<DryRunReport> {
  if (isGroupSource(rule.from)) return await dryRunGroup(deps, rule, options)
  const from = rule.from.platform ?? ''
  const report: DryRunReport = {
    dryRun: true,
    rule,
    evaluatedOn: deps.localName,
    source: { platform: from, collection: rule.from.collection, records: 0, complete: false },
    targets: []
  }
  const source = deps.registry.platform(from)
  const platforms = ruleTargets(rule, deps.registry)
  if (!isGroupTarget(rule.to) && platforms.length === 0) {
    report.targets.push(emptyTarget(rule.to.platform as string, rule.to.collection, `platform "${rule.to.platform}" is not in the registry (yet): it applies the rule once it joins`))
  }
  if (isGroupTarget(rule.to) && platforms.length === 0) {
    report.source.note = 'no platform of the registry matches the target now; platforms that join the region or get the tag apply the rule then'
  }
  if (source === undefined) {
    report.source.note = `source platform "${rule.from.platform}" is not in the registry; nothing to evaluate`
    for (const p of platforms) report.targets.push(emptyTarget(p.name, rule.to.collection, 'the source platform is unknown here'))
    return report
  }
  const lag = deps.sourceLag(source.peerId)
  report.source.complete = source.peerId === deps.self || lag === 0
  if (source.peerId !== deps.self && lag === undefined) report.source.note = `this node holds none of ${source.name}'s log yet; run the dry run on ${source.name} or on a target`
  else if (lag !== undefined && lag > 0) report.source.note = `this node is ${lag} entries behind ${source.name}'s log; the numbers cover what it holds`

  const evaluations: Evaluation[] = []
  for (const p of platforms) {
    const local = p.name === deps.localName
    const notes: string[] = []
    let module
    let exact = local
    if (local && rule.transform !== undefined) {
      await deps.modules.refresh([rule.transform])
      const state = deps.modules.get(rule.transform)
      if (state?.ok === true) module = state.module
      else {
        exact = false
        notes.push(`${state?.ok === false ? state.error : 'the transform module is not loaded'}; counted before the transform`)
      }
    }
    if (!local && deps.streams === true) {
      notes.push(`the target's records are on ${p.name}, and with rule streams the records the rule reads only here: creates, updates and deletes there are known once the rule runs`)
      if (rule.transform !== undefined) notes.push(`the transform module runs on ${p.name}; "matching" counts records before it`)
    } else if (!local) {
      notes.push(`the target's records are on ${p.name}: run the dry run there for creates/updates/deletes (e.g. syncmesh rule ${options.reeval ? 'update' : 'add'} … --dry-run --data <${p.name}'s data dir>)`)
      if (rule.transform !== undefined) notes.push(`the transform module runs on ${p.name}; "matching" counts records before it`)
    }
    const compiled = compileRule(rule, source.peerId, { localName: p.name, ...(module !== undefined ? { module } : {}) })
    const ev: Evaluation = { platform: p, compiled, exact, report: emptyTarget(p.name, rule.to.collection), notes }
    ev.report.exact = exact
    if (exact && modeOf(rule.mode).exact && rule.key !== undefined) ev.produced = new Set()
    evaluations.push(ev)
  }

  // one pass over the source log (with rule streams: the source's records), every target evaluated on each chunk
  let after: string | undefined
  for (;;) {
    const entries = deps.streams === true ? await ownRecordsAsEntries(deps, rule.from.collection, after, CHUNK) : await deps.log.readCollection(source.peerId, rule.from.collection, after, CHUNK)
    report.source.records += entries.length
    for (const ev of evaluations) await evaluateChunk(deps, ev, entries, options.reeval)
    if (entries.length < CHUNK) break
    after = entries[entries.length - 1].id
  }
  for (const ev of evaluations) {
    if (ev.exact && modeOf(rule.mode).exact && options.mirrorDeletes !== false) await countMirrorDeletes(deps, ev)
    if (ev.notes.length > 0) ev.report.note = ev.notes.join('; ')
    report.targets.push(ev.report)
  }
  return report
}

/**
 * A group source: each platform of the group evaluated as the rule's one
 * source, on the targets it feeds (every target but itself), and the
 * numbers added up per target. Each source is evaluated on its own: an id
 * two sources write is counted for each, and a mirror's deletes (what no
 * source produces) are not counted.
 */
async function dryRunGroup (deps: DryRunDeps, rule: Rule, options: { reeval: boolean }): Promise<DryRunReport> {
  // with a group target each target reads the others: the per-source evaluation leaves each source out of its targets
  const sources = ruleSources(rule.from, deps.registry.platforms(), rule.to.platform ?? '')
  const report: DryRunReport = {
    dryRun: true,
    rule,
    evaluatedOn: deps.localName,
    source: { platform: formatPlatforms(rule.from), collection: rule.from.collection, records: 0, complete: true },
    targets: []
  }
  const notes: string[] = []
  const byTarget = new Map<string, DryRunTarget>()
  for (const p of ruleTargets(rule, deps.registry)) byTarget.set(p.name, emptyTarget(p.name, rule.to.collection))
  for (const p of sources) {
    const one = await dryRun(deps, { ...rule, from: { platform: p.name, collection: rule.from.collection } }, { reeval: options.reeval, mirrorDeletes: false })
    report.source.records += one.source.records
    if (!one.source.complete) report.source.complete = false
    if (one.source.note !== undefined) notes.push(`${p.name}: ${one.source.note}`)
    for (const t of one.targets) {
      const sum = byTarget.get(t.platform)
      if (sum === undefined) {
        byTarget.set(t.platform, { ...t })
        continue
      }
      sum.exact = t.exact
      for (const k of ['matching', 'creates', 'updates', 'deletes', 'unchanged', 'skipped', 'conflicts', 'errors'] as const) sum[k] += t[k]
      if (t.note !== undefined && sum.note === undefined) sum.note = t.note
    }
  }
  if (sources.length === 0) notes.push('no platform of the registry is in the source group now; platforms that join it feed the rule then')
  else notes.push(`${sources.length} source platform${sources.length > 1 ? 's' : ''} (${sources.map(p => p.name).join(', ')}), each evaluated on its own: an id several sources write is counted for each${modeOf(rule.mode).exact ? '; the mirror\'s deletes (records no source produces) are not counted' : ''}`)
  report.source.note = notes.join('; ')
  report.targets = [...byTarget.values()]
  return report
}

/**
 * The next `limit` records of `collection` on this node after `afterId`, as
 * the entries a rule plans (a record's newest write: a put of its value, a
 * delete for a tombstone): what a dry run reads with rule streams.
 */
async function ownRecordsAsEntries (deps: DryRunDeps, collection: string, afterId: string | undefined, limit: number): Promise<LogEntry[]> {
  const prefix = keys.recordPrefix(collection)
  const out: LogEntry[] = []
  for await (const [key, bytes] of deps.store.db.iterator({ ...rangeAfter(prefix, afterId), limit })) out.push(recordAsEntry(deps, collection, keySuffix(key, prefix), bytes))
  return out
}

/** A record of this node (its stored bytes) as the entry a rule plans: a put of its value, a delete for a tombstone. */
function recordAsEntry (deps: DryRunDeps, collection: string, id: string, bytes: Uint8Array): LogEntry {
  const state = decodeRecord(bytes)
  const v = state.version
  const value = state.value === undefined ? undefined : storedValueText(bytes, state) ?? encodeJson(state.value)
  const entry = newEntry(deps.self, v.seq, v.hlc, collection, id, value === undefined ? 'del' : 'put', value, v.origin, v.seq)
  if (state.value !== undefined) entry.parsed = state.value
  return entry
}

function emptyTarget (platform: string, collection: string, note?: string): DryRunTarget {
  const t: DryRunTarget = { platform, collection, exact: false, matching: 0, creates: 0, updates: 0, deletes: 0, unchanged: 0, skipped: 0, conflicts: 0, errors: 0 }
  if (note !== undefined) t.note = note
  return t
}

async function evaluateChunk (deps: DryRunDeps, ev: Evaluation, entries: LogEntry[], reeval: boolean): Promise<void> {
  const planned: Array<{ entry: LogEntry, plan: Plan }> = []
  for (const entry of entries) {
    const value = parseEntryValue(entry)
    let plan = planEntry(ev.compiled, entry, value)
    if (ev.exact) plan = await resolvePlan(ev.compiled, entry, value, plan)
    if (plan.kind === 'skip' || (plan.kind === 'del' && plan.drop === true)) ev.report.skipped += entry.op === 'put' ? 1 : 0
    if (plan.kind === 'error') ev.report.errors++
    if (plan.kind === 'put') {
      ev.report.matching++
      if (ev.produced !== undefined) {
        if (ev.produced.size < MAX_PRODUCED_IDS) ev.produced.add(plan.targetId)
        else ev.producedOverflow = true
      }
    }
    if (ev.exact && (plan.kind === 'put' || plan.kind === 'del')) planned.push({ entry, plan })
  }
  if (!ev.exact || planned.length === 0) return
  // the real engine against the real store, in a transaction that is never committed
  const txn = deps.store.txn()
  const prefetch: string[] = []
  for (const p of planned) pushPlanKeys(prefetch, planKeys(ev.compiled, p.entry, p.plan))
  await txn.prefetch(prefetch)
  const ctx: ApplyContext = {
    txn,
    self: deps.self,
    reeval,
    freshVersion: () => ({ hlc: { wall: Number.MAX_SAFE_INTEGER, logical: 0 }, origin: deps.self, seq: 0 }),
    published: () => false,
    // a mirror, the only rule a dry run applies, removes only what it placed
    sendsTo: () => false,
    keepChanges: false,
    writeRecord: (collection, id, state: RecordState, previous: RecordState | undefined) => {
      // a tombstone where the target holds no live record deletes nothing
      if (state.value === undefined) {
        if (previous?.value !== undefined) {
          ev.report.deletes++
          ;(ev.deleted ??= new Set()).add(id)
        }
      } else if (previous?.value !== undefined) ev.report.updates++
      else ev.report.creates++
      txn.put(keys.record(collection, id), encodeRecord(state)) // never committed: later plans of this chunk see it
      return 0
    },
    conflict: () => { ev.report.conflicts++ },
    platformOf: () => undefined
  }
  for (const p of planned) {
    const before = ev.report.creates + ev.report.updates + ev.report.deletes
    applyPlan(ctx, ev.compiled, p.entry, p.plan)
    if (p.plan.kind === 'put' && ev.report.creates + ev.report.updates + ev.report.deletes === before) ev.report.unchanged++
  }
}

/** Mirror: target records the source would not produce are deleted by the sweep. */
async function countMirrorDeletes (deps: DryRunDeps, ev: Evaluation): Promise<void> {
  const rule = ev.compiled.rule
  const prefix = keys.recordPrefix(rule.to.collection)
  for await (const [key, bytes] of deps.store.db.iterator(prefixRange(prefix))) {
    const state = decodeRecord(bytes)
    if (state.value === undefined) continue
    const id = keySuffix(key, prefix)
    if (ev.deleted?.has(id) === true) continue
    let kept: boolean
    if (ev.produced !== undefined) {
      kept = ev.produced.has(id)
      if (!kept && ev.producedOverflow === true) continue // unknown: not counted
    } else {
      kept = await producesItself(deps, ev.compiled, id)
    }
    if (!kept) ev.report.deletes++
  }
  if (ev.producedOverflow === true) ev.notes.push(`more than ${MAX_PRODUCED_IDS} target ids: "deletes" is a lower bound`)
}

/** Key-less rule: does the source record with this id become this target record? */
async function producesItself (deps: DryRunDeps, rule: CompiledRule, id: string): Promise<boolean> {
  let entry: LogEntry
  if (deps.streams === true) {
    // with rule streams the source's records are in no log: its record, as the pass over them read it
    const bytes = await deps.store.db.get(keys.record(rule.rule.from.collection, id))
    if (bytes === undefined) return false
    entry = recordAsEntry(deps, rule.rule.from.collection, id, bytes)
  } else {
    const seq = await deps.store.db.get(keys.latest(deps.store.logs.of(rule.sourcePeer), rule.rule.from.collection, id))
    if (seq === undefined) return false
    const bytes = await deps.store.db.get(keys.entry(deps.store.logs.of(rule.sourcePeer), Number(utf8.decode(seq))))
    if (bytes === undefined) return false
    entry = decodeEntry(rule.sourcePeer, bytes)
  }
  const value: JsonObject | undefined = parseEntryValue(entry)
  const plan = await resolvePlan(rule, entry, value, planEntry(rule, entry, value))
  return plan.kind === 'put' && plan.targetId === id
}
