/**
 * The single write path of a node. Every change, local or received, goes
 * through `ingest`: in ONE LevelDB batch it stores the log entries (with
 * compaction), advances the version vector and the clock, and applies what
 * the entries mean on this node (its own records, the registry, the rules
 * that target it). Either all of it is durable or none of it is.
 */
import type { ChangeLog } from '../log/changelog.js'
import type { LogEntry } from '../log/entry.js'
import { RUN_MAX_BYTES, RUN_MAX_ENTRIES } from '../log/signing.js'
import type { Cert, RunSigner } from '../log/signing.js'
import { HybridClock, formatHlc, parseHlc } from '../log/hlc.js'
import type { ChangeEvent, JsonObject } from './types.js'
import { decodeJson, encodeJson, utf8 } from '../store/db.js'
import type { Store, Txn } from '../store/db.js'
import { keys, keySuffix, prefixRange } from '../store/keys.js'
import { isRegistryCollection } from '../store/names.js'
import { compareVersion, decodeRecord, encodeRecord, publicVersion } from '../store/records.js'
import { applyPlan, entryVersion, parseEntryValue, planEntry, planKeys } from '../rules/engine.js'
import type { CompiledRule, Plan } from '../rules/engine.js'
import type { RuleSet } from '../rules/ruleset.js'

export interface IngestResult {
  /** Entries that were new to this node. */
  stored: number
  /** The log that advanced, and how far: undefined when nothing new was stored. */
  advanced?: { origin: string, seq: number }
  changes: ChangeEvent[]
  /** Registry records that changed: the caller refreshes the registry view. */
  registry: Array<{ collection: string, id: string, value: JsonObject | undefined }>
  /** Rules that skipped an entry for a reason worth reporting. */
  skipped: Array<{ ruleId: string, id: string, reason: string }>
}

export interface LocalOp {
  collection: string
  id: string
  op: 'put' | 'del'
  value?: JsonObject
}

interface BackfillState {
  source: string
  fingerprint: string
  after?: string
  done: boolean
}

const HLC_KEY = keys.meta('hlc')
const BACKFILL_CHUNK = 500

export class Ingestor {
  readonly clock: HybridClock
  private readonly store: Store
  private readonly log: ChangeLog
  private readonly rules: RuleSet
  private readonly self: string
  private readonly appliedCounts = new Map<string, number>()

  private readonly signer?: RunSigner

  constructor (components: { store: Store, log: ChangeLog, rules: RuleSet, self: string, signer?: RunSigner }) {
    this.signer = components.signer
    this.store = components.store
    this.log = components.log
    this.rules = components.rules
    this.self = components.self
    this.clock = new HybridClock()
  }

  async load (): Promise<void> {
    const saved = await this.store.db.get(HLC_KEY)
    if (saved !== undefined) {
      const h = parseHlc(utf8.decode(saved))
      if (h !== undefined) this.clock.observe(h)
    }
    const prefix = `a\x00`
    for await (const [key, value] of this.store.db.iterator(prefixRange(prefix))) {
      this.appliedCounts.set(keySuffix(key, prefix), Number(utf8.decode(value)))
    }
  }

  applied (ruleId: string): number {
    return this.appliedCounts.get(ruleId) ?? 0
  }

  /**
   * Store a contiguous run (fromSeq, toSeq] of `origin`'s log. Entries at or
   * below the held seq are ignored (duplicates are harmless). Returns
   * undefined when the run starts beyond what is held (a gap): nothing is
   * stored and the sender must be told the real vector.
   */
  async ingest (origin: string, fromSeq: number, toSeq: number, entries: LogEntry[], certs: Cert[] = []): Promise<IngestResult | undefined> {
    return await this.store.exclusive(async () => {
      const held = this.log.vector.get(origin)
      if (fromSeq > held) return undefined
      const result: IngestResult = { stored: 0, changes: [], registry: [], skipped: [] }
      if (toSeq <= held) return result
      const fresh = entries.filter(e => e.seq > held)
      const txn = this.store.txn()
      await this.log.append(txn, origin, fresh, toSeq, certs)
      await this.applyEntries(txn, fresh, result)
      txn.put(HLC_KEY, utf8.encode(formatHlc(this.clock.current())))
      await txn.commit()
      this.log.committed(origin, toSeq)
      this.commitCounts(result)
      result.stored = fresh.length
      result.advanced = { origin, seq: toSeq }
      return result
    })
  }

  /** Append local writes to this node's own log, atomically, and apply them. */
  async writeLocal (ops: LocalOp[]): Promise<{ entries: LogEntry[], result: IngestResult }> {
    return await this.store.exclusive(async () => {
      const from = this.log.vector.get(this.self)
      const entries: LogEntry[] = ops.map((op, i) => {
        const e: LogEntry = { origin: this.self, seq: from + i + 1, hlc: this.clock.tick(), collection: op.collection, id: op.id, op: op.op }
        if (op.op === 'put') e.value = encodeJson(op.value)
        return e
      })
      const to = from + entries.length
      const result: IngestResult = { stored: entries.length, advanced: { origin: this.self, seq: to }, changes: [], registry: [], skipped: [] }
      const txn = this.store.txn()
      await this.log.append(txn, this.self, entries, to, this.signRuns(from, entries))
      await this.applyEntries(txn, entries, result)
      txn.put(HLC_KEY, utf8.encode(formatHlc(this.clock.current())))
      await txn.commit()
      this.log.committed(this.self, to)
      this.commitCounts(result)
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

  private pendingCounts = new Map<string, number>()

  private commitCounts (_result: IngestResult): void {
    for (const [rule, n] of this.pendingCounts) this.appliedCounts.set(rule, n)
    this.pendingCounts.clear()
  }

  private countApplied (txn: Txn, ruleId: string): void {
    const n = (this.pendingCounts.get(ruleId) ?? this.applied(ruleId)) + 1
    this.pendingCounts.set(ruleId, n)
    txn.put(keys.applied(ruleId), utf8.encode(String(n)))
  }

  /** What the entries mean on this node: own records, registry, rules. */
  private async applyEntries (txn: Txn, entries: LogEntry[], result: IngestResult): Promise<void> {
    this.pendingCounts.clear()
    const work: Array<{ entry: LogEntry, rule?: CompiledRule, plan?: Plan, value?: JsonObject }> = []
    const prefetch: string[] = []
    for (const entry of entries) {
      if (entry.origin !== this.self) this.clock.observe(entry.hlc)
      const direct = entry.origin === this.self || isRegistryCollection(entry.collection)
      const rules = this.rules.forEntry(entry.origin, entry.collection)
      if (!direct && rules === undefined) continue
      const value = parseEntryValue(entry)
      if (direct) {
        work.push({ entry, value })
        prefetch.push(keys.record(entry.collection, entry.id))
      }
      for (const rule of rules ?? []) {
        const plan = planEntry(rule, entry, value)
        if (plan.kind === 'skip') {
          if (plan.reason !== undefined) result.skipped.push({ ruleId: rule.rule.id, id: entry.id, reason: plan.reason })
          continue
        }
        work.push({ entry, rule, plan })
        prefetch.push(...planKeys(rule, entry, plan))
      }
    }
    await txn.prefetch(prefetch)
    for (const w of work) {
      if (w.rule !== undefined && w.plan !== undefined) {
        const change = await applyPlan(txn, w.rule, w.entry, w.plan)
        if (change !== undefined) {
          result.changes.push(change)
          this.countApplied(txn, w.rule.rule.id)
        }
      } else {
        await this.applyDirect(txn, w.entry, w.value, result)
      }
    }
  }

  /** An entry written to this node's own collection, or a registry record from anyone: last writer wins. */
  private async applyDirect (txn: Txn, entry: LogEntry, value: JsonObject | undefined, result: IngestResult): Promise<void> {
    if (entry.op === 'put' && value === undefined) return
    const key = keys.record(entry.collection, entry.id)
    const version = entryVersion(entry)
    const existing = await txn.get(key)
    if (existing !== undefined && compareVersion(decodeRecord(existing).version, version) >= 0) return
    if (existing === undefined && entry.op === 'del' && !isRegistryCollection(entry.collection)) return
    txn.put(key, encodeRecord(entry.op === 'put' ? { value, version } : { version }))
    if (isRegistryCollection(entry.collection)) {
      result.registry.push({ collection: entry.collection, id: entry.id, value: entry.op === 'put' ? value : undefined })
    } else {
      const change: ChangeEvent = { collection: entry.collection, id: entry.id, op: entry.op, version: publicVersion(version) }
      if (value !== undefined) change.value = value
      result.changes.push(change)
    }
  }

  /**
   * Apply a rule to the source data already held, in chunks, resumably: the
   * progress is stored with each chunk, so a restart continues where it
   * stopped. Restarts from the beginning when the rule or its source changed.
   */
  async backfill (rule: CompiledRule, onChunk: (result: IngestResult) => void, isCurrent: () => boolean): Promise<void> {
    const fingerprint = JSON.stringify(rule.rule)
    const stateKey = keys.backfill(rule.rule.id)
    const saved = await this.store.db.get(stateKey)
    let state: BackfillState | undefined = saved !== undefined ? decodeJson<BackfillState>(saved) : undefined
    if (state === undefined || state.source !== rule.sourcePeer || state.fingerprint !== fingerprint) {
      state = { source: rule.sourcePeer, fingerprint, done: false }
    }
    while (!state.done && isCurrent()) {
      const current: BackfillState = state
      const result = await this.store.exclusive(async () => {
        const entries = await this.log.readCollection(rule.sourcePeer, rule.rule.from.collection, current.after, BACKFILL_CHUNK)
        const result: IngestResult = { stored: 0, changes: [], registry: [], skipped: [] }
        const txn = this.store.txn()
        this.pendingCounts.clear()
        const planned: Array<{ entry: LogEntry, plan: Plan }> = []
        for (const entry of entries) {
          const plan = planEntry(rule, entry, parseEntryValue(entry))
          if (plan.kind === 'skip') {
            if (plan.reason !== undefined) result.skipped.push({ ruleId: rule.rule.id, id: entry.id, reason: plan.reason })
            continue
          }
          planned.push({ entry, plan })
        }
        await txn.prefetch(planned.flatMap(p => planKeys(rule, p.entry, p.plan)))
        for (const p of planned) {
          const change = await applyPlan(txn, rule, p.entry, p.plan)
          if (change !== undefined) {
            result.changes.push(change)
            this.countApplied(txn, rule.rule.id)
          }
        }
        const next: BackfillState = { ...current, done: entries.length < BACKFILL_CHUNK }
        if (entries.length > 0) next.after = entries[entries.length - 1].id
        txn.put(stateKey, encodeJson(next))
        await txn.commit()
        this.commitCounts(result)
        state = next
        return result
      })
      onChunk(result)
    }
  }

  async backfillDone (ruleId: string): Promise<boolean> {
    const saved = await this.store.db.get(keys.backfill(ruleId))
    return saved !== undefined && decodeJson<BackfillState>(saved).done
  }
}
