/**
 * The single write path of a node. Every change, local or received, goes
 * through `ingest`: in ONE LevelDB batch it stores the log entries (with
 * compaction), advances the version vector and the clock, and applies what
 * the entries mean on this node (its own records, the registry, the rules
 * that target it). Either all of it is durable or none of it is.
 *
 * Here: ingest, writeLocal and the rule application. The transaction every
 * write runs, and the state it builds on, are WritePath (write-txn.ts);
 * passes over data already held (backfill, sweep, publish) are Backfiller
 * (backfill.ts).
 */
import type { AttestedBatch } from '../log/changelog.js'
import { newEntry } from '../log/entry.js'
import type { LogEntry, WriteId } from '../log/entry.js'
import { isLogOf, isRuleStreamLog, logId, streamOf } from '../log/log-id.js'
import type { Cert } from '../log/signing.js'
import { openEntry } from '../log/sealed-entry.js'
import { checkPutValue } from '../network/sync/codec.js'
import { parseHlc } from '../core/hlc.js'
import type { ChangeEvent, ConflictRecord, JsonObject } from '../core/types.js'
import { decodeJson, encodeJson, utf8 } from '../store/db.js'
import type { Txn } from '../store/db.js'
import { keys, keySuffix, prefixRange, SEP } from '../store/keys.js'
import { isRegistryCollection, PLATFORMS_COLLECTION } from '../store/names.js'
import { compareVersion, decodeRecord, publicVersion, recordState } from '../store/records.js'
import type { RecordState } from '../store/records.js'
import { applyPlan, conflictSide, logVersion, parseEntryValue, planEntry, planKeys, pushPlanKeys, rawValueOf, resolvePlan } from '../rules/engine.js'
import type { Applied, CompiledRule, Plan, PlanKeys } from '../rules/engine.js'
import { modeOf } from '../core/modes.js'
import { Backfiller } from './backfill.js'
import { AWAITING_KEY_PREFIX, BACKFILL_CHUNK, HLC_KEY, FEED_CURSOR_KEY, LEFT_OUT_KEY, STREAM_LEFT_OUT_KEY, STREAM_RULE_PREFIX } from './write-txn.js'
import type { IngestResult, TxnState } from './write-txn.js'

export type { IngestPolicy, IngestResult } from './write-txn.js'
export { CONFLICT_LOG_SIZE, TRANSFORM_ERROR_LOG_SIZE } from './write-txn.js'
export type { BackfillState } from './backfill.js'

export interface LocalOp {
  collection: string
  id: string
  op: 'put' | 'del'
  value?: JsonObject
  /** `value`'s JSON text, when the caller serialised it already (checking its size). */
  bytes?: Uint8Array
}

const FEED_INDEXED_KEY = keys.meta('feed-indexed')
/** How deep rule-written records may flow on through this node's own rules within one write. */
const MAX_CHAIN_DEPTH = 16

/** A node's write path: WritePath's transaction and state, Backfiller's passes, and ingest, writeLocal and applying here. */
export class Ingestor extends Backfiller {
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
    // every rule's conflict log, oldest first (a conflict between the same two writes is logged once)
    for await (const [, value] of this.store.db.iterator(prefixRange(keys.conflictsPrefix()))) this.conflictLogged(decodeJson<ConflictRecord>(value))
    const cursor = await this.store.db.get(FEED_CURSOR_KEY)
    if (cursor !== undefined) this.cursor = Number(utf8.decode(cursor))
    const skipped = await this.store.db.get(LEFT_OUT_KEY)
    if (skipped !== undefined) this.everLeftOut = new Set(decodeJson<string[]>(skipped))
    const streamSkipped = await this.store.db.get(STREAM_LEFT_OUT_KEY)
    if (streamSkipped !== undefined) this.everStreamLeftOut = new Set(decodeJson<string[]>(streamSkipped))
    for await (const [key] of this.store.db.iterator(prefixRange(AWAITING_KEY_PREFIX))) this.awaitingKey.add(keySuffix(key, AWAITING_KEY_PREFIX))
    for await (const [key, value] of this.store.db.iterator(prefixRange(STREAM_RULE_PREFIX))) {
      const sentFor = utf8.decode(value)
      let streams = this.streamsOfRule.get(sentFor)
      if (streams === undefined) this.streamsOfRule.set(sentFor, streams = new Set())
      streams.add(keySuffix(key, STREAM_RULE_PREFIX))
    }
    if (await this.store.db.get(FEED_INDEXED_KEY) === undefined) await this.indexExistingRecords()
  }

  /**
   * Rule states (CompiledRule.stateId) that passed over entries of their
   * stream they could not open (no key here yet): when the key arrives,
   * the rule reads its stream again from the start (clearAwaitingKey).
   * Persisted (AWAITING_KEY_PREFIX), with the transaction that passed them.
   */
  readonly awaitingKey = new Set<string>()

  /** The rule state `stateId` will read its stream again: forget that it waited for a key, and its backfill's progress, in one batch. */
  async clearAwaitingKey (stateId: string): Promise<void> {
    await this.store.exclusive(async () => {
      const { durable } = await this.store.write(new Map([[`${AWAITING_KEY_PREFIX}${stateId}`, undefined], [keys.backfill(stateId), undefined]]))
      await durable
      this.awaitingKey.delete(stateId)
    })
  }

  /**
   * A rule stream's entry as the rule applies it: in clear, opened with the
   * stream's key (an entry in clear as it is), or undefined when it cannot
   * be: no key here yet (the rule waits for it, see awaitingKey), or an
   * entry its origin encrypted wrongly (skipped and reported).
   */
  protected async openFor (st: TxnState, rule: CompiledRule, entry: LogEntry): Promise<LogEntry | undefined> {
    if (entry.epoch === undefined) return entry
    // waiting for a key already: the stream is read again from the start when one arrives (no lookup per entry)
    if (this.awaitingKey.has(rule.stateId)) return undefined
    let key = this.streamKeys?.openedKey(entry.origin, entry.epoch)
    try {
      key ??= await this.streamKeys?.keyFor(entry.origin, entry.epoch, st.txn)
    } catch (err) {
      this.unreadable(st, rule, entry, `the key of epoch ${entry.epoch} of stream ${entry.origin} does not open: ${(err as Error).message}`)
      return undefined
    }
    if (key === undefined) {
      if (!this.awaitingKey.has(rule.stateId)) {
        this.awaitingKey.add(rule.stateId)
        st.txn.put(`${AWAITING_KEY_PREFIX}${rule.stateId}`, new Uint8Array(0))
      }
      return undefined
    }
    try {
      const opened = openEntry(key, entry)
      // what the codec checks of a value in clear: the value is stored as it is, inside the record's JSON text
      if (opened.value !== undefined) {
        const checked = checkPutValue(opened.value)
        if ('problem' in checked) throw new Error(`its value ${checked.problem}`)
        opened.parsed = checked.parsed
      }
      return opened
    } catch (err) {
      this.unreadable(st, rule, entry, `entry ${entry.seq} of stream ${entry.origin} does not open: ${(err as Error).message}`)
      return undefined
    }
  }

  /**
   * Entries of one of this node's own rule streams came back from a peer:
   * the node was restored from a backup. Its current key may have encrypted
   * entries it no longer knows of, and later epochs may have begun whose keys
   * it lost: the stream starts a new epoch above every one it has seen
   * (encryption.md §5), sealed to its audience, before it encrypts again.
   */
  private async ownStreamBack (streamLog: string, entries: LogEntry[]): Promise<void> {
    const stream = streamOf(streamLog)
    if (stream === undefined || this.streamKeys === undefined) return
    const newest = entries.reduce((max, e) => Math.max(max, e.epoch ?? 0), 0)
    // entries of epochs before the current one only: it began after them (at the first batch that came back)
    if (newest === 0 || newest < (this.streamKeys.currentIfAny(stream)?.epoch ?? 0)) return
    const { epoch } = await this.streamKeys.rotate(stream, newest)
    this.onEpochStarted?.(stream)
    this.onRestoredStream?.(streamLog, epoch)
  }

  /**
   * Entries of one of this node's own rule streams came back from a peer
   * (a restore): the keys of their epochs that the backup lacked are
   * derived again and stored in the same batch (StreamKeys.recover).
   */
  private recoverOwnKeys (txn: Txn, streamLog: string, entries: LogEntry[]): void {
    const stream = streamOf(streamLog)
    if (stream === undefined || this.streamKeys === undefined) return
    const { recovered, unrecoverable } = this.streamKeys.recover(txn, stream, entries)
    if (recovered.length > 0 || unrecoverable.length > 0) this.onKeysRecovered?.(streamLog, recovered, unrecoverable)
  }

  /** Entries just appended to one of this node's own rule streams, applied by the rules here reading it (not the node's own writes: depth 1). */
  protected async applyOwnStream (st: TxnState, entries: LogEntry[]): Promise<void> {
    await this.applyLevel(st, entries, 1)
  }

  /** A stream entry its origin encrypted wrongly: skipped, reported, and counted (the rule's status `unreadable`). */
  private unreadable (st: TxnState, rule: CompiledRule, entry: LogEntry, reason: string): void {
    st.result.skipped.push({ ruleId: rule.rule.id, id: `#${entry.seq}`, reason })
    this.count(st, rule.rule.id, 'unreadable')
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
        if (fresh.length > 0 && isLogOf(origin, this.self)) this.recoverOwnKeys(txn, origin, fresh)
        // this node's own log coming back (a restore): its history ends at toSeq, whatever survived compaction.
        // Another node's rule stream is applied by the rules that read it here (RuleSet.streams: their
        // compiled forms read the stream's log id); any other stream log, and this node's own coming
        // back, is stored, verified and served on only
        const st = streamOf(origin) === undefined || (this.rules.streams && isRuleStreamLog(origin) && !isLogOf(origin, this.self))
          ? await this.applyEntries(txn, fresh, result, undefined, origin === this.self ? toSeq : 0)
          : this.begin(txn, result)
        // what the next transaction builds on once this one is issued (it reads these writes through
        // the store's pending view)
        result.stored = fresh.length
        result.advanced = { origin, seq: toSeq }
        return st
      }, { issue: true })
      const { rest, forwarded } = this.log.forwardEarly(this.log.takeTails(txn), this.self)
      if (forwarded.length > 0) this.onForwardable?.(forwarded)
      if (fresh.length > 0 && isLogOf(origin, this.self)) await this.ownStreamBack(origin, fresh)
      return { result, durable, tails: rest }
    }, { pipelined: true })
    if (out === undefined) return undefined
    await out.durable
    this.durable(out.result)
    this.log.installTails(out.tails)
    return out.result
  }

  /**
   * Append local writes to this node's own log, atomically, and apply them.
   * With rule streams (RuleSet.streams) only registry writes go into the
   * whole log: a record write reaches other nodes only through the streams
   * of the rules that read its collection (flushStreams), so it is applied
   * here with no place in a log (seq 0).
   */
  async writeLocal (ops: LocalOp[]): Promise<{ entries: LogEntry[], result: IngestResult }> {
    return await this.store.exclusive(async () => {
      const inLog = (op: LocalOp): boolean => !this.rules.streams || isRegistryCollection(op.collection)
      const from = this.log.held(this.self)
      const logged = ops.filter(inLog).length
      const to = from + logged
      const entries: LogEntry[] = []
      const result: IngestResult = { stored: ops.length, changes: [], registry: [], skipped: [] }
      if (logged > 0) result.advanced = { origin: this.self, seq: to }
      const { txn } = await this.writeTxn(async (txn) => {
        const prevs = await this.deletedWrites(txn, ops)
        let seq = from
        ops.forEach((op, i) => {
          entries.push(newEntry(this.self, inLog(op) ? ++seq : 0, this.clock.tick(), op.collection, op.id, op.op, op.op === 'put' ? op.bytes ?? encodeJson(op.value) : undefined, undefined, undefined, prevs[i]))
        })
        const own = logged === ops.length ? entries : entries.filter(e => e.seq > 0)
        if (own.length > 0) await this.log.append(txn, this.self, own, to, this.signRuns(from, own), { written: true })
        return await this.applyEntries(txn, entries, result, true)
      })
      this.log.installTails(this.log.takeTails(txn))
      return { entries, result }
    })
  }

  /**
   * The write each delete of `ops` removes when it is another origin's (a
   * rule placed the record here): its entry names it (LogEntry.prev), so that
   * rules reading this collection on other nodes apply the delete to their
   * copy of the record, which they never placed from this node's log when
   * this node, relaying, left the put out (RuleSet relayedPutsLeftOut).
   */
  private async deletedWrites (txn: Txn, ops: LocalOp[]): Promise<Array<WriteId | undefined>> {
    const dels = ops.filter(op => op.op === 'del' && !isRegistryCollection(op.collection))
    if (dels.length === 0) return []
    await txn.prefetch(dels.map(op => keys.record(op.collection, op.id)))
    const seen = new Map<string, WriteId | undefined>()
    return ops.map(op => {
      if (op.op !== 'del' || isRegistryCollection(op.collection)) {
        if (op.op === 'put') seen.set(`${op.collection}${SEP}${op.id}`, undefined) // a later delete in the batch removes this write
        return undefined
      }
      const k = `${op.collection}${SEP}${op.id}`
      if (seen.has(k)) return seen.get(k)
      const bytes = txn.get(keys.record(op.collection, op.id))
      const existing = bytes !== undefined ? decodeRecord(bytes) : undefined
      const prev = existing?.value !== undefined && existing.version.origin !== this.self ? { origin: existing.version.origin, hlc: existing.version.hlc } : undefined
      seen.set(k, undefined)
      return prev
    })
  }

  /**
   * INTERNAL: append `ops` to this node's own stream log `<self>/<stream>`
   * (log-id.ts), signed and attested like its whole log, and nothing else:
   * no record is written, no rule applied, nothing encrypted. Tests use it
   * to exercise the log layer and the sync protocol on stream logs apart
   * from rules (rule streams are written by flushStreams).
   */
  async appendOwnStream (stream: string, ops: LocalOp[]): Promise<{ origin: string, entries: LogEntry[], result: IngestResult }> {
    const origin = logId(this.self, stream)
    return await this.store.exclusive(async () => {
      const from = this.log.held(origin)
      const entries: LogEntry[] = ops.map((op, i) => {
        return newEntry(origin, from + i + 1, this.clock.tick(), op.collection, op.id, op.op, op.op === 'put' ? op.bytes ?? encodeJson(op.value) : undefined)
      })
      const to = from + entries.length
      const result: IngestResult = { stored: entries.length, advanced: { origin, seq: to }, changes: [], registry: [], skipped: [] }
      const { txn } = await this.writeTxn(async (txn) => {
        await this.log.append(txn, origin, entries, to, this.signRuns(from, entries, origin), { written: true })
        return this.begin(txn, result)
      })
      this.log.installTails(this.log.takeTails(txn))
      return { origin, entries, result }
    })
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
  protected async applyLevel (st: TxnState, entries: LogEntry[], depth: number): Promise<void> {
    const work: Array<{ entry: LogEntry, rule?: CompiledRule, plan?: Plan, at?: PlanKeys, value?: JsonObject }> = []
    const prefetch: string[] = []
    for (const entry of entries) {
      if (depth === 0 && entry.origin !== this.self) this.clock.observe(entry.hlc)
      // registry records come from whole logs only: a rule stream carries its rule's data, nothing else
      const direct = depth === 0 && (entry.origin === this.self || (isRegistryCollection(entry.collection) && streamOf(entry.origin) === undefined))
      const rules = this.rules.forEntry(entry.origin, entry.collection)
      if (!direct && rules === undefined) continue
      // an encrypted entry's value is its ciphertext: parsed once opened (openFor), for each rule reading it
      const value = entry.epoch === undefined ? parseEntryValue(entry) : undefined
      if (direct) {
        work.push({ entry, rule: undefined, plan: undefined, at: undefined, value })
        prefetch.push(keys.record(entry.collection, entry.id))
      }
      for (const rule of rules ?? []) {
        const e = entry.epoch === undefined ? entry : await this.openFor(st, rule, entry)
        if (e === undefined) continue
        const maybe = this.plan(rule, e, e === entry ? value : parseEntryValue(e))
        const plan = this.keep(st, rule, e, maybe instanceof Promise ? await maybe : maybe)
        if (plan === undefined) continue
        const at = planKeys(rule, e, plan)
        work.push({ entry: e, rule, plan, at, value: undefined })
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
  protected plan (rule: CompiledRule, entry: LogEntry, value: JsonObject | undefined): Plan | Promise<Plan> {
    const plan = planEntry(rule, entry, value)
    return rule.module === undefined ? plan : resolvePlan(rule, entry, value, plan)
  }

  /** The plan when there is something to apply; a skip with a reason or a module's error is reported. */
  protected keep (st: TxnState, rule: CompiledRule, entry: LogEntry, plan: Plan): Plan | undefined {
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

  protected applyRulePlan (st: TxnState, rule: CompiledRule, entry: LogEntry, plan: Plan, at: PlanKeys | undefined): Applied[] {
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
   * output twice; neither are relayed puts that every target of the rules
   * reading the collection gets from the write's own rule (RuleSet relayedPutsLeftOut).
   */
  protected async derive (st: TxnState, applied: Applied[], depth: number): Promise<void> {
    // rule streams: what rules write here goes on through this node's rule streams (flushStreams)
    if (this.rules.streams) return
    const derived: LogEntry[] = []
    for (const a of applied) {
      const c = a.change
      if (c === undefined || c.ruleId === undefined || !this.rules.isPublished(c.collection)) continue
      // a relayed put every reader's target gets from its own rule already (RuleSet relayedPutsLeftOut). A
      // write of this node (version.origin is self) is logged: no one else has it. A delete is logged
      // too, naming the write it removed: what this log held of the record (a put logged before it
      // left relayed puts out, its own earlier write) must not outlive it, or a node that reads the
      // log later would place the record again
      // A delete that removed nothing here (a tombstone of a record this node never held, engine.ts
      // removeUnplaced) is left out on the same terms: this log holds no put of the record to outlive
      if ((c.op === 'put' || a.removed === undefined) && a.version.origin !== this.self && this.rules.leavesOut(c.ruleId, c.collection)) {
        this.noteLeftOut(st, c.collection, c.ruleId)
        continue
      }
      derived.push(this.ownEntry(st, c.collection, c.id, c.op, c.value, a.version, a.removed))
    }
    if (derived.length === 0) return
    if (depth + 1 >= MAX_CHAIN_DEPTH) return
    await this.applyLevel(st, derived, depth + 1)
  }

  /** An entry written to this node's own collection, or a registry record from anyone: last writer wins. */
  private applyDirect (st: TxnState, entry: LogEntry, value: JsonObject | undefined): void {
    if (entry.op === 'put' && value === undefined) return
    if (entry.op === 'unmatch') return // only rule streams carry it (protocols/sync/streams.md §3)
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
    if (this.rules.streams && entry.op === 'del' && existing?.value !== undefined && existing.rule !== undefined && existing.version.origin !== this.self) {
      // a rule stream that never sent the record (its rule came later) sends this delete all the same, naming that write
      state.removed = existing.version
      state.removedRule = existing.rule
    }
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
