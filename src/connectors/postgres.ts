/**
 * The PostgreSQL connector (docs/connectors.md): the same design as the
 * SQLite one (./sqlite.ts), with PostgreSQL's means.
 *
 * Out: a row trigger (`_syncmesh_capture`, PL/pgSQL) appends each change to
 * `_syncmesh_outbox` inside the application's transaction and sends
 * `NOTIFY syncmesh_outbox` (delivered at commit), which wakes the connector
 * at once; a poll every second covers a lost listening connection. Triggers
 * rather than logical replication: they need no `wal_level = logical`, no
 * replication slot (a slot left behind by a stopped node makes the server
 * keep WAL without bound) and no superuser or REPLICATION role, only the
 * rights to create a table, a function and a trigger; and the outbox row
 * shares the fate of the application's transaction exactly like a slot's
 * stream would.
 *
 * Sequence values are taken at insert, not at commit, so a transaction can
 * commit an outbox row below one already taken: the connector therefore
 * never skips by seq; it reads whatever rows are there, oldest first, and
 * deletes exactly the ones it took. The in-flight mark (the highest seq of
 * the batch being written, in DATA_DIR/connectors/ID.state.json) makes rows
 * at or below it be compared with what the node holds after a crash.
 *
 * In: one transaction per batch with `SET LOCAL syncmesh.applying = 'on'`
 * (a setting of that transaction only: no other session ever sees it), which
 * the trigger checks; the feed cursor is stored in `_syncmesh_state` in the
 * same transaction.
 */
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import pg from 'pg'
import type { Logger } from 'pino'
import { InvalidInputError, SyncmeshError } from '../core/errors.js'
import type { ImportLine, JsonObject, JsonValue, SyncNodeApi } from '../core/types.js'
import { checkIdentifier, columnFromField, readDelivered, writeCaptured, newCounters, quote, sameValue, toIso, writeFileDurable } from './connector.js'
import type { Column, ColumnKind, Connector, ConnectorCounters, ConnectorStatus, SqlValue } from './connector.js'

export const PG_OUTBOX = '_syncmesh_outbox'
export const PG_STATE = '_syncmesh_state'
export const PG_CHANNEL = 'syncmesh_outbox'
const CAPTURE_BATCH = 2000
const POLL_MS = 1000

/** The connection URL without its password, for status and logs. */
export function redactUrl (url: string): string {
  try {
    const u = new URL(url)
    if (u.password !== '') u.password = '***'
    return u.toString()
  } catch {
    return '(invalid URL)'
  }
}

export function pgKind (dataType: string): ColumnKind {
  const t = dataType.toLowerCase()
  if (t === 'boolean') return 'boolean'
  if (t === 'json' || t === 'jsonb') return 'json'
  if (t.startsWith('timestamp') || t === 'date' || t.startsWith('time')) return 'timestamp'
  if (t === 'bytea') return 'blob'
  if (t === 'smallint' || t === 'integer' || t === 'bigint') return 'integer'
  if (t === 'real' || t === 'double precision' || t === 'numeric') return 'real'
  if (t === 'text' || t.startsWith('character')) return 'text'
  return 'any'
}

/** A value of `to_jsonb(row)` → the record's field value. */
function fieldFromPg (kind: ColumnKind, value: JsonValue): JsonValue {
  if (value === null) return null
  if (kind === 'blob' && typeof value === 'string' && value.startsWith('\\x')) return Buffer.from(value.slice(2), 'hex').toString('base64')
  if (kind === 'timestamp' && typeof value === 'string') return /^\d{4}-\d{2}-\d{2}$/.test(value) ? value : toIso(value)
  return value
}

export interface PgTableInfo { columns: Column[], idColumn: Column }

export async function inspectPgTable (client: pg.Client, table: string, id: string, only?: string[]): Promise<PgTableInfo> {
  checkIdentifier(table, 'table')
  checkIdentifier(id, 'id column')
  const res = await client.query<{ column_name: string, data_type: string, is_nullable: string, column_default: string | null }>(
    'SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position', [table])
  if (res.rows.length === 0) throw new InvalidInputError(`the database has no table "${table}" in schema ${String((await client.query('SELECT current_schema() AS s')).rows[0].s)}; create it first`, 'CONNECTOR_NO_TABLE')
  const all: Column[] = res.rows.map(r => ({ name: r.column_name, kind: pgKind(r.data_type), notNull: r.is_nullable === 'NO' && r.column_default === null }))
  if (!all.some(c => c.name === id)) throw new InvalidInputError(`table "${table}" has no column "${id}" (it has ${all.map(c => c.name).join(', ')})`, 'CONNECTOR_NO_COLUMN')
  const unique = await client.query(`SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
    WHERE i.indrelid = $1::regclass AND i.indisunique AND i.indnatts = 1 AND a.attname = $2`, [quote(table), id])
  if (unique.rowCount === 0) throw new InvalidInputError(`column "${id}" of "${table}" is neither the primary key nor has a unique index; the record id must identify one row`, 'CONNECTOR_ID_NOT_UNIQUE')
  let columns = all
  if (only !== undefined && only.length > 0) {
    for (const name of only) {
      if (!all.some(c => c.name === name)) throw new InvalidInputError(`table "${table}" has no column "${name}"`, 'CONNECTOR_NO_COLUMN')
    }
    columns = all.filter(c => c.name === id || only.includes(c.name))
  }
  for (const c of columns) checkIdentifier(c.name, 'column')
  return { columns, idColumn: columns.find(c => c.name === id) as Column }
}

const CAPTURE_FUNCTION = `CREATE OR REPLACE FUNCTION _syncmesh_capture() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  old_id text;
  new_id text;
BEGIN
  IF current_setting('syncmesh.applying', true) = 'on' THEN RETURN NULL; END IF;
  IF TG_OP <> 'INSERT' THEN old_id := to_jsonb(OLD) ->> TG_ARGV[0]; END IF;
  IF TG_OP <> 'DELETE' THEN new_id := to_jsonb(NEW) ->> TG_ARGV[0]; END IF;
  IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND old_id IS DISTINCT FROM new_id) THEN
    INSERT INTO ${PG_OUTBOX} (tbl, op, id, row) VALUES (TG_TABLE_NAME, 'del', old_id, NULL);
  END IF;
  IF TG_OP <> 'DELETE' THEN
    INSERT INTO ${PG_OUTBOX} (tbl, op, id, row) VALUES (TG_TABLE_NAME, 'put', new_id, to_jsonb(NEW));
  END IF;
  PERFORM pg_notify('${PG_CHANNEL}', TG_TABLE_NAME);
  RETURN NULL;
END
$fn$`

function triggerName (table: string): string {
  return quote(`_syncmesh_${table}`)
}

export async function installPgSchema (client: pg.Client, table: string, info: PgTableInfo, capture: boolean): Promise<number> {
  await client.query('BEGIN')
  try {
    // one installer at a time (CREATE OR REPLACE FUNCTION races otherwise)
    await client.query("SELECT pg_advisory_xact_lock(hashtext('syncmesh connector schema'))")
    await client.query(`CREATE TABLE IF NOT EXISTS ${PG_OUTBOX} (seq bigserial PRIMARY KEY, tbl text NOT NULL, op text NOT NULL, id text NOT NULL, row jsonb)`)
    await client.query(`CREATE INDEX IF NOT EXISTS ${PG_OUTBOX}_tbl ON ${PG_OUTBOX} (tbl, seq)`)
    await client.query(`CREATE TABLE IF NOT EXISTS ${PG_STATE} (connector text PRIMARY KEY, cursor text NOT NULL)`)
    await client.query(CAPTURE_FUNCTION)
    const existed = (await client.query('SELECT 1 FROM pg_trigger WHERE tgname = $1 AND tgrelid = $2::regclass', [`_syncmesh_${table}`, quote(table)])).rowCount !== 0
    await client.query(`DROP TRIGGER IF EXISTS ${triggerName(table)} ON ${quote(table)}`)
    let snapshot = 0
    if (capture) {
      await client.query(`CREATE TRIGGER ${triggerName(table)} AFTER INSERT OR UPDATE OR DELETE ON ${quote(table)} FOR EACH ROW EXECUTE FUNCTION _syncmesh_capture('${info.idColumn.name}')`)
      if (!existed) {
        // CREATE TRIGGER locked the table against writes until commit: the copy and the trigger meet exactly
        snapshot = (await client.query(`INSERT INTO ${PG_OUTBOX} (tbl, op, id, row) SELECT $1, 'put', to_jsonb(t) ->> $2, to_jsonb(t) FROM ${quote(table)} t`, [table, info.idColumn.name])).rowCount ?? 0
      }
    }
    await client.query('COMMIT')
    return snapshot
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {})
    throw err
  }
}

export async function uninstallPgSchema (client: pg.Client, table: string): Promise<void> {
  await client.query(`DROP TRIGGER IF EXISTS ${triggerName(table)} ON ${quote(table)}`)
  if ((await client.query('SELECT to_regclass($1) AS r', [PG_OUTBOX])).rows[0].r !== null) await client.query(`DELETE FROM ${PG_OUTBOX} WHERE tbl = $1`, [table])
}

export async function connectPg (url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000, statement_timeout: 30_000 })
  client.on('error', () => {}) // a dropped connection is reported by the next query
  try {
    await client.connect()
  } catch (err) {
    await client.end().catch(() => {})
    throw new SyncmeshError('CONNECTOR_DB_OPEN_FAILED', `cannot connect to PostgreSQL at ${redactUrl(url)}: ${(err as Error).message}`, 400, { cause: err })
  }
  return client
}

interface OutboxRow { seq: string, op: 'put' | 'del', id: string, row: JsonObject | null }

export class PostgresConnector {
  readonly def: Connector
  private readonly node: SyncNodeApi
  private readonly stateFile: string
  private readonly log: Logger
  private client?: pg.Client
  private listener?: pg.Client
  private info?: PgTableInfo
  private counters: ConnectorCounters = newCounters()
  /** The highest outbox seq of a batch being written into the node. */
  private inflight = 0
  private cursor = '0'
  private cursorDirty = false
  private lastError?: { at: string, message: string }
  private lastRefused?: { at: string, id: string, message: string }
  private stopping = false
  private loops: Array<Promise<void>> = []
  private sleepers = new Set<(kind: 'outbox' | 'changes' | 'stop') => void>()
  private pending = { outbox: false, changes: false }
  private lag = 0
  private readonly onChange = (): void => { this.wake('changes') }

  constructor (def: Connector, node: SyncNodeApi, stateDir: string, log: Logger) {
    this.def = def
    this.node = node
    this.stateFile = join(stateDir, `${def.id}.state.json`)
    this.log = log.child({ component: 'connector', connector: def.id })
  }

  private get stateKey (): string {
    return `${this.node.peerId}/${this.def.id}`
  }

  private wake (kind: 'outbox' | 'changes' | 'stop'): void {
    if (kind !== 'stop') this.pending[kind] = true
    for (const s of this.sleepers) s(kind)
  }

  private async sleep (ms: number, kind: 'outbox' | 'changes'): Promise<void> {
    if (this.stopping) return
    if (this.pending[kind]) {
      this.pending[kind] = false
      return
    }
    await new Promise<void>(resolve => {
      const done = (): void => {
        clearTimeout(timer)
        this.sleepers.delete(wake)
        resolve()
      }
      const wake = (k: 'outbox' | 'changes' | 'stop'): void => { if (k === kind || k === 'stop') done() }
      const timer = setTimeout(done, ms)
      this.sleepers.add(wake)
    })
    this.pending[kind] = false
  }

  async start (): Promise<void> {
    const client = await connectPg(this.def.db)
    try {
      this.info = await inspectPgTable(client, this.def.table, this.def.idColumn, this.def.columns)
      const snapshot = await installPgSchema(client, this.def.table, this.info, this.def.direction !== 'in')
      if (snapshot > 0) this.log.info({ rows: snapshot }, `connector ${this.def.id}: ${snapshot} existing rows of ${this.def.table} queued for ${this.def.collection}`)
      const row = await client.query<{ cursor: string }>(`SELECT cursor FROM ${PG_STATE} WHERE connector = $1`, [this.stateKey])
      this.cursor = row.rows[0]?.cursor ?? '0'
    } catch (err) {
      await client.end().catch(() => {})
      throw err
    }
    this.client = client
    await mkdir(join(this.stateFile, '..'), { recursive: true, mode: 0o700 })
    try {
      this.inflight = (JSON.parse(await readFile(this.stateFile, 'utf8')) as { inflight?: number }).inflight ?? 0
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new SyncmeshError('CONNECTOR_STATE_INVALID', `cannot read ${this.stateFile}: ${(err as Error).message}`, 500)
    }
    if (this.def.direction !== 'in') {
      try {
        this.listener = await connectPg(this.def.db)
        this.listener.on('notification', (msg) => { if (msg.payload === this.def.table) this.wake('outbox') })
        await this.listener.query(`LISTEN ${PG_CHANNEL}`)
      } catch (err) {
        this.fail(err, 'LISTEN failed; polling every second')
      }
      this.loops.push(this.captureLoop())
    }
    if (this.def.direction !== 'out') {
      this.node.addEventListener('change', this.onChange)
      this.loops.push(this.applyLoop())
    }
  }

  async stop (): Promise<void> {
    this.stopping = true
    this.node.removeEventListener('change', this.onChange)
    this.wake('stop')
    await Promise.allSettled(this.loops)
    if (this.cursorDirty && this.client !== undefined) await this.saveCursor(this.client).catch(() => {})
    await this.listener?.end().catch(() => {})
    await this.client?.end().catch(() => {})
    this.client = undefined
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

  private async reconnect (): Promise<void> {
    await this.client?.end().catch(() => {})
    this.client = await connectPg(this.def.db)
  }

  // -- out ------------------------------------------------------------------

  private async captureLoop (): Promise<void> {
    let more = true
    while (!this.stopping) {
      try {
        more = await this.captureOnce()
      } catch (err) {
        this.fail(err, 'capture failed')
        await this.sleep(1000, 'outbox')
        await this.reconnect().catch(() => {})
        more = true
        continue
      }
      if (!more) await this.sleep(POLL_MS, 'outbox')
    }
  }

  private async captureOnce (): Promise<boolean> {
    const client = this.client as pg.Client
    const info = this.info as PgTableInfo
    // by the bigint column, along the (tbl, seq) index: the text alias "seq" would order "10000" before "9999"
    const res = await client.query<OutboxRow>(`SELECT o.seq::text AS seq, o.op, o.id, o.row FROM ${PG_OUTBOX} o WHERE o.tbl = $1 ORDER BY o.seq LIMIT ${CAPTURE_BATCH}`, [this.def.table])
    const rows = res.rows
    // the outbox's depth: counted only when there is more than one batch (an index range count)
    this.lag = rows.length < CAPTURE_BATCH ? rows.length : Number((await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${PG_OUTBOX} WHERE tbl = $1`, [this.def.table])).rows[0].n)
    if (rows.length === 0) return false
    const last = Number(rows[rows.length - 1].seq)
    const recheck = this.inflight > 0 && Number(rows[0].seq) <= this.inflight
    const changes = new Map<string, OutboxRow>()
    for (const r of rows) {
      changes.delete(r.id)
      changes.set(r.id, r)
    }
    this.inflight = Math.max(this.inflight, last)
    await writeFileDurable(this.stateFile, JSON.stringify({ inflight: this.inflight }) + '\n')
    const puts: ImportLine[] = []
    const dels: string[] = []
    for (const [id, r] of changes) {
      let value: JsonObject | undefined
      if (r.op === 'put' && r.row !== null) {
        value = {}
        for (const c of info.columns) if (Object.prototype.hasOwnProperty.call(r.row, c.name)) value[c.name] = fieldFromPg(c.kind, r.row[c.name])
      }
      if (recheck && Number(r.seq) <= this.inflight) {
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
    // exactly the rows taken: one committed late below them stays for the next round
    await client.query(`DELETE FROM ${PG_OUTBOX} WHERE seq = ANY($1::bigint[])`, [rows.map(r => r.seq)])
    this.lag = Math.max(0, this.lag - rows.length)
    return rows.length === CAPTURE_BATCH
  }

  // -- in -------------------------------------------------------------------

  private async applyLoop (): Promise<void> {
    while (!this.stopping) {
      let more = false
      try {
        more = await this.applyOnce()
      } catch (err) {
        this.fail(err, 'apply failed')
        await this.sleep(1000, 'changes')
        await this.reconnect().catch(() => {})
        more = true
        continue
      }
      if (!more) await this.sleep(1000, 'changes')
    }
  }

  private async saveCursor (client: pg.Client): Promise<void> {
    await client.query(`INSERT INTO ${PG_STATE} (connector, cursor) VALUES ($1, $2) ON CONFLICT (connector) DO UPDATE SET cursor = excluded.cursor`, [this.stateKey, this.cursor])
    this.cursorDirty = false
  }

  private async applyOnce (): Promise<boolean> {
    const client = this.client as pg.Client
    const info = this.info as PgTableInfo
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
    let applied = 0
    let skippedFields = 0
    const refused: Array<{ id: string, message: string }> = []
    await client.query('BEGIN')
    try {
      await client.query("SET LOCAL syncmesh.applying = 'on'")
      for (const line of delivered) {
        await client.query('SAVEPOINT syncmesh_row')
        try {
          if (line.op === 'del' || line.value === undefined) {
            await client.query(`DELETE FROM ${T} WHERE ${quote(idCol.name)} = $1`, [line.id])
          } else {
            const names = [idCol.name]
            const values: Array<SqlValue | boolean> = [line.id]
            for (const [field, v] of Object.entries(line.value)) {
              if (field === idCol.name) continue
              const col = byName.get(field)
              if (col === undefined) {
                skippedFields++
                continue
              }
              names.push(field)
              values.push(col.kind === 'boolean' && typeof v === 'boolean' ? v : columnFromField(col.kind, v as JsonValue))
            }
            const others = names.filter(n => n !== idCol.name)
            const set = others.length > 0 ? `DO UPDATE SET ${others.map(n => `${quote(n)} = excluded.${quote(n)}`).join(', ')}` : 'DO NOTHING'
            await client.query(`INSERT INTO ${T} (${names.map(quote).join(', ')}) VALUES (${names.map((_, i) => `$${i + 1}`).join(', ')}) ON CONFLICT (${quote(idCol.name)}) ${set}`, values)
          }
          await client.query('RELEASE SAVEPOINT syncmesh_row')
          applied++
        } catch (err) {
          await client.query('ROLLBACK TO SAVEPOINT syncmesh_row')
          refused.push({ id: line.id, message: (err as Error).message })
        }
      }
      await client.query(`INSERT INTO ${PG_STATE} (connector, cursor) VALUES ($1, $2) ON CONFLICT (connector) DO UPDATE SET cursor = excluded.cursor`, [this.stateKey, next])
      await client.query('COMMIT')
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {})
      throw err
    }
    this.cursor = next
    this.cursorDirty = false
    this.counters.applied += applied
    this.counters.skippedFields += skippedFields
    for (const r of refused) this.refuse(r.id, r.message, `table ${this.def.table}`)
    return more
  }

  status (): ConnectorStatus {
    return {
      ...this.def,
      db: redactUrl(this.def.db),
      ...this.counters,
      running: this.client !== undefined && !this.stopping,
      lag: this.lag,
      ...(this.def.direction !== 'out' ? { cursor: this.cursor } : {}),
      ...(this.lastError !== undefined ? { lastError: this.lastError } : {}),
      ...(this.lastRefused !== undefined ? { lastRefused: this.lastRefused } : {})
    }
  }
}
