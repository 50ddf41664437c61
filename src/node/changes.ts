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
 * Index keys (src/store/keys.ts): `f cursor → coll\0id` for the whole node and
 * `h coll cursor → id` per collection, so following one collection never
 * scans the others.
 */
import { InvalidInputError } from '../errors.js'
import type { Store } from '../store/db.js'
import { utf8 } from '../store/db.js'
import { keys, keySuffix, prefixRange, SEP } from '../store/keys.js'
import { checkCollection, isRegistryCollection } from '../store/names.js'
import { decodeRecord, publicVersion } from '../store/records.js'
import type { FeedLine } from './types.js'

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

/** The changes after cursor `after`, reading at most `limit` index entries. */
export async function readFeed (store: Store, after: number, collection: string | undefined, limit: number): Promise<FeedChunk> {
  const prefix = collection !== undefined ? keys.feedByCollectionPrefix(collection) : keys.feedPrefix()
  const from = collection !== undefined ? keys.feedByCollection(collection, after) : keys.feed(after)
  const found: Array<{ cursor: number, collection: string, id: string }> = []
  for await (const [key, value] of store.db.iterator({ gt: from, lt: prefixRange(prefix).lt, limit })) {
    const cursor = parseInt(keySuffix(key, prefix), 16)
    const text = utf8.decode(value)
    if (collection !== undefined) {
      found.push({ cursor, collection, id: text })
    } else {
      const i = text.indexOf(SEP)
      found.push({ cursor, collection: text.slice(0, i), id: text.slice(i + 1) })
    }
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

/** Wakes followers of the feed when changes commit. */
export class FeedSignal {
  private waiters = new Set<() => void>()

  notify (): void {
    const waiters = this.waiters
    this.waiters = new Set()
    for (const w of waiters) w()
  }

  /** Resolves true on the next notify, false after `ms` or when `signal` aborts. */
  async wait (ms: number, signal?: AbortSignal): Promise<boolean> {
    if (signal?.aborted === true) return false
    return await new Promise<boolean>((resolve) => {
      const done = (woke: boolean): void => {
        clearTimeout(timer)
        this.waiters.delete(wake)
        signal?.removeEventListener('abort', abort)
        resolve(woke)
      }
      const wake = (): void => done(true)
      const abort = (): void => done(false)
      const timer = setTimeout(() => done(false), ms)
      this.waiters.add(wake)
      signal?.addEventListener('abort', abort, { once: true })
    })
  }
}
