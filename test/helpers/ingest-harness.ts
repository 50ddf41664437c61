/**
 * One node's write path without the network: a real LevelDB Store in a temp
 * dir, ChangeLog, Registry, RuleSet and Ingestor, wired the way SyncNode wires
 * them (registry changes rebuild the rules; changed rules are returned so the
 * test decides when to backfill). Plus helpers to build other origins' logs.
 */
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { ChangeLog } from '../../src/log/changelog.js'
import { Attester, RunSigner } from '../../src/log/signing.js'
import { decodeEntry } from '../../src/log/entry.js'
import type { LogEntry } from '../../src/log/entry.js'
import type { Hlc } from '../../src/core/hlc.js'
import { Ingestor } from '../../src/node/ingest.js'
import type { IngestResult, LocalOp } from '../../src/node/ingest.js'
import type { JsonObject, Platform, Rule } from '../../src/core/types.js'
import { Registry } from '../../src/registry/registry.js'
import type { CompiledRule } from '../../src/rules/engine.js'
import { ModuleCache } from '../../src/rules/modules.js'
import { RuleSet } from '../../src/rules/ruleset.js'
import { encodeJson, Store } from '../../src/store/db.js'
import { keys, prefixRange } from '../../src/store/keys.js'
import { PLATFORMS_COLLECTION, RULES_COLLECTION } from '../../src/store/names.js'
import { decodeRecord } from '../../src/store/records.js'
import type { RecordState } from '../../src/store/records.js'
import { removeDir, tempDir } from './nodes.js'

export async function newPeerId (): Promise<string> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
}

/** Builds one origin's log: consecutive seqs, explicit clocks. */
export class OriginLog {
  readonly origin: string
  seq = 0
  /** Wall clock of the next entry when none is given; advanced by each entry. */
  wall: number

  constructor (origin: string, wall = Date.now() - 60_000) {
    this.origin = origin
    this.wall = wall
  }

  private next (hlc?: Hlc): { seq: number, hlc: Hlc } {
    this.seq++
    const h = hlc ?? { wall: this.wall++, logical: 0 }
    if (h.wall >= this.wall) this.wall = h.wall + 1
    return { seq: this.seq, hlc: h }
  }

  put (collection: string, id: string, value: JsonObject, hlc?: Hlc): LogEntry {
    return { origin: this.origin, ...this.next(hlc), collection, id, op: 'put', value: encodeJson(value) }
  }

  del (collection: string, id: string, hlc?: Hlc): LogEntry {
    return { origin: this.origin, ...this.next(hlc), collection, id, op: 'del' }
  }
}

export interface RuleInput {
  id: string
  from: { platform: string, collection: string }
  to: { platform?: string, region?: string, tag?: string, collection: string }
  mode?: 'merge' | 'mirror' | 'insert-only'
  where?: JsonObject
  include?: string[]
  exclude?: string[]
  rename?: Record<string, string>
  key?: string
  transform?: string
  targetsField?: string
  createdAt?: string
  updatedAt?: string
}

export function platformValue (name: string, peerId: string, extra: { region?: string, tags?: string[] } = {}): JsonObject {
  const p: Platform = { name, peerId, addrs: [], ...extra }
  return p as unknown as JsonObject
}

export function ruleValue (input: RuleInput): JsonObject {
  const rule: Rule = { createdAt: '2024-01-01T00:00:00.000Z', mode: 'merge', ...input }
  return JSON.parse(JSON.stringify(rule)) as JsonObject
}

export class Harness {
  readonly dir: string
  readonly localName: string
  readonly self: string
  store!: Store
  log!: ChangeLog
  registry!: Registry
  rules!: RuleSet
  ingestor!: Ingestor
  /** Transform modules: DIR/transforms of this harness. */
  modules!: ModuleCache

  private constructor (dir: string, localName: string, self: string) {
    this.dir = dir
    this.localName = localName
    this.self = self
  }

  /** The node identity's key, when the harness signs its own log (createSigning). */
  key?: PrivateKey

  static async create (localName = 'tgt', self?: string): Promise<Harness> {
    const h = new Harness(await tempDir('syncmesh-unit-'), localName, self ?? await newPeerId())
    await h.open()
    return h
  }

  /** A harness whose own log is signed as a node's is: run certificates and version 2 attestations. */
  static async createSigning (localName = 'tgt', identity?: PrivateKey): Promise<Harness> {
    const key = identity ?? await generateKeyPair('Ed25519')
    const h = new Harness(await tempDir('syncmesh-unit-'), localName, peerIdFromPrivateKey(key).toString())
    h.key = key
    await h.open()
    return h
  }

  /** Open (or reopen) everything from what is on disk, as a node start does. */
  async open (): Promise<void> {
    this.store = new Store(join(this.dir, 'db'))
    await this.store.open()
    this.log = new ChangeLog(this.store)
    await this.log.load()
    this.registry = new Registry()
    await this.registry.load(this.store, this.log)
    this.rules = new RuleSet()
    this.modules = new ModuleCache(join(this.dir, 'transforms'))
    this.rebuildRules()
    await this.modules.refresh(this.rules.modules())
    this.rebuildRules()
    if (this.key !== undefined) this.log.attestOwnLog(this.self, new Attester(this.key, this.self))
    this.ingestor = new Ingestor({ store: this.store, log: this.log, rules: this.rules, self: this.self, signer: this.key === undefined ? undefined : new RunSigner(this.key, this.self) })
    this.ingestor.platformOf = (peer) => this.registry.platformByPeer(peer)?.name
    await this.ingestor.load()
  }

  get transformsDir (): string {
    return join(this.dir, 'transforms')
  }

  private rebuildRules (): CompiledRule[] {
    return this.rules.rebuild(this.registry, this.localName, { modules: this.modules })
  }

  /** Re-read the transform modules (as a node does when the registry changes); returns the rules that changed. */
  async reloadModules (): Promise<CompiledRule[]> {
    await this.modules.refresh(this.rules.modules())
    return this.rebuildRules()
  }

  async reopen (): Promise<void> {
    await this.store.close()
    await this.open()
  }

  async destroy (): Promise<void> {
    await this.store.close().catch(() => {})
    await removeDir(this.dir)
  }

  /** What SyncNode.afterIngest does with registry changes (modules loaded too); returns the rules that are new or changed. */
  private async afterIngest (result: IngestResult | undefined): Promise<CompiledRule[]> {
    if (result === undefined || result.registry.length === 0) return []
    for (const r of result.registry) this.registry.apply(r.collection, r.id, r.value, r.from)
    const changed = this.rebuildRules()
    const more = await this.reloadModules()
    return [...changed.filter(c => this.rules.get(c.rule.id) === c), ...more]
  }

  lastChanged: CompiledRule[] = []

  async ingest (origin: string, fromSeq: number, toSeq: number, entries: LogEntry[]): Promise<IngestResult | undefined> {
    const result = await this.ingestor.ingest(origin, fromSeq, toSeq, entries)
    this.lastChanged = await this.afterIngest(result)
    return result
  }

  /** Ingest the whole of `entries` as the run (held, last seq]. */
  async ingestRun (origin: string, entries: LogEntry[]): Promise<IngestResult | undefined> {
    const from = this.log.vector.get(origin)
    const to = Math.max(from, ...entries.map(e => e.seq))
    return await this.ingest(origin, from, to, entries)
  }

  async writeLocal (ops: LocalOp[]): Promise<{ entries: LogEntry[], result: IngestResult }> {
    const out = await this.ingestor.writeLocal(ops)
    this.lastChanged = await this.afterIngest(out.result)
    return out
  }

  /** Log the rule-written records of a collection that became a rule's source (as the node does). */
  async publishAll (collection: string): Promise<IngestResult[]> {
    const chunks: IngestResult[] = []
    await this.ingestor.publish(collection, r => { chunks.push(r) }, () => true)
    return chunks
  }

  /** This node's own log entries after `afterSeq`, decoded. */
  async ownEntries (afterSeq = 0): Promise<LogEntry[]> {
    const run = await this.log.readRun(this.self, afterSeq, 100_000, 1 << 30)
    return (run?.entries ?? []).map(b => decodeEntry(this.self, b))
  }

  async backfillAll (rule: CompiledRule, isCurrent: () => boolean = () => true): Promise<IngestResult[]> {
    const chunks: IngestResult[] = []
    await this.ingestor.backfill(rule, r => { chunks.push(r) }, isCurrent)
    return chunks
  }

  async raw (key: string): Promise<Uint8Array | undefined> {
    return await this.store.db.get(key)
  }

  async record (collection: string, id: string): Promise<RecordState | undefined> {
    const bytes = await this.store.db.get(keys.record(collection, id))
    return bytes === undefined ? undefined : decodeRecord(bytes)
  }

  /** The live value of a record, undefined when missing or deleted. */
  async value (collection: string, id: string): Promise<JsonObject | undefined> {
    return (await this.record(collection, id))?.value
  }

  /** Live records of a collection, id → value. */
  async live (collection: string): Promise<Record<string, JsonObject>> {
    const prefix = keys.recordPrefix(collection)
    const out: Record<string, JsonObject> = {}
    for await (const [key, value] of this.store.db.iterator(prefixRange(prefix))) {
      const state = decodeRecord(value)
      if (state.value !== undefined) out[key.slice(prefix.length)] = state.value
    }
    return out
  }

  /** Every key and value in the database, hex-encoded, for before/after comparisons. */
  async dump (): Promise<Map<string, string>> {
    const out = new Map<string, string>()
    for await (const [key, value] of this.store.db.iterator()) out.set(key, Buffer.from(value).toString('hex'))
    return out
  }

  async keysWithPrefix (prefix: string): Promise<string[]> {
    const out: string[] = []
    for await (const key of this.store.db.keys(prefixRange(prefix))) out.push(key)
    return out
  }
}

/**
 * A mesh setup seen from the target node "tgt": a source platform "src"
 * (origin `src`), an admin origin that writes the registry, and helpers to add
 * rules. Rules target "tgt" unless told otherwise.
 */
export class Scenario {
  readonly h: Harness
  readonly src: OriginLog
  readonly admin: OriginLog

  private constructor (h: Harness, src: OriginLog, admin: OriginLog) {
    this.h = h
    this.src = src
    this.admin = admin
  }

  static async create (options: { srcWall?: number } = {}): Promise<Scenario> {
    const h = await Harness.create('tgt')
    const s = new Scenario(h, new OriginLog(await newPeerId(), options.srcWall), new OriginLog(await newPeerId(), Date.now() - 120_000))
    const result = await h.ingestRun(s.admin.origin, [
      s.admin.put(PLATFORMS_COLLECTION, 'src', platformValue('src', s.src.origin)),
      s.admin.put(PLATFORMS_COLLECTION, 'tgt', platformValue('tgt', h.self))
    ])
    if (result === undefined || result.registry.length !== 2) throw new Error('registry setup failed')
    return s
  }

  /** Add a rule through the registry; returns the compiled rule now active on the target. */
  async addRule (input: Omit<RuleInput, 'from' | 'to'> & { from?: RuleInput['from'], to?: RuleInput['to'] }): Promise<CompiledRule> {
    const rule: RuleInput = { from: { platform: 'src', collection: 'posts' }, to: { platform: 'tgt', collection: 'articles' }, ...input }
    await this.h.ingestRun(this.admin.origin, [this.admin.put(RULES_COLLECTION, rule.id, ruleValue(rule))])
    const compiled = this.h.rules.get(rule.id)
    if (compiled === undefined) throw new Error(`rule ${rule.id} is not active: ${JSON.stringify(this.h.rules.problems)}`)
    return compiled
  }

  async removeRule (id: string): Promise<void> {
    await this.h.ingestRun(this.admin.origin, [this.admin.del(RULES_COLLECTION, id)])
  }

  /** Ingest source entries as the next run of the source log. */
  async feed (...entries: LogEntry[]): Promise<IngestResult> {
    const result = await this.h.ingestRun(this.src.origin, entries)
    if (result === undefined) throw new Error('unexpected gap')
    return result
  }
}
