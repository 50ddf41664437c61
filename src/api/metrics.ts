/**
 * What /metrics serves: the process's default metrics, the node's own
 * counters (src/node/metrics.ts: counted where the events happen), and gauges
 * of the node's state read from one status() per scrape (so they all describe
 * the same moment). Each server has its own registry for the process metrics
 * and the gauges; the node's counters are shared.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import type { NodeStatus, SyncNodeApi } from '../core/types.js'

export interface Metrics {
  contentType: string
  scrape (): Promise<string>
}

type Read = () => NodeStatus | undefined

/** A metric's options when its value is read from the scrape's status: it is reset and filled at each scrape. */
function fromStatus<L extends string, M extends { reset: () => void }> (registry: Registry, read: Read, spec: { name: string, help: string, labelNames?: readonly L[] }, fill: (m: M, s: NodeStatus) => void): { name: string, help: string, labelNames: readonly L[], registers: Registry[], collect: (this: M) => void } {
  return {
    ...spec,
    labelNames: spec.labelNames ?? [],
    registers: [registry],
    collect () {
      const s = read()
      this.reset()
      if (s !== undefined) fill(this, s)
    }
  }
}

/** A gauge whose value is read from the scrape's status. */
function stateGauge<L extends string> (registry: Registry, read: Read, spec: { name: string, help: string, labelNames?: readonly L[] }, fill: (g: Gauge<L>, s: NodeStatus) => void): void {
  // eslint-disable-next-line no-new
  new Gauge<L>(fromStatus<L, Gauge<L>>(registry, read, spec, fill))
}

/** A counter whose value is a total read from the scrape's status (kept by the part that counts it). */
function stateCounter<L extends string> (registry: Registry, read: Read, spec: { name: string, help: string, labelNames?: readonly L[] }, fill: (c: Counter<L>, s: NodeStatus) => void): void {
  // eslint-disable-next-line no-new
  new Counter<L>(fromStatus<L, Counter<L>>(registry, read, spec, fill))
}

function nodeGauges (registry: Registry, read: Read): void {
  stateCounter(registry, read, { name: 'syncmesh_db_batches_written_total', help: 'Atomic LevelDB write batches since the node started' }, (c, s) => c.inc(s.database?.written?.batches ?? 0))
  stateCounter(registry, read, { name: 'syncmesh_db_keys_written_total', help: 'LevelDB keys put and deleted since the node started', labelNames: ['op'] as const }, (c, s) => {
    c.inc({ op: 'put' }, s.database?.written?.puts ?? 0)
    c.inc({ op: 'delete' }, s.database?.written?.deletes ?? 0)
  })
  stateCounter(registry, read, { name: 'syncmesh_db_bytes_written_total', help: 'Bytes given to LevelDB since the node started (key characters plus value bytes)' }, (c, s) => c.inc(s.database?.written?.bytes ?? 0))
  stateGauge(registry, read, { name: 'syncmesh_peers_connected', help: 'Peers with an open connection' }, (g, s) => g.set(s.peers.filter(p => p.connected).length))
  stateGauge(registry, read, { name: 'syncmesh_peers_known', help: 'Peers this node knows about (connected or not)' }, (g, s) => g.set(s.peers.length))
  stateGauge(registry, read, { name: 'syncmesh_origin_seq', help: 'Highest seq held contiguously for each origin', labelNames: ['origin', 'platform'] as const }, (g, s) => {
    for (const o of s.origins) g.set({ origin: o.origin, platform: o.platform ?? '' }, o.seq)
  })
  stateGauge(registry, read, { name: 'syncmesh_origin_lag', help: 'Entries announced by connected peers but not yet held, per origin', labelNames: ['origin', 'platform'] as const }, (g, s) => {
    for (const o of s.origins) g.set({ origin: o.origin, platform: o.platform ?? '' }, o.lag)
  })
  stateGauge(registry, read, { name: 'syncmesh_rule_pending', help: "Entries of a local rule's source announced by peers but not yet received", labelNames: ['rule', 'from', 'to'] as const }, (g, s) => {
    for (const r of s.rules) if (typeof r.pending === 'number') g.set({ rule: r.id, from: r.from, to: r.to }, r.pending)
  })
  stateGauge(registry, read, { name: 'syncmesh_caught_up', help: '1 when nothing is known to be missing from any connected peer' }, (g, s) => g.set(s.caughtUp ? 1 : 0))
  stateGauge(registry, read, { name: 'syncmesh_sync_stalled', help: 'Stalls whose range this node does not hold yet' }, (g, s) => g.set(s.stalls?.active ?? 0))
}

const connectorLabels = ['connector', 'kind', 'table', 'collection'] as const
type ConnectorLabels = typeof connectorLabels[number]
const CONNECTOR_COUNTERS = {
  captured: ['syncmesh_connector_captured_total', "Rows a connector took from its table's outbox into the node's log"],
  recaptured: ['syncmesh_connector_recaptured_total', 'Outbox rows taken again after a crash whose value the node already held (not written again)'],
  applied: ['syncmesh_connector_applied_total', 'Changes rules delivered that a connector wrote into its table (upserts and deletes)'],
  skippedFields: ['syncmesh_connector_skipped_fields_total', 'Record fields left out because the table has no column for them'],
  refusedRows: ['syncmesh_connector_refused_rows_total', 'Rows the table (apply) or the node (capture) refused; each is logged with its id'],
  errors: ['syncmesh_connector_errors_total', 'Capture or apply rounds that failed (retried); the last one is in status']
} as const

/**
 * Connectors (docs/connectors.md) keep their totals since the node started; each counter takes
 * the growth since the last scrape, and a removed connector's series go with it.
 */
function connectorMetrics (registry: Registry, read: Read): () => void {
  const counters = Object.fromEntries(Object.entries(CONNECTOR_COUNTERS).map(([field, [name, help]]) =>
    [field, new Counter({ name, help, labelNames: connectorLabels, registers: [registry] })])) as Record<keyof typeof CONNECTOR_COUNTERS, Counter<ConnectorLabels>>
  stateGauge(registry, read, { name: 'syncmesh_connector_lag', help: "Outbox rows committed by the application and not yet taken into the node's log", labelNames: connectorLabels }, (g, s) => {
    for (const c of s.connectors ?? []) g.set({ connector: c.id, kind: c.kind, table: c.table, collection: c.collection }, c.lag)
  })
  stateGauge(registry, read, { name: 'syncmesh_connector_running', help: '1 while the connector runs, 0 when it failed to start (see status)', labelNames: connectorLabels }, (g, s) => {
    for (const c of s.connectors ?? []) g.set({ connector: c.id, kind: c.kind, table: c.table, collection: c.collection }, c.running ? 1 : 0)
  })
  const seen = new Map<string, number>()
  const series = new Map<string, Record<ConnectorLabels, string>>()
  return () => {
    const list = read()?.connectors ?? []
    const listed = new Set(list.map(c => c.id))
    for (const [id, labels] of series) {
      if (listed.has(id)) continue
      for (const [field, counter] of Object.entries(counters)) {
        counter.remove(labels)
        seen.delete(`${id}\0${field}`)
      }
      series.delete(id)
    }
    for (const c of list) {
      const labels = { connector: c.id, kind: c.kind, table: c.table, collection: c.collection }
      series.set(c.id, labels)
      for (const [field, counter] of Object.entries(counters)) {
        const key = `${c.id}\0${field}`
        const total = c[field as keyof typeof counters]
        const delta = total - (seen.get(key) ?? 0)
        if (delta > 0) counter.inc(labels, delta)
        else if (!seen.has(key)) counter.inc(labels, 0) // listed from the first scrape, at 0
        seen.set(key, total)
      }
    }
  }
}

export function createMetrics (node: SyncNodeApi): Metrics {
  const own = new Registry()
  collectDefaultMetrics({ register: own })
  let status: NodeStatus | undefined
  const read: Read = () => status
  nodeGauges(own, read)
  const connectors = connectorMetrics(own, read)
  const registry = node.metrics !== undefined ? Registry.merge([own, node.metrics.registry]) : own
  return {
    contentType: registry.contentType,
    async scrape () {
      status = await node.status()
      try {
        connectors()
        return await registry.metrics()
      } finally {
        status = undefined
      }
    }
  }
}
