/**
 * A typed client for the local HTTP API (global fetch, Node 20+). Error
 * bodies become SyncmeshError(code, message, status); a node that cannot be
 * reached becomes NODE_UNREACHABLE.
 */
import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { Readable, Transform } from 'node:stream'
import type { TransformCallback } from 'node:stream'
import { deadline } from '../core/deadline.js'
import { SyncmeshError } from '../core/errors.js'
import type {
  ChangesOptions, ConflictRecord, DryRunReport, FeedLine, JsonObject, MeshKeyInfo, NodeStatus, PeerInfo, Platform, RecordPage, Rule, RulePatch, RuleSpec,
  StoredRecord, TransformErrorRecord
} from '../core/types.js'

export interface Health {
  ok: boolean
  peerId: string
  name: string
}

export interface ImportProgress {
  /** Bytes sent so far. */
  bytes: number
  /** Newlines sent so far (≈ records). */
  lines: number
  /** Size of the file when known. */
  totalBytes?: number
}

export interface ApiClientOptions {
  /** Per-request timeout in ms for everything but imports. @default 60000 */
  timeoutMs?: number
}

type Method = 'GET' | 'PUT' | 'POST' | 'PATCH' | 'DELETE'

interface RequestOptions {
  json?: unknown
  body?: Readable
  contentType?: string
  query?: Record<string, string | number | undefined>
  /** @default true */
  timeout?: boolean
  signal?: AbortSignal
}

const enc = encodeURIComponent

function describeCause (err: unknown): string {
  const cause = (err as { cause?: unknown })?.cause
  if (cause instanceof AggregateError && cause.errors.length > 0) return describeCause({ cause: cause.errors[0] })
  if (cause instanceof Error) {
    const code = (cause as NodeJS.ErrnoException).code
    return code != null && !cause.message.includes(code) ? `${cause.message} (${code})` : cause.message
  }
  return err instanceof Error ? err.message : String(err)
}

export class ApiClient {
  readonly url: string
  readonly #token: string
  readonly #timeoutMs: number

  constructor (url: string, token: string, options: ApiClientOptions = {}) {
    let parsed: URL
    try {
      parsed = new URL(url)
    } catch {
      throw new SyncmeshError('INVALID_API_URL', `"${url}" is not a URL; pass the node's API URL, e.g. --api http://127.0.0.1:7070`, 400)
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw new SyncmeshError('INVALID_API_URL', `"${url}" is not an http(s) URL; pass e.g. --api http://127.0.0.1:7070`, 400)
    }
    this.url = parsed.origin + parsed.pathname.replace(/\/+$/, '')
    this.#token = token
    this.#timeoutMs = options.timeoutMs ?? 60_000
  }

  // -- node ---------------------------------------------------------------

  async health (): Promise<Health> {
    return await this.#json('GET', '/v1/health')
  }

  async status (): Promise<NodeStatus> {
    return await this.#json('GET', '/v1/status')
  }

  /** Replace the full or the read-only API token of the node (needs the full token); returns the new one. */
  async rotateToken (kind: 'full' | 'read-only'): Promise<{ kind: 'full' | 'read-only', token: string }> {
    return await this.#json('POST', '/v1/tokens/rotate', { json: { kind } })
  }

  /** Names of the collections that hold records on the node. */
  async collections (): Promise<{ collections: string[] }> {
    return await this.#json('GET', '/v1/collections')
  }

  /** Prometheus text. */
  async metrics (): Promise<string> {
    const res = await this.#request('GET', '/metrics')
    return await res.text()
  }

  // -- records ------------------------------------------------------------

  async listRecords (collection: string, options: { after?: string, limit?: number } = {}): Promise<RecordPage> {
    return await this.#json('GET', `/v1/collections/${enc(collection)}/records`, { query: { after: options.after, limit: options.limit } })
  }

  /** Every record of a collection, page by page. */
  async * iterateRecords (collection: string, options: { pageSize?: number } = {}): AsyncGenerator<StoredRecord> {
    let after: string | undefined
    do {
      const page = await this.listRecords(collection, { ...(after != null ? { after } : {}), limit: options.pageSize ?? 1000 })
      yield * page.records
      after = page.next
    } while (after != null)
  }

  /** Throws NOT_FOUND (404) when there is no such record. */
  async getRecord (collection: string, id: string): Promise<StoredRecord> {
    return await this.#json('GET', `/v1/collections/${enc(collection)}/records/${enc(id)}`)
  }

  async putRecord (collection: string, id: string, value: JsonObject): Promise<StoredRecord> {
    return await this.#json('PUT', `/v1/collections/${enc(collection)}/records/${enc(id)}`, { json: value })
  }

  /** Throws NOT_FOUND (404) when there was no live record. */
  async deleteRecord (collection: string, id: string): Promise<{ deleted: true }> {
    return await this.#json('DELETE', `/v1/collections/${enc(collection)}/records/${enc(id)}`)
  }

  /** Stream NDJSON lines {"id","value"} from a readable (bounded memory). */
  async importStream (collection: string, source: Readable, onProgress?: (progress: ImportProgress) => void, totalBytes?: number): Promise<{ imported: number }> {
    const progress: ImportProgress = { bytes: 0, lines: 0, ...(totalBytes != null ? { totalBytes } : {}) }
    const counter = new Transform({
      transform (chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
        progress.bytes += chunk.length
        let i = -1
        while ((i = chunk.indexOf(10, i + 1)) !== -1) progress.lines++
        onProgress?.(progress)
        callback(null, chunk)
      }
    })
    source.on('error', (err) => counter.destroy(err))
    source.pipe(counter)
    try {
      return await this.#json('POST', `/v1/collections/${enc(collection)}/import`, {
        body: counter,
        contentType: 'application/x-ndjson',
        timeout: false
      })
    } finally {
      source.unpipe(counter)
      source.destroy()
    }
  }

  /** Stream an NDJSON file to the node. */
  async importFile (collection: string, path: string, onProgress?: (progress: ImportProgress) => void): Promise<{ imported: number }> {
    let size: number
    try {
      const info = await stat(path)
      if (!info.isFile()) throw new SyncmeshError('FILE_NOT_FOUND', `${path} is not a file`, 400)
      size = info.size
    } catch (err) {
      if (err instanceof SyncmeshError) throw err
      throw new SyncmeshError('FILE_NOT_FOUND', `cannot read ${path}: ${(err as Error).message}`, 400)
    }
    return await this.importStream(collection, createReadStream(path), onProgress, size)
  }

  /** Same as importFile. */
  async import (collection: string, path: string, onProgress?: (progress: ImportProgress) => void): Promise<{ imported: number }> {
    return await this.importFile(collection, path, onProgress)
  }

  // -- peers --------------------------------------------------------------

  async listPeers (): Promise<PeerInfo[]> {
    return await this.#json('GET', '/v1/peers')
  }

  /** Dial the address and prove the mesh key over it; `save` keeps the address even when that fails. */
  async addPeer (multiaddr: string, options: { save?: boolean } = {}): Promise<PeerInfo> {
    return await this.#json('POST', '/v1/peers', { json: options.save === true ? { multiaddr, save: true } : { multiaddr } })
  }

  async removePeer (peerId: string): Promise<{ removed: true }> {
    return await this.#json('DELETE', `/v1/peers/${enc(peerId)}`)
  }

  // -- platforms ----------------------------------------------------------

  async listPlatforms (): Promise<Platform[]> {
    return await this.#json('GET', '/v1/platforms')
  }

  async addPlatform (platform: Omit<Platform, 'addrs'> & { addrs?: string[] }): Promise<Platform> {
    return await this.#json('POST', '/v1/platforms', { json: platform })
  }

  async removePlatform (name: string): Promise<{ removed: true }> {
    return await this.#json('DELETE', `/v1/platforms/${enc(name)}`)
  }

  async revokePlatform (name: string, options: { purge?: boolean } = {}): Promise<Platform> {
    return await this.#json('POST', `/v1/platforms/${enc(name)}/revoke`, { json: options.purge === true ? { purge: true } : {} })
  }

  // -- rules --------------------------------------------------------------

  async listRules (): Promise<Rule[]> {
    return await this.#json('GET', '/v1/rules')
  }

  /** `force`: even when the rule names a platform the registry does not have (else UNKNOWN_PLATFORM). */
  async addRule (spec: RuleSpec, options: { dryRun?: boolean, force?: boolean } = {}): Promise<Rule> {
    return await this.#json('POST', '/v1/rules', { json: { ...spec, ...(options.dryRun === true ? { dryRun: true } : {}), ...(options.force === true ? { force: true } : {}) } })
  }

  /** What adding the rule would do on each target (nothing is written). */
  async dryRunRule (spec: RuleSpec): Promise<DryRunReport> {
    return await this.#json('POST', '/v1/rules', { json: { ...spec, dryRun: true } })
  }

  /** Throws NOT_FOUND (404). */
  async getRule (id: string): Promise<Rule> {
    return await this.#json('GET', `/v1/rules/${enc(id)}`)
  }

  /** Change a rule (null removes a field); its targets re-evaluate the source data. */
  async updateRule (id: string, patch: RulePatch, options: { force?: boolean } = {}): Promise<Rule> {
    return await this.#json('PATCH', `/v1/rules/${enc(id)}`, { json: options.force === true ? { ...patch, force: true } : patch })
  }

  /** Pause a rule on all its targets (they apply nothing from it until it is resumed). */
  async pauseRule (id: string): Promise<Rule> {
    return await this.#json('POST', `/v1/rules/${enc(id)}/pause`)
  }

  /** Resume a paused rule: its targets catch up from where they stopped. */
  async resumeRule (id: string): Promise<Rule> {
    return await this.#json('POST', `/v1/rules/${enc(id)}/resume`)
  }

  async dryRunUpdate (id: string, patch: RulePatch): Promise<DryRunReport> {
    return await this.#json('PATCH', `/v1/rules/${enc(id)}`, { json: { ...patch, dryRun: true } })
  }

  async ruleConflicts (id: string, limit?: number): Promise<{ total: number, conflicts: ConflictRecord[] }> {
    return await this.#json('GET', `/v1/rules/${enc(id)}/conflicts`, { query: { limit } })
  }

  async ruleErrors (id: string, limit?: number): Promise<{ total: number, errors: TransformErrorRecord[] }> {
    return await this.#json('GET', `/v1/rules/${enc(id)}/errors`, { query: { limit } })
  }

  /** The changes feed, line by line (streamed; with `follow` it runs until `signal` aborts). */
  async * changes (options: Omit<ChangesOptions, 'heartbeatMs'> & { heartbeatSeconds?: number } = {}): AsyncGenerator<FeedLine> {
    const res = await this.#request('GET', '/v1/changes', {
      query: {
        since: options.since,
        collection: options.collection,
        limit: options.limit,
        follow: options.follow === true ? 'true' : undefined,
        heartbeat: options.heartbeatSeconds
      },
      timeout: false,
      ...(options.signal !== undefined ? { signal: options.signal } : {})
    })
    if (res.body == null) return
    const decoder = new TextDecoder()
    let pending = ''
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        pending += decoder.decode(chunk, { stream: true })
        let nl: number
        while ((nl = pending.indexOf('\n')) !== -1) {
          const line = pending.slice(0, nl).trim()
          pending = pending.slice(nl + 1)
          if (line !== '') yield JSON.parse(line) as FeedLine
        }
      }
    } catch (err) {
      if (options.signal?.aborted === true) return
      throw new SyncmeshError('NODE_UNREACHABLE', `the changes feed of ${this.url} broke off: ${(err as Error).message}; resume with --since the last cursor`, 503, { cause: err })
    }
    if (pending.trim() !== '') yield JSON.parse(pending) as FeedLine
  }

  async removeRule (id: string): Promise<{ removed: true }> {
    return await this.#json('DELETE', `/v1/rules/${enc(id)}`)
  }

  // -- mesh keys ----------------------------------------------------------

  /** Fingerprints of the mesh keys the node uses. */
  async meshKeys (): Promise<MeshKeyInfo> {
    return await this.#json('GET', '/v1/keys')
  }

  /** Make the node re-read DATA_DIR/keyring.json (as SIGHUP does). */
  async reloadKeys (): Promise<MeshKeyInfo> {
    return await this.#json('POST', '/v1/keys/reload')
  }

  // -- plumbing -----------------------------------------------------------

  async #json<T> (method: Method, path: string, options: RequestOptions = {}): Promise<T> {
    const res = await this.#request(method, path, options)
    const text = await res.text()
    try {
      return JSON.parse(text) as T
    } catch {
      throw new SyncmeshError('BAD_RESPONSE', `the node at ${this.url} answered ${method} ${path} with something that is not JSON; is ${this.url} a syncmesh API?`, 502)
    }
  }

  async #request (method: Method, path: string, options: RequestOptions = {}): Promise<Response> {
    const url = new URL(this.url + path)
    for (const [key, value] of Object.entries(options.query ?? {})) {
      if (value !== undefined) url.searchParams.set(key, String(value))
    }
    const headers: Record<string, string> = {
      authorization: `Bearer ${this.#token}`,
      accept: 'application/json'
    }
    let body: RequestInit['body'] | undefined
    if (options.json !== undefined) {
      headers['content-type'] = 'application/json'
      body = JSON.stringify(options.json)
    } else if (options.body != null) {
      headers['content-type'] = options.contentType ?? 'application/octet-stream'
      // undici reads async iterables with backpressure (Readable.toWeb may not on Node 20)
      body = options.body as unknown as ReadableStream
    }
    const init: RequestInit & { duplex?: 'half' } = { method, headers }
    if (body !== undefined) init.body = body
    if (options.body != null) init.duplex = 'half'
    // the timer is not cleared: the answer's body may still be read under it (it is unref'd)
    if (options.timeout !== false) init.signal = deadline(this.#timeoutMs, options.signal).signal
    else if (options.signal !== undefined) init.signal = options.signal

    let res: Response
    try {
      res = await fetch(url, init)
    } catch (err) {
      if ((err as Error)?.name === 'TimeoutError') {
        throw new SyncmeshError('TIMEOUT', `the node at ${this.url} did not answer ${method} ${path} within ${Math.round(this.#timeoutMs / 1000)}s; it may be overloaded, check its log`, 504)
      }
      if (err instanceof SyncmeshError) throw err
      // an upload stream that failed locally (e.g. unreadable file)
      const cause = (err as { cause?: unknown })?.cause
      if (cause instanceof SyncmeshError) throw cause
      if (cause instanceof Error && cause.message === 'bad port') {
        throw new SyncmeshError('INVALID_API_URL', `cannot use ${this.url}: fetch refuses port ${new URL(this.url).port} (a blocked port in the fetch standard); serve the API on another port, e.g. --api 127.0.0.1:7070`, 400, { cause: err })
      }
      throw new SyncmeshError('NODE_UNREACHABLE', `cannot reach the node at ${this.url}: ${describeCause(err)}; is it running?`, 503, { cause: err })
    }
    if (res.ok) return res
    throw await this.#errorFrom(res, method, path)
  }

  async #errorFrom (res: Response, method: Method, path: string): Promise<SyncmeshError> {
    let text = ''
    try {
      text = await res.text()
    } catch {}
    try {
      const body = JSON.parse(text) as { error?: { code?: unknown, message?: unknown } }
      const code = body?.error?.code
      const message = body?.error?.message
      if (typeof code === 'string' && typeof message === 'string') return new SyncmeshError(code, message, res.status)
    } catch {}
    return new SyncmeshError(`HTTP_${res.status}`, `the node at ${this.url} answered ${method} ${path} with HTTP ${res.status} ${res.statusText}`.trimEnd(), res.status)
  }
}
