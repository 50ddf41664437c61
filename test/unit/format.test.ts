import { mkdir, readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { Store, utf8 } from '../../src/store/db.js'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { attestStoredOwnLog, lowerToAttested } from '../../src/log/attest-upgrade.js'
import { Attester } from '../../src/log/signing.js'
import { BACKUP_PREFIX, CURRENT_FORMAT, FORMAT_KEY, readFormat, UPGRADE_KEY, upgradeFormat } from '../../src/store/format.js'
import type { Migration } from '../../src/store/format.js'
import { keys } from '../../src/store/keys.js'
import { removeDir, tempDir } from '../helpers/nodes.js'

let dir: string
let store: Store
let lines: string[]

const identity = await generateKeyPair('Ed25519')
const self = peerIdFromPrivateKey(identity).toString()

function logger (): ReturnType<typeof pino> {
  return pino({ level: 'info' }, new Writable({ write (chunk: Buffer, _e, cb) { lines.push(...chunk.toString().split('\n').filter(l => l !== '')); cb() } }))
}

async function upgrade (options: { migrations?: Migration[], current?: number } = {}): ReturnType<typeof upgradeFormat> {
  return await upgradeFormat(() => store.db, {
    dataDir: dir,
    dbDir: join(dir, 'db'),
    log: logger(),
    close: async () => { await store.db.close() },
    reopen: async () => { await store.open() },
    // the node's own log (none in these databases) is attested by the upgrade to format 3
    attestOwnLog: async (db) => { await attestStoredOwnLog(db, self, new Attester(identity, self)) },
    // other origins' held seqs (none in these databases) are lowered by the upgrade to format 4
    lowerOtherOrigins: async (db) => await lowerToAttested(db, self),
    ...options
  })
}

async function allKeys (db: Store['db']): Promise<Array<[string, string]>> {
  return (await db.iterator().all()).map(([k, v]) => [k, Buffer.from(v).toString('hex')])
}

async function backups (): Promise<string[]> {
  return (await readdir(dir)).filter(n => n.startsWith(BACKUP_PREFIX))
}

/** A database as the release before formats were recorded left it: keys of several families, no marker. */
async function writeFormat1 (): Promise<void> {
  await store.db.put(keys.record('notes', 'a'), utf8.encode('{"value":{"t":1}}'))
  await store.db.put(keys.record('notes', 'b'), utf8.encode('{"value":{"t":2}}'))
  await store.db.put(keys.peer('12D3KooWpeer'), utf8.encode('{"peerId":"12D3KooWpeer","addrs":[]}'))
  await store.db.put(keys.meta('hlc'), utf8.encode('1.0'))
}

beforeEach(async () => {
  lines = []
  dir = await tempDir()
  store = new Store(join(dir, 'db'))
  await store.open()
})

afterEach(async () => {
  await store.db.close().catch(() => {})
  await removeDir(dir)
})

describe('data format', () => {
  it('marks a new database with the current format, without a backup', async () => {
    const r = await upgrade()
    expect(r).toMatchObject({ found: undefined, format: CURRENT_FORMAT, steps: 0 })
    expect(await readFormat(store.db)).toBe(CURRENT_FORMAT)
    expect(await backups()).toEqual([])
  })

  it('upgrades a database without a marker (format 1) after an exact backup copy, and only once', async () => {
    await writeFormat1()
    // a copy that a crash interrupted is cleared away
    await mkdir(join(dir, 'backup-format-1-2020-01-01T00-00-00Z.partial', 'db'), { recursive: true })
    const before = await allKeys(store.db)
    expect(await readFormat(store.db)).toBe(1)
    const r = await upgrade()
    expect(r).toMatchObject({ found: 1, format: CURRENT_FORMAT, steps: CURRENT_FORMAT - 1 })
    expect(await readFormat(store.db)).toBe(CURRENT_FORMAT)
    expect(await store.db.get(UPGRADE_KEY)).toBeUndefined()
    // every key is still there; only the marker was added
    expect((await allKeys(store.db)).filter(([k]) => k !== FORMAT_KEY)).toEqual(before)
    // the backup is a LevelDB holding exactly what the database held before
    const made = await backups()
    expect(made).toHaveLength(1)
    expect(made[0]).toMatch(/^backup-format-1-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ$/)
    expect(r.backup).toBe(join(dir, made[0]))
    expect(await readFile(join(dir, made[0], 'RESTORE.txt'), 'utf8')).toContain('cp -a')
    const copy = new Store(join(dir, made[0], 'db'))
    await copy.open()
    try {
      expect(await allKeys(copy.db)).toEqual(before)
    } finally {
      await copy.db.close()
    }
    expect(lines.some(l => l.includes('backed up the database (format 1)'))).toBe(true)
    expect(lines.some(l => l.includes(`upgraded the data directory from format 1 to 2`))).toBe(true)
    // the next start finds it current: nothing happens
    lines = []
    expect(await upgrade()).toMatchObject({ found: CURRENT_FORMAT, format: CURRENT_FORMAT, steps: 0 })
    expect(await backups()).toHaveLength(1)
    expect(lines).toEqual([])
  })

  it('refuses a newer format with DATA_FORMAT_NEWER and changes nothing', async () => {
    await writeFormat1()
    await store.db.put(FORMAT_KEY, utf8.encode(String(CURRENT_FORMAT + 7)))
    const before = await allKeys(store.db)
    const err = await upgrade().then(() => undefined, (e: unknown) => e as { code: string, message: string })
    expect(err?.code).toBe('DATA_FORMAT_NEWER')
    expect(err?.message).toContain(`data format ${CURRENT_FORMAT + 7}`)
    expect(err?.message).toContain(`up to ${CURRENT_FORMAT}`)
    expect(await allKeys(store.db)).toEqual(before)
    expect(await backups()).toEqual([])
  })

  it('refuses a damaged marker with DATA_FORMAT_INVALID', async () => {
    await writeFormat1()
    await store.db.put(FORMAT_KEY, utf8.encode('"two"'))
    await expect(upgrade()).rejects.toMatchObject({ code: 'DATA_FORMAT_INVALID' })
  })

  it('runs migrations in order, each atomic with its format number, and resumes after a crash without another backup', async () => {
    await writeFormat1()
    // 1 → 2: records move to a new key family; 2 → 3: values gain a field (crashes once, after writing a chunk); 3 → 4: nothing
    let crash = true
    const table: Migration[] = [
      {
        from: 1,
        describe: 'move records',
        run: async ({ db }) => {
          const ops: Array<{ type: 'put', key: string, value: Uint8Array } | { type: 'del', key: string }> = []
          for (const [k, v] of await db.iterator({ gte: 'r\x00', lt: 'r\x01' }).all()) {
            ops.push({ type: 'put', key: 'R' + k.slice(1), value: v }, { type: 'del', key: k })
          }
          return ops
        }
      },
      {
        from: 2,
        describe: 'stamp records',
        run: async ({ db }) => {
          // a large migration's own chunk, idempotent: it writes the same value again when rerun
          for (const [k, v] of await db.iterator({ gte: 'R\x00', lt: 'R\x01' }).all()) {
            const obj = JSON.parse(utf8.decode(v)) as Record<string, unknown>
            obj.stamped = true
            await db.put(k, utf8.encode(JSON.stringify(obj)))
          }
          if (crash) {
            crash = false
            throw new Error('power cut')
          }
          return []
        }
      },
      { from: 3, describe: 'nothing', run: async () => [] }
    ]
    await expect(upgrade({ migrations: table, current: 4 })).rejects.toThrow('power cut')
    // step 1 committed with its format number; step 2 did not
    expect(await readFormat(store.db)).toBe(2)
    expect(await store.db.get(UPGRADE_KEY)).toBeDefined()
    expect(await store.db.get(keys.record('notes', 'a'))).toBeUndefined()
    expect(await backups()).toHaveLength(1)

    lines = []
    const r = await upgrade({ migrations: table, current: 4 })
    expect(r).toMatchObject({ found: 2, format: 4, steps: 2 })
    expect(lines.some(l => l.includes('resuming the upgrade of the data directory from format 1'))).toBe(true)
    expect(await backups()).toHaveLength(1)
    expect(await readFormat(store.db)).toBe(4)
    expect(await store.db.get(UPGRADE_KEY)).toBeUndefined()
    expect(JSON.parse(utf8.decode((await store.db.get('R\x00notes\x00a'))!))).toEqual({ value: { t: 1 }, stamped: true })
    expect(JSON.parse(utf8.decode((await store.db.get('R\x00notes\x00b'))!))).toEqual({ value: { t: 2 }, stamped: true })
    // the backup still holds format 1 as it was
    const copy = new Store(join(dir, (await backups())[0], 'db'))
    await copy.open()
    try {
      expect(await readFormat(copy.db)).toBe(1)
      expect(await copy.db.get(keys.record('notes', 'a'))).toBeDefined()
    } finally {
      await copy.db.close()
    }
  })

  it('refuses to upgrade from a format it has no migration for', async () => {
    await writeFormat1()
    await expect(upgrade({ migrations: [], current: 3 })).rejects.toMatchObject({ code: 'DATA_FORMAT_UNSUPPORTED' })
    expect(await backups()).toEqual([])
  })
})
