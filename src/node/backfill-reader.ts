/**
 * Reads a rule's source for its backfill, in chunks, one chunk ahead of the
 * chunk being applied: in log order (one range read per chunk) or by the
 * index of the collection's records (see BackfillState in ./ingest.ts).
 */
import type { ChangeLog } from '../log/changelog.js'
import type { LogEntry } from '../log/entry.js'
import type { BackfillState } from './ingest.js'

/** A chunk of the source: its entries, how many were passed, where the next one starts (`next`), whether there is one. */
export interface BackfillChunk {
  entries: LogEntry[]
  scanned: number
  next: Partial<BackfillState>
  more: boolean
  /** The source's log as held when the chunk was read, when nothing of it was in flight then. */
  asOf?: number
}

export class BackfillReader {
  private ahead?: { at: string, read: Promise<BackfillChunk> }

  constructor (private readonly log: ChangeLog, private readonly source: string, private readonly collection: string, private readonly chunkSize: number) {}

  /** The chunk at `at`: the one read ahead when it is that one, else read now. */
  async take (at: BackfillState): Promise<BackfillChunk> {
    const ahead = this.ahead
    this.ahead = undefined
    return await (ahead !== undefined && ahead.at === position(at) ? ahead.read : this.read(at))
  }

  /** Start reading the chunk at `at` while the current one is applied and written (reads were ~40% of a backfill's time). */
  readAhead (at: BackfillState): void {
    this.ahead = { at: position(at), read: this.read(at) }
    this.ahead.read.catch(() => {}) // awaited with the next chunk, or dropped when the pass stops
  }

  /** Drop the chunk read ahead (the pass turned or stopped): it leaves no read behind. */
  async drop (): Promise<void> {
    const ahead = this.ahead
    this.ahead = undefined
    await ahead?.read.catch(() => {})
  }

  private async read (at: BackfillState): Promise<BackfillChunk> {
    // with nothing of the source's log in flight, the read sees the log as held now (asOf)
    const held = this.log.held(this.source)
    const asOf = this.log.vector.get(this.source) === held ? held : undefined
    if (at.order === 'log') {
      const c = await this.log.readLogChunk(this.source, this.collection, at.afterSeq ?? 0, this.chunkSize, at.upTo)
      return { entries: c.entries, scanned: c.scanned, next: { afterSeq: c.lastSeq }, more: c.more, asOf }
    }
    const c = await this.log.readCollectionChunk(this.source, this.collection, at.after, this.chunkSize, at.upTo)
    return { entries: c.entries, scanned: c.scanned, next: c.lastId !== undefined ? { after: c.lastId } : {}, more: c.scanned === this.chunkSize && c.lastId !== undefined, asOf }
  }
}

function position (at: BackfillState): string {
  return at.order === 'log' ? `#${at.afterSeq ?? 0}` : at.after ?? ''
}
