/**
 * The connectors of one node: kept in DATA_DIR/connectors.json (mode 0600,
 * versioned), started with the node, changed over the HTTP API
 * (src/api/connectors-routes.ts). Each connector keeps its capture state in
 * DATA_DIR/connectors/ID.state.json.
 */
import { randomBytes } from 'node:crypto'
import { readFile, rm } from 'node:fs/promises'
import { isAbsolute, join, resolve } from 'node:path'
import type { Logger } from 'pino'
import { pino } from 'pino'
import { InvalidInputError, NotFoundError, SyncmeshError } from '../core/errors.js'
import { checkCollection } from '../store/names.js'
import type { SyncNodeApi } from '../core/types.js'
import { checkIdentifier, writeFileDurable } from './connector.js'
import type { Connector, ConnectorSpec, ConnectorStatus } from './connector.js'
import { PostgresConnector, connectPg, inspectPgTable, redactUrl, uninstallPgSchema } from './postgres.js'
import { SqliteConnector, inspectTable, openDatabase, uninstallSchema } from './sqlite.js'

export const CONNECTORS_FILE = 'connectors.json'
export const CONNECTORS_VERSION = 1

interface ConnectorsFile {
  version: number
  connectors: Connector[]
}

const managers = new WeakMap<SyncNodeApi, ConnectorManager>()

/** The connectors of a running node, if they were started (see startConnectors). */
export function connectorsOf (node: SyncNodeApi): ConnectorManager | undefined {
  return managers.get(node)
}

/** Load DATA_DIR/connectors.json and start every connector; the HTTP routes find them through the node. */
export async function startConnectors (node: SyncNodeApi, dataDir: string, logger?: Logger): Promise<ConnectorManager> {
  const manager = new ConnectorManager(node, dataDir, logger ?? pino({ level: 'silent' }))
  await manager.load()
  managers.set(node, manager)
  node.setConnectorStatus?.(() => manager.list())
  return manager
}

function validateSpec (input: ConnectorSpec): ConnectorSpec {
  if (input.kind !== 'sqlite' && input.kind !== 'postgres') throw new InvalidInputError(`unknown connector kind "${String(input.kind)}"; supported: sqlite, postgres`, 'INVALID_CONNECTOR')
  if (typeof input.db !== 'string' || input.db === '') throw new InvalidInputError('"db" must be the path of the SQLite database file or the PostgreSQL URL', 'INVALID_CONNECTOR')
  if (input.kind === 'sqlite' && !isAbsolute(input.db)) throw new InvalidInputError(`"db" must be an absolute path (got "${input.db.slice(0, 200)}"); the CLI resolves relative paths for you`, 'INVALID_CONNECTOR')
  if (input.kind === 'postgres' && !/^postgres(ql)?:\/\//.test(input.db)) throw new InvalidInputError('"db" must be a postgres://USER:PASSWORD@HOST:PORT/DATABASE URL', 'INVALID_CONNECTOR')
  checkIdentifier(input.table, 'table')
  checkIdentifier(input.idColumn, 'id column')
  checkCollection(input.collection)
  const direction = input.direction ?? 'both'
  if (!['both', 'out', 'in'].includes(direction)) throw new InvalidInputError(`direction must be both, out or in (got "${String(direction)}")`, 'INVALID_CONNECTOR')
  if (input.columns !== undefined) {
    if (!Array.isArray(input.columns)) throw new InvalidInputError('"columns" must be a list of column names', 'INVALID_CONNECTOR')
    for (const c of input.columns) checkIdentifier(c, 'column')
  }
  return { kind: input.kind, db: input.kind === 'sqlite' ? resolve(input.db) : input.db, table: input.table, collection: input.collection, idColumn: input.idColumn, direction, ...(input.columns !== undefined && input.columns.length > 0 ? { columns: input.columns } : {}) }
}

export class ConnectorManager {
  private readonly node: SyncNodeApi
  private readonly dataDir: string
  private readonly log: Logger
  private readonly running = new Map<string, SqliteConnector | PostgresConnector>()
  private defs: Connector[] = []
  private queue: Promise<unknown> = Promise.resolve()

  constructor (node: SyncNodeApi, dataDir: string, log: Logger) {
    this.node = node
    this.dataDir = dataDir
    this.log = log
  }

  private get file (): string {
    return join(this.dataDir, CONNECTORS_FILE)
  }

  private get stateDir (): string {
    return join(this.dataDir, 'connectors')
  }

  /** One change at a time. */
  private async serial<T> (fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn)
    this.queue = next.catch(() => {})
    return await next
  }

  async load (): Promise<void> {
    let text: string
    try {
      text = await readFile(this.file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
      throw err
    }
    let parsed: ConnectorsFile
    try {
      parsed = JSON.parse(text) as ConnectorsFile
    } catch (err) {
      throw new SyncmeshError('CONNECTORS_FILE_INVALID', `${this.file} is not valid JSON (${(err as Error).message}); fix or remove it`, 500)
    }
    if (parsed.version !== CONNECTORS_VERSION || !Array.isArray(parsed.connectors)) {
      throw new SyncmeshError('CONNECTORS_FILE_INVALID', `${this.file} has version ${String(parsed.version)}; this syncmesh reads version ${CONNECTORS_VERSION}`, 500)
    }
    this.defs = parsed.connectors
    for (const def of this.defs) await this.run(def)
  }

  /** Start one connector; a failure is reported in its status and the node keeps running. */
  private async run (def: Connector): Promise<void> {
    const connector = def.kind === 'postgres' ? new PostgresConnector(def, this.node, this.stateDir, this.log) : new SqliteConnector(def, this.node, this.stateDir, this.log)
    try {
      await connector.start()
      this.running.set(def.id, connector)
      this.log.info({ connector: def.id }, `connector ${def.id}: ${def.kind === 'postgres' ? redactUrl(def.db) : def.db} table ${def.table} ${def.direction === 'in' ? '←' : def.direction === 'out' ? '→' : '↔'} collection ${def.collection}`)
    } catch (err) {
      this.failed.set(def.id, { at: new Date().toISOString(), message: (err as Error).message })
      this.log.error({ connector: def.id, err: (err as Error).message }, `connector ${def.id} did not start: ${(err as Error).message}`)
    }
  }

  private readonly failed = new Map<string, { at: string, message: string }>()

  private async save (): Promise<void> {
    const body: ConnectorsFile = { version: CONNECTORS_VERSION, connectors: this.defs }
    await writeFileDurable(this.file, JSON.stringify(body, null, 2) + '\n')
  }

  list (): ConnectorStatus[] {
    return this.defs.map(d => this.status(d.id))
  }

  status (id: string): ConnectorStatus {
    const def = this.defs.find(d => d.id === id)
    if (def === undefined) throw new NotFoundError(`no connector "${id}"; list them with GET /v1/connectors`, 'CONNECTOR_NOT_FOUND')
    const running = this.running.get(id)
    if (running !== undefined) return running.status()
    const failure = this.failed.get(id)
    return { ...def, db: def.kind === 'postgres' ? redactUrl(def.db) : def.db, captured: 0, recaptured: 0, applied: 0, skippedFields: 0, refusedRows: 0, errors: failure !== undefined ? 1 : 0, running: false, lag: 0, ...(failure !== undefined ? { lastError: failure } : {}) }
  }

  async add (input: ConnectorSpec): Promise<ConnectorStatus> {
    const spec = validateSpec(input)
    return await this.serial(async () => {
      if (this.defs.some(d => d.db === spec.db && d.table === spec.table)) {
        throw new SyncmeshError('CONNECTOR_EXISTS', `table ${spec.table} of ${spec.kind === 'postgres' ? redactUrl(spec.db) : spec.db} already has a connector; remove it first`, 409)
      }
      // check the database and table before anything is stored
      if (spec.kind === 'postgres') {
        const client = await connectPg(spec.db)
        try {
          await inspectPgTable(client, spec.table, spec.idColumn, spec.columns)
        } finally {
          await client.end().catch(() => {})
        }
      } else {
        const db = openDatabase(spec.db)
        try {
          inspectTable(db, spec.table, spec.idColumn, spec.columns)
        } finally {
          db.close()
        }
      }
      const def: Connector = { id: randomBytes(6).toString('hex'), ...spec, direction: spec.direction ?? 'both', createdAt: new Date().toISOString() } as Connector
      this.defs.push(def)
      await this.save()
      await this.run(def)
      return this.status(def.id)
    })
  }

  async remove (id: string): Promise<boolean> {
    return await this.serial(async () => {
      const def = this.defs.find(d => d.id === id)
      if (def === undefined) return false
      await this.running.get(id)?.stop()
      this.running.delete(id)
      this.failed.delete(id)
      this.defs = this.defs.filter(d => d.id !== id)
      await this.save()
      try {
        if (def.kind === 'postgres') {
          const client = await connectPg(def.db)
          try { await uninstallPgSchema(client, def.table) } finally { await client.end().catch(() => {}) }
        } else {
          const db = openDatabase(def.db)
          try { uninstallSchema(db, def.table) } finally { db.close() }
        }
      } catch (err) {
        this.log.warn({ connector: id, err: (err as Error).message }, `connector ${id} removed, but its triggers could not be dropped from ${def.kind === 'postgres' ? redactUrl(def.db) : def.db}: ${(err as Error).message}`)
      }
      await rm(join(this.stateDir, `${id}.state.json`), { force: true })
      return true
    })
  }

  async stop (): Promise<void> {
    await this.serial(async () => {
      for (const c of this.running.values()) await c.stop()
      this.running.clear()
    })
    managers.delete(this.node)
    this.node.setConnectorStatus?.(undefined)
  }
}
