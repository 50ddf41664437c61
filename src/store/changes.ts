/**
 * The changes feed: every record change on this node, in the order it was
 * committed, resumable by cursor.
 *
 * Each change gets the next cursor of the node (1, 2, 3, …) in the batch that
 * writes it. The index keeps only the newest change of each record (the
 * record's previous index entry is deleted in the same batch), so the feed's
 * disk use tracks the number of records, not their history — like the logs.
 * A client that resumes after cursor C gets every record changed after C, at
 * its newest state, once; intermediate versions of a record changed several
 * times in between are not replayed (as with CouchDB's _changes).
 *
 * Index keys (src/store/keys.ts): `h coll cursor → id`, one per record, so
 * following one collection never reads the others; the whole node's feed
 * merges the collections' indexes by cursor (one seek per collection).
 */
import { InvalidInputError } from '../core/errors.js'
import type { Store } from './db.js'
import { rows, utf8 } from './db.js'
import { keys, keySuffix, prefixRange, SEP } from './keys.js'
import { checkCollection, isRegistryCollection } from './names.js'
import { decodeRecord, publicVersion } from './records.js'
import type { ChangeEvent, FeedLine } from '../core/types.js'

/** Index entries read per round. */
export const FEED_CHUNK = 256
export const DEFAULT_HEARTBEAT_MS = 15_000

/** Parse a `since` cursor: "0"/absent → 0, "now" → the current end, digits → that cursor. */
export function parseCursor (since: string | undefined, now: () => number): number {
  if (since === undefined || since === '') return 0
  if (since === 'now') return now()
  if (!/^\d{1,15}$/.test(since)) {
    throw new InvalidInputError(`invalid cursor "${since.slice(0, 40)}": pass the "cursor" of the last change you processed, 0 for everything, or "now" for new changes only`, 'INVALID_CURSOR')
  }
  return Number(since)
}

export type FeedChange = Extract<FeedLine, { type: 'change' }>

export interface FeedChunk {
  /** The changes, oldest first. */
  lines: FeedChange[]
  /** Index entries read (some may have been left out: their record changed again since). */
  read: number
  /** Cursor to continue after. */
  last: number
}

interface IndexEntry { cursor: number, collection: string, id: string }

/** Index entries of one collection after `after`. */
async function readIndex (store: Store, collection: string, after: number, limit: number): Promise<IndexEntry[]> {
  const prefix = keys.feedByCollectionPrefix(collection)
  const out: IndexEntry[] = []
  for await (const batch of rows(store.db, { gt: keys.feedByCollection(collection, after), lt: prefixRange(prefix).lt, limit })) {
    for (const [key, value] of batch) out.push({ cursor: parseInt(keySuffix(key, prefix), 16), collection, id: utf8.decode(value) })
  }
  return out
}

/** The collections that have changes (a skip scan: one seek per collection). */
export async function feedCollections (store: Store): Promise<string[]> {
  const root = keys.feedCollectionsPrefix()
  const out: string[] = []
  let from = root
  for (;;) {
    let next: string | undefined
    for await (const key of store.db.keys({ gt: from, lt: prefixRange(root).lt, limit: 1 })) next = key
    if (next === undefined) return out
    const collection = next.slice(root.length, next.indexOf(SEP, root.length))
    out.push(collection)
    from = root + collection + '\x01' // past every key of this collection
  }
}

/** The changes after cursor `after`, reading at most `limit` index entries. */
export async function readFeed (store: Store, after: number, collection: string | undefined, limit: number): Promise<FeedChunk> {
  let found: IndexEntry[]
  if (collection !== undefined) {
    found = await readIndex(store, collection, after, limit)
  } else {
    // every collection's next entries, merged by cursor; the first `limit` of them
    found = []
    for (const c of await feedCollections(store)) found.push(...await readIndex(store, c, after, limit))
    found.sort((x, y) => x.cursor - y.cursor)
    found.length = Math.min(found.length, limit)
  }
  if (found.length === 0) return { lines: [], read: 0, last: after }
  const values = await store.db.getMany(found.map(f => keys.record(f.collection, f.id)))
  const out: FeedChange[] = []
  for (let i = 0; i < found.length; i++) {
    const bytes = values[i]
    if (bytes === undefined) continue
    const state = decodeRecord(bytes)
    // changed again since the index was read: it comes again at its newer cursor
    if (state.cursor !== found[i].cursor) continue
    const line: FeedChange = {
      type: 'change',
      cursor: String(found[i].cursor),
      collection: found[i].collection,
      id: found[i].id,
      op: state.value !== undefined ? 'put' : 'del',
      version: publicVersion(state.version)
    }
    if (state.value !== undefined) line.value = state.value
    if (state.rule !== undefined) line.ruleId = state.rule
    out.push(line)
  }
  return { lines: out, read: found.length, last: found[found.length - 1].cursor }
}

/** Validate a feed's collection filter (registry collections are not in the feed). */
export function checkFeedCollection (collection: string | undefined): string | undefined {
  if (collection === undefined || collection === '') return undefined
  if (isRegistryCollection(collection)) throw new InvalidInputError(`the changes feed has no "${collection}": registry changes are not record changes; read GET /v1/rules and /v1/platforms`, 'INVALID_COLLECTION')
  return checkCollection(collection)
}

/** The feed's part of one commit: its changes and the cursors they took, (from, to]. */
export interface FeedCommit {
  from: number
  to: number
  changes: ChangeEvent[]
}

/**
 * The feed lines of a commit, taken from memory: the changes of `collection`
 * (or all), each record once at its newest cursor. Undefined when the
 * changes do not account for every cursor of (from, to] (then the follower
 * reads the index, which is always right).
 */
export function commitLines (commit: FeedCommit, collection: string | undefined): FeedChange[] | undefined {
  const newest = new Map<string, ChangeEvent & { at: number }>()
  const seen = new Set<number>()
  for (const c of commit.changes) {
    if (c.cursor === undefined || c.cursor === '0') continue
    const at = Number(c.cursor)
    if (at <= commit.from || at > commit.to) return undefined
    seen.add(at)
    const key = `${c.collection}${SEP}${c.id}`
    const prev = newest.get(key)
    if (prev === undefined || prev.at < at) newest.set(key, { ...c, at })
  }
  if (seen.size !== commit.to - commit.from) return undefined
  const out: FeedChange[] = []
  for (const c of [...newest.values()].sort((a, b) => a.at - b.at)) {
    if (collection !== undefined && c.collection !== collection) continue
    const line: FeedChange = { type: 'change', cursor: String(c.at), collection: c.collection, id: c.id, op: c.op, version: c.version }
    if (c.value !== undefined) line.value = c.value
    if (c.ruleId !== undefined) line.ruleId = c.ruleId
    out.push(line)
  }
  return out
}

/**
 * Wakes followers of the feed when changes commit, handing them the commit
 * so that a follower that has read everything before it need not read the
 * index again. `last` is the newest cursor committed: a follower behind it
 * reads before it waits (it may have missed a wake-up while it was reading).
 */
export class FeedSignal {
  private waiters = new Set<(commit: FeedCommit | undefined) => void>()
  last = 0
  /** Notifies so far: a follower takes it before reading and hands it to wait, so a wake-up during its read is not lost. */
  notifies = 0

  /** Followers waiting for the next commit. */
  get waiting (): number {
    return this.waiters.size
  }

  notify (commit?: FeedCommit): void {
    this.notifies++
    if (commit !== undefined && commit.to > this.last) this.last = commit.to
    const waiters = this.waiters
    this.waiters = new Set()
    for (const w of waiters) w(commit)
  }

  /**
   * Resolves with the commit (or true) on the next notify, false after `ms` or
   * when `signal` aborts; at once with true when `seen` (a count of notifies
   * taken earlier) is behind, since a commit came in between.
   */
  async wait (ms: number, signal?: AbortSignal, seen?: number): Promise<FeedCommit | boolean> {
    if (signal?.aborted === true) return false
    if (seen !== undefined && seen !== this.notifies) return true
    return await new Promise<FeedCommit | boolean>((resolve) => {
      const done = (woke: FeedCommit | boolean): void => {
        clearTimeout(timer)
        this.waiters.delete(wake)
        signal?.removeEventListener('abort', abort)
        resolve(woke)
      }
      const wake = (commit: FeedCommit | undefined): void => done(commit ?? true)
      const abort = (): void => done(false)
      const timer = setTimeout(() => done(false), ms)
      this.waiters.add(wake)
      signal?.addEventListener('abort', abort, { once: true })
    })
  }
}
