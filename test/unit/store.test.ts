/**
 * The store compacts LevelDB once it is idle after many deletions, so the
 * old versions of updated records do not stay on disk.
 */
import { readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { IDLE_COMPACTION_SMALL_BYTES, IDLE_COMPACTION_SMALL_MIN_DELETES, Store, utf8 } from '../../src/store/db.js'
import { Frontiers } from '../../src/store/frontier.js'
import { eventually, removeDir, tempDir } from '../helpers/nodes.js'

async function dirBytes (dir: string): Promise<number> {
  let n = 0
  for (const f of await readdir(dir)) n += (await stat(join(dir, f))).size
  return n
}

let dir: string | undefined
let store: Store | undefined
afterEach(async () => {
  await store?.close().catch(() => {})
  if (dir !== undefined) await removeDir(dir)
  dir = undefined
  store = undefined
})

/** A store in a fresh temp dir (closed and removed after each test). */
async function open (): Promise<Store> {
  dir = await tempDir('syncmesh-store-')
  store = new Store(join(dir, 'db'))
  await store.open()
  return store
}

describe('Store: write batches', () => {
  it('writes every put and delete of a transaction, whichever comes first, atomically, and survives a reopen', async () => {
    const s = await open()
    const commit = async (fill: (txn: ReturnType<Store['txn']>) => void): Promise<void> => {
      await s.exclusive(async () => {
        const txn = s.txn()
        fill(txn)
        await txn.commit()
      })
    }
    await commit(txn => { for (let i = 0; i < 100; i++) txn.put(`r\x00c\x00${i}`, utf8.encode(`v${i}`)) })
    // a delete first, then puts and deletes; then a transaction of one delete; then one of one put
    await commit(txn => {
      txn.del('r\x00c\x000')
      for (let i = 1; i < 50; i++) txn.put(`r\x00c\x00${i}`, utf8.encode(`w${i}`))
      for (let i = 50; i < 100; i += 2) txn.del(`r\x00c\x00${i}`)
    })
    await commit(txn => txn.del('r\x00c\x001'))
    await commit(txn => txn.put('r\x00c\x00new', utf8.encode('n')))
    await s.close()
    store = new Store(join(dir, 'db'))
    await store.open()
    const got = new Map<string, string>()
    for await (const [k, v] of store.db.iterator()) got.set(k, utf8.decode(v))
    const expected = new Map<string, string>()
    for (let i = 2; i < 50; i++) expected.set(`r\x00c\x00${i}`, `w${i}`)
    for (let i = 51; i < 100; i += 2) expected.set(`r\x00c\x00${i}`, `v${i}`)
    expected.set('r\x00c\x00new', 'n')
    expect(new Map([...got].filter(([k]) => k.startsWith('r\x00')))).toEqual(expected)
  })
})

const CHURN_VALUE = utf8.encode('x'.repeat(200))

/** Write `count` keys, then replace each `times` times (each replacement deletes the old key, as compaction of the log does). */
async function churn (s: Store, count: number, times: number): Promise<void> {
  for (let rev = 0; rev <= times; rev++) {
    await s.exclusive(async () => {
      const txn = s.txn()
      for (let i = 0; i < count; i++) {
        if (rev > 0) txn.del(`e\x00old\x00${rev - 1}\x00${i}`)
        txn.put(`e\x00old\x00${rev}\x00${i}`, CHURN_VALUE)
      }
      await txn.commit()
    })
  }
}

describe('Store: compaction when idle', () => {
  it('compacts after enough deletions and a quiet moment; the data stays', async () => {
    const s = await open()
    const value = CHURN_VALUE
    await churn(s, 5000, 5)
    const before = await dirBytes(join(dir, 'db'))
    const compacted: Array<{ deletes: number }> = []
    s.startCompacting({ idleMs: 100, minDeletes: 20_000, checkMs: 50, onCompacted: (info) => compacted.push(info) })
    await eventually(async () => s.compactions === 1, 'a compaction')
    expect(compacted).toEqual([expect.objectContaining({ deletes: 25_000 })])
    expect(await dirBytes(join(dir, 'db'))).toBeLessThan(before)
    expect(Buffer.from(await s.db.get('e\x00old\x005\x004999') as Uint8Array)).toEqual(Buffer.from(value))
    expect(await s.db.get('e\x00old\x004\x004999')).toBeUndefined()
    // nothing more to do: no second compaction without new deletions
    await new Promise(resolve => setTimeout(resolve, 300))
    expect(s.compactions).toBe(1)
  })
})

describe('Store: compaction of a small database', () => {
  // 2,000 keys replaced once: 2,000 deletions, far fewer than IDLE_COMPACTION_MIN_DELETES
  it('compacts after a few deletions when its tables are small', async () => {
    const s = await open()
    await churn(s, 2000, 1)
    const compacted: Array<{ deletes: number }> = []
    s.startCompacting({ idleMs: 100, checkMs: 50, onCompacted: (info) => compacted.push(info) })
    await eventually(async () => s.compactions === 1, 'a compaction')
    expect(compacted).toEqual([expect.objectContaining({ deletes: 2000 })])
    expect(await s.db.get('e\x00old\x000\x001999')).toBeUndefined()
    expect(await s.tableBytes()).toBeLessThan(IDLE_COMPACTION_SMALL_BYTES)
  })

  it('only flushes the memtable after as few deletions when its tables are larger', async () => {
    const s = await open()
    await churn(s, 2000, 1)
    // "larger" than 1 byte: any table at all
    s.startCompacting({ idleMs: 100, checkMs: 50, small: { minDeletes: IDLE_COMPACTION_SMALL_MIN_DELETES, bytes: 1 } })
    await eventually(async () => s.flushes === 1, 'an idle flush')
    await new Promise(resolve => setTimeout(resolve, 300))
    expect(s.compactions).toBe(0)
    expect(await s.tableBytes()).toBeGreaterThan(1)
  })
})

describe('Store: memtable flushes', () => {
  async function walBytes (db: string): Promise<number> {
    let n = 0
    for (const f of await readdir(db)) if (f.endsWith('.log')) n += (await stat(join(db, f))).size
    return n
  }

  it('moves what the write-ahead log holds into a table when idle, and on close', async () => {
    dir = await tempDir('syncmesh-store-')
    const db = join(dir, 'db')
    store = new Store(db)
    await store.open()
    const s = store
    const write = async (from: number): Promise<void> => {
      await s.exclusive(async () => {
        const txn = s.txn()
        for (let i = from; i < from + 2000; i++) txn.put(`r\x00c\x00${String(i).padStart(6, '0')}`, utf8.encode(`{"n":${i},"pad":"${'y'.repeat(200)}"}`))
        await txn.commit()
      })
    }
    await write(0)
    expect(await walBytes(db)).toBeGreaterThan(400_000)
    s.startCompacting({ idleMs: 100, minDeletes: 1_000_000, checkMs: 50 })
    await eventually(async () => s.flushes === 1, 'an idle flush')
    expect(await walBytes(db)).toBeLessThan(1000)
    expect(s.compactions).toBe(0)
    // nothing new: no second flush
    await new Promise(resolve => setTimeout(resolve, 300))
    expect(s.flushes).toBe(1)
    s.stopCompacting()
    await write(2000)
    expect(await walBytes(db)).toBeGreaterThan(400_000)
    await s.close()
    expect(await walBytes(db)).toBeLessThan(1000)
    store = new Store(db)
    await store.open()
    expect(utf8.decode(await store.db.get('r\x00c\x00003999') as Uint8Array)).toContain('"n":3999')
    expect(utf8.decode(await store.db.get('r\x00c\x00000000') as Uint8Array)).toContain('"n":0')
  })
})

describe('Txn.prefetch', () => {
  const key = (prefix: string, i: number): string => `r\x00${prefix}\x00${String(i).padStart(6, '0')}`

  /** Count the keys looked up one by one, on LevelDB's threads (getMany) or synchronously (getSync, for a few keys). */
  function countLookups (s: Store): { lookups: number } {
    const counted = { lookups: 0 }
    const getMany = s.db.getMany.bind(s.db)
    const getSync = s.db.getSync.bind(s.db)
    s.db.getMany = (async (keys: string[]) => { counted.lookups += keys.length; return await getMany(keys) }) as typeof s.db.getMany
    s.db.getSync = ((k: string) => { counted.lookups++; return getSync(k) }) as typeof s.db.getSync
    return counted
  }

  it('reads a dense run of keys with one range read: present and absent keys come out right', async () => {
    const s = await open()
    await s.exclusive(async () => {
      const txn = s.txn()
      for (let i = 0; i < 300; i += 3) txn.put(key('posts', i), utf8.encode(`v${i}`))
      txn.put(key('other', 5), utf8.encode('elsewhere'))
      await txn.commit()
    })
    const counted = countLookups(s)
    await s.exclusive(async () => {
      const txn = s.txn()
      const wanted = Array.from({ length: 200 }, (_, i) => key('posts', 100 + i))
      await txn.prefetch([...wanted, key('other', 5)])
      expect(counted.lookups).toBe(1) // only the lone key of the other prefix
      for (let i = 100; i < 300; i++) {
        const v = await txn.get(key('posts', i))
        expect(v === undefined ? undefined : utf8.decode(v)).toBe(i % 3 === 0 ? `v${i}` : undefined)
      }
      expect(utf8.decode(await txn.get(key('other', 5)) as Uint8Array)).toBe('elsewhere')
      expect(counted.lookups).toBe(1)
    })
  })

  it('falls back to lookups when the range holds many other keys, and gives the same answers', async () => {
    const s = await open()
    await s.exclusive(async () => {
      const txn = s.txn()
      for (let i = 0; i < 5000; i++) txn.put(key('big', i), utf8.encode(`v${i}`))
      await txn.commit()
    })
    const counted = countLookups(s)
    const wanted = Array.from({ length: 40 }, (_, i) => i * 130 + 1) // spread over the whole range; some beyond it
    for (let round = 0; round < 2; round++) {
      await s.exclusive(async () => {
        const txn = s.txn()
        await txn.prefetch(wanted.map(i => key('big', i)))
        for (const i of wanted) {
          const v = await txn.get(key('big', i))
          expect(v === undefined ? undefined : utf8.decode(v)).toBe(i < 5000 ? `v${i}` : undefined)
        }
      })
    }
    // the first round read part of the range, then looked the rest up; the second looked every key up
    expect(counted.lookups).toBeGreaterThan(40)
    expect(counted.lookups).toBeLessThan(80)
    expect(s.sparsePrefixes.get('r\x00big\x00')).toBeGreaterThan(0)
  })
  /** Count range reads (iterators; a probe of keys may make one too) and probes (iterators over keys) as well as lookups. */
  function countReads (s: Store): { lookups: number, ranges: number, probes: number } {
    const counted = countLookups(s) as { lookups: number, ranges: number, probes: number }
    counted.ranges = 0
    counted.probes = 0
    const iterator = s.db.iterator.bind(s.db)
    const keysOf = s.db.keys.bind(s.db)
    s.db.iterator = ((o: Parameters<typeof iterator>[0]) => { counted.ranges++; return iterator(o) }) as typeof s.db.iterator
    s.db.keys = ((o: Parameters<typeof keysOf>[0]) => { counted.probes++; return keysOf(o) }) as typeof s.db.keys
    return counted
  }

  async function valuesOf (s: Store, wanted: string[]): Promise<Array<string | undefined>> {
    return await s.exclusive(async () => {
      const txn = s.txn()
      await txn.prefetch(wanted)
      return wanted.map(k => { const v = txn.get(k); return v === undefined ? undefined : utf8.decode(v) })
    })
  }

  it('learns where an appending prefix ends: keys beyond are answered without reading, keys written later are seen', async () => {
    const s = await open()
    await s.exclusive(async () => {
      const txn = s.txn()
      for (let i = 0; i < 100; i++) txn.put(key('log', i), utf8.encode(`v${i}`))
      await txn.commit()
    })
    const counted = countReads(s)
    // a batch over the end of the prefix: one range read and one probe of what follows
    const batch1 = Array.from({ length: 50 }, (_, i) => key('log', 80 + i))
    expect(await valuesOf(s, batch1)).toEqual(batch1.map((_, i) => 80 + i < 100 ? `v${80 + i}` : undefined))
    expect(counted.probes).toBe(1)
    expect(counted.lookups).toBe(0)
    const afterFirst = { ...counted }
    // the next batches of new keys cost no read at all
    const batch2 = Array.from({ length: 50 }, (_, i) => key('log', 200 + i))
    expect(await valuesOf(s, batch2)).toEqual(batch2.map(() => undefined))
    expect(counted).toEqual(afterFirst)
    // keys written after that (committed, or still being written) are found: the frontier moved past them
    await s.exclusive(async () => {
      const txn = s.txn()
      txn.put(key('log', 205), utf8.encode('new'))
      await txn.commit()
    })
    const { durable } = await s.write(new Map([[key('log', 300), utf8.encode('in flight')]]))
    expect(await valuesOf(s, [...batch2, key('log', 300)])).toEqual([...batch2.map((k) => k === key('log', 205) ? 'new' : undefined), 'in flight'])
    await durable
    expect(await valuesOf(s, [...batch2, key('log', 300), key('log', 301)])).toEqual([...batch2.map((k) => k === key('log', 205) ? 'new' : undefined), 'in flight', undefined])
    // other key families (written with direct puts too) never take part
    await s.db.put(`m\x00${'a'.repeat(10)}`, utf8.encode('x'))
    expect(s.frontiers.beyond('m\x00zzz')).toBe(false)
  })

  it('a frontier learnt while writes are in flight lies beyond what they write', () => {
    const f = new Frontiers()
    const k = (i: number): string => `x\x00rule\x00${String(i).padStart(4, '0')}`
    // issued before the probe and not yet durable (the probe may not see it), and a delete
    const inFlight = [new Map<string, Uint8Array | undefined>([[k(500), utf8.encode('a')], [k(900), undefined]])]
    expect(f.startProbe('x\x00rule\x00', inFlight)).toBe(true)
    expect(f.startProbe('x\x00rule\x00', inFlight)).toBe(false) // one probe of a prefix at a time
    f.wrote(new Map([[k(700), utf8.encode('b')]])) // issued while the probe runs
    f.probed('x\x00rule\x00', k(29), true)
    expect(f.beyond(k(700))).toBe(false)
    expect(f.beyond(k(701))).toBe(true)
    f.wrote(new Map([[k(800), utf8.encode('c')]]))
    expect(f.beyond(k(800))).toBe(false)
    expect(f.beyond(k(801))).toBe(true)
    // a probe that found keys after the batch sets nothing, and the prefix is not probed again for a while
    expect(f.startProbe('r\x00c\x00', [])).toBe(true)
    f.probed('r\x00c\x00', 'r\x00c\x00a', false)
    expect(f.beyond('r\x00c\x00zz')).toBe(false)
    expect(f.startProbe('r\x00c\x00', [])).toBe(false)
    // families also written with direct puts (metadata, peers, webhooks) are never probed
    expect(f.startProbe('p\x00', [])).toBe(false)
  })

  it('keys written beyond a batch while it is read are found once durable', async () => {
    const s = await open()
    await s.exclusive(async () => {
      const txn = s.txn()
      for (let i = 0; i < 20; i++) txn.put(key('feed', i), utf8.encode(`v${i}`))
      await txn.commit()
    })
    const before = await s.write(new Map([[key('feed', 500), utf8.encode('before')]]))
    const batch = Array.from({ length: 20 }, (_, i) => key('feed', 10 + i))
    const reading = s.exclusive(async () => { await s.txn().prefetch(batch) }, { pipelined: true })
    const during = await s.write(new Map([[key('feed', 700), utf8.encode('during')]]))
    await reading
    await before.durable
    await during.durable
    expect(s.hasPending()).toBe(false)
    expect(await valuesOf(s, [key('feed', 500), key('feed', 600), key('feed', 700), key('feed', 800)])).toEqual(['before', undefined, 'during', undefined])
  })
})
