/**
 * The single write path of a node. Every change, local or received, goes
 * through `ingest`: in ONE LevelDB batch it stores the log entries (with
 * compaction), advances the version vector and the clock, and applies what
 * the entries mean on this node (its own records, the registry, the rules
 * that target it). Either all of it is durable or none of it is.
 */
import type { AttestedBatch, ChangeLog } from '../log/changelog.js'
import { decodeEntry, newEntry } from '../log/entry.js'
import type { LogEntry } from '../log/entry.js'
import { RUN_MAX_BYTES, RUN_MAX_ENTRIES } from '../log/signing.js'
import type { Cert, RunSigner } from '../log/signing.js'
import { HybridClock, compareHlc, formatHlc, parseHlc } from '../core/hlc.js'
import type { ChangeEvent, ConflictRecord, JsonObject, TransformErrorRecord } from '../core/types.js'
import { decodeJson, encodeJson, rows, utf8 } from '../store/db.js'
import type { Store, Txn } from '../store/db.js'
import { keys, keySuffix, prefixRange, rangeAfter, SEP } from '../store/keys.js'
import { isRegistryCollection, PLATFORMS_COLLECTION } from '../store/names.js'
import { compareVersion, decodeRecord, encodeRecord, publicVersion, recordState } from '../store/records.js'
import type { RecordState, Version } from '../store/records.js'
import { applyPlan, conflictSide, logVersion, parseEntryValue, planEntry, planKeys, pushPlanKeys, rawValueOf, resolvePlan, sweepRecord } from '../rules/engine.js'
import type { Applied, ApplyContext, CompiledRule, Plan, PlanKeys } from '../rules/engine.js'
import type { RuleSet } from '../rules/ruleset.js'
import type { ClaimSource } from '../registry/registry.js'
import { modeOf } from '../core/modes.js'
import { BackfillReader } from './backfill-reader.js'

/** What this node accepts, decided by the node (admin control, revocation). */
export interface IngestPolicy {
  /** A reason to refuse a registry change (`$platforms`/`$rules` entry), or undefined to apply it. */
  registry?: (entry: LogEntry, value: JsonObject | undefined) => string | undefined
  /** Whether to store an entry of `origin` at `seq` (false after the origin was revoked). */
  acceptsEntry?: (origin: string, seq: number) => boolean
  /** Write what an applied registry entry must leave beyond the log (revocations), in its transaction. */
  registryTxn?: (txn: Txn, entry: LogEntry, value: JsonObject | undefined) => void
}

export interface IngestResult {
  /** Entries that were new to this node. */
  stored: number
  /** The log that advanced, and how far: undefined when nothing new was stored. */
  advanced?: { origin: string, seq: number }
  /** This node's own log, when rule-written records were logged in it (chaining): announce it too. */
  ownAdvanced?: { origin: string, seq: number }
  /** The change events of the records written; empty when no one reads them (Ingestor.keepChanges): then `feed` tells whether any record changed. */
  changes: ChangeEvent[]
  /** Registry entries applied: the caller refreshes the registry view (`from`: the entry, for platform claims). */
  registry: Array<{ collection: string, id: string, value: JsonObject | undefined, from?: ClaimSource }>
  /** Changes feed cursors this commit took, (from, to] (every record written takes one): feed followers read them from `changes` when it holds them all. */
  feed?: { from: number, to: number }
  /** Rules that skipped an entry for a reason worth reporting. */
  skipped: Array<{ ruleId: string, id: string, reason: string }>
  /** Conflicts the rules met (also in each rule's conflict log). */
  conflicts?: ConflictRecord[]
  /** Records transform modules failed on (skipped; also in each rule's error log). */
  transformErrors?: TransformErrorRecord[]
}

export interface LocalOp {
  collection: string
  id: string
  op: 'put' | 'del'
  value?: JsonObject
  /** `value`'s JSON text, when the caller serialised it already (checking its size). */
  bytes?: Uint8Array
}

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
}

interface PublishState {
  after?: string
  done: boolean
}

/** What one transaction of the write path has pending until it commits. */
interface TxnState {
  txn: Txn
  result: IngestResult
  /** rule\0counter → value */
  counts: Map<string, number>
  /** Last feed cursor assigned in this transaction. */
  cursor: number
  /** Whether the result collects its change events (Ingestor.keepChanges). */
  keepChanges: boolean
  /** Own log: seq before this transaction's derived entries, and the last seq assigned. */
  ownBase: number
  ownTop: number
  derived: LogEntry[]
  ctx: ApplyContext
  /** A pass's progress (backfill, publish), set by its work: put after the counters, before the clock. */
  progress?: { key: string, value: Uint8Array }
}

/** How a transaction of the write path ends (Ingestor.writeTxn). */
interface TxnEnd {
  /**
   * Issued, not committed: the caller runs in a pipelined exclusive section,
   * awaits `durable` after it and then calls durable(). Committed (the
   * default): durable() is called before writeTxn returns.
   */
  issue?: boolean
  /** The clock is not put (the feed index built at load never wrote it). */
  noClock?: boolean
}

const HLC_KEY = keys.meta('hlc')
const FEED_INDEXED_KEY = keys.meta('feed-indexed')
/** The newest changes feed cursor given out (written with the batch that gives it out). */
const FEED_CURSOR_KEY = keys.meta('feed-cursor')
const BACKFILL_CHUNK = 500
/** Conflicts kept per rule (the newest). */
export const CONFLICT_LOG_SIZE = 50
/** Transform errors kept per rule (the newest). */
export const TRANSFORM_ERROR_LOG_SIZE = 20
/** How deep rule-written records may flow on through this node's own rules within one write. */
const MAX_CHAIN_DEPTH = 16
/** What writeTxn returns as `durable` for a committed transaction. */
const DURABLE: Promise<void> = Promise.resolve()

export class Ingestor {
  readonly clock: HybridClock
  private readonly store: Store
  private readonly log: ChangeLog
  private readonly rules: RuleSet
  private readonly self: string
  /** rule\0counter → value, as committed ("applied", "conflicts", "transformErrors"). */
  private readonly counters = new Map<string, number>()
  /** Last feed cursor committed. */
  private cursor = 0
  private txnState?: TxnState
  /** Platform name of a peer id (conflict reports); set by the node. */
  platformOf?: (peerId: string) => string | undefined
  /**
   * Registry records changed in a transaction just issued: called under the
   * write lock, before the next transaction starts, so that it applies the
   * new platforms and rules (pipelined batches would otherwise run ahead of
   * them). Set by the node.
   */
  onRegistry?: (changes: IngestResult['registry']) => void
  /**
   * Runs of other origins a transaction just issued may be sent to peers
   * already (ChangeLog.forwardEarly): called under the write lock. Set by the node.
   */
  onForwardable?: (origins: Array<{ origin: string, seq: number }>) => void
  /** A rule's counter (`applied`, `conflicts`, `transformErrors`) grew by `delta` in a committed transaction. */
  onCounted?: (ruleId: string, name: string, delta: number) => void
  /**
   * Whether anyone will read a transaction's `changes` (asked as each one
   * starts; local writes always keep theirs). When no one will, they are
   * not collected: kept until the transaction is durable, a batch's change
   * events outlived V8's young generation and each was copied into the old
   * one (~370 MB per 100,000 records promoted in a bulk sync, traced with
   * the sampling heap profiler). Set by the node: listeners of its `change`
   * event, followers of its changes feed waiting for the next commit (one
   * that starts waiting later reads that commit from the feed's index).
   * Unset: always.
   */
  keepChanges?: () => boolean

  private readonly signer?: RunSigner
  private readonly policy?: IngestPolicy

  /**
   * How a new backfill pass reads its source first (BackfillState.order):
   * in log order, turning to the collection's index when the log is mostly
   * other collections. "index" reads by the index from the start.
   */
  backfillOrder: 'log' | 'index' = 'log'

  constructor (components: { store: Store, log: ChangeLog, rules: RuleSet, self: string, signer?: RunSigner, policy?: IngestPolicy, maxClockAheadMs?: number }) {
    this.signer = components.signer
    this.policy = components.policy
    this.store = components.store
    this.log = components.log
    this.rules = components.rules
    this.self = components.self
    this.clock = new HybridClock(undefined, undefined, components.maxClockAheadMs)
  }

  async load (): Promise<void> {
    const saved = await this.store.db.get(HLC_KEY)
    if (saved !== undefined) {
      const h = parseHlc(utf8.decode(saved))
      if (h !== undefined) this.clock.observe(h)
    }
    const applied = keys.applied('')
    for await (const [key, value] of this.store.db.iterator(prefixRange(applied))) {
      this.counters.set(`${keySuffix(key, applied)}${SEP}applied`, Number(utf8.decode(value)))
    }
    const counter = keys.counterPrefix()
    for await (const [key, value] of this.store.db.iterator(prefixRange(counter))) {
      this.counters.set(keySuffix(key, counter), Number(utf8.decode(value)))
    }
    const cursor = await this.store.db.get(FEED_CURSOR_KEY)
    if (cursor !== undefined) this.cursor = Number(utf8.decode(cursor))
    if (await this.store.db.get(FEED_INDEXED_KEY) === undefined) await this.indexExistingRecords()
  }

  applied (ruleId: string): number {
    return this.counter(ruleId, 'applied')
  }

  /** A per-rule counter on this node: "applied", "conflicts", "transformErrors". */
  counter (ruleId: string, name: string): number {
    return this.counters.get(`${ruleId}${SEP}${name}`) ?? 0
  }

  /** Whether any rule (present or gone) has written a record on this node. */
  private anyRuleApplied (): boolean {
    let any = false
    this.counters.forEach((n, key) => { if (n > 0 && key.endsWith(`${SEP}applied`)) any = true })
    return any
  }

  /** The newest changes feed cursor committed. */
  lastCursor (): number {
    return this.cursor
  }

  /**
   * Store a contiguous run (fromSeq, toSeq] of `origin`'s log. Entries at or
   * below the held seq are ignored (duplicates are harmless). Returns
   * undefined when the run starts beyond what is held (a gap): nothing is
   * stored and the sender must be told the real vector.
   */
  async ingest (origin: string, fromSeq: number, toSeq: number, entries: LogEntry[], certs: Cert[] = [], attested?: AttestedBatch): Promise<IngestResult | undefined> {
    // pipelined: the next batch is applied while this one is being written; it resolves once durable
    const out = await this.store.exclusive(async () => {
      const held = this.log.held(origin)
      if (fromSeq > held) return undefined
      const result: IngestResult = { stored: 0, changes: [], registry: [], skipped: [] }
      if (toSeq <= held) return { result, durable: Promise.resolve(), tails: [] }
      // a revoked origin's entries after its revocation are not stored (nor served on)
      const accepts = this.policy?.acceptsEntry
      const fresh = entries.filter(e => e.seq > held && (accepts === undefined || accepts(origin, e.seq)))
      const keptCerts = accepts === undefined ? certs : certs.filter(c => accepts(origin, c.from + 1))
      // a version 2 batch (completeness.md): its attestations instead of version 1 certificates
      const keptAttested = attested === undefined || accepts === undefined ? attested : { updates: attested.updates, certs: attested.certs.filter(c => accepts(origin, c.cert.from + 1)) }
      // runs not kept (a revoked origin's, past its revocation) cannot be served on: the log is held
      // beyond what its runs prove (ChangeLog.stopServingAfter)
      if (keptCerts.length < certs.length) this.log.stopServingAfter(origin, keptCerts.reduce((end, c) => Math.max(end, c.to), held))
      if (attested !== undefined && keptAttested !== undefined && keptAttested.certs.length < attested.certs.length) this.log.stopServingAfter(origin, keptAttested.certs.reduce((end, c) => Math.max(end, c.cert.to), held))
      const { txn, durable } = await this.writeTxn(async (txn) => {
        // with the store's frontiers (store/frontier.ts): what lies beyond what is stored is not read
        await this.log.append(txn, origin, fresh, toSeq, keptCerts, keptAttested === undefined ? {} : { attested: keptAttested })
        // this node's own log coming back (a restore): its history ends at toSeq, whatever survived compaction
        const st = await this.applyEntries(txn, fresh, result, undefined, origin === this.self ? toSeq : 0)
        // what the next transaction builds on once this one is issued (it reads these writes through
        // the store's pending view)
        result.stored = fresh.length
        result.advanced = { origin, seq: toSeq }
        return st
      }, { issue: true })
      const { rest, forwarded } = this.log.forwardEarly(this.log.takeTails(txn), this.self)
      if (forwarded.length > 0) this.onForwardable?.(forwarded)
      return { result, durable, tails: rest }
    }, { pipelined: true })
    if (out === undefined) return undefined
    await out.durable
    this.durable(out.result)
    this.log.installTails(out.tails)
    return out.result
  }

  /** Append local writes to this node's own log, atomically, and apply them. */
  async writeLocal (ops: LocalOp[]): Promise<{ entries: LogEntry[], result: IngestResult }> {
    return await this.store.exclusive(async () => {
      const from = this.log.held(this.self)
      const entries: LogEntry[] = ops.map((op, i) => {
        return newEntry(this.self, from + i + 1, this.clock.tick(), op.collection, op.id, op.op, op.op === 'put' ? op.bytes ?? encodeJson(op.value) : undefined)
      })
      const to = from + entries.length
      const result: IngestResult = { stored: entries.length, advanced: { origin: this.self, seq: to }, changes: [], registry: [], skipped: [] }
      const { txn } = await this.writeTxn(async (txn) => {
        await this.log.append(txn, this.self, entries, to, this.signRuns(from, entries), { written: true })
        return await this.applyEntries(txn, entries, result, true)
      })
      this.log.installTails(this.log.takeTails(txn))
      return { entries, result }
    })
  }

  /** Cut local entries into runs (RUN_MAX_ENTRIES / RUN_MAX_BYTES) and sign each. */
  private signRuns (from: number, entries: LogEntry[]): Cert[] {
    if (this.signer === undefined) return []
    const certs: Cert[] = []
    let start = 0
    let bytes = 0
    for (let i = 0; i < entries.length; i++) {
      bytes += entries[i].value?.byteLength ?? 0
      const last = i === entries.length - 1
      if (last || i + 1 - start >= RUN_MAX_ENTRIES || bytes >= RUN_MAX_BYTES) {
        const runFrom = from + start
        certs.push(this.signer.sign(runFrom, from + i + 1, entries.slice(start, i + 1)))
        start = i + 1
        bytes = 0
      }
    }
    return certs
  }

  /** Start the pending state of a transaction of the write path (applyEntries, backfill, sweep, publish, the feed index): see writeTxn. */
  private begin (txn: Txn, result: IngestResult, reeval = false, keepChanges = this.keepChanges?.() ?? true): TxnState {
    const own = this.log.held(this.self)
    const st: TxnState = {
      txn,
      result,
      counts: new Map(),
      cursor: this.cursor,
      keepChanges,
      ownBase: own,
      ownTop: own,
      derived: [],
      ctx: undefined as unknown as ApplyContext
    }
    st.ctx = {
      txn,
      self: this.self,
      reeval,
      freshVersion: () => ({ hlc: this.clock.tick(), origin: this.self, seq: 0 }),
      published: (collection) => this.rules.isPublished(collection),
      keepChanges,
      writeRecord: (collection, id, state, previous, key) => this.writeRecord(st, collection, id, state, previous, key),
      conflict: (c) => this.recordConflict(st, c),
      platformOf: (peer) => this.platformOf?.(peer)
    }
    this.txnState = st
    return st
  }

  /**
   * One transaction of the write path, the sequence every write runs: `work`
   * writes into a new Txn and returns the pending state it began there
   * (begin); then the derived own-log entries, the counters and feed cursor,
   * the pass's progress and the clock are put, the batch is issued or
   * committed (`end`), and what it advanced is made visible (commitCounts).
   * Runs under the write lock (Store.exclusive).
   */
  private async writeTxn (work: (txn: Txn) => Promise<TxnState>, end: TxnEnd = {}): Promise<{ txn: Txn, durable: Promise<void> }> {
    const txn = this.store.txn()
    const st = await work(txn)
    await this.flushDerived(st)
    this.flushCounts(st)
    if (st.progress !== undefined) txn.put(st.progress.key, st.progress.value)
    if (end.noClock !== true) txn.put(HLC_KEY, utf8.encode(formatHlc(this.clock.current())))
    if (end.issue === true) {
      const { durable } = await txn.issue()
      this.commitCounts(st.result)
      return { txn, durable }
    }
    await txn.commit()
    this.commitCounts(st.result)
    this.durable(st.result)
    return { txn, durable: DURABLE }
  }

  /**
   * After a commit of the write path (the name is historical): make the
   * transaction's counters, feed cursor and own-log entries visible.
   */
  private commitCounts (result: IngestResult): void {
    if (result.advanced !== undefined) this.log.issued(result.advanced.origin, result.advanced.seq)
    if (result.ownAdvanced !== undefined) this.log.issued(result.ownAdvanced.origin, result.ownAdvanced.seq)
    if (result.registry.length > 0) this.onRegistry?.(result.registry)
    const st = this.txnState
    this.txnState = undefined
    if (st === undefined || st.result !== result) return
    for (const [key, n] of st.counts) {
      const before = this.counters.get(key) ?? 0
      this.counters.set(key, n)
      if (n > before && this.onCounted !== undefined) {
        const i = key.indexOf(SEP)
        this.onCounted(key.slice(0, i), key.slice(i + 1), n - before)
      }
    }
    if (st.cursor > this.cursor) result.feed = { from: this.cursor, to: st.cursor }
    this.cursor = Math.max(this.cursor, st.cursor)
  }

  /** The transaction of `result` is durable: its log positions may be served to peers. */
  private durable (result: IngestResult): void {
    if (result.advanced !== undefined) this.log.committed(result.advanced.origin, result.advanced.seq)
    if (result.ownAdvanced !== undefined) this.log.committed(result.ownAdvanced.origin, result.ownAdvanced.seq)
  }

  private count (st: TxnState, ruleId: string, name: string, by = 1): number {
    const key = `${ruleId}${SEP}${name}`
    const n = (st.counts.get(key) ?? this.counters.get(key) ?? 0) + by
    st.counts.set(key, n)
    return n
  }

  /** Put the transaction's counters (once each, however often they moved) and the feed cursor. */
  private flushCounts (st: TxnState): void {
    if (st.cursor > this.cursor) st.txn.put(FEED_CURSOR_KEY, utf8.encode(String(st.cursor)))
    for (const [key, n] of st.counts) {
      const i = key.indexOf(SEP)
      const ruleId = key.slice(0, i)
      const name = key.slice(i + 1)
      st.txn.put(name === 'applied' ? keys.applied(ruleId) : keys.counter(ruleId, name), utf8.encode(String(n)))
    }
  }

  /** Write a record and move it to the head of the changes feed (`state.cursor` is set to its cursor). Returns the cursor (0 for registry records). */
  private writeRecord (st: TxnState, collection: string, id: string, state: RecordState, previous: RecordState | undefined, key = keys.record(collection, id)): number {
    if (isRegistryCollection(collection)) {
      st.txn.put(key, encodeRecord(state))
      return 0
    }
    const cursor = ++st.cursor
    if (previous?.cursor !== undefined) st.txn.del(keys.feedByCollection(collection, previous.cursor))
    st.txn.put(keys.feedByCollection(collection, cursor), utf8.encode(id))
    state.cursor = cursor
    st.txn.put(key, encodeRecord(state))
    return cursor
  }

  private recordConflict (st: TxnState, c: Omit<ConflictRecord, 'n' | 'at'>): void {
    const n = this.count(st, c.ruleId, 'conflicts')
    const record: ConflictRecord = { n, at: new Date().toISOString(), ...c }
    st.txn.put(keys.conflict(c.ruleId, n), encodeJson(record))
    if (n > CONFLICT_LOG_SIZE) st.txn.del(keys.conflict(c.ruleId, n - CONFLICT_LOG_SIZE))
    ;(st.result.conflicts ??= []).push(record)
  }

  private recordTransformError (st: TxnState, rule: CompiledRule, entry: LogEntry, error: string): void {
    const ruleId = rule.rule.id
    const n = this.count(st, ruleId, 'transformErrors')
    const record: TransformErrorRecord = { n, at: new Date().toISOString(), ruleId, module: rule.rule.transform ?? '', collection: entry.collection, id: entry.id, error }
    st.txn.put(keys.transformError(ruleId, n), encodeJson(record))
    if (n > TRANSFORM_ERROR_LOG_SIZE) st.txn.del(keys.transformError(ruleId, n - TRANSFORM_ERROR_LOG_SIZE))
    ;(st.result.transformErrors ??= []).push(record)
  }

  /** What the entries mean on this node: own records, registry, rules (and what those write, on through chains). Returns the transaction's pending state (writeTxn flushes it). */
  private async applyEntries (txn: Txn, entries: LogEntry[], result: IngestResult, keepChanges?: boolean, ownFloor = 0): Promise<TxnState> {
    const st = this.begin(txn, result, false, keepChanges)
    // in writeLocal the new local entries are already in the transaction's log; a batch of this
    // node's own log taken back from a peer holds it up to the batch end (ownFloor)
    st.ownTop = Math.max(st.ownTop, ownFloor)
    for (const e of entries) if (e.origin === this.self && e.seq > st.ownTop) st.ownTop = e.seq
    st.ownBase = st.ownTop
    await this.applyLevel(st, entries, 0)
    return st
  }

  /** Apply one batch of entries; rule writes into published collections are logged and applied on (chaining). */
  private async applyLevel (st: TxnState, entries: LogEntry[], depth: number): Promise<void> {
    const work: Array<{ entry: LogEntry, rule?: CompiledRule, plan?: Plan, at?: PlanKeys, value?: JsonObject }> = []
    const prefetch: string[] = []
    for (const entry of entries) {
      if (depth === 0 && entry.origin !== this.self) this.clock.observe(entry.hlc)
      const direct = depth === 0 && (entry.origin === this.self || isRegistryCollection(entry.collection))
      const rules = this.rules.forEntry(entry.origin, entry.collection)
      if (!direct && rules === undefined) continue
      const value = parseEntryValue(entry)
      if (direct) {
        work.push({ entry, rule: undefined, plan: undefined, at: undefined, value })
        prefetch.push(keys.record(entry.collection, entry.id))
      }
      for (const rule of rules ?? []) {
        const maybe = this.plan(rule, entry, value)
        const plan = this.keep(st, rule, entry, maybe instanceof Promise ? await maybe : maybe)
        if (plan === undefined) continue
        const at = planKeys(rule, entry, plan)
        work.push({ entry, rule, plan, at, value: undefined })
        pushPlanKeys(prefetch, at)
      }
    }
    await st.txn.prefetch(prefetch)
    const applied: Applied[] = []
    for (const w of work) {
      if (w.rule !== undefined && w.plan !== undefined) {
        applied.push(...this.applyRulePlan(st, w.rule, w.entry, w.plan, w.at))
      } else {
        this.applyDirect(st, w.entry, w.value)
      }
    }
    await this.derive(st, applied, depth)
  }

  /**
   * Plan an entry for a rule, transform module included. Only a module makes
   * it asynchronous: without one the plan is returned as is (no promise and
   * no await per entry and rule on the write path).
   */
  private plan (rule: CompiledRule, entry: LogEntry, value: JsonObject | undefined): Plan | Promise<Plan> {
    const plan = planEntry(rule, entry, value)
    return rule.module === undefined ? plan : resolvePlan(rule, entry, value, plan)
  }

  /** The plan when there is something to apply; a skip with a reason or a module's error is reported. */
  private keep (st: TxnState, rule: CompiledRule, entry: LogEntry, plan: Plan): Plan | undefined {
    if (plan.kind === 'skip') {
      if (plan.reason !== undefined) st.result.skipped.push({ ruleId: rule.rule.id, id: entry.id, reason: plan.reason })
      return undefined
    }
    if (plan.kind === 'error') {
      this.recordTransformError(st, rule, entry, plan.error)
      return undefined
    }
    return plan
  }

  private applyRulePlan (st: TxnState, rule: CompiledRule, entry: LogEntry, plan: Plan, at: PlanKeys | undefined): Applied[] {
    const applied = applyPlan(st.ctx, rule, entry, plan, at)
    if (st.keepChanges) for (const a of applied) if (a.change !== undefined) st.result.changes.push(a.change)
    if (applied.length > 0) this.count(st, rule.rule.id, 'applied', applied.length)
    return applied
  }

  /**
   * Chaining: rule writes into a collection that is the source of a rule get
   * an entry in this node's own log (so other nodes' rules see them), carrying
   * the identity of the write they come from (its HLC, and its origin and seq
   * as the entry's writer, see entryVersion in src/rules/engine.ts): a node
   * that holds the write already, from its origin or another relay, sees the
   * same write and neither applies it again nor reports a conflict. This
   * node's own rules on that collection apply them at once. Collections no
   * rule reads from are not logged, so the mesh does not carry every rule's
   * output twice.
   */
  private async derive (st: TxnState, applied: Applied[], depth: number): Promise<void> {
    const derived: LogEntry[] = []
    for (const a of applied) {
      const c = a.change
      if (c === undefined || c.ruleId === undefined || !this.rules.isPublished(c.collection)) continue
      derived.push(this.ownEntry(st, c.collection, c.id, c.op, c.value, a.version))
    }
    if (derived.length === 0) return
    if (depth + 1 >= MAX_CHAIN_DEPTH) return
    await this.applyLevel(st, derived, depth + 1)
  }

  /** An entry of this node's own log for a rule-written record: the write `version` names keeps its identity (its HLC, and its origin and seq unless this node made it). */
  private ownEntry (st: TxnState, collection: string, id: string, op: 'put' | 'del', value: JsonObject | undefined, version: Version): LogEntry {
    const e = newEntry(this.self, ++st.ownTop, version.hlc, collection, id, op, op === 'put' ? encodeJson(value) : undefined, version.origin, version.seq)
    st.derived.push(e)
    return e
  }

  /** Append the transaction's derived entries to the own log (signed like local writes). */
  private async flushDerived (st: TxnState): Promise<void> {
    if (st.derived.length === 0) return
    await this.log.append(st.txn, this.self, st.derived, st.ownTop, this.signRuns(st.ownBase, st.derived), { written: true })
    st.result.ownAdvanced = { origin: this.self, seq: st.ownTop }
  }

  /** An entry written to this node's own collection, or a registry record from anyone: last writer wins. */
  private applyDirect (st: TxnState, entry: LogEntry, value: JsonObject | undefined): void {
    if (entry.op === 'put' && value === undefined) return
    if (isRegistryCollection(entry.collection) && this.policy?.registry !== undefined) {
      // admin control: a registry change from a peer that may not make it is stored in its log but not applied
      const refusal = this.policy.registry(entry, value)
      if (refusal !== undefined) return
    }
    if (entry.collection === PLATFORMS_COLLECTION) {
      // a claim of its origin, not a last-writer-wins record: the registry resolves the claims (registry.ts)
      this.policy?.registryTxn?.(st.txn, entry, value)
      st.result.registry.push({ collection: entry.collection, id: entry.id, value: entry.op === 'put' ? value : undefined, from: { origin: entry.origin, seq: entry.seq, hlc: entry.hlc } })
      return
    }
    const version = logVersion(entry)
    const bytes = st.txn.get(keys.record(entry.collection, entry.id))
    const existing = bytes !== undefined ? decodeRecord(bytes) : undefined
    const state = entry.op === 'put' ? recordState(version, value, undefined, undefined, rawValueOf(entry, value)) : recordState(version, undefined)
    if (existing !== undefined && compareVersion(existing.version, version) >= 0) {
      // a local write that lost to a later write a merge rule placed (a clock ahead of ours)
      if (compareVersion(existing.version, version) > 0) this.localWriteConflict(st, entry, existing, state, 'existing')
      return
    }
    if (existing === undefined && entry.op === 'del' && !isRegistryCollection(entry.collection)) return
    const cursor = this.writeRecord(st, entry.collection, entry.id, state, existing)
    if (isRegistryCollection(entry.collection)) {
      st.result.registry.push({ collection: entry.collection, id: entry.id, value: entry.op === 'put' ? value : undefined })
      return
    }
    const change: ChangeEvent = value !== undefined
      ? { collection: entry.collection, id: entry.id, op: entry.op, value, version: publicVersion(version), cursor: String(cursor) }
      : { collection: entry.collection, id: entry.id, op: entry.op, version: publicVersion(version), cursor: String(cursor) }
    if (st.keepChanges) st.result.changes.push(change)
    if (existing !== undefined) this.localWriteConflict(st, entry, existing, state, 'incoming')
  }

  /** A local write meeting what a merge rule placed: a conflict of that rule. */
  private localWriteConflict (st: TxnState, entry: LogEntry, existing: RecordState, local: RecordState, winner: 'existing' | 'incoming'): void {
    if (existing.rule === undefined || entry.origin !== this.self || existing.version.origin === this.self) return
    const rule = this.rules.get(existing.rule)
    if (rule === undefined || !modeOf(rule.rule.mode).localWritesConflict) return
    if (existing.value === undefined && local.value === undefined) return
    const platformOf = (peer: string): string | undefined => this.platformOf?.(peer)
    this.recordConflict(st, {
      ruleId: existing.rule,
      collection: entry.collection,
      id: entry.id,
      kind: 'local-write',
      existing: conflictSide(existing, this.self, platformOf),
      incoming: conflictSide(local, this.self, platformOf),
      winner
    })
  }

  /**
   * Apply a rule to the source data already held, in chunks, resumably: the
   * progress is stored with each chunk, so a restart continues where it
   * stopped. Restarts from the beginning when what the rule writes changed
   * (its fingerprint: filter, transforms, module, mode, …) or its source moved
   * to another peer; a changed rule re-evaluates what it wrote before. A
   * mirror rule then removes the target records its source lacks.
   */
  async backfill (rule: CompiledRule, onChunk: (result: IngestResult) => void, isCurrent: () => boolean): Promise<void> {
    const stateKey = keys.backfill(rule.rule.id)
    let { state, fresh } = await this.passState(rule)
    let previous: { result: IngestResult, durable: Promise<void> } | undefined
    const finish = async (chunk: typeof previous): Promise<void> => {
      if (chunk === undefined) return
      await chunk.durable
      this.durable(chunk.result)
      onChunk(chunk.result)
    }
    let first = true
    const source = rule.sourcePeer
    const reader = new BackfillReader(this.log, source, rule.rule.from.collection, BACKFILL_CHUNK)
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
            const { applied, last, more } = await this.sweepChunk(st, rule, current.sweepAfter)
            await this.derive(st, applied, 0)
            if (last !== undefined) next.sweepAfter = last
            if (!more) next.done = true
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
      await finish(previous)
      previous = { result, durable }
    }
    await reader.drop() // a pass stopped (rule changed, node stopping) leaves no read behind
    await finish(previous)
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
      if (moved) await txn.prefetch(chunk.entries.map(e => keys.latest(e.origin, e.collection, e.id)))
      const planned: Array<{ entry: LogEntry, plan: Plan, at: PlanKeys | undefined }> = []
      for (const entry of chunk.entries) {
        if (current.loggedTo !== undefined && entry.seq <= current.loggedTo) continue
        if (moved && !this.log.isNewest(txn, entry)) continue
        const value = parseEntryValue(entry)
        const maybe = this.plan(rule, entry, value)
        const plan = this.keep(st, rule, entry, maybe instanceof Promise ? await maybe : maybe)
        if (plan !== undefined) planned.push({ entry, plan, at: planKeys(rule, entry, plan) })
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
        else if (modeOf(rule.rule.mode).exact) next.phase = 'sweep'
        else next.done = true
      }
    return next
  }

  /** A rule's saved backfill state, or a fresh pass when there is none or the rule's source or output changed. */
  private async passState (rule: CompiledRule): Promise<{ state: BackfillState, fresh: boolean }> {
    const fingerprint = rule.fingerprint
    const state = await this.backfillState(rule.rule.id)
    if (state !== undefined && state.source === rule.sourcePeer && state.fingerprint === fingerprint) return { state, fresh: false }
    // an earlier version of the rule wrote here (its backfill ran, or live entries applied before this one started)
    const reeval = state !== undefined ? state.fingerprint !== fingerprint || (state.reeval === true && !state.done) : this.applied(rule.rule.id) > 0
    const next: BackfillState = { source: rule.sourcePeer, fingerprint, done: false, phase: 'source', order: this.backfillOrder }
    if (reeval) next.reeval = true
    return { state: next, fresh: true }
  }

  /** Mirror: remove live target records that the rule's source does not hold (one chunk). */
  private async sweepChunk (st: TxnState, rule: CompiledRule, after: string | undefined): Promise<{ applied: Applied[], last?: string, more: boolean }> {
    const collection = rule.rule.to.collection
    const prefix = keys.recordPrefix(collection)
    const records: Array<{ id: string, state: RecordState }> = []
    for await (const batch of rows(this.store.db, { ...rangeAfter(prefix, after), limit: BACKFILL_CHUNK })) {
      for (const [key, value] of batch) records.push({ id: keySuffix(key, prefix), state: decodeRecord(value) })
    }
    const applied: Applied[] = []
    for (const { id, state } of records) {
      if (state.value === undefined) continue
      if (state.rule === rule.rule.id && this.sourceHolds(st.txn, rule, state.source ?? id, id)) continue
      const a = sweepRecord(st.ctx, rule, id, state)
      if (st.keepChanges && a.change !== undefined) st.result.changes.push(a.change)
      this.count(st, rule.rule.id, 'applied')
      applied.push(a)
    }
    const out: { applied: Applied[], last?: string, more: boolean } = { applied, more: records.length === BACKFILL_CHUNK }
    if (records.length > 0) out.last = records[records.length - 1].id
    return out
  }

  /** Whether the rule's source holds a live record `sourceId` that the rule maps to `targetId`. */
  private sourceHolds (txn: Txn, rule: CompiledRule, sourceId: string, targetId: string): boolean {
    const mapped = txn.get(keys.targetMap(rule.rule.id, sourceId))
    if (mapped === undefined || utf8.decode(mapped) !== targetId) return false
    const seq = txn.get(keys.latest(rule.sourcePeer, rule.rule.from.collection, sourceId))
    if (seq === undefined) return false
    const bytes = txn.get(keys.entry(rule.sourcePeer, Number(utf8.decode(seq))))
    return bytes !== undefined && decodeEntry(rule.sourcePeer, bytes).op === 'put'
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
    const stateKey = keys.publish(collection)
    const saved = await this.store.db.get(stateKey)
    let state: PublishState = saved !== undefined ? decodeJson<PublishState>(saved) : { done: false }
    while (!state.done && isCurrent()) {
      const current = state
      const result = await this.store.exclusive(async () => {
        const result: IngestResult = { stored: 0, changes: [], registry: [], skipped: [] }
        let next: PublishState = current
        await this.writeTxn(async (txn) => {
          const st = this.begin(txn, result)
          next = await this.publishChunk(st, collection, current)
          st.progress = { key: stateKey, value: encodeJson(next) }
          return st
        })
        state = next
        return result
      })
      onChunk(result)
    }
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
    const written = records.filter(r => r.state.rule !== undefined)
    await txn.prefetch(written.map(r => keys.latest(this.self, collection, r.id)))
    const derived: LogEntry[] = []
    for (const { id, state: rec } of written) {
      const seq = txn.get(keys.latest(this.self, collection, id))
      const logged = seq !== undefined ? txn.get(keys.entry(this.self, Number(utf8.decode(seq)))) : undefined
      if (logged !== undefined && compareHlc(decodeEntry(this.self, logged).hlc, rec.version.hlc) >= 0) continue
      if (logged === undefined && rec.value === undefined) continue // never published, gone: nothing to say
      derived.push(this.ownEntry(st, collection, id, rec.value !== undefined ? 'put' : 'del', rec.value, rec.version))
    }
    if (derived.length > 0) await this.applyLevel(st, derived, 1)
    const next: PublishState = { ...current, done: !mayHoldRuleWrites || records.length < BACKFILL_CHUNK }
    if (records.length > 0) next.after = records[records.length - 1].id
    return next
  }

  /** Forget a collection's publish progress (it is no rule's source any more): a later rule publishes again. */
  async unpublish (collection: string): Promise<void> {
    await this.store.db.del(keys.publish(collection))
  }

  /** Give every record written before the changes feed existed a feed cursor (once, in chunks). */
  private async indexExistingRecords (): Promise<void> {
    let after: string | undefined
    const range = prefixRange(keys.recordPrefix('').slice(0, -1))
    for (;;) {
      const done = await this.store.exclusive(async () => {
        const result: IngestResult = { stored: 0, changes: [], registry: [], skipped: [] }
        let n = 0
        await this.writeTxn(async (txn) => {
          const st = this.begin(txn, result)
          for await (const [key, value] of this.store.db.iterator({ ...(after !== undefined ? { gt: after } : { gte: range.gte }), lt: range.lt, limit: BACKFILL_CHUNK })) {
            n++
            after = key
            const rest = key.slice(2)
            const sep = rest.indexOf(SEP)
            const collection = rest.slice(0, sep)
            const state = decodeRecord(value)
            if (state.cursor !== undefined || isRegistryCollection(collection)) continue
            this.writeRecord(st, collection, rest.slice(sep + 1), state, undefined)
          }
          if (n < BACKFILL_CHUNK) txn.put(FEED_INDEXED_KEY, utf8.encode('1'))
          return st
        }, { noClock: true })
        return n < BACKFILL_CHUNK
      })
      if (done) return
    }
  }
}
