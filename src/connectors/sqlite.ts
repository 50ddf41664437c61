/**
 * The SQLite connector (docs/connectors.md).
 *
 * Out (capture): AFTER INSERT/UPDATE/DELETE triggers on the table write one
 * row per change into `_syncmesh_outbox`, inside the application's own
 * transaction, so a committed change is always in the outbox and a rolled
 * back one never is. The connector notices commits by polling
 * `PRAGMA data_version` (every POLL_MS), reads the outbox in short
 * transactions, writes the changes into the node's log, records the last
 * outbox seq it took in DATA_DIR/connectors/ID.state.json, and only then
 * deletes the rows it took. A crash before the node's write: the rows are
 * still there and are taken again. A crash after the write and before the
 * state file: the batch is marked in flight in the state file before it is
 * written, and on restart each in-flight row whose value the node already
 * holds is not written again (counted as `recaptured`). A crash after the
 * state file and before the delete: the rows are at or below the recorded
 * seq, skipped and deleted.
 *
 * In (apply): the changes feed of the collection, from a cursor kept in the
 * application's database (`_syncmesh_state`) and updated in the same
 * transaction as the rows, so a batch is applied exactly once whatever
 * crashes. Only changes that rules delivered are applied (local writes,
 * which include what this connector captured, are already in the table or
 * came through the API). The apply transaction first inserts its table's
 * name into `_syncmesh_applying` and deletes it before committing; the
 * triggers do nothing while that row exists, and no other connection ever
 * sees it, so the connector's own writes are not captured again while the
 * application's concurrent writes are.
 */
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import type { Logger } from 'pino'
import { InvalidInputError, SyncmeshError } from '../core/errors.js'
import type { ImportLine, JsonObject, JsonValue, SyncNodeApi } from '../core/types.js'
import { checkIdentifier, columnFromField, readDelivered, writeCaptured, columnKind, newCounters, quote, recordFromRow, sameValue, writeFileDurable } from './connector.js'
import type { Column, Connector, ConnectorCounters, ConnectorStatus, SqlValue, FeedChange } from './connector.js'

export const OUTBOX = '_syncmesh_outbox'
export const APPLYING = '_syncmesh_applying'
export const STATE = '_syncmesh_state'

/** How often `PRAGMA data_version` is checked for commits by other connections. */
export const POLL_MS = 75
/** Outbox rows taken per round. */
export const CAPTURE_BATCH = 2000
/** Feed changes applied per transaction. */
/** How long one statement waits for the application's lock before the round is retried (the event loop waits meanwhile). */
export const BUSY_TIMEOUT_MS = 200
/** json_object takes at most 127 arguments. */
export const MAX_COLUMNS = 63

function triggerName (table: string, suffix: string): string {
  return quote(`_syncmesh_${table}_${suffix}`)
}

function isBusy (err: unknown): boolean {
  const code = (err as { code?: string }).code
  return code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED' || (code?.startsWith('SQLITE_BUSY_') ?? false)
}

export interface TableInfo {
  columns: Column[]
  idColumn: Column
}

/** Open the database, check the table, the id column (unique) and the chosen columns. */
export function inspectTable (db: Database.Database, table: string, id: string, only?: string[]): TableInfo {
  checkIdentifier(table, 'table')
  checkIdentifier(id, 'id column')
  const info = db.prepare(`PRAGMA table_info(${quote(table)})`).all() as Array<{ name: string, type: string, notnull: number, dflt_value: unknown, pk: number }>
  if (info.length === 0) throw new InvalidInputError(`the database has no table "${table}"; create it first (the connector binds an existing table)`, 'CONNECTOR_NO_TABLE')
  const all = info.map(c => ({ name: c.name, kind: columnKind(c.type), notNull: c.notnull === 1 && c.dflt_value === null }))
  const idInfo = info.find(c => c.name === id)
  if (idInfo === undefined) throw new InvalidInputError(`table "${table}" has no column "${id}" (it has ${info.map(c => c.name).join(', ')})`, 'CONNECTOR_NO_COLUMN')
  const pks = info.filter(c => c.pk > 0)
  let unique = pks.length === 1 && pks[0].name === id
  if (!unique) {
    for (const index of db.prepare(`PRAGMA index_list(${quote(table)})`).all() as Array<{ name: string, unique: number }>) {
      if (index.unique !== 1) continue
      const cols = db.prepare(`PRAGMA index_info(${quote(index.name)})`).all() as Array<{ name: string }>
      if (cols.length === 1 && cols[0].name === id) unique = true
    }
  }
  if (!unique) throw new InvalidInputError(`column "${id}" of "${table}" is neither the primary key nor has a unique index; the record id must identify one row`, 'CONNECTOR_ID_NOT_UNIQUE')
  let columns = all
  if (only !== undefined && only.length > 0) {
    for (const name of only) {
      checkIdentifier(name, 'column')
      if (!all.some(c => c.name === name)) throw new InvalidInputError(`table "${table}" has no column "${name}" (it has ${all.map(c => c.name).join(', ')})`, 'CONNECTOR_NO_COLUMN')
    }
    columns = all.filter(c => c.name === id || only.includes(c.name))
  }
  for (const c of columns) checkIdentifier(c.name, 'column')
  if (columns.length > MAX_COLUMNS) throw new InvalidInputError(`table "${table}" has ${columns.length} columns; a connector captures at most ${MAX_COLUMNS}: choose some with --columns`, 'CONNECTOR_TOO_MANY_COLUMNS')
  return { columns, idColumn: columns.find(c => c.name === id) as Column }
}

function rowJson (columns: Column[], ref: 'NEW' | 'OLD'): string {
  const parts = columns.map(c => `'${c.name}', CASE WHEN typeof(${ref}.${quote(c.name)}) = 'blob' THEN hex(${ref}.${quote(c.name)}) ELSE ${ref}.${quote(c.name)} END`)
  return `json_object(${parts.join(', ')})`
}

/** The outbox, the apply flag, the cursor table and (out, both) the triggers; the first time, the table's rows as of then. */
export function installSchema (db: Database.Database, table: string, info: TableInfo, capture: boolean): { snapshot: number } {
  const T = quote(table)
  const id = quote(info.idColumn.name)
  const skip = `NOT EXISTS (SELECT 1 FROM ${APPLYING} WHERE tbl = '${table}')`
  let snapshot = 0
  db.transaction(() => {
    db.exec(`CREATE TABLE IF NOT EXISTS ${OUTBOX} (seq INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, op TEXT NOT NULL, id TEXT NOT NULL, row TEXT)`)
    db.exec(`CREATE INDEX IF NOT EXISTS ${OUTBOX}_tbl ON ${OUTBOX} (tbl, seq)`)
    db.exec(`CREATE TABLE IF NOT EXISTS ${APPLYING} (tbl TEXT PRIMARY KEY)`)
    db.exec(`CREATE TABLE IF NOT EXISTS ${STATE} (connector TEXT PRIMARY KEY, cursor TEXT NOT NULL)`)
    const existed = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = ?").get(`_syncmesh_${table}_ai`) !== undefined
    for (const s of ['ai', 'au', 'ad']) db.exec(`DROP TRIGGER IF EXISTS ${triggerName(table, s)}`)
    if (!capture) return
    db.exec(`CREATE TRIGGER ${triggerName(table, 'ai')} AFTER INSERT ON ${T} WHEN ${skip} BEGIN
      INSERT INTO ${OUTBOX} (tbl, op, id, row) VALUES ('${table}', 'put', CAST(NEW.${id} AS TEXT), ${rowJson(info.columns, 'NEW')});
    END`)
    db.exec(`CREATE TRIGGER ${triggerName(table, 'au')} AFTER UPDATE ON ${T} WHEN ${skip} BEGIN
      INSERT INTO ${OUTBOX} (tbl, op, id, row) SELECT '${table}', 'del', CAST(OLD.${id} AS TEXT), NULL WHERE OLD.${id} IS NOT NEW.${id};
      INSERT INTO ${OUTBOX} (tbl, op, id, row) VALUES ('${table}', 'put', CAST(NEW.${id} AS TEXT), ${rowJson(info.columns, 'NEW')});
    END`)
    db.exec(`CREATE TRIGGER ${triggerName(table, 'ad')} AFTER DELETE ON ${T} WHEN ${skip} BEGIN
      INSERT INTO ${OUTBOX} (tbl, op, id, row) VALUES ('${table}', 'del', CAST(OLD.${id} AS TEXT), NULL);
    END`)
    if (!existed) {
      // the rows already there, in the same transaction as the triggers: none missed, none twice
      const cols = info.columns.map(c => `'${c.name}', CASE WHEN typeof(${quote(c.name)}) = 'blob' THEN hex(${quote(c.name)}) ELSE ${quote(c.name)} END`).join(', ')
      snapshot = db.prepare(`INSERT INTO ${OUTBOX} (tbl, op, id, row) SELECT '${table}', 'put', CAST(${id} AS TEXT), json_object(${cols}) FROM ${T}`).run().changes
    }
  }).immediate()
  return { snapshot }
}

/** Remove the triggers and this table's outbox rows (the outbox and state tables stay for other connectors). */
export function uninstallSchema (db: Database.Database, table: string): void {
  db.transaction(() => {
    for (const s of ['ai', 'au', 'ad']) db.exec(`DROP TRIGGER IF EXISTS ${triggerName(table, s)}`)
    const hasOutbox = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(OUTBOX) !== undefined
    if (hasOutbox) db.prepare(`DELETE FROM ${OUTBOX} WHERE tbl = ?`).run(table)
  }).immediate()
}

export function openDatabase (file: string, mustExist = true): Database.Database {
  try {
    const db = new Database(file, { fileMustExist: mustExist })
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`)
    return db
  } catch (err) {
    throw new SyncmeshError('CONNECTOR_DB_OPEN_FAILED', `cannot open the SQLite database ${file}: ${(err as Error).message}`, 400, { cause: err })
  }
}

interface CaptureState {
  /** Outbox rows at or below this seq are in the node's log. */
  taken: number
  /** A batch up to this seq was being written when the state was saved. */
  inflight?: number
}

interface OutboxRow { seq: number, op: 'put' | 'del', id: string, row: string | null }

export class SqliteConnector {
  readonly def: Connector
  private readonly node: SyncNodeApi
  private readonly stateFile: string
  private readonly log: Logger
  private db?: Database.Database
  private info?: TableInfo
  private counters: ConnectorCounters = newCounters()
  private capture: CaptureState = { taken: 0 }
  private cursor = '0'
  private cursorDirty = false
  private lastError?: { at: string, message: string }
  private lastRefused?: { at: string, id: string, message: string }
  private stopping = false
  private loops: Array<Promise<void>> = []
  /** Sleepers of both loops: stop() and (apply) new changes wake them. */
  private sleepers = new Set<() => void>()
  private changed = false
  private readonly onChange = (): void => {
    this.changed = true
    for (const wake of this.sleepers) wake()
  }

  constructor (def: Connector, node: SyncNodeApi, stateDir: string, log: Logger) {
    this.def = def
    this.node = node
    this.stateFile = join(stateDir, `${def.id}.state.json`)
    this.log = log.child({ component: 'connector', connector: def.id })
  }

  private get stateKey (): string {
    return `${this.node.peerId}/${this.def.id}`
  }

  async start (): Promise<void> {
    const db = openDatabase(this.def.db)
    try {
      this.info = inspectTable(db, this.def.table, this.def.idColumn, this.def.columns)
      const { snapshot } = installSchema(db, this.def.table, this.info, this.def.direction !== 'in')
      if (snapshot > 0) this.log.info({ rows: snapshot }, `connector ${this.def.id}: ${snapshot} existing rows of ${this.def.table} queued for ${this.def.collection}`)
      const row = db.prepare(`SELECT cursor FROM ${STATE} WHERE connector = ?`).get(this.stateKey) as { cursor: string } | undefined
      this.cursor = row?.cursor ?? '0'
    } catch (err) {
      db.close()
      throw err
    }
    this.db = db
    await mkdir(join(this.stateFile, '..'), { recursive: true, mode: 0o700 })
    try {
      this.capture = JSON.parse(await readFile(this.stateFile, 'utf8')) as CaptureState
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new SyncmeshError('CONNECTOR_STATE_INVALID', `cannot read ${this.stateFile}: ${(err as Error).message}`, 500)
    }
    if (this.def.direction !== 'in') this.loops.push(this.captureLoop())
    if (this.def.direction !== 'out') {
      this.node.addEventListener('change', this.onChange)
      this.loops.push(this.applyLoop())
    }
  }

  async stop (): Promise<void> {
    this.stopping = true
    this.node.removeEventListener('change', this.onChange)
    for (const wake of this.sleepers) wake()
    await Promise.allSettled(this.loops)
    try {
      if (this.cursorDirty) this.saveCursor()
    } catch {}
    this.db?.close()
    this.db = undefined
  }

  /** A row or record refused by the table (apply) or by the node (capture): logged with its id, counted, skipped. */
  private refuse (id: string, message: string, by: string): void {
    this.counters.refusedRows++
    this.lastRefused = { at: new Date().toISOString(), id: id.slice(0, 200), message }
    this.log.warn({ id: id.slice(0, 200), err: message }, `connector ${this.def.id}: ${by} refused "${id.slice(0, 200)}" (${this.def.table} ↔ ${this.def.collection}): ${message}; skipped`)
  }

  private fail (err: unknown, what: string): void {
    this.counters.errors++
    const message = `${what}: ${(err as Error).message ?? String(err)}`
    this.lastError = { at: new Date().toISOString(), message }
    this.log.error({ err: (err as Error).message }, `connector ${this.def.id}: ${message}`)
  }

  /** Wait `ms` or until stopped (or, with `onChanges`, until the node's records change). */
  private async sleep (ms: number, onChanges = false): Promise<void> {
    if (this.stopping) return
    if (onChanges && this.changed) {
      this.changed = false
      return
    }
    await new Promise<void>(resolve => {
      const done = (): void => {
        clearTimeout(timer)
        this.sleepers.delete(wake)
        resolve()
      }
      const wake = (): void => { if (onChanges || this.stopping) done() }
      const timer = setTimeout(done, ms)
      this.sleepers.add(wake)
    })
    if (onChanges) this.changed = false
  }

  // -- out ------------------------------------------------------------------

  private async captureLoop (): Promise<void> {
    const db = this.db as Database.Database
    const version = db.prepare('PRAGMA data_version').pluck()
    let seen = -1
    let more = true
    while (!this.stopping) {
      try {
        const v = version.get() as number
        if (v !== seen || more) {
          seen = v
          more = await this.captureOnce()
        }
      } catch (err) {
        if (!isBusy(err)) {
          this.fail(err, 'capture failed')
          await this.sleep(1000)
        }
        more = true
      }
      if (!more) await this.sleep(POLL_MS)
    }
  }

  private async saveCapture (): Promise<void> {
    await writeFileDurable(this.stateFile, JSON.stringify(this.capture) + '\n')
  }

  /** One round: take up to CAPTURE_BATCH outbox rows into the node's log. True when there may be more. */
  private async captureOnce (): Promise<boolean> {
    const db = this.db as Database.Database
    const info = this.info as TableInfo
    // rows at or below `taken` are in the log already; delete them first (a previous delete may have been refused by a lock)
    db.prepare(`DELETE FROM ${OUTBOX} WHERE tbl = ? AND seq <= ?`).run(this.def.table, this.capture.taken)
    const rows = db.prepare(`SELECT seq, op, id, row FROM ${OUTBOX} WHERE tbl = ? AND seq > ? ORDER BY seq LIMIT ?`).all(this.def.table, this.capture.taken, CAPTURE_BATCH) as OutboxRow[]
    if (rows.length === 0) return false
    const last = rows[rows.length - 1].seq
    // the newest change of each row of this batch
    const changes = new Map<string, OutboxRow>()
    for (const r of rows) {
      changes.delete(r.id)
      changes.set(r.id, r)
    }
    const recheck = this.capture.inflight !== undefined && this.capture.inflight >= rows[0].seq
    this.capture = { taken: this.capture.taken, inflight: Math.max(last, this.capture.inflight ?? 0) }
    await this.saveCapture()
    const puts: ImportLine[] = []
    const dels: string[] = []
    for (const [id, r] of changes) {
      const value = r.op === 'put' && r.row !== null ? recordFromRow(info.columns, JSON.parse(r.row) as JsonObject) : undefined
      if (recheck) {
        // this batch may have been written before a crash: what the node holds already is not written again
        const current = await this.node.records.get(this.def.collection, id)
        if (value !== undefined ? sameValue(current?.value, value) : current === undefined) {
          this.counters.recaptured++
          continue
        }
      }
      if (value !== undefined) puts.push({ id, value })
      else dels.push(id)
    }
    this.counters.captured += await writeCaptured(this.node, this.def.collection, puts, dels, (id, message) => this.refuse(id, message, 'the node'))
    this.capture = { taken: last, ...(this.capture.inflight !== undefined && this.capture.inflight > last ? { inflight: this.capture.inflight } : {}) }
    await this.saveCapture()
    try {
      db.prepare(`DELETE FROM ${OUTBOX} WHERE tbl = ? AND seq <= ?`).run(this.def.table, last)
    } catch (err) {
      if (!isBusy(err)) throw err // busy: deleted on a later round
    }
    return rows.length === CAPTURE_BATCH
  }

  // -- in -------------------------------------------------------------------

  private async applyLoop (): Promise<void> {
    while (!this.stopping) {
      let more = false
      try {
        more = await this.applyOnce()
      } catch (err) {
        if (!isBusy(err)) {
          this.fail(err, 'apply failed')
          await this.sleep(1000)
        }
        more = true
      }
      if (!more) await this.sleep(1000, true)
      else await new Promise(resolve => setImmediate(resolve))
    }
  }

  private saveCursor (): void {
    const db = this.db as Database.Database
    db.prepare(`INSERT INTO ${STATE} (connector, cursor) VALUES (?, ?) ON CONFLICT(connector) DO UPDATE SET cursor = excluded.cursor`).run(this.stateKey, this.cursor)
    this.cursorDirty = false
  }

  /** One batch of the changes feed into the table, in one transaction. True when there may be more. */
  private async applyOnce (): Promise<boolean> {
    const db = this.db as Database.Database
    const info = this.info as TableInfo
    const batch = await readDelivered(this.node, this.def.collection, this.cursor)
    if (batch === undefined) return false
    const { delivered, next, more } = batch
    if (delivered.length === 0) {
      this.cursor = next
      this.cursorDirty = true
      return more
    }
    const T = quote(this.def.table)
    const idCol = info.idColumn
    const byName = new Map(info.columns.map(c => [c.name, c]))
    const statements = new Map<string, Database.Statement>()
    const upsert = (names: string[]): Database.Statement => {
      const key = names.join(',')
      let st = statements.get(key)
      if (st === undefined) {
        const others = names.filter(n => n !== idCol.name)
        const set = others.length > 0 ? `DO UPDATE SET ${others.map(n => `${quote(n)} = excluded.${quote(n)}`).join(', ')}` : 'DO NOTHING'
        st = db.prepare(`INSERT INTO ${T} (${names.map(quote).join(', ')}) VALUES (${names.map(() => '?').join(', ')}) ON CONFLICT(${quote(idCol.name)}) ${set}`)
        statements.set(key, st)
      }
      return st
    }
    const del = db.prepare(`DELETE FROM ${T} WHERE ${quote(idCol.name)} = ?`)
    const idValue = (id: string): SqlValue => idCol.kind === 'integer' && /^-?\d{1,15}$/.test(id) ? Number(id) : id
    const counts = { applied: 0, skippedFields: 0, refused: [] as Array<{ id: string, message: string }> }
    const one = db.transaction((line: FeedChange) => {
      if (line.op === 'del' || line.value === undefined) {
        del.run(idValue(line.id))
        return
      }
      const names = [idCol.name]
      const values: SqlValue[] = [idValue(line.id)]
      for (const [field, v] of Object.entries(line.value)) {
        if (field === idCol.name) continue
        const col = byName.get(field)
        if (col === undefined) {
          counts.skippedFields++
          continue
        }
        names.push(field)
        values.push(columnFromField(col.kind, v as JsonValue))
      }
      upsert(names).run(...values)
    })
    db.transaction(() => {
      db.prepare(`INSERT OR IGNORE INTO ${APPLYING} (tbl) VALUES (?)`).run(this.def.table)
      for (const line of delivered) {
        try {
          one(line) // a savepoint: a refused row rolls back alone
          counts.applied++
        } catch (err) {
          if (isBusy(err)) throw err
          counts.refused.push({ id: line.id, message: (err as Error).message })
        }
      }
      db.prepare(`DELETE FROM ${APPLYING} WHERE tbl = ?`).run(this.def.table)
      db.prepare(`INSERT INTO ${STATE} (connector, cursor) VALUES (?, ?) ON CONFLICT(connector) DO UPDATE SET cursor = excluded.cursor`).run(this.stateKey, next)
    }).immediate()
    this.cursor = next
    this.cursorDirty = false
    this.counters.applied += counts.applied
    this.counters.skippedFields += counts.skippedFields
    for (const r of counts.refused) this.refuse(r.id, r.message, `table ${this.def.table}`)
    return more
  }

  // -- status ---------------------------------------------------------------

  status (): ConnectorStatus {
    let lag = 0
    if (this.db !== undefined && this.def.direction !== 'in') {
      try {
        lag = (this.db.prepare(`SELECT count(*) AS n FROM ${OUTBOX} WHERE tbl = ? AND seq > ?`).get(this.def.table, this.capture.taken) as { n: number }).n
      } catch {}
    }
    return {
      ...this.def,
      ...this.counters,
      running: this.db !== undefined && !this.stopping,
      lag,
      ...(this.def.direction !== 'out' ? { cursor: this.cursor } : {}),
      ...(this.lastError !== undefined ? { lastError: this.lastError } : {}),
      ...(this.lastRefused !== undefined ? { lastRefused: this.lastRefused } : {})
    }
  }
}
