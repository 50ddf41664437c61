/**
 * Incremental NDJSON parsing for streamed imports: memory stays bounded by
 * the longest line, however large the body.
 */
import { StringDecoder } from 'node:string_decoder'
import { SyncmeshError } from '../core/errors.js'
import type { ImportLine, JsonObject } from '../core/types.js'
import { MAX_JSON_DEPTH, jsonTooDeep } from '../store/json-depth.js'
import { idProblem, isValidId } from '../store/names.js'

/** The longest accepted line (one record), like the JSON body limit. */
export const MAX_LINE_BYTES = 1024 * 1024

const PARTIAL_NOTE = 'records on earlier lines may already be imported (imports commit in batches); fix the line and import the file again (importing the same records again is safe)'

/** A line of an import that cannot be imported; `line` counts from 1. */
export class ImportLineError extends SyncmeshError {
  readonly line: number
  readonly problem: string

  constructor (code: string, line: number, problem: string, status = 400) {
    super(code, `line ${line}: ${problem}; ${PARTIAL_NOTE}`, status)
    this.name = 'ImportLineError'
    this.line = line
    this.problem = problem
  }
}

/**
 * The error an import that stopped at a bad line answers with, once the
 * number of records committed before it is known: which line, what is wrong
 * with it, and how many records were kept.
 */
export function importFailure (err: ImportLineError, imported: number): SyncmeshError {
  const kept = imported === 0 ? 'no record was imported' : imported === 1 ? 'the first record of the file was imported, none after it' : `the first ${imported} records of the file were imported, none after them`
  return new SyncmeshError(err.code, `line ${err.line}: ${err.problem}; ${kept} (imports commit in batches); fix the line and import the file again (importing the same records again is safe)`, err.status)
}

export function isJsonObject (value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function lineError (lineNo: number, problem: string): ImportLineError {
  return new ImportLineError('INVALID_NDJSON', lineNo, problem)
}

export function parseImportLine (text: string, lineNo: number): ImportLine {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw lineError(lineNo, `not valid JSON (${(err as Error).message})`)
  }
  if (!isJsonObject(parsed)) throw lineError(lineNo, 'expected an object {"id":"…","value":{…}}')
  const { id, value } = parsed as { id?: unknown, value?: unknown }
  if (typeof id !== 'string' || id === '') throw lineError(lineNo, '"id" must be a non-empty string')
  if (!isValidId(id)) throw lineError(lineNo, `"id" ${idProblem(id)}`)
  if (!isJsonObject(value)) throw lineError(lineNo, '"value" must be a JSON object')
  if (jsonTooDeep(value)) throw lineError(lineNo, `"value" nests objects and arrays more than ${MAX_JSON_DEPTH} levels deep`)
  return { id, value }
}

/** Splits a byte stream into NDJSON records; blank lines are skipped, CRLF is accepted. */
export async function * parseNdjson (source: AsyncIterable<Buffer | string>, options: { maxLineBytes?: number } = {}): AsyncGenerator<ImportLine> {
  const maxLine = options.maxLineBytes ?? MAX_LINE_BYTES
  const decoder = new StringDecoder('utf8')
  let pending = ''
  let lineNo = 0

  function * drain (text: string, final: boolean): Generator<ImportLine> {
    let start = 0
    let nl: number
    while ((nl = text.indexOf('\n', start)) !== -1) {
      lineNo++
      const line = text.slice(start, nl)
      start = nl + 1
      if (line.length > maxLine) throw tooLong(lineNo)
      const trimmed = line.trim()
      if (trimmed !== '') yield parseImportLine(trimmed, lineNo)
    }
    pending = text.slice(start)
    // a string's length in UTF-16 units is a lower bound-ish proxy for bytes; good enough for a guard
    if (pending.length > maxLine) throw tooLong(lineNo + 1)
    if (final) {
      const trimmed = pending.trim()
      pending = ''
      if (trimmed !== '') {
        lineNo++
        yield parseImportLine(trimmed, lineNo)
      }
    }
  }

  function tooLong (n: number): SyncmeshError {
    return new ImportLineError('LINE_TOO_LONG', n, `longer than ${maxLine} bytes (one record per line, at most ${maxLine / 1024 / 1024} MiB)`, 413)
  }

  for await (const chunk of source) {
    const text = pending + (typeof chunk === 'string' ? chunk : decoder.write(chunk))
    yield * drain(text, false)
  }
  yield * drain(pending + decoder.end(), true)
}
