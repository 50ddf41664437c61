/**
 * The logs of every origin this node has heard of, kept compacted: for each
 * (origin, collection, id) only the newest entry survives, so the disk tracks
 * the data rather than its history. The version vector says how far each
 * origin's log is held.
 */
import type { Store, Txn } from '../store/db.js'
import { utf8 } from '../store/db.js'
import { keys, keySuffix, prefixRange } from '../store/keys.js'
import { decodeEntry, encodeEntry } from './entry.js'
import type { LogEntry } from './entry.js'
import { VersionVector } from './vector.js'

export interface EntryRun {
  /** Raw protobuf entries, in seq order. */
  entries: Uint8Array[]
  /** Highest seq covered: entries up to here (or compacted away) are in the run. */
  toSeq: number
  bytes: number
}

export class ChangeLog {
  private readonly store: Store
  /** What is durably stored; updated only after a commit. */
  readonly vector = new VersionVector()

  constructor (store: Store) {
    this.store = store
  }

  async load (): Promise<void> {
    const prefix = keys.vectorPrefix()
    for await (const [key, value] of this.store.db.iterator(prefixRange(prefix))) {
      this.vector.set(keySuffix(key, prefix), Number(utf8.decode(value)))
    }
  }

  /**
   * Add a contiguous run of one origin's log to `txn`: entries with seq in
   * (vector, toSeq], dropping entries they supersede. The caller has checked
   * that the run starts at or before the held seq and commits `txn`, then
   * calls `committed`.
   */
  async append (txn: Txn, origin: string, entries: LogEntry[], toSeq: number): Promise<void> {
    await txn.prefetch(entries.map(e => keys.latest(origin, e.collection, e.id)))
    for (const e of entries) {
      const latestKey = keys.latest(origin, e.collection, e.id)
      const prev = await txn.get(latestKey)
      if (prev !== undefined) {
        const prevSeq = Number(utf8.decode(prev))
        if (prevSeq >= e.seq) continue // already hold something newer for this record
        txn.del(keys.entry(origin, prevSeq))
      }
      txn.put(keys.entry(origin, e.seq), encodeEntry(e))
      txn.put(latestKey, utf8.encode(String(e.seq)))
    }
    txn.put(keys.vector(origin), utf8.encode(String(toSeq)))
  }

  committed (origin: string, toSeq: number): void {
    this.vector.advance(origin, toSeq)
  }

  /**
   * Read the next run of an origin's log after `afterSeq`, up to the limits.
   * Returns undefined when nothing after `afterSeq` is held.
   */
  async readRun (origin: string, afterSeq: number, maxEntries: number, maxBytes: number): Promise<EntryRun | undefined> {
    const held = this.vector.get(origin)
    if (held <= afterSeq) return undefined
    const entries: Uint8Array[] = []
    let bytes = 0
    let lastSeq = afterSeq
    const prefix = keys.entryPrefix(origin)
    const range = prefixRange(prefix)
    const it = this.store.db.iterator({ gt: keys.entry(origin, afterSeq), lt: range.lt, limit: maxEntries })
    try {
      for await (const [key, value] of it) {
        const seq = parseInt(keySuffix(key, prefix), 16)
        if (seq > held) break // written after the vector was read; next run
        entries.push(value)
        bytes += value.byteLength
        lastSeq = seq
        if (bytes >= maxBytes) break
      }
    } finally {
      await it.close()
    }
    // Reached the end of the held log: the run covers everything up to `held`
    // (the entries in between were compacted away).
    const complete = entries.length < maxEntries && bytes < maxBytes
    return { entries, toSeq: complete ? held : lastSeq, bytes }
  }

  /**
   * The newest entry of every record of one origin's collection, in id order,
   * after `afterId`: what a rule needs to backfill.
   */
  async readCollection (origin: string, collection: string, afterId: string | undefined, limit: number): Promise<LogEntry[]> {
    const prefix = keys.latestPrefix(origin, collection)
    const range = prefixRange(prefix)
    const seqs: number[] = []
    for await (const value of this.store.db.values({ ...(afterId !== undefined ? { gt: prefix + afterId } : { gte: range.gte }), lt: range.lt, limit })) {
      seqs.push(Number(utf8.decode(value)))
    }
    if (seqs.length === 0) return []
    const values = await this.store.db.getMany(seqs.map(s => keys.entry(origin, s)))
    const out: LogEntry[] = []
    for (const v of values) if (v !== undefined) out.push(decodeEntry(origin, v))
    return out
  }
}
