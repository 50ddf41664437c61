/**
 * Shared CLI plumbing: usage errors, option parsers, and reaching the node
 * (--data DIR, or --api URL --token TOKEN, or $SYNCMESH_API/$SYNCMESH_TOKEN).
 */
import { Option } from 'commander'
import type { Command } from 'commander'
import { ApiClient } from '../api/client.js'
import { SyncmeshError } from '../core/errors.js'
import { packageVersion } from '../core/version.js'
import { readApiFile } from '../node/config.js'
import type { Endpoint, JsonObject } from '../core/types.js'

/** A malformed command line: exit status 2. */
export class UsageError extends SyncmeshError {
  constructor (message: string) {
    super('USAGE', message, 400)
    this.name = 'UsageError'
  }
}

export interface JsonOption { json?: boolean }

export interface ClientOptions {
  data?: string
  api?: string
  token?: string
}

export function addJsonOption (cmd: Command): Command {
  return cmd.option('--json', 'print JSON instead of text')
}

const CONNECTION_GROUP = 'Reaching the node (one of):'

export function addClientOptions (cmd: Command): Command {
  return cmd
    .addOption(new Option('--data <dir>', 'data directory of the running node (reads DIR/api.json)').helpGroup(CONNECTION_GROUP))
    .addOption(new Option('--api <url>', 'API URL of the node, e.g. http://127.0.0.1:7070 (default: $SYNCMESH_API)').helpGroup(CONNECTION_GROUP))
    .addOption(new Option('--token <token>', 'API token for --api (default: $SYNCMESH_TOKEN)').helpGroup(CONNECTION_GROUP))
}

/** commander collector for repeatable options (--listen A --listen B). */
export function collect (value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value]
}

function env (name: string): string | undefined {
  const value = process.env[name]
  return value != null && value !== '' ? value : undefined
}

export async function connect (opts: ClientOptions): Promise<ApiClient> {
  if (opts.api != null) {
    let token = opts.token ?? env('SYNCMESH_TOKEN')
    if (token == null && opts.data != null) token = (await readApiFile(opts.data)).token
    if (token == null) throw new UsageError('--api needs --token TOKEN (or $SYNCMESH_TOKEN); the running node writes it to DATA_DIR/api.json')
    return new ApiClient(opts.api, token)
  }
  if (opts.data != null) {
    const file = await readApiFile(opts.data)
    return new ApiClient(file.url, opts.token ?? file.token)
  }
  const api = env('SYNCMESH_API')
  if (api != null) {
    const token = opts.token ?? env('SYNCMESH_TOKEN')
    if (token == null) throw new UsageError('$SYNCMESH_API is set but no token: pass --token TOKEN or set $SYNCMESH_TOKEN')
    return new ApiClient(api, token)
  }
  throw new UsageError('which node? pass --data DIR (of a running node) or --api URL --token TOKEN (or set $SYNCMESH_API and $SYNCMESH_TOKEN)')
}

/** "PLATFORM:COLLECTION" */
export function parseEndpoint (value: string, flag: string): Endpoint {
  const i = value.indexOf(':')
  const platform = i > 0 ? value.slice(0, i).trim() : ''
  const collection = i > 0 ? value.slice(i + 1).trim() : ''
  if (platform === '' || collection === '' || collection.includes(':')) {
    throw new UsageError(`${flag} expects PLATFORM:COLLECTION (e.g. hub:posts), got "${value}"`)
  }
  return { platform, collection }
}

/** "a,b , c" → ['a','b','c'] */
export function parseList (value: string, flag: string): string[] {
  const items = value.split(',').map((s) => s.trim()).filter((s) => s !== '')
  if (items.length === 0) throw new UsageError(`${flag} expects a comma-separated list of field names, e.g. ${flag} title,body`)
  return items
}

/** "old=new,a=b" → {old:'new', a:'b'} */
export function parseRename (value: string): Record<string, string> {
  const result: Record<string, string> = {}
  for (const part of value.split(',').map((s) => s.trim()).filter((s) => s !== '')) {
    const i = part.indexOf('=')
    const from = i > 0 ? part.slice(0, i).trim() : ''
    const to = i > 0 ? part.slice(i + 1).trim() : ''
    if (from === '' || to === '') throw new UsageError(`--rename expects OLD=NEW pairs separated by commas (e.g. --rename title=headline,body=text), got "${part}"`)
    result[from] = to
  }
  if (Object.keys(result).length === 0) throw new UsageError('--rename expects OLD=NEW pairs separated by commas, e.g. --rename title=headline')
  return result
}

export function parseJsonObjectArg (value: string, flag: string): JsonObject {
  let parsed: unknown
  try {
    parsed = JSON.parse(value)
  } catch (err) {
    throw new UsageError(`${flag} expects a JSON object (${(err as Error).message}), e.g. ${flag} '{"status":"published"}'`)
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new UsageError(`${flag} expects a JSON object, e.g. ${flag} '{"status":"published"}'`)
  }
  return parsed as JsonObject
}

export interface HostPort { host: string, port: number }

/** "HOST:PORT", "[::1]:PORT", ":PORT" or "PORT" (host defaults to 127.0.0.1). */
export function parseHostPort (value: string, flag = '--api'): HostPort {
  const text = value.trim().replace(/^https?:\/\//, '').replace(/\/+$/, '')
  let host = '127.0.0.1'
  let portText = text
  const v6 = /^\[([^\]]+)\]:(\d+)$/.exec(text)
  if (v6 != null) {
    host = v6[1] as string
    portText = v6[2] as string
  } else if (text.includes(':')) {
    const i = text.lastIndexOf(':')
    if (i > 0) host = text.slice(0, i)
    portText = text.slice(i + 1)
  }
  const port = Number(portText)
  if (!/^\d+$/.test(portText) || port > 65535 || host === '' || host.includes(':') && v6 == null) {
    throw new UsageError(`${flag} expects HOST:PORT (e.g. 127.0.0.1:7070; port 0 picks a free port), got "${value}"`)
  }
  return { host, port }
}

export function parseSeconds (value: string, flag: string): number {
  const n = Number(value)
  if (value.trim() === '' || !Number.isFinite(n) || n < 0) throw new UsageError(`${flag} expects a number of seconds, e.g. ${flag} 30, got "${value}"`)
  return n
}

/** All of stdin as text. */
export async function readStdin (): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

/** The package version, from the nearest package.json above this file. */
export async function readVersion (): Promise<string> {
  return packageVersion()
}
