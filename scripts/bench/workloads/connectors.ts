/**
 * 6. Connectors (docs/connectors.md): rows per second from the commit in
 * application database A to the commit in application database B.
 *
 * Two node processes, a rule a:items → b:items, an `out` connector on A's
 * table and an `in` connector on B's. The application commits N rows
 * (~250 bytes of JSON each, the same records as the bulk workload) in ONE
 * transaction; the clock starts when that commit returns and stops when B's
 * table holds all N rows (a separate read-only connection counts them every
 * 20 ms). On the way it notes when A's log holds them all (capture) and when
 * B's node has applied them (the rule's applied count), so the report shows
 * where the time goes.
 *
 *   sqlite    SQLite A → SQLite B
 *   postgres  PostgreSQL A (a server started in the cluster's temp dir with the
 *             system's initdb/pg_ctl; skipped when none is installed) → SQLite B
 *   api       the same N records written through A's HTTP API (streamed NDJSON
 *             import) instead of a table, until B's node has applied them: the
 *             plain sync rate the connectors are compared with
 *
 * The aim: the sync, not the connector, is the bottleneck, i.e. the
 * connector rate stays close to the API rate (derived figures at the end).
 * Row count: --connector-rows N (default 100,000; --quick 2,000).
 */
import { join } from 'node:path'
import Database from 'better-sqlite3'
import pg from 'pg'
import type { JsonObject } from '../../../src/core/types.js'
import { runCli } from '../../lib/cluster.js'
import type { NodeProcess } from '../../lib/cluster.js'
import { ndjsonChunks, recordId, recordValue } from '../data.js'
import { applied, now, originSeq, sleep, until } from '../env.js'
import type { BenchCluster } from '../env.js'
import { postgresBin, startPostgres } from '../../lib/postgres.js'
import type { Context, FigureDef, RunResult, Workload } from '../types.js'
import { fmtN } from './util.js'

const TABLE_SQLITE = 'CREATE TABLE items (id TEXT PRIMARY KEY, n INTEGER, rev INTEGER, title TEXT, status TEXT, body TEXT)'
const TABLE_PG = 'CREATE TABLE items (id text PRIMARY KEY, n integer, rev integer, title text, status text, body text)'

export function connectorsWorkload (sizes: { connectorRows: number }): Workload {
  const n = sizes.connectorRows
  const w = 'connectors'
  const figures: FigureDef[] = []
  for (const [kind, label] of [['sqlite', 'SQLite → SQLite'], ['postgres', 'PostgreSQL → SQLite']]) {
    figures.push(
      { id: `${w}.${kind}.rows_per_s`, workload: w, label: `${label}, ${fmtN(n)} rows in one transaction: commit in A → commit in B`, unit: 'rows/s', digits: 0 },
      { id: `${w}.${kind}.seconds`, workload: w, label: `${label}: commit in A → all rows in B's table`, unit: 's', digits: 2 },
      { id: `${w}.${kind}.capture_rows_per_s`, workload: w, label: `${label}: commit in A → all rows in A's log (capture)`, unit: 'rows/s', digits: 0 },
      { id: `${w}.${kind}.apply_lag_s`, workload: w, label: `${label}: B's node holds all → B's table holds all (apply)`, unit: 's', digits: 2 }
    )
  }
  figures.push(
    { id: `${w}.api.records_per_s`, workload: w, label: `the same ${fmtN(n)} records through A's API (import) → applied on B`, unit: 'rec/s', digits: 0 },
    { id: `${w}.sqlite.vs_api`, workload: w, label: 'SQLite → SQLite rate / API rate', unit: 'x', digits: 2 },
    { id: `${w}.postgres.vs_api`, workload: w, label: 'PostgreSQL → SQLite rate / API rate', unit: 'x', digits: 2 }
  )
  return {
    name: w,
    title: `Connectors: ${fmtN(n)} rows from a table on one node to a table on another`,
    figures,
    async run (ctx, _run) {
      const out: RunResult = { values: {}, info: {} }
      const api = await apiOnce(ctx, n)
      out.values[`${w}.api.records_per_s`] = api
      const sqlite = await connectorOnce(ctx, n, 'sqlite')
      Object.assign(out.values, prefixed('sqlite', sqlite))
      out.values[`${w}.sqlite.vs_api`] = sqlite.rowsPerS / api
      if (postgresBin() !== undefined) {
        const pgr = await connectorOnce(ctx, n, 'postgres')
        Object.assign(out.values, prefixed('postgres', pgr))
        out.values[`${w}.postgres.vs_api`] = pgr.rowsPerS / api
      } else {
        ctx.log('    no PostgreSQL server installed (/usr/lib/postgresql/*/bin/initdb): the postgres figures are left out')
        ;(out.info as Record<string, unknown>).postgres = 'skipped: no PostgreSQL server installed'
      }
      return out
    }
  }
}

interface Timing { rowsPerS: number, seconds: number, captureRowsPerS: number, applyLagS: number }

function prefixed (kind: string, t: Timing): Record<string, number> {
  return {
    [`connectors.${kind}.rows_per_s`]: t.rowsPerS,
    [`connectors.${kind}.seconds`]: t.seconds,
    [`connectors.${kind}.capture_rows_per_s`]: t.captureRowsPerS,
    [`connectors.${kind}.apply_lag_s`]: t.applyLagS
  }
}

/** Two started nodes, B dialled to A, both knowing each other's platform, and the rule a:COLL → b:COLL. */
async function pair (ctx: Context, label: string, collection: string): Promise<{ cl: BenchCluster, a: NodeProcess, b: NodeProcess, ruleId: string }> {
  const cl = await ctx.cluster(`connectors-${label}`)
  const a = await cl.add('a')
  const b = await cl.add('b')
  await Promise.all([cl.start(a), cl.start(b)])
  await b.addPeer(a.multiaddr)
  await until(async () => ((await a.request<unknown[]>('GET', '/v1/platforms')).body).length === 2, 'A to know B', 60_000)
  const ruleId = await cl.addRule(a, { from: { platform: 'a', collection }, to: { platform: 'b', collection } })
  await until(async () => (await cl.status(b)).rules.some(r => r.id === ruleId), 'B to know the rule', 60_000)
  return { cl, a, b, ruleId }
}

async function cli (node: NodeProcess, args: string[]): Promise<void> {
  const r = await runCli([...args, '--data', node.dir, '--json'])
  if (r.code !== 0) throw new Error(`syncmesh ${args.join(' ')}: ${r.stderr.trim()}`)
}

async function apiOnce (ctx: Context, n: number): Promise<number> {
  const { cl, a, b, ruleId } = await pair(ctx, 'api', 'items')
  const tb = cl.client(b)
  const t0 = now()
  const imported = await a.importStream('items', ndjsonChunks(n))
  if (imported !== n) throw new Error(`A imported ${imported} of ${n} records`)
  await until(async () => applied(await tb.status(), ruleId) >= n, `B to apply ${n} records`, Math.max(120_000, n * 3), 20)
  const seconds = (now() - t0) / 1000
  ctx.log(`    api: ${fmtN(n)} records imported on A and applied on B in ${seconds.toFixed(2)} s (${fmtN(n / seconds)} rec/s)`)
  return n / seconds
}

async function connectorOnce (ctx: Context, n: number, kind: 'sqlite' | 'postgres'): Promise<Timing> {
  const { cl, a, b, ruleId } = await pair(ctx, kind, 'items')
  const fileB = join(cl.parent, 'app-b.db')
  const appB = new Database(fileB)
  appB.pragma('journal_mode = WAL')
  appB.exec(TABLE_SQLITE)
  let server: { url: string, stop: () => void } | undefined
  let appA: Database.Database | undefined
  let pgA: pg.Client | undefined
  try {
    if (kind === 'postgres') {
      server = await startPostgres(cl.parent)
      pgA = new pg.Client({ connectionString: server.url })
      await pgA.connect()
      await pgA.query(TABLE_PG)
      await cli(a, ['connector', 'add', 'postgres', '--url', server.url, '--table', 'items', '--collection', 'items', '--id', 'id', '--direction', 'out'])
    } else {
      appA = new Database(join(cl.parent, 'app-a.db'))
      appA.pragma('journal_mode = WAL')
      appA.exec(TABLE_SQLITE)
      await cli(a, ['connector', 'add', 'sqlite', '--db', join(cl.parent, 'app-a.db'), '--table', 'items', '--collection', 'items', '--id', 'id', '--direction', 'out'])
    }
    await cli(b, ['connector', 'add', 'sqlite', '--db', fileB, '--table', 'items', '--collection', 'items', '--id', 'id', '--direction', 'in'])

    const rows: Array<[string, JsonObject]> = []
    for (let i = 0; i < n; i++) rows.push([recordId('r', i), recordValue(i)])
    const ta = cl.client(a)
    const tb = cl.client(b)
    const seq0 = originSeq(await ta.status(), a.peerId)
    // the application's one transaction
    if (pgA !== undefined) {
      const col = (f: string): unknown[] => rows.map(([, v]) => v[f])
      await pgA.query('BEGIN')
      await pgA.query('INSERT INTO items (id, n, rev, title, status, body) SELECT * FROM unnest($1::text[], $2::int[], $3::int[], $4::text[], $5::text[], $6::text[])',
        [rows.map(([id]) => id), col('n'), col('rev'), col('title'), col('status'), col('body')])
      await pgA.query('COMMIT')
    } else {
      const db = appA as Database.Database
      const insert = db.prepare('INSERT INTO items (id, n, rev, title, status, body) VALUES (?, ?, ?, ?, ?, ?)')
      db.transaction(() => { for (const [id, v] of rows) insert.run(id, v.n, v.rev, v.title, v.status, v.body) })()
    }
    const t0 = now()
    const reader = new Database(fileB, { readonly: true })
    const count = reader.prepare('SELECT count(*) AS n FROM items').pluck()
    let captured: number | undefined
    let appliedOnB: number | undefined
    let inTable: number | undefined
    const deadline = t0 + Math.max(180_000, n * 5)
    try {
      while (inTable === undefined) {
        if (now() > deadline) throw new Error(`B's table holds ${String(count.get())} of ${n} rows after ${Math.round((now() - t0) / 1000)} s`)
        if ((count.get() as number) >= n) inTable = now()
        if (captured === undefined && originSeq(await ta.status(), a.peerId) - seq0 >= n) captured = now()
        if (appliedOnB === undefined && applied(await tb.status(), ruleId) >= n) appliedOnB = now()
        if (inTable === undefined) await sleep(20)
      }
    } finally {
      reader.close()
    }
    captured ??= inTable
    appliedOnB ??= inTable
    const seconds = (inTable - t0) / 1000
    ctx.log(`    ${kind}: ${fmtN(n)} rows: in A's log after ${((captured - t0) / 1000).toFixed(2)} s, applied on B's node after ${((appliedOnB - t0) / 1000).toFixed(2)} s, in B's table after ${seconds.toFixed(2)} s (${fmtN(n / seconds)} rows/s)`)
    // a sample of rows is right
    for (const i of [0, Math.floor(n / 2), n - 1]) {
      const row = appB.prepare('SELECT n, rev, title, status, body FROM items WHERE id = ?').get(recordId('r', i))
      if (JSON.stringify(row) !== JSON.stringify(recordValue(i))) throw new Error(`row ${recordId('r', i)} in B's table is ${JSON.stringify(row)}`)
    }
    return { rowsPerS: n / seconds, seconds, captureRowsPerS: n / ((captured - t0) / 1000), applyLagS: (inTable - appliedOnB) / 1000 }
  } finally {
    appA?.close()
    appB.close()
    await pgA?.end().catch(() => {})
    // the nodes go first (their connectors hold connections), then the server
    await Promise.all(cl.nodes.map(async nd => await nd.kill().catch(() => {})))
    server?.stop()
  }
}
