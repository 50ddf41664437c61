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
import { formatTarget } from '../registry/registry.js'
import type { Registry } from '../registry/registry.js'
import { compileRule } from '../rules/engine.js'
import type { CompiledRule } from '../rules/engine.js'
import { dryRun } from '../rules/dryrun.js'
import { ModuleCache } from '../rules/modules.js'
import type { RuleSet } from '../rules/ruleset.js'
import { ruleTargets, targetsPlatform } from '../rules/targets.js'
import { Webhooks } from '../rules/webhooks.js'
import type { WebhookSettings } from '../rules/webhooks.js'
import type { Store } from '../store/db.js'
import { decodeJson } from '../store/db.js'
import { keys, prefixRange } from '../store/keys.js'
import { checkFeedCollection, commitLines, DEFAULT_HEARTBEAT_MS, FEED_CHUNK, FeedSignal, parseCursor, readFeed } from '../store/changes.js'
import type { IngestResult, Ingestor } from './ingest.js'
import type {
  ChangesOptions, ConflictRecord, DryRunReport, FeedLine, Rule, RuleStatus, TransformErrorRecord
} from '../core/types.js'

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
}

export class RuleService {
  readonly modules: ModuleCache
  readonly feed = new FeedSignal()
  private readonly deps: RuleServiceDeps
  private readonly webhooks: Webhooks
  private readonly backfills = new Map<string, Promise<void>>()
  private readonly publishes = new Map<string, Promise<void>>()
  /** Forgetting a collection's publish progress, after its running publish stopped. */
  private readonly unpublishing = new Map<string, Promise<void>>()
  private published = new Set<string>()
  private refreshing: Promise<void> = Promise.resolve()
  private readonly logBudget = new Map<string, { windowStart: number, used: number, dropped: number }>()
  private started = false

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
    return changed
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
    for (const rule of this.deps.ruleSet.all()) this.scheduleBackfill(rule)
    for (const c of this.published) this.schedulePublish(c)
    this.webhooks.sync(this.deps.ruleSet.all())
  }

  async stop (): Promise<void> {
    this.started = false
    this.feed.notify() // followers of the feed see the node stopping
    await this.webhooks.stop()
    await Promise.allSettled([...this.backfills.values(), ...this.publishes.values(), ...this.unpublishing.values(), this.refreshing])
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
    this.webhooks.sync(this.deps.ruleSet.all())
    for (const rule of changed) this.scheduleBackfill(rule)
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
    const id = rule.rule.id
    const running = this.backfills.get(id)
    if (running !== undefined) {
      // the running one stops when it sees the rule changed; run again after it
      running.finally(() => { if (this.deps.isRunning() && this.deps.ruleSet.get(id) === rule) this.scheduleBackfill(rule) }).catch(() => {})
      return
    }
    const run = this.deps.ingestor.backfill(rule, (r) => this.deps.afterIngest(r), () => this.deps.isRunning() && this.deps.ruleSet.get(id) === rule)
      .then(async () => {
        if (await this.deps.ingestor.backfillDone(id)) {
          this.deps.log.info({ rule: id, applied: this.deps.ingestor.applied(id) }, `rule ${id} backfill finished`)
          this.deps.events.dispatchEvent(new CustomEvent('backfill', { detail: { ruleId: id } }))
        }
      })
      .catch((err: Error) => { this.deps.log.error({ rule: id, err: err.message }, `rule ${id} backfill failed; it resumes at the next start`) })
      .finally(() => { this.backfills.delete(id) })
    this.backfills.set(id, run)
  }

  private schedulePublish (collection: string): void {
    if (this.publishes.has(collection) || !this.started) return
    const run = (this.unpublishing.get(collection) ?? Promise.resolve())
      .then(async () => await this.deps.ingestor.publish(collection, (r) => this.deps.afterIngest(r), () => this.deps.isRunning() && this.published.has(collection)))
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
    throw new ConflictError(`collection "${collection}" on this node is a mirror of ${r.from.platform}:${r.from.collection} (rule ${r.id}) and only changes through that rule; write to ${r.from.platform}:${r.from.collection} instead, or make the target writable with "syncmesh rule update ${r.id} --mode merge"`, 'MIRROR_TARGET_READ_ONLY')
  }

  /** Whether this node is a target of the rule, by the registry (active or not). */
  isLocal (rule: Rule): boolean {
    const me = this.deps.registry.platform(this.deps.localName) ?? { name: this.deps.localName, ...(this.deps.region !== undefined ? { region: this.deps.region } : {}) }
    return targetsPlatform(rule.to, rule.from.platform, me)
  }

  /** Validate a new or changed rule as far as this node can (filter, transforms, key, targets field). */
  validate (rule: Rule): void {
    compileRule(rule, this.deps.self)
  }

  async dryRun (rule: Rule, reeval: boolean): Promise<DryRunReport> {
    this.validate(rule)
    return await dryRun({
      store: this.deps.store,
      log: this.deps.changelog,
      registry: this.deps.registry,
      modules: this.modules,
      localName: this.deps.localName,
      self: this.deps.self,
      sourceLag: this.deps.sourceLag
    }, rule, { reeval })
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
  async ruleStatus (r: Rule, local: boolean): Promise<Pick<RuleStatus, 'target' | 'targets' | 'conflicts' | 'lastConflict' | 'transformErrors' | 'lastTransformError' | 'backfillPhase' | 'webhook'>> {
    const out: Awaited<ReturnType<RuleService['ruleStatus']>> = {
      target: formatTarget(r.to),
      targets: ruleTargets(r, this.deps.registry).map(p => p.name),
      conflicts: this.deps.ingestor.counter(r.id, 'conflicts'),
      transformErrors: this.deps.ingestor.counter(r.id, 'transformErrors')
    }
    if (out.conflicts > 0) {
      const [last] = await this.newest<ConflictRecord>(keys.conflictPrefix(r.id), 1)
      if (last !== undefined) out.lastConflict = last
    }
    if (out.transformErrors > 0) {
      const [last] = await this.newest<TransformErrorRecord>(keys.transformErrorPrefix(r.id), 1)
      if (last !== undefined) out.lastTransformError = last
    }
    if (local) {
      const state = await this.deps.ingestor.backfillState(r.id)
      if (state !== undefined && !state.done) out.backfillPhase = state.phase ?? 'source'
      const hook = this.webhooks.status(r.id)
      if (hook !== undefined) out.webhook = hook
    }
    return out
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
