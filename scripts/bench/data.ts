/**
 * Benchmark records: ~250 bytes of JSON each, generated as a stream of NDJSON
 * chunks so that even a million records never exist as one string.
 */
import type { JsonObject } from '../../src/node/types.js'

/** Filler sized so that a record's value is exactly 250 bytes of JSON for ids 10000–99999 (242–252 bytes from 0 to 9,999,999). */
const FILLER = 'lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore magna aliqua ut enim ad minim veniam quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo'.slice(0, 177)

export function recordId (prefix: string, i: number): string {
  return `${prefix}${String(i).padStart(8, '0')}`
}

/** The value of record i at revision rev (a later revision is the same size, with different content). */
export function recordValue (i: number, rev = 0): JsonObject {
  return { n: i, rev, title: `record ${i}`, status: 'published', body: rev === 0 ? FILLER : `${rev}${FILLER.slice(1)}` }
}

/** Accumulates what a stream produced. */
export interface StreamTally {
  records: number
  /** Bytes of the records' values as JSON (the "JSON bytes" the disk target compares with). */
  valueBytes: number
  /** Bytes of the NDJSON body sent. */
  bodyBytes: number
}

export function newTally (): StreamTally {
  return { records: 0, valueBytes: 0, bodyBytes: 0 }
}

/**
 * NDJSON lines {"id","value"} for records [start, start + n), yielded in
 * chunks of about `chunkBytes`.
 */
export function * ndjsonChunks (n: number, options: { prefix?: string, start?: number, rev?: number, tally?: StreamTally, chunkBytes?: number } = {}): Generator<string> {
  const prefix = options.prefix ?? 'r'
  const start = options.start ?? 0
  const chunkBytes = options.chunkBytes ?? 64 * 1024
  const tally = options.tally
  let buf = ''
  for (let i = start; i < start + n; i++) {
    const value = JSON.stringify(recordValue(i, options.rev ?? 0))
    const line = `{"id":${JSON.stringify(recordId(prefix, i))},"value":${value}}\n`
    if (tally !== undefined) {
      tally.records++
      tally.valueBytes += Buffer.byteLength(value)
      tally.bodyBytes += Buffer.byteLength(line)
    }
    buf += line
    if (buf.length >= chunkBytes) {
      yield buf
      buf = ''
    }
  }
  if (buf !== '') yield buf
}
