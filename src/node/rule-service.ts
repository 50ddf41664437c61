/**
 * The node's side of the rule engine: keeps the active rule set in step with
 * the registry and the transform modules on disk, runs backfills (a rule
 * added, changed, or whose source moved), publishes rule-written records of
 * collections that become a rule's source (chaining), delivers webhooks,
 * serves the changes feed, dry runs, conflict and transform-error logs, and
 * the rule part of the status. Events it emits on the node:
 * `transform-error` (TransformErrorRecord), `conflict` (ConflictRecord),
 * `backfill` ({ ruleId }); `change` events come from the node itself.
 */
import { join } from 'node:path'
import type { Logger } from 'pino'
import { ConflictError, InvalidInputError, NotFoundError } from '../core/errors.js'
import type { ChangeLog } from '../log/changelog.js'
import { peerOf } from '../log/log-id.js'
import { formatSource, formatTarget } from '../registry/registry.js'
import type { Registry } from '../registry/registry.js'
import { compileRule, ruleIdOfState, stateIdOf } from '../rules/engine.js'
import type { CompiledRule } from '../rules/engine.js'
import { dryRun } from '../rules/dryrun.js'
import { ModuleCache } from '../rules/modules.js'
import type { OutboundRule, RuleSet } from '../rules/ruleset.js'
import { describeUnknown, isGroupSource, ruleSources, ruleTargets, targetsPlatform, unknownPlatforms } from '../rules/targets.js'
import { modeOf } from '../core/modes.js'
import { Webhooks } from '../rules/webhooks.js'
import type { WebhookSettings } from '../rules/webhooks.js'
import type { Store } from '../store/db.js'
import { decodeJson, encodeJson } from '../store/db.js'
import { keys, prefixRange, SEP } from '../store/keys.js'
import { checkFeedCollection, commitLines, DEFAULT_HEARTBEAT_MS, FEED_CHUNK, FeedSignal, parseCursor, readFeed } from '../store/changes.js'
import type { BackfillState, IngestResult, Ingestor, LocalOp } from './ingest.js'
import { envelopeId, missingEnvelopes } from './stream-keys.js'
import { KEYS_COLLECTION } from '../store/names.js'
import type {
  ChangesOptions, ConflictRecord, DryRunReport, FeedLine, Platform, Rule, RuleStatus, TransformErrorRecord
} from '../core/types.js'

/** Where a paused rule stopped on this node: every entry of its source's log up to `seq` was applied. */
interface PausePoint {
  source: string
  seq: number
}

/** At most this many skip/transform-error log lines per rule per LOG_WINDOW_MS; the rest are counted. */
const LOG_BURST = 20
const LOG_WINDOW_MS = 60_000

export interface RuleServiceDeps {
  events: EventTarget
  log: Logger
  store: Store
  changelog: ChangeLog
  registry: Registry
  ruleSet: RuleSet
  ingestor: Ingestor
  self: string
  localName: string
  region?: string
  transformsDir?: string
  /** This node's webhook settings (allowed hosts, secrets). */
  webhooks?: WebhookSettings
  dataDir: string
  isRunning: () => boolean
  /** What follows a commit on the node (events, registry, waking the senders): backfill and publish chunks go through it. */
  afterIngest: (result: IngestResult) => void
  /** Entries of a peer's log this node knows it lacks; undefined when it holds none. */
  sourceLag: (peer: string) => number | undefined
  /** Write registry records of this node's (the envelopes of its stream keys) through its local write path. */
  writeRegistry?: (ops: LocalOp[]) => Promise<void>
}

export class RuleService {
  readonly modules: ModuleCache
  readonly feed = new FeedSignal()
  private readonly deps: RuleServiceDeps
  private readonly webhooks: Webhooks
  /** Running backfills, by state id (CompiledRule.stateId). */
  private readonly backfills = new Map<string, Promise<void>>()
  /** Group-source rules noting their sources, and mirrors removing what a source that left held (syncGroup), by rule id. */
  private readonly sweeps = new Map<string, Promise<void>>()
  private readonly publishes = new Map<string, Promise<void>>()
  /** Forgetting a collection's publish progress, after its running publish stopped. */
  private readonly unpublishing = new Map<string, Promise<void>>()
  private published = new Set<string>()
  /** Bumped to stop a collection's running publish (logLeftOut): a run goes on only while its generation is current. */
  private readonly publishGen = new Map<string, number>()
  private refreshing: Promise<void> = Promise.resolve()
  private readonly logBudget = new Map<string, { windowStart: number, used: number, dropped: number }>()
  private started = false
  /** Rules paused on this node now (ids), and the writes of their pause points and resumptions, in order. */
  private pausedHere = new Set<string>()
  private pauseWork: Promise<void> = Promise.resolve()

  constructor (deps: RuleServiceDeps) {
    this.deps = deps
    this.modules = new ModuleCache(deps.transformsDir ?? join(deps.dataDir, 'transforms'))
    this.webhooks = new Webhooks({ store: deps.store, log: deps.log.child({ component: 'webhooks' }), localName: () => deps.localName, lastCursor: () => deps.ingestor.lastCursor(), ...(deps.webhooks !== undefined ? { settings: deps.webhooks } : {}) })
  }

  private rebuild (): CompiledRule[] {
    const changed = this.deps.ruleSet.rebuild(this.deps.registry, this.deps.localName, {
      ...(this.deps.region !== undefined ? { region: this.deps.region } : {}),
      modules: this.modules
    })
    for (const p of this.deps.ruleSet.problems) this.deps.log.debug({ rule: p.ruleId }, p.message)
    this.notePauses()
    return changed
  }

  /**
   * Rules that became paused here: note where each stopped, under the write
   * lock (see createRuleService in node.ts), so that every entry of the
   * source's log held now was applied by the rule and none after. A pause
   * found at start that was not noted before (the node stopped right after
   * it) is noted at the start of the log: its catch-up reads the whole log.
   */
  private notePauses (): void {
    const now = new Set<string>()
    const platforms = this.deps.registry.platforms()
    for (const rule of this.deps.ruleSet.paused()) {
      // one point per source: a group source has one per platform feeding this node
      for (const platform of ruleSources(rule.from, platforms, this.deps.localName)) {
        const id = stateIdOf(rule, platform.name)
        now.add(id)
        if (this.pausedHere.has(id)) continue
        const source = this.deps.ruleSet.sourceLog(rule, platform.peerId)
        const point: PausePoint = { source, seq: this.started ? this.deps.changelog.held(source) : 0 }
        this.deps.log.info({ rule: rule.id, source, seq: point.seq }, `rule ${rule.id} paused here${isGroupSource(rule.from) ? ` (source ${platform.name})` : ''}: it applies nothing until it is resumed`)
        this.pauseWork = this.pauseWork.then(async () => {
          // an earlier point still there (paused again before the resumption was taken in) is kept
          if (await this.deps.store.db.get(keys.rulePause(id)) !== undefined) return
          await this.deps.store.db.put(keys.rulePause(id), encodeJson(point))
        }).catch((err: Error) => this.deps.log.error({ rule: rule.id, err: err.message }, `noting where rule ${rule.id} paused failed: ${err.message}`))
      }
    }
    this.pausedHere = now
  }

  /**
   * A rule that was paused here runs again: its pass continues from where it
   * stopped instead of a new backfill. Its source's log is read from the
   * pause point on, in log order (a catch-up pass, BackfillState.catchUp);
   * a pass the pause interrupted goes on after it. Nothing to do for a rule
   * that never ran here (its backfill starts as for a new rule) or whose
   * spec or source changed meanwhile (its backfill starts again anyway).
   */
  private async resumed (rule: CompiledRule): Promise<void> {
    const id = rule.stateId
    const work = this.pauseWork.then(async () => {
      const db = this.deps.store.db
      const saved = await db.get(keys.rulePause(id))
      if (saved === undefined) return
      const point = decodeJson<PausePoint>(saved)
      const state = await this.deps.ingestor.backfillState(id)
      const ops: Array<{ type: 'del', key: string } | { type: 'put', key: string, value: Uint8Array }> = [{ type: 'del', key: keys.rulePause(id) }]
      if (state !== undefined && state.source === rule.sourcePeer && state.fingerprint === rule.fingerprint && point.source === rule.sourcePeer) {
        let next: BackfillState
        if (state.catchUp === true && !state.done) {
          // paused again during its catch-up: that one goes on (it has not passed the first pause point)
          next = { ...state }
          delete next.upTo
        } else {
          next = { source: state.source, fingerprint: state.fingerprint, done: false, phase: 'source', order: 'log', afterSeq: point.seq, catchUp: true }
          if (!state.done) {
            next.then = state
            if (state.reeval === true) next.reeval = true
          }
        }
        ops.push({ type: 'put', key: keys.backfill(id), value: encodeJson(next) })
        this.deps.log.info({ rule: rule.rule.id, source: rule.sourcePlatform, afterSeq: next.afterSeq }, `rule ${rule.rule.id} resumed here: catching up from entry ${next.afterSeq ?? 0} of ${rule.sourcePlatform ?? 'its source'}'s log`)
      }
      await db.batch(ops)
    })
    this.pauseWork = work.catch(() => {})
    await work
  }

  /** At start, before the network: load the transform modules the rules name and build the rule set. */
  async load (): Promise<void> {
    this.rebuild()
    await this.modules.refresh(this.deps.ruleSet.modules())
    this.rebuild()
    for (const p of this.deps.ruleSet.problems) this.deps.log.warn({ rule: p.ruleId }, `rule ${p.ruleId} is not active here: ${p.message}`)
    this.published = new Set(this.deps.ruleSet.published())
  }

  /** Once the node runs: resume backfills and publishing, start webhooks. */
  start (): void {
    this.started = true
    this.forgetLeftRules()
    for (const rule of this.deps.ruleSet.all()) this.scheduleBackfill(rule)
    for (const rule of this.deps.ruleSet.groups()) this.syncGroup(rule.rule.id)
    for (const c of this.published) this.schedulePublish(c)
    this.logLeftOut()
    this.ensureEnvelopes()
    this.scheduleFills()
    this.keysArrived()
    this.webhooks.sync(this.deps.ruleSet.all())
  }

  /**
   * Relayed puts some rule left out of the own log (RuleSet relayedPutsLeftOut)
   * that the rules now need logged (a target joined that the write's own rule
   * does not reach, a reading rule got a filter, …): stop the collection's
   * running publish, forget its progress with those pairs, and publish it
   * again from the start, which logs every rule-written record not logged yet.
   */
  private logLeftOut (): void {
    const current = this.deps.ruleSet.leftOut()
    const collections = new Set<string>()
    for (const pair of this.deps.ingestor.everLeftOut) {
      const i = pair.indexOf(SEP)
      if (current.get(pair.slice(0, i))?.has(pair.slice(i + 1)) !== true) collections.add(pair.slice(0, i))
    }
    for (const c of collections) {
      if (this.unpublishing.has(c)) continue
      this.publishGen.set(c, (this.publishGen.get(c) ?? 0) + 1) // the running publish stops at its next chunk
      const forget = (this.publishes.get(c) ?? Promise.resolve()).then(async () => {
        if (await this.deps.ingestor.forgetLeftOut(c)) this.deps.log.info({ collection: c }, `rule-written records of ${c} are logged again: a rule reading it no longer leaves relayed puts out (the registry changed)`)
      }).catch((err: Error) => this.deps.log.error({ collection: c, err: err.message }, `publishing ${c} again failed; it is retried when the registry changes or at the next start`))
      this.unpublishing.set(c, forget)
      forget.finally(() => { if (this.unpublishing.get(c) === forget) this.unpublishing.delete(c) }).catch(() => {})
      this.schedulePublish(c)
    }
  }

  async stop (): Promise<void> {
    this.started = false
    this.feed.notify() // followers of the feed see the node stopping
    await this.webhooks.stop()
    await Promise.allSettled([...this.backfills.values(), ...this.sweeps.values(), ...this.publishes.values(), ...this.unpublishing.values(), ...this.fills.values(), this.forgettingFills, this.forgettingRules, this.envelopes, this.refreshing])
  }

  /** The registry changed: rebuild the rules now; load modules that changed, then rebuild again. */
  registryChanged (): void {
    this.apply(this.rebuild())
    this.refreshing = this.refreshing.then(async () => {
      if (!this.deps.isRunning()) return
      if (await this.modules.refresh(this.deps.ruleSet.modules())) this.apply(this.rebuild())
    }).catch((err: Error) => this.deps.log.error({ err: err.message }, `loading transform modules failed: ${err.message}`))
  }

  private apply (changed: CompiledRule[]): void {
    const published = new Set(this.deps.ruleSet.published())
    for (const c of published) if (!this.published.has(c)) this.schedulePublish(c)
    for (const c of this.published) {
      if (published.has(c)) continue
      // a collection no rule reads any more: its writes are not logged from now on, so a later
      // rule must publish it again from the start (once the running publish has stopped)
      const forget = (this.publishes.get(c) ?? Promise.resolve()).then(async () => await this.deps.ingestor.unpublish(c)).catch(() => {})
      this.unpublishing.set(c, forget)
      forget.finally(() => { if (this.unpublishing.get(c) === forget) this.unpublishing.delete(c) }).catch(() => {})
    }
    this.published = published
    if (!this.started) return
    this.logLeftOut()
    this.ensureEnvelopes()
    this.scheduleFills()
    this.webhooks.sync(this.deps.ruleSet.all())
    this.forgetLeftRules()
    for (const rule of changed) this.scheduleBackfill(rule)
    for (const rule of this.deps.ruleSet.groups()) this.syncGroup(rule.rule.id)
  }

  /**
   * Rules that no longer apply here (this node left their targets, or they
   * were removed) forget their progress here once their pass has stopped
   * (Ingestor.forgetStates): should one target this node again, it reads
   * its source from the start, as a new target does, and gets what was
   * written while it applied nothing here. At start, the progress of every
   * rule that does not apply (it left while the node was down); after a
   * registry change, that of the rules that stopped applying with it, even
   * when a later change made them apply again (the backfills scheduled then
   * wait for this: scheduleBackfill). A rule paused here keeps its progress
   * (it catches up from its pause point). A rule not active here for a
   * problem (a mirror rule took its target collection, a transform module
   * missing) applies nothing of what its source writes meanwhile either:
   * it forgets its progress too, and reads its source from the start once
   * the problem is gone.
   */
  private forgetLeftRules (): void {
    const ruleSet = this.deps.ruleSet
    const applies = (ruleId: string): boolean => ruleSet.forRule(ruleId).length > 0 || ruleSet.groupRule(ruleId) !== undefined ||
      ruleSet.paused().some(r => r.id === ruleId)
    const before = this.applyingHere
    const now = new Set(this.deps.registry.rules().map(r => r.id).filter(applies))
    this.applyingHere = now
    const left = before === undefined ? undefined : new Set([...before].filter(id => !now.has(id)))
    if (left?.size === 0) return
    // the passes running now (a backfill scheduled after this waits for the forgetting)
    const running = new Map([...this.backfills].filter(([stateId]) => left === undefined || left.has(ruleIdOfState(stateId))))
    const kept = left === undefined ? applies : (ruleId: string) => !left.has(ruleId)
    // also while the node stops (stop waits for it, the store still open): a rule that left and came back
    // would otherwise keep its progress across the restart
    this.forgettingRules = this.forgettingRules.then(async () => {
      const forgotten = await this.deps.ingestor.forgetStates(kept, async (stateId) => { await running.get(stateId)?.catch(() => {}) })
      if (forgotten.length > 0) this.deps.log.info({ rules: forgotten }, `rule(s) ${forgotten.join(', ')} no longer apply here: their progress here is forgotten (should one target this node again, it reads its source from the start)`)
    }).catch((err: Error) => { this.deps.log.error({ err: err.message }, `forgetting the progress of rules that no longer apply here failed: ${err.message}`) })
  }

  /**
   * Note which platforms feed a group-source rule here (Ingestor.groupSources),
   * after every registry change and at start, one call at a time per rule: a
   * platform that left stops feeding it (what it wrote stays; should it come
   * back, it is backfilled afresh), and a mirror removes what no remaining
   * source holds (Ingestor.sweepLeft), resumably.
   */
  private syncGroup (ruleId: string): void {
    const before = this.sweeps.get(ruleId) ?? Promise.resolve()
    const run = before.then(async () => {
      const rule = this.deps.ruleSet.groupRule(ruleId)
      if (rule === undefined || !this.deps.isRunning()) return
      const now = this.deps.ruleSet.forRule(ruleId).map(c => c.sourcePlatform ?? '')
      const left = await this.deps.ingestor.groupSources(rule, now, async (stateId) => { await this.backfills.get(stateId)?.catch(() => {}) })
      const mirror = modeOf(rule.rule.mode).exact
      for (const name of left) this.deps.log.info({ rule: ruleId, source: name }, `rule ${ruleId}: ${name} no longer feeds it here${mirror ? '; the mirror removes what only it held' : ''}`)
      if (!mirror) return
      const current = (): boolean => this.deps.isRunning() && this.deps.ruleSet.groupRule(ruleId) !== undefined
      await this.deps.ingestor.sweepLeft(rule, (r) => this.deps.afterIngest(r), current)
    }).catch((err: Error) => { this.deps.log.error({ rule: ruleId, err: err.message }, `rule ${ruleId}: noting its sources failed; it is noted again at the next registry change or start: ${err.message}`) })
    this.sweeps.set(ruleId, run)
    run.finally(() => { if (this.sweeps.get(ruleId) === run) this.sweeps.delete(ruleId) }).catch(() => {})
  }

  /** What follows every commit: report transform errors and conflicts, wake feed followers and webhooks. */
  afterCommit (result: IngestResult): void {
    for (const s of result.skipped) {
      if (this.mayLog(s.ruleId)) this.deps.log.warn({ rule: s.ruleId, id: s.id }, `rule ${s.ruleId} skipped record ${s.id}: ${s.reason}`)
    }
    for (const e of result.transformErrors ?? []) {
      if (this.mayLog(e.ruleId)) this.deps.log.warn({ rule: e.ruleId, collection: e.collection, id: e.id, module: e.module }, `rule ${e.ruleId}: transform ${e.module} failed on ${e.collection}/${e.id}, record skipped: ${e.error}`)
      this.deps.events.dispatchEvent(new CustomEvent<TransformErrorRecord>('transform-error', { detail: e }))
    }
    for (const c of result.conflicts ?? []) {
      this.deps.log.info({ rule: c.ruleId, collection: c.collection, id: c.id, kind: c.kind, winner: c.winner }, `rule ${c.ruleId}: conflict on ${c.collection}/${c.id} (${c.kind}); ${c.winner} version kept`)
      this.deps.events.dispatchEvent(new CustomEvent<ConflictRecord>('conflict', { detail: c }))
    }
    // every record written takes a feed cursor (changes may be empty: see Ingestor.keepChanges)
    if (result.feed !== undefined) {
      this.feed.notify({ ...result.feed, changes: result.changes })
      this.webhooks.wake()
    }
  }

  /** Rate limit per rule for warnings that a bad rule could produce for every record. */
  private mayLog (ruleId: string): boolean {
    const now = Date.now()
    let b = this.logBudget.get(ruleId)
    if (b === undefined || now - b.windowStart >= LOG_WINDOW_MS) {
      if (b !== undefined && b.dropped > 0) this.deps.log.warn({ rule: ruleId, suppressed: b.dropped }, `rule ${ruleId}: ${b.dropped} more skipped records were not logged; see "syncmesh status" and GET /v1/rules/${ruleId}/errors`)
      b = { windowStart: now, used: 0, dropped: 0 }
      this.logBudget.set(ruleId, b)
    }
    if (b.used < LOG_BURST) {
      b.used++
      return true
    }
    b.dropped++
    return false
  }

  scheduleBackfill (rule: CompiledRule): void {
    const id = rule.stateId
    const ruleId = rule.rule.id
    const running = this.backfills.get(id)
    if (running !== undefined) {
      // the running one stops when it sees the rule changed; run again after it
      running.finally(() => { if (this.deps.isRunning() && this.deps.ruleSet.get(id) === rule) this.scheduleBackfill(rule) }).catch(() => {})
      return
    }
    const current = (): boolean => this.deps.isRunning() && this.deps.ruleSet.get(id) === rule
    const from = rule.group ? ` from ${rule.sourcePlatform ?? '?'}` : ''
    // after the progress of rules that stopped applying here is forgotten (forgetLeftRules): this one may be among them
    const run = this.forgettingRules.then(async () => await this.resumed(rule))
      .then(async () => await this.rereadIfAsked(rule))
      .then(async () => { if (current()) await this.deps.ingestor.backfill(rule, (r) => this.deps.afterIngest(r), current) })
      .then(async () => {
        if (await this.deps.ingestor.backfillDone(id)) {
          this.deps.log.info({ rule: ruleId, source: rule.sourcePlatform, applied: this.deps.ingestor.applied(ruleId) }, `rule ${ruleId} backfill${from} finished`)
          // a group mirror sweeps once all its sources are backfilled (Ingestor.sweepLeft)
          if (rule.group && modeOf(rule.rule.mode).exact) this.syncGroup(ruleId)
          this.deps.events.dispatchEvent(new CustomEvent('backfill', { detail: rule.group ? { ruleId, source: rule.sourcePlatform } : { ruleId } }))
        }
      })
      .catch((err: Error) => { this.deps.log.error({ rule: ruleId, source: rule.sourcePlatform, err: err.message }, `rule ${ruleId} backfill${from} failed; it resumes at the next start`) })
      .finally(() => { this.backfills.delete(id) })
    this.backfills.set(id, run)
  }

  private schedulePublish (collection: string): void {
    // rule streams: rule-written records go on through the streams, not the own log
    if (this.deps.ruleSet.streams) return
    if (this.publishes.has(collection) || !this.started) return
    const gen = this.publishGen.get(collection) ?? 0
    const current = (): boolean => this.deps.isRunning() && this.published.has(collection) && (this.publishGen.get(collection) ?? 0) === gen
    const run = (this.unpublishing.get(collection) ?? Promise.resolve())
      .then(async () => await this.deps.ingestor.publish(collection, (r) => this.deps.afterIngest(r), current))
      .then(() => { this.deps.log.debug({ collection }, `rule-written records of ${collection} are in the own log`) })
      .catch((err: Error) => { this.deps.log.error({ collection, err: err.message }, `publishing ${collection} failed; it resumes at the next start`) })
      .finally(() => {
        this.publishes.delete(collection)
        if (!this.deps.isRunning() || !this.published.has(collection)) return
        // the collection stopped being a source and became one again while this run went on:
        // publish once more from the start after its progress is forgotten
        const forgetting = this.unpublishing.get(collection)
        if (forgetting !== undefined) forgetting.then(() => this.schedulePublish(collection)).catch(() => {})
        else this.schedulePublishIfPending(collection)
      })
    this.publishes.set(collection, run)
  }

  /** Rule streams filled or being filled (scheduleFills), by stream id. */
  private readonly fills = new Map<string, Promise<void>>()
  /** Forgetting the fill progress of streams no rule here sends (Ingestor.forgetFills): fills start after it. */
  private forgettingFills: Promise<void> = Promise.resolve()
  /** Forgetting the progress of rules that no longer apply here (forgetLeftRules), one call at a time. */
  private forgettingRules: Promise<void> = Promise.resolve()
  /** The rules that apply here (forgetLeftRules), as of the last registry change; undefined before start. */
  private applyingHere?: Set<string>
  private fillsChecked = false
  /** Writing envelopes of stream keys (ensureEnvelopes): one run at a time, another after it when asked meanwhile. */
  private envelopes: Promise<void> = Promise.resolve()
  private envelopesAgain = false
  private envelopesRunning = false

  /**
   * Rule streams: every target of every rule this node is the source of
   * holds an envelope of the stream's current key (a `$keys` record of this
   * node's, streams.md §6): made for the targets that lack one, after every
   * registry change (a target joins) and at start. The key itself is made
   * here when the stream has none yet.
   */
  /** An own stream started a new epoch (its key was full): seal the new key to the stream's audience. */
  keysRotated (): void {
    this.ensureEnvelopes()
  }

  /** The platforms own stream `o.stream` goes to now: the rule's targets other than this node, not revoked (for a targets field, its one target). */
  private targetsOf (o: OutboundRule): Platform[] {
    return ruleTargets(o.compiled.rule, this.deps.registry).filter(t => t.peerId !== this.deps.self && t.peerId !== '' && t.revoked !== true && (o.target === undefined || t.name === o.target))
  }

  /** The peer ids own stream `o.stream` goes to now (its audience, as its envelopes are made for). */
  audienceOf (o: OutboundRule): Set<string> {
    return new Set(this.targetsOf(o).map(t => t.peerId))
  }

  private ensureEnvelopes (): void {
    const keysOf = this.deps.ingestor.streamKeys
    if (!this.started || keysOf === undefined || this.deps.writeRegistry === undefined) return
    if (this.envelopesRunning) {
      this.envelopesAgain = true
      return
    }
    this.envelopesRunning = true
    this.envelopes = (async () => {
      do {
        this.envelopesAgain = false
        const ops: LocalOp[] = []
        for (const o of this.deps.ruleSet.allOutbound()) {
          let { epoch } = await keysOf.current(o.stream)
          // a rule with a targets field: this stream goes to one target platform only
          const targets = this.targetsOf(o)
          const now = new Set(targets.map(t => t.peerId))
          // the envelopes of the stream are its audience's record: who holds the current epoch's key
          const held = await keysOf.envelopesOf(this.deps.self, o.stream)
          const left = held.filter(e => e.epoch === epoch && !now.has(e.peer)).map(e => e.peer)
          if (left.length > 0) {
            // a member left the audience: what is written from now on is under a key it never gets
            epoch = (await keysOf.rotate(o.stream, epoch)).epoch
            this.deps.log.info({ rule: o.compiled.rule.id, stream: o.stream, epoch, left }, `rule ${o.compiled.rule.id}: ${left.length} node(s) left the targets of stream ${o.stream}; its entries are encrypted under a new key (epoch ${epoch}) from now on`)
          }
          // every member holds every epoch's key: one that joins reads the stream from its start
          for (const { epoch: e, key, peer } of missingEnvelopes(keysOf.epochs(o.stream), [...now], held, await keysOf.decidedAfter(o.stream, o.compiled.rule.id))) {
            ops.push({ collection: KEYS_COLLECTION, id: envelopeId(this.deps.self, o.stream, e, peer), op: 'put', value: keysOf.envelope(o.stream, e, key, peer) })
          }
        }
        if (ops.length > 0 && this.deps.isRunning()) await this.deps.writeRegistry!(ops)
      } while (this.envelopesAgain && this.deps.isRunning())
    })().catch((err: Error) => { this.deps.log.error({ err: err.message }, `writing the keys of rule streams for their targets failed; it is tried again at the next registry change: ${err.message}`) })
      .finally(() => { this.envelopesRunning = false })
  }



  /**
   * Envelopes of stream keys for this node arrived (their `$keys` ids; all
   * of them at start): every rule here that passed over entries of its
   * stream for want of a key, and whose stream one of them is of, reads its
   * stream again from the start, once its running pass has stopped.
   */
  keysArrived (envelopes?: readonly string[]): void {
    if (!this.started || this.deps.ingestor.streamKeys === undefined) return
    for (const stateId of [...this.deps.ingestor.awaitingKey]) {
      const rule = this.deps.ruleSet.get(stateId)
      if (rule?.stream === undefined) continue
      // only an envelope of the rule's own stream (`<origin>/<stream>/<epoch>/<peer>`, its origin's): any
      // member may write envelopes of its own streams for this node, and must not make it read others' again
      if (envelopes !== undefined && !envelopes.some(id => id.startsWith(`${rule.sourcePeer}/`))) continue
      // the next pass of this rule state (after the running one, which may still pass entries over)
      // starts from the beginning of the stream (scheduleBackfill)
      this.rereads.add(stateId)
      this.scheduleBackfill(rule)
    }
  }

  /** Rule states whose next pass reads their stream from the start: a key they waited for arrived (keysArrived). */
  private readonly rereads = new Set<string>()

  /** A rule state's pass begins: when a key it waited for arrived since, it forgets its progress and reads its stream from the start. */
  private async rereadIfAsked (rule: CompiledRule): Promise<void> {
    const id = rule.stateId
    if (!this.rereads.delete(id)) return
    // asked as the envelope's transaction was issued: read once it is durable
    await this.deps.store.flushed()
    if (!this.deps.ingestor.awaitingKey.has(id)) return
    await this.deps.ingestor.clearAwaitingKey(id)
    this.deps.log.info({ rule: rule.rule.id, stream: rule.stream }, `rule ${rule.rule.id}: a key of its stream arrived; reading the stream again from the start`)
  }

  /** Rule streams: fill the stream of every rule this node is the source of, once per stream (Ingestor.fillStream). */
  private scheduleFills (): void {
    if (!this.started || !this.deps.ruleSet.streams) return
    const sent = new Set(this.deps.ruleSet.allOutbound().map(o => o.stream))
    const ingestor = this.deps.ingestor
    if (!this.fillsChecked) {
      // at start: the streams sent before it and not now
      this.fillsChecked = true
      this.forgettingFills = this.forgettingFills.then(async () => await ingestor.forgetFills(stream => !sent.has(stream)))
    }
    for (const [gone, run] of this.fills) {
      if (sent.has(gone)) continue
      // no rule here sends it now: its progress goes once its fill stops (should it be sent again, it is filled again)
      this.fills.delete(gone)
      this.forgettingFills = this.forgettingFills.then(async () => await run).then(async () => await ingestor.forgetFills(stream => stream === gone))
    }
    this.forgettingFills = this.forgettingFills.catch((err: Error) => { this.deps.log.error({ err: err.message }, `forgetting the fills of rule streams no rule sends failed: ${err.message}`) })
    for (const o of this.deps.ruleSet.allOutbound()) {
      if (this.fills.has(o.stream)) continue
      this.fills.set(o.stream, this.fill(this.forgettingFills, o))
    }
    this.fillLeftOut()
  }

  /** Fill own stream `o.stream` after `before` (Ingestor.fillStream), logging how it ended. */
  private async fill (before: Promise<unknown>, o: OutboundRule): Promise<void> {
    const stream = o.stream
    const current = (): boolean => this.deps.isRunning() && this.deps.ruleSet.allOutbound().some(x => x.stream === stream)
    await before.then(async () => await this.deps.ingestor.fillStream(stream, o.compiled.rule.from.collection, (r) => this.deps.afterIngest(r), current))
      .then(() => { this.deps.log.debug({ rule: o.compiled.rule.id, stream }, `stream ${stream} of rule ${o.compiled.rule.id} holds the records of ${o.compiled.rule.from.collection}`) })
      .catch((err: Error) => { this.deps.log.error({ rule: o.compiled.rule.id, stream, err: err.message }, `filling stream ${stream} failed; it resumes at the next start`) })
  }

  /**
   * Rule streams: own streams that left relayed puts out (RuleSet
   * streamLeavesOut) of a rule whose puts they must carry now (a target
   * joined that the write's own rule does not reach, a mode changed, …):
   * once the stream's fill has stopped, forget its progress with those
   * pairs (Ingestor.forgetStreamLeftOut) and fill it again, which appends
   * the records it left out.
   */
  private fillLeftOut (): void {
    const ruleSet = this.deps.ruleSet
    const sent = new Map(ruleSet.allOutbound().map(o => [o.stream, o]))
    const streams = new Set<string>()
    for (const pair of this.deps.ingestor.everStreamLeftOut) {
      const i = pair.indexOf(SEP)
      const stream = pair.slice(0, i)
      if (sent.has(stream) && !ruleSet.streamLeavesOut(stream, pair.slice(i + 1))) streams.add(stream)
    }
    for (const stream of streams) {
      const o = sent.get(stream) as OutboundRule
      // after the fill running or asked for (a second change while one is filled again: once more, if needed)
      const run = (this.fills.get(stream) ?? this.forgettingFills).then(async () => await this.deps.ingestor.forgetStreamLeftOut(stream)).then(async (any) => {
        if (!any) return
        this.deps.log.info({ rule: o.compiled.rule.id, stream }, `stream ${stream} of rule ${o.compiled.rule.id} is filled again: it no longer leaves out the writes another node's rule sends its targets (the registry changed)`)
        await this.fill(Promise.resolve(), o)
      }).catch((err: Error) => { this.deps.log.error({ rule: o.compiled.rule.id, stream, err: err.message }, `filling stream ${stream} again failed; it is retried when the registry changes or at the next start`) })
      this.fills.set(stream, run)
    }
  }

  private schedulePublishIfPending (collection: string): void {
    this.deps.store.db.get(keys.publish(collection)).then((saved) => {
      const done = saved !== undefined && decodeJson<{ done: boolean }>(saved).done
      if (!done && this.published.has(collection)) this.schedulePublish(collection)
    }).catch(() => {})
  }

  /** Local writes into a mirror target are refused: it only changes through its rule. */
  assertWritable (collection: string): void {
    const r = this.deps.ruleSet.mirrorFor(collection)
    if (r === undefined) return
    const from = formatSource(r.from)
    throw new ConflictError(`collection "${collection}" on this node is a mirror of ${from} (rule ${r.id}) and only changes through that rule; write to ${from} instead, or make the target writable with "syncmesh rule update ${r.id} --mode merge"`, 'MIRROR_TARGET_READ_ONLY')
  }

  /** Whether this node is a target of the rule, by the registry (active or not). */
  isLocal (rule: Rule): boolean {
    const me = this.deps.registry.platform(this.deps.localName) ?? { name: this.deps.localName, ...(this.deps.region !== undefined ? { region: this.deps.region } : {}) }
    return targetsPlatform(rule.to, rule.from, me)
  }

  /** Validate a new or changed rule as far as this node can (filter, transforms, key, targets field). */
  validate (rule: Rule): void {
    compileRule(rule, this.deps.self)
  }

  async dryRun (rule: Rule, reeval: boolean): Promise<DryRunReport> {
    this.validate(rule)
    const streams = this.deps.ruleSet.streams
    // a dry run evaluates the source's log held here; with rule streams only the source holds what a rule reads
    if (streams && isGroupSource(rule.from)) return await this.dryRunOwnSource(rule, reeval)
    if (streams && rule.from.platform !== this.deps.localName) {
      throw new ConflictError(`with rule streams only a rule's source holds the records it reads: run the dry run on its source, ${rule.from.platform ?? '?'} (syncmesh rule add … --dry-run there): it counts what the rule would send each target`, 'DRY_RUN_UNAVAILABLE')
    }
    return await this.runDryRun(rule, reeval)
  }

  /**
   * Rule streams, a rule reading a group of sources: each source holds only
   * its own records, so a dry run on one of them counts what it would send
   * (as the group's dry run counts each source), and says where to run it
   * for the others; elsewhere 409 DRY_RUN_UNAVAILABLE names the sources.
   */
  private async dryRunOwnSource (rule: Rule, reeval: boolean): Promise<DryRunReport> {
    const sources = ruleSources(rule.from, this.deps.registry.platforms(), rule.to.platform ?? '')
    const others = sources.filter(p => p.peerId !== this.deps.self).map(p => p.name)
    if (others.length === sources.length) {
      throw new ConflictError(`with rule streams only a rule's source holds the records it reads: run the dry run on each of its source platforms${sources.length > 0 ? ` (${sources.map(p => p.name).join(', ')})` : ''} (syncmesh rule add … --dry-run there): each counts what it would send each target`, 'DRY_RUN_UNAVAILABLE')
    }
    const report = await this.runDryRun({ ...rule, from: { platform: this.deps.localName, collection: rule.from.collection } }, reeval, false)
    const note = `with rule streams each source of the group holds only its own records: these are ${this.deps.localName}'s${others.length > 0 ? `; run the dry run on ${others.join(', ')} for theirs` : ''}${modeOf(rule.mode).exact ? '; the mirror\'s deletes (records no source produces) are not counted' : ''}`
    report.rule = rule
    report.source.note = report.source.note === undefined ? note : `${note}; ${report.source.note}`
    return report
  }

  private async runDryRun (rule: Rule, reeval: boolean, mirrorDeletes?: boolean): Promise<DryRunReport> {
    const streams = this.deps.ruleSet.streams
    return await dryRun({
      streams,
      store: this.deps.store,
      log: this.deps.changelog,
      registry: this.deps.registry,
      modules: this.modules,
      localName: this.deps.localName,
      self: this.deps.self,
      sourceLag: this.deps.sourceLag
    }, rule, { reeval, ...(mirrorDeletes !== undefined ? { mirrorDeletes } : {}) })
  }

  private async newest<T> (prefix: string, limit: number): Promise<T[]> {
    const out: T[] = []
    for await (const value of this.deps.store.db.values({ ...prefixRange(prefix), reverse: true, limit })) out.push(decodeJson<T>(value))
    return out
  }

  private knownRule (id: string): void {
    if (this.deps.registry.rule(id) === undefined && this.deps.ingestor.applied(id) === 0 && this.deps.ingestor.counter(id, 'conflicts') === 0) {
      throw new NotFoundError(`no rule with id "${id}"; list them with "syncmesh rule ls" or GET /v1/rules`)
    }
  }

  async conflicts (id: string, limit = 50): Promise<{ total: number, conflicts: ConflictRecord[] }> {
    this.knownRule(id)
    return { total: this.deps.ingestor.counter(id, 'conflicts'), conflicts: await this.newest<ConflictRecord>(keys.conflictPrefix(id), limit) }
  }

  async transformErrors (id: string, limit = 20): Promise<{ total: number, errors: TransformErrorRecord[] }> {
    this.knownRule(id)
    return { total: this.deps.ingestor.counter(id, 'transformErrors'), errors: await this.newest<TransformErrorRecord>(keys.transformErrorPrefix(id), limit) }
  }

  /** The rule-engine fields of a rule's status on this node. */
  async ruleStatus (r: Rule, local: boolean): Promise<Pick<RuleStatus, 'target' | 'targets' | 'conflicts' | 'lastConflict' | 'transformErrors' | 'lastTransformError' | 'backfillPhase' | 'webhook' | 'paused' | 'catchingUp' | 'problem' | 'sources' | 'waitingForKey' | 'unreadable'> & Partial<Pick<RuleStatus, 'pending' | 'backfilled'>>> {
    const out: Awaited<ReturnType<RuleService['ruleStatus']>> = {
      target: formatTarget(r.to),
      targets: ruleTargets(r, this.deps.registry).map(p => p.name),
      conflicts: this.deps.ingestor.counter(r.id, 'conflicts'),
      transformErrors: this.deps.ingestor.counter(r.id, 'transformErrors'),
      paused: r.paused === true
    }
    // seen by every node, target or not: a rule naming a platform the registry does not have (any more)
    const unknown = unknownPlatforms(r, (name) => this.deps.registry.platform(name) !== undefined)
    if (unknown.length > 0) out.problem = `${describeUnknown(unknown)}: the rule does nothing until a platform of that name joins; check the name with "syncmesh platform ls", or remove the rule`
    if (out.conflicts > 0) {
      const [last] = await this.newest<ConflictRecord>(keys.conflictPrefix(r.id), 1)
      if (last !== undefined) out.lastConflict = last
    }
    if (out.transformErrors > 0) {
      const [last] = await this.newest<TransformErrorRecord>(keys.transformErrorPrefix(r.id), 1)
      if (last !== undefined) out.lastTransformError = last
    }
    if (local && isGroupSource(r.from)) await this.groupStatus(r, out)
    else if (local) {
      // passed over entries of its stream for want of a key: not backfilled until it has read the stream
      // again (asked before its state is read: the state of the pass that passed them over goes once it
      // stops waiting)
      const awaiting = this.deps.ingestor.awaitingKey.has(r.id)
      const state = await this.deps.ingestor.backfillState(r.id)
      out.backfilled = !awaiting && state?.done === true
      if (state !== undefined && !state.done) out.backfillPhase = state.phase ?? 'source'
      if (state?.catchUp === true && !state.done) out.catchingUp = true
    }
    const unreadable = this.deps.ingestor.counter(r.id, 'unreadable')
    if (unreadable > 0) out.unreadable = unreadable
    if (local) {
      const waiting = await this.waitingForKey(r)
      if (waiting.length > 0) {
        out.waitingForKey = waiting
        out.backfilled = false
      }
    }
    if (local) {
      const hook = this.webhooks.status(r.id)
      if (hook !== undefined) out.webhook = hook
    }
    return out
  }

  /** Rule streams: the source platforms of rule `r` whose stream key this node does not hold (none without rule streams). */
  private async waitingForKey (r: Rule): Promise<string[]> {
    const streamKeys = this.deps.ingestor.streamKeys
    if (streamKeys === undefined) return []
    const out: string[] = []
    for (const c of this.deps.ruleSet.forRule(r.id)) {
      if (c.stream === undefined || peerOf(c.sourcePeer) === this.deps.self) continue
      if ((await streamKeys.keysOf(c.sourcePeer)).length === 0) out.push(c.sourcePlatform ?? peerOf(c.sourcePeer))
    }
    return out
  }

  /**
   * A group-source rule on a target node: per platform feeding it, its
   * pending entries and whether its backfill is done; the rule's pending
   * entries are their sum, it is backfilled when every source is (and a
   * mirror's sweep after a source left is done).
   */
  private async groupStatus (r: Rule, out: Awaited<ReturnType<RuleService['ruleStatus']>>): Promise<void> {
    const sources = ruleSources(r.from, this.deps.registry.platforms(), this.deps.localName)
    out.sources = []
    let phase: 'source' | 'sweep' | undefined
    for (const p of sources) {
      // as for one source (ruleStatus): whether it waits to read its stream again, then its state
      const awaiting = this.deps.ingestor.awaitingKey.has(stateIdOf(r, p.name))
      const state = await this.deps.ingestor.backfillState(stateIdOf(r, p.name))
      const done = state?.done === true && !awaiting
      if (state !== undefined && !done) phase ??= state.phase ?? 'source'
      if (state?.catchUp === true && !done) out.catchingUp = true
      out.sources.push({ platform: p.name, pending: r.paused === true ? 0 : this.deps.sourceLag(p.peerId) ?? 0, backfilled: done })
    }
    const sweep = await this.deps.ingestor.backfillState(r.id)
    if (sweep !== undefined && !sweep.done) phase = 'sweep'
    if (phase !== undefined) out.backfillPhase = phase
    out.pending = out.sources.reduce((n, s) => n + s.pending, 0)
    out.backfilled = out.sources.every(s => s.backfilled) && (sweep === undefined || sweep.done)
  }

  /** The changes feed (see src/store/changes.ts); the options are checked before the first line. */
  changes (options: ChangesOptions = {}): AsyncGenerator<FeedLine> {
    const collection = checkFeedCollection(options.collection)
    const cursor = parseCursor(options.since, () => this.deps.ingestor.lastCursor())
    if (options.limit !== undefined && (!Number.isInteger(options.limit) || options.limit < 1)) {
      throw new InvalidInputError('limit must be a positive integer', 'INVALID_LIMIT')
    }
    return this.feedLines(collection, cursor, options)
  }

  private async * feedLines (collection: string | undefined, start: number, options: ChangesOptions): AsyncGenerator<FeedLine> {
    let cursor = start
    let remaining = options.limit ?? Infinity
    const heartbeat = options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS
    const aborted = (): boolean => options.signal?.aborted === true
    let read = true
    while (remaining > 0 && !aborted() && this.deps.isRunning()) {
      if (read) {
        const end = this.feed.last
        const chunk = await readFeed(this.deps.store, cursor, collection, Math.min(FEED_CHUNK, remaining))
        for (const line of chunk.lines) {
          yield line
          remaining--
        }
        cursor = chunk.last
        if (chunk.read > 0) continue
        // every commit notified before this read was durable, so the read saw it: this follower is
        // past it (the newest changes may be in other collections than the one followed)
        if (end > cursor) cursor = end
      }
      // nothing new: done, or wait for the next commit (unless one came while this was reading)
      if (options.follow !== true || !this.deps.isRunning()) return
      if (this.feed.last > cursor) {
        read = true
        continue
      }
      const woke = await this.feed.wait(heartbeat, options.signal)
      if (woke === false) {
        if (!aborted()) yield { type: 'heartbeat', cursor: String(Math.max(cursor, 0)) }
        read = true
        continue
      }
      // the commit right after what this follower has read: its lines come from memory
      const commit = woke !== true && woke.from === cursor ? woke : undefined
      const lines = commit !== undefined ? commitLines(commit, collection) : undefined
      read = commit === undefined || lines === undefined
      if (commit === undefined || lines === undefined) continue
      for (const line of lines) {
        if (remaining <= 0) break
        yield line
        remaining--
        cursor = Number(line.cursor)
      }
      if (remaining > 0) cursor = commit.to
      else read = true
    }
  }
}
