/**
 * Log aliases: every log this node holds (an origin's whole log, or one of
 * its rule streams, src/log/log-id.ts) gets a short alias of this node's own,
 * used in its per-log keys (entries, record index, version vector,
 * certificates, attestations; keys.ts) instead of the log id, which is 52
 * characters for a whole log and about 75 for a stream. An alias is the
 * base-36 text of a counter (`1`, `2`, … `z`, `10`, …): aliases differ from
 * node to node and never leave it.
 *
 * `o\0<log id>` → the alias (UTF-8). The reverse map is built in memory
 * when the store opens. A log's alias is written, durably ordered, before
 * any key that uses it (`ensure`: a put LevelDB writes to its log before the
 * batches issued after it), so that after a crash every alias in a key is
 * known. Aliases are never reused: a log whose keys are all deleted keeps
 * its alias.
 */
import { SyncmeshError } from '../core/errors.js'
import type { Db } from './db.js'
import { keys, keySuffix, LOG_TAGS, prefixRange, SEP } from './keys.js'

/** The alias part of a key for a log this node holds nothing of: no key uses it, so reads through it find nothing. */
export const NO_ALIAS = '-'
const NO_ALIAS_CODE = NO_ALIAS.charCodeAt(0)
const LOG_TAG_CODES = new Set(LOG_TAGS.map(t => t.charCodeAt(0)))

/**
 * The first key of `writes` that names a log by NO_ALIAS (a key written for a
 * log before `ensure` made its alias: it would name no log), if any.
 */
export function firstUnaliased (writes: Map<string, Uint8Array | undefined>): string | undefined {
  let found: string | undefined
  writes.forEach((_, key) => {
    if (key.charCodeAt(2) === NO_ALIAS_CODE && key.charCodeAt(1) === 0 && LOG_TAG_CODES.has(key.charCodeAt(0)) && (key.length === 3 || key.charCodeAt(3) === 0)) found ??= key
  })
  return found
}

/** Aliases are at most this long (a counter below 36^8); log ids are longer (a peer id is 46 characters or more). */
export const MAX_ALIAS_LENGTH = 8

const decoder = new TextDecoder()
const encoder = new TextEncoder()

export class LogAliases {
  private readonly db: Db
  private readonly byLog = new Map<string, string>()
  private readonly byAlias = new Map<string, string>()
  private next = 1
  private loaded = false
  /** Aliases being written (ensure): callers for the same log wait for the one write. */
  private readonly writing = new Map<string, Promise<string>>()

  constructor (db: Db) {
    this.db = db
  }

  /** Read the aliases stored (once the data directory is at the current format). */
  async load (): Promise<void> {
    this.byLog.clear()
    this.byAlias.clear()
    this.next = 1
    const prefix = keys.logAliasPrefix()
    for await (const [key, value] of this.db.iterator(prefixRange(prefix))) this.remember(keySuffix(key, prefix), decoder.decode(value))
    this.loaded = true
  }

  private remember (log: string, alias: string): void {
    this.byLog.set(log, alias)
    this.byAlias.set(alias, log)
    const n = parseInt(alias, 36)
    if (n >= this.next) this.next = n + 1
  }

  /** The alias of `log` for a key: NO_ALIAS when this node holds nothing of it yet (a read finds nothing). */
  of (log: string): string {
    return this.byLog.get(log) ?? NO_ALIAS
  }

  /** The log id an alias stands for (undefined: none, a key written by no release). */
  logOf (alias: string): string | undefined {
    return this.byAlias.get(alias)
  }

  /** The alias of `log`, made and written first when it has none. */
  async ensure (log: string): Promise<string> {
    const known = this.byLog.get(log)
    if (known !== undefined) return known
    let pending = this.writing.get(log)
    if (pending === undefined) {
      pending = this.create(log).finally(() => this.writing.delete(log))
      this.writing.set(log, pending)
    }
    return await pending
  }

  private async create (log: string): Promise<string> {
    // before load, the counter would give out aliases the database holds already
    if (!this.loaded) throw new Error('log aliases are made only once the stored ones are loaded (LogAliases.load)')
    const alias = (this.next++).toString(36)
    if (alias.length > MAX_ALIAS_LENGTH) throw new SyncmeshError('LOG_ALIASES_EXHAUSTED', `this node has given out every log alias (${this.byLog.size} logs held): nothing more can be stored; report this, with the output of \`syncmesh status\``, 503)
    try {
      await this.db.put(keys.logAlias(log), encoder.encode(alias))
    } catch (err) {
      throw new SyncmeshError('STORE_WRITE_FAILED', `a database write failed (the alias of log ${log.slice(0, 80)}): ${(err as Error).message}; restart the node once the cause (disk full, I/O error) is fixed`, 503, { cause: err })
    }
    this.remember(log, alias)
    return alias
  }
}

/** Keys moved per batch by the upgrade (each batch puts the aliased keys and deletes the old ones at once). */
const UPGRADE_CHUNK = 1000

/**
 * The upgrade to data format 5: every log a key of formats 1–4 names by its
 * log id (keys.LOG_TAGS) gets an alias, and each of its keys is moved under
 * it, value unchanged, in batches that put the new keys and delete the old
 * ones together. Run again after a crash, it gives the logs left the aliases
 * already written and moves what is left (a part no longer than
 * MAX_ALIAS_LENGTH is an alias: a log id is longer).
 */
export async function aliasLegacyLogKeys (db: Db): Promise<{ logs: number, keys: number }> {
  const aliases = new LogAliases(db)
  await aliases.load()
  const logs = new Set<string>()
  for (const tag of LOG_TAGS) for (const log of await legacyLogsOf(db, tag)) logs.add(log)
  let moved = 0
  for (const log of [...logs].sort()) {
    const alias = await aliases.ensure(log)
    for (const tag of LOG_TAGS) moved += await moveLog(db, tag, log, alias)
  }
  return { logs: logs.size, keys: moved }
}

/** The log ids that keys of family `tag` name (skipping from one log to the next: one read per log). */
async function legacyLogsOf (db: Db, tag: string): Promise<string[]> {
  const out: string[] = []
  const family = `${tag}${SEP}`
  let after = family
  for (;;) {
    const [key] = await db.keys({ gt: after, lt: `${tag}\x01`, limit: 1 }).all()
    if (key === undefined) return out
    const end = key.indexOf(SEP, family.length)
    const part = end === -1 ? key.slice(family.length) : key.slice(family.length, end)
    if (part.length > MAX_ALIAS_LENGTH) out.push(part)
    // past every key of this log (they all start with family + part + SEP, or are family + part)
    after = `${family}${part}\x01`
  }
}

/** Move the keys of `log` in family `tag` under its alias; returns how many. */
async function moveLog (db: Db, tag: string, log: string, alias: string): Promise<number> {
  const family = `${tag}${SEP}`
  if (tag === 'v') {
    const value = await db.get(`${family}${log}`)
    if (value === undefined) return 0
    await db.batch([{ type: 'put', key: `${family}${alias}`, value }, { type: 'del', key: `${family}${log}` }])
    return 1
  }
  const from = `${family}${log}${SEP}`
  const to = `${family}${alias}${SEP}`
  let moved = 0
  // each batch reads on after the last key moved: from the prefix's start, it would step over every key deleted before
  let range: { gt?: string, gte?: string, lt: string } = prefixRange(from)
  for (;;) {
    const rows = await db.iterator({ ...range, limit: UPGRADE_CHUNK }).all()
    if (rows.length === 0) return moved
    const ops: Array<{ type: 'put', key: string, value: Uint8Array } | { type: 'del', key: string }> = []
    for (const [key, value] of rows) ops.push({ type: 'put', key: to + key.slice(from.length), value }, { type: 'del', key })
    await db.batch(ops)
    moved += rows.length
    range = { gt: rows[rows.length - 1][0], lt: range.lt }
  }
}
