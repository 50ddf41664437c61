/**
 * The transaction of the write path (Ingestor, in ingest.ts): what one
 * transaction has pending until it commits (TxnState), the sequence every
 * write runs (WritePath.writeTxn), and what it writes besides the log and
 * the records' meaning: the changes feed, the rules' counters, conflict and
 * transform error logs, and this node's own log entries for rule-written
 * records (signed like local writes).
 */
import type { ChangeLog, Superseded } from '../log/changelog.js'
import { decodeEntry, newEntry } from '../log/entry.js'
import { logId } from '../log/log-id.js'
import type { LogEntry, WriteId } from '../log/entry.js'
import { RUN_MAX_BYTES, RUN_MAX_ENTRIES } from '../log/signing.js'
import type { Cert, RunSigner } from '../log/signing.js'
import { HybridClock, formatHlc } from '../core/hlc.js'
import type { ChangeEvent, ConflictRecord, JsonObject, TransformErrorRecord } from '../core/types.js'
import { decodeJson, encodeJson, utf8 } from '../store/db.js'
import type { Store, Txn } from '../store/db.js'
import { keys, SEP } from '../store/keys.js'
import { isRegistryCollection } from '../store/names.js'
import { encodeRecord } from '../store/records.js'
import type { RecordState, Version } from '../store/records.js'
import { passesOnAsIs, placesEveryWrite } from '../rules/engine.js'
import type { ApplyContext, CompiledRule } from '../rules/engine.js'
import { isGroupSource } from '../rules/targets.js'
import type { OutboundRule, RuleSet } from '../rules/ruleset.js'
import { sourcePlan, streamChange } from '../rules/stream-plan.js'
import { blindedIdHex, sealEntry } from '../log/sealed-entry.js'
import type { StreamKey } from '../log/seal.js'
import { SEALED_COLLECTION } from '../store/names.js'
import { MAX_ENTRY_VALUE_BYTES } from '../network/sync/codec.js'
import type { StreamKeys } from './stream-keys.js'
import type { SourcePlan } from '../rules/stream-plan.js'
import type { ClaimSource } from '../registry/registry.js'

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
  /** This node's rule streams that advanced (flushStreams): announce them too. */
  streamsAdvanced?: Array<{ origin: string, seq: number }>
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

/** What one transaction of the write path has pending until it commits. */
export interface TxnState {
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
  /** `collection\0ruleId` pairs whose relayed puts this transaction left out of the own log for the first time (noteLeftOut). */
  newlyLeftOut?: Set<string>
  /** Rule streams: records of collections this node is a rule's source of, written in this transaction (the last state of each), by `collection\0id`: flushStreams sends them. */
  streamed?: Map<string, Streamed>
  /** Own rule streams this transaction appended to, and where each ends now (a later round of flushStreams numbers after it). */
  streamTop?: Map<string, number>
  /** `stream\0ruleId` pairs whose relayed puts this transaction left out of an own rule stream for the first time (flushStreams). */
  newlyStreamLeftOut?: Set<string>
}

/** A record a transaction wrote in a collection this node is a rule's source of: its last state, for flushStreams. */
export interface Streamed {
  collection: string
  id: string
  state: RecordState
  /** Queued by a stream's fill (Backfiller.fillStream), not by a write. */
  fill: true | undefined
  /** The write the record held before, when it held one, and the rule that placed it (a delete names it: LogEntry.prev). */
  removed: Version | undefined
  removedRule: string | undefined
}

/** How a transaction of the write path ends (WritePath.writeTxn). */
export interface TxnEnd {
  /**
   * Issued, not committed: the caller runs in a pipelined exclusive section,
   * awaits `durable` after it and then calls durable(). Committed (the
   * default): durable() is called before writeTxn returns.
   */
  issue?: boolean
  /** The clock is not put (the feed index built at load never wrote it). */
  noClock?: boolean
}

export const HLC_KEY = keys.meta('hlc')
/**
 * Every (collection, rule) whose relayed puts the node ever left out of its
 * own log (RuleSet relayedPutsLeftOut), as JSON `["collection\0ruleId", …]`: written
 * with the first transaction that leaves one out, so it holds whatever a
 * durable transaction left out. When such a pair stops being skipped, the
 * collection is published again (RuleService).
 */
export const LEFT_OUT_KEY = keys.meta('relay-skips')
/**
 * Rule streams: every (own stream, rule) whose relayed puts the node ever
 * left out of the stream (RuleSet streamLeavesOut), as JSON
 * `["stream\0ruleId", …]`, written with the first transaction that leaves
 * one out. When such a pair stops being left out, the stream is filled
 * again (RuleService), which appends what it lacks.
 */
export const STREAM_LEFT_OUT_KEY = keys.meta('stream-skips')
/** The newest changes feed cursor given out (written with the batch that gives it out). */
export const FEED_CURSOR_KEY = keys.meta('feed-cursor')
/** Rounds of flushStreams in one transaction: a node's own rules reading its own streams write on through further streams. */
const MAX_OWN_STREAM_ROUNDS = 16
/** Records or log entries a pass (backfill, sweep, publish, the feed index) reads per transaction. */
export const BACKFILL_CHUNK = 500

/** Rule states waiting for a stream key (Ingestor.awaitingKey): `m\0awaiting-key\0<state id>`. */
export const AWAITING_KEY_PREFIX = keys.meta(`awaiting-key${SEP}`)

/** Where a rule stream's fill keeps its progress (Backfiller.fillStream). */
export function streamFillKey (stream: string): string {
  return keys.meta(`stream-fill${SEP}${stream}`)
}

/** Own rule streams and what each was sent for: `m\0stream-rule\0<stream>` → `<rule id>\0<target platform, for a targets field>` (WritePath.streamsOfRule). */
export const STREAM_RULE_PREFIX = keys.meta(`stream-rule${SEP}`)

/** What an own rule stream is sent for: its rule, and for a rule with a targets field its one target platform. */
function sentFor (o: OutboundRule): string {
  return `${o.compiled.rule.id}${SEP}${o.target ?? ''}`
}
/** What tells two conflicts apart: the record, the two writes (versions and ops), the kind and the winner. */
function conflictKey (c: Omit<ConflictRecord, 'n' | 'at'>): string {
  const side = (s: ConflictRecord['existing']): string => `${s.op}${SEP}${s.version.origin}${SEP}${s.version.hlc}${SEP}${s.version.seq}`
  return [c.collection, c.id, c.kind, c.winner, side(c.existing), side(c.incoming)].join(SEP)
}
/** Conflicts kept per rule (the newest). */
export const CONFLICT_LOG_SIZE = 50
/** Transform errors kept per rule (the newest). */
export const TRANSFORM_ERROR_LOG_SIZE = 20
/** What writeTxn returns as `durable` for a committed transaction. */
const DURABLE: Promise<void> = Promise.resolve()

/** A record a transaction wrote, for one own rule stream that sends its collection (flushStreams). */
interface StreamWork extends Streamed {
  logId: string
  o: OutboundRule
  /** The stream's current key and epoch: the new entry's. */
  key: StreamKey
  epoch: number
  /** The record's blinded id under each epoch's key of the stream, the current one first. */
  blinded: string[]
  /** The record index's key of each of those. */
  latestKeys: string[]
  plan: SourcePlan
}

/** The state of the write path and its transaction: Ingestor builds on it. */
export abstract class WritePath {
  readonly clock: HybridClock
  protected readonly store: Store
  protected readonly log: ChangeLog
  protected readonly rules: RuleSet
  protected readonly self: string
  /** rule\0counter → value, as committed ("applied", "conflicts", "transformErrors"). */
  protected readonly counters = new Map<string, number>()
  /** Last feed cursor committed. */
  protected cursor = 0
  /** What LEFT_OUT_KEY holds, as issued (loaded by the node at start). */
  everLeftOut = new Set<string>()
  /** What STREAM_LEFT_OUT_KEY holds, as issued (loaded at start). */
  everStreamLeftOut = new Set<string>()
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
  protected readonly policy?: IngestPolicy
  /** The keys of rule streams (set by the node when it carries rules by streams): entries of rule streams are encrypted. */
  streamKeys?: StreamKeys
  /**
   * Own rule streams by what they were sent for (sentFor): a rule whose
   * source parts changed has a new stream, and its earlier ones tell which
   * records its targets may hold (removals, sendsRemoval). Loaded at start
   * (Ingestor.load), added to as streams begin (STREAM_RULE_PREFIX).
   */
  protected readonly streamsOfRule = new Map<string, Set<string>>()
  /** An own stream started a new epoch because its key was full (flushStreams): its audience needs envelopes of the new key. */
  onEpochStarted?: (stream: string) => void
  /**
   * The peer ids own stream `o.stream` goes to now (set by the node): a
   * removal is sent in it for an earlier stream of the rule only when one of
   * them held a key of that earlier stream (sendsRemoval). Unset: anyone may.
   */
  audienceOf?: (o: OutboundRule) => ReadonlySet<string>
  /** Entries of an own stream came back from a peer (a restore): it went on at `epoch`. */
  onRestoredStream?: (streamLog: string, epoch: number) => void
  /** Entries of an own stream came back under epochs whose keys the node lacked: those it derived again, and those it could not (made at random by an earlier build). */
  onKeysRecovered?: (streamLog: string, recovered: number[], unrecoverable: number[]) => void

  constructor (components: { store: Store, log: ChangeLog, rules: RuleSet, self: string, signer?: RunSigner, policy?: IngestPolicy, maxClockAheadMs?: number }) {
    this.signer = components.signer
    this.policy = components.policy
    this.store = components.store
    this.log = components.log
    this.rules = components.rules
    this.self = components.self
    this.clock = new HybridClock(undefined, undefined, components.maxClockAheadMs)
  }

  applied (ruleId: string): number {
    return this.counter(ruleId, 'applied')
  }

  /** A per-rule counter on this node: "applied", "conflicts", "transformErrors". */
  counter (ruleId: string, name: string): number {
    return this.counters.get(`${ruleId}${SEP}${name}`) ?? 0
  }

  /** Whether any rule (present or gone) has written a record on this node. */
  protected anyRuleApplied (): boolean {
    let any = false
    this.counters.forEach((n, key) => { if (n > 0 && key.endsWith(`${SEP}applied`)) any = true })
    return any
  }

  /**
   * Per rule, the conflicts its log holds (conflictKey, oldest first; the
   * newest CONFLICT_LOG_SIZE): a conflict between the same two writes with
   * the same outcome is logged once (recordConflict). Loaded at start
   * (Ingestor.load), added to as transactions commit.
   */
  private readonly loggedConflicts = new Map<string, string[]>()

  /** A conflict is in its rule's log (committed, or loaded at start). */
  protected conflictLogged (c: Omit<ConflictRecord, 'n' | 'at'>): void {
    let logged = this.loggedConflicts.get(c.ruleId)
    if (logged === undefined) this.loggedConflicts.set(c.ruleId, logged = [])
    logged.push(conflictKey(c))
    if (logged.length > CONFLICT_LOG_SIZE) logged.shift()
  }

  /** The newest changes feed cursor committed. */
  lastCursor (): number {
    return this.cursor
  }

  /** Signers of this node's own stream logs (log-id.ts), made from its own as each is first written. */
  private readonly streamSigners = new Map<string, RunSigner>()

  /** Cut local entries of this node's own log `origin` (its whole log, or a stream log of it) into runs (RUN_MAX_ENTRIES / RUN_MAX_BYTES) and sign each. */
  protected signRuns (from: number, entries: LogEntry[], origin = this.self): Cert[] {
    let signer = this.signer
    if (signer === undefined) return []
    if (origin !== signer.origin) {
      const forLog = this.streamSigners.get(origin) ?? signer.forLog(origin)
      this.streamSigners.set(origin, forLog)
      signer = forLog
    }
    const certs: Cert[] = []
    let start = 0
    let bytes = 0
    for (let i = 0; i < entries.length; i++) {
      bytes += entries[i].value?.byteLength ?? 0
      const last = i === entries.length - 1
      if (last || i + 1 - start >= RUN_MAX_ENTRIES || bytes >= RUN_MAX_BYTES) {
        const runFrom = from + start
        certs.push(signer.sign(runFrom, from + i + 1, entries.slice(start, i + 1)))
        start = i + 1
        bytes = 0
      }
    }
    return certs
  }

  /** Start the pending state of a transaction of the write path (applyEntries, backfill, sweep, publish, the feed index): see writeTxn. */
  protected begin (txn: Txn, result: IngestResult, reeval = false, keepChanges = this.keepChanges?.() ?? true): TxnState {
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
      platformOf: (peer) => this.platformOf?.(peer),
      sendsTo: (collection, peer) => this.rules.sendsTo(collection, peer)
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
  protected async writeTxn (work: (txn: Txn) => Promise<TxnState>, end: TxnEnd = {}): Promise<{ txn: Txn, durable: Promise<void> }> {
    const txn = this.store.txn()
    const st = await work(txn)
    await this.flushDerived(st)
    // what this node's own rules write from its own streams may go on through further streams (chaining)
    for (let round = 0; round < MAX_OWN_STREAM_ROUNDS && st.streamed !== undefined && st.streamed.size > 0; round++) await this.flushStreams(st)
    this.flushCounts(st)
    if (st.progress !== undefined) txn.put(st.progress.key, st.progress.value)
    if (st.newlyLeftOut !== undefined) txn.put(LEFT_OUT_KEY, encodeJson([...this.everLeftOut, ...st.newlyLeftOut]))
    if (st.newlyStreamLeftOut !== undefined) txn.put(STREAM_LEFT_OUT_KEY, encodeJson([...this.everStreamLeftOut, ...st.newlyStreamLeftOut]))
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
    for (const a of result.streamsAdvanced ?? []) this.log.issued(a.origin, a.seq)
    const st = this.txnState?.result === result ? this.txnState : undefined
    // the pairs this transaction left out first: a registry change it carries may need them logged
    if (st?.newlyLeftOut !== undefined) for (const pair of st.newlyLeftOut) this.everLeftOut.add(pair)
    if (st?.newlyStreamLeftOut !== undefined) for (const pair of st.newlyStreamLeftOut) this.everStreamLeftOut.add(pair)
    if (result.registry.length > 0) this.onRegistry?.(result.registry)
    for (const c of result.conflicts ?? []) this.conflictLogged(c)
    this.txnState = undefined
    if (st === undefined) return
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
  protected durable (result: IngestResult): void {
    if (result.advanced !== undefined) this.log.committed(result.advanced.origin, result.advanced.seq)
    if (result.ownAdvanced !== undefined) this.log.committed(result.ownAdvanced.origin, result.ownAdvanced.seq)
    for (const a of result.streamsAdvanced ?? []) this.log.committed(a.origin, a.seq)
  }

  /**
   * Rule streams (protocols/sync/streams.md §4): for every record of a
   * collection this node is a rule's source of that the transaction wrote,
   * run each such rule's filter, key and projection here and append what
   * changed for its targets to the rule's stream log (`<self>/<stream>`),
   * signed and attested like the whole log, in the same batch. What a
   * stream last held for a record is its newest entry (the record index of
   * the node's own logs): a record that stops matching is sent as `unmatch`,
   * a delete only when the stream sent the record, and a write the stream
   * holds already not again. A new entry supersedes the record's entries
   * under earlier epochs too (their blinded ids differ): the log drops them
   * with it and attests it (streams.md §14, compaction across epochs).
   */
  private async flushStreams (st: TxnState): Promise<void> {
    const queued = st.streamed
    if (queued === undefined || queued.size === 0) return
    st.streamed = undefined
    const work = await this.streamWork(st, queued)
    if (work.length === 0) return
    await st.txn.prefetch(work.flatMap(w => w.latestKeys))
    // the seq of the record's entry under each epoch the stream has, if any (one at most, but for entries
    // written before earlier epochs' entries were compacted); the newest is what the stream last held
    const found = work.map(w => w.latestKeys.map(k => {
      const seq = st.txn.get(k)
      return seq === undefined ? undefined : Number(utf8.decode(seq))
    }))
    const seqs = found.map(f => f.reduce<number | undefined>((max, seq) => seq === undefined ? max : Math.max(max ?? 0, seq), undefined))
    const entryKeys = seqs.map((seq, i) => seq !== undefined ? keys.entry(this.store.logs.of(work[i].logId), seq) : undefined)
    await st.txn.prefetch(entryKeys.filter((k): k is string => k !== undefined))
    const heard = await this.earlierStreamsHeard(work)
    const byLog = new Map<string, { entries: LogEntry[], supersedes: Superseded[] }>()
    for (let i = 0; i < work.length; i++) {
      const w = work[i]
      const key = entryKeys[i]
      const bytes = key !== undefined ? st.txn.get(key) : undefined
      // op, writer and clock are in clear: what the stream last held needs no decryption
      const last = bytes !== undefined ? decodeEntry(w.logId, bytes) : undefined
      const head = last !== undefined ? { op: last.op, writer: last.writer ?? this.self, hlc: last.hlc } : undefined
      const version = w.state.version
      const { plan, value } = this.streamValue(st, w)
      // a delete names the write it removes when another origin made it (LogEntry.prev)
      const prev = plan.op === 'del' && w.removed !== undefined && w.removed.origin !== this.self ? { origin: w.removed.origin, hlc: w.removed.hlc } : undefined
      if (!streamChange(plan, head, version.origin, version.hlc) && !this.sendsRemoval(st.txn, w, head !== undefined, plan, heard) && !this.deletesLeftOut(w, prev) && !this.sendsDelete(st, w, head !== undefined, plan)) continue
      let out = byLog.get(w.logId)
      if (out === undefined) byLog.set(w.logId, out = { entries: [], supersedes: [] })
      const seq = this.streamEnd(st, w.logId) + out.entries.length + 1
      const plain = newEntry(w.logId, seq, version.hlc, w.collection, w.id, plan.op, value, version.origin, version.seq, prev, plan.op === 'put' ? plan.targetId : undefined)
      out.entries.push(sealEntry(w.key, w.epoch, plain, w.blinded[0]))
      // the index of what the stream holds is the log's own (ChangeLog.append): a second change of the
      // same record in this transaction is not possible (queued holds the last state of each). The
      // record's entries under earlier epochs are indexed under other blinded ids: the new entry
      // supersedes them too, a delete or unmatch as well as a put (whoever holds the earlier keys and
      // not the current one left the audience, and gets nothing new), and the log drops them with it
      for (let j = 1; j < found[i].length; j++) {
        const at = found[i][j]
        if (at !== undefined) out.supersedes.push({ collection: SEALED_COLLECTION, id: w.blinded[j], seq: at })
      }
    }
    await this.appendStreams(st, byLog)
  }

  /**
   * What flushStreams weighs for the records `queued` holds: one item per
   * record and rule stream that sends its collection, once each stream has
   * its current key (keyStreams).
   */
  private async streamWork (st: TxnState, queued: NonNullable<TxnState['streamed']>): Promise<StreamWork[]> {
    const txn = st.txn
    const streamKeys = this.streamKeys
    if (streamKeys === undefined) throw new Error('rule streams need the node\'s stream keys')
    const perCollection = new Map<string, number>()
    for (const q of queued.values()) perCollection.set(q.collection, (perCollection.get(q.collection) ?? 0) + 1)
    await this.keyStreams(st, streamKeys, perCollection)
    const work: StreamWork[] = []
    for (const q of queued.values()) {
      const { collection, id, state } = q
      for (const o of this.rules.outboundFor(collection) ?? []) {
        const streamLog = logId(this.self, o.stream)
        this.noteStreamOf(txn, o)
        const plan = sourcePlan(o.compiled, id, state.value)
        if (this.leftOutOfStream(st, o, plan, state)) continue
        // the record's newest entry in the stream may be under any epoch (blinded ids differ per epoch
        // key); the current epoch is the first, and its blinded id is the new entry's
        const epochs = streamKeys.epochs(o.stream)
        const blinded = epochs.map(k => blindedIdHex(k.key, collection, id))
        const latestKeys = blinded.map(b => keys.latest(this.store.logs.of(streamLog), SEALED_COLLECTION, b))
        // built field by field: one object shape for every item (a spread of `q` made them vary)
        work.push({ collection, id, state, fill: q.fill, removed: q.removed, removedRule: q.removedRule, logId: streamLog, o, key: epochs[0].key, epoch: epochs[0].epoch, blinded, plan, latestKeys })
      }
    }
    return work
  }

  /**
   * The plan and value a stream entry of `w` carries: the source plan, but
   * a put whose value is larger than any peer takes (the codec's bound)
   * would stall the stream for every target: it is sent as a record the
   * rule no longer sends, and reported.
   */
  private streamValue (st: TxnState, w: StreamWork): { plan: SourcePlan, value?: Uint8Array } {
    const plan = w.plan
    if (plan.op !== 'put') return { plan }
    const value = plan.value === w.state.value && w.state.raw !== undefined ? w.state.raw : encodeJson(plan.value)
    if (value.byteLength <= MAX_ENTRY_VALUE_BYTES) return { plan, value }
    const reason = `record ${w.id} is ${value.byteLength} bytes once the rule's projection ran (an entry's value is at most ${MAX_ENTRY_VALUE_BYTES})`
    st.result.skipped.push({ ruleId: w.o.compiled.rule.id, id: w.id, reason })
    return { plan: { op: 'unmatch', reason } }
  }

  /** Append what flushStreams made to each own stream, with the entries of earlier epochs they supersede, signed, in the transaction. */
  private async appendStreams (st: TxnState, byLog: Map<string, { entries: LogEntry[], supersedes: Superseded[] }>): Promise<void> {
    for (const [streamLog, { entries, supersedes }] of byLog) {
      const from = this.streamEnd(st, streamLog)
      const to = from + entries.length
      ;(st.streamTop ??= new Map()).set(streamLog, to)
      await this.log.append(st.txn, streamLog, entries, to, this.signRuns(from, entries, streamLog), { written: true, ...(supersedes.length > 0 ? { supersedes } : {}) })
      ;(st.result.streamsAdvanced ??= []).push({ origin: streamLog, seq: to })
      // a rule of this node reading its own stream (a rule from this platform to itself) applies it as it is
      // written, as a target applies a stream as it arrives (its backfill reads only what was there before)
      if (this.rules.forEntry(streamLog, SEALED_COLLECTION) !== undefined) await this.applyOwnStream(st, entries)
    }
  }

  /**
   * The current key of each stream of the rules reading `perCollection`'s
   * collections (with how many records of each the transaction writes),
   * made before the first entry needs it; a new epoch before a key would
   * encrypt more entries than it may (encryption.md §5: counted by the
   * stream's seq, entries compacted since included, and what an earlier
   * round of flushStreams appended in this transaction, which the log does
   * not hold yet).
   */
  private async keyStreams (st: TxnState, streamKeys: StreamKeys, perCollection: ReadonlyMap<string, number>): Promise<void> {
    for (const [collection, n] of perCollection) {
      for (const o of this.rules.outboundFor(collection) ?? []) {
        const before = streamKeys.currentIfAny(o.stream)?.epoch
        const { epoch } = await streamKeys.current(o.stream)
        // a new epoch above one recovered after a restore (StreamKeys.current): its audience needs its key
        if (before !== undefined && before !== epoch) this.onEpochStarted?.(o.stream)
        const streamLog = logId(this.self, o.stream)
        const pending = this.streamEnd(st, streamLog) - this.log.held(streamLog)
        if (!streamKeys.epochFull(o.stream, n + pending)) continue
        await streamKeys.rotate(o.stream, epoch)
        this.onEpochStarted?.(o.stream)
      }
    }
  }

  /** Where own stream log `streamLog` ends as transaction `st` sees it: what an earlier round of flushStreams appended in it included. */
  private streamEnd (st: TxnState, streamLog: string): number {
    return st.streamTop?.get(streamLog) ?? this.log.held(streamLog)
  }

  /**
   * Two-way sync without echoes (streams.md §4a): a relayed put (a record
   * a rule `rin` placed here, the write another origin's) that own stream
   * `o` need not carry, because every target of the stream gets the same
   * write from `rin`'s own source (RuleSet streamLeavesOut). The pair is
   * kept (STREAM_LEFT_OUT_KEY): when the registry changes so that it no
   * longer holds, the stream is filled again.
   */
  private leftOutOfStream (st: TxnState, o: OutboundRule, plan: SourcePlan, state: RecordState): boolean {
    const rule = state.rule
    if (plan.op !== 'put' || rule === undefined || state.version.origin === this.self || !this.rules.streamLeavesOut(o.stream, rule)) return false
    const pair = `${o.stream}${SEP}${rule}`
    if (!this.everStreamLeftOut.has(pair)) (st.newlyStreamLeftOut ??= new Set()).add(pair)
    return true
  }

  /**
   * Whether a delete this node made (its version is this node's) of a
   * record the stream never sent, or last sent as deleted, is sent all the
   * same, naming the write it removes (`prev`): when that write is another
   * origin's, a rule placed it here and the stream's rule passes records on
   * as they are, the stream may have left the put out (leftOutOfStream),
   * and its targets hold the record from that write's own rule. They remove
   * it only when they hold it shared (engine.ts sharedRecord). A delete
   * this node relays is not sent: its own source's stream carries it.
   */
  private deletesLeftOut (w: StreamWork, prev: WriteId | undefined): boolean {
    if (prev === undefined || w.removedRule === undefined || w.state.version.origin !== this.self) return false
    const rule = w.o.compiled.rule
    return w.o.target === undefined && !isGroupSource(rule.from) && passesOnAsIs(rule)
  }

  /**
   * Whether a delete of a record the stream never sent is sent all the
   * same: when the stream's rule places every write of its source
   * (engine.ts placesEveryWrite), its targets apply the delete as a write of
   * the record whether or not they held it, and keep its tombstone, which an
   * older write of the same id by another source must lose to. So a target
   * the rule gets later (the stream filled from the records here) ends as
   * one that got the put and the delete, as in the whole-log design, whose
   * log keeps every delete. A delete a rule here applied (this node relays
   * it) is sent too, unless the stream leaves that rule's writes out (its
   * targets get them from the rule's own source).
   */
  private sendsDelete (st: TxnState, w: StreamWork, sent: boolean, plan: SourcePlan): boolean {
    if (sent || plan.op !== 'del' || w.state.value !== undefined || !placesEveryWrite(w.o.compiled.rule)) return false
    if (w.state.version.origin === this.self) return true
    // a delete a rule here applied: sent unless every target of the stream gets it from the delete's own
    // rule, on the terms a relayed put is left out (leftOutOfStream), and kept as such: the stream is
    // filled again once that no longer holds
    const rule = w.state.rule
    if (rule === undefined) return false
    if (!this.rules.streamLeavesOut(w.o.stream, rule)) return true
    const pair = `${w.o.stream}${SEP}${rule}`
    if (!this.everStreamLeftOut.has(pair)) (st.newlyStreamLeftOut ??= new Set()).add(pair)
    return false
  }

  /** Apply entries this node just appended to one of its own rule streams to the rules here that read it. */
  protected abstract applyOwnStream (st: TxnState, entries: LogEntry[]): Promise<void>

  /** Record what own stream `o.stream` is sent for, the first time it is (streamsOfRule). */
  private noteStreamOf (txn: Txn, o: OutboundRule): void {
    const key = sentFor(o)
    let streams = this.streamsOfRule.get(key)
    if (streams?.has(o.stream) === true) return
    if (streams === undefined) this.streamsOfRule.set(key, streams = new Set())
    streams.add(o.stream)
    txn.put(`${STREAM_RULE_PREFIX}${o.stream}`, utf8.encode(key))
  }

  /**
   * Whether a delete or unmatch of a record this stream never sent is sent
   * all the same: when the rule's targets may hold the record from an
   * earlier stream of the rule (its source parts were different then), that
   * is when the newest entry an earlier stream holds for it is a put. A new
   * rule's stream says nothing else of records it never sent, but for the
   * source's deletes (sendsDelete). For a rule whose
   * earlier streams are not recorded: while the stream's fill has not
   * reached the record, for a rule that was changed.
   */
  private sendsRemoval (txn: Txn, w: { o: OutboundRule, collection: string, id: string, fill?: true }, sent: boolean, plan: SourcePlan, heard: ReadonlyMap<string, Map<string, Set<number>>>): boolean {
    if (sent || plan.op === 'put') return false
    const earlier = this.earlierStreamsOf(w.o)
    // only a put a member of this stream's audience could read (it holds the key of its epoch): the others
    // learn nothing of records they never got
    const reads = heard.get(sentFor(w.o))
    if (earlier.length > 0) {
      return earlier.some(s => {
        const newest = this.newestOwnEntry(txn, s, w.collection, w.id)
        return newest?.op === 'put' && (reads === undefined || reads.get(s)?.has(newest.epoch ?? 0) === true)
      })
    }
    return w.fill !== true && w.o.compiled.rule.updatedAt !== undefined && !this.fillPassed(txn, w.o.stream, w.id)
  }

  /** The earlier own streams of the rule `o` is sent for (streamsOfRule). */
  private earlierStreamsOf (o: OutboundRule): string[] {
    return [...this.streamsOfRule.get(sentFor(o)) ?? []].filter(s => s !== o.stream)
  }

  /**
   * For the rules of `work` that remove a record (by sentFor), when the
   * node knows their audience (audienceOf): for each earlier stream, the
   * epochs whose envelopes went to a member of the audience now. A removal
   * of a record is sent for a put of such an epoch only (sendsRemoval).
   */
  private async earlierStreamsHeard (work: Array<{ o: OutboundRule, plan: SourcePlan }>): Promise<Map<string, Map<string, Set<number>>>> {
    const out = new Map<string, Map<string, Set<number>>>()
    for (const { o, plan } of work) {
      // puts first: most of a transaction's work, and the audience is read from the registry
      if (plan.op === 'put') continue
      const key = sentFor(o)
      if (out.has(key)) continue
      const audience = this.audienceOf?.(o)
      if (audience === undefined) continue
      const heard = new Map<string, Set<number>>()
      for (const s of this.earlierStreamsOf(o)) {
        const envelopes = await this.streamKeys?.envelopesOf(this.self, s) ?? []
        heard.set(s, new Set(envelopes.filter(e => audience.has(e.peer)).map(e => e.epoch)))
      }
      out.set(key, heard)
    }
    return out
  }

  /** The newest entry own stream `stream` holds for a record (under any of its epochs), if any: its op and epoch are in clear. */
  private newestOwnEntry (txn: Txn, stream: string, collection: string, id: string): LogEntry | undefined {
    const streamLog = logId(this.self, stream)
    let newest: number | undefined
    for (const { key } of this.streamKeys?.epochs(stream) ?? []) {
      const seq = txn.get(keys.latest(this.store.logs.of(streamLog), SEALED_COLLECTION, blindedIdHex(key, collection, id)))
      if (seq !== undefined) newest = Math.max(newest ?? 0, Number(utf8.decode(seq)))
    }
    const bytes = newest !== undefined ? txn.get(keys.entry(this.store.logs.of(streamLog), newest)) : undefined
    return bytes !== undefined ? decodeEntry(streamLog, bytes) : undefined
  }

  /** Whether the fill of own stream `stream` is done or has passed record `id` (read through `txn`, which sees its chunks in flight; Backfiller.fillStream). */
  private fillPassed (txn: Txn, stream: string, id: string): boolean {
    const saved = txn.get(streamFillKey(stream))
    if (saved === undefined) return false
    const state = decodeJson<{ done: boolean, after?: string }>(saved)
    // the fill reads records in key order: LevelDB's, of their UTF-8 bytes
    return state.done || (state.after !== undefined && Buffer.compare(Buffer.from(id), Buffer.from(state.after)) <= 0)
  }

  /** A relayed put `ruleId` made into `collection` is not logged (Ingestor.derive): the pair is kept in LEFT_OUT_KEY. */
  protected noteLeftOut (st: TxnState, collection: string, ruleId: string): void {
    const pair = `${collection}${SEP}${ruleId}`
    if (this.everLeftOut.has(pair)) return
    (st.newlyLeftOut ??= new Set()).add(pair)
  }

  protected count (st: TxnState, ruleId: string, name: string, by = 1): number {
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
  protected writeRecord (st: TxnState, collection: string, id: string, state: RecordState, previous: RecordState | undefined, key = keys.record(collection, id)): number {
    if (isRegistryCollection(collection)) {
      st.txn.put(key, encodeRecord(state))
      return 0
    }
    const cursor = ++st.cursor
    if (this.rules.streams && this.rules.outboundFor(collection) !== undefined) {
      const removed = previous?.value !== undefined ? previous.version : undefined
      // one shape for every queued record (flushStreams reads them in a hot loop)
      ;(st.streamed ??= new Map()).set(`${collection}${SEP}${id}`, { collection, id, state, fill: undefined, removed, removedRule: removed !== undefined ? previous?.rule : undefined })
    }
    if (previous?.cursor !== undefined) st.txn.del(keys.feedByCollection(collection, previous.cursor))
    st.txn.put(keys.feedByCollection(collection, cursor), utf8.encode(id))
    state.cursor = cursor
    st.txn.put(key, encodeRecord(state))
    return cursor
  }

  protected recordConflict (st: TxnState, c: Omit<ConflictRecord, 'n' | 'at'>): void {
    // the same two writes met before, with the same outcome (a rule's new stream sends a write again): logged once
    const key = conflictKey(c)
    if (this.loggedConflicts.get(c.ruleId)?.includes(key) === true || st.result.conflicts?.some(r => r.ruleId === c.ruleId && conflictKey(r) === key) === true) return
    const n = this.count(st, c.ruleId, 'conflicts')
    const record: ConflictRecord = { n, at: new Date().toISOString(), ...c }
    st.txn.put(keys.conflict(c.ruleId, n), encodeJson(record))
    if (n > CONFLICT_LOG_SIZE) st.txn.del(keys.conflict(c.ruleId, n - CONFLICT_LOG_SIZE))
    ;(st.result.conflicts ??= []).push(record)
  }

  protected recordTransformError (st: TxnState, rule: CompiledRule, entry: LogEntry, error: string): void {
    const ruleId = rule.rule.id
    const n = this.count(st, ruleId, 'transformErrors')
    const record: TransformErrorRecord = { n, at: new Date().toISOString(), ruleId, module: rule.rule.transform ?? '', collection: entry.collection, id: entry.id, error }
    st.txn.put(keys.transformError(ruleId, n), encodeJson(record))
    if (n > TRANSFORM_ERROR_LOG_SIZE) st.txn.del(keys.transformError(ruleId, n - TRANSFORM_ERROR_LOG_SIZE))
    ;(st.result.transformErrors ??= []).push(record)
  }

  /** An entry of this node's own log for a rule-written record: the write `version` names keeps its identity (its HLC, and its origin and seq unless this node made it). */
  protected ownEntry (st: TxnState, collection: string, id: string, op: 'put' | 'del', value: JsonObject | undefined, version: Version, removed?: Version): LogEntry {
    const prev = removed !== undefined ? { origin: removed.origin, hlc: removed.hlc } : undefined
    const e = newEntry(this.self, ++st.ownTop, version.hlc, collection, id, op, op === 'put' ? encodeJson(value) : undefined, version.origin, version.seq, prev)
    st.derived.push(e)
    return e
  }

  /** Append the transaction's derived entries to the own log (signed like local writes). */
  private async flushDerived (st: TxnState): Promise<void> {
    if (st.derived.length === 0) return
    await this.log.append(st.txn, this.self, st.derived, st.ownTop, this.signRuns(st.ownBase, st.derived), { written: true })
    st.result.ownAdvanced = { origin: this.self, seq: st.ownTop }
  }
}
