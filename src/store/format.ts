/**
 * The data directory's format version, and the upgrades between formats.
 *
 * The format is recorded in the database itself, under the metadata key
 * `m\0format` (a JSON number), so that every upgrade step writes its changes
 * and the new format number in one atomic LevelDB batch: after a crash the
 * database is either wholly at the old format or wholly at the new one, and
 * the next start resumes from there. A database without the key was written
 * by a release that did not record its format: it is format 1 (or, when it
 * holds no key at all, a new database, which is simply marked current).
 *
 * Upgrading, at start, before anything else reads the database:
 *
 *  1. the database is closed and DATA/db is copied to
 *     DATA/backup-format-<N>-<time>/db (first into a ".partial" directory,
 *     renamed when complete; refused when the disk has no room for it);
 *  2. `m\0upgrade` records that an upgrade is under way and where its backup
 *     is, so a restart after a crash resumes without another backup;
 *  3. each migration N → N+1 runs in order; its last writes and the new
 *     format number commit together; the final one also clears `m\0upgrade`.
 *
 * A database whose format is newer than CURRENT_FORMAT is refused
 * (DATA_FORMAT_NEWER) and left untouched.
 *
 * Changing the on-disk layout (an entry encoding, a certificate, a key
 * family): add one Migration to MIGRATIONS, from CURRENT_FORMAT to
 * CURRENT_FORMAT + 1, and raise CURRENT_FORMAT; then commit a fixture made by
 * the release before (scripts/make-fixture.ts, docs/upgrading.md).
 */
import { cp, mkdir, readdir, rename, rm, stat, statfs, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { ConfigError } from '../core/errors.js'
import type { Db } from './db.js'
import { keys } from './keys.js'
import { aliasLegacyLogKeys } from './log-aliases.js'

/** The format this release writes. */
export const CURRENT_FORMAT = 5
/** The oldest format this release upgrades from. */
export const OLDEST_FORMAT = 1
export const FORMAT_KEY = keys.meta('format')
/** Present while an upgrade is under way: JSON UpgradeState. */
export const UPGRADE_KEY = keys.meta('upgrade')
export const BACKUP_PREFIX = 'backup-format-'

/** One batch operation of a migration (written with the format bump, atomically). */
export type MigrationOp = { type: 'put', key: string, value: Uint8Array } | { type: 'del', key: string }

export interface MigrationContext {
  db: Db
  log: Logger
  /**
   * Attest the node's own stored log with version 2 attestations
   * (src/log/attest-upgrade.ts; the node's key is needed, and lives above
   * this layer). Writes in idempotent chunks.
   */
  attestOwnLog?: (db: Db, log: Logger) => Promise<void>
  /**
   * The writes that lower the held seq of every other origin to where its
   * stored version 2 attestations stop tiling its log
   * (src/log/attest-upgrade.ts lowerToAttested; the node's own peer id is
   * needed, and lives above this layer).
   */
  lowerOtherOrigins?: (db: Db, log: Logger) => Promise<MigrationOp[]>
}

export interface Migration {
  /** The format it upgrades from; it produces `from + 1`. */
  from: number
  /** What changes, for the log. */
  describe: string
  /**
   * Upgrade the database from `from` to `from + 1`. Returns the operations
   * the framework writes in one batch together with the new format number.
   * A migration too large for one batch may first write chunks itself; it is
   * then run again from the start after a crash, so every chunk must be
   * idempotent (write what it would write again, skip what is done).
   */
  run: (ctx: MigrationContext) => Promise<MigrationOp[]>
}

/**
 * The upgrades, in order: MIGRATIONS[i].from === OLDEST_FORMAT + i.
 *
 * 1 → 2: format 1 (release 84937b5 and before) did not record its format.
 * Format 2 has the same keyspace and records it (`m\0format`); the step
 * changes no record, and puts every directory of the earlier release through
 * the same path (backup, log, resumable steps) that later changes take.
 *
 * 2 → 3: the node's own log gains its version 2 attestations (keys.attest,
 * protocols/sync/completeness.md §3, §10): every run it holds attested as of
 * its held seq, gone spans for the stretches whose certificates were deleted
 * with their last entries. Version 1 certificates stay as they were.
 *
 * 3 → 4: sync protocol version 2 goes on the wire. Every other origin's held
 * seq is lowered to the end of the version 2 attestations stored of it that
 * tile its log from the start (none for a log stored from version 1 batches:
 * to 0), so the rest is fetched again with its origin's attestations
 * (completeness.md §10). Entries and records stay; the entries stored from
 * before that a refetched batch does not list are dropped then
 * (ChangeLog.dropUnlisted).
 *
 * 4 → 5: per-log keys name their log by a short alias of this node's own
 * instead of its log id (log-aliases.ts): every log a key names gets an
 * alias (`o` keys), and its entries, record index, vector, certificates and
 * attestations move under it, values unchanged, in resumable batches.
 */
export const MIGRATIONS: readonly Migration[] = [
  {
    from: 1,
    describe: 'record the data format in the database',
    run: async () => []
  },
  {
    from: 2,
    describe: 'attest the own log with version 2 attestations (as of its held seq; gone spans for runs compacted away)',
    run: async (ctx) => {
      if (ctx.attestOwnLog === undefined) throw new ConfigError('the upgrade to data format 3 signs the own log: it needs the node identity', 'DATA_FORMAT_UNSUPPORTED')
      await ctx.attestOwnLog(ctx.db, ctx.log)
      return []
    }
  },
  {
    from: 3,
    describe: 'lower the held seq of other origins to where their version 2 attestations stop, so their logs are fetched again with attestations',
    run: async (ctx) => {
      if (ctx.lowerOtherOrigins === undefined) throw new ConfigError('the upgrade to data format 4 needs the node identity', 'DATA_FORMAT_UNSUPPORTED')
      return await ctx.lowerOtherOrigins(ctx.db, ctx.log)
    }
  },
  {
    from: 4,
    describe: 'name each log by a short alias in its keys (entries, record index, vector, certificates, attestations)',
    run: async (ctx) => {
      const moved = await aliasLegacyLogKeys(ctx.db)
      ctx.log.warn(moved, `gave ${moved.logs} logs their aliases and moved ${moved.keys} keys under them`)
      return []
    }
  }
]

interface UpgradeState {
  from: number
  to: number
  backup: string
  startedAt: string
}

const decoder = new TextDecoder()

function encode (value: unknown): Uint8Array {
  return Buffer.from(JSON.stringify(value), 'utf8')
}

/** The format recorded in `db`: a number, 1 when none is recorded, undefined for a database with no key at all. */
export async function readFormat (db: Db): Promise<number | undefined> {
  const raw = await db.get(FORMAT_KEY)
  if (raw === undefined) {
    const any = await db.keys({ limit: 1 }).all()
    return any.length === 0 ? undefined : OLDEST_FORMAT
  }
  const text = decoder.decode(raw)
  const n = Number(text)
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new ConfigError(`the data directory's format marker is "${text.slice(0, 40)}", not a format number; the database is damaged: restore a backup`, 'DATA_FORMAT_INVALID')
  }
  return n
}

export interface UpgradeOptions {
  /** The data directory (the backup goes there). */
  dataDir: string
  /** The database directory inside it. */
  dbDir: string
  log: Logger
  /** Reopen the database after the backup copy (it is closed for the copy). */
  reopen: () => Promise<void>
  /** Close it for the copy. */
  close: () => Promise<void>
  /** See MigrationContext. */
  attestOwnLog?: (db: Db, log: Logger) => Promise<void>
  /** See MigrationContext. */
  lowerOtherOrigins?: (db: Db, log: Logger) => Promise<MigrationOp[]>
  /** For tests: another migration table and target. */
  migrations?: readonly Migration[]
  current?: number
}

export interface UpgradeResult {
  /** The format found (undefined: a new database). */
  found: number | undefined
  format: number
  /** The backup made or resumed, when an upgrade ran. */
  backup?: string
  steps: number
}

/**
 * Bring the database to the current format (see the module comment). `db()`
 * returns the open database (it changes when `reopen` replaces it).
 */
export async function upgradeFormat (db: () => Db, options: UpgradeOptions): Promise<UpgradeResult> {
  const current = options.current ?? CURRENT_FORMAT
  const migrations = options.migrations ?? MIGRATIONS
  const log = options.log
  const found = await readFormat(db())
  if (found === undefined) {
    await db().put(FORMAT_KEY, encode(current))
    return { found, format: current, steps: 0 }
  }
  if (found > current) {
    throw new ConfigError(`this data directory (${options.dataDir}) was written by a newer syncmesh (data format ${found}); this release reads data formats up to ${current}; upgrade syncmesh, or restore a backup made before the newer release first started (see docs/upgrading.md)`, 'DATA_FORMAT_NEWER')
  }
  if (found === current) return { found, format: current, steps: 0 }
  if (found < OLDEST_FORMAT) {
    throw new ConfigError(`this data directory has data format ${found}; this release upgrades formats ${OLDEST_FORMAT} to ${current}`, 'DATA_FORMAT_UNSUPPORTED')
  }
  const plan: Migration[] = []
  for (let f = found; f < current; f++) {
    const m = migrations.find(x => x.from === f)
    if (m === undefined) throw new ConfigError(`no upgrade from data format ${f} to ${f + 1} in this release`, 'DATA_FORMAT_UNSUPPORTED')
    plan.push(m)
  }

  let state = await readUpgradeState(db())
  if (state !== undefined && await exists(state.backup)) {
    log.warn({ from: found, to: current, backup: state.backup, startedAt: state.startedAt }, `resuming the upgrade of the data directory from format ${state.from} (started ${state.startedAt}, now at format ${found}) to format ${current}; the backup made before it is ${state.backup}`)
  } else {
    log.warn({ from: found, to: current }, `this data directory has data format ${found}; this release uses format ${current}: backing up the database before upgrading it`)
    await options.close()
    let backup: string
    try {
      backup = await backupDb(options.dataDir, options.dbDir, found)
    } finally {
      await options.reopen()
    }
    state = { from: found, to: current, backup, startedAt: new Date().toISOString() }
    await db().put(UPGRADE_KEY, encode(state))
    log.warn({ backup }, `backed up the database (format ${found}) to ${backup}; to go back to the earlier release, stop the node and restore it (docs/upgrading.md)`)
  }

  let format = found
  for (const m of plan) {
    const t0 = Date.now()
    const ops = await m.run({ db: db(), log, attestOwnLog: options.attestOwnLog, lowerOtherOrigins: options.lowerOtherOrigins })
    const next = m.from + 1
    const batch = db().batch()
    for (const op of ops) {
      if (op.type === 'put') batch.put(op.key, op.value)
      else batch.del(op.key)
    }
    batch.put(FORMAT_KEY, encode(next))
    if (next === current) batch.del(UPGRADE_KEY)
    await batch.write()
    format = next
    log.warn({ from: m.from, to: next, ms: Date.now() - t0, changed: ops.length }, `upgraded the data directory from format ${m.from} to ${next}: ${m.describe} (${ops.length} keys written, ${Date.now() - t0} ms)`)
  }
  return { found, format, backup: state.backup, steps: plan.length }
}

async function readUpgradeState (db: Db): Promise<UpgradeState | undefined> {
  const raw = await db.get(UPGRADE_KEY)
  if (raw === undefined) return undefined
  try {
    const s = JSON.parse(decoder.decode(raw)) as UpgradeState
    return typeof s.backup === 'string' ? s : undefined
  } catch {
    return undefined
  }
}

async function exists (path: string): Promise<boolean> {
  return await stat(path).then(() => true, () => false)
}

async function dirBytes (dir: string): Promise<number> {
  let total = 0
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    if (e.isDirectory()) total += await dirBytes(p)
    else if (e.isFile()) total += (await stat(p)).size
  }
  return total
}

/** Room left for the backup beyond its own size. */
const BACKUP_MARGIN_BYTES = 16 * 1024 * 1024

/**
 * Copy the (closed) database to DATA/backup-format-N-TIME/db, with a note
 * on restoring it; the directory appears under its final name only once
 * complete. Returns its path.
 */
export async function backupDb (dataDir: string, dbDir: string, format: number): Promise<string> {
  const bytes = await dirBytes(dbDir)
  const fs = await statfs(dataDir)
  const free = Number(fs.bavail) * Number(fs.bsize)
  if (free < bytes + BACKUP_MARGIN_BYTES) {
    throw new ConfigError(`the data directory's database must be backed up before it is upgraded, and the disk holding ${dataDir} has ${Math.floor(free / 1048576)} MiB free for its ${Math.ceil(bytes / 1048576)} MiB; free some space and start again (nothing was changed)`, 'DATA_BACKUP_NO_SPACE')
  }
  const stamp = new Date().toISOString().replace(/:/g, '-').replace(/\.\d+Z$/, 'Z')
  const final = join(dataDir, `${BACKUP_PREFIX}${format}-${stamp}`)
  const partial = final + '.partial'
  // what a copy interrupted by a crash left
  for (const name of await readdir(dataDir)) {
    if (name.startsWith(BACKUP_PREFIX) && name.endsWith('.partial')) await rm(join(dataDir, name), { recursive: true, force: true })
  }
  await mkdir(partial, { mode: 0o700 })
  await cp(dbDir, join(partial, 'db'), { recursive: true, errorOnExist: true, force: false })
  await rm(join(partial, 'db', 'LOCK'), { force: true })
  await writeFile(join(partial, 'RESTORE.txt'), [
    `A copy of ${dbDir} in data format ${format}, made at ${new Date().toISOString()} before the database was upgraded.`,
    'To go back to it (with a syncmesh release that reads this format): stop the node, then',
    `  mv ${dbDir} ${dbDir}.upgraded && cp -a ${join(final, 'db')} ${dbDir}`,
    'and start that release. Writes made after the upgrade are not in this copy: the node gets them',
    "back from its peers (other nodes' writes, and its own that they synced); let it catch up",
    '(syncmesh wait) before writing to it. See docs/upgrading.md.',
    'Delete this directory once the upgrade has proved itself.',
    ''
  ].join('\n'), { mode: 0o600 })
  await rename(partial, final)
  return final
}
