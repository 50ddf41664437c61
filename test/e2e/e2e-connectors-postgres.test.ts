/**
 * The PostgreSQL connector across two real `syncmesh start` processes: A's
 * application uses PostgreSQL (a real server this test starts in a temp dir
 * with the system's initdb and pg_ctl, on a free loopback port, and stops
 * after), B's uses SQLite; a two-way connector on each side and the rules
 * A:devices → B:devices, B:devices → A:devices.
 */
import { statSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import pg from 'pg'
import { afterAll, describe, expect, it } from 'vitest'
import { NodeProcess, runCli, tempDir, waitFor } from '../../scripts/lib/cluster.js'
import { postgresBin, startPostgres } from '../../scripts/lib/postgres.js'

const KEY = '0d4c8a2e6f1b5d9c3a7e0f4b8d2c6a1e5f'
const NO_DISCOVERY = ['--target-peers', '0']

interface Json { [k: string]: any }

const PG_SCHEMA = `CREATE TABLE devices (
  id text PRIMARY KEY,
  name text NOT NULL,
  online boolean,
  meta jsonb,
  seen_at timestamptz,
  raw bytea,
  n integer CHECK (n IS NULL OR n < 1000)
)`
const SQLITE_SCHEMA = `CREATE TABLE devices (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  online BOOLEAN,
  meta JSON,
  seen_at TIMESTAMP,
  raw BLOB,
  score REAL,
  n INTEGER
)`

describe.skipIf(postgresBin() === undefined)('a PostgreSQL connector and a SQLite connector between two real nodes', () => {
  const procs: NodeProcess[] = []
  let parent = ''
  let server: { url: string, stop: () => void } | undefined
  let app: pg.Client | undefined
  let appB: Database.Database | undefined
  afterAll(async () => {
    await app?.end().catch(() => {})
    appB?.close()
    await Promise.all(procs.map(async p => await p.kill()))
    server?.stop()
    if (parent !== '') await rm(parent, { recursive: true, force: true })
  })

  it('PostgreSQL ↔ SQLite: insert, update, delete, a bulk insert in one transaction, a refused row, no loop', async () => {
    parent = await tempDir()
    server = await startPostgres(parent)
    app = new pg.Client({ connectionString: server.url })
    await app.connect()
    await app.query(PG_SCHEMA)
    const fileB = join(parent, 'app-b.db')
    appB = new Database(fileB)
    appB.pragma('journal_mode = WAL')
    appB.exec(SQLITE_SCHEMA)
    const sqliteRows = (): Json[] => (appB as Database.Database).prepare('SELECT id, name, n FROM devices ORDER BY id').all() as Json[]
    const pgRows = async (): Promise<Json[]> => (await (app as pg.Client).query('SELECT id, name, n FROM devices ORDER BY id COLLATE "C"')).rows
    const pgOutbox = async (): Promise<number> => Number((await (app as pg.Client).query('SELECT count(*) AS n FROM _syncmesh_outbox')).rows[0].n)

    const a = await NodeProcess.create('A', KEY, { parent })
    const b = await NodeProcess.create('B', KEY, { parent })
    procs.push(a, b)
    await a.start(NO_DISCOVERY)
    await b.start(NO_DISCOVERY)
    await b.addPeer(a.multiaddr)
    await waitFor(async () => ((await a.request<Json[]>('GET', '/v1/platforms')).body).length === 2, 'A to know B')
    await a.addRule({ from: { platform: 'A', collection: 'devices' }, to: { platform: 'B', collection: 'devices' } })
    await a.addRule({ from: { platform: 'B', collection: 'devices' }, to: { platform: 'A', collection: 'devices' } })
    const cli = async (node: NodeProcess, args: string[]): Promise<Json> => {
      const r = await runCli([...args, '--data', node.dir, '--json'])
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0)
      return JSON.parse(r.stdout) as Json
    }
 // trust authentication ignores the password; the connector must never show it
    const withPassword = server.url.replace('postgres@', 'postgres:s3cret-pw@')
    const ca = await cli(a, ['connector', 'add', 'postgres', '--url', withPassword, '--table', 'devices', '--collection', 'devices', '--id', 'id'])
    expect(ca).toMatchObject({ kind: 'postgres', running: true })
    expect(JSON.stringify(ca)).not.toContain('s3cret-pw')
    expect(ca.db).toContain('***')
    expect(statSync(join(a.dir, 'connectors.json')).mode & 0o777).toBe(0o600)
    await cli(b, ['connector', 'add', 'sqlite', '--db', fileB, '--table', 'devices', '--collection', 'devices', '--id', 'id'])

    // PostgreSQL types into the record
    await app.query("INSERT INTO devices (id, name, online, meta, seen_at, raw, n) VALUES ('d1', 'router', true, '{\"ports\":[1,2]}', '2026-01-02 03:04:05+00', '\\x0001faff', 7)")
    await waitFor(async () => (await a.get('devices', 'd1')) !== undefined, 'A to capture d1')
    expect(await a.get('devices', 'd1')).toEqual({ id: 'd1', name: 'router', online: true, meta: { ports: [1, 2] }, seen_at: '2026-01-02T03:04:05.000Z', raw: Buffer.from([0, 1, 0xfa, 0xff]).toString('base64'), n: 7 })
    await waitFor(() => sqliteRows().some(r => r.id === 'd1'), 'd1 to reach B\'s SQLite table')
    const d1 = (appB.prepare('SELECT online, meta, seen_at, hex(raw) AS raw FROM devices WHERE id = ?').get('d1')) as Json
    expect(d1).toEqual({ online: 1, meta: '{"ports":[1,2]}', seen_at: '2026-01-02T03:04:05.000Z', raw: '0001FAFF' })

    // one transaction changes a row three times across a digit boundary of the outbox's seq (99999, 100000, 100001):
    // the node takes the last value (outbox rows are taken in numeric order)
    await app.query("SELECT setval('_syncmesh_outbox_seq_seq', 99998)")
    await app.query("BEGIN; UPDATE devices SET n = 1 WHERE id = 'd1'; UPDATE devices SET n = 2 WHERE id = 'd1'; UPDATE devices SET n = 3 WHERE id = 'd1'; COMMIT")
    await waitFor(async () => await pgOutbox() === 0, 'A to take the three updates')
    expect((await a.get('devices', 'd1'))?.n).toBe(3)

    // update and delete in PostgreSQL, insert/update/delete in SQLite
    await app.query("UPDATE devices SET name = 'router-2' WHERE id = 'd1'")
    await app.query("INSERT INTO devices (id, name) VALUES ('d2', 'gone soon')")
    await app.query("DELETE FROM devices WHERE id = 'd2'")
    appB.prepare('INSERT INTO devices (id, name, online, meta, score, n) VALUES (?, ?, ?, ?, ?, ?)').run('b1', 'camera', 0, '{"x":{"y":1}}', 2.5, 3)
    await waitFor(() => sqliteRows().find(r => r.id === 'd1')?.name === 'router-2', 'the PostgreSQL update to reach B')
    await waitFor(async () => (await pgRows()).some(r => r.id === 'b1'), 'B\'s insert to reach PostgreSQL')
    const b1 = (await app.query("SELECT online, meta FROM devices WHERE id = 'b1'")).rows[0] as Json
    expect(b1).toEqual({ online: false, meta: { x: { y: 1 } } })
    appB.prepare('UPDATE devices SET n = 4 WHERE id = ?').run('b1')
    await waitFor(async () => (await pgRows()).find(r => r.id === 'b1')?.n === 4, 'B\'s update to reach PostgreSQL')

    // a row PostgreSQL refuses (CHECK) is counted; the next one applies
    appB.prepare('INSERT INTO devices (id, name, n) VALUES (?, ?, ?)').run('bad', 'too big', 5000)
    appB.prepare('INSERT INTO devices (id, name, n) VALUES (?, ?, ?)').run('after-bad', 'fine', 1)
    await waitFor(async () => (await pgRows()).some(r => r.id === 'after-bad'), 'the row after the refused one')
    const sa = await cli(a, ['connector', 'status', ca.id])
    expect(sa.refusedRows).toBe(1)
    expect(sa.lastRefused.id).toBe('bad')
    expect(sa.skippedFields).toBeGreaterThan(0) // "score" has no column in PostgreSQL
    expect(JSON.stringify(sa)).not.toContain('s3cret-pw')
    expect((await cli(a, ['connector', 'ls']))[0].db).not.toContain('s3cret-pw')

    // 5000 rows in one PostgreSQL transaction
    const t0 = performance.now()
    await app.query("INSERT INTO devices (id, name, n) SELECT 'k' || lpad(i::text, 5, '0'), 'bulk ' || i, i % 1000 FROM generate_series(0, 4999) i")
    const countB = appB.prepare("SELECT count(*) AS n FROM devices WHERE id LIKE 'k%'")
    await waitFor(() => (countB.get() as { n: number }).n === 5000, 'the bulk insert to reach B', 120_000, 20)
    const ms = performance.now() - t0
    console.log(`[measure] 5000 rows in one PostgreSQL transaction on A until committed in B's SQLite table: ${ms.toFixed(0)} ms (${(5000 / ms * 1000).toFixed(0)} rows/s)`)

    // settled: outboxes empty, logs stop growing, the tables agree but for the refused row
    const outboxB = (): number => ((appB as Database.Database).prepare('SELECT count(*) AS n FROM _syncmesh_outbox').get() as { n: number }).n
    await waitFor(async () => await pgOutbox() === 0 && outboxB() === 0, 'the outboxes to drain')
    // the entries a node wrote: its whole log, and with rule streams (where its own writes have no place in it) its rule streams
    const seq = async (n: NodeProcess): Promise<number> => ((await n.status()).origins as Json[]).filter(o => o.origin === n.peerId || String(o.origin).startsWith(`${n.peerId}/`)).reduce((sum, o) => sum + (o.seq as number), 0)
    const seqA = await seq(a)
    const seqB = await seq(b)
    await new Promise(resolve => setTimeout(resolve, 1500))
    expect(await seq(a)).toBe(seqA)
    expect(await seq(b)).toBe(seqB)
    expect(await pgOutbox()).toBe(0)
    expect(await pgRows()).toEqual(sqliteRows().filter(r => r.id !== 'bad'))

    // B's application counts every insert and update of its table's "q" rows, the connector's writes included
    appB.exec(`CREATE TABLE writes (op TEXT PRIMARY KEY, n INTEGER NOT NULL);
      INSERT INTO writes VALUES ('insert', 0), ('update', 0);
      CREATE TRIGGER count_insert AFTER INSERT ON devices WHEN NEW.id LIKE 'q%' BEGIN UPDATE writes SET n = n + 1 WHERE op = 'insert'; END;
      CREATE TRIGGER count_update AFTER UPDATE ON devices WHEN NEW.id LIKE 'q%' BEGIN UPDATE writes SET n = n + 1 WHERE op = 'update'; END;`)
    const writesB = (op: string): number => ((appB as Database.Database).prepare('SELECT n FROM writes WHERE op = ?').get(op) as { n: number }).n
    // A's PostgreSQL application does the same for the "j" rows
    await app.query(`CREATE TABLE writes (op text PRIMARY KEY, n integer NOT NULL);
      INSERT INTO writes VALUES ('insert', 0), ('update', 0);
      CREATE FUNCTION count_write() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN UPDATE writes SET n = n + 1 WHERE op = lower(TG_OP); RETURN NULL; END $$;
      CREATE TRIGGER count_write AFTER INSERT OR UPDATE ON devices FOR EACH ROW WHEN (NEW.id LIKE 'j%') EXECUTE FUNCTION count_write();`)
    const writesA = async (op: string): Promise<number> => Number((await (app as pg.Client).query('SELECT n FROM writes WHERE op = $1', [op])).rows[0].n)
    const common = async (): Promise<Json[]> => (await (app as pg.Client).query('SELECT id, name, n FROM devices ORDER BY id COLLATE "C"')).rows
    const listenA = a.multiaddr.split('/p2p/')[0] // the same address after a restart
    const listenB = b.multiaddr.split('/p2p/')[0]

    // kill -9 of A in the middle of capturing 10,000 rows committed in one PostgreSQL transaction
    const before = await seq(a)
    await app.query("INSERT INTO devices (id, name, n) SELECT 'q' || lpad(i::text, 5, '0'), 'bulk ' || i, i % 1000 FROM generate_series(0, 9999) i")
    await waitFor(async () => (await a.get('devices', 'q00000')) !== undefined, 'A to start taking the bulk insert', 60_000, 5)
    await a.kill()
    // 2000 more in 20 transactions while A is down
    for (let t = 0; t < 20; t++) {
      await app.query("INSERT INTO devices (id, name, n) SELECT 'q' || lpad(i::text, 5, '0'), 'bulk ' || i, i % 1000 FROM generate_series($1::int, $2::int) i", [10_000 + t * 100, 10_000 + t * 100 + 99])
    }
    const pending = await pgOutbox()
    expect(pending).toBeGreaterThan(2000)
    await a.start(NO_DISCOVERY, { listen: listenA })
    // kill -9 of B in the middle of applying them into its SQLite table
    await waitFor(() => writesB('insert') > 0, 'B to start applying the bulk rows', 120_000, 2)
    await b.kill()
    const appliedAtKillB = writesB('insert')
    await b.start(NO_DISCOVERY, { listen: listenB })
    await b.addPeer(a.multiaddr)
    const countQ = appB.prepare("SELECT count(*) AS n FROM devices WHERE id LIKE 'q%'")
    await waitFor(() => (countQ.get() as { n: number }).n === 12_000, 'every "q" row to reach B after the restarts', 180_000)
    await waitFor(async () => await pgOutbox() === 0, 'A\'s outbox to drain')
    // one log entry per application write on A: nothing lost, nothing taken twice
    const connectorsSay = async (): Promise<string> => JSON.stringify({ a: await cli(a, ['connector', 'ls']), b: await cli(b, ['connector', 'ls']), log: a.stderr.split('\n').filter(l => /connector|capture/i.test(l)).slice(-20) })
    expect(await seq(a) - before, await connectorsSay()).toBe(12_000)
    // every row inserted into B's table once and never written again
    expect(writesB('insert')).toBe(12_000)
    expect(writesB('update')).toBe(0)
    const afterCapture = await cli(a, ['connector', 'status', ca.id])
    console.log(`[measure] PostgreSQL, kill -9 during capture: ${pending} outbox rows pending at restart, ${afterCapture.captured} captured after it, ${afterCapture.recaptured} retaken and not written again; kill -9 during B's apply after ${appliedAtKillB} of 12000`)

    // kill -9 of A in the middle of applying 10,000 rows (one SQLite transaction on B) into PostgreSQL
    const insertB = appB.prepare('INSERT INTO devices (id, name, n) VALUES (?, ?, ?)')
    appB.transaction(() => { for (let i = 0; i < 10_000; i++) insertB.run(`j${String(i).padStart(5, '0')}`, `from b ${i}`, i % 1000) })()
    await waitFor(async () => await writesA('insert') > 0, 'A to start applying the rows into PostgreSQL', 120_000, 2)
    await a.kill()
    const appliedAtKillA = await writesA('insert')
    await a.start(NO_DISCOVERY, { listen: listenA })
    await b.addPeer(a.multiaddr)
    await waitFor(async () => Number((await (app as pg.Client).query("SELECT count(*) AS n FROM devices WHERE id LIKE 'j%'")).rows[0].n) === 10_000, 'every "j" row to reach PostgreSQL after the restart', 180_000)
    // every row inserted into A's table once, none written again (the apply batch and its cursor commit together)
    expect(await writesA('insert')).toBe(10_000)
    expect(await writesA('update')).toBe(0)
    await waitFor(() => outboxB() === 0, 'B\'s outbox to drain')
    // both tables end exactly equal (but for the row PostgreSQL refused)
    expect(await common()).toEqual(sqliteRows().filter(r => r.id !== 'bad'))
    expect(await pgOutbox()).toBe(0)
    console.log(`[measure] PostgreSQL, kill -9 during apply: A had inserted ${appliedAtKillA} of 10000 rows into PostgreSQL when killed`)
  }, 600_000)
})
