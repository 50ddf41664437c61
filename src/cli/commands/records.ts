/**
 * syncmesh put | get | del | ls | import | export
 */
import { basename } from 'node:path'
import type { Command } from 'commander'
import type { ImportProgress } from '../../api/client.js'
import { SyncmeshError } from '../../core/errors.js'
import type { JsonObject } from '../../core/types.js'
import { UsageError, addClientOptions, addJsonOption, connect, readStdin } from '../common.js'
import type { ClientOptions, JsonOption } from '../common.js'
import { StatusLine, formatBytes, formatCount, formatDuration, out, printJson, printLine } from '../output.js'

type Opts = ClientOptions & JsonOption

function clientCommand (program: Command, spec: string, description: string): Command {
  return addClientOptions(addJsonOption(program.command(spec).description(description)))
}

function parseValue (text: string, from: string): JsonObject {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new SyncmeshError('INVALID_JSON', `the value ${from} is not valid JSON (${(err as Error).message}); pass a JSON object, e.g. '{"title":"hello"}'`, 400)
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new SyncmeshError('INVALID_VALUE', `the value ${from} must be a JSON object, e.g. '{"title":"hello"}'`, 400)
  }
  return value as JsonObject
}

async function dumpCollection (collection: string, opts: Opts, progress = false): Promise<void> {
  const client = await connect(opts)
  // progress only on a terminal: piped stderr stays clean for scripts
  const line = progress && process.stderr.isTTY === true ? new StatusLine({ ttyIntervalMs: 100 }) : undefined
  const started = Date.now()
  let count = 0
  let bytes = 0
  try {
    for await (const record of client.iterateRecords(collection, { pageSize: 1000 })) {
      const text = JSON.stringify({ id: record.id, value: record.value }) + '\n'
      await out(text)
      count++
      bytes += Buffer.byteLength(text)
      line?.update(`exporting ${collection}: ${formatCount(count)} records, ${formatBytes(bytes)}`)
    }
  } finally {
    line?.clear()
  }
  line?.done(`exported ${formatCount(count)} records (${formatBytes(bytes)}) from ${collection} in ${formatDuration((Date.now() - started) / 1000)}`)
}

export function registerRecordCommands (program: Command): void {
  clientCommand(program, 'put', 'store a record: the JSON object from the argument, or from stdin')
    .argument('<collection>')
    .argument('<id>')
    .argument('[json]', 'the value, a JSON object (read from stdin when omitted)')
    .action(async (collection: string, id: string, json: string | undefined, opts: Opts) => {
      let value: JsonObject
      if (json != null) {
        value = parseValue(json, 'argument')
      } else {
        if (process.stdin.isTTY === true) process.stderr.write('reading the JSON value from stdin (end with Ctrl-D)…\n')
        const text = await readStdin()
        if (text.trim() === '') throw new UsageError('no value: pass the JSON object as an argument or on stdin, e.g. syncmesh put posts 42 \'{"title":"hello"}\'')
        value = parseValue(text, 'on stdin')
      }
      const client = await connect(opts)
      const record = await client.putRecord(collection, id, value)
      if (opts.json === true) await printJson(record)
      else await printLine(`stored ${collection}/${id} (seq ${record.version.seq})`)
    })

  clientCommand(program, 'get', 'print the value of a record; exit 1 when missing')
    .argument('<collection>')
    .argument('<id>')
    .action(async (collection: string, id: string, opts: Opts) => {
      const client = await connect(opts)
      const record = await client.getRecord(collection, id)
      if (opts.json === true) await printJson(record)
      else await printLine(JSON.stringify(record.value, null, 2))
    })

  clientCommand(program, 'del', 'delete a record; exit 1 when there is none')
    .argument('<collection>')
    .argument('<id>')
    .action(async (collection: string, id: string, opts: Opts) => {
      const client = await connect(opts)
      const result = await client.deleteRecord(collection, id)
      if (opts.json === true) await printJson(result)
      else await printLine(`deleted ${collection}/${id}`)
    })

  clientCommand(program, 'ls', 'list a collection as NDJSON lines {"id","value"}')
    .argument('<collection>')
    .action(async (collection: string, opts: Opts) => {
      await dumpCollection(collection, opts)
    })

  clientCommand(program, 'export', 'write a collection to stdout as NDJSON (the format import reads); progress on stderr when it is a terminal')
    .argument('<collection>')
    .action(async (collection: string, opts: Opts) => {
      await dumpCollection(collection, opts, true)
    })

  clientCommand(program, 'import', 'load NDJSON lines {"id","value"} from FILE ("-" for stdin); progress on stderr')
    .argument('<collection>')
    .argument('<file>', 'NDJSON file, or - for stdin')
    .action(async (collection: string, file: string, opts: Opts) => {
      const client = await connect(opts)
      const line = new StatusLine({ ttyIntervalMs: 100, plainIntervalMs: Infinity })
      const started = Date.now()
      const name = file === '-' ? 'stdin' : basename(file)
      const onProgress = (p: ImportProgress): void => {
        const size = p.totalBytes != null && p.totalBytes > 0
          ? `${formatBytes(p.bytes)} of ${formatBytes(p.totalBytes)} (${Math.floor(p.bytes / p.totalBytes * 100)}%)`
          : formatBytes(p.bytes)
        line.update(`importing ${name} into ${collection}: ${formatCount(p.lines)} lines, ${size}`)
      }
      let result: { imported: number }
      try {
        result = file === '-'
          ? await client.importStream(collection, process.stdin, onProgress)
          : await client.importFile(collection, file, onProgress)
      } finally {
        line.clear()
      }
      const seconds = (Date.now() - started) / 1000
      line.done(`imported ${formatCount(result.imported)} records into ${collection} in ${formatDuration(seconds)}`)
      if (opts.json === true) await printJson({ imported: result.imported })
    })
}
