/**
 * Prometheus metrics: process defaults plus gauges computed from
 * node.status() at scrape time. Each server has its own registry.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import type { SyncNodeApi } from '../core/types.js'

export interface Metrics {
  contentType: string
  scrape (): Promise<string>
}

export function createMetrics (node: SyncNodeApi): Metrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })

  const peersConnected = new Gauge({
    name: 'syncmesh_peers_connected',
    help: 'Peers with an open connection',
    registers: [registry]
  })
  const peersKnown = new Gauge({
    name: 'syncmesh_peers_known',
    help: 'Peers this node knows about (connected or not)',
    registers: [registry]
  })
  const originSeq = new Gauge({
    name: 'syncmesh_origin_seq',
    help: 'Highest seq held contiguously for each origin',
    labelNames: ['origin'] as const,
    registers: [registry]
  })
  const originLag = new Gauge({
    name: 'syncmesh_origin_lag',
    help: 'Entries announced by connected peers but not yet held, per origin',
    labelNames: ['origin'] as const,
    registers: [registry]
  })
  const ruleApplied = new Gauge({
    name: 'syncmesh_rule_applied_total',
    help: 'Entries applied locally by each rule',
    labelNames: ['rule'] as const,
    registers: [registry]
  })
  const rulePending = new Gauge({
    name: 'syncmesh_rule_pending',
    help: "Entries of a local rule's source announced by peers but not yet received",
    labelNames: ['rule'] as const,
    registers: [registry]
  })
  const ruleConflicts = new Gauge({
    name: 'syncmesh_rule_conflicts_total',
    help: 'Conflicts each rule met on this node (see GET /v1/rules/:id/conflicts)',
    labelNames: ['rule'] as const,
    registers: [registry]
  })
  const ruleTransformErrors = new Gauge({
    name: 'syncmesh_rule_transform_errors_total',
    help: "Records each rule's transform module failed on (skipped) on this node",
    labelNames: ['rule'] as const,
    registers: [registry]
  })
  const caughtUp = new Gauge({
    name: 'syncmesh_caught_up',
    help: '1 when nothing is known to be missing from any connected peer',
    registers: [registry]
  })

  const dbCompactions = new Gauge({
    name: 'syncmesh_db_compactions_total',
    help: 'Full LevelDB compactions the node ran when idle after many deletions, since it started',
    registers: [registry]
  })
  const dbFlushes = new Gauge({
    name: 'syncmesh_db_memtable_flushes_total',
    help: 'LevelDB memtable flushes the node ran when idle or closing, since it started',
    registers: [registry]
  })

  const offences = new Counter({
    name: 'syncmesh_peer_offences_total',
    help: 'Batches from peers refused as invalid data (each disconnected the peer), per check (docs/troubleshooting.md)',
    labelNames: ['check'] as const,
    registers: [registry]
  })
  const bans = new Counter({
    name: 'syncmesh_peer_bans_total',
    help: 'Peers refused for a while after repeated offences, per check of the last offence',
    labelNames: ['check'] as const,
    registers: [registry]
  })
  const stalls = new Counter({
    name: 'syncmesh_sync_stalls_total',
    help: 'Batches a peer sent again and again and this node refused each time (a stuck stream), per check',
    labelNames: ['check'] as const,
    registers: [registry]
  })
  const stalled = new Gauge({
    name: 'syncmesh_sync_stalled',
    help: 'Stalls whose range this node does not hold yet',
    registers: [registry]
  })
  // connectors (docs/connectors.md): their totals since the node started, and the outbox rows not yet taken
  const connectorLabels = ['connector', 'kind', 'table', 'collection'] as const
  const connectorCounters = {
    captured: new Counter({ name: 'syncmesh_connector_captured_total', help: "Rows a connector took from its table's outbox into the node's log", labelNames: connectorLabels, registers: [registry] }),
    recaptured: new Counter({ name: 'syncmesh_connector_recaptured_total', help: 'Outbox rows taken again after a crash whose value the node already held (not written again)', labelNames: connectorLabels, registers: [registry] }),
    applied: new Counter({ name: 'syncmesh_connector_applied_total', help: 'Changes rules delivered that a connector wrote into its table (upserts and deletes)', labelNames: connectorLabels, registers: [registry] }),
    skippedFields: new Counter({ name: 'syncmesh_connector_skipped_fields_total', help: 'Record fields left out because the table has no column for them', labelNames: connectorLabels, registers: [registry] }),
    refusedRows: new Counter({ name: 'syncmesh_connector_refused_rows_total', help: 'Rows the table (apply) or the node (capture) refused; each is logged with its id', labelNames: connectorLabels, registers: [registry] }),
    errors: new Counter({ name: 'syncmesh_connector_errors_total', help: 'Capture or apply rounds that failed (retried); the last one is in status', labelNames: connectorLabels, registers: [registry] })
  }
  const connectorSeries = new Map<string, Record<typeof connectorLabels[number], string>>()
  const connectorLag = new Gauge({ name: 'syncmesh_connector_lag', help: "Outbox rows committed by the application and not yet taken into the node's log", labelNames: connectorLabels, registers: [registry] })
  const connectorRunning = new Gauge({ name: 'syncmesh_connector_running', help: '1 while the connector runs, 0 when it failed to start (see status)', labelNames: connectorLabels, registers: [registry] })

  // the node's totals only grow: each counter takes the growth since the last scrape
  const seen = new Map<string, number>()
  const add = (counter: Counter<'check'>, name: string, totals: Record<string, number> | undefined): void => {
    for (const [check, total] of Object.entries(totals ?? {})) {
      const key = `${name}\0${check}`
      const delta = total - (seen.get(key) ?? 0)
      if (delta > 0) counter.inc({ check }, delta)
      seen.set(key, total)
    }
  }

  return {
    contentType: registry.contentType,
    async scrape () {
      // one status() per scrape, so all gauges describe the same moment
      const status = await node.status()
      peersConnected.set(status.peers.filter((p) => p.connected).length)
      peersKnown.set(status.peers.length)
      originSeq.reset()
      originLag.reset()
      for (const o of status.origins) {
        originSeq.set({ origin: o.origin }, o.seq)
        originLag.set({ origin: o.origin }, o.lag)
      }
      ruleApplied.reset()
      rulePending.reset()
      ruleConflicts.reset()
      ruleTransformErrors.reset()
      for (const r of status.rules) {
        ruleApplied.set({ rule: r.id }, r.applied)
        if (typeof r.conflicts === 'number') ruleConflicts.set({ rule: r.id }, r.conflicts)
        if (typeof r.transformErrors === 'number') ruleTransformErrors.set({ rule: r.id }, r.transformErrors)
        if (typeof r.pending === 'number') rulePending.set({ rule: r.id }, r.pending)
      }
      caughtUp.set(status.caughtUp ? 1 : 0)
      dbCompactions.set(status.database?.compactions ?? 0)
      dbFlushes.set(status.database?.memtableFlushes ?? 0)
      add(offences, 'offences', status.offences?.byCheck)
      add(bans, 'bans', status.offences?.bansByCheck)
      add(stalls, 'stalls', status.stalls?.byCode)
      stalled.set(status.stalls?.active ?? 0)
      connectorLag.reset()
      connectorRunning.reset()
      const listed = new Set((status.connectors ?? []).map(c => c.id))
      for (const [id, labels] of connectorSeries) {
        if (listed.has(id)) continue
        // a removed connector's counters go with it
        for (const [field, counter] of Object.entries(connectorCounters)) {
          counter.remove(labels)
          seen.delete(`connector\0${id}\0${field}`)
        }
        connectorSeries.delete(id)
      }
      for (const c of status.connectors ?? []) {
        const labels = { connector: c.id, kind: c.kind, table: c.table, collection: c.collection }
        connectorSeries.set(c.id, labels)
        for (const [field, counter] of Object.entries(connectorCounters)) {
          const key = `connector\0${c.id}\0${field}`
          const total = c[field as keyof typeof connectorCounters]
          const delta = total - (seen.get(key) ?? 0)
          if (delta > 0) counter.inc(labels, delta)
          else if (!seen.has(key)) counter.inc(labels, 0) // listed from the first scrape, at 0
          seen.set(key, total)
        }
        connectorLag.set(labels, c.lag)
        connectorRunning.set(labels, c.running ? 1 : 0)
      }
      return await registry.metrics()
    }
  }
}
