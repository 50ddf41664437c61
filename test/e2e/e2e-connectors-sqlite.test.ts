/**
 * SQLite connectors across two real `syncmesh start` processes on 127.0.0.1
 * (port 0, temp dirs), each with its own application database (a real
 * SQLite file written through better-sqlite3, as an application would), a
 * two-way connector added through the CLI, and the rules A:devices →
 * B:devices and B:devices → A:devices.
 */
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { afterAll, describe, expect, it } from 'vitest'
import { NodeProcess, runCli, tempDir, waitFor } from '../../scripts/lib/cluster.js'

const KEY = '5e2b8d1f4a7c0e3b6d9f2a5c8e1b4d7f0a'
const NO_DISCOVERY = ['--target-peers', '0']

interface Json { [k: string]: any }

const SCHEMA_A = `CREATE TABLE devices (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  online BOOLEAN,
  meta JSON,
  seen_at TIMESTAMP,
  raw BLOB,
  score REAL,
  n INTEGER
)`
// B has no "score" column (skipped fields) and refuses n >= 1000
const SCHEMA_B = `CREATE TABLE devices (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  online BOOLEAN,
  meta JSON,
  seen_at TIMESTAMP,
  raw BLOB,
  n INTEGER CHECK (n IS NULL OR n < 1000)
)`

function openApp (file: string, schema: string): Database.Database {
  const db = new Database(file)
  db.pragma('journal_mode = WAL')
  db.pragma('busy_timeout = 5000')
  db.exec(schema)
  return db
}

function rows (db: Database.Database, columns = '*'): Json[] {
  return db.prepare(`SELECT ${columns} FROM devices ORDER BY id`).all() as Json[]
}

function outboxCount (db: Database.Database): number {
  return (db.prepare('SELECT count(*) AS n FROM _syncmesh_outbox').get() as { n: number }).n
}

/** The entries a node wrote: its whole log, and with rule streams (where its own writes have no place in it) its rule streams. */
async function ownSeq (node: NodeProcess): Promise<number> {
  const status = await node.status()
  return (status.origins as Json[]).filter(o => o.origin === node.peerId || String(o.origin).startsWith(`${node.peerId}/`)).reduce((n, o) => n + (o.seq as number), 0)
}

async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}

describe('SQLite connectors between two real nodes', () => {
  const procs: NodeProcess[] = []
  const dbs: Database.Database[] = []
  let parent = ''
  afterAll(async () => {
    for (const db of dbs) db.close()
    await Promise.all(procs.map(async p => await p.kill()))
    if (parent !== '') await rm(parent, { recursive: true, force: true })
  })

  it('two-way: inserts, updates, deletes on either side, no loop, a refused row does not block, kill -9 loses and duplicates nothing', async () => {
    parent = await tempDir()
    const a = await NodeProcess.create('A', KEY, { parent })
    const b = await NodeProcess.create('B', KEY, { parent })
    procs.push(a, b)
    const fileA = join(parent, 'app-a.db')
    const fileB = join(parent, 'app-b.db')
    const appA = openApp(fileA, SCHEMA_A)
    const appB = openApp(fileB, SCHEMA_B)
    dbs.push(appA, appB)
    // a row that exists before the connector: taken with the triggers' creation
    appA.prepare('INSERT INTO devices (id, name, online, n) VALUES (?, ?, ?, ?)').run('pre', 'before the connector', 1, 1)

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
    const ca = await cli(a, ['connector', 'add', 'sqlite', '--db', fileA, '--table', 'devices', '--collection', 'devices', '--id', 'id'])
    const cb = await cli(b, ['connector', 'add', 'sqlite', '--db', fileB, '--table', 'devices', '--collection', 'devices', '--id', 'id'])
    expect(ca).toMatchObject({ kind: 'sqlite', table: 'devices', direction: 'both', idColumn: 'id', running: true })
    // bad input: a clear error with a stable code, nothing stored
    const bad = await runCli(['connector', 'add', 'sqlite', '--db', fileA, '--table', 'nope', '--collection', 'x', '--id', 'id', '--data', a.dir])
    expect(bad.code).toBe(1)
    expect(bad.stderr).toMatch(/^error \[CONNECTOR_NO_TABLE\]/)
    expect((await cli(a, ['connector', 'ls'])).length).toBe(1)

    await waitFor(() => rows(appB).some(r => r.id === 'pre'), 'the existing row to reach B')

    // insert on A with every kind of column
    const blob = Buffer.from([0, 1, 2, 250, 255])
    appA.prepare('INSERT INTO devices (id, name, online, meta, seen_at, raw, score, n) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
      .run('d1', 'router', 1, JSON.stringify({ ports: [1, 2], tags: { site: 'eu' } }), '2026-01-02 03:04:05', blob, 0.5, 7)
    await waitFor(async () => (await a.get('devices', 'd1')) !== undefined, 'A to capture d1')
    expect(await a.get('devices', 'd1')).toEqual({ id: 'd1', name: 'router', online: true, meta: { ports: [1, 2], tags: { site: 'eu' } }, seen_at: '2026-01-02T03:04:05.000Z', raw: blob.toString('base64'), score: 0.5, n: 7 })
    await waitFor(() => rows(appB).some(r => r.id === 'd1'), 'd1 to reach B\'s table')
    const d1 = rows(appB).find(r => r.id === 'd1') as Json
    expect({ ...d1, raw: Buffer.from(d1.raw as Buffer).toString('hex') }).toEqual({ id: 'd1', name: 'router', online: 1, meta: '{"ports":[1,2],"tags":{"site":"eu"}}', seen_at: '2026-01-02T03:04:05.000Z', raw: blob.toString('hex'), n: 7 })

    // update and delete on A
    appA.prepare('UPDATE devices SET name = ?, online = 0 WHERE id = ?').run('router-2', 'd1')
    appA.prepare('INSERT INTO devices (id, name) VALUES (?, ?)').run('d2', 'switch')
    appA.prepare('DELETE FROM devices WHERE id = ?').run('d2')
    await waitFor(() => (rows(appB).find(r => r.id === 'd1')?.name) === 'router-2', 'the update to reach B')
    expect(rows(appB).find(r => r.id === 'd1')?.online).toBe(0)
    // insert, update, delete on B reach A
    appB.prepare('INSERT INTO devices (id, name, n) VALUES (?, ?, ?)').run('b1', 'camera', 3)
    appB.prepare('INSERT INTO devices (id, name, n) VALUES (?, ?, ?)').run('b2', 'sensor', 4)
    await waitFor(() => rows(appA).filter(r => r.id === 'b1' || r.id === 'b2').length === 2, 'B\'s inserts to reach A')
    appB.prepare('UPDATE devices SET name = ? WHERE id = ?').run('camera-2', 'b1')
    appB.prepare('DELETE FROM devices WHERE id = ?').run('b2')
    appB.prepare('DELETE FROM devices WHERE id = ?').run('pre')
    await waitFor(() => rows(appA).find(r => r.id === 'b1')?.name === 'camera-2' && !rows(appA).some(r => r.id === 'b2' || r.id === 'pre'), 'B\'s update and deletes to reach A')
    // an update on A of a row that came from B goes back to B
    appA.prepare('UPDATE devices SET n = 9 WHERE id = ?').run('b1')
    await waitFor(() => rows(appB).find(r => r.id === 'b1')?.n === 9, 'A\'s update of b1 to reach B')

    // a row B's table refuses (CHECK) is counted and the rows after it still apply
    appA.prepare('INSERT INTO devices (id, name, n) VALUES (?, ?, ?)').run('bad', 'too big', 5000)
    appA.prepare('INSERT INTO devices (id, name, n) VALUES (?, ?, ?)').run('after-bad', 'fine', 1)
    await waitFor(() => rows(appB).some(r => r.id === 'after-bad'), 'the row after the refused one to reach B')
    expect(rows(appB).some(r => r.id === 'bad')).toBe(false)
    const sb = await cli(b, ['connector', 'status', cb.id])
    expect(sb.refusedRows).toBe(1)
    expect(sb.lastRefused.id).toBe('bad')
    expect(sb.skippedFields).toBeGreaterThan(0) // "score" has no column on B

    // a row the node refuses (an id over 512 characters) is counted on A, and the rows after it are still taken
    const longId = 'L'.repeat(600)
    appA.prepare('INSERT INTO devices (id, name) VALUES (?, ?)').run(longId, 'id too long')
    appA.prepare('INSERT INTO devices (id, name) VALUES (?, ?)').run('after-long', 'fine')
    await waitFor(() => rows(appB).some(r => r.id === 'after-long'), 'the row after the one the node refused to reach B')
    const sa0 = await cli(a, ['connector', 'status', ca.id])
    expect(sa0.refusedRows).toBe(1)
    expect(sa0.lastRefused.id).toBe(longId.slice(0, 200))
    expect(sa0.lastRefused.message).toMatch(/invalid record id/)
    const notOnB = (r: Json): boolean => r.id !== 'bad' && r.id !== longId

    // settled: the outboxes are empty, the logs stop growing, the tables agree (but for the refused row)
    await waitFor(async () => outboxCount(appA) === 0 && outboxCount(appB) === 0, 'the outboxes to drain')
    const seqA = await ownSeq(a)
    const seqB = await ownSeq(b)
    await sleep(1500)
    expect(outboxCount(appA)).toBe(0)
    expect(outboxCount(appB)).toBe(0)
    expect(await ownSeq(a)).toBe(seqA)
    expect(await ownSeq(b)).toBe(seqB)
    // timestamps arrive as ISO 8601 (A's "2026-01-02 03:04:05" is B's "2026-01-02T03:04:05.000Z")
    const common = "id, name, online, meta, strftime('%Y-%m-%dT%H:%M:%S', seen_at) AS seen_at, hex(raw) AS raw, n"
    expect(rows(appB, common)).toEqual(rows(appA, common).filter(notOnB))
    // each application change was captured once on its own side, nothing came back
    const sa = await cli(a, ['connector', 'status', ca.id])
    const sb2 = await cli(b, ['connector', 'status', cb.id])
    // A: pre, d1 insert, d1 update, d2 (insert+delete, maybe collapsed), b1 update, bad, after-bad, after-long
    expect(sa.captured).toBeGreaterThanOrEqual(8)
    expect(sa.captured).toBeLessThanOrEqual(9)
    // B: b1, b2, b1 update, b2 delete, pre delete (4 or 5 when collapsed into fewer rounds)
    expect(sb2.captured).toBeGreaterThanOrEqual(3)
    expect(sb2.captured).toBeLessThanOrEqual(5)
    expect(sa.lag).toBe(0)
    expect(sa.errors).toBe(0)
    expect(sb2.errors).toBe(0)

    // 5000 rows in one transaction on A, until committed in B's table
    const t0 = performance.now()
    const put = appA.prepare('INSERT INTO devices (id, name, n) VALUES (?, ?, ?)')
    appA.transaction(() => { for (let i = 0; i < 5000; i++) put.run(`m${i}`, `measured ${i}`, i % 1000) })()
    const countM = appB.prepare("SELECT count(*) AS n FROM devices WHERE id LIKE 'm%'")
    await waitFor(() => (countM.get() as { n: number }).n === 5000, 'the measured rows to reach B', 120_000, 20)
    const ms = performance.now() - t0
    console.log(`[measure] 5000 rows in one SQLite transaction on A until committed in B's table: ${ms.toFixed(0)} ms (${(5000 / ms * 1000).toFixed(0)} rows/s)`)

    // B's application counts every insert and update of its table (the connector's writes included)
    appB.exec(`CREATE TABLE writes (op TEXT PRIMARY KEY, n INTEGER NOT NULL);
      INSERT INTO writes VALUES ('insert', 0), ('update', 0);
      CREATE TRIGGER count_insert AFTER INSERT ON devices WHEN NEW.id LIKE 'k%' BEGIN UPDATE writes SET n = n + 1 WHERE op = 'insert'; END;
      CREATE TRIGGER count_update AFTER UPDATE ON devices WHEN NEW.id LIKE 'k%' BEGIN UPDATE writes SET n = n + 1 WHERE op = 'update'; END;`)
    const writes = (op: string): number => (appB.prepare('SELECT n FROM writes WHERE op = ?').get(op) as { n: number }).n

    // kill -9 of A in the middle of a 10,000-row capture while the application keeps writing
    const before = await ownSeq(a)
    const insert = appA.prepare('INSERT INTO devices (id, name, n) VALUES (?, ?, ?)')
    const bulk = appA.transaction((from: number, to: number) => {
      for (let i = from; i < to; i++) insert.run(`k${String(i).padStart(5, '0')}`, `bulk ${i}`, i % 1000)
    })
    bulk(0, 10_000)
    await waitFor(async () => (await a.get('devices', 'k00000')) !== undefined, 'A to start taking the bulk insert', 30_000, 5)
    const listenA = a.multiaddr.split('/p2p/')[0] // the same address after the restart: no registry write
    await a.kill()
    for (let t = 0; t < 20; t++) bulk(10_000 + t * 100, 10_000 + (t + 1) * 100) // 2000 more in 20 transactions while A is down
    const pending = outboxCount(appA)
    expect(pending).toBeGreaterThan(2000)
    await a.start(NO_DISCOVERY, { listen: listenA })
    // kill -9 of B in the middle of applying them
    const listenB = b.multiaddr.split('/p2p/')[0]
    await waitFor(() => writes('insert') > 0, 'B to start applying the bulk rows', 60_000, 2)
    await b.kill()
    const appliedAtKill = writes('insert')
    await b.start(NO_DISCOVERY, { listen: listenB })
    await b.addPeer(a.multiaddr)
    await waitFor(() => rows(appB).filter(r => String(r.id).startsWith('k')).length === 12_000, 'every bulk row to reach B after the restart', 120_000)
    await waitFor(async () => outboxCount(appA) === 0, 'A\'s outbox to drain')
    // one log entry per application write: nothing lost, nothing written twice
    expect(await ownSeq(a) - before).toBe(12_000)
    expect(rows(appB, common)).toEqual(rows(appA, common).filter(notOnB))
    const after = await cli(a, ['connector', 'status', ca.id])
    // every bulk row was inserted into B's table once and never written again: no batch applied twice
    expect(writes('insert')).toBe(12_000)
    expect(writes('update')).toBe(0)
    console.log(`[measure] kill -9 during apply: B had inserted ${appliedAtKill} of 12000 bulk rows when killed`)
    console.log(`[measure] kill -9 during capture: ${pending} outbox rows pending at restart, ${after.captured} captured after it, ${after.recaptured} retaken and not written again`)

    // rm drops the triggers: further writes are not captured
    await cli(a, ['connector', 'rm', ca.id])
    appA.prepare('INSERT INTO devices (id, name) VALUES (?, ?)').run('untracked', 'x')
    expect(outboxCount(appA)).toBe(0)
    expect((await cli(a, ['connector', 'ls'])).length).toBe(0)
  }, 300_000)

  it('measures application writes per second with and without a running connector', async () => {
    const dir = await tempDir()
    const node = await NodeProcess.create('W', KEY, { parent: dir })
    procs.push(node)
    await node.start(NO_DISCOVERY)
    const plain = openApp(join(dir, 'plain.db'), SCHEMA_A)
    const synced = openApp(join(dir, 'synced.db'), SCHEMA_A)
    dbs.push(plain, synced)
    const r = await runCli(['connector', 'add', 'sqlite', '--db', join(dir, 'synced.db'), '--table', 'devices', '--collection', 'devices', '--id', 'id', '--data', node.dir])
    expect(r.code, r.stderr).toBe(0)
    const run = async (db: Database.Database, prefix = 'w'): Promise<number> => {
      const insert = db.prepare('INSERT INTO devices (id, name, n, meta) VALUES (?, ?, ?, ?)')
      const one = db.transaction((i: number) => insert.run(`${prefix}${i}`, `device ${i}`, i, '{"a":1}'))
      const t0 = performance.now()
      for (let i = 0; i < 5000; i++) {
        one(i) // one commit per row, as a busy application does
        if (i % 100 === 99) await new Promise(resolve => setImmediate(resolve))
      }
      return 5000 / ((performance.now() - t0) / 1000)
    }
    const without = await run(plain)
    const withConnector = await run(synced)
    await waitFor(async () => await node.count('devices') === 5000, 'the node to take every row', 120_000)
    expect(outboxCount(synced)).toBe(0)
    await node.stop()
    const triggersOnly = await run(synced, 'x') // the triggers fill the outbox, nobody reads it
    expect(outboxCount(synced)).toBe(5000)
    console.log(`[measure] application commits/s (1 row each, WAL): ${without.toFixed(0)} without a connector, ${withConnector.toFixed(0)} with a running connector, ${triggersOnly.toFixed(0)} with the triggers only (node stopped)`)
  }, 180_000)
})
