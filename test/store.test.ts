/**
 * The store compacts LevelDB once it is idle after many deletions, so the
 * old versions of updated records do not stay on disk.
 */
import { readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { Store, utf8 } from '../src/store/db.js'
import { eventually, removeDir, tempDir } from './helpers/nodes.js'

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

describe('Store: compaction when idle', () => {
  it('compacts after enough deletions and a quiet moment; the data stays', async () => {
    dir = await tempDir('syncmesh-store-')
    store = new Store(join(dir, 'db'))
    await store.open()
    const s = store
    const value = utf8.encode('x'.repeat(200))
    // write, then replace every key five times (each replacement deletes the old key, as compaction of the log does)
    for (let rev = 0; rev < 6; rev++) {
      await s.exclusive(async () => {
        const txn = s.txn()
        for (let i = 0; i < 5000; i++) {
          if (rev > 0) txn.del(`e\x00old\x00${rev - 1}\x00${i}`)
          txn.put(`e\x00old\x00${rev}\x00${i}`, value)
        }
        await txn.commit()
      })
    }
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
  async function open (): Promise<Store> {
    dir = await tempDir('syncmesh-store-')
    store = new Store(join(dir, 'db'))
    await store.open()
    return store
  }

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
})
