/**
 * The row ↔ record mapping of the connectors (src/connectors/connector.ts),
 * and the SQLite triggers on a real database file: what a row becomes in the
 * outbox and back, the apply flag, and an update that changes the id.
 */
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { afterAll, describe, expect, it } from 'vitest'
import { tempDir } from '../../scripts/lib/cluster.js'
import { checkIdentifier, columnFromField, columnKind, fieldFromColumn, recordFromRow, toIso } from '../../src/connectors/connector.js'
import { APPLYING, OUTBOX, inspectTable, installSchema, uninstallSchema } from '../../src/connectors/sqlite.js'
import { pgKind, redactUrl } from '../../src/connectors/postgres.js'

describe('connector mapping', () => {
  it('column kinds from declared types', () => {
    expect(['INTEGER', 'BIGINT', 'REAL', 'DOUBLE PRECISION', 'VARCHAR(20)', 'BOOLEAN', 'JSON', 'DATETIME', 'TIMESTAMP', 'BLOB', '', 'NUMERIC'].map(columnKind))
      .toEqual(['integer', 'integer', 'real', 'real', 'text', 'boolean', 'json', 'timestamp', 'timestamp', 'blob', 'any', 'any'])
    expect(['integer', 'bigint', 'numeric', 'character varying', 'boolean', 'jsonb', 'timestamp with time zone', 'bytea', 'uuid'].map(pgKind))
      .toEqual(['integer', 'integer', 'real', 'text', 'boolean', 'json', 'timestamp', 'blob', 'any'])
  })

  it('maps values both ways', () => {
    expect(fieldFromColumn('boolean', 1)).toBe(true)
    expect(fieldFromColumn('boolean', 0)).toBe(false)
    expect(fieldFromColumn('json', '{"a":[1,{"b":null}]}')).toEqual({ a: [1, { b: null }] })
    expect(fieldFromColumn('json', 'not json')).toBe('not json')
    expect(fieldFromColumn('timestamp', '2026-01-02 03:04:05')).toBe('2026-01-02T03:04:05.000Z')
    expect(fieldFromColumn('timestamp', 1767323045)).toBe('2026-01-02T03:04:05.000Z')
    expect(fieldFromColumn('blob', '00FF10')).toBe(Buffer.from([0, 255, 16]).toString('base64'))
    expect(fieldFromColumn('text', null)).toBe(null)
    expect(columnFromField('boolean', true)).toBe(1)
    expect(columnFromField('json', { a: [1] })).toBe('{"a":[1]}')
    expect(columnFromField('timestamp', '2026-01-02T05:04:05+02:00')).toBe('2026-01-02T03:04:05.000Z')
    expect(columnFromField('blob', 'AP8Q')).toEqual(Buffer.from([0, 255, 16]))
    expect(columnFromField('text', { nested: true })).toBe('{"nested":true}')
    expect(columnFromField('integer', undefined)).toBe(null)
    expect(toIso('garbage')).toBe('garbage')
    expect(recordFromRow([{ name: 'a', kind: 'boolean', notNull: false }], { a: 1, extra: 'left out' })).toEqual({ a: true })
  })

  it('refuses identifiers that are not plain, and hides URL passwords', () => {
    for (const bad of ['a b', '1x', 'x"; DROP TABLE y; --', '_syncmesh_outbox', '']) expect(() => checkIdentifier(bad, 'table')).toThrow(/plain identifier/)
    expect(checkIdentifier('Devices_2', 'table')).toBe('Devices_2')
    expect(redactUrl('postgres://u:secret@h:5432/db')).toBe('postgres://u:***@h:5432/db')
  })
})

describe('SQLite triggers on a real file', () => {
  let dir = ''
  afterAll(async () => { if (dir !== '') await rm(dir, { recursive: true, force: true }) })

  it('capture rows in the transaction, skip the apply flag, split an id change, snapshot existing rows once', async () => {
    dir = await tempDir()
    const db = new Database(join(dir, 'app.db'))
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, data BLOB, extra TEXT)')
    db.prepare('INSERT INTO t VALUES (1, ?, NULL, ?)').run('existing', 'x')
    const info = inspectTable(db, 't', 'id', ['name', 'data'])
    expect(info.columns.map(c => c.name)).toEqual(['id', 'name', 'data'])
    expect(installSchema(db, 't', info, true).snapshot).toBe(1)
    expect(installSchema(db, 't', info, true).snapshot).toBe(0) // a restart does not copy again
    const outbox = (): Array<{ op: string, id: string, row: string | null }> => db.prepare(`SELECT op, id, row FROM ${OUTBOX} ORDER BY seq`).all() as any
    expect(outbox()).toEqual([{ op: 'put', id: '1', row: '{"id":1,"name":"existing","data":null}' }])
    db.prepare(`DELETE FROM ${OUTBOX}`).run()

    db.prepare('INSERT INTO t VALUES (2, ?, ?, ?)').run('two', Buffer.from([1, 2]), 'not captured')
    db.prepare('UPDATE t SET id = 3 WHERE id = 2').run()
    db.prepare('DELETE FROM t WHERE id = 1').run()
    // a rolled back transaction leaves nothing
    try { db.transaction(() => { db.prepare("INSERT INTO t (id, name) VALUES (9, 'gone')").run(); throw new Error('rollback') })() } catch {}
    expect(outbox()).toEqual([
      { op: 'put', id: '2', row: '{"id":2,"name":"two","data":"0102"}' },
      { op: 'del', id: '2', row: null },
      { op: 'put', id: '3', row: '{"id":3,"name":"two","data":"0102"}' },
      { op: 'del', id: '1', row: null }
    ])
    // while the apply flag is set (in the connector's own transaction), nothing is captured
    db.prepare(`DELETE FROM ${OUTBOX}`).run()
    db.transaction(() => {
      db.prepare(`INSERT INTO ${APPLYING} (tbl) VALUES ('t')`).run()
      db.prepare("INSERT INTO t (id, name) VALUES (4, 'applied')").run()
      db.prepare(`DELETE FROM ${APPLYING} WHERE tbl = 't'`).run()
    })()
    expect(outbox()).toEqual([])
    uninstallSchema(db, 't')
    db.prepare("INSERT INTO t (id, name) VALUES (5, 'after rm')").run()
    expect(outbox()).toEqual([])
    expect(() => inspectTable(db, 't', 'name')).toThrow(/neither the primary key nor has a unique index/)
    db.close()
  })
})
