/**
 * Real node processes for the demo, the benchmarks and the end-to-end tests:
 * each node is `node dist/src/cli/bin.cjs start --json` in its own data
 * directory, on 127.0.0.1 with port 0, driven through its HTTP API.
 */
import { spawn } from 'node:child_process'
import { request as httpRequest } from 'node:http'
import type { ChildProcess } from 'node:child_process'
import { appendFileSync, existsSync, readFileSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { Readable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { createServer } from 'node:net'

function findRoot (): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (;;) {
    const pkg = join(dir, 'package.json')
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'syncmesh') return dir
    const up = dirname(dir)
    if (up === dir) throw new Error('cannot find the syncmesh package root')
    dir = up
  }
}

export const ROOT = findRoot()
export let CLI = join(ROOT, 'dist', 'src', 'cli', 'bin.cjs')

/** Run nodes and CLI commands from another build of the CLI (e.g. a snapshot of dist/ that a concurrent rebuild cannot change). */
export function useCli (path: string): void {
  CLI = path
}

export interface CliResult {
  code: number
  stdout: string
  stderr: string
}

/** Run one CLI command to completion. */
export async function runCli (args: string[], options: { input?: string, env?: NodeJS.ProcessEnv, timeoutMs?: number } = {}): Promise<CliResult> {
  return await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...options.env }, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code: code ?? -1, stdout, stderr })
    })
    child.stdin.end(options.input ?? '')
  })
}

/** A TCP port on 127.0.0.1 that was free a moment ago (listened on, then closed). */
export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port
      srv.close(() => resolve(port))
    })
  })
}

export async function tempDir (prefix = 'syncmesh-'): Promise<string> {
  return await mkdtemp(join(tmpdir(), prefix))
}

export interface Ready {
  event: 'ready'
  peerId: string
  multiaddrs: string[]
  api: string
}

export class NodeProcess {
  readonly dir: string
  readonly name: string
  key: string
  child?: ChildProcess
  ready?: Ready
  token = ''
  stderr = ''
  private exited?: Promise<number | null>

  constructor (dir: string, name: string, key: string) {
    this.dir = dir
    this.name = name
    this.key = key
  }

  /** `syncmesh init` in a new temp dir. */
  static async create (name: string, key: string, options: { region?: string, parent?: string } = {}): Promise<NodeProcess> {
    const dir = join(options.parent ?? await tempDir(), name)
    const res = await runCli(['init', '--data', dir, '--name', name, ...(options.region !== undefined ? ['--region', options.region] : []), '--json'])
    if (res.code !== 0) throw new Error(`init ${name} failed: ${res.stderr}`)
    return new NodeProcess(dir, name, key)
  }

  get api (): string {
    if (this.ready === undefined) throw new Error(`${this.name} is not running`)
    return this.ready.api
  }

  get multiaddr (): string {
    if (this.ready === undefined) throw new Error(`${this.name} is not running`)
    return this.ready.multiaddrs[0]
  }

  get peerId (): string {
    if (this.ready === undefined) throw new Error(`${this.name} is not running`)
    return this.ready.peerId
  }

  /**
   * Start and wait for the ready line. `options.env` is added to the child's
   * environment (e.g. SYNCMESH_LOG_LEVEL); `options.nodeArgs` go to node
   * itself, before the CLI (e.g. --cpu-prof); `options.stdoutFile` gets a
   * copy of everything the node prints on stdout (V8's `--trace-gc*` lines).
   * `options.listen` and `options.api` replace the loopback addresses;
   * `options.wrap` is a command the node runs under, e.g.
   * `['ip', 'netns', 'exec', NS]` (it must exec node, so that the child's pid
   * is the node's); `options.logFile` gets a copy of the node's log (stderr);
   * `options.readyTimeoutMs` (default 30 s) bounds the wait for the ready line.
   * `options.ownGroup` starts the node in a process group (and session) of
   * its own: a node stopped with SIGSTOP then gets no SIGHUP and SIGCONT from
   * the kernel when a process of the caller's group exits while that group
   * is orphaned (a caller started in the background); the caller must stop it.
   */
  async start (extra: string[] = [], options: { env?: NodeJS.ProcessEnv, nodeArgs?: string[], stdoutFile?: string, listen?: string, api?: string, wrap?: string[], logFile?: string, readyTimeoutMs?: number, ownGroup?: boolean } = {}): Promise<Ready> {
    const args = [...(options.nodeArgs ?? []), CLI, 'start', '--data', this.dir, '--listen', options.listen ?? '/ip4/127.0.0.1/tcp/0', '--api', options.api ?? '127.0.0.1:0', '--json', ...extra]
    const wrap = options.wrap ?? []
    const child = spawn(wrap.length > 0 ? wrap[0] : process.execPath, wrap.length > 0 ? [...wrap.slice(1), process.execPath, ...args] : args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: options.ownGroup === true,
      env: { ...process.env, SYNCMESH_KEY: this.key, SYNCMESH_LOG_LEVEL: process.env.SYNCMESH_LOG_LEVEL ?? 'info', ...options.env }
    })
    this.child = child
    this.stderr = ''
    child.stderr?.on('data', (d: Buffer) => {
      if (process.env.SYNCMESH_NODE_LOG_DIR !== undefined) appendFileSync(join(process.env.SYNCMESH_NODE_LOG_DIR, this.name + '.log'), d)
      if (options.logFile !== undefined) appendFileSync(options.logFile, d)
      this.stderr += d.toString()
      if (this.stderr.length > 2_000_000) this.stderr = this.stderr.slice(-1_000_000)
    })
    this.exited = new Promise(resolve => child.on('exit', (code) => resolve(code)))
    const stdoutFile = options.stdoutFile
    if (stdoutFile !== undefined) child.stdout?.on('data', (d: Buffer) => appendFileSync(stdoutFile, d))
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
    const ready = await new Promise<Ready>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name} did not print its ready line in time; stderr:\n${this.stderr.slice(-4000)}`)), options.readyTimeoutMs ?? 30_000)
      lines.on('line', (line) => {
        try {
          const msg = JSON.parse(line) as Ready
          if (msg.event === 'ready') {
            clearTimeout(timer)
            resolve(msg)
          }
        } catch {}
      })
      void this.exited?.then((code) => {
        clearTimeout(timer)
        reject(new Error(`${this.name} exited with ${String(code)} before it was ready; stderr:\n${this.stderr.slice(-4000)}`))
      })
    })
    this.ready = ready
    const api = JSON.parse(await readFile(join(this.dir, 'api.json'), 'utf8')) as { url: string, token: string }
    this.token = api.token
    return ready
  }

  /** SIGTERM and wait for a clean exit. */
  async stop (): Promise<number | null> {
    if (this.child === undefined || this.child.exitCode !== null) return this.child?.exitCode ?? null
    this.child.kill('SIGTERM')
    const code = await this.exited
    this.child = undefined
    return code ?? null
  }

  /** kill -9: no chance to clean up. */
  async kill (): Promise<void> {
    if (this.child === undefined || this.child.exitCode !== null) return
    this.child.kill('SIGKILL')
    await this.exited
    this.child = undefined
  }

  get pid (): number | undefined {
    return this.child?.pid
  }

  /** SIGHUP: the node re-reads DIR/keyring.json (mesh key rotation). */
  hup (): void {
    if (this.child === undefined || this.child.exitCode !== null) throw new Error(`${this.name} is not running`)
    this.child.kill('SIGHUP')
  }

  /** How many lines of the node's log (stderr, since its last start) match `pattern`. */
  logCount (pattern: RegExp): number {
    let n = 0
    for (const line of this.stderr.split('\n')) if (pattern.test(line)) n++
    return n
  }

  async request<T = unknown> (method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<{ status: number, body: T }> {
    const res = await fetch(this.api + path, {
      method,
      headers: { authorization: `Bearer ${this.token}`, ...(body !== undefined ? { 'content-type': contentType } : {}) },
      ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {})
    })
    const text = await res.text()
    let parsed: unknown = text
    try { parsed = JSON.parse(text) } catch {}
    return { status: res.status, body: parsed as T }
  }

  async put (collection: string, id: string, value: unknown): Promise<void> {
    const r = await this.request('PUT', `/v1/collections/${encodeURIComponent(collection)}/records/${encodeURIComponent(id)}`, value)
    if (r.status !== 200) throw new Error(`put failed: ${r.status} ${JSON.stringify(r.body)}`)
  }

  async get (collection: string, id: string): Promise<Record<string, unknown> | undefined> {
    const r = await this.request<{ value: Record<string, unknown> }>('GET', `/v1/collections/${encodeURIComponent(collection)}/records/${encodeURIComponent(id)}`)
    if (r.status === 404) return undefined
    if (r.status !== 200) throw new Error(`get failed: ${r.status} ${JSON.stringify(r.body)}`)
    return r.body.value
  }

  async del (collection: string, id: string): Promise<void> {
    const r = await this.request('DELETE', `/v1/collections/${encodeURIComponent(collection)}/records/${encodeURIComponent(id)}`)
    if (r.status !== 200) throw new Error(`delete failed: ${r.status} ${JSON.stringify(r.body)}`)
  }

  /** Every live record of a collection, id → value, paging through the API. */
  async all (collection: string): Promise<Map<string, unknown>> {
    const out = new Map<string, unknown>()
    let after: string | undefined
    for (;;) {
      const q = `limit=1000${after !== undefined ? `&after=${encodeURIComponent(after)}` : ''}`
      const r = await this.request<{ records: Array<{ id: string, value: unknown }>, next?: string }>('GET', `/v1/collections/${encodeURIComponent(collection)}/records?${q}`)
      if (r.status !== 200) throw new Error(`list failed: ${r.status} ${JSON.stringify(r.body)}`)
      for (const rec of r.body.records) out.set(rec.id, rec.value)
      if (r.body.next === undefined) return out
      after = r.body.next
    }
  }

  async count (collection: string): Promise<number> {
    return (await this.all(collection)).size
  }

  async importNdjson (collection: string, ndjson: string): Promise<number> {
    const r = await this.request<{ imported: number }>('POST', `/v1/collections/${encodeURIComponent(collection)}/import`, ndjson, 'application/x-ndjson')
    if (r.status !== 200) throw new Error(`import failed: ${r.status} ${JSON.stringify(r.body)}`)
    return r.body.imported
  }

  /**
   * Streamed NDJSON import: the body is sent as `source` yields it (with
   * backpressure), so a large import never exists as one string.
   */
  async importStream (collection: string, source: AsyncIterable<string | Uint8Array> | Iterable<string | Uint8Array>): Promise<number> {
    const url = new URL(`${this.api}/v1/collections/${encodeURIComponent(collection)}/import`)
    const body = Readable.from(source, { objectMode: false })
    return await new Promise<number>((resolve, reject) => {
      const req = httpRequest(url, {
        method: 'POST',
        headers: { authorization: `Bearer ${this.token}`, 'content-type': 'application/x-ndjson', 'transfer-encoding': 'chunked' }
      }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('error', reject)
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          if (res.statusCode !== 200) {
            reject(new Error(`import failed: ${String(res.statusCode)} ${text}`))
            return
          }
          try {
            resolve((JSON.parse(text) as { imported: number }).imported)
          } catch (err) {
            reject(err)
          }
        })
      })
      req.on('error', reject)
      body.on('error', (err) => req.destroy(err))
      body.pipe(req)
    })
  }

  async addPeer (multiaddr: string): Promise<void> {
    const r = await this.request('POST', '/v1/peers', { multiaddr })
    if (r.status !== 201 && r.status !== 200) throw new Error(`peer add failed: ${r.status} ${JSON.stringify(r.body)}`)
  }

  /** Rules of scripted clusters may name platforms that join later: forced unless `spec.force` says otherwise. */
  async addRule (spec: Record<string, unknown>): Promise<{ id: string }> {
    const r = await this.request<{ id: string }>('POST', '/v1/rules', { force: true, ...spec })
    if (r.status !== 201 && r.status !== 200) throw new Error(`rule add failed: ${r.status} ${JSON.stringify(r.body)}`)
    return r.body
  }

  /** Wait until this node's registry lists the platforms `names`. */
  async knows (names: string[], timeoutMs = 30_000): Promise<void> {
    await waitFor(async () => {
      const r = await this.request<Array<{ name: string }>>('GET', '/v1/platforms')
      return names.every(n => r.body.some(p => p.name === n))
    }, `${this.name} to know the platforms ${names.join(', ')}`, timeoutMs)
  }

  async status (): Promise<Record<string, any>> {
    const r = await this.request<Record<string, any>>('GET', '/v1/status')
    return r.body
  }

  async cleanup (): Promise<void> {
    await this.kill()
    await rm(dirname(this.dir), { recursive: true, force: true })
  }
}

/** Poll until `check` holds; throws with `what` on timeout. */
export async function waitFor (check: () => Promise<boolean> | boolean, what: string, timeoutMs = 60_000, intervalMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < deadline) {
    try {
      if (await check()) return
    } catch (err) {
      last = err
    }
    await new Promise(resolve => setTimeout(resolve, intervalMs))
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last !== undefined ? ` (last error: ${(last as Error).message})` : ''}`)
}

/** NDJSON of n records {"id","value"} with ~250-byte values. */
export function makeNdjson (n: number, prefix = 'r', start = 0): string {
  const lines: string[] = []
  const filler = 'lorem ipsum dolor sit amet '.repeat(7)
  for (let i = start; i < start + n; i++) {
    lines.push(JSON.stringify({ id: `${prefix}${String(i).padStart(8, '0')}`, value: { n: i, title: `record ${i}`, status: 'published', body: filler } }))
  }
  return lines.join('\n') + '\n'
}
