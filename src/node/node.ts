/**
 * A syncmesh node: wires the store, the logs, the registry, the rule engine
 * and the network together, and exposes the records/peers/registry API.
 */
import '../polyfill.js'
import { randomBytes } from 'node:crypto'
import { getEventListeners } from 'node:events'
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { Connection, PeerId } from '@libp2p/interface'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { pino } from 'pino'
import type { Logger } from 'pino'
import { ConfigError, InvalidInputError, NotFoundError, NotRunningError } from '../core/errors.js'
import { ChangeLog } from '../log/changelog.js'
import { Attester, RunSigner } from '../log/signing.js'
import { isLogOf, isRuleStreamLog, logId, peerOf, streamOf } from '../log/log-id.js'
import { attestStoredOwnLog, lowerToAttested } from '../log/attest-upgrade.js'
import { MeshAuth } from '../network/auth/auth.js'
import { Door } from '../network/auth/door.js'
import { createHost } from '../network/libp2p.js'
import type { Host } from '../network/libp2p.js'
import { PeerManager } from '../network/peers.js'
import type { Candidate } from '../network/peers.js'
import { OFFENCE_BAN_MS, SYNC_PROTOCOL, SYNC_PROTOCOL_STREAMS } from '../network/constants.js'
import { SyncService } from '../network/sync/sync.js'
import { ruleStreamId } from '../rules/stream-plan.js'
import { StreamKeys } from './stream-keys.js'
import { AUTH_FAMILY, PeerVersions, PROTOCOL_FAMILIES, PROTOCOL_FAMILIES_STREAMS, SYNC_FAMILY, SYNC_FAMILY_STREAMS } from '../network/versions.js'
import type { ProtocolFamily, VersionMismatch } from '../network/versions.js'
import { applyRulePatch, formatSource, formatTarget, parseRuleSpec, Registry, validatePlatform } from '../registry/registry.js'
import { RuleSet } from '../rules/ruleset.js'
import { assertKnownPlatforms, ruleSources, ruleTargets, selects, targetsPlatform } from '../rules/targets.js'
import { Store, encodeJson, rows } from '../store/db.js'
import { upgradeFormat } from '../store/format.js'
import type { UpgradeResult } from '../store/format.js'
import { keys, keySuffix, rangeAfter } from '../store/keys.js'
import { checkCollection, checkId, KEYS_COLLECTION, PLATFORMS_COLLECTION, RULES_COLLECTION } from '../store/names.js'
import { decodeRecord, toStoredRecord } from '../store/records.js'
import { CONFIG_FILE, DB_DIR, initDataDir, loadConfig, loadIdentity, secureDataDir, validateMeshKey } from './config.js'
import type { NodeConfig } from './config.js'
import { Ingestor } from './ingest.js'
import { TrustPolicy } from './trust.js'
import { jsonTooDeep, MAX_JSON_DEPTH } from '../store/json-depth.js'
import { authKeys, describeKeys, keyInfo, loadMeshKeys } from './keyring.js'
import type { MeshKeys } from './keyring.js'
import type { IngestResult, LocalOp } from './ingest.js'
import { RuleService } from './rule-service.js'
import { NodeMetrics } from './metrics.js'
import { resolveSettings } from './settings.js'
import type { NodeSettings } from './settings.js'
import { packageVersion } from '../core/version.js'
import type {
  ChangeEvent, ChangesOptions, ConnectorInfo, DryRunReport, FeedLine, ImportLine, JsonObject, MeshKeyInfo, NodeStatus, OriginStatus, PeerInfo, PeersApi, Platform, RecordPage, RecordsApi,
  RegistryApi, Rule, RulePatch, RuleSpec, RuleStatus, StallInfo, StoredRecord, SyncNodeApi, SyncNodeOptions
} from '../core/types.js'
import { StallTracker, StuckDetector } from './stuck.js'
import type { Stall } from './stuck.js'
import type { Refusal } from '../network/sync/checks.js'
import { DEFAULT_RULE_MODE } from '../core/modes.js'

/** Largest record value accepted, serialized. */
export const MAX_VALUE_BYTES = 1024 * 1024
const IMPORT_BATCH = 1000
/** An origin that is behind and whose log has not advanced for this long is reported as stuck. */
const STUCK_AFTER_MS = 30_000
const STUCK_CHECK_MS = 5_000
/** Identify requests made to judge a peer's wire versions, and the pause between them. */
const IDENTIFY_ATTEMPTS = 3
const IDENTIFY_RETRY_MS = 500
/** Stall warnings logged per minute at most (the rest are counted, and all are in status). */
const STALL_LOGS_PER_MINUTE = 10
/** How often at most the peers are asked again for one origin (see askFor). */
const ASK_AGAIN_MS = 30_000
/** Origins reported stuck behind one peer per check, one line each; the rest in one line. */
const STUCK_WARNINGS_PER_PEER = 5
const DEFAULT_PAGE = 100
const MAX_PAGE = 1000

/** A put's value checked, with its JSON text (serialised once: the log entry stores it). */
function checkValue (value: unknown): { value: JsonObject, bytes: Uint8Array } {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidInputError('a record value must be a JSON object, e.g. {"title":"hello"}', 'INVALID_VALUE')
  }
  if (jsonTooDeep(value)) {
    throw new InvalidInputError(`the record value nests more than ${MAX_JSON_DEPTH} levels of objects and arrays; flatten it`, 'VALUE_TOO_DEEP')
  }
  const bytes = encodeJson(value)
  if (bytes.byteLength > MAX_VALUE_BYTES) {
    throw new InvalidInputError(`the record value is ${bytes.byteLength} bytes; the limit is ${MAX_VALUE_BYTES} bytes`, 'VALUE_TOO_LARGE')
  }
  return { value: value as JsonObject, bytes }
}

/** A bound on what GET /v1/collections lists (collection names are validated; a node rarely holds more than a few). */
const MAX_COLLECTIONS_LISTED = 10_000

export class SyncNode extends EventTarget implements SyncNodeApi {
  readonly records: RecordsApi
  readonly peers: PeersApi
  readonly registry: RegistryApi
  /** Counted where the events happen (./metrics.ts); served with the API's own at /metrics. */
  readonly metrics = new NodeMetrics(
    packageVersion(),
    (peer) => this.registryView?.platformByPeer(peer)?.name,
    (ruleId) => {
      const r = this.registryView?.rule(ruleId)
      return r === undefined ? undefined : { from: formatSource(r.from), to: formatTarget(r.to) }
    })

  private readonly options: SyncNodeOptions
  private readonly log: Logger
  private config!: NodeConfig
  /** Every tunable, resolved once from the options, config.json and the defaults (./settings.ts). */
  private settings!: NodeSettings
  private store!: Store
  private changelog!: ChangeLog
  private registryView!: Registry
  private ruleSet!: RuleSet
  private ingestor!: Ingestor
  private host!: Host
  private auth!: MeshAuth
  private door!: Door
  private sync!: SyncService
  private peerManager!: PeerManager
  private self = ''
  private running = false
  private startedAt = ''
  private trust!: TrustPolicy
  private ruleService!: RuleService
  /** Peers that speak another version of the wire protocols. */
  private versions!: PeerVersions
  /** The data format found at start and what it is now. */
  private format?: UpgradeResult

  constructor (options: SyncNodeOptions) {
    super()
    this.options = { ...options, key: validateMeshKey(options.key) }
    this.log = options.logger ?? pino({ level: 'silent' })
    this.records = {
      put: async (c, id, v) => await this.put(c, id, v),
      get: async (c, id) => await this.get(c, id),
      delete: async (c, id) => await this.del(c, id),
      list: async (c, o) => await this.list(c, o),
      import: async (c, lines, onProgress) => await this.importLines(c, lines, onProgress),
      collections: async () => await this.collections()
    }
    this.peers = {
      add: async (ma, options) => { this.assertRunning(); return await this.peerManager.add(ma, options) },
      list: async () => { this.assertRunning(); return this.peerList() },
      remove: async (peer) => { this.assertRunning(); return await this.peerManager.remove(peer) }
    }
    this.registry = {
      platforms: () => { this.assertRunning(); return this.registryView.platforms() },
      addPlatform: async (p) => await this.addPlatform(p),
      revokePlatform: async (name, o) => await this.revokePlatform(name, o),
      removePlatform: async (name) => await this.removeRegistryRecord(PLATFORMS_COLLECTION, name, () => {
        if (this.registryView.platform(name) === undefined) return false
        this.trust.assertPlatformChange(name, undefined)
        return true
      }),
      rules: () => { this.assertRunning(); return this.registryView.rules() },
      addRule: async (spec, options) => await this.addRule(spec, options),
      removeRule: async (id) => await this.removeRegistryRecord(RULES_COLLECTION, id, () => this.registryView.rule(id) !== undefined),
      rule: (id) => { this.assertRunning(); return this.registryView.rule(id) },
      updateRule: async (id, patch, options) => await this.updateRule(id, patch, options),
      pauseRule: async (id) => await this.setPaused(id, true),
      resumeRule: async (id) => await this.setPaused(id, false),
      dryRunRule: async (spec) => await this.dryRunRule(spec),
      dryRunUpdate: async (id, patch) => await this.dryRunUpdate(id, patch),
      conflicts: async (id, limit) => { this.assertRunning(); return await this.ruleService.conflicts(id, limit) },
      transformErrors: async (id, limit) => { this.assertRunning(); return await this.ruleService.transformErrors(id, limit) }
    }
  }

  get peerId (): string {
    return this.self
  }

  get name (): string {
    return this.config?.name ?? this.options.name ?? ''
  }

  get region (): string | undefined {
    return this.config?.region ?? this.options.region
  }

  getMultiaddrs (): string[] {
    return this.running ? this.host.getMultiaddrs().map(m => m.toString()) : []
  }

  async start (): Promise<void> {
    if (this.running) return
    const privateKey = await this.openDataDir()
    this.store = new Store(join(this.options.dataDir, DB_DIR))
    await this.store.open()
    try {
      await this.openState(privateKey)
      await this.openNetwork(privateKey)
      await this.auth.start()
      await this.sync.start()
      await this.host.start()
    } catch (err) {
      if (this.host !== undefined) await Promise.resolve(this.host.stop()).catch(() => {})
      await this.store.close().catch(() => {})
      if ((err as { code?: string }).code === 'EADDRINUSE' || /EADDRINUSE/.test((err as Error).message)) {
        throw new ConfigError(`cannot listen: ${(err as Error).message}; choose another --listen port`, 'LISTEN_FAILED')
      }
      throw err
    }
    this.running = true
    this.startedAt = new Date().toISOString()
    this.peerManager.start()
    this.stuckTimer = setInterval(() => this.checkStuck(), STUCK_CHECK_MS)
    this.stuckTimer.unref()
    await this.registerSelf()
    this.disconnectRevoked()
    this.ruleService.start()
    this.store.startCompacting({
      onCompacted: ({ deletes, ms }) => this.log.info({ deletes, ms }, `compacted the database after ${deletes} deletions (${ms} ms)`),
      onError: (err) => this.log.warn({ err: err.message }, `database compaction failed (it is retried after more deletions): ${err.message}`)
    })
    this.log.info({ peerId: this.self, name: this.config.name, multiaddrs: this.getMultiaddrs() }, 'node started')
  }

  /** The data directory (created when a name is given), its config, identity and mesh keys; the settings resolved. */
  private async openDataDir (): Promise<PrivateKey> {
    const dir = this.options.dataDir
    const hasNode = await stat(join(dir, CONFIG_FILE)).then(() => true, () => false)
    if (!hasNode) {
      if (this.options.name === undefined) throw new ConfigError(`no syncmesh node in ${dir}; pass a name to create one, or run "syncmesh init --data ${dir} --name NAME"`, 'NODE_NOT_FOUND')
      await initDataDir({ data: dir, name: this.options.name, ...(this.options.region !== undefined ? { region: this.options.region } : {}) })
    }
    this.config = await loadConfig(dir, this.options.configFile)
    this.settings = resolveSettings(this.options, this.config)
    for (const change of await secureDataDir(dir)) {
      this.log.warn({ dataDir: dir, change }, `the data directory was readable by other users; made it private: ${change}`)
    }
    const configFile = this.options.configFile
    if (configFile !== undefined && Object.keys(this.config.webhooks?.secrets ?? {}).length > 0 && ((await stat(configFile)).mode & 0o077) !== 0) {
      this.log.warn({ configFile }, `${configFile} holds webhook secrets and other users may read it; make it readable by the node's user only (chmod 600)`)
    }
    if (this.options.name !== undefined && this.options.name !== this.config.name) {
      throw new ConfigError(`${dir} belongs to node "${this.config.name}", not "${this.options.name}"`, 'NAME_MISMATCH')
    }
    const privateKey = await loadIdentity(dir)
    this.useKeys(await loadMeshKeys(dir, this.options.key))
    this.self = peerIdFromPrivateKey(privateKey).toString()
    return privateKey
  }

  /** What the store holds, upgraded to this release's format: the log, the registry, the rules, the write path. */
  private async openState (privateKey: PrivateKey): Promise<void> {
    const dir = this.options.dataDir
    // before anything reads it: refuse a newer format, upgrade an older one (after a backup copy)
    this.format = await upgradeFormat(() => this.store.db, {
      dataDir: dir,
      dbDir: join(dir, DB_DIR),
      log: this.log.child({ component: 'store' }),
      close: async () => { await this.store.db.close() },
      reopen: async () => { await this.store.open() },
      attestOwnLog: async (db, log) => {
        const done = await attestStoredOwnLog(db, this.self, new Attester(privateKey, this.self), log)
        log.warn(done, `attested the own log for sync protocol version 2: ${done.runs} runs, ${done.gone} gone spans, ${done.unattested} stretches left unattested`)
      },
      lowerOtherOrigins: async (db, log) => await lowerToAttested(db, this.self, log)
    })
    this.changelog = new ChangeLog(this.store)
    await this.changelog.load()
    this.changelog.attestOwnLog(this.self, new Attester(privateKey, this.self))
    const { admins, maxClockAheadMs, streams } = this.settings
    this.registryView = new Registry({ admins })
    await this.registryView.load(this.store, this.changelog)
    this.ruleSet = new RuleSet({ streams })
    this.ruleSet.rebuild(this.registryView, this.config.name)
    this.trust = new TrustPolicy({ registry: this.registryView, logger: this.log.child({ component: 'trust' }), self: this.self, maxClockAheadMs, streams: this.ruleSet.streams })
    this.ingestor = new Ingestor({ store: this.store, log: this.changelog, rules: this.ruleSet, self: this.self, signer: new RunSigner(privateKey, this.self), policy: this.trust, maxClockAheadMs })
    if (this.ruleSet.streams) {
      const streamKeys = new StreamKeys(this.store, this.self, privateKey, {
        heldOf: (stream) => this.changelog.held(logId(this.self, stream)),
        ...(this.options.maxEntriesPerKey !== undefined ? { maxEntriesPerKey: this.options.maxEntriesPerKey } : {})
      })
      await streamKeys.load()
      this.ingestor.streamKeys = streamKeys
    }
    await this.ingestor.load()
    this.ingestor.onCounted = (ruleId, name, delta) => this.metrics.ruleCounted(ruleId, name, delta)
    this.store.onMaintenance = (kind) => (kind === 'flush' ? this.metrics.flushes : this.metrics.compactions).inc()
    this.ingestor.keepChanges = () => getEventListeners(this, 'change').length > 0 || (this.ruleService?.feed.waiting ?? 0) > 0
    this.ruleService = this.createRuleService()
    this.ingestor.onEpochStarted = () => this.ruleService.keysRotated()
    this.ingestor.audienceOf = (o) => this.ruleService.audienceOf(o)
    this.ingestor.onKeysRecovered = (streamLog, recovered, unrecoverable) => {
      if (recovered.length > 0) this.log.info({ stream: streamLog, epochs: recovered }, `derived again the keys of epochs ${recovered.join(', ')} of this node's own stream ${streamLog}, whose entries came back from a peer`)
      if (unrecoverable.length > 0) this.log.warn({ stream: streamLog, epochs: unrecoverable }, `the keys of epochs ${unrecoverable.join(', ')} of this node's own stream ${streamLog} are lost (made at random by an earlier build, not in the restored backup): a delete of a record whose newest entry is under them is not sent until the record is written again`)
    }
    this.ingestor.onRestoredStream = (streamLog, epoch) => this.log.warn({ stream: streamLog, epoch }, `entries of this node's own stream ${streamLog} came back from a peer (restored from a backup?): the stream goes on under a new key, epoch ${epoch}`)
    await this.ruleService.load()
  }

  /** libp2p with the door, mesh-key authentication, the sync protocol and the peer manager (not started). */
  private async openNetwork (privateKey: PrivateKey): Promise<void> {
    const { listen, announce, mdns, maxConnections, targetConnections, bootstrap } = this.settings
    this.door = new Door({ logger: this.log.child({ component: 'door' }) })
    this.host = await createHost({
      door: this.door,
      isAuthenticated: (c) => this.auth?.isAuthenticated(c) ?? false,
      isKnown: (peer) => this.peerManager?.knows(peer) ?? false,
      privateKey,
      listen,
      announce,
      mdns,
      maxConnections,
      isDenied: (peer) => (this.auth?.isBanned(peer) ?? false) || this.trust.isRevoked(peer)
    })
    this.auth = new MeshAuth(this.host, {
      keys: authKeys(this.currentKeys),
      logger: this.log.child({ component: 'auth' }),
      onAuthenticated: (c) => this.onAuthenticated(c),
      onRejected: (peer, reason) => {
        this.metrics.authFailures.inc()
        this.peerManager?.rejected(peer.toString(), reason)
      },
      // the peer does not speak our auth protocol: another auth version? Only what it claims (identify, if it
      // answers a connection that has not proved the key) can say, and only the auth family is judged from it
      onAuthUnsupported: async (c) => { await this.checkVersions(c.remotePeer, [AUTH_FAMILY], c) },
      door: this.door,
      onForget: (peer) => this.forgetPeer(peer)
    })
    this.versions = new PeerVersions((m, peer) => this.log.warn({ peer, code: m.code, ours: m.ours, theirs: m.theirs }, m.message))
    // identify runs when this node asks (onAuthenticated, onUnsupported) or the peer pushes: judge only peers that proved the key
    this.host.addEventListener('peer:identify', (evt) => {
      if (this.host.getConnections(evt.detail.peerId).some(c => this.auth.isAuthenticated(c))) this.versions.check(evt.detail.peerId.toString(), evt.detail.protocols, this.ruleSet.streams ? PROTOCOL_FAMILIES_STREAMS : PROTOCOL_FAMILIES)
    })
    this.sync = this.createSyncService()
    this.peerManager = new PeerManager(this.host, this.store, {
      logger: this.log.child({ component: 'peers' }),
      bootstrap,
      isAuthenticated: (c) => this.auth.isAuthenticated(c),
      candidates: () => this.discoveryCandidates(),
      targetConnections,
      maxConnections
    })
    await this.peerManager.load()
    if (mdns) {
      this.host.addEventListener('peer:discovery', (evt) => {
        this.host.dial(evt.detail.id).catch(() => {})
      })
    }
  }

  private createSyncService (): SyncService {
    return new SyncService(this.host, {
      protocol: this.ruleSet.streams ? SYNC_PROTOCOL_STREAMS : SYNC_PROTOCOL,
      logger: this.log.child({ component: 'sync' }),
      isAuthenticated: (c) => this.auth.isAuthenticated(c),
      counters: (peer) => this.metrics.traffic(peer, this.peerManager.counters(peer)),
      isIncompatible: (peer) => this.versions.isIncompatible(peer),
      onUnsupported: async (c) => await this.checkVersions(c.remotePeer, this.ruleSet.streams ? PROTOCOL_FAMILIES_STREAMS : PROTOCOL_FAMILIES, c) !== undefined,
      onOffence: (peer, offence) => {
        this.metrics.offences.inc({ check: offence.check })
        if (this.peerManager.offence(peer, offence)) {
          this.metrics.bans.inc({ check: offence.check })
          this.peerManager.banned(peer, OFFENCE_BAN_MS, offence)
          this.auth.ban(peer, OFFENCE_BAN_MS)
        } else {
          this.peerManager.disconnect(peer)
        }
      },
      onRefused: (peer, refusal) => this.onRefused(peer, refusal),
      deps: {
        accepts: (origin, seq) => this.trust.acceptsEntry(origin, seq),
        clockAhead: (peer, origin, entries) => this.trust.clockAhead(peer, origin, entries),
        // a registry platform's whole log: known; a stream log (log-id.ts) only once held, so that the
        // streams a peer names count against the session's budget for origins it does not know
        knowsOrigin: (origin) => origin === this.self || this.changelog.vector.get(origin) > 0 || this.registryView.platformByPeer(origin) !== undefined,
        streams: this.ruleSet.streams,
        relayAudience: this.relaysAudienceOnly(),
        inAudience: (streamLog, peer) => this.inAudience(streamLog, peer),
        log: this.changelog,
        self: this.self,
        localName: this.config.name,
        ingest: async (origin, from, to, entries, certs, attested) => {
          const result = await this.ingestor.ingest(origin, from, to, entries, certs, attested)
          if (result !== undefined) this.afterIngest(result)
          return result
        }
      }
    })
  }

  async stop (): Promise<void> {
    if (!this.running) return
    this.running = false
    if (this.stuckTimer !== undefined) clearInterval(this.stuckTimer)
    this.peerManager.stop()
    await this.sync.stop()
    await this.auth.stop()
    await this.host.stop()
    await this.ruleService.stop()
    await this.store.close()
    this.log.info('node stopped')
  }

  private assertRunning (): void {
    if (!this.running) throw new NotRunningError()
  }

  /** Registry platforms as dial candidates; those sharing a rule with this node first. */
  private discoveryCandidates (): Candidate[] {
    const involved = new Set<string>()
    for (const r of this.registryView.rules()) {
      if (this.ruleService.isLocal(r)) for (const p of ruleSources(r.from, this.registryView.platforms(), this.config.name)) involved.add(p.name)
      if (selects(r.from, this.registryView.platform(this.config.name) ?? { name: this.config.name })) for (const p of ruleTargets(r, this.registryView)) if (p.name !== this.config.name) involved.add(p.name)
    }
    return this.registryView.platforms().filter(p => p.revoked !== true).map(p => {
      const c: Candidate = { peerId: p.peerId, addrs: p.addrs, preferred: involved.has(p.name) }
      if (p.region !== undefined) c.region = p.region
      return c
    })
  }

  /** The peer manager's peers, with what is known of their wire versions. */
  private peerList (): PeerInfo[] {
    return this.peerManager.list().map(p => {
      const m = this.versions.get(p.peerId)
      const platform = this.registryView.platformByPeer(p.peerId)
      const named = platform === undefined ? p : { ...p, platform: platform.name, ...(platform.region !== undefined ? { region: platform.region } : {}) }
      return m === undefined ? named : { ...named, lastError: m.message, incompatible: { code: m.code, protocol: m.protocol, ours: m.ours, theirs: m.theirs, message: m.message, since: m.since } }
    })
  }

  /**
   * Whether `peer` speaks another version of the sync or auth protocol. With
   * an open `connection`, the peer is asked (identify, tried a few times: on
   * a connection that just proved the key, the peer may not have seen our
   * verdict yet, and answers identify only once it has); otherwise, or when
   * it does not answer, the protocols identify recorded in the peer store.
   * Identify is never answered before the key (see docs/door.md); asking a
   * peer reveals nothing of this node.
   */
  private async checkVersions (peer: PeerId, families: readonly ProtocolFamily[], connection?: Connection): Promise<VersionMismatch | undefined> {
    const id = peer.toString()
    let protocols: string[] | undefined
    for (let attempt = 0; attempt < IDENTIFY_ATTEMPTS && connection !== undefined && connection.status === 'open' && protocols === undefined; attempt++) {
      if (attempt > 0) await new Promise(resolve => setTimeout(resolve, IDENTIFY_RETRY_MS))
      try {
        protocols = (await this.host.services.identify.identify(connection, { signal: AbortSignal.timeout(5_000) })).protocols
      } catch {}
    }
    // the connection closed while identify was answered: what it recorded came after the peer was forgotten
    if (connection !== undefined && connection.status !== 'open' && !this.auth.isBanned(id)) this.forgetPeer(id)
    if (protocols === undefined) {
      try {
        protocols = (await this.host.peerStore.get(peer)).protocols
      } catch {}
    }
    return this.versions.check(id, protocols ?? [], families)
  }

  /** Drop what is kept about a peer that never proved the key or whose refusal ended (unless it is known). */
  private forgetPeer (peer: string): void {
    if (this.peerManager?.forget(peer) !== true) return
    this.metrics.forgetPeer(peer)
    try {
      this.host.peerStore.delete(peerIdFromString(peer)).catch(() => {})
    } catch {}
  }

  private onAuthenticated (connection: Connection): void {
    // identify does not run on connection open (nobody is answered before the key): ask now, and judge the sync family
    void this.checkVersions(connection.remotePeer, [this.ruleSet.streams ? SYNC_FAMILY_STREAMS : SYNC_FAMILY], connection)
    this.peerManager.authenticated(connection)
    this.sync.connected(connection).catch(() => {})
  }

  /** Everything that follows a commit: events, registry view, rules, waking the senders. */
  private afterIngest (result: IngestResult): void {
    for (const change of result.changes) this.dispatchEvent(new CustomEvent<ChangeEvent>('change', { detail: change }))
    this.ruleService.afterCommit(result)
    const advanced = [result.advanced, result.ownAdvanced, ...(result.streamsAdvanced ?? [])].filter(a => a !== undefined)
    if (advanced.length > 0) this.sync?.stored(advanced)
    // the origin's log advanced (through some peer): it is alive, a link to it that is down may heal now
    if (result.advanced !== undefined && !isLogOf(result.advanced.origin, this.self)) this.peerManager?.signOfLife(peerOf(result.advanced.origin))
  }

  private readonly purging = new Set<string>()

  /** Close connections to revoked platforms (new ones are refused by the gater); purge logs when asked. */
  private disconnectRevoked (): void {
    for (const p of this.registryView.platforms()) {
      if (p.revoked !== true || p.purge !== true || this.purging.has(p.peerId)) continue
      this.purging.add(p.peerId)
      const done = keys.meta(`purged\x00${p.peerId}`)
      void this.store.db.get(done).then(async (flag) => {
        if (flag !== undefined) return
        let n = 0
        // its whole log and every stream log of it (log-id.ts)
        for (const origin of new Set([p.peerId, ...this.changelog.storedOrigins().filter(o => isLogOf(o, p.peerId))])) n += await this.changelog.purge(origin)
        await this.store.db.put(done, encodeJson(true))
        this.log.warn({ platform: p.name, peer: p.peerId, entries: n }, `purged the log of revoked platform ${p.name} (${n} entries)`)
      }).catch((err: Error) => this.log.error({ err: err.message }, 'purge failed; it is retried at the next start'))
    }
    if (this.host === undefined) return
    for (const c of this.host.getConnections()) {
      if (this.trust.isRevoked(c.remotePeer.toString())) {
        this.log.warn({ peer: c.remotePeer.toString() }, 'disconnecting a revoked platform')
        c.close().catch((err: Error) => c.abort(err))
      }
    }
  }

  /** Revoke a platform: every node refuses its connections and its entries after what this node holds of it now. */
  private async revokePlatform (name: string, options: { purge?: boolean } = {}): Promise<Platform> {
    this.assertRunning()
    this.trust.assertAdmin()
    const current = this.registryView.platform(name)
    if (current === undefined) throw new NotFoundError(`no platform named "${name}"; list them with "syncmesh platform ls"`, 'PLATFORM_NOT_FOUND')
    if (current.peerId === this.self) throw new InvalidInputError('a node cannot revoke itself; revoke it from another node', 'INVALID_INPUT')
    // a revocation is permanent: revoking again changes nothing (unless it asks to purge, or revokes earlier)
    const after = this.changelog.vector.get(current.peerId)
    if (current.revoked === true && (current.revokedAfter ?? 0) <= after && (current.purge === true || options.purge !== true)) return current
    const { revoked: _r, revokedAfter: _a, purge: _p, ...bound } = current
    const revoked: Platform = { ...bound, revoked: true, revokedAfter: after, ...(options.purge === true ? { purge: true } : {}) }
    await this.writeLocal([{ collection: PLATFORMS_COLLECTION, id: name, op: 'put', value: revoked as unknown as JsonObject }])
    // what the registry holds: every name of the peer id revoked, the lowest revokedAfter of all revocations
    return this.registryView.platform(name) ?? revoked
  }

  private createRuleService (): RuleService {
    this.ingestor.platformOf = (peer) => this.registryView.platformByPeer(peer)?.name
    // under the write lock, before the next transaction: it must see the new platforms, rules and revocations
    this.ingestor.onRegistry = (changes) => {
      for (const r of changes) this.registryView.apply(r.collection, r.id, r.value, r.from)
      this.registryVersion++
      this.disconnectRevoked()
      this.ruleService.registryChanged()
      // an envelope of a stream key for this node: rules that waited for it read their stream again
      const envelopes = changes.filter(r => r.collection === KEYS_COLLECTION && r.id.endsWith(`/${this.self}`)).map(r => r.id)
      if (envelopes.length > 0) this.ruleService.keysArrived(envelopes)
    }
    // a relay sends other origins' entries on while its own copy is being written (ChangeLog.forwardEarly)
    this.ingestor.onForwardable = (origins) => this.sync?.stored(origins)
    return new RuleService({
      events: this,
      log: this.log.child({ component: 'rules' }),
      store: this.store,
      changelog: this.changelog,
      writeRegistry: async (ops) => { await this.writeLocal(ops) },
      registry: this.registryView,
      ruleSet: this.ruleSet,
      ingestor: this.ingestor,
      self: this.self,
      localName: this.config.name,
      ...(this.config.region !== undefined ? { region: this.config.region } : {}),
      ...(this.options.transformsDir !== undefined ? { transformsDir: this.options.transformsDir } : {}),
      webhooks: { ...this.config.webhooks, ...this.options.webhooks },
      dataDir: this.options.dataDir,
      isRunning: () => this.running,
      afterIngest: (r) => this.afterIngest(r),
      sourceLag: (peer) => this.sourceLag(peer)
    })
  }

  /** Entries of `peer`'s log this node knows it lacks (undefined: it holds none). */
  private sourceLag (peer: string): number | undefined {
    if (this.changelog.vector.get(peer) === 0) return undefined
    return this.originProgress().origins.find(o => o.origin === peer)?.lag ?? 0
  }

  /** The changes feed: every record change on this node, resumable by cursor (see src/store/changes.ts). */
  changes (options: ChangesOptions = {}): AsyncIterable<FeedLine> {
    this.assertRunning()
    return this.ruleService.changes(options)
  }

  private async writeLocal (ops: LocalOp[]): Promise<IngestResult> {
    this.assertRunning()
    const { result } = await this.ingestor.writeLocal(ops)
    this.afterIngest(result)
    return result
  }

  /**
   * INTERNAL (tests): append to this node's own stream log `<self>/<stream>`
   * and send it to the peers (Ingestor.appendOwnStream): the log layer and
   * the sync protocol on stream logs, apart from rules.
   */
  private async appendOwnStream (stream: string, ops: LocalOp[]): Promise<{ origin: string, seq: number }> {
    this.assertRunning()
    const { origin, result } = await this.ingestor.appendOwnStream(stream, ops)
    this.afterIngest(result)
    return { origin, seq: result.advanced?.seq ?? 0 }
  }

  /** Publish this node in the registry when its entry is missing or stale. */
  private async registerSelf (): Promise<void> {
    const announce = this.settings.announce
    const addrs = announce.length > 0 ? announce : this.host.getMultiaddrs().map(m => m.decapsulate('/p2p').toString())
    const me: Platform = { name: this.config.name, peerId: this.self, addrs }
    if (this.config.region !== undefined) me.region = this.config.region
    const current = this.registryView.platform(me.name)
    if (this.trust.isRevoked(this.self)) {
      this.log.error({ name: me.name }, `this node (${this.self}) was revoked: every node refuses it; it does not register itself`)
      return
    }
    const contested = this.registryView.contested().find(c => c.name === me.name)
    if ((current !== undefined && current.peerId !== this.self) || (contested !== undefined && !contested.peerIds.includes(this.self))) {
      // no node takes a name bound to another (docs/trust.md): a claim would only contest it
      this.log.error({ name: me.name, other: current?.peerId ?? contested?.peerIds }, `platform name "${me.name}" belongs to another peer (${current?.peerId ?? contested?.peerIds.join(', ') ?? ''}); this node does not register itself: give each node a unique name, or have a registry admin bind the name to ${this.self}`)
      return
    }
    // tags are set by operators (platform add --tag): re-registering keeps them, rules target them
    if (current?.tags !== undefined && current.peerId === this.self) me.tags = current.tags
    if (current !== undefined && JSON.stringify(current) === JSON.stringify(me)) return
    await this.writeLocal([{ collection: PLATFORMS_COLLECTION, id: me.name, op: 'put', value: me as unknown as JsonObject }])
  }

  // ---- mesh keys (rotation; src/node/keyring.ts) --------------------------

  private currentKeys!: MeshKeys

  private useKeys (keys: MeshKeys): void {
    this.currentKeys = keys
    this.log.info({ keys: keyInfo(keys) }, `mesh keys (${keys.source === 'keyring' ? 'keyring.json' : 'single key'}): ${describeKeys(keys)}`)
    if (keys.warning !== undefined) this.log.warn(keys.warning)
  }

  /** Fingerprints of the mesh keys in use (never the keys themselves). */
  meshKeys (): MeshKeyInfo {
    this.assertRunning()
    return keyInfo(this.currentKeys)
  }

  /**
   * Re-read DATA_DIR/keyring.json (SIGHUP does this in `syncmesh start`) and
   * prove and accept its keys from the next connection on; connections that
   * are up stay up. On failure the keys are unchanged.
   */
  async reloadKeys (): Promise<MeshKeyInfo> {
    this.assertRunning()
    const keys = await loadMeshKeys(this.options.dataDir, this.options.key, { reload: true })
    const { staleConnections } = this.auth.setKeys(authKeys(keys))
    this.useKeys(keys)
    if (staleConnections > 0) {
      this.log.warn({ staleConnections }, `${staleConnections} open connection(s) were authenticated with a key this node no longer accepts; they stay up until they close (restart the node to drop them now)`)
    }
    return keyInfo(keys)
  }

  // ---- records -----------------------------------------------------------

  private async put (collection: string, id: string, value: unknown): Promise<StoredRecord> {
    checkCollection(collection)
    checkId(id)
    const { value: v, bytes } = checkValue(value)
    this.assertRunning()
    this.ruleService.assertWritable(collection)
    const result = await this.writeLocal([{ collection, id, op: 'put', value: v, bytes }])
    // the write took and nothing in the same commit changed the record again: it is what was written (no read back)
    const last = result.changes.findLast(c => c.collection === collection && c.id === id)
    if (last !== undefined && last.ruleId === undefined && last.op === 'put') return { collection, id, value: v, version: last.version }
    const stored = await this.get(collection, id)
    if (stored === undefined) {
      // a newer write (e.g. from a clock-skewed peer) already holds this record
      const c = result.changes[0]
      return { collection, id, value: v, version: c?.version ?? { hlc: '0.0', origin: this.self, seq: 0 } }
    }
    return stored
  }

  private async get (collection: string, id: string): Promise<StoredRecord | undefined> {
    this.assertRunning()
    checkCollection(collection)
    checkId(id)
    // synchronous: one lookup in the memtable or block cache beats a trip to LevelDB's threads
    const bytes = this.store.db.getSync(keys.record(collection, id))
    return bytes === undefined ? undefined : toStoredRecord(collection, id, decodeRecord(bytes))
  }

  private async del (collection: string, id: string): Promise<boolean> {
    const existing = await this.get(collection, id)
    this.ruleService.assertWritable(collection)
    if (existing === undefined) return false
    await this.writeLocal([{ collection, id, op: 'del' }])
    return true
  }

  private async list (collection: string, options: { after?: string, limit?: number } = {}): Promise<RecordPage> {
    this.assertRunning()
    checkCollection(collection)
    const limit = options.limit ?? DEFAULT_PAGE
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) throw new InvalidInputError(`limit must be an integer from 1 to ${MAX_PAGE}`, 'INVALID_LIMIT')
    const prefix = keys.recordPrefix(collection)
    const records: StoredRecord[] = []
    let more = false
    // a page and one more record per trip to LevelDB (tombstones are passed over: then another trip)
    page: for await (const batch of rows(this.store.db, rangeAfter(prefix, options.after), { entries: limit + 1 })) {
      for (const [key, value] of batch) {
        const rec = toStoredRecord(collection, keySuffix(key, prefix), decodeRecord(value))
        if (rec === undefined) continue
        if (records.length === limit) {
          more = true
          break page
        }
        records.push(rec)
      }
    }
    const page: RecordPage = { records }
    if (more) page.next = records[records.length - 1].id
    return page
  }

  /** One seek per collection: after reading a collection's first key, skip past all of its keys. */
  private async collections (): Promise<string[]> {
    this.assertRunning()
    const out: string[] = []
    const base = keys.recordPrefix('').slice(0, -1) // "r\0"
    let from = base
    for (let i = 0; i < MAX_COLLECTIONS_LISTED; i++) {
      const [key] = await this.store.db.keys({ gt: from, lt: 'r\x01', limit: 1 }).all()
      if (key === undefined) break
      const collection = key.slice(base.length, key.indexOf('\x00', base.length))
      out.push(collection)
      from = keys.recordPrefix(collection).slice(0, -1) + '\x01'
    }
    return out
  }

  private async importLines (collection: string, lines: AsyncIterable<ImportLine> | Iterable<ImportLine>, onProgress?: (n: number) => void): Promise<{ imported: number }> {
    this.assertRunning()
    checkCollection(collection)
    this.ruleService.assertWritable(collection)
    let imported = 0
    let batch: LocalOp[] = []
    const flush = async (): Promise<void> => {
      if (batch.length === 0) return
      await this.writeLocal(batch)
      imported += batch.length
      batch = []
      onProgress?.(imported)
    }
    let n = 0
    for await (const line of lines) {
      n++
      if (typeof line !== 'object' || line === null || typeof line.id !== 'string') {
        throw new InvalidInputError(`import line ${n}: expected {"id": "...", "value": {...}}; ${imported} records before it were imported`, 'INVALID_NDJSON')
      }
      try {
        checkId(line.id)
        const { value, bytes } = checkValue(line.value)
        batch.push({ collection, id: line.id, op: 'put', value, bytes })
      } catch (err) {
        throw new InvalidInputError(`import line ${n}: ${(err as Error).message}; ${imported} records before it were imported`, 'INVALID_NDJSON')
      }
      if (batch.length >= IMPORT_BATCH) await flush()
    }
    await flush()
    return { imported }
  }

  // ---- registry ----------------------------------------------------------

  private async addPlatform (input: Platform): Promise<Platform> {
    this.assertRunning()
    this.trust.assertAdmin()
    const p = validatePlatform(input)
    if (p.revoked === true) throw new InvalidInputError(`to revoke a platform use "syncmesh platform revoke ${p.name}" (POST /v1/platforms/${p.name}/revoke)`, 'INVALID_PLATFORM')
    // refused before anything is written when the registry would not hold it (revoked peer id, a name bound to another)
    this.trust.assertPlatformChange(p.name, p)
    await this.writeLocal([{ collection: PLATFORMS_COLLECTION, id: p.name, op: 'put', value: p as unknown as JsonObject }])
    return this.registryView.platform(p.name) ?? p
  }

  private async addRule (input: RuleSpec, options: { checkPlatforms?: boolean } = {}): Promise<Rule> {
    this.assertRunning()
    this.trust.assertAdmin()
    const spec = parseRuleSpec(input)
    const rule: Rule = { ...spec, id: `r-${randomBytes(6).toString('hex')}`, mode: spec.mode ?? DEFAULT_RULE_MODE, createdAt: new Date().toISOString() }
    // reject what the target could not compile, before it is replicated anywhere
    this.ruleService.validate(rule)
    if (options.checkPlatforms === true) assertKnownPlatforms(rule, this.registryView.platforms())
    await this.writeLocal([{ collection: RULES_COLLECTION, id: rule.id, op: 'put', value: rule as unknown as JsonObject }])
    return rule
  }

  /** The rule with `patch` applied, validated, as it would be stored. */
  private patchedRule (id: string, patch: RulePatch): Rule {
    this.assertRunning()
    const current = this.registryView.rule(id)
    if (current === undefined) throw new NotFoundError(`no rule with id "${id}"; list them with "syncmesh rule ls" or GET /v1/rules`)
    const spec = applyRulePatch(current, patch)
    const rule: Rule = { ...spec, id, mode: spec.mode ?? DEFAULT_RULE_MODE, createdAt: current.createdAt, updatedAt: new Date().toISOString() }
    if (current.paused === true) rule.paused = true // an edit keeps a paused rule paused
    this.ruleService.validate(rule)
    return rule
  }

  /**
   * Pause or resume a rule: a rule record like any change of it (replicated,
   * last writer wins). Its targets stop applying it, and catch up from where
   * they stopped when it is resumed (src/node/rule-service.ts).
   */
  private async setPaused (id: string, paused: boolean): Promise<Rule> {
    this.assertRunning()
    this.trust.assertAdmin()
    const current = this.registryView.rule(id)
    if (current === undefined) throw new NotFoundError(`no rule with id "${id}"; list them with "syncmesh rule ls" or GET /v1/rules`)
    if ((current.paused === true) === paused) return current
    const { paused: _was, ...rest } = current
    const rule: Rule = { ...rest, updatedAt: new Date().toISOString(), ...(paused ? { paused: true } : {}) }
    await this.writeLocal([{ collection: RULES_COLLECTION, id, op: 'put', value: rule as unknown as JsonObject }])
    return rule
  }

  /** Change a rule in the registry: every target re-evaluates the source data with it. */
  private async updateRule (id: string, patch: RulePatch, options: { checkPlatforms?: boolean } = {}): Promise<Rule> {
    this.trust.assertAdmin()
    const rule = this.patchedRule(id, patch)
    if (options.checkPlatforms === true && (patch.from !== undefined || patch.to !== undefined)) assertKnownPlatforms(rule, this.registryView.platforms())
    await this.writeLocal([{ collection: RULES_COLLECTION, id, op: 'put', value: rule as unknown as JsonObject }])
    return rule
  }

  private async dryRunRule (input: RuleSpec): Promise<DryRunReport> {
    this.assertRunning()
    const spec = parseRuleSpec(input)
    const rule: Rule = { ...spec, id: `r-${randomBytes(6).toString('hex')}`, mode: spec.mode ?? DEFAULT_RULE_MODE, createdAt: new Date().toISOString() }
    return await this.ruleService.dryRun(rule, false)
  }

  private async dryRunUpdate (id: string, patch: RulePatch): Promise<DryRunReport> {
    return await this.ruleService.dryRun(this.patchedRule(id, patch), true)
  }

  private async removeRegistryRecord (collection: string, id: string, exists: () => boolean): Promise<boolean> {
    this.assertRunning()
    this.trust.assertAdmin()
    if (!exists()) return false
    await this.writeLocal([{ collection, id, op: 'del' }])
    return true
  }

  // ---- status ------------------------------------------------------------

  /** Per origin: what this node holds and the most any connected peer has announced. */
  private originProgress (): { origins: OriginStatus[], sessionsReady: boolean } {
    const announced = new Map<string, { seq: number, peer: string }>()
    let sessionsReady = true
    for (const c of this.host.getConnections()) {
      if (!this.auth.isAuthenticated(c)) continue
      const peer = c.remotePeer.toString()
      const s = this.sync.sessions.get(peer)
      if (s === undefined || s.remoteName === '') {
        sessionsReady = false
        continue
      }
      for (const { origin, seq } of s.announced.entries()) {
        const cur = announced.get(origin)
        if (cur === undefined || seq > cur.seq) announced.set(origin, { seq, peer })
      }
    }
    const origins: OriginStatus[] = []
    const reading = new Set(this.ruleSet.all().map(c => c.sourcePeer))
    const audienceOnly = this.relaysAudienceOnly()
    for (const origin of new Set<string>([...this.changelog.vector.origins(), ...announced.keys()])) {
      // a stream this node does not carry (relay policy audience) is not one it lacks
      if (audienceOnly && isRuleStreamLog(origin) && !this.inAudience(origin, this.self)) continue
      const seq = this.changelog.vector.get(origin)
      const ann = announced.get(origin)
      const o: OriginStatus = { origin, seq, announced: Math.max(ann?.seq ?? 0, seq), lag: Math.max(0, (ann?.seq ?? 0) - seq) }
      if (ann !== undefined) o.announcedBy = ann.peer
      const platform = this.platformOfLog(origin)
      if (platform !== undefined) o.platform = platform
      const stuck = this.stuck.get(origin)
      if (stuck?.reported === true && o.lag > 0) o.stuck = { peer: stuck.peer, since: new Date(stuck.since).toISOString() }
      if (isRuleStreamLog(origin)) {
        const rule = this.rulesOfStream(streamOf(origin) ?? '')[0]?.id
        o.stream = { ...(rule !== undefined ? { rule } : {}), role: isLogOf(origin, this.self) ? 'source' : reading.has(origin) ? 'target' : 'relay' }
      }
      origins.push(o)
    }
    origins.sort((a, b) => (a.platform ?? a.origin).localeCompare(b.platform ?? b.origin))
    return { origins, sessionsReady }
  }

  /** Whether this node stores and forwards only the rule streams it can read (relay policy audience). */
  private relaysAudienceOnly (): boolean {
    return this.ruleSet.streams && this.settings.relay === 'audience'
  }

  /** Stream id → the rules whose stream it is (for the registry as it was when built; see rulesOfStream). */
  private streamRules?: { registry: number, byStream: Map<string, Rule[]> }

  /** The rules whose stream `stream` is (a rule with a targets field has one per target platform). */
  private rulesOfStream (stream: string): Rule[] {
    const version = this.registryVersion
    if (this.streamRules?.registry !== version) {
      const byStream = new Map<string, Rule[]>()
      const names = this.registryView.platforms().map(p => p.name)
      for (const r of this.registryView.rules()) {
        for (const target of r.targetsField !== undefined ? names : [undefined]) {
          const id = ruleStreamId(r, target)
          byStream.set(id, [...(byStream.get(id) ?? []), r])
        }
      }
      this.streamRules = { registry: version, byStream }
    }
    return this.streamRules.byStream.get(stream) ?? []
  }

  /** Registry changes applied so far (rulesOfStream rebuilds its index after one). */
  private registryVersion = 0

  /**
   * Whether peer `peer` is in the audience of rule stream `streamLog`: its
   * source, or a target of the rule whose stream it is (for a rule with a
   * targets field, the target platform the stream is for).
   */
  private inAudience (streamLog: string, peer: string): boolean {
    if (isLogOf(streamLog, peer)) return true
    const platform = this.registryView.platformByPeer(peer)
    if (platform === undefined) return false
    const stream = streamOf(streamLog) ?? ''
    return this.rulesOfStream(stream).some(r => targetsPlatform(r.to, r.from, platform) && (r.targetsField === undefined || ruleStreamId(r, platform.name) === stream))
  }

  private readonly stuck = new StuckDetector(STUCK_AFTER_MS)
  private stuckTimer?: ReturnType<typeof setInterval>

  /**
   * Report origins that are behind and have not advanced for STUCK_AFTER_MS,
   * with the peer they wait on, and act: that peer re-reads what this node
   * lacks, and the other peers that hold more are asked for it (see askFor).
   * Stalls whose range is now held are marked recovered.
   */
  private checkStuck (): void {
    const now = Date.now()
    const { origins } = this.originProgress()
    // at most STUCK_WARNINGS_PER_PEER lines per peer and check: then one line for the rest
    const perPeer = new Map<string, number>()
    for (const { origin: o, forMs } of this.stuck.check(origins, now)) {
      const peer = o.announcedBy ?? ''
      const n = (perPeer.get(peer) ?? 0) + 1
      perPeer.set(peer, n)
      if (n <= STUCK_WARNINGS_PER_PEER) this.log.warn({ origin: o.origin, platform: o.platform, peer: o.announcedBy, lag: o.lag }, `sync of ${o.platform ?? o.origin} is stuck: ${o.lag} entries behind peer ${peer}, nothing received for ${Math.round(forMs / 1000)} s; asking the peers that hold more for it again`)
    }
    for (const [peer, n] of perPeer) {
      if (n > STUCK_WARNINGS_PER_PEER) this.log.warn({ peer, origins: n - STUCK_WARNINGS_PER_PEER }, `sync of ${n - STUCK_WARNINGS_PER_PEER} more origins is stuck behind peer ${peer} (not listed)`)
    }
    // still stuck: ask again now and then (the first time right when it is found)
    for (const o of origins) {
      if (this.stuck.get(o.origin)?.reported === true && o.lag > 0) this.askFor(o.origin, undefined, now)
    }
    for (const s of this.stalls.progress((origin) => this.changelog.vector.get(origin), now)) {
      this.log.info({ peer: s.peer, origin: s.origin, fromSeq: s.fromSeq, toSeq: s.toSeq, code: s.code, asked: s.asked }, `stall recovered: this node now holds (${s.fromSeq}, ${s.toSeq}] of ${this.platformName(s.origin)}, which peer ${s.peer} kept sending refused [${s.code}]`)
    }
  }

  private platformName (origin: string): string {
    return this.platformOfLog(origin) ?? origin
  }

  /** The platform name of a log's peer (log-id.ts), with the stream for a stream log: `name/stream`. */
  private platformOfLog (origin: string): string | undefined {
    const name = this.registryView.platformByPeer(peerOf(origin))?.name
    const stream = streamOf(origin)
    return name === undefined || stream === undefined ? name : `${name}/${stream}`
  }

  private readonly stalls = new StallTracker()
  /** Stall warnings logged in the current minute (at most STALL_LOGS_PER_MINUTE), and how many were left out. */
  private stallLogs = { minute: 0, logged: 0, suppressed: 0 }
  /** Per origin, when its peers were last asked for it (askFor). */
  private readonly askedAt = new Map<string, number>()

  /**
   * A batch of `peer`'s was refused and its session ended. The same batch
   * refused again is a stall: logged once (rate-limited), shown in status
   * and /metrics, and acted on (askFor), so one bad batch never stalls an
   * origin for good.
   */
  private onRefused (peer: string, refusal: Refusal): void {
    const now = Date.now()
    const stall = this.stalls.refused(peer, refusal, now)
    if (stall === undefined) return
    this.metrics.stalls.inc({ check: stall.code })
    // a run accepted but never stored would make every later copy of it look like a duplicate
    this.sync.resetAccepted(refusal.origin, this.changelog.held(refusal.origin))
    this.askFor(refusal.origin, stall, now)
    this.logStall(stall, now)
  }

  private logStall (s: Stall, now: number): void {
    const minute = Math.floor(now / 60_000)
    if (this.stallLogs.minute !== minute) this.stallLogs = { minute, logged: 0, suppressed: this.stallLogs.suppressed }
    if (this.stallLogs.logged >= STALL_LOGS_PER_MINUTE) {
      this.stallLogs.suppressed++
      return
    }
    this.stallLogs.logged++
    const suppressed = this.stallLogs.suppressed
    this.stallLogs.suppressed = 0
    const asked = s.asked.length > 0 ? `asked ${s.asked.length} other peer(s) that hold more of it: ${s.asked.join(', ')}` : 'no other connected peer has announced more of it'
    this.log.warn({ peer: s.peer, origin: s.origin, fromSeq: s.fromSeq, toSeq: s.toSeq, code: s.code, offence: s.offence, refusals: s.refusals, asked: s.asked, ...(suppressed > 0 ? { suppressed } : {}) },
      `sync stall: peer ${s.peer} sent batch (${s.fromSeq}, ${s.toSeq}] of ${this.platformName(s.origin)} ${s.refusals} times and it was refused each time [${s.code}]: ${s.reason}; ${asked}` +
      (suppressed > 0 ? ` (${suppressed} other stall warnings were left out: see status)` : ''))
  }

  /**
   * Ask the connected peers that announced more of `origin` than this node
   * holds (but the one the stall is about) for it: their sessions start over,
   * so they learn from this node's Hello exactly what it holds and push the
   * rest at once. Without a stall (an origin found stuck), the peer waited on
   * is included: it re-reads what this node lacks. At most once per
   * ASK_AGAIN_MS per origin.
   */
  private askFor (origin: string, stall: Stall | undefined, now: number): void {
    if (now - (this.askedAt.get(origin) ?? 0) < ASK_AGAIN_MS) return
    this.askedAt.set(origin, now)
    const held = this.changelog.vector.get(origin)
    this.sync.resetAccepted(origin, this.changelog.held(origin))
    for (const [peer, session] of this.sync.sessions) {
      if (peer === stall?.peer || session.announced.get(origin) <= held) continue
      // one restart per peer per ASK_AGAIN_MS, however many of its origins are asked for
      if (now - (this.restartedAt.get(peer) ?? 0) < ASK_AGAIN_MS) {
        stall?.asked.push(peer)
        continue
      }
      if (!this.sync.restart(peer)) continue
      this.restartedAt.set(peer, now)
      stall?.asked.push(peer)
    }
    for (const [peer, at] of this.restartedAt) if (now - at >= ASK_AGAIN_MS) this.restartedAt.delete(peer)
    for (const [o, at] of this.askedAt) if (now - at >= ASK_AGAIN_MS) this.askedAt.delete(o)
  }

  /** Per peer, when its session was last restarted by askFor. */
  private readonly restartedAt = new Map<string, number>()

  /** Connectors live above the node (src/connectors): they hand status() their list through this. */
  private connectorStatus?: () => ConnectorInfo[]

  setConnectorStatus (source: (() => ConnectorInfo[]) | undefined): void {
    this.connectorStatus = source
  }

  async status (): Promise<NodeStatus> {
    this.assertRunning()
    const { origins, sessionsReady } = this.originProgress()
    const lagOf = new Map(origins.map(o => [o.origin, o.lag]))
    const problems = new Map(this.ruleSet.problems.map(p => [p.ruleId, p.message]))
    const rules: RuleStatus[] = []
    for (const r of this.registryView.rules()) {
      const local = this.ruleService.isLocal(r)
      const source = r.from.platform !== undefined ? this.registryView.platform(r.from.platform)?.peerId : undefined
      const rs: RuleStatus = {
        id: r.id,
        from: formatSource(r.from),
        to: formatTarget(r.to),
        mode: r.mode,
        local,
        applied: this.ingestor.applied(r.id),
        pending: local && source !== undefined ? lagOf.get(source) ?? 0 : 0,
        backfilled: local ? await this.ingestor.backfillDone(r.id) : false,
        ...await this.ruleService.ruleStatus(r, local)
      }
      const problem = problems.get(r.id)
      if (problem !== undefined) rs.problem = problem
      rules.push(rs)
    }
    const peers = this.peerList()
    const reach = reachability(peers)
    const status: NodeStatus = {
      peerId: this.self,
      name: this.config.name,
      multiaddrs: this.getMultiaddrs(),
      startedAt: this.startedAt,
      peers,
      origins,
      rules,
      caughtUp: reach.basis !== 'unreachable' && sessionsReady && origins.every(o => o.lag === 0),
      caughtUpBasis: reach.basis,
      streams: this.ruleSet.streams,
      ...(this.ruleSet.streams ? { relay: this.settings.relay } : {}),
      ...(reach.reason !== undefined ? { notCaughtUpReason: reach.reason } : {}),
      registry: { admins: this.trust.adminList, refused: this.trust.refusedTotal, refusals: this.trust.refusals.slice(0, 10), contested: this.registryView.contested(), maxClockAheadMs: this.trust.maxClockAheadMs },
      database: {
        compactions: this.store.compactions,
        memtableFlushes: this.store.flushes,
        written: { ...this.store.written },
        ...(this.format !== undefined ? { format: this.format.format } : {}),
        ...(this.format?.steps !== undefined && this.format.steps > 0 && this.format.found !== undefined ? { upgradedFrom: this.format.found } : {}),
        ...(this.format?.backup !== undefined ? { backup: this.format.backup } : {})
      },
      offences: this.peerManager.offenceTotals(),
      stalls: {
        total: this.stalls.total,
        active: this.stalls.active().length,
        byCode: this.stalls.byCode(),
        recent: this.stalls.recent().map(st => {
          const info: StallInfo = { peer: st.peer, origin: st.origin, fromSeq: st.fromSeq, toSeq: st.toSeq, code: st.code, reason: st.reason, offence: st.offence, refusals: st.refusals, since: new Date(st.since ?? st.first).toISOString(), lastAt: new Date(st.lastAt).toISOString(), asked: [...st.asked] }
          const platform = this.platformOfLog(st.origin)
          if (platform !== undefined) info.platform = platform
          if (st.recovered !== undefined) info.recovered = new Date(st.recovered).toISOString()
          return info
        })
      },
      door: { ...this.door.stats(), refusedPeers: this.auth.bannedCount, trackedPeers: this.peerManager.size, peerStore: (await this.host.peerStore.all()).length }
    }
    if (this.config.region !== undefined) status.region = this.config.region
    if (this.connectorStatus !== undefined) status.connectors = this.connectorStatus()
    return status
  }
}

/**
 * Whether "caught up" can mean anything: a node that knows peers but is
 * authenticated with none of them knows nothing of what it misses.
 */
export function reachability (peers: PeerInfo[]): { basis: 'peers' | 'no-peers' | 'unreachable', reason?: string } {
  if (peers.length === 0) return { basis: 'no-peers' }
  if (peers.some(p => p.connected && p.authenticated)) return { basis: 'peers' }
  const refused = peers.filter(p => p.lastError !== undefined && /key|auth/i.test(p.lastError))
  if (refused.length === peers.length) {
    return { basis: 'unreachable', reason: `every known peer (${peers.length}) refused this node's mesh key or failed to prove its own: ${refused[0].lastError ?? ''}; check that every node holds the same key ("syncmesh key ls" shows fingerprints)` }
  }
  const errors = peers.filter(p => p.lastError !== undefined).map(p => p.lastError)
  return { basis: 'unreachable', reason: `none of the ${peers.length} known peers is connected and authenticated${errors.length > 0 ? ` (last error: ${errors[0] ?? ''})` : ''}; check the addresses ("syncmesh peer ls") and the network` }
}

/** Create a node (not started). See SyncNodeOptions. */
export async function createSyncNode (options: SyncNodeOptions): Promise<SyncNode> {
  if (options.dataDir === undefined || options.dataDir === '') throw new ConfigError('dataDir is required', 'CONFIG_INVALID')
  return new SyncNode(options)
}

export { NotFoundError, encodeJson }
