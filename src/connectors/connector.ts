/**
 * Connectors bind a table of the application's own database to a collection
 * of this node (docs/connectors.md). This file holds what every database
 * kind shares: the connector's description, its counters, the row ↔ record
 * mapping and the small state file each connector keeps in the node's data
 * directory. The database-specific parts live next to it (./sqlite.ts,
 * ./postgres.ts).
 *
 * Connectors use the node only through its library API (records.put /
 * delete / import / get and the changes feed), so nothing below src/node
 * knows they exist.
 */
import { open, rename, rm } from 'node:fs/promises'
import { isDeepStrictEqual } from 'node:util'
import { InvalidInputError, SyncmeshError } from '../core/errors.js'
import type { FeedLine, ImportLine, JsonObject, JsonValue, SyncNodeApi } from '../core/types.js'

export type ConnectorKind = 'sqlite' | 'postgres'
export type ConnectorDirection = 'both' | 'out' | 'in'

/** What an operator supplies to create a connector. */
export interface ConnectorSpec {
  kind: ConnectorKind
  /** SQLite: path of the database file (absolute once stored); PostgreSQL: the connection URL (its password is shown as ***). */
  db: string
  table: string
  collection: string
  /** The column whose value is the record id (unique in the table). */
  idColumn: string
  /** @default 'both' */
  direction?: ConnectorDirection
  /** Only these columns (the id column is always included); default: every column of the table. */
  columns?: string[]
}

export interface Connector extends Required<Omit<ConnectorSpec, 'columns'>> {
  id: string
  columns?: string[]
  createdAt: string
}

export interface ConnectorCounters {
  /** Rows taken from the outbox into the node's log (writes made). */
  captured: number
  /** Outbox rows taken again after a crash whose value the node already held (not written again). */
  recaptured: number
  /** Changes written into the table (upserts and deletes). */
  applied: number
  /** Record fields left out because the table has no column for them. */
  skippedFields: number
  /** Rows the table refused (constraint, type); each is logged with its id. */
  refusedRows: number
  errors: number
}

export interface ConnectorStatus extends Connector, ConnectorCounters {
  running: boolean
  /** Outbox rows committed by the application and not yet taken into the node's log. */
  lag: number
  /** Changes feed position up to which rule deliveries are applied to the table. */
  cursor?: string
  lastError?: { at: string, message: string }
  lastRefused?: { at: string, id: string, message: string }
}

export function newCounters (): ConnectorCounters {
  return { captured: 0, recaptured: 0, applied: 0, skippedFields: 0, refusedRows: 0, errors: 0 }
}

// -- names --------------------------------------------------------------------

const IDENT = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/

/** Table and column names go into SQL (quoted): keep them to plain identifiers. */
export function checkIdentifier (name: unknown, what: string): string {
  if (typeof name !== 'string' || !IDENT.test(name) || name.toLowerCase().startsWith('_syncmesh')) {
    throw new InvalidInputError(`${what} "${String(name).slice(0, 80)}" is not a plain identifier: use letters, digits and "_" (not starting with a digit or "_syncmesh", at most 63 characters)`, 'INVALID_CONNECTOR')
  }
  return name
}

export function quote (name: string): string {
  return `"${name.replace(/"/g, '""')}"`
}

// -- the mapping ----------------------------------------------------------------

/**
 * How a column's values map to JSON, from its declared type (SQLite type
 * affinity rules, plus the usual names for booleans, JSON and timestamps).
 */
export type ColumnKind = 'integer' | 'real' | 'text' | 'boolean' | 'json' | 'timestamp' | 'blob' | 'any'

export interface Column {
  name: string
  kind: ColumnKind
  /** Declared NOT NULL without a default (informational). */
  notNull: boolean
}

export function columnKind (declared: string): ColumnKind {
  const t = declared.trim().toUpperCase()
  if (t === '') return 'any'
  if (/^BOOL/.test(t)) return 'boolean'
  if (/^JSONB?$/.test(t)) return 'json'
  if (/DATE|TIME/.test(t)) return 'timestamp'
  if (t.includes('INT')) return 'integer'
  if (/CHAR|CLOB|TEXT/.test(t)) return 'text'
  if (t.includes('BLOB')) return 'blob'
  if (/REAL|FLOA|DOUB/.test(t)) return 'real'
  return 'any' // NUMERIC and anything else: whatever the row holds
}

/** "YYYY-MM-DD HH:MM:SS[.fff]" (SQLite's CURRENT_TIMESTAMP, UTC) or any ISO string → ISO 8601 UTC. */
export function toIso (text: string): string {
  const sqlite = /^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)$/.exec(text)
  const date = new Date(sqlite !== null ? `${sqlite[1]}T${sqlite[2]}Z` : text)
  return Number.isNaN(date.getTime()) ? text : date.toISOString()
}

/**
 * A column value as the outbox holds it (JSON from the trigger; blobs as hex)
 * → the record's field value.
 */
export function fieldFromColumn (kind: ColumnKind, value: JsonValue): JsonValue {
  if (value === null) return null
  switch (kind) {
    case 'boolean':
      return typeof value === 'number' ? value !== 0 : typeof value === 'string' ? ['1', 'true', 't', 'yes'].includes(value.toLowerCase()) : value
    case 'json':
      if (typeof value !== 'string') return value
      try { return JSON.parse(value) as JsonValue } catch { return value }
    case 'timestamp':
      if (typeof value === 'number') return new Date(value * 1000).toISOString() // unix seconds
      return typeof value === 'string' ? toIso(value) : value
    case 'blob':
      return typeof value === 'string' && /^([0-9A-F]{2})*$/.test(value) ? Buffer.from(value, 'hex').toString('base64') : value
    default:
      return value
  }
}

export type SqlValue = string | number | bigint | Buffer | null

/** A record's field value → what is bound for the column. Throws on a value the column cannot take. */
export function columnFromField (kind: ColumnKind, value: JsonValue | undefined): SqlValue {
  if (value === undefined || value === null) return null
  switch (kind) {
    case 'boolean':
      return typeof value === 'boolean' ? (value ? 1 : 0) : typeof value === 'number' ? (value !== 0 ? 1 : 0) : JSON.stringify(value)
    case 'json':
      return JSON.stringify(value)
    case 'timestamp':
      return typeof value === 'string' ? toIso(value) : typeof value === 'number' ? new Date(value * 1000).toISOString() : JSON.stringify(value)
    case 'blob':
      return typeof value === 'string' ? Buffer.from(value, 'base64') : JSON.stringify(value)
    default:
      if (typeof value === 'boolean') return value ? 1 : 0
      if (typeof value === 'object') return JSON.stringify(value) // nested values into a plain column: as JSON text
      return value
  }
}

/** The record value of an outbox row (already JSON-decoded), column by column. */
export function recordFromRow (columns: Column[], row: JsonObject): JsonObject {
  const out: JsonObject = {}
  for (const c of columns) {
    if (Object.prototype.hasOwnProperty.call(row, c.name)) out[c.name] = fieldFromColumn(c.kind, row[c.name])
  }
  return out
}

export function sameValue (a: JsonObject | undefined, b: JsonObject): boolean {
  return a !== undefined && isDeepStrictEqual(a, b)
}

// -- writing captured changes -------------------------------------------------

function refusedByNode (err: unknown): err is SyncmeshError {
  return err instanceof SyncmeshError && err.status >= 400 && err.status < 500
}

/**
 * Write captured changes into the node: the puts in atomic import batches,
 * then the deletes. When the node refuses a value (an id it does not accept,
 * JSON nested too deep, a mirror target), the puts are written one by one,
 * each compared first with what the node holds (import batches before the
 * refused one are committed already), and each refused change is reported
 * to `refused` and left out: one bad row never holds up the others.
 * Returns the changes written.
 */
export async function writeCaptured (node: SyncNodeApi, collection: string, puts: ImportLine[], dels: string[], refused: (id: string, message: string) => void): Promise<number> {
  let written = 0
  if (puts.length > 0) {
    try {
      await node.records.import(collection, puts)
      written += puts.length
    } catch (err) {
      if (!refusedByNode(err)) throw err
      for (const p of puts) {
        try {
          const current = await node.records.get(collection, p.id)
          if (sameValue(current?.value, p.value)) continue
          await node.records.put(collection, p.id, p.value)
          written++
        } catch (e) {
          if (!refusedByNode(e)) throw e
          refused(p.id, e.message)
        }
      }
    }
  }
  for (const id of dels) {
    try {
      await node.records.delete(collection, id)
      written++
    } catch (e) {
      if (!refusedByNode(e)) throw e
      refused(id, e.message)
    }
  }
  return written
}

// -- state files --------------------------------------------------------------

/** Write a small file atomically and durably (temp file, fsync, rename), mode 0600. */
export async function writeFileDurable (path: string, text: string): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`
  const fh = await open(tmp, 'w', 0o600)
  try {
    await fh.writeFile(text)
    await fh.sync()
  } finally {
    await fh.close()
  }
  try {
    await rename(tmp, path)
  } catch (err) {
    await rm(tmp, { force: true })
    throw err
  }
}

/** Changes of the feed read per apply transaction. */
export const APPLY_BATCH = 500

export type FeedChange = Extract<FeedLine, { type: 'change' }>

/**
 * The next batch of the changes feed after `cursor` for `collection`: the
 * changes rules delivered (local writes, this connector's captures among them,
 * are not applied back), the cursor after the batch, and whether more may
 * follow. Undefined when nothing is new.
 */
export async function readDelivered (node: SyncNodeApi, collection: string, cursor: string): Promise<{ delivered: FeedChange[], next: string, more: boolean } | undefined> {
  if (node.changes === undefined) throw new SyncmeshError('NOT_SUPPORTED', 'this node has no changes feed', 501)
  const lines: FeedChange[] = []
  for await (const line of node.changes({ since: cursor, collection, limit: APPLY_BATCH })) {
    if (line.type === 'change') lines.push(line)
  }
  if (lines.length === 0) return undefined
  return { delivered: lines.filter(l => l.ruleId !== undefined), next: lines[lines.length - 1].cursor as string, more: lines.length === APPLY_BATCH }
}
