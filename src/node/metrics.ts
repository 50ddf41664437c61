/**
 * The node's Prometheus metrics, counted where the events happen: the sync
 * sessions count entries, bytes, frames and duplicates per peer as they send
 * and receive (through `traffic()`), the node counts offences, bans, stalls and
 * failed authentications as it acts on them, the write path counts what each
 * rule applied, and the store its compactions. Gauges (progress per origin,
 * peers connected, caught up) are read when scraped, as gauges are.
 *
 * Labels carry names besides ids: a peer is `peer` (its id) and `platform`
 * (its registry name, empty until it has one), a rule is `rule` (its id) and
 * `from`/`to` (`platform:collection`). Counters start at 0 when the node
 * starts (Prometheus' rate() and increase() handle the reset).
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { PeerCounters } from '../network/sync/session.js'

type PeerLabels = 'peer' | 'platform'
type RuleLabels = 'rule' | 'from' | 'to'

/** How a rule is named in labels. */
export interface RuleNames { from: string, to: string }

export class NodeMetrics {
  readonly registry = new Registry()
  readonly entriesReceived: Counter<PeerLabels>
  readonly entriesSent: Counter<PeerLabels>
  readonly bytesReceived: Counter<PeerLabels>
  readonly bytesSent: Counter<PeerLabels>
  readonly duplicates: Counter<PeerLabels>
  readonly frames: Counter<'type'>
  readonly offences: Counter<'check'>
  readonly bans: Counter<'check'>
  readonly stalls: Counter<'check'>
  readonly authFailures: Counter<never>
  readonly ruleCounts: Record<'applied' | 'conflicts' | 'transformErrors', Counter<RuleLabels>>
  readonly compactions: Counter<never>
  readonly flushes: Counter<never>
  /** Counted by the HTTP API (and the --metrics listener) as it answers. */
  readonly httpRequests: Counter<'method' | 'route' | 'status'>
  readonly httpSeconds: Histogram<'method' | 'route'>

  constructor (version: string, private readonly platformOf: (peer: string) => string | undefined, private readonly ruleNames: (ruleId: string) => RuleNames | undefined) {
    const registers = [this.registry]
    const perPeer = (name: string, help: string): Counter<PeerLabels> => new Counter({ name, help, labelNames: ['peer', 'platform'] as const, registers })
    const perRule = (name: string, help: string): Counter<RuleLabels> => new Counter({ name, help, labelNames: ['rule', 'from', 'to'] as const, registers })
    const perCheck = (name: string, help: string): Counter<'check'> => new Counter({ name, help, labelNames: ['check'] as const, registers })
    new Gauge({ name: 'syncmesh_build_info', help: 'Always 1; the version of syncmesh this node runs', labelNames: ['version'] as const, registers }).set({ version }, 1)
    this.entriesReceived = perPeer('syncmesh_sync_entries_received_total', 'Log entries received from each peer and stored (new to this node)')
    this.entriesSent = perPeer('syncmesh_sync_entries_sent_total', 'Log entries sent to each peer')
    this.bytesReceived = perPeer('syncmesh_sync_bytes_received_total', 'Bytes of sync frames received from each peer')
    this.bytesSent = perPeer('syncmesh_sync_bytes_sent_total', 'Bytes of batches sent to each peer')
    this.duplicates = perPeer('syncmesh_sync_duplicate_entries_total', 'Log entries received from each peer and not stored: already held (or past a revoked origin\'s revocation)')
    this.frames = new Counter({ name: 'syncmesh_sync_frames_received_total', help: 'Sync frames received, by frame type', labelNames: ['type'] as const, registers })
    this.offences = perCheck('syncmesh_peer_offences_total', 'Batches from peers refused as invalid data (each disconnected the peer), per check (docs/troubleshooting.md)')
    this.bans = perCheck('syncmesh_peer_bans_total', 'Peers refused for a while after repeated offences, per check of the last offence')
    this.stalls = perCheck('syncmesh_sync_stalls_total', 'Batches a peer sent again and again and this node refused each time (a stuck stream), per check')
    this.authFailures = new Counter({ name: 'syncmesh_auth_failures_total', help: 'Connections that failed mesh-key authentication (wrong or no key, too slow)', registers })
    this.ruleCounts = {
      applied: perRule('syncmesh_rule_applied_total', 'Entries each rule applied on this node'),
      conflicts: perRule('syncmesh_rule_conflicts_total', 'Conflicts each rule met on this node (GET /v1/rules/:id/conflicts)'),
      transformErrors: perRule('syncmesh_rule_transform_errors_total', "Records each rule's transform module failed on (skipped) on this node")
    }
    this.compactions = new Counter({ name: 'syncmesh_db_compactions_total', help: 'Full LevelDB compactions run when idle after many deletions', registers })
    this.flushes = new Counter({ name: 'syncmesh_db_memtable_flushes_total', help: 'LevelDB memtable flushes run when idle or closing', registers })
    this.httpRequests = new Counter({ name: 'syncmesh_http_requests_total', help: 'HTTP API requests answered, by method, route pattern and status', labelNames: ['method', 'route', 'status'] as const, registers })
    this.httpSeconds = new Histogram({ name: 'syncmesh_http_request_duration_seconds', help: 'Time to answer HTTP API requests, by method and route pattern', labelNames: ['method', 'route'] as const, buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30], registers })
  }

  /** The platform names each peer's series were labelled with: what `forgetPeer` removes. */
  private readonly peerSeries = new Map<string, Set<string>>()

  peerLabels (peer: string): Record<PeerLabels, string> {
    const platform = this.platformOf(peer) ?? ''
    let names = this.peerSeries.get(peer)
    if (names === undefined) this.peerSeries.set(peer, names = new Set())
    names.add(platform)
    return { peer, platform }
  }

  /**
   * The node forgot `peer` (it left and is neither known nor refused): its
   * series go with it, so peers that come and go leave no series behind.
   */
  forgetPeer (peer: string): void {
    const names = this.peerSeries.get(peer)
    if (names === undefined) return
    this.peerSeries.delete(peer)
    for (const counter of [this.entriesReceived, this.entriesSent, this.bytesReceived, this.bytesSent, this.duplicates]) {
      for (const platform of names) counter.remove({ peer, platform })
    }
  }

  /** A rule's counter (`applied`, `conflicts`, `transformErrors`) grew by `delta` on this node. */
  ruleCounted (ruleId: string, name: string, delta: number): void {
    if (delta <= 0 || !(name in this.ruleCounts)) return
    const names = this.ruleNames(ruleId)
    this.ruleCounts[name as keyof NodeMetrics['ruleCounts']].inc({ rule: ruleId, from: names?.from ?? '', to: names?.to ?? '' }, delta)
  }

  /**
   * The traffic counters a sync session with `peer` updates: the peer's own
   * totals (`base`, shown in status) and, as they grow, the counters above.
   */
  traffic (peer: string, base: PeerCounters): PeerCounters {
    return new CountedTraffic(base, this, peer)
  }
}

/** PeerCounters whose every increment is also counted in the node's metrics. */
class CountedTraffic implements PeerCounters {
  constructor (private readonly base: PeerCounters, private readonly m: NodeMetrics, private readonly peer: string) {}

  private grow (counter: Counter<PeerLabels>, from: number, to: number): void {
    if (to > from) counter.inc(this.m.peerLabels(this.peer), to - from)
  }

  get entriesSent (): number { return this.base.entriesSent }
  set entriesSent (n: number) { this.grow(this.m.entriesSent, this.base.entriesSent, n); this.base.entriesSent = n }
  get entriesReceived (): number { return this.base.entriesReceived }
  set entriesReceived (n: number) { this.grow(this.m.entriesReceived, this.base.entriesReceived, n); this.base.entriesReceived = n }
  get bytesSent (): number { return this.base.bytesSent }
  set bytesSent (n: number) { this.grow(this.m.bytesSent, this.base.bytesSent, n); this.base.bytesSent = n }
  get bytesReceived (): number { return this.base.bytesReceived }
  set bytesReceived (n: number) { this.grow(this.m.bytesReceived, this.base.bytesReceived, n); this.base.bytesReceived = n }

  duplicates (n: number): void {
    if (n > 0) this.m.duplicates.inc(this.m.peerLabels(this.peer), n)
  }

  frame (type: string): void {
    this.m.frames.inc({ type })
  }
}
