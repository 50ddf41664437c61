/**
 * LevelDB access: one database per node, a single writer at a time, and
 * transactions that collect a batch and commit it atomically.
 */
import { Level } from 'level'
import { ConfigError, SyncmeshError } from '../core/errors.js'
import { prefixOf, prefixRange } from './keys.js'
import { firstUnaliased, LogAliases } from './log-aliases.js'
import { Frontiers } from './frontier.js'

export type Db = Level<string, Uint8Array>
/** `level` is classic-level on Node; its types leave out compactRange. */
type CompactingDb = Db & { compactRange: (start: string, end: string) => Promise<void>, approximateSize: (start: string, end: string) => Promise<number> }

const decoder = new TextDecoder()

/**
 * UTF-8 text to bytes with Buffer.from: a short string's bytes come from
 * Node's shared 8 KiB pool (TextEncoder allocates an ArrayBuffer per call,
 * ~0.5-0.9 µs vs ~0.15 µs here, and each is swept by the GC on its own;
 * a received entry takes two or three of them on the write path).
 */
export const utf8 = {
  encode: (s: string): Uint8Array => Buffer.from(s, 'utf8'),
  decode: (b: Uint8Array): string => decoder.decode(b)
}

export function encodeJson (value: unknown): Uint8Array {
  return Buffer.from(JSON.stringify(value), 'utf8')
}

export function decodeJson<T> (bytes: Uint8Array): T {
  return JSON.parse(decoder.decode(bytes)) as T
}

/**
 * LevelDB's memtable (LevelDB's default is 4 MiB). Every memtable flushed
 * becomes a level-0 file that compaction merges into the files below; since
 * a node's key families (log entries, records, indexes) interleave, each
 * merge rewrites most of level 1, so fewer, larger flushes cost much less:
 * `npm run profile:sync -- --no-prof --threads` (100,000 records) measured
 * LevelDB's compaction thread at 25 µs of CPU per record with 4 MiB, 15 with
 * 8 and 9 with 16, and the target's total CPU at 87-93, 82 and 70 µs per
 * record. It costs memory (up to twice this while one flushes; peak RSS
 * +10 MB measured) and disk: the write-ahead log holds as much until the
 * next flush, so the store flushes the memtable when idle and on close.
 */
export const WRITE_BUFFER_BYTES = 16 * 1024 * 1024

/** A node compacts its database once idle this long (no writes)… */
export const IDLE_COMPACTION_MS = 10_000
/** …after at least this many deletions since the last compaction (fewer: it only flushes the memtable)… */
export const IDLE_COMPACTION_MIN_DELETES = 50_000
/**
 * …or after this many, when its tables hold at most IDLE_COMPACTION_SMALL_BYTES:
 * compacting a small database takes a fraction of a second, and otherwise a
 * node of a few thousand records updated again and again kept every version
 * on disk (1,000 records updated 5 times: 6.03× their first size).
 */
export const IDLE_COMPACTION_SMALL_MIN_DELETES = 1_000
export const IDLE_COMPACTION_SMALL_BYTES = 64 * 1024 * 1024
/** Fewest keys of one prefix worth a range read in `Txn.prefetch`. */
const RANGE_READ_MIN = 16
/** Batches a prefix is looked up key by key after its range read met too many other keys. */
const SPARSE_SKIP_BATCHES = 64
/**
 * Up to this many keys are looked up synchronously (LevelDB's getSync) rather
 * than on the libuv pool: a lookup in the memtable or the block cache takes a
 * few µs, a trip to the pool and back ~0.1-0.3 ms on an idle node, which is
 * most of a single change's latency per hop. Larger sets go to the pool, where
 * they overlap with the event loop's own work.
 */
const SYNC_LOOKUP_MAX = 8

/**
 * classic-level's chained batch, with its native operations. abstract-level's
 * `put`/`del` check and encode each key and value and build an operation
 * object (for hooks, events and sublevels, none of which the store uses)
 * before calling them: ~0.3 µs and ~100 bytes of garbage per key, and a
 * received record writes five. The store's keys are strings and its values
 * Uint8Arrays, which the native batch takes as they are with the store's
 * encodings ('utf8', 'view'). `Store.write` passes its first operation
 * through abstract-level, whose `write` writes nothing when it counted none.
 * classic-level is pinned (package-lock.json); every store test writes
 * through this path.
 */
type NativeBatch = ReturnType<Db['batch']> & {
  _put: (key: string, value: Uint8Array) => void
  _del: (key: string) => void
}

/**
 * What a bulk read takes from LevelDB per trip to its threads. classic-level's
 * default is 16 KiB, and its `for await` reads a single entry on the first
 * trip: a 512-entry run of ~300-byte log entries took 13 trips, a backfill
 * chunk's 500 index keys 4, each a wait for the thread pool (~1 ms while a
 * write runs). `npm run profile:ingest -- --mode backfill` measured reading a
 * chunk's index at 8 µs per record that way.
 */
const READ_TRIP_BYTES = 1024 * 1024
/** Entries per trip of `rows` (memory is bounded by READ_TRIP_BYTES as well). */
const READ_TRIP_ENTRIES = 1000

type IteratorOptions = NonNullable<Parameters<Db['iterator']>[0]>

/**
 * The entries of a range, a trip's worth at a time (up to READ_TRIP_ENTRIES
 * entries or READ_TRIP_BYTES, or what `trip` says: a read that will likely
 * stop after a known amount asks for that much): loop over each array.
 * Leaving the loop early closes the iterator.
 */
export async function * rows (db: Db, options: IteratorOptions, trip: { entries?: number, bytes?: number } = {}): AsyncGenerator<Array<[string, Uint8Array]>> {
  const it = db.iterator({ ...options, highWaterMarkBytes: trip.bytes ?? READ_TRIP_BYTES })
  // with a limit, the trip that would only find the end is not made
  let left = options.limit !== undefined && options.limit >= 0 ? options.limit : Infinity
  try {
    while (left > 0) {
      const batch = await it.nextv(Math.min(left, trip.entries ?? READ_TRIP_ENTRIES)) as Array<[string, Uint8Array]>
      if (batch.length === 0) return
      left -= batch.length
      yield batch
    }
  } finally {
    await it.close()
  }
}

export class Store {
  readonly db: Db
  /** Key prefixes whose range reads met mostly other keys → batches left to look them up one by one. */
  readonly sparsePrefixes = new Map<string, number>()
  /** Where appending key families end: keys beyond are known absent (frontier.ts). */
  readonly frontiers = new Frontiers()
  /** The aliases of the logs held, used in their keys (log-aliases.ts); loaded with the log (ChangeLog.load). */
  readonly logs: LogAliases
  private tail: Promise<unknown> = Promise.resolve()
  /**
   * Writes issued and not yet durable (pipelined commits, see Txn.issue),
   * oldest first, each as key → value (undefined: a delete).
   */
  private readonly unwritten: Array<Map<string, Uint8Array | undefined>> = []
  /** The last write issued: each write starts after the previous one ended, so they land in order. */
  private writing: Promise<void> = Promise.resolve()
  private writesInFlight: Array<Promise<void>> = []
  /** A write failed: what is in memory may be ahead of the disk, so nothing more is written. */
  private failure?: Error

  constructor (path: string) {
    this.db = new Level<string, Uint8Array>(path, { keyEncoding: 'utf8', valueEncoding: 'view', writeBufferSize: WRITE_BUFFER_BYTES })
    this.logs = new LogAliases(this.db)
  }

  async open (): Promise<void> {
    try {
      await this.db.open()
    } catch (err) {
      const cause = (err as { cause?: Error }).cause
      const detail = cause?.message ?? (err as Error).message
      if (/lock/i.test(detail)) {
        throw new ConfigError(`the database ${this.db.location} is in use by another process (is this node already running?); stop the other process first`, 'DB_LOCKED')
      }
      throw new ConfigError(`cannot open the database ${this.db.location}: ${detail}`, 'DB_OPEN_FAILED')
    }
  }

  async close (): Promise<void> {
    this.stopCompacting()
    // wait for the last writer and its write, and a compaction under way
    await this.tail.catch(() => {})
    await this.flushed().catch(() => {})
    await this.compacting?.catch(() => {})
    // leave the data in tables, not in the write-ahead log: a smaller directory, no replay at the next start
    if (this.writesSinceFlush > 0 && this.failure === undefined && this.db.status === 'open') await this.flushMemtable().catch(() => {})
    await this.db.close()
  }

  /** Writes since the memtable was last flushed by `flushMemtable`. */
  private writesSinceFlush = 0
  /** Memtable flushes by `flushMemtable` since the store opened. */
  flushes = 0
  /** Told of each flush and full compaction as it completes (the node's metrics). */
  onMaintenance?: (kind: 'flush' | 'compaction') => void

  /**
   * Write LevelDB's memtable out to a table file and start an empty
   * write-ahead log. LevelDB does this on its own only when the memtable is
   * full; its CompactRange flushes first, and a range that holds no key
   * (keys start with an ASCII letter, see keys.ts) compacts nothing else.
   */
  async flushMemtable (): Promise<void> {
    this.writesSinceFlush = 0
    await (this.db as unknown as CompactingDb).compactRange('\x00', '\x00')
    this.flushes++
    this.onMaintenance?.('flush')
  }

  // ---- compaction when idle ------------------------------------------------

  /** Keys deleted (superseded log entries, moved feed keys, …) since the last full compaction. */
  private deletesSinceCompaction = 0
  private lastWriteAt = 0
  private compacting?: Promise<void>
  private compactTimer?: ReturnType<typeof setInterval>
  /** Full compactions run since the store opened. */
  compactions = 0

  /**
   * What the store has written since it opened: atomic batches, keys put and
   * deleted, and bytes (key characters plus value bytes). Divided by the
   * records a sync applied, they are the write cost per record (npm run bench).
   */
  readonly written = { batches: 0, puts: 0, deletes: 0, bytes: 0 }

  /**
   * LevelDB drops overwritten and deleted data only when its background
   * compaction reaches the files that hold it, which a quiet node may not do
   * for a long time: after many updates the database keeps their old
   * versions. Like CouchDB's compaction daemon, compact everything once the
   * node has been idle for `idleMs` after at least `minDeletes` deletions,
   * or after `small.minDeletes` when its tables hold at most `small.bytes`
   * (a small database compacts in a fraction of a second). After fewer,
   * only flush the memtable (the write-ahead log of a quiet node then holds
   * nothing).
   */
  startCompacting (options: { idleMs?: number, minDeletes?: number, small?: { minDeletes: number, bytes: number }, checkMs?: number, onCompacted?: (info: { deletes: number, ms: number }) => void, onError?: (err: Error) => void } = {}): void {
    const idleMs = options.idleMs ?? IDLE_COMPACTION_MS
    this.stopCompacting()
    this.compactTimer = setInterval(() => {
      if (this.compacting !== undefined || Date.now() - this.lastWriteAt < idleMs) return
      this.compacting = this.whenIdle(options).catch((err: Error) => options.onError?.(err)).finally(() => { this.compacting = undefined })
    }, options.checkMs ?? 2_000)
    this.compactTimer.unref()
  }

  /** Deletions counted when the tables' size was last looked up (not again until more come). */
  private sizedAtDeletes = -1

  private async whenIdle (options: { minDeletes?: number, small?: { minDeletes: number, bytes: number }, onCompacted?: (info: { deletes: number, ms: number }) => void }): Promise<void> {
    const deletes = this.deletesSinceCompaction
    const small = options.small ?? { minDeletes: IDLE_COMPACTION_SMALL_MIN_DELETES, bytes: IDLE_COMPACTION_SMALL_BYTES }
    let compact = deletes >= (options.minDeletes ?? IDLE_COMPACTION_MIN_DELETES)
    if (!compact && deletes >= small.minDeletes && deletes !== this.sizedAtDeletes) {
      this.sizedAtDeletes = deletes
      // the tables' size leaves out the memtable: move it into a table first (done when idle anyway)
      if (this.writesSinceFlush > 0 && this.failure === undefined) await this.flushMemtable()
      compact = await this.tableBytes() <= small.bytes
    }
    if (!compact) {
      // not worth a full compaction: still move what the write-ahead log holds into a table
      if (this.writesSinceFlush > 0 && this.failure === undefined) await this.flushMemtable()
      return
    }
    this.deletesSinceCompaction = 0
    this.sizedAtDeletes = -1
    const t0 = Date.now()
    this.writesSinceFlush = 0
    // keys start with an ASCII tag (see keys.ts): this range is the whole keyspace
    await (this.db as unknown as CompactingDb).compactRange('\x00', '\x7f')
    this.compactions++
    this.onMaintenance?.('compaction')
    options.onCompacted?.({ deletes, ms: Date.now() - t0 })
  }

  /** Bytes of the database's tables (LevelDB's estimate; the memtable and write-ahead log not included). */
  async tableBytes (): Promise<number> {
    return await (this.db as unknown as CompactingDb).approximateSize('\x00', '\x7f')
  }

  stopCompacting (): void {
    if (this.compactTimer !== undefined) clearInterval(this.compactTimer)
    this.compactTimer = undefined
  }

  /**
   * Run `fn` with the write lock held: read-check-write sequences (version
   * vector checks, LWW comparisons) are serialised across every writer.
   *
   * By default the writes of earlier pipelined transactions are durable
   * before `fn` starts, so `fn` may read the database directly (iterators).
   * With `pipelined`, `fn` may start while they are still being written: it
   * must read only through its Txn (which sees them) or tolerate not seeing
   * them, and it commits with `Txn.issue`.
   */
  async exclusive<T> (fn: () => Promise<T>, options: { pipelined?: boolean } = {}): Promise<T> {
    const guarded = async (): Promise<T> => {
      if (this.failure !== undefined) throw this.failure
      if (options.pipelined !== true) await this.flushed()
      return await fn()
    }
    const run = this.tail.then(guarded, guarded)
    this.tail = run.catch(() => {})
    return await run
  }

  /** Whether writes are issued and not yet durable. */
  hasPending (): boolean {
    return this.unwritten.length > 0
  }

  /** The writes issued and not yet durable, oldest first (read only). */
  inFlight (): ReadonlyArray<Map<string, Uint8Array | undefined>> {
    return this.unwritten
  }

  /** The newest value of `key` in a write not yet durable: `{ value }` (undefined: deleted), or undefined. */
  pendingValue (key: string): { value: Uint8Array | undefined } | undefined {
    for (let i = this.unwritten.length - 1; i >= 0; i--) {
      const w = this.unwritten[i]
      if (w.has(key)) return { value: w.get(key) }
    }
    return undefined
  }

  /** Resolves when every write issued so far is durable (rejects if one failed). */
  async flushed (): Promise<void> {
    await this.writing
  }

  txn (): Txn {
    return new Txn(this.db, this)
  }

  /**
   * Queue a batch after the writes already issued (at most two in flight:
   * the caller waits when more are). `writes` maps each key to its new value
   * (undefined: delete); it is kept, not copied, so its keys are visible to
   * transactions through `pendingValue` until it is durable: the caller must
   * not change it any more.
   */
  async write (writes: Map<string, Uint8Array | undefined>): Promise<{ durable: Promise<void> }> {
    if (this.failure !== undefined) throw this.failure
    const unaliased = firstUnaliased(writes)
    if (unaliased !== undefined) throw new Error(`a write names a log that has no alias on this node (key ${JSON.stringify(unaliased.slice(0, 60))}): nothing was written; its alias must be made first (LogAliases.ensure)`)
    while (this.writesInFlight.length >= 2) await this.writesInFlight[0].catch(() => {})
    if (this.failure !== undefined) throw this.failure
    this.lastWriteAt = Date.now()
    this.writesSinceFlush++
    this.frontiers.wrote(writes)
    this.unwritten.push(writes)
    const previous = this.writing
    let done: Promise<void> = Promise.resolve()
    done = (async () => {
      try {
        await previous
        // a chained batch costs ~0.5 µs per operation on this thread, an array batch 1.2-2.5 µs
        // (the binding reads type/key/value of every array element): same single atomic write
        const batch = this.db.batch() as NativeBatch
        let first = true
        const written = this.written
        written.batches++
        // forEach, not for…of: no iterator result and no [key, value] array per key
        writes.forEach((value, key) => {
          written.bytes += key.length
          if (value === undefined) {
            this.deletesSinceCompaction++
            written.deletes++
          } else {
            written.puts++
            written.bytes += value.byteLength
          }
          if (first) {
            // through abstract-level once: its batch writes nothing when it counted no operation
            if (value !== undefined) batch.put(key, value)
            else batch.del(key)
            first = false
          } else if (value !== undefined) {
            batch._put(key, value)
          } else {
            batch._del(key)
          }
        })
        await batch.write()
      } catch (err) {
        this.failure ??= new SyncmeshError('STORE_WRITE_FAILED', `a database write failed, so this node stopped writing (what it holds in memory may be ahead of the disk): ${(err as Error).message}; restart the node once the cause (disk full, I/O error) is fixed`, 503, { cause: err })
        throw this.failure
      } finally {
        // writes land in order: this one is the oldest still listed
        this.unwritten.splice(this.unwritten.indexOf(writes), 1)
        this.writesInFlight.splice(this.writesInFlight.indexOf(done), 1)
      }
    })()
    done.catch(() => {}) // the failure is reported to whoever waits for `durable`, and to every later write
    this.writesInFlight.push(done)
    this.writing = done
    return { durable: done }
  }
}

/**
 * A write batch with read-your-writes: `get` sees puts and dels made earlier
 * in the same transaction, and those of earlier transactions still being
 * written. Only valid inside `Store.exclusive`.
 */
export class Txn {
  private readonly db: Db
  private readonly store: Store
  /** What this transaction writes: key → new value (undefined: delete); the batch it commits. */
  private readonly writes = new Map<string, Uint8Array | undefined>()
  /** What it read (or prefetched) from the database and from writes in flight. */
  private readonly cache = new Map<string, Uint8Array | undefined>()

  constructor (db: Db, store: Store) {
    this.db = db
    this.store = store
  }

  /** Load many keys with one read so later `get`s hit memory. */
  async prefetch (keyList: string[]): Promise<void> {
    const missing: string[] = []
    const pending = this.store.hasPending()
    const frontiers = this.store.frontiers
    for (const k of keyList) {
      if (this.cache.has(k) || this.writes.has(k)) continue
      // beyond the frontier first: such a key is in no write in flight either (issued writes raise it)
      if (frontiers.beyond(k)) {
        this.cache.set(k, undefined)
        continue
      }
      const p = pending ? this.store.pendingValue(k) : undefined
      if (p !== undefined) this.cache.set(k, p.value)
      else missing.push(k)
    }
    if (missing.length === 0) return
    const unique = [...new Set(missing)]
    if (unique.length < RANGE_READ_MIN) {
      await this.lookUp(unique)
      return
    }
    // the range reads and the lookups of the other keys run at once (each is a trip to LevelDB's threads)
    const { ranges, rest } = this.planRangeReads(unique)
    const left = await Promise.all([...ranges.map(async ({ prefix, group }) => await this.rangeRead(prefix, group)), this.lookUp(rest).then(() => [])])
    const again = left.flat()
    if (again.length > 0) await this.lookUp(again)
  }

  private async lookUp (keyList: string[]): Promise<void> {
    if (keyList.length === 0) return
    if (keyList.length <= SYNC_LOOKUP_MAX) {
      for (const k of keyList) if (!this.cache.has(k)) this.cache.set(k, this.db.getSync(k))
      return
    }
    const values = await this.db.getMany(keyList)
    for (let i = 0; i < keyList.length; i++) if (!this.cache.has(keyList[i])) this.cache.set(keyList[i], values[i])
  }

  /**
   * Keys that share a prefix and lie close together (new records with
   * sequential ids, a log's next seqs) are read with one iterator over their
   * range instead of one lookup each. Besides being cheaper, this keeps
   * LevelDB from compacting needlessly: each lookup of an absent key that
   * has to consult two files counts a "seek" against the first, and a small
   * file is compacted after 100 of them, so a bulk of new records (every
   * lookup a miss) made LevelDB rewrite its files again and again (10× write
   * amplification in `npm run profile:sync`). A prefix whose range read met
   * many other keys is looked up key by key for a while.
   */
  private planRangeReads (unique: string[]): { ranges: Array<{ prefix: string, group: string[] }>, rest: string[] } {
    const groups = new Map<string, string[]>()
    for (const k of unique) {
      const prefix = prefixOf(k)
      const g = groups.get(prefix)
      if (g === undefined) groups.set(prefix, [k])
      else g.push(k)
    }
    const ranges: Array<{ prefix: string, group: string[] }> = []
    const rest: string[] = []
    const sparse = this.store.sparsePrefixes
    for (const [prefix, group] of groups) {
      const skip = sparse.get(prefix) ?? 0
      if (skip > 0) sparse.set(prefix, skip - 1)
      if (group.length < RANGE_READ_MIN || skip > 0) rest.push(...group)
      else ranges.push({ prefix, group })
    }
    return { ranges, rest }
  }

  /**
   * Read one group of keys of `prefix` with an iterator; returns the keys it
   * could not settle. Where the prefix's frontier is not known, what lies
   * after the group is probed at the same time (frontier.ts).
   */
  private async rangeRead (prefix: string, group: string[]): Promise<string[]> {
    group.sort()
    const first = group[0]
    const last = group[group.length - 1]
    const limit = group.length * 2 + 16
    const frontiers = this.store.frontiers
    const probe = frontiers.startProbe(prefix, this.store.inFlight())
    let empty = false
    let entries: Array<[string, Uint8Array]>
    try {
      const [read, after] = await Promise.all([
        this.db.iterator({ gte: first, lte: last, limit, highWaterMarkBytes: READ_TRIP_BYTES }).all(),
        probe ? this.db.keys({ gt: last, lt: prefixRange(prefix).lt, limit: 1 }).all() : undefined
      ])
      entries = read
      empty = after?.length === 0
    } finally {
      if (probe) frontiers.probed(prefix, last, empty)
    }
    const found = new Map<string, Uint8Array>()
    for (const [key, value] of entries) found.set(key, value)
    const lastSeen = entries.length > 0 ? entries[entries.length - 1][0] : undefined
    const complete = entries.length < limit
    const rest: string[] = []
    for (const k of group) {
      if (this.cache.has(k)) continue
      const v = found.get(k)
      if (v !== undefined || complete || (lastSeen !== undefined && k <= lastSeen)) this.cache.set(k, v)
      else rest.push(k)
    }
    if (!complete) this.store.sparsePrefixes.set(prefix, SPARSE_SKIP_BATCHES)
    return rest
  }

  /**
   * The value of `key` as this transaction sees it. Synchronous: a key not
   * prefetched is read from LevelDB on this thread (getSync: the memtable,
   * the block cache, or the disk), so the write path makes no trip to the
   * thread pool (and no promise) per key; `prefetch` what a batch will read.
   */
  get (key: string): Uint8Array | undefined {
    if (this.writes.has(key)) return this.writes.get(key)
    if (this.cache.has(key)) return this.cache.get(key)
    const p = this.store.pendingValue(key)
    const value = p !== undefined ? p.value : this.db.getSync(key)
    this.cache.set(key, value)
    return value
  }

  put (key: string, value: Uint8Array): void {
    this.writes.set(key, value)
  }

  del (key: string): void {
    this.writes.set(key, undefined)
  }

  /** Write the batch atomically and wait until it is durable. */
  async commit (): Promise<void> {
    const { durable } = await this.issue()
    await durable
  }

  /**
   * Start writing the batch (after the writes already issued) and return a
   * promise of its durability, so the caller can release the write lock and
   * let the next transaction work while this one is written. Used by
   * `Store.exclusive(…, { pipelined: true })` sections.
   */
  async issue (): Promise<{ durable: Promise<void> }> {
    if (this.writes.size === 0) return { durable: this.store.flushed() }
    return await this.store.write(this.writes)
  }
}
