/**
 * The domain types of the public surface (library, HTTP API, CLI).
 * Wire types (protobuf) never leave src/network; storage encodings never leave src/store.
 */

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
}

export type RuleMode = 'merge' | 'mirror' | 'insert-only'

export interface Endpoint {
  platform: string
  collection: string
}

/** What an operator supplies to create a rule. */
export interface RuleSpec {
  from: Endpoint
  to: Endpoint
  mode?: RuleMode
  /** Filter on the source value (see src/rules/filter.ts for the grammar). */
  where?: JsonObject
  include?: string[]
  exclude?: string[]
  /** old field name → new field name */
  rename?: Record<string, string>
  /** Use this field of the source value as the target record's id. */
  key?: string
}

export interface Rule extends RuleSpec {
  id: string
  mode: RuleMode
  createdAt: string
}

export interface PeerInfo {
  peerId: string
  addrs: string[]
  connected: boolean
  /** Proved the mesh key on the current connection. */
  authenticated: boolean
  /** ISO time of the last successful contact, if any. */
  lastSeen?: string
  /** Added by an operator (persisted and redialled) rather than only discovered. */
  persisted: boolean
  entriesSent: number
  entriesReceived: number
  bytesSent: number
  bytesReceived: number
  lastError?: string
  /** Batches from this peer that failed verification (each one disconnected it). */
  offences?: number
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
  /** Why the rule is not active on this node, if it should be. */
  problem?: string
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
  /** True when nothing is known to be missing from any connected peer. */
  caughtUp: boolean
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
}

export interface RecordsApi {
  put (collection: string, id: string, value: JsonObject): Promise<StoredRecord>
  get (collection: string, id: string): Promise<StoredRecord | undefined>
  /** Returns false when there was no live record. */
  delete (collection: string, id: string): Promise<boolean>
  list (collection: string, options?: { after?: string, limit?: number }): Promise<RecordPage>
  /** Imports in atomic batches; each batch is durable once counted. */
  import (collection: string, lines: AsyncIterable<ImportLine> | Iterable<ImportLine>, onProgress?: (count: number) => void): Promise<{ imported: number }>
}

export interface PeersApi {
  add (multiaddr: string): Promise<PeerInfo>
  list (): Promise<PeerInfo[]>
  remove (peerId: string): Promise<boolean>
}

export interface RegistryApi {
  platforms (): Platform[]
  addPlatform (platform: Platform): Promise<Platform>
  removePlatform (name: string): Promise<boolean>
  rules (): Rule[]
  addRule (spec: RuleSpec): Promise<Rule>
  removeRule (id: string): Promise<boolean>
}

/** What the HTTP API and other embedders need from a running node. */
export interface SyncNodeApi extends EventTarget {
  readonly peerId: string
  readonly name: string
  readonly region?: string
  readonly records: RecordsApi
  readonly peers: PeersApi
  readonly registry: RegistryApi
  /** Listening multiaddrs including /p2p/PEER_ID. */
  getMultiaddrs (): string[]
  status (): Promise<NodeStatus>
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
  /** Connections sought through registry discovery. @default 6 */
  targetConnections?: number
  /** Hard cap on open connections. @default 16 */
  maxConnections?: number
  /** A pino logger; defaults to a silent one. */
  logger?: import('pino').Logger
}
