/**
 * Who may change what: admin control of the registry and revocation of
 * platforms. Decisions are made from the replicated registry and this node's
 * configuration, identically on every node that shares them.
 */
import type { Logger } from 'pino'
import { SyncmeshError } from '../errors.js'
import type { LogEntry } from '../log/entry.js'
import type { Registry } from '../registry/registry.js'
import { PLATFORMS_COLLECTION } from '../store/names.js'
import type { IngestPolicy } from './ingest.js'
import type { JsonObject, RegistryRefusal } from './types.js'

const MAX_REFUSALS_KEPT = 50

export class TrustPolicy implements IngestPolicy {
  private readonly admins: Set<string>
  private readonly registryView: Registry
  private readonly log: Logger
  private readonly self: string
  readonly refusals: RegistryRefusal[] = []
  refusedTotal = 0

  constructor (init: { admins?: string[], registry: Registry, logger: Logger, self: string }) {
    this.admins = new Set(init.admins ?? [])
    this.registryView = init.registry
    this.log = init.logger
    this.self = init.self
  }

  get adminList (): string[] {
    return [...this.admins]
  }

  /** Refuse a local registry change up front when this node is not an admin. */
  assertAdmin (): void {
    if (this.admins.size > 0 && !this.admins.has(this.self)) {
      throw new SyncmeshError('NOT_ADMIN', `this node (${this.self}) is not one of the registry admins; make the change on an admin node (${[...this.admins].join(', ')})`, 403)
    }
  }

  readonly registry = (entry: LogEntry, value: JsonObject | undefined): string | undefined => {
    if (this.admins.size === 0 || this.admins.has(entry.origin)) return undefined
    // a node may always publish (and update) its own platform entry, unless the name belongs to another peer
    if (entry.collection === PLATFORMS_COLLECTION && entry.op === 'put' && value !== undefined &&
        value.peerId === entry.origin && value.name === entry.id && value.revoked !== true) {
      const current = this.registryView.platform(entry.id)
      if (current === undefined || current.peerId === entry.origin) return undefined
    }
    const reason = `${entry.origin} is not a registry admin`
    this.refusedTotal++
    this.refusals.unshift({ origin: entry.origin, collection: entry.collection, id: entry.id, reason, at: new Date().toISOString() })
    this.refusals.length = Math.min(this.refusals.length, MAX_REFUSALS_KEPT)
    this.log.warn({ origin: entry.origin, collection: entry.collection, id: entry.id }, `refused a registry change to ${entry.collection}/${entry.id} from ${entry.origin}: not a registry admin`)
    return reason
  }

  readonly acceptsEntry = (origin: string, seq: number): boolean => {
    const p = this.registryView.platformByPeer(origin)
    return p?.revoked !== true || seq <= (p.revokedAfter ?? 0)
  }

  /** Peers of revoked platforms: refused connections. */
  isRevoked (peer: string): boolean {
    return this.registryView.platformByPeer(peer)?.revoked === true
  }
}
