/**
 * syncmesh connector add | ls | status | rm (docs/connectors.md): the
 * running node's connectors, over its HTTP API.
 */
import { resolve } from 'node:path'
import type { Command } from 'commander'
import type { ConnectorStatus } from '../../connectors/connector.js'
import { SyncmeshError } from '../../core/errors.js'
import { readApiFile } from '../../node/config.js'
import { UsageError, addClientOptions, addJsonOption, parseList } from '../common.js'
import type { ClientOptions, JsonOption } from '../common.js'
import { printJson, printLine, table } from '../output.js'

type Opts = ClientOptions & JsonOption

async function endpoint (opts: ClientOptions): Promise<{ url: string, token: string }> {
  const env = (name: string): string | undefined => process.env[name] !== undefined && process.env[name] !== '' ? process.env[name] : undefined
  if (opts.api != null) {
    const token = opts.token ?? env('SYNCMESH_TOKEN') ?? (opts.data != null ? (await readApiFile(opts.data)).token : undefined)
    if (token == null) throw new UsageError('--api needs --token TOKEN (or $SYNCMESH_TOKEN); the running node writes it to DATA_DIR/api.json')
    return { url: opts.api.replace(/\/+$/, ''), token }
  }
  if (opts.data != null) {
    const file = await readApiFile(opts.data)
    return { url: file.url, token: opts.token ?? file.token }
  }
  const api = env('SYNCMESH_API')
  const token = opts.token ?? env('SYNCMESH_TOKEN')
  if (api != null && token != null) return { url: api.replace(/\/+$/, ''), token }
  throw new UsageError('which node? pass --data DIR (of a running node) or --api URL --token TOKEN (or set $SYNCMESH_API and $SYNCMESH_TOKEN)')
}

async function call<T> (opts: ClientOptions, method: string, path: string, body?: unknown): Promise<T> {
  const { url, token } = await endpoint(opts)
  let res: Response
  try {
    res = await fetch(url + path, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(60_000)
    })
  } catch (err) {
    throw new SyncmeshError('NODE_UNREACHABLE', `cannot reach the node at ${url}: ${(err as Error).message}; is it running?`, 503)
  }
  const text = await res.text()
  let parsed: unknown
  try { parsed = JSON.parse(text) } catch { parsed = undefined }
  if (!res.ok) {
    const error = (parsed as { error?: { code?: string, message?: string } } | undefined)?.error
    throw new SyncmeshError(error?.code ?? 'HTTP_ERROR', error?.message ?? `the node answered ${res.status}`, res.status)
  }
  return parsed as T
}

function arrow (c: ConnectorStatus): string {
  return c.direction === 'out' ? '→' : c.direction === 'in' ? '←' : '↔'
}

async function printStatus (c: ConnectorStatus): Promise<void> {
  await printLine(`connector ${c.id}: ${c.kind} ${c.db} table ${c.table} (id ${c.idColumn}) ${arrow(c)} collection ${c.collection}${c.columns !== undefined ? ` columns ${c.columns.join(',')}` : ''}`)
  await printLine(`  ${c.running ? 'running' : 'NOT running'}; lag ${c.lag} outbox rows; captured ${c.captured} (${c.recaptured} retaken after a crash, not written again); applied ${c.applied}`)
  await printLine(`  skipped fields ${c.skippedFields}; refused rows ${c.refusedRows}; errors ${c.errors}${c.cursor !== undefined ? `; feed cursor ${c.cursor}` : ''}`)
  if (c.lastRefused !== undefined) await printLine(`  last refused: record "${c.lastRefused.id}" at ${c.lastRefused.at}: ${c.lastRefused.message}`)
  if (c.lastError !== undefined) await printLine(`  last error at ${c.lastError.at}: ${c.lastError.message}`)
}

export function registerConnectorCommands (program: Command): void {
  const connector = program.command('connector').description("sync a table of the application's database with a collection")

  const add = connector.command('add').description('bind a table to a collection on the running node')
  type AddOpts = Opts & { db?: string, url?: string, table: string, collection: string, id: string, direction: string, columns?: string }
  const common = (cmd: Command): Command => addClientOptions(addJsonOption(cmd
    .requiredOption('--table <table>', 'the table')
    .requiredOption('--collection <collection>', 'the collection')
    .requiredOption('--id <column>', 'the column holding the record id (primary key or unique)')
    .option('--direction <direction>', 'both, out (table → collection) or in (collection → table)', 'both')
    .option('--columns <a,b,…>', 'only these columns (default: all)')))
  const addAction = (kind: 'sqlite' | 'postgres') => async (opts: AddOpts) => {
    if (!['both', 'out', 'in'].includes(opts.direction)) throw new UsageError(`--direction must be both, out or in (got "${opts.direction}")`)
    const body = {
      kind,
      db: kind === 'sqlite' ? resolve(opts.db as string) : opts.url as string,
      table: opts.table,
      collection: opts.collection,
      idColumn: opts.id,
      direction: opts.direction,
      ...(opts.columns !== undefined ? { columns: parseList(opts.columns, '--columns') } : {})
    }
    const c = await call<ConnectorStatus>(opts, 'POST', '/v1/connectors', body)
    if (opts.json === true) await printJson(c)
    else await printLine(`added connector ${c.id}: ${c.table} ${arrow(c)} ${c.collection}`)
  }
  common(add.command('sqlite').description('a table of a SQLite database file')
    .requiredOption('--db <file>', 'the SQLite database file'))
    .action(addAction('sqlite'))
  common(add.command('postgres').description('a table of a PostgreSQL database (the current schema of the URL\'s user)')
    .requiredOption('--url <url>', 'postgres://USER:PASSWORD@HOST:PORT/DATABASE (kept in DATA_DIR/connectors.json, mode 0600)'))
    .action(addAction('postgres'))

  addClientOptions(addJsonOption(connector.command('ls').description('list the connectors')))
    .action(async (opts: Opts) => {
      const list = await call<ConnectorStatus[]>(opts, 'GET', '/v1/connectors')
      if (opts.json === true) return await printJson(list)
      if (list.length === 0) return await printLine('no connectors')
      await printLine(table(['ID', 'KIND', 'TABLE', 'DIR', 'COLLECTION', 'LAG', 'CAPTURED', 'APPLIED', 'REFUSED', 'STATE'],
        list.map(c => [c.id, c.kind, c.table, arrow(c), c.collection, String(c.lag), String(c.captured), String(c.applied), String(c.refusedRows), c.running ? 'running' : 'stopped'])))
    })

  addClientOptions(addJsonOption(connector.command('status').description("a connector's counters, lag and last error").argument('<id>')))
    .action(async (id: string, opts: Opts) => {
      const c = await call<ConnectorStatus>(opts, 'GET', `/v1/connectors/${encodeURIComponent(id)}`)
      if (opts.json === true) await printJson(c)
      else await printStatus(c)
    })

  addClientOptions(addJsonOption(connector.command('rm').description('remove a connector (drops its triggers; the table and the collection stay)').argument('<id>')))
    .action(async (id: string, opts: Opts) => {
      await call(opts, 'DELETE', `/v1/connectors/${encodeURIComponent(id)}`)
      if (opts.json === true) await printJson({ removed: true })
      else await printLine(`removed connector ${id}`)
    })
}
