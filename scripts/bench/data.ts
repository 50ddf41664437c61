/**
 * Benchmark records: ~250 bytes of JSON each, generated as a stream of NDJSON
 * chunks so that even a million records never exist as one string. Each
 * record's body is different text (deterministic from its number and
 * revision), so compression on disk is not flattered by identical records.
 */
import type { JsonObject } from '../../src/core/types.js'

/** Words of the record bodies: varied text, so LevelDB's block compression (snappy) sees about as much redundancy as in ordinary prose, not one filler repeated in every record. */
const WORDS = ('the of and to in is was for on that with as by at from his her an which or be are this not but had have were one all their they there been has who more its when would will into some if out can time two only new these may other than first then any could over such about after most also made many before where must under through much back years well while state same world life being down those both between under each each work how own part long place since without group still people made public against small large number high around during government fact system order house point home city water form until early case').split(' ')

/** Body length that makes a value exactly 250 bytes of JSON for ids 10000–99999 (242–252 bytes from 0 to 9,999,999). */
const BODY_LENGTH = 177

/** Deterministic text for (i, rev): words drawn by a small PRNG, cut to BODY_LENGTH. */
function body (i: number, rev: number): string {
  let a = (Math.imul(i + 1, 0x9E3779B1) ^ Math.imul(rev + 1, 0x85EBCA77)) >>> 0
  let text = ''
  while (text.length < BODY_LENGTH) {
    a = (a + 0x6D2B79F5) >>> 0
    let t = Math.imul(a ^ (a >>> 15), a | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    text += WORDS[((t ^ (t >>> 14)) >>> 0) % WORDS.length] + ' '
  }
  return text.slice(0, BODY_LENGTH)
}

export function recordId (prefix: string, i: number): string {
  return `${prefix}${String(i).padStart(8, '0')}`
}

/** The value of record i at revision rev (a later revision is the same size, with different content). */
export function recordValue (i: number, rev = 0): JsonObject {
  return { n: i, rev, title: `record ${i}`, status: 'published', body: body(i, rev) }
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
