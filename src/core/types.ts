/**
 * The domain types of the public surface (library, HTTP API, CLI).
 * Wire types (protobuf) never leave src/network; storage encodings never leave src/store.
 */
import type { Counter, Histogram, Registry } from 'prom-client'

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue }
export type JsonObject = { [key: string]: JsonValue }

/** Which write produced a record: hybrid logical clock, then origin and seq in that origin's log. */
export interface RecordVersion {
  /** Hybrid logical clock as "WALLMS.LOGICAL", e.g. "1732237200000.3" */
  hlc: string
  origin: string
  seq: number
}

export interface StoredRecord {
  collection: string
  id: string
  value: JsonObject
  version: RecordVersion
}

export interface RecordPage {
  records: StoredRecord[]
  /** Pass as `after` to get the next page; absent on the last page. */
  next?: string
}

export interface Platform {
  name: string
  peerId: string
  region?: string
  /** Multiaddrs other nodes can dial to reach this platform. */
  addrs: string[]
  /** Extra labels a rule can target. */
  tags?: string[]
  /**
   * Revoked: every node refuses its connections and its entries after seq
   * `revokedAfter` (what it wrote before stays, unless `purge`).
   */
  revoked?: boolean
  revokedAfter?: number
  /** With `revoked`: also remove what it wrote (its log and the records rules applied from it). */
  purge?: boolean
}

export type { RuleMode } from './modes.js'
import type { RuleMode } from './modes.js'

export interface Endpoint {
  platform: string
  collection: string
}

/**
 * What a rule reads: one platform (`platform`), every platform of a region
 * (`region`), every platform with a tag (`tag`), or every platform
 * (`platform: "*"`). Exactly one of platform, region and tag, as for targets.
 * A group source never includes the target it feeds: on each target node the
 * rule reads the group's other platforms.
 */
export interface SourceEndpoint {
  platform?: string
  region?: string
  tag?: string
  collection: string
}

/**
 * Where a rule writes: one platform (`platform`), every platform of a region
 * (`region`), every platform with a tag (`tag`), or every platform
 * (`platform: "*"`). Exactly one of platform, region and tag. Group targets
 * never include the rule's source platform.
 */
export interface TargetEndpoint {
  platform?: string
  region?: string
  tag?: string
  collection: string
}

/**
 * A rule's webhook: each change the rule applies on a target node is POSTed
 * there, signed. Each target node POSTs only to hosts its own config allows
 * (`webhooks.allow`); see docs/webhooks.md.
 */
export interface RuleWebhook {
  /** http(s) URL, called by every target node of the rule. */
  url: string
  /** Name of the signing secret in each target node's config.json (`webhooks.secrets.NAME`, 16-256 characters). */
  secretRef?: string
  /**
   * Deprecated: the secret itself, replicated in clear to every node. Rules
   * that carry one keep working (with a warning); new ones are refused: use
   * `secretRef`. Redacted in API output.
   */
  secret?: string
}

/** What an operator supplies to create a rule. */
export interface RuleSpec {
  from: SourceEndpoint
  to: TargetEndpoint
  mode?: RuleMode
  /** Filter on the source value (see src/rules/filter.ts for the grammar). */
  where?: JsonObject
  include?: string[]
  exclude?: string[]
  /** old field name → new field name */
  rename?: Record<string, string>
  /** Use this field of the source value as the target record's id. */
  key?: string
  /**
   * A transform module, resolved on each target node inside its transforms
   * directory (DATA_DIR/transforms unless configured): its default export (or
   * export `transform`) receives (record, context) and returns the new value,
   * or null to skip the record. See src/rules/modules.ts.
   */
  transform?: string
  /**
   * A field of the source value listing the platform names the record is meant
   * for (a string or an array of strings): such a record is delivered only to
   * those of the rule's targets. Records without the field go to every target.
   */
  targetsField?: string
  webhook?: RuleWebhook
}

export interface Rule extends RuleSpec {
  id: string
  mode: RuleMode
  createdAt: string
  /** Set by a rule update (ISO time). */
  updatedAt?: string
  /**
   * Paused (`syncmesh rule pause`): its targets apply nothing from it until it
   * is resumed, then catch up from where they stopped (docs/rules.md).
   */
  paused?: boolean
}

/**
 * A change to an existing rule: the fields given replace the rule's, `null`
 * removes an optional field. The source data is re-evaluated on every target.
 */
export type RulePatch = {
  from?: SourceEndpoint
  to?: TargetEndpoint
  mode?: RuleMode
} & {
  [K in 'where' | 'include' | 'exclude' | 'rename' | 'key' | 'transform' | 'targetsField' | 'webhook']?: RuleSpec[K] | null
}

export interface PeerInfo {
  peerId: string
  /** The peer's platform name and region in the registry, when it has registered. */
  platform?: string
  region?: string
  addrs: string[]
  connected: boolean
  /** Proved the mesh key on the current connection. */
  authenticated: boolean
  /** In the answer to a peer add: whether the peer proved the mesh key over the address given (false: saved anyway, `lastError` says why). */
  proved?: boolean
  /** ISO time the peer last proved the mesh key (its last authentication), if any. */
  lastSeen?: string
  /** ISO time of the last frame received from the peer since this node started (kept in memory only). */
  lastTraffic?: string
  /** ISO time the last connection to the peer closed, while it is disconnected (why: `lastError`). */
  disconnectedSince?: string
  /** Added by an operator (persisted and redialled) rather than only discovered. */
  persisted: boolean
  entriesSent: number
  entriesReceived: number
  bytesSent: number
  bytesReceived: number
  lastError?: string
  /** Batches from this peer that failed verification (each one disconnected it). */
  offences?: number
  /** Those offences per check code (BATCH_END_UNSIGNED, RUN_SIGNATURE_MISMATCH, ...: docs/troubleshooting.md). */
  offencesByCheck?: Record<string, number>
  /** The last offence: the check that failed, the origin and range of the batch, why, and when (ISO). */
  lastOffence?: { check: string, origin: string, fromSeq: number, toSeq: number, reason: string, at: string }
  /** Set while the peer is refused after repeated offences (ISO). */
  bannedUntil?: string
  /**
   * The peer speaks another version of the sync or auth protocol (code
   * SYNC_PROTOCOL_MISMATCH or AUTH_PROTOCOL_MISMATCH): the two cannot sync
   * until the older one is upgraded. See docs/upgrading.md.
   */
  incompatible?: { code: string, protocol: string, ours: string, theirs: string[], message: string, since: string }
}

/** A batch one peer kept sending and this node kept refusing (see docs/troubleshooting.md, "A sync is stuck"). */
export interface StallInfo {
  peer: string
  origin: string
  platform?: string
  /** The refused batch's range (fromSeq, toSeq]. */
  fromSeq: number
  toSeq: number
  /** The check that refused it: an offence check, or an error code such as FRAME_INVALID. */
  code: string
  reason: string
  /** Whether the refusal counts as an offence. */
  offence: boolean
  refusals: number
  since: string
  lastAt: string
  /** Other peers asked for the origin (their sessions restarted so that they send what this node lacks). */
  asked: string[]
  /** When this node came to hold the range after all (ISO). */
  recovered?: string
}

export interface OriginStatus {
  origin: string
  /** Platform name from the registry, when known. */
  platform?: string
  /** Highest seq this node holds contiguously. */
  seq: number
  /** Highest seq any connected peer has announced. */
  announced: number
  /** Entries behind: announced - seq. */
  lag: number
  /** The peer that announced the highest seq. */
  announcedBy?: string
  /** Set when the lag has not shrunk for a while: the peer and since when (ISO). */
  stuck?: { peer: string, since: string }
  /**
   * A rule stream (nodes with the option `streams`; `origin` is then
   * `<peer id>/<stream>`): the rule it carries, when the registry has it, and
   * this node's part: `source` (it writes it), `target` (a rule here reads
   * it, with the key), `relay` (it stores and forwards it, encrypted, and
   * cannot read it). `lag` > 0 is what it lacks.
   */
  stream?: { rule?: string, role: 'source' | 'target' | 'relay' }
}

export interface RuleStatus {
  id: string
  from: string
  to: string
  mode: RuleMode
  /** Whether this node is the rule's target. */
  local: boolean
  applied: number
  /** Entries of the source platform's log announced by peers but not yet received here (local rules only). */
  pending: number
  backfilled: boolean
  /** Why the rule is not active on this node, if it should be, or names a platform the registry does not have. */
  problem?: string
  /** The rule is paused: its targets apply nothing from it until it is resumed. */
  paused?: boolean
  /** Resumed after a pause: this node is applying what its source wrote meanwhile (not a new backfill). */
  catchingUp?: boolean
  /** The target as written in the rule: "B:articles", "region=eu:articles", "tag=edge:articles", "*:articles". */
  target: string
  /** Platforms of the registry the rule targets now. */
  targets: string[]
  /** Writes of this rule that met a different writer's version of the same target record (on this node). */
  conflicts: number
  lastConflict?: ConflictRecord
  /** Records the transform module failed on (skipped) on this node. */
  transformErrors: number
  lastTransformError?: TransformErrorRecord
  /**
   * Rule streams: the source platforms whose stream key this target does not
   * hold yet (their source has not started the rule's stream and sealed its
   * key to this node: it is offline, or its registry lacks the rule or this
   * node's platform). The rule is not backfilled while any is listed.
   */
  waitingForKey?: string[]
  /**
   * Rule streams: entries of the rule's stream this target could not open
   * (their origin encrypted them wrongly, or sealed a key that does not
   * open), skipped; each pass over the stream counts them again. Absent
   * when none. The node's log has each one's reason.
   */
  unreadable?: number
  /** Where the backfill of a local rule is: reading the source, or (mirror) removing what the source lacks. */
  backfillPhase?: 'source' | 'sweep'
  webhook?: WebhookStatus
  /**
   * A rule whose source is a group (region, tag or "*"): the platforms that
   * feed it on this node now (the group but this node), each with its
   * pending entries and whether its backfill is done. Absent for a rule
   * reading one platform.
   */
  sources?: RuleSourceStatus[]
}

/** One platform feeding a rule with a group source, on a target node. */
export interface RuleSourceStatus {
  platform: string
  /** Entries of this platform's log announced by peers but not yet received here. */
  pending: number
  backfilled: boolean
}

/** A registry change this node refused (admin control). */
export interface RegistryRefusal {
  origin: string
  collection: string
  id: string
  reason: string
  at: string
}

export interface NodeStatus {
  peerId: string
  name: string
  region?: string
  multiaddrs: string[]
  startedAt: string
  peers: PeerInfo[]
  origins: OriginStatus[]
  rules: RuleStatus[]
  /**
   * True when nothing is known to be missing from any connected peer, and
   * the node has at least one authenticated peer or has never been told of
   * one (`caughtUpBasis` says which).
   */
  caughtUp: boolean
  /** Why `caughtUp` is what it is: 'peers' (authenticated peers), 'no-peers' (none ever known), or 'unreachable' (peers known, none authenticated). */
  caughtUpBasis?: 'peers' | 'no-peers' | 'unreachable'
  /** With 'unreachable': what keeps the node from its peers (e.g. every known peer refused the mesh key). */
  notCaughtUpReason?: string
  /**
   * True when this node carries rules by rule streams (the EXPERIMENTAL
   * option `streams`, config "streams", `start --streams`); false when it
   * carries them by the whole log. Nodes with different values do not sync.
   */
  streams?: boolean
  /** With streams: which rule streams this node stores and forwards (relay policy: every one, or only those it can read). */
  relay?: 'all' | 'audience'
  /** Admin control: the admins (empty: anyone may change the registry) and the changes refused. */
  registry?: {
    admins: string[]
    refused: number
    refusals: RegistryRefusal[]
    /** Names claimed for several peer ids and bound by no admin: they belong to no one (docs/trust.md). */
    contested?: Array<{ name: string, peerIds: string[] }>
    /** How far ahead of this node's clock a received entry may be stamped (ms). */
    maxClockAheadMs?: number
  }
  /**
   * The node's LevelDB since the node started: full compactions when idle, memtable flushes when idle or closing;
   * `format` is the data format of the directory (see docs/upgrading.md), `upgradedFrom` the one it had before this start upgraded it.
   */
  database?: {
    compactions: number
    memtableFlushes: number
    /** Written since the node started: atomic batches, keys put and deleted, bytes (key characters plus value bytes). */
    written?: { batches: number, puts: number, deletes: number, bytes: number }
    format?: number
    upgradedFrom?: number
    backup?: string
  }
  /** Offences by peers since the node started, per check, and the bans they led to. */
  offences?: { total: number, byCheck: Record<string, number>, bans: number, bansByCheck: Record<string, number> }
  /** Stalls since the node started: batches refused again and again (recent ones listed, newest first). */
  stalls?: { total: number, active: number, byCode: Record<string, number>, recent: StallInfo[] }
  /**
   * Inbound connections that have not proved the mesh key (`pending`), addresses and peer ids
   * refused now, connections turned away at the door since start, and how many peers the node
   * keeps state for (its peer manager, libp2p's peer store): see docs/door.md.
   */
  door?: { pending: number, refusedAddresses: number, turnedAway: number, refusedPeers: number, trackedPeers: number, peerStore: number }
  /** The connectors of this node (docs/connectors.md), when it runs them (`syncmesh start` does). */
  connectors?: ConnectorInfo[]
}

/** One connector as status lists it (GET /v1/connectors gives the same). */
export interface ConnectorInfo {
  id: string
  kind: 'sqlite' | 'postgres'
  /** SQLite: the database file; PostgreSQL: the URL with its password as ***. */
  db: string
  table: string
  collection: string
  idColumn: string
  direction: 'both' | 'out' | 'in'
  columns?: string[]
  createdAt: string
  running: boolean
  /** Outbox rows committed by the application and not yet taken into the node's log. */
  lag: number
  /** Rows taken from the outbox into the node's log. */
  captured: number
  /** Outbox rows taken again after a crash whose value the node already held (not written again). */
  recaptured: number
  /** Changes written into the table. */
  applied: number
  skippedFields: number
  refusedRows: number
  errors: number
  cursor?: string
  lastError?: { at: string, message: string }
  lastRefused?: { at: string, id: string, message: string }
}

export interface ImportLine {
  id: string
  value: JsonObject
}

/** Emitted as the `change` event (CustomEvent detail) whenever a record changes locally. */
export interface ChangeEvent {
  collection: string
  id: string
  op: 'put' | 'del'
  value?: JsonObject
  version: RecordVersion
  /** Rule that produced the change, absent for local writes. */
  ruleId?: string
  /** Position in this node's changes feed (GET /v1/changes?since=CURSOR). */
  cursor?: string
}

export interface RecordsApi {
  put (collection: string, id: string, value: JsonObject): Promise<StoredRecord>
  get (collection: string, id: string): Promise<StoredRecord | undefined>
  /** Returns false when there was no live record. */
  delete (collection: string, id: string): Promise<boolean>
  list (collection: string, options?: { after?: string, limit?: number }): Promise<RecordPage>
  /** Imports in atomic batches; each batch is durable once counted. */
  import (collection: string, lines: AsyncIterable<ImportLine> | Iterable<ImportLine>, onProgress?: (count: number) => void): Promise<{ imported: number }>
  /** Names of the collections that hold records on this node (deleted ones may be listed), in order. */
  collections? (): Promise<string[]>
}

export interface PeersApi {
  /** Dial `multiaddr`, prove the mesh key over it, then keep it; `save` keeps it even when that fails. */
  add (multiaddr: string, options?: { save?: boolean }): Promise<PeerInfo>
  list (): Promise<PeerInfo[]>
  remove (peerId: string): Promise<boolean>
}

export interface RegistryApi {
  /** Bound and revoked platforms (names claimed for several peer ids are in status().registry.contested). */
  platforms (): Platform[]
  /** Bind a name to a peer id; returns what the registry holds. Throws NOT_ADMIN, PEER_REVOKED, NAME_TAKEN (docs/trust.md). */
  addPlatform (platform: Platform): Promise<Platform>
  /** Withdraw this node's binding of a name. Throws NOT_ADMIN, PLATFORM_STILL_CLAIMED when other claims keep it registered. */
  removePlatform (name: string): Promise<boolean>
  /** Revoke a platform's peer id everywhere, for good, under every name (see Platform.revoked). Throws PLATFORM_NOT_FOUND, NOT_ADMIN. */
  revokePlatform? (name: string, options?: { purge?: boolean }): Promise<Platform>
  rules (): Rule[]
  /**
   * `checkPlatforms`: refuse (UNKNOWN_PLATFORM) a rule naming a platform the
   * registry does not have, as the CLI and the HTTP API do unless forced.
   */
  addRule (spec: RuleSpec, options?: { checkPlatforms?: boolean }): Promise<Rule>
  removeRule (id: string): Promise<boolean>
  rule? (id: string): Rule | undefined
  /** Change a rule; its targets re-evaluate the source data. Throws NotFoundError (code NOT_FOUND). */
  updateRule? (id: string, patch: RulePatch, options?: { checkPlatforms?: boolean }): Promise<Rule>
  /** Pause a rule on every target (replicated); no-op when paused already. Throws NOT_FOUND. */
  pauseRule? (id: string): Promise<Rule>
  /** Resume a paused rule: its targets catch up from where they stopped, without a new backfill. Throws NOT_FOUND. */
  resumeRule? (id: string): Promise<Rule>
  /** What adding the rule would do on each target, without writing anything. */
  dryRunRule? (spec: RuleSpec): Promise<DryRunReport>
  /** What the update would do on each target, without writing anything. */
  dryRunUpdate? (id: string, patch: RulePatch): Promise<DryRunReport>
  /** The newest conflicts of a rule on this node, newest first. */
  conflicts? (id: string, limit?: number): Promise<{ total: number, conflicts: ConflictRecord[] }>
  /** The newest transform failures of a rule on this node, newest first. */
  transformErrors? (id: string, limit?: number): Promise<{ total: number, errors: TransformErrorRecord[] }>
}

/** What the HTTP API and other embedders need from a running node. */
export interface SyncNodeApi extends EventTarget {
  readonly peerId: string
  /** The node's own metrics, counted where the events happen (served at /metrics with the process's). */
  readonly metrics?: NodeMetricsApi
  readonly name: string
  readonly region?: string
  readonly records: RecordsApi
  readonly peers: PeersApi
  readonly registry: RegistryApi
  /** Listening multiaddrs including /p2p/PEER_ID. */
  getMultiaddrs (): string[]
  status (): Promise<NodeStatus>
  /** Where status() finds the connectors (src/connectors/manager.ts sets it; undefined removes it). */
  setConnectorStatus? (source: (() => ConnectorInfo[]) | undefined): void
  /** The changes feed: every record change on this node, newest change per record, resumable by cursor. */
  changes? (options?: ChangesOptions): AsyncIterable<FeedLine>
  /** Fingerprints of the mesh keys in use (src/node/keyring.ts); absent in embedders without keys. */
  meshKeys? (): MeshKeyInfo
  /** Re-read DATA_DIR/keyring.json and use its keys for new connections. */
  reloadKeys? (): Promise<MeshKeyInfo>
}

/** The mesh keys a node uses, as fingerprints (first 8 hex digits of SHA-256 of the key), never the keys. */
export interface MeshKeyInfo {
  /** "keyring": DATA_DIR/keyring.json; "key": the single key given at start. */
  source: 'keyring' | 'key'
  /** The key this node proves. */
  current: string
  /** Every key it accepts, the current one first. */
  accepted: string[]
}

export interface SyncNodeOptions {
  /** Data directory; created (with a new identity) when it holds no node yet, which then needs `name`. */
  dataDir: string
  /** The config file to read instead of DATA_DIR/config.json. */
  configFile?: string
  /** Mesh key (at least 32 characters). */
  key: string
  /** Platform name; required when dataDir holds no node yet; must match the config otherwise. */
  name?: string
  region?: string
  /** @default ['/ip4/0.0.0.0/tcp/4001'] */
  listen?: string[]
  announce?: string[]
  bootstrap?: string[]
  /** @default false */
  mdns?: boolean
  /** Peer ids allowed to change the registry (platforms, rules); empty or absent: every node. */
  admins?: string[]
  /** Connections sought through registry discovery. @default 6 */
  targetConnections?: number
  /** Hard cap on open connections. @default 16 */
  maxConnections?: number
  /**
   * Entries received stamped further ahead of this node's clock than this
   * are refused (an offence of the sender that stamped them). Honest nodes'
   * clocks must differ by less. @default 60000 (config "maxClockAheadMs")
   */
  maxClockAheadMs?: number
  /** A pino logger; defaults to a silent one. */
  logger?: import('pino').Logger
  /** Directory that rule transform modules are loaded from (and confined to). @default DATA_DIR/transforms */
  transformsDir?: string
  /**
   * Where this node may POST rule webhooks, and their secrets; each field
   * given replaces config.json's "webhooks" field. See docs/webhooks.md.
   */
  webhooks?: WebhookSettings
  /**
   * EXPERIMENTAL, not for production: carry rules by rule streams
   * (protocols/sync/streams.md): a rule's filter, key and projection run on
   * its source, records reach other nodes only through the streams of the
   * rules reading them, and the whole log carries registry writes only.
   * Every node of a mesh must run with the same setting; sync protocol
   * version 3 will make it the only way and refuse mixed meshes.
   * @default config "streams", else false
   */
  streams?: boolean
  /**
   * With `streams`: which rule streams this node stores and forwards.
   * `all` (default): every stream, readable or not, so that a node that
   * reaches a rule's source only through this one still gets its data.
   * `audience`: only those it can read (it is their source or a target of
   * their rule); peers do not send it the others.
   */
  relay?: 'all' | 'audience'
  /**
   * INTERNAL (tests): with `streams`, the most entries a stream's epoch key
   * encrypts before the stream starts a new epoch (encryption.md §5). Must
   * exceed the records one write transaction holds.
   * @default MAX_ENTRIES_PER_KEY (2^31)
   */
  maxEntriesPerKey?: number
}

/** One side of a conflict: a version of the target record. */
export interface ConflictSide {
  op: 'put' | 'del'
  version: RecordVersion
  /** Platform of the version's origin, when the registry knows it. */
  platform?: string
  /** Written on this node (API, CLI, library) rather than by a rule. */
  local: boolean
  /** Rule that placed this version. */
  ruleId?: string
  value?: JsonObject
  /** Instead of `value` when the value is larger than the conflict log keeps (bytes). */
  valueBytes?: number
}

/**
 * Two writers met on one target record: a rule's write and a version from a
 * different origin (a local write, another source, or another source record
 * with the same key). The later write by hybrid logical clock won.
 */
export interface ConflictRecord {
  /** 1, 2, 3, … per rule on this node. */
  n: number
  /** When this node saw it (ISO). */
  at: string
  ruleId: string
  collection: string
  id: string
  kind: 'local-write' | 'other-source' | 'key-collision'
  existing: ConflictSide
  incoming: ConflictSide
  winner: 'existing' | 'incoming'
}

/** A record the rule's transform module failed on: skipped, reported, sync goes on. Also the `transform-error` event. */
export interface TransformErrorRecord {
  n: number
  at: string
  ruleId: string
  module: string
  /** The source record. */
  collection: string
  id: string
  error: string
}

export interface WebhookStatus {
  url: string
  secretRef?: string
  /** Changes feed cursor up to which changes are delivered (or given up). */
  cursor: string
  delivered: number
  /** Failed attempts. */
  failures: number
  /** Changes given up after the last of their attempts (see lastFailure). */
  failed: number
  lastFailure?: { cursor: string, collection: string, id: string, error: string, at: string }
  /** Why this node does not deliver the webhook (its host or secret is not allowed here); the cursor waits. */
  blocked?: string
  /** E.g. the rule carries its secret inline (deprecated). */
  warning?: string
  lastError?: string
  lastDeliveredAt?: string
  nextAttemptAt?: string
}

/** Per target platform: what a rule would do there. */
export interface DryRunTarget {
  platform: string
  collection: string
  /** True when the numbers were computed against the target's records (only on the target node itself). */
  exact: boolean
  /** Source records the rule would write there (filter, targets field and key applied; known on any node). */
  matching: number
  creates: number
  updates: number
  deletes: number
  unchanged: number
  /** Source records the filter, the targets field or the transform module leave out. */
  skipped: number
  /** Writes that would meet another writer's version (counted as conflicts; see `winner` rules). */
  conflicts: number
  /** Records the transform module would fail on. */
  errors: number
  note?: string
}

export interface DryRunReport {
  dryRun: true
  /** The rule as it would be stored. */
  rule: Rule
  /** The node that evaluated the dry run. */
  evaluatedOn: string
  source: {
    platform: string
    collection: string
    /** Source records (newest entry per record, deletes included) read from the source log held here. */
    records: number
    /** False when this node does not hold the whole source log (or does not know the source platform). */
    complete: boolean
    note?: string
  }
  targets: DryRunTarget[]
}

export interface ChangesOptions {
  /** Resume after this cursor ("0" or absent: from the beginning; "now": only changes from now on). */
  since?: string
  collection?: string
  /** Stop after this many changes. */
  limit?: number
  /** Keep streaming new changes (with heartbeats) until aborted. */
  follow?: boolean
  signal?: AbortSignal
  /** Heartbeat interval while following. @default 15000 */
  heartbeatMs?: number
}

/** A line of the changes feed. */
export type FeedLine =
  | ({ type: 'change', cursor: string } & Omit<ChangeEvent, 'cursor'>)
  | { type: 'heartbeat', cursor: string }

/** A node's own webhook settings (config.json "webhooks"): where its rules' webhooks may POST, and their secrets. */
export interface WebhookSettings {
  /** Hosts, addresses and ranges this node may POST to (see webhook-policy.ts). Empty: none. */
  allow?: string[]
  /** Secret name → value, for the rules' `secretRef`. */
  secrets?: Record<string, string>
  /** Attempts per change before it is given up. @default 10 */
  maxAttempts?: number
  /** Seconds for one whole request. @default 10 */
  timeout?: number
}

/** What the API needs of the node's metrics (src/node/metrics.ts). */
export interface NodeMetricsApi {
  readonly registry: Registry
  readonly httpRequests: Counter<'method' | 'route' | 'status'>
  readonly httpSeconds: Histogram<'method' | 'route'>
}
