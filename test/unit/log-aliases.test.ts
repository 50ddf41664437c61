/**
 * Log aliases (src/store/log-aliases.ts) and the upgrade that moves the
 * per-log keys of data format 4 under them, on real LevelDB stores.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { decodeEntry } from '../../src/log/entry.js'
import { verifyAttestedRuns } from '../../src/log/signing.js'
import type { Db } from '../../src/store/db.js'
import { keys, LOG_TAGS } from '../../src/store/keys.js'
import { aliasLegacyLogKeys, LogAliases, NO_ALIAS } from '../../src/store/log-aliases.js'
import { Harness } from '../helpers/ingest-harness.js'
import { toLegacyLogKeys } from '../helpers/legacy-keys.js'

const open: Harness[] = []
afterEach(async () => {
  for (const h of open.splice(0)) await h.destroy()
})

const put = (id: string, n: number): { collection: string, id: string, op: 'put', value: { n: number } } => ({ collection: 'posts', id, op: 'put', value: { n } })

async function dump (db: Db): Promise<Map<string, string>> {
  return new Map((await db.iterator().all()).map(([k, v]) => [k, Buffer.from(v).toString('hex')]))
}

/** `db` whose batch writes fail from the `n`th on, as a crash would stop them. */
function failingFrom (db: Db, n: number): Db {
  let calls = 0
  return new Proxy(db, {
    get (target, prop) {
      if (prop === 'batch') {
        return async (...args: Parameters<Db['batch']>) => {
          if (++calls >= n) throw new Error('power cut')
          return await (target.batch as (...a: unknown[]) => Promise<void>)(...args)
        }
      }
      const v = Reflect.get(target, prop) as unknown
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
    }
  })
}

describe('log aliases', () => {
  it('gives each log one alias, written before it is returned, kept across reopening and never reused', async () => {
    const h = await Harness.create('a')
    open.push(h)
    const aliases = new LogAliases(h.store.db)
    await aliases.load()
    const logA = `${h.self}`
    const logB = `${h.self}/r.0123456789abcdef0123`
    expect(aliases.of(logA)).toBe(NO_ALIAS)
    // a key written through it would name no log: the store refuses the whole write
    const txn = h.store.txn()
    txn.put(keys.record('posts', 'a'), new Uint8Array([1]))
    txn.put(keys.entry(aliases.of(logA), 1), new Uint8Array([1]))
    await expect(txn.commit()).rejects.toThrow(/names a log that has no alias/)
    expect(await h.store.db.get(keys.record('posts', 'a'))).toBeUndefined()
    const vector = h.store.txn()
    vector.put(keys.vector(NO_ALIAS), new Uint8Array([1]))
    await expect(vector.commit()).rejects.toThrow(/names a log that has no alias/)
    // a record of a collection named like it is no log's key
    const record = h.store.txn()
    record.put(keys.record(NO_ALIAS, 'a'), new Uint8Array([1]))
    await record.commit()
    // concurrent callers for one log share the one alias
    const [a1, a2, b] = await Promise.all([aliases.ensure(logA), aliases.ensure(logA), aliases.ensure(logB)])
    expect(a1).toBe(a2)
    expect(b).not.toBe(a1)
    expect(Buffer.from(await h.store.db.get(keys.logAlias(logB)) ?? []).toString()).toBe(b)
    const again = new LogAliases(h.store.db)
    await again.load()
    expect([again.of(logA), again.of(logB), again.logOf(b)]).toEqual([a1, b, logB])
    // a new log after reloading gets a fresh alias
    const c = await again.ensure(`${h.self}/r.ffffffffffffffffffff`)
    expect([a1, b]).not.toContain(c)
  })

  it('keys name a log by its alias: the log is read back from them after reopening', async () => {
    const h = await Harness.create('a')
    open.push(h)
    await h.writeLocal([put('x', 1), put('y', 1)])
    const alias = h.store.logs.of(h.self)
    expect(alias.length).toBeLessThan(3)
    expect(await h.store.db.get(keys.vector(alias))).toBeDefined()
    expect(await h.store.db.keys({ gte: `e\x00${h.self}`, lt: `e\x00${h.self}\x01` }).all()).toEqual([])
    await h.reopen()
    expect(h.log.vector.get(h.self)).toBe(2)
    expect((await h.ownEntries()).map(e => e.id)).toEqual(['x', 'y'])
  })
})

describe('the upgrade to data format 5', () => {
  it('moves every per-log key of format 4 under its log\'s alias, and resumes after a crash to the same result', async () => {
    const origin = await Harness.createSigning('origin')
    const relay = await Harness.create('relay')
    open.push(origin, relay)
    // more keys than one batch moves, in the relay's own log and in another origin's it stores
    for (let i = 0; i < 3; i++) await origin.writeLocal(Array.from({ length: 700 }, (_, j) => put(`p${i * 700 + j}`, 1)))
    const run = await origin.log.readAttested(origin.self, 0, 10_000, 1 << 30)
    if (run === undefined) throw new Error('nothing to read')
    const entries = run.entries.map(raw => Object.assign(decodeEntry(origin.self, raw), { bytes: raw }))
    const roots = verifyAttestedRuns(origin.self, entries, run.certs, { from: run.fromSeq, to: run.toSeq })
    await relay.ingestor.ingest(origin.self, run.fromSeq, run.toSeq, entries, [], { certs: run.certs.map((cert, i) => ({ cert, root: roots[i] })), updates: run.updates })
    await relay.writeLocal([put('own', 1)])
    const current = await dump(relay.store.db)

    await toLegacyLogKeys(relay.store.db)
    const legacy = await dump(relay.store.db)
    expect([...legacy.keys()].some(k => k.startsWith(`e\x00${origin.self}\x00`))).toBe(true)
    expect([...legacy.keys()].some(k => k.startsWith('o\x00'))).toBe(false)

    // a crash after two batches, then the upgrade run again from the start
    await expect(aliasLegacyLogKeys(failingFrom(relay.store.db, 3))).rejects.toThrow('power cut')
    const partial = await dump(relay.store.db)
    expect(partial).not.toEqual(legacy)
    expect(await aliasLegacyLogKeys(relay.store.db)).toMatchObject({ logs: 2 })
    const upgraded = await dump(relay.store.db)
    // no key names a log by its id; every key is where the current format puts it, value unchanged
    for (const k of upgraded.keys()) {
      if (!(LOG_TAGS as readonly string[]).includes(k[0]) || k[1] !== '\x00') continue
      expect(k.slice(2).split('\x00')[0].length, k.slice(0, 60)).toBeLessThan(9)
    }
    expect(upgraded.size).toBe(current.size)
    // aliases are given in the order of the log ids: the same as the clean run gives
    const aliasOf = new Map([...upgraded].filter(([k]) => k.startsWith('o\x00')).map(([k, v]) => [k.slice(2), Buffer.from(v, 'hex').toString()]))
    const expected = new Map<string, string>()
    for (const [k, v] of legacy) {
      const [tag, log, ...rest] = k.split('\x00')
      const alias = aliasOf.get(log)
      expected.set((LOG_TAGS as readonly string[]).includes(tag) && alias !== undefined ? [tag, alias, ...rest].join('\x00') : k, v)
    }
    for (const [log, alias] of aliasOf) expected.set(keys.logAlias(log), Buffer.from(alias).toString('hex'))
    expect(upgraded).toEqual(expected)
    await relay.reopen()
    expect(relay.log.vector.get(origin.self)).toBe(2100)
    expect(relay.log.vector.get(relay.self)).toBe(1)
    const served = await relay.log.readAttested(origin.self, 0, 10_000, 1 << 30)
    expect(served?.entries.length).toBe(2100)
  })
})
