/**
 * Who may change what: admin control of the registry, revocation of
 * platforms, and the bound on how far ahead of this node's clock a received
 * entry may be stamped. Decisions are made from the replicated registry and
 * this node's configuration, identically on every node that shares them
 * (docs/trust.md).
 */
import type { Logger } from 'pino'
import { SyncmeshError } from '../core/errors.js'
import type { LogEntry } from '../log/entry.js'
import { isLogOf, peerOf } from '../log/log-id.js'
import { DEFAULT_MAX_CLOCK_AHEAD_MS } from '../core/hlc.js'
import { encodeRevocation, platformWriteRefusal, revocationKey } from '../registry/registry.js'
import type { Registry } from '../registry/registry.js'
import { decodeJson } from '../store/db.js'
import type { Txn } from '../store/db.js'
import { KEYS_COLLECTION, PLATFORMS_COLLECTION } from '../store/names.js'
import { envelopeRefusal } from './stream-keys.js'
import type { IngestPolicy } from './ingest.js'
import type { JsonObject, Platform, RegistryRefusal } from '../core/types.js'

const MAX_REFUSALS_KEPT = 50

/** A received run refused for its clock: an offence when only a lying sender can explain it. */
export interface ClockRefusal {
  reason: string
  offence: boolean
}

export class TrustPolicy implements IngestPolicy {
  private readonly admins: ReadonlySet<string>
  private readonly registryView: Registry
  private readonly log: Logger
  private readonly self: string
  private readonly maxAheadMs: number
  private readonly now: () => number
  readonly refusals: RegistryRefusal[] = []
  refusedTotal = 0

  /** Whether this node carries rules by streams: without, no `$keys` record is applied (no honest node writes one). */
  private readonly streams: boolean

  constructor (init: { registry: Registry, logger: Logger, self: string, maxClockAheadMs?: number, now?: () => number, streams?: boolean }) {
    this.streams = init.streams === true
    this.registryView = init.registry
    this.admins = init.registry.adminSet
    this.log = init.logger
    this.self = init.self
    this.maxAheadMs = init.maxClockAheadMs ?? DEFAULT_MAX_CLOCK_AHEAD_MS
    this.now = init.now ?? Date.now
  }

  get adminList (): string[] {
    return [...this.admins]
  }

  get maxClockAheadMs (): number {
    return this.maxAheadMs
  }

  /** Refuse a local registry change up front when this node is not an admin. */
  assertAdmin (): void {
    if (this.admins.size > 0 && !this.admins.has(this.self)) {
      throw new SyncmeshError('NOT_ADMIN', `this node (${this.self}) is not one of the registry admins; make the change on an admin node (${[...this.admins].join(', ')})`, 403)
    }
  }

  /**
   * Refuse, before anything is written, a platform change from this node
   * that the registry would not hold as asked (`p` undefined: a delete).
   * Returns what the registry will hold.
   */
  assertPlatformChange (name: string, p: Platform | undefined): Platform | undefined {
    if (p !== undefined && p.revoked !== true && this.registryView.isRevoked(p.peerId)) {
      throw new SyncmeshError('PEER_REVOKED', `peer ${p.peerId} was revoked; a revoked peer id is never registered again (give the node a new identity with "syncmesh init")`, 409)
    }
    const { platform, contested } = this.registryView.preview(name, this.self, p)
    if (p === undefined) {
      if (platform === undefined && contested === undefined) return undefined
      if (platform?.revoked === true) throw new SyncmeshError('PLATFORM_STILL_CLAIMED', `platform "${name}" (peer ${platform.peerId}) was revoked: a revocation is permanent and stays listed`, 409)
      const by = platform !== undefined ? `${platform.peerId}'s own registration` : `the claims of ${contested?.join(' and ') ?? ''}`
      throw new SyncmeshError('PLATFORM_STILL_CLAIMED', `platform "${name}" would stay registered (${by}); revoke it to take it out of the mesh ("syncmesh platform revoke ${name}")`, 409)
    }
    if (contested !== undefined || platform?.peerId !== p.peerId) {
      const holder = contested !== undefined ? `claimed by ${contested.join(' and ')}` : `bound to ${platform?.peerId ?? 'another peer'}`
      const fix = this.admins.size > 0 ? 'only a registry admin can rebind it' : 'revoke that peer first, or configure registry admins (--admin) to rebind names'
      throw new SyncmeshError('NAME_TAKEN', `platform name "${name}" is ${holder}; ${fix}`, 409)
    }
    return platform
  }

  readonly registry = (entry: LogEntry, value: JsonObject | undefined): string | undefined => {
    const reason = entry.collection === PLATFORMS_COLLECTION
      ? platformWriteRefusal(this.admins, entry, value)
      : entry.collection === KEYS_COLLECTION
        // the envelopes of a stream's key come from the stream's origin only, admins included, and are envelopes
        ? !this.streams
            ? `${entry.origin} wrote a stream key's envelope, and this node does not carry rules by streams`
            : envelopeRefusal(entry.id, peerOf(entry.origin), entry.op, value)
        : this.admins.size === 0 || this.admins.has(entry.origin) ? undefined : `${entry.origin} is not a registry admin`
    if (reason === undefined) {
      if (entry.collection === PLATFORMS_COLLECTION && entry.op === 'put') this.noteClaim(entry, value)
      return undefined
    }
    this.refused(entry, reason, `refused a registry change to ${entry.collection}/${entry.id} from ${entry.origin}: not a registry admin`)
    return reason
  }

  /** A permitted claim that will not bind the name as it asks: say so (the registry resolves it, see registry.ts). */
  private noteClaim (entry: LogEntry, value: JsonObject | undefined): void {
    const peerId = value?.peerId
    if (typeof peerId !== 'string' || value?.revoked === true) return
    if (this.registryView.isRevoked(peerId)) {
      this.refused(entry, `${peerId} was revoked`, `refused a registration of ${entry.id} for revoked peer ${peerId} from ${entry.origin}: a revoked peer id is never registered again`)
      return
    }
    const current = this.registryView.platform(entry.id)
    if (current === undefined || current.peerId === peerId) return
    const admin = this.admins.has(entry.origin)
    if (admin) return // an admin rebinds
    this.log.warn({ origin: entry.origin, name: entry.id, holder: current.peerId }, `platform name "${entry.id}" is bound to ${current.peerId}; the claim of ${peerId} (from ${entry.origin}) does not take it${this.admins.size > 0 ? ' (only an admin can rebind it)' : ': the name is contested until one of them is revoked'}`)
  }

  private refused (entry: LogEntry, reason: string, message: string): void {
    this.refusedTotal++
    this.refusals.unshift({ origin: entry.origin, collection: entry.collection, id: entry.id, reason, at: new Date().toISOString() })
    this.refusals.length = Math.min(this.refusals.length, MAX_REFUSALS_KEPT)
    this.log.warn({ origin: entry.origin, collection: entry.collection, id: entry.id }, message)
  }

  /** Keep a revocation apart from the log (in the same transaction): later entries compact the log, a revocation stays. */
  readonly registryTxn = (txn: Txn, entry: LogEntry, value: JsonObject | undefined): void => {
    if (entry.collection !== PLATFORMS_COLLECTION || value?.revoked !== true || typeof value.peerId !== 'string') return
    const after = typeof value.revokedAfter === 'number' && Number.isSafeInteger(value.revokedAfter) && value.revokedAfter >= 0 ? value.revokedAfter : 0
    const key = revocationKey(value.peerId)
    const held = txn.get(key)
    const current = held !== undefined ? decodeJson<{ revokedAfter?: number, purge?: boolean }>(held) : undefined
    const revokedAfter = Math.min(after, current?.revokedAfter ?? after)
    const purge = value.purge === true || current?.purge === true
    if (current !== undefined && current.revokedAfter === revokedAfter && (current.purge === true) === purge) return
    txn.put(key, encodeRevocation({ peerId: value.peerId, revokedAfter, ...(purge ? { purge } : {}) }))
  }

  /**
   * Whether an entry of log `origin` (log-id.ts) at `seq` is accepted: the
   * revocation of its peer decides. A revocation names a position in the
   * peer's whole log only; a revoked peer's stream logs get no entry at all.
   */
  readonly acceptsEntry = (origin: string, seq: number): boolean => {
    const peer = peerOf(origin)
    const r = this.registryView.revocation(peer)
    return r === undefined || (peer === origin && seq <= r.revokedAfter)
  }

  /** Peers whose id was revoked (under any name): refused connections. */
  isRevoked (peer: string): boolean {
    return this.registryView.isRevoked(peer)
  }

  /**
   * CLOCK_AHEAD: `entries` of `origin`, received from `peer`, stamped
   * further ahead of this node's clock than the bound. The sender is an
   * offender when it is the origin (it stamped them), or when they are more
   * than twice the bound ahead: an honest relay accepted them within its own
   * bound, and honest clocks differ by less than the bound, so a relayed
   * entry up to twice the bound ahead may come from an honest relay (it is
   * refused now, and accepted once this node's clock has caught up).
   */
  clockAhead (peer: string, origin: string, entries: readonly LogEntry[]): ClockRefusal | undefined {
    let wall = 0
    for (const e of entries) if (e.hlc.wall > wall) wall = e.hlc.wall
    const ahead = wall - this.now()
    if (ahead <= this.maxAheadMs) return undefined
    const offence = isLogOf(origin, peer) || ahead > 2 * this.maxAheadMs
    return { offence, reason: `CLOCK_AHEAD: an entry of ${origin} is stamped ${describeMs(ahead)} ahead of this node's clock (the bound is ${describeMs(this.maxAheadMs)})` }
  }
}

function describeMs (ms: number): string {
  if (ms < 120_000) return `${Math.round(ms / 100) / 10} s`
  if (ms < 2 * 86_400_000) return `${Math.round(ms / 60_000)} min`
  return `${Math.round(ms / 86_400_000)} days`
}
