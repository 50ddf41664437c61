/**
 * A rule applied to the data a node holds already: a backfill pass over its
 * source (resumable, in chunks; a mirror rule then sweeps what its source
 * lacks), and publish, which logs the records rules wrote into a collection
 * that became the source of a rule. Each chunk is one transaction of the
 * write path (WritePath.writeTxn); what it applies goes through the rule
 * application of Ingestor (ingest.ts).
 */
import { decodeEntry } from '../log/entry.js'
import type { LogEntry } from '../log/entry.js'
import { compareHlc } from '../core/hlc.js'
import type { JsonObject } from '../core/types.js'
import { decodeJson, encodeJson, rows, utf8 } from '../store/db.js'
import type { Txn } from '../store/db.js'
import { keys, keySuffix, prefixOf, prefixRange, rangeAfter, SEP } from '../store/keys.js'
import { decodeRecord, storedValueText } from '../store/records.js'
import { SEALED_COLLECTION } from '../store/names.js'
import { blindedIdHex } from '../log/sealed-entry.js'
import type { StreamKey } from '../log/seal.js'
import type { RecordState } from '../store/records.js'
import { entryVersion, parseEntryValue, planKeys, pushPlanKeys, ruleIdOfState, stateIdOf, sweepRecord } from '../rules/engine.js'
import type { Applied, CompiledRule, Plan, PlanKeys } from '../rules/engine.js'
import { modeOf } from '../core/modes.js'
import { BackfillReader } from './backfill-reader.js'
import { AWAITING_KEY_PREFIX, BACKFILL_CHUNK, LEFT_OUT_KEY, STREAM_LEFT_OUT_KEY, streamFillKey, WritePath } from './write-txn.js'
import type { IngestResult, TxnState } from './write-txn.js'

export interface BackfillState {
  source: string
  fingerprint: string
  after?: string
  done: boolean
  /** "sweep": a mirror rule removing target records its source lacks, after `sweepAfter`. */
  phase?: 'source' | 'sweep'
  sweepAfter?: string
  /** This pass re-evaluates data an earlier version of the rule wrote. */
  reeval?: boolean
  /**
   * The source's log as held when the pass started (the rule was active from
   * then on): later entries were applied as they arrived, the pass skips them.
   */
  upTo?: number
  /**
   * How the pass reads the source: "log", its log in order (one range read
   * per chunk; `afterSeq` is where it is), or by the index of the
   * collection's records (`after`, an id; passes saved before "log" existed
   * have no order and read this way). A pass starts in log order and turns to
   * the index, from the start, once fewer than half the entries it read were
   * of the rule's collection (`scanned`, `matched`); the entries up to
   * `loggedTo`, applied before it turned, are passed over then.
   */
  order?: 'log' | 'index'
  afterSeq?: number
  scanned?: number
  matched?: number
  loggedTo?: number
  /**
   * Catching up after a pause (see RuleService.resumed): the source's log
   * is read in log order from `afterSeq` (where the rule stopped) up to
   * `upTo` (taken when the pass starts), never turning to the index and
   * with no mirror sweep (the log holds the deletes); then the pass the
   * pause interrupted, `then`, goes on from where it was, if there was one.
   */
  catchUp?: boolean
  then?: BackfillState
  /**
   * The state of a group-source rule itself (keys.backfill(rule id), which
   * none of its sources uses): the platforms feeding it here when last noted
   * (Backfiller.groupSources), and a mirror's sweep after some left.
   */
  sources?: string[]
}

/** A chunk of a pass, issued: what it did, and when it is durable. */
interface IssuedChunk {
  result: IngestResult
  durable: Promise<void>
}

interface PublishState {
  after?: string
  done: boolean
}

/** Backfill, sweep and publish, over the write path: the rule application they use is Ingestor's. */
export abstract class Backfiller extends WritePath {
  /**
   * How a new backfill pass reads its source first (BackfillState.order):
   * in log order, turning to the collection's index when the log is mostly
   * other collections. "index" reads by the index from the start.
   */
  backfillOrder: 'log' | 'index' = 'log'

  /** Plan an entry for a rule (Ingestor.plan). */
  protected abstract plan (rule: CompiledRule, entry: LogEntry, value: JsonObject | undefined): Plan | Promise<Plan>
  /** The plan when there is something to apply (Ingestor.keep). */
  protected abstract keep (st: TxnState, rule: CompiledRule, entry: LogEntry, plan: Plan): Plan | undefined
  /** Apply a planned entry (Ingestor.applyRulePlan). */
  protected abstract applyRulePlan (st: TxnState, rule: CompiledRule, entry: LogEntry, plan: Plan, at: PlanKeys | undefined): Applied[]
  /** Chain rule writes on (Ingestor.derive). */
  protected abstract derive (st: TxnState, applied: Applied[], depth: number): Promise<void>
  /** Apply a batch of entries at a chain depth (Ingestor.applyLevel). */
  protected abstract applyLevel (st: TxnState, entries: LogEntry[], depth: number): Promise<void>
  /** Rule states that passed over entries of their stream for want of a key (Ingestor.awaitingKey). */
  abstract readonly awaitingKey: Set<string>

  /**
   * Apply a rule to the source data already held, in chunks, resumably: the
   * progress is stored with each chunk, so a restart continues where it
   * stopped. Restarts from the beginning when what the rule writes changed
   * (its fingerprint: filter, transforms, module, mode, …) or its source moved
   * to another peer; a changed rule re-evaluates what it wrote before. A
   * mirror rule then removes the target records its source lacks.
   */
  async backfill (rule: CompiledRule, onChunk: (result: IngestResult) => void, isCurrent: () => boolean): Promise<void> {
    const stateKey = keys.backfill(rule.stateId)
    let { state, fresh } = await this.passState(rule)
    let previous: IssuedChunk | undefined
    let first = true
    const source = rule.sourcePeer
    // a rule stream's entries are encrypted: they name "$sealed", not the source collection (sealed-entry.ts)
    const reader = new BackfillReader(this.log, source, rule.stream !== undefined ? SEALED_COLLECTION : rule.rule.from.collection, BACKFILL_CHUNK)
    while (!state.done && isCurrent()) {
      const current: BackfillState = state
      const { result, durable } = await this.store.exclusive(async () => {
        if (first) {
          // the source's log is read with iterators, which see only durable writes: let batches
          // issued before this pass (whose entries were not applied by this rule) land first
          first = false
          await this.store.flushed()
        }
        // taken under the write lock: every entry stored after this was applied by this rule as it arrived
        if ((fresh || current.catchUp === true) && current.upTo === undefined) current.upTo = this.log.held(source)
        const result: IngestResult = { stored: 0, changes: [], registry: [], skipped: [] }
        let next: BackfillState = { ...current }
        const { durable } = await this.writeTxn(async (txn) => {
          const st = this.begin(txn, result, current.reeval === true)
          if (current.phase !== 'sweep') {
            next = await this.backfillSourceChunk(st, rule, reader, current, next)
          } else {
            await this.sweepStep(st, rule, current, next)
          }
          st.progress = { key: stateKey, value: encodeJson(next) }
          return st
        }, { issue: true })
        state = next
        return { result, durable }
        // the source phase reads the source's log (entries stored later were applied as they arrived,
        // and what a read missed or read before it was replaced is settled through the Txn, which
        // sees writes in flight) and records through its Txn: it may run while the previous chunk
        // is written; the sweep iterates records, so it waits for them
      }, { pipelined: current.phase !== 'sweep' })
      // the next chunk is applied while this one is written; its events follow its durability
      await this.announce(previous, onChunk)
      previous = { result, durable }
    }
    await reader.drop() // a pass stopped (rule changed, node stopping) leaves no read behind
    await this.announce(previous, onChunk)
  }

  /** One chunk of a backfill's source phase: read (one chunk ahead), planned, applied and chained; returns the next state. */
  private async backfillSourceChunk (st: TxnState, rule: CompiledRule, reader: BackfillReader, current: BackfillState, next: BackfillState): Promise<BackfillState> {
    const source = rule.sourcePeer
    const txn = st.txn
    // entries above `upTo` were applied when they arrived: not even read
      const chunk = await reader.take(current)
      Object.assign(next, chunk.next)
      if (current.order === 'log') {
        next.scanned = (current.scanned ?? 0) + chunk.scanned
        next.matched = (current.matched ?? 0) + chunk.entries.length
      }
      if (chunk.more) {
        // the next chunk is read while this one is applied and written (the reads were ~40% of a
        // backfill's time, `npm run profile:ingest -- --mode backfill`)
        reader.readAhead(next)
      }
      // an entry replaced since it was read (stored after the read, and applied as it arrived) is
      // passed over: applied now, an older delete or key would drop what the newer one placed.
      // Checked only when the source's log may have moved since the read (live writes meanwhile)
      const moved = chunk.asOf === undefined || this.log.held(source) !== chunk.asOf
      if (moved) await txn.prefetch(chunk.entries.map(e => keys.latest(this.store.logs.of(e.origin), e.collection, e.id)))
      const planned: Array<{ entry: LogEntry, plan: Plan, at: PlanKeys | undefined }> = []
      for (const entry of chunk.entries) {
        if (current.loggedTo !== undefined && entry.seq <= current.loggedTo) continue
        if (moved && !this.log.isNewest(txn, entry)) continue
        const e = entry.epoch === undefined ? entry : await this.openFor(st, rule, entry)
        if (e === undefined) continue
        const value = parseEntryValue(e)
        const maybe = this.plan(rule, e, value)
        const plan = this.keep(st, rule, e, maybe instanceof Promise ? await maybe : maybe)
        if (plan !== undefined) planned.push({ entry: e, plan, at: planKeys(rule, e, plan) })
      }
      const prefetch: string[] = []
      for (const p of planned) pushPlanKeys(prefetch, p.at)
      await txn.prefetch(prefetch)
      const applied: Applied[] = []
      for (const p of planned) applied.push(...this.applyRulePlan(st, rule, p.entry, p.plan, p.at))
      await this.derive(st, applied, 0)
      if (chunk.more && next.order === 'log' && next.catchUp !== true && (next.matched ?? 0) * 2 < (next.scanned ?? 0)) {
        // the source's log is mostly other collections: read this one's records by the index,
        // from the start, passing over the entries applied already
        next.order = 'index'
        next.loggedTo = next.afterSeq
        delete next.afterSeq
        delete next.after
        await reader.drop()
      } else if (!chunk.more) {
        if (next.catchUp === true) next = next.then !== undefined ? { ...next.then } : { ...next, done: true }
        else if (modeOf(rule.rule.mode).exact && !rule.group) next.phase = 'sweep'
        else {
          next.done = true
          if (rule.group && modeOf(rule.rule.mode).exact) this.sweepOnceAllDone(txn, rule)
        }
      }
    return next
  }

  /** A rule's saved backfill state, or a fresh pass when there is none or the rule's source or output changed. */
  private async passState (rule: CompiledRule): Promise<{ state: BackfillState, fresh: boolean }> {
    const fingerprint = rule.fingerprint
    const state = await this.backfillState(rule.stateId)
    if (state !== undefined && state.source === rule.sourcePeer && state.fingerprint === fingerprint) return { state, fresh: false }
    // an earlier version of the rule wrote here (its backfill ran, or live entries applied before this one started);
    // a platform joining a group source starts afresh (its state went when it left)
    const reeval = state !== undefined ? state.fingerprint !== fingerprint || (state.reeval === true && !state.done) : !rule.group && this.applied(rule.rule.id) > 0
    const next: BackfillState = { source: rule.sourcePeer, fingerprint, done: false, phase: 'source', order: this.backfillOrder }
    if (reeval) next.reeval = true
    return { state: next, fresh: true }
  }

  /** One chunk of a mirror's sweep in `st` (what its source no longer produces is removed, and logged on where published); `next` moves past it. */
  private async sweepStep (st: TxnState, rule: CompiledRule, current: BackfillState, next: BackfillState): Promise<void> {
    const { applied, last, more } = await this.sweepChunk(st, rule, current.sweepAfter)
    await this.derive(st, applied, 0)
    if (last !== undefined) next.sweepAfter = last
    if (!more) next.done = true
  }

  /**
   * Mirror: remove live target records that the rule's source does not hold
   * (one chunk). With a group source, what no current source of the rule on
   * this node holds (see groupHolds); a record removed is then re-applied
   * from the sources that have a record with its id (a rule without `key`).
   */
  /** A rule stream's entry opened for `rule` (Ingestor.openFor). */
  protected abstract openFor (st: TxnState, rule: CompiledRule, entry: LogEntry): Promise<LogEntry | undefined>

  private async sweepChunk (st: TxnState, rule: CompiledRule, after: string | undefined): Promise<{ applied: Applied[], last?: string, more: boolean }> {
    const collection = rule.rule.to.collection
    const prefix = keys.recordPrefix(collection)
    const records: Array<{ id: string, state: RecordState }> = []
    for await (const batch of rows(this.store.db, { ...rangeAfter(prefix, after), limit: BACKFILL_CHUNK })) {
      for (const [key, value] of batch) records.push({ id: keySuffix(key, prefix), state: decodeRecord(value) })
    }
    const sources = rule.group ? this.rules.forRule(rule.rule.id) : [rule]
    await this.holdStreamKeys(sources)
    const applied: Applied[] = []
    const gone: string[] = []
    for (const { id, state } of records) {
      if (state.value === undefined) continue
      if (state.rule === rule.rule.id && (rule.group ? this.groupHolds(st.txn, sources, state, id) : this.sourceHolds(st.txn, rule, state.source ?? id, id))) continue
      const a = sweepRecord(st.ctx, rule, id, state)
      if (st.keepChanges && a.change !== undefined) st.result.changes.push(a.change)
      this.count(st, rule.rule.id, 'applied')
      applied.push(a)
      gone.push(id)
    }
    if (rule.group && rule.rule.key === undefined && gone.length > 0) applied.push(...await this.reapply(st, sources, gone))
    const out: { applied: Applied[], last?: string, more: boolean } = { applied, more: records.length === BACKFILL_CHUNK }
    if (records.length > 0) out.last = records[records.length - 1].id
    return out
  }

  /**
   * A source of a group-source mirror finished its backfill (in `txn`, its
   * last chunk): once every source of the rule here has, the rule sweeps
   * what none of them produces (sweepLeft), once for all of them rather than
   * after each.
   */
  private sweepOnceAllDone (txn: Txn, rule: CompiledRule): void {
    for (const s of this.rules.forRule(rule.rule.id)) {
      if (s.stateId === rule.stateId) continue
      const bytes = txn.get(keys.backfill(s.stateId))
      if (bytes === undefined || !decodeJson<BackfillState>(bytes).done) return
    }
    const bytes = txn.get(keys.backfill(rule.rule.id))
    const next: BackfillState = { ...(bytes !== undefined ? decodeJson<BackfillState>(bytes) : { source: '', fingerprint: '' }), done: false, phase: 'sweep' }
    delete next.sweepAfter
    txn.put(keys.backfill(rule.rule.id), encodeJson(next))
  }

  /**
   * Whether a current source of a group-source rule holds the record: it
   * maps a live source record to it and the record is that source's write
   * (or the rule's own rewrite of it, a re-evaluation here). A record that
   * holds the write of a platform that left the group is not held. A source
   * whose stream this node cannot read whole yet (it waits for the key of
   * an epoch) holds what it placed: the record's entry of an earlier epoch
   * may be compacted away by one under the epoch whose key is missing
   * (streams.md §14), and once the key is here the source's stream is read
   * again and the rule swept again.
   */
  private groupHolds (txn: Txn, sources: CompiledRule[], state: RecordState, id: string): boolean {
    const sourceId = state.source ?? id
    // the source whose write the record carries first: one read pair for a record that is held
    const first = sources.find(s => s.sourcePeer === state.version.origin)
    for (const s of first !== undefined ? [first, ...sources.filter(x => x !== first)] : sources) {
      const mapped = txn.get(keys.targetMap(s.stateId, sourceId))
      if (mapped === undefined || utf8.decode(mapped) !== id) continue
      if (s.stream !== undefined && this.awaitingKey.has(s.stateId)) return true
      const entry = this.newestEntry(txn, s, sourceId)
      if (entry === undefined || entry.op !== 'put') continue
      if (state.version.origin === this.self || compareHlc(entryVersion(entry).hlc, state.version.hlc) === 0) return true
    }
    return false
  }

  /**
   * The newest entry of a source's record, from the log held here. In a rule
   * stream (encrypted) it is found by the record's blinded id under each key
   * of the stream this node holds (streamKeysHeld); its op, clock and writer
   * are in clear.
   */
  private newestEntry (txn: Txn, rule: CompiledRule, sourceId: string): LogEntry | undefined {
    let seq: number | undefined
    if (rule.stream === undefined) {
      const at = txn.get(keys.latest(this.store.logs.of(rule.sourcePeer), rule.rule.from.collection, sourceId))
      seq = at !== undefined ? Number(utf8.decode(at)) : undefined
    } else {
      for (const key of this.streamKeysHeld.get(rule.sourcePeer) ?? []) {
        const at = txn.get(keys.latest(this.store.logs.of(rule.sourcePeer), SEALED_COLLECTION, blindedIdHex(key, rule.rule.from.collection, sourceId)))
        if (at !== undefined) seq = Math.max(seq ?? 0, Number(utf8.decode(at)))
      }
    }
    if (seq === undefined) return undefined
    const bytes = txn.get(keys.entry(this.store.logs.of(rule.sourcePeer), seq))
    return bytes === undefined ? undefined : decodeEntry(rule.sourcePeer, bytes)
  }

  /** The keys of each rule stream `sources` read that this node holds, for newestEntry: read before a sweep's chunk. */
  private readonly streamKeysHeld = new Map<string, StreamKey[]>()

  private async holdStreamKeys (sources: CompiledRule[]): Promise<void> {
    for (const s of sources) {
      if (s.stream === undefined || this.streamKeys === undefined) continue
      this.streamKeysHeld.set(s.sourcePeer, await this.streamKeys.keysOf(s.sourcePeer))
    }
  }

  /**
   * Records a group-source mirror just removed: apply them again from the
   * current sources that hold a record with that id (the version the target
   * held was another source's, one that left: the others' own version comes
   * back; between them the later write wins).
   */
  private async reapply (st: TxnState, sources: CompiledRule[], ids: string[]): Promise<Applied[]> {
    const out: Applied[] = []
    for (const s of sources) {
      for (const id of ids) {
        const newest = this.newestEntry(st.txn, s, id)
        if (newest === undefined || newest.op !== 'put') continue
        const entry = newest.epoch === undefined ? newest : await this.openFor(st, s, newest)
        if (entry === undefined) continue
        const value = parseEntryValue(entry)
        const maybe = this.plan(s, entry, value)
        const plan = this.keep(st, s, entry, maybe instanceof Promise ? await maybe : maybe)
        if (plan === undefined) continue
        out.push(...this.applyRulePlan(st, s, entry, plan, planKeys(s, entry, plan)))
      }
    }
    return out
  }

  /** Whether the rule's source holds a live record `sourceId` that the rule maps to `targetId`. */
  private sourceHolds (txn: Txn, rule: CompiledRule, sourceId: string, targetId: string): boolean {
    const mapped = txn.get(keys.targetMap(rule.stateId, sourceId))
    if (mapped === undefined || utf8.decode(mapped) !== targetId) return false
    // a stream's record index is by blinded id; its put maps the record and its delete or unmatch unmaps it
    if (rule.stream !== undefined) return true
    return this.newestEntry(txn, rule, sourceId)?.op === 'put'
  }

  /**
   * A group-source mirror lost a source (a platform left the group): remove
   * the target records no current source holds, resumably (its progress is
   * the rule's own backfill state, keys.backfill(rule id), which no source
   * of a group rule uses). `rule` is the rule compiled without a source.
   */
  async sweepLeft (rule: CompiledRule, onChunk: (result: IngestResult) => void, isCurrent: () => boolean): Promise<void> {
    const stateKey = keys.backfill(rule.rule.id)
    let state = await this.backfillState(rule.rule.id)
    while (state !== undefined && !state.done && isCurrent()) {
      const result = await this.store.exclusive(async () => {
        await this.store.flushed()
        const result: IngestResult = { stored: 0, changes: [], registry: [], skipped: [] }
        // read again under the lock: a source's backfill finishing may have asked for a sweep from the start
        const current = await this.backfillState(rule.rule.id)
        if (current === undefined || current.done) {
          state = current
          return result
        }
        let next: BackfillState = { ...current }
        await this.writeTxn(async (txn) => {
          const st = this.begin(txn, result)
          await this.sweepStep(st, rule, current, next)
          st.progress = { key: stateKey, value: encodeJson(next) }
          return st
        })
        state = next
        return result
      })
      onChunk(result)
    }
  }

  /**
   * A group-source rule's sources here now (platform names), against those
   * saved with its own state (keys.backfill(rule id)) when they were last
   * noted: returns the platforms that left. Each one's progress and pause
   * point are forgotten (should it come back, it is backfilled afresh), once
   * `stopped` says its running pass has stopped; a mirror notes a sweep
   * (sweepLeft) to remove what only they held. Noted across pauses and
   * restarts: a platform that left meanwhile is found at the next call.
   */
  async groupSources (rule: CompiledRule, now: string[], stopped: (stateId: string) => Promise<void>): Promise<string[]> {
    const peek = await this.backfillState(rule.rule.id)
    const gone = (peek?.sources ?? []).filter(name => !now.includes(name))
    if (peek !== undefined && gone.length === 0 && JSON.stringify(peek.sources) === JSON.stringify(now)) return gone
    for (const name of gone) await stopped(stateIdOf(rule.rule, name))
    // read, compare and write under the write lock: sweeps and backfills write this key there too
    return await this.store.exclusive(async () => {
      await this.store.flushed()
      return await this.noteGroupSources(rule, now)
    })
  }

  private async noteGroupSources (rule: CompiledRule, now: string[]): Promise<string[]> {
    const saved = await this.backfillState(rule.rule.id)
    const left = (saved?.sources ?? []).filter(name => !now.includes(name))
    const ops: Array<{ type: 'del', key: string } | { type: 'put', key: string, value: Uint8Array }> = []
    for (const name of left) {
      const stateId = stateIdOf(rule.rule, name)
      ops.push({ type: 'del', key: keys.backfill(stateId) }, { type: 'del', key: keys.rulePause(stateId) })
    }
    const next: BackfillState = saved !== undefined ? { ...saved, sources: now } : { source: '', fingerprint: '', done: true, sources: now }
    if (left.length > 0 && modeOf(rule.rule.mode).exact) {
      next.done = false
      next.phase = 'sweep'
      delete next.sweepAfter
    }
    ops.push({ type: 'put', key: keys.backfill(rule.rule.id), value: encodeJson(next) })
    await this.store.db.batch(ops)
    return left
  }

  async backfillState (ruleId: string): Promise<BackfillState | undefined> {
    const saved = await this.store.db.get(keys.backfill(ruleId))
    return saved !== undefined ? decodeJson<BackfillState>(saved) : undefined
  }

  async backfillDone (ruleId: string): Promise<boolean> {
    return (await this.backfillState(ruleId))?.done === true
  }

  /**
   * A collection became the source of a rule: log the records rules wrote
   * into it before (they were not logged then), so the new rule's targets get
   * them. Chunked and resumable; records whose newest write is already in the
   * own log are skipped.
   */
  async publish (collection: string, onChunk: (result: IngestResult) => void, isCurrent: () => boolean): Promise<void> {
    await this.resumablePass(keys.publish(collection), onChunk, isCurrent, async (st, current) => await this.publishChunk(st, collection, current))
  }

  /** A chunk of a pipelined pass, once durable: its log positions may be served, and its events follow (onChunk). */
  private async announce (chunk: IssuedChunk | undefined, onChunk: (result: IngestResult) => void): Promise<void> {
    if (chunk === undefined) return
    await chunk.durable
    this.durable(chunk.result)
    onChunk(chunk.result)
  }

  /**
   * A pass over data held here in chunks, one transaction each: `chunk`
   * does one in `st` and returns the next state, saved with it (`stateKey`),
   * so that the pass resumes after a restart where it stopped. `pipelined`:
   * a chunk is worked while the one before is written (its events follow its
   * durability); `chunk` then reads what it works on through its Txn, which
   * sees the writes in flight. Its first chunk waits for the writes issued
   * before the pass.
   */
  private async resumablePass (stateKey: string, onChunk: (result: IngestResult) => void, isCurrent: () => boolean, chunk: (st: TxnState, current: PublishState) => Promise<PublishState>, pipelined = false): Promise<void> {
    const saved = await this.store.db.get(stateKey)
    let state: PublishState = saved !== undefined ? decodeJson<PublishState>(saved) : { done: false }
    let previous: IssuedChunk | undefined
    let first = true
    while (!state.done && isCurrent()) {
      const current = state
      const issued = await this.store.exclusive(async () => {
        if (first) await this.store.flushed()
        first = false
        const result: IngestResult = { stored: 0, changes: [], registry: [], skipped: [] }
        let next: PublishState = current
        const { durable } = await this.writeTxn(async (txn) => {
          const st = this.begin(txn, result)
          next = await chunk(st, current)
          st.progress = { key: stateKey, value: encodeJson(next) }
          return st
        }, { issue: pipelined })
        state = next
        return { result, durable }
      }, { pipelined })
      if (!pipelined) {
        onChunk(issued.result)
        continue
      }
      await this.announce(previous, onChunk)
      previous = issued
    }
    await this.announce(previous, onChunk)
  }

  /** One chunk of publish: rule-written records not yet in the own log are logged and applied on; returns the next state. */
  private async publishChunk (st: TxnState, collection: string, current: PublishState): Promise<PublishState> {
    const txn = st.txn
    const prefix = keys.recordPrefix(collection)
    const records: Array<{ id: string, state: RecordState }> = []
    // no rule has ever written a record on this node (rule counters only grow, and are kept when a
    // rule goes): nothing to publish, and the collection is not read. A node that only sends (the
    // source of a rule) read and parsed its whole collection when a rule on it was added, while
    // serving that rule's target (`npm run profile:sync`: a quarter of the source's CPU during the sync)
    const mayHoldRuleWrites = this.anyRuleApplied()
    if (mayHoldRuleWrites) {
      for await (const batch of rows(this.store.db, { ...rangeAfter(prefix, current.after), limit: BACKFILL_CHUNK })) {
        for (const [key, value] of batch) records.push({ id: keySuffix(key, prefix), state: decodeRecord(value) })
      }
    }
    // local writes are in the own log already: only rule-written records are looked up there
    const written = records.filter((r): r is { id: string, state: RecordState & { rule: string } } => r.state.rule !== undefined)
    await txn.prefetch(written.map(r => keys.latest(this.store.logs.of(this.self), collection, r.id)))
    const derived: LogEntry[] = []
    for (const { id, state: rec } of written) {
      const seq = txn.get(keys.latest(this.store.logs.of(this.self), collection, id))
      const bytes = seq !== undefined ? txn.get(keys.entry(this.store.logs.of(this.self), Number(utf8.decode(seq)))) : undefined
      const logged = bytes !== undefined ? decodeEntry(this.self, bytes) : undefined
      if (logged !== undefined && compareHlc(logged.hlc, rec.version.hlc) >= 0) continue
      // never published and gone: nothing to say, but for a rule's tombstone, which a target keeps as well
      // (engine.ts removeUnplaced) unless it gets the delete from that rule's own source: then left out as
      // a relayed put is, and logged by the next publish once that no longer holds (noteLeftOut)
      if (logged === undefined && rec.value === undefined && this.rules.leavesOut(rec.rule, collection)) {
        this.noteLeftOut(st, collection, rec.rule)
        continue
      }
      // a delete names the write the log held of the record, which it removes (LogEntry.prev)
      const removed = rec.value === undefined && logged?.op === 'put' ? { origin: logged.writer ?? this.self, seq: logged.writerSeq ?? logged.seq, hlc: logged.hlc } : undefined
      derived.push(this.ownEntry(st, collection, id, rec.value !== undefined ? 'put' : 'del', rec.value, rec.version, removed))
    }
    if (derived.length > 0) await this.applyLevel(st, derived, 1)
    const next: PublishState = { ...current, done: !mayHoldRuleWrites || records.length < BACKFILL_CHUNK }
    if (records.length > 0) next.after = records[records.length - 1].id
    return next
  }

  /**
   * The relayed puts of `collection` some rule left out of the own log and
   * that must be logged now (RuleSet relayedPutsLeftOut no longer lists the pair):
   * forget the collection's publish progress and those pairs, in one batch, so
   * that the next publish logs them (also after a crash). Returns whether there
   * were any. Runs under the write lock, while no publish of it runs.
   */
  async forgetLeftOut (collection: string): Promise<boolean> {
    return await this.store.exclusive(async () => {
      const current = this.rules.leftOut().get(collection)
      const prefix = `${collection}${SEP}`
      const dropped = [...this.everLeftOut].filter(pair => pair.startsWith(prefix) && current?.has(pair.slice(prefix.length)) !== true)
      if (dropped.length === 0) return false
      const kept = [...this.everLeftOut].filter(pair => !dropped.includes(pair))
      // after the transactions in flight (one of them may put the set as it was)
      const { durable } = await this.store.write(new Map([[keys.publish(collection), undefined], [LEFT_OUT_KEY, encodeJson(kept)]]))
      await durable
      this.everLeftOut = new Set(kept)
      return true
    })
  }

  /**
   * Rule streams: own stream `stream` no longer leaves out the relayed
   * puts of some rule it left out before (RuleSet streamLeavesOut: a target
   * joined that the write's own rule does not reach, a mode changed, …):
   * forget those pairs and the stream's fill progress, in one batch, so
   * that its next fill appends the records it left out (also after a
   * crash). Returns whether there were any. Call it while no fill of the
   * stream runs.
   */
  async forgetStreamLeftOut (stream: string): Promise<boolean> {
    return await this.store.exclusive(async () => {
      const prefix = `${stream}${SEP}`
      const dropped = [...this.everStreamLeftOut].filter(pair => pair.startsWith(prefix) && !this.rules.streamLeavesOut(stream, pair.slice(prefix.length)))
      if (dropped.length === 0) return false
      const kept = [...this.everStreamLeftOut].filter(pair => !dropped.includes(pair))
      // after the transactions in flight (one of them may put the set as it was)
      const { durable } = await this.store.write(new Map([[streamFillKey(stream), undefined], [STREAM_LEFT_OUT_KEY, encodeJson(kept)]]))
      await durable
      this.everStreamLeftOut = new Set(kept)
      return true
    })
  }

  /**
   * Rule streams: fill a rule's stream from the records of its source
   * collection here (the backfill of its targets, streams.md §4), chunked
   * and resumable. Each record goes through flushStreams like a write: what
   * the stream holds already is not appended again, so a pass after a crash,
   * or over a stream of an earlier generation, appends only what is missing.
   */
  async fillStream (stream: string, collection: string, onChunk: (result: IngestResult) => void, isCurrent: () => boolean): Promise<void> {
    const prefix = keys.recordPrefix(collection)
    await this.resumablePass(streamFillKey(stream), onChunk, isCurrent, async (st, current) => {
      const streamed = (st.streamed ??= new Map())
      // the ids from the database, the records through the Txn: a chunk is worked while the one
      // before is written (pipelined), and a record may be changing in a write in flight, whose own
      // flushStreams sends its new state: read here as it was, it would be sent again, after it
      const recordKeys = await this.store.db.keys({ ...rangeAfter(prefix, current.after), limit: BACKFILL_CHUNK }).all()
      await st.txn.prefetch(recordKeys)
      for (const key of recordKeys) {
        const bytes = st.txn.get(key)
        if (bytes === undefined) continue
        const id = keySuffix(key, prefix)
        const state = decodeRecord(bytes)
        // the value's stored text: sent as it is when the rule keeps the record whole (flushStreams)
        state.raw = storedValueText(bytes, state)
        // a local delete's tombstone names the write it removed: a stream that never sent the record sends it
        streamed.set(`${collection}${SEP}${id}`, { collection, id, state, fill: true, removed: state.removed, removedRule: state.removedRule })
      }
      const after = recordKeys.length > 0 ? keySuffix(recordKeys[recordKeys.length - 1], prefix) : current.after
      return { done: recordKeys.length < BACKFILL_CHUNK, ...(after !== undefined ? { after } : {}) }
    }, true)
  }

  /**
   * Rule streams: forget the fill progress of the streams `gone` names (no
   * rule here sends them now: a rule removed or changed, this
   * platform out of a rule's source group). What is written meanwhile goes
   * into no stream; should one be sent again (the platform back in the
   * group, a rule changed back), it is filled again from the start, which
   * appends only what the stream lacks, and leaves out what it leaves out
   * then: the relayed puts those streams left out (everStreamLeftOut) are
   * forgotten with it. Call it while no fill of those runs.
   */
  async forgetFills (gone: (stream: string) => boolean): Promise<void> {
    const prefix = streamFillKey('')
    // under the write lock, after the transactions in flight (a fill's last chunk writes its progress)
    await this.store.exclusive(async () => {
      await this.store.flushed()
      const dropped: string[] = []
      for await (const key of this.store.db.keys(prefixRange(prefix))) if (gone(keySuffix(key, prefix))) dropped.push(key)
      const kept = [...this.everStreamLeftOut].filter(pair => !gone(pair.slice(0, pair.indexOf(SEP))))
      const ops: Array<{ type: 'del', key: string } | { type: 'put', key: string, value: Uint8Array }> = dropped.map(key => ({ type: 'del' as const, key }))
      if (kept.length < this.everStreamLeftOut.size) ops.push({ type: 'put', key: STREAM_LEFT_OUT_KEY, value: encodeJson(kept) })
      if (ops.length > 0) await this.store.db.batch(ops)
      this.everStreamLeftOut = new Set(kept)
    })
  }

  /**
   * Forget the progress here of the rules `kept` does not keep (this node
   * is no target of them any more, or they were removed): their backfill
   * state, pause point and wait for a stream key. Should such a rule target
   * this node again, it reads its source from the start as a new target
   * does; what its source wrote meanwhile was applied by no one here.
   * `stopped` waits for a state's running pass (which writes its progress).
   * Returns the rule ids forgotten.
   */
  async forgetStates (kept: (ruleId: string) => boolean, stopped: (stateId: string) => Promise<void>): Promise<string[]> {
    const families = [keys.backfill(''), keys.rulePause(''), AWAITING_KEY_PREFIX]
    const stale = async (): Promise<string[]> => {
      const out: string[] = []
      for (const prefix of families) {
        for await (const key of this.store.db.keys(prefixRange(prefix))) if (!kept(ruleIdOfState(keySuffix(key, prefix)))) out.push(key)
      }
      return out
    }
    const found = await stale()
    if (found.length === 0) return []
    for (const key of found) await stopped(keySuffix(key, prefixOf(key)))
    // under the write lock, after the transactions in flight; asked again there (the rule may apply here again)
    return await this.store.exclusive(async () => {
      await this.store.flushed()
      const dropped = await stale()
      if (dropped.length > 0) await this.store.db.batch(dropped.map(key => ({ type: 'del' as const, key })))
      const states = dropped.map(key => keySuffix(key, prefixOf(key)))
      for (const id of states) this.awaitingKey.delete(id)
      return [...new Set(states.map(ruleIdOfState))]
    })
  }

  /** Forget a collection's publish progress (it is no rule's source any more): a later rule publishes again. */
  async unpublish (collection: string): Promise<void> {
    await this.store.db.del(keys.publish(collection))
  }
}
