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

describe('Store: compaction when idle', () => {
  let dir: string | undefined
  let store: Store | undefined
  afterEach(async () => {
    await store?.close().catch(() => {})
    if (dir !== undefined) await removeDir(dir)
  })

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
