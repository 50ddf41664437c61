/**
 * `npm run soak`: convergence under faults, with real node processes.
 *
 *   npm run soak -- --seed N --duration S [--nodes 5] [--rate W] [--settle S] [--streams]
 *   npm run soak -- --replay test/soak/seeds/FILE.json
 *
 * Nodes n0..nN-1 in three regions (eu, us, ap), peered as a ring plus one
 * chord (so changes travel several hops), with discovery off. Rules: every
 * node's `events` to every other node (`nI:events → *:events`), and one mirror
 * rule (`n0:events → region=ap:mirror`). As root, every node runs in its own
 * network namespace (scripts/lib/soak-net.ts); otherwise on 127.0.0.1, where
 * a partition removes the peers across the cut instead and slow links are
 * skipped. With --streams every node carries the rules by rule streams
 * (`syncmesh start --streams`).
 *
 * For `duration` seconds the soak writes through the HTTP API at `rate`
 * writes/s in all (creates, updates and deletes of each node's own ids, and
 * updates of 12 ids every node writes), keeping every write and its outcome,
 * while a seeded schedule (scripts/lib/soak-schedule.ts) kills and restarts
 * nodes (one in the middle of an import), splits the mesh, isolates a node,
 * SIGSTOPs one and slows one's link. Then it heals everything, stops writing,
 * and polls until every node holds what the writes say it must
 * (scripts/lib/soak-model.ts) or `settle` seconds pass. It reads every
 * node's log for offences, bans and protocol errors between these honest
 * nodes, and prints ONE JSON line; the exit status is 1 on any violation.
 * A failing seed is saved under test/soak/seeds/ (unless --no-save) so that
 * it can be replayed.
 */
import '../src/polyfill.js'
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import type { WriteStream } from 'node:fs'
import { join, resolve } from 'node:path'
import { freePort, NodeProcess, ROOT, tempDir, useCli, waitFor } from './lib/cluster.js'
import { RssSampler } from './bench/proc.js'
import { removeSnapshot, snapshotBuild } from './bench/snapshot.js'
import { History, check } from './lib/soak-model.js'
import type { CheckResult, Held, NodeView, Outcome, Version, WriteOp } from './lib/soak-model.js'
import { NetnsMesh, canUseNetns, removeStale } from './lib/soak-net.js'
import { describeFault, makeSchedule, prng } from './lib/soak-schedule.js'
import type { Fault, Schedule } from './lib/soak-schedule.js'

const USAGE = 'usage: npm run soak -- --seed N --duration S [--nodes 5] [--rate 60] [--settle 120] [--replay FILE] [--local] [--streams] [--keep] [--no-save] [--verbose]'

interface Options {
  seed: number
  duration: number
  nodes: number
  rate: number
  settle: number
  replay?: string
  local: boolean
  streams: boolean
  keep: boolean
  save: boolean
  verbose: boolean
}

function parseArgs (argv: string[]): Options {
  const o: Options = { seed: Date.now() % 1_000_000, duration: 240, nodes: 5, rate: 60, settle: 120, local: false, streams: false, keep: false, save: true, verbose: false }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const num = (): number => {
      const v = Number(argv[++i])
      if (!Number.isFinite(v) || v < 0) throw new Error(`${a} needs a number\n${USAGE}`)
      return v
    }
    if (a === '--seed') o.seed = Math.floor(num())
    else if (a === '--duration') o.duration = num()
    else if (a === '--nodes') o.nodes = Math.floor(num())
    else if (a === '--rate') o.rate = num()
    else if (a === '--settle') o.settle = num()
    else if (a === '--replay') o.replay = argv[++i]
    else if (a === '--local') o.local = true
    else if (a === '--streams') o.streams = true
    else if (a === '--keep') o.keep = true
    else if (a === '--no-save') o.save = false
    else if (a === '--verbose') o.verbose = true
    else throw new Error(`unknown argument ${a}\n${USAGE}`)
  }
  if (o.nodes < 3) throw new Error('--nodes must be at least 3')
  if (o.duration < 20) throw new Error('--duration must be at least 20 s')
  return o
}

const REGIONS = ['eu', 'us', 'ap']
const SHARED_IDS = Array.from({ length: 12 }, (_, i) => `shared-${String(i).padStart(2, '0')}`)
const COLLECTION = 'events'
const MIRROR = 'mirror'
const IMPORT_LINES = 3000
const MAX_IN_FLIGHT = 16
const WRITE_TIMEOUT_MS = 20_000
/** A node's start on a loaded 2-core machine has taken 25 s. */
const READY_TIMEOUT_MS = 90_000
const PAD = 'soak '.repeat(12)

/** The first line of a start failure that says what failed (the node's own error line, when it printed one). */
function firstError (message: string): string {
  const lines = message.split('\n')
  const own = lines.find(l => /error|Error/.test(l) && !/before it was ready/.test(l))
  return (own ?? lines[0]).slice(0, 300)
}

function percentile (sorted: number[], p: number): number {
  if (sorted.length === 0) return 0
  return Math.round(sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))])
}

/** `p`, or an error after `ms` (a hung node must not hang the soak). */
async function withTimeout<T> (p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`${what} took more than ${ms} ms`)), ms) })
  try {
    return await Promise.race([p, timeout])
  } finally {
    clearTimeout(timer)
  }
}

const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))


type NodeState = 'up' | 'down' | 'paused' | 'quiescing'

interface SoakNode {
  i: number
  name: string
  proc: NodeProcess
  state: NodeState
  /** The soak itself is stopping it (kill, final stop): an exit then is expected. */
  expectExit: boolean
  inFlight: number
  busy: Set<string>
  live: string[]
  created: number
  imports: number
  listen: string
  api: string
  wrap: string[]
  logFile: string
  peerId: string
}

interface Exit { node: string, code: number | null, signal: string | null, atS: number }

class Soak {
  readonly opts: Options
  readonly schedule: Schedule
  readonly history = new History()
  readonly nodes: SoakNode[] = []
  readonly exits: Exit[] = []
  readonly restartFailures: string[] = []
  readonly faultLog: Array<{ fault: string, startedS: number, result: string }> = []
  /** After the heal: what each node still lacked and how many peers it had open, about once a second. */
  readonly catchUp: Array<{ s: number, behind: Record<string, number>, connected: Record<string, number> }> = []
  readonly anomalies: string[] = []
  mesh?: NetnsMesh
  runDir = ''
  writesLog?: WriteStream
  t0 = 0
  setupStart = 0
  writing = false
  issued = 0
  skipped = 0
  /** ms of every acknowledged write. */
  readonly latencies: number[] = []
  /** Local mode: links (dialer, target) removed by a partition. */
  cut: Array<[number, number]> = []
  edges: Array<[number, number]> = []
  private readonly wrand: () => number

  constructor (opts: Options, schedule: Schedule) {
    this.opts = opts
    this.schedule = schedule
    this.wrand = prng((opts.seed ^ 0x5bd1e995) >>> 0)
  }

  get mode (): 'netns' | 'local' { return this.mesh !== undefined ? 'netns' : 'local' }

  now (): number { return (Date.now() - this.t0) / 1000 }

  log (msg: string): void {
    if (this.opts.verbose) process.stderr.write(`[soak ${this.t0 === 0 ? '-' : this.now().toFixed(1)}] ${msg}\n`)
  }

  // -- setup ----------------------------------------------------------------

  async setup (): Promise<void> {
    this.setupStart = Date.now()
    this.runDir = await tempDir('syncmesh-soak-')
    this.writesLog = createWriteStream(join(this.runDir, 'writes.ndjson'))
    const key = randomBytes(32).toString('hex')
    if (!this.opts.local && canUseNetns()) {
      removeStale()
      this.mesh = new NetnsMesh(this.opts.nodes)
      this.mesh.setup()
    }
    const procs = await Promise.all(Array.from({ length: this.opts.nodes }, async (_, i) => await NodeProcess.create(`n${i}`, key, { parent: this.runDir, region: REGIONS[i % REGIONS.length] })))
    for (let i = 0; i < this.opts.nodes; i++) {
      const name = `n${i}`
      const proc = procs[i]
      const m = this.mesh
      const node: SoakNode = {
        i,
        name,
        proc,
        state: 'down',
        expectExit: false,
        inFlight: 0,
        busy: new Set(),
        live: [],
        created: 0,
        imports: 0,
        listen: m !== undefined ? `/ip4/${m.meshAddr(i)}/tcp/4001` : `/ip4/127.0.0.1/tcp/${await freePort()}`,
        api: m !== undefined ? `${m.apiAddr(i)}:7070` : '127.0.0.1:0',
        wrap: m !== undefined ? ['ip', 'netns', 'exec', m.ns(i)] : [],
        logFile: join(this.runDir, `${name}.log`),
        peerId: ''
      }
      this.nodes.push(node)
    }
    await Promise.all(this.nodes.map(async n => await this.startNode(n)))
    // ring plus one chord: node i dials i+1; node 0 dials the node across
    for (let i = 0; i < this.nodes.length; i++) this.edges.push([i, (i + 1) % this.nodes.length])
    const across = Math.floor(this.nodes.length / 2)
    if (this.nodes.length >= 4) this.edges.push([0, across])
    for (const [a, b] of this.edges) await this.nodes[a].proc.addPeer(this.nodes[b].proc.multiaddr)
    for (const n of this.nodes) {
      await n.proc.addRule({ from: { platform: n.name, collection: COLLECTION }, to: { platform: '*', collection: COLLECTION } })
    }
    await this.nodes[0].proc.addRule({ from: { platform: 'n0', collection: COLLECTION }, to: { region: 'ap', collection: MIRROR }, mode: 'mirror' })
    const rules = this.nodes.length + 1
    for (const n of this.nodes) {
      await waitFor(async () => {
        const p = await n.proc.request<unknown[]>('GET', '/v1/platforms')
        const r = await n.proc.request<unknown[]>('GET', '/v1/rules')
        return p.body.length === this.nodes.length && r.body.length === rules
      }, `${n.name} to list ${this.nodes.length} platforms and ${rules} rules`, 60_000, 250)
    }
    this.log(`setup done (${this.mode}${this.mesh?.tc === true ? ', tc' : ''}), ${this.edges.length} links`)
  }

  async startNode (n: SoakNode): Promise<void> {
    n.expectExit = false
    const ready = await n.proc.start(['--target-peers', '0', ...(this.opts.streams ? ['--streams'] : [])], { listen: n.listen, api: n.api, wrap: n.wrap, logFile: n.logFile, readyTimeoutMs: READY_TIMEOUT_MS, ownGroup: true })
    n.peerId = ready.peerId
    const child = n.proc.child
    child?.on('exit', (code, signal) => {
      if (n.expectExit || n.proc.child !== child) return
      this.exits.push({ node: n.name, code, signal, atS: Math.round(this.now()) })
      n.state = 'down'
      n.proc.child = undefined
      this.log(`${n.name} exited on its own (${String(code)} ${String(signal)})`)
    })
    n.state = 'up'
  }

  async killNode (n: SoakNode): Promise<void> {
    n.expectExit = true
    n.state = 'down'
    const pid = n.proc.pid
    if (pid !== undefined) try { process.kill(pid, 'SIGCONT') } catch {}
    await n.proc.kill()
  }

  /** Start a node that was killed; returns how long it took to be ready (ms). */
  async restart (n: SoakNode): Promise<number> {
    const t = Date.now()
    try {
      await this.startNode(n)
      return Date.now() - t
    } catch (err) {
      this.restartFailures.push(`${n.name} at ${Math.round(this.now())}s: ${firstError((err as Error).message)}`)
      // one more try (the check needs the node), once the failed one is surely gone
      await this.killNode(n)
      await sleep(2000)
      await this.startNode(n)
      return Date.now() - t
    }
  }

  // -- writes ---------------------------------------------------------------

  async call (n: SoakNode, method: string, path: string, body?: string, contentType = 'application/json'): Promise<{ outcome: Outcome, status?: number, body?: any, error?: string }> {
    try {
      const res = await fetch(n.proc.api + path, {
        method,
        headers: { authorization: `Bearer ${n.proc.token}`, ...(body !== undefined ? { 'content-type': contentType } : {}) },
        ...(body !== undefined ? { body } : {}),
        signal: AbortSignal.timeout(WRITE_TIMEOUT_MS)
      })
      const text = await res.text()
      let parsed: unknown
      try { parsed = JSON.parse(text) } catch { parsed = text }
      if (res.status === 200 || res.status === 201) return { outcome: 'ack', status: res.status, body: parsed }
      if (res.status >= 400 && res.status < 500) return { outcome: 'refused', status: res.status, body: parsed, error: text.slice(0, 200) }
      return { outcome: 'unknown', status: res.status, error: text.slice(0, 200) }
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause
      if (cause?.code === 'ECONNREFUSED') return { outcome: 'refused', error: 'ECONNREFUSED' }
      return { outcome: 'unknown', error: `${(err as Error).name}: ${cause?.code ?? (err as Error).message}` }
    }
  }

  record (op: WriteOp, shared: boolean): void {
    this.history.add(op, shared)
    this.writesLog?.write(JSON.stringify(op) + '\n')
  }

  pick<T> (list: T[]): T {
    return list[Math.floor(this.wrand() * list.length)]
  }

  /** Issue one write on a node that can take it; false when none can. */
  writeOne (): boolean {
    const ready = this.nodes.filter(n => n.state === 'up' && n.inFlight < MAX_IN_FLIGHT)
    if (ready.length === 0) return false
    const n = this.pick(ready)
    const r = this.wrand()
    const free = n.live.filter(id => !n.busy.has(id))
    let kind: 'shared' | 'create' | 'update' | 'delete'
    if (r < 0.2) kind = 'shared'
    else if (r < 0.5 || free.length < 5) kind = 'create'
    else if (r < 0.85) kind = 'update'
    else kind = 'delete'
    let id: string
    if (kind === 'shared') id = this.pick(SHARED_IDS)
    else if (kind === 'create') id = `${n.name}-${String(n.created++).padStart(6, '0')}`
    else id = this.pick(free)
    if (kind !== 'shared' && n.busy.has(id)) return true
    const op: 'put' | 'del' = kind === 'delete' ? 'del' : 'put'
    const w = op === 'put' ? `${n.name}.${this.issued}` : undefined
    this.issued++
    const t = Math.round(this.now() * 1000) / 1000
    const path = `/v1/collections/${COLLECTION}/records/${encodeURIComponent(id)}`
    const body = op === 'put' ? JSON.stringify({ w, by: n.name, k: kind, pad: PAD }) : undefined
    n.inFlight++
    const sent = performance.now()
    if (kind !== 'shared') n.busy.add(id)
    if (kind === 'create') n.live.push(id)
    void this.call(n, op === 'put' ? 'PUT' : 'DELETE', path, body).then((res) => {
      let outcome = res.outcome
      if (res.outcome === 'ack') this.latencies.push(performance.now() - sent)
      // deleting what the node does not hold leaves it absent: the delete's effect holds
      if (op === 'del' && res.status === 404) {
        outcome = 'ack'
        const prev = this.history.allowed(id)
        if (prev.base !== null && !prev.allowed.has(null)) this.anomalies.push(`${t}s ${n.name} DELETE ${id}: 404 though its last acknowledged write ${prev.base} put it`)
      } else if (outcome === 'refused' && res.error !== 'ECONNREFUSED') {
        this.anomalies.push(`${t}s ${n.name} ${op} ${id}: ${String(res.status)} ${res.error ?? ''}`)
      }
      const version = outcome === 'ack' && op === 'put' ? (res.body as { version?: Version }).version : undefined
      this.record({ t, node: n.name, op, id, ...(w !== undefined ? { w } : {}), outcome, ...(version !== undefined ? { version } : {}), ...(res.error !== undefined ? { error: res.error } : {}) }, kind === 'shared')
      n.inFlight--
      if (kind === 'shared') return
      n.busy.delete(id)
      // an id is written again only once its last write's outcome is known, or fixed by a kill
      const settled = outcome !== 'unknown' || n.expectExit
      if (op === 'del' || !settled) n.live = n.live.filter(x => x !== id)
    })
    return true
  }

  async writeLoop (until: () => boolean): Promise<void> {
    const start = Date.now()
    let due = 0
    while (!until()) {
      const target = Math.floor((Date.now() - start) / 1000 * this.opts.rate)
      while (due < target) {
        due++
        if (!this.writeOne()) this.skipped++
      }
      await sleep(5)
    }
  }

  async drain (nodes: SoakNode[], timeoutMs = WRITE_TIMEOUT_MS + 2000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (nodes.some(n => n.inFlight > 0) && Date.now() < deadline) await sleep(20)
  }

  // -- faults ---------------------------------------------------------------

  async importAndKill (n: SoakNode, killAfterMs: number): Promise<string> {
    const k = n.imports++
    const lines: Array<{ id: string, w: string }> = []
    for (let j = 0; j < IMPORT_LINES; j++) lines.push({ id: `${n.name}-imp${k}-${String(j).padStart(5, '0')}`, w: `${n.name}.imp${k}.${j}` })
    const ndjson = lines.map(l => JSON.stringify({ id: l.id, value: { w: l.w, by: n.name, k: 'import', pad: PAD } })).join('\n') + '\n'
    const t = Math.round(this.now() * 1000) / 1000
    const started = Date.now()
    const imported = this.call(n, 'POST', `/v1/collections/${COLLECTION}/import`, ndjson, 'application/x-ndjson')
    await sleep(killAfterMs)
    const finished = await Promise.race([imported.then(() => true), sleep(0).then(() => false)])
    await this.killNode(n)
    const killed = Date.now()
    const res = await imported
    const settledMs = Date.now() - killed
    for (const l of lines) this.record({ t, node: n.name, op: 'put', id: l.id, w: l.w, outcome: res.outcome === 'refused' ? 'unknown' : res.outcome }, false)
    if (res.outcome === 'ack') this.history.counts.imported += IMPORT_LINES
    return `import ${res.outcome}${finished ? ' (finished before the kill)' : ''}, killed ${killed - started} ms after it began, request settled ${settledMs} ms after the kill`
  }

  /** Local mode: remove the links across a cut (the dialer forgets the peer, which closes the connection). */
  async cutLinks (inside: Set<number>): Promise<void> {
    for (const [a, b] of this.edges) {
      if (inside.has(a) === inside.has(b)) continue
      const r = await this.nodes[a].proc.request('DELETE', `/v1/peers/${this.nodes[b].peerId}`)
      if (r.status === 200) this.cut.push([a, b])
    }
  }

  async healNet (): Promise<void> {
    this.mesh?.heal()
    for (const [a, b] of this.cut.splice(0)) {
      if (this.nodes[a].state === 'down' || this.nodes[b].state === 'down') continue
      await this.nodes[a].proc.addPeer(this.nodes[b].proc.multiaddr).catch((err: Error) => this.anomalies.push(`re-adding peer n${b} on n${a}: ${err.message}`))
    }
  }

  async runFault (f: Fault): Promise<string> {
    const n = f.node !== undefined ? this.nodes[f.node] : undefined
    switch (f.kind) {
      case 'kill':
        if (n === undefined || n.state !== 'up') return 'skipped: node not up'
        await this.killNode(n)
        await sleep(f.dur * 1000)
        return `killed; restarted in ${await this.restart(n)} ms`
      case 'kill-import': {
        if (n === undefined || n.state !== 'up') return 'skipped: node not up'
        const r = await this.importAndKill(n, f.killAfterMs ?? 500)
        await sleep(f.dur * 1000)
        return `${r}; restarted in ${await this.restart(n)} ms`
      }
      case 'split':
        if (this.mesh !== undefined) this.mesh.split(f.side ?? [])
        else await this.cutLinks(new Set(f.side))
        await sleep(f.dur * 1000)
        await this.healNet()
        return 'split and healed'
      case 'isolate':
        if (n === undefined) return 'skipped'
        if (this.mesh !== undefined) this.mesh.isolate(n.i)
        else await this.cutLinks(new Set([n.i]))
        await sleep(f.dur * 1000)
        await this.healNet()
        return 'isolated and healed'
      case 'pause': {
        if (n === undefined || n.state !== 'up' || n.proc.pid === undefined) return 'skipped: node not up'
        n.state = 'quiescing'
        await this.drain([n])
        const pid = n.proc.pid
        process.kill(pid, 'SIGSTOP')
        n.state = 'paused'
        await sleep(f.dur * 1000)
        try { process.kill(pid, 'SIGCONT') } catch {}
        if (n.state === 'paused') n.state = 'up'
        return 'stopped and continued'
      }
      case 'slow':
        if (n === undefined || this.mesh?.slow(n.i) !== true) return 'skipped: no tc'
        await sleep(f.dur * 1000)
        await this.healNet()
        return 'slowed and healed'
    }
  }

  async faultLoop (): Promise<void> {
    for (const f of this.schedule.faults) {
      const wait = f.at * 1000 - (Date.now() - this.t0)
      if (wait > 0) await sleep(wait)
      const startedS = Math.round(this.now() * 10) / 10
      if (this.now() > this.opts.duration - 3) {
        // restarts on a loaded machine made the schedule late: the run ends on time instead
        this.faultLog.push({ fault: describeFault(f), startedS, result: 'skipped: the schedule ran late' })
        continue
      }
      this.log(`fault ${describeFault(f)}`)
      let result: string
      try {
        result = await this.runFault(f)
      } catch (err) {
        result = `error: ${(err as Error).message.split('\n')[0]}`
        this.anomalies.push(`fault ${describeFault(f)}: ${result}`)
      }
      this.faultLog.push({ fault: describeFault(f), startedS, result })
    }
  }

  /** Heal every fault that may still be in place: links, stopped and dead nodes. */
  async healAll (): Promise<void> {
    await this.healNet()
    for (const n of this.nodes) {
      if (n.proc.pid !== undefined) try { process.kill(n.proc.pid, 'SIGCONT') } catch {}
      if (n.state === 'paused' || n.state === 'quiescing') n.state = 'up'
      if (n.state === 'down' || n.proc.child === undefined) await this.restart(n).catch((err: Error) => this.restartFailures.push(`${n.name} at heal: ${firstError(err.message)}`))
    }
  }

  // -- checks ---------------------------------------------------------------

  async readView (n: SoakNode, collection: string): Promise<NodeView> {
    const view: NodeView = new Map()
    let after: string | undefined
    for (;;) {
      const q = `limit=1000${after !== undefined ? `&after=${encodeURIComponent(after)}` : ''}`
      const r = await n.proc.request<{ records: Array<{ id: string, value: { w?: string }, version?: Version }>, next?: string }>('GET', `/v1/collections/${collection}/records?${q}`)
      if (r.status !== 200) throw new Error(`${n.name}: listing ${collection} failed: ${r.status}`)
      for (const rec of r.body.records) {
        const held: Held = { w: rec.value.w ?? `?${JSON.stringify(rec.value).slice(0, 40)}`, value: rec.value }
        if (rec.version !== undefined) held.version = rec.version
        view.set(rec.id, held)
      }
      if (r.body.next === undefined) return view
      after = r.body.next
    }
  }

  /**
   * Polls every node's stored vector (`/v1/status` origins) every 200 ms until all nodes hold
   * the same seq for every origin; returns when that was first seen, or undefined at `until`.
   */
  async vectorsEqual (until: number, healedAt: number): Promise<number | undefined> {
    let nextTrace = 0
    while (Date.now() < until) {
      const at = Date.now()
      try {
        const states = await Promise.all(this.nodes.map(async n => {
          const s = await withTimeout(n.proc.status(), 10_000, `${n.name} status`)
          const v = new Map<string, number>()
          for (const o of s.origins as Array<{ origin: string, seq: number }>) v.set(o.origin, o.seq)
          const connected = (s.peers as Array<{ connected?: boolean }>).filter(p => p.connected === true).length
          return { v, connected }
        }))
        const vectors = states.map(s => s.v)
        const first = vectors[0]
        const same = first.size >= this.nodes.length && vectors.every(v => v.size === first.size && [...first].every(([o, seq]) => v.get(o) === seq))
        if (at >= nextTrace || same) {
          // where the time after the heal goes: entries each node still lacks (against the
          // newest seq any node holds, per origin) and its open connections, about once a second
          nextTrace = at + 1000
          const max = new Map<string, number>()
          for (const v of vectors) for (const [o, seq] of v) max.set(o, Math.max(max.get(o) ?? 0, seq))
          const behind: Record<string, number> = {}
          const connected: Record<string, number> = {}
          this.nodes.forEach((n, i) => {
            let lack = 0
            for (const [o, seq] of max) lack += seq - (vectors[i].get(o) ?? 0)
            behind[n.name] = lack
            connected[n.name] = states[i].connected
          })
          if (this.catchUp.length < 120) this.catchUp.push({ s: Math.round((at - healedAt) / 100) / 10, behind, connected })
          this.log(`catch-up ${((at - healedAt) / 1000).toFixed(1)} s: behind ${JSON.stringify(behind)}, connected ${JSON.stringify(connected)}`)
        }
        if (same) return at
      } catch {}
      await sleep(200)
    }
    return undefined
  }

  async checkOnce (): Promise<CheckResult> {
    const views = new Map<string, NodeView>()
    for (const n of this.nodes) views.set(n.name, await this.readView(n, COLLECTION))
    const targets = new Map<string, NodeView>()
    for (const n of this.nodes) if (REGIONS[n.i % REGIONS.length] === 'ap' && n.i !== 0) targets.set(n.name, await this.readView(n, MIRROR))
    return check(this.history, views, { source: 'n0', targets })
  }

  /** Offences, bans and protocol errors between the nodes, from their logs (all of them, across restarts). */
  readLogs (): Record<string, { count: number, firstS?: number, samples: string[] }> {
    const names = new Map(this.nodes.map(n => [n.peerId, n.name]))
    const out: Record<string, { count: number, firstS?: number, samples: string[] }> = {}
    const add = (kind: string, node: string, line: { time?: number, msg?: string }): void => {
      const e = out[kind] ?? (out[kind] = { count: 0, samples: [] })
      e.count++
      const at = line.time !== undefined ? Math.round((line.time - this.t0) / 100) / 10 : undefined
      if (at !== undefined && (e.firstS === undefined || at < e.firstS)) e.firstS = at
      if (e.samples.length < 3) {
        let msg = String(line.msg ?? '')
        for (const [id, name] of names) msg = msg.split(id).join(name)
        e.samples.push(`${node} @${String(at)}s: ${msg.slice(0, 300)}`)
      }
    }
    for (const kind of ['offences', 'bans', 'authFailures', 'protocolErrors', 'errorLines', 'stuckWarnings', 'silentPeers']) out[kind] = { count: 0, samples: [] }
    for (const n of this.nodes) {
      if (!existsSync(n.logFile)) continue
      for (const text of readFileSync(n.logFile, 'utf8').split('\n')) {
        if (text.length === 0 || text[0] !== '{') continue
        let line: { level?: number, time?: number, msg?: string }
        try { line = JSON.parse(text) } catch { continue }
        const msg = line.msg ?? ''
        if (/sent invalid data/.test(msg)) add('offences', n.name, line)
        else if (/^refusing peer .* after \d+ offences/.test(msg)) add('bans', n.name, line)
        else if (/mesh-key authentication failed/.test(msg)) add(/did not prove the mesh key within/.test(msg) ? 'silentPeers' : 'authFailures', n.name, line)
        else if (/^sync session with .* ended: /.test(msg) && (line.level ?? 0) >= 40) add(/peer sent nothing for/.test(msg) ? 'silentPeers' : 'protocolErrors', n.name, line)
        else if (/is stuck/.test(msg)) add('stuckWarnings', n.name, line)
        if ((line.level ?? 0) >= 50) add('errorLines', n.name, line)
      }
    }
    return out
  }

  // -- the run --------------------------------------------------------------

  async run (): Promise<{ ok: boolean, report: Record<string, unknown> }> {
    await this.setup()
    const sampler = new RssSampler()
    for (const n of this.nodes) sampler.track(n.name, () => n.proc.pid)
    sampler.start(1000)
    this.t0 = Date.now()
    const end = this.t0 + this.opts.duration * 1000
    const writes = this.writeLoop(() => Date.now() >= end)
    await this.faultLoop()
    await writes
    // faults are over (the loop ran them all); heal whatever a last fault left and stop writing
    await this.drain(this.nodes)
    await this.healAll()
    const healedAt = Date.now()
    this.log(`healed; ${this.history.counts.ack} writes acknowledged; waiting for agreement`)
    let last: CheckResult | undefined
    let agreedMs: number | undefined
    let polls = 0
    let readErrors = 0
    const settleEnd = healedAt + this.opts.settle * 1000
    let checkedMs: number | undefined
    while (Date.now() < settleEnd) {
      polls++
      try {
        // A full check reads every record of every node (seconds, at 100,000 records), so
        // the moment of agreement is taken from a cheap probe: every node's stored vector,
        // polled until all are equal. The full check that follows must then pass.
        const equalAt = await this.vectorsEqual(settleEnd, healedAt)
        last = await withTimeout(this.checkOnce(), 60_000, 'reading every node')
        if (last.violations.length === 0 && last.digestsEqual) {
          agreedMs = (equalAt ?? Date.now()) - healedAt
          checkedMs = Date.now() - healedAt
          break
        }
        this.log(`not yet: ${JSON.stringify(last.counts)}, ${last.sharedDiffering} shared ids differ`)
      } catch (err) {
        readErrors++
        this.log(`check failed: ${(err as Error).message}`)
      }
      await sleep(2000)
    }
    const statusOffences: Record<string, number> = {}
    for (const n of this.nodes) {
      try {
        const s = await withTimeout(n.proc.status(), 10_000, `${n.name} status`)
        statusOffences[n.name] = (s.peers as Array<{ offences?: number }>).reduce((sum, p) => sum + (p.offences ?? 0), 0)
      } catch {}
    }
    const rss = sampler.stop()
    const logs = this.readLogs()
    const peakRssMb: Record<string, number> = {}
    for (const [name, bytes] of rss.peak) peakRssMb[name] = Math.round(bytes / 1e6)
    const faultCounts: Record<string, number> = {}
    const setupS = Math.round((this.t0 - this.setupStart) / 100) / 10
    for (const f of this.faultLog) if (!f.result.startsWith('skipped')) faultCounts[f.fault.split(' ')[1]] = (faultCounts[f.fault.split(' ')[1]] ?? 0) + 1
    const counts = last?.counts ?? { lost: -1, stale: -1, resurrected: -1, unexpected: -1, 'origin-lost': -1, lww: -1, mirror: -1 }
    const violations = {
      lost: counts.lost,
      stale: counts.stale,
      resurrected: counts.resurrected,
      unexpected: counts.unexpected,
      originLost: counts['origin-lost'],
      lwwIds: last?.lwwIds.length ?? -1,
      mirror: counts.mirror,
      digestsDiffer: last === undefined || !last.digestsEqual ? 1 : 0,
      notAgreed: agreedMs === undefined ? 1 : 0,
      offences: logs.offences.count,
      bans: logs.bans.count,
      authFailures: logs.authFailures.count,
      protocolErrors: logs.protocolErrors.count,
      errorLines: logs.errorLines.count,
      exitedOnOwn: this.exits.length,
      restartFailures: this.restartFailures.length
    }
    const ok = Object.values(violations).every(v => v === 0)
    const c = this.history.counts
    const lat = [...this.latencies].sort((a, b) => a - b)
    const report: Record<string, unknown> = {
      ok,
      seed: this.opts.seed,
      duration: this.opts.duration,
      nodes: this.opts.nodes,
      rate: this.opts.rate,
      settle: this.opts.settle,
      ...(this.opts.replay !== undefined ? { replay: this.opts.replay } : {}),
      mode: this.mode,
      streams: this.opts.streams,
      slowLinks: this.mesh?.tc === true,
      writes: { perSecond: Math.round(this.issued / this.opts.duration * 10) / 10, latencyMs: { p50: percentile(lat, 0.5), p99: percentile(lat, 0.99), max: percentile(lat, 1) }, acknowledged: c.ack, unknownOutcome: c.unknown, refused: c.refused, puts: c.put, deletes: c.del, shared: c.shared, imported: c.imported, skipped: this.skipped },
      faults: faultCounts,
      schedule: this.faultLog,
      setupS,
      healToAgreementMs: agreedMs ?? null,
      healToCheckedMs: checkedMs ?? null,
      catchUp: this.catchUp,
      polls,
      readErrors,
      violations,
      sharedIdsDiffering: last?.sharedDiffering ?? null,
      digests: Object.fromEntries(Object.entries(last?.digests ?? {}).map(([k, v]) => [k, v.slice(0, 12)])),
      firstOffenceS: logs.offences.firstS ?? null,
      statusOffences,
      peakRssMb,
      exited: this.exits,
      samples: {
        violations: (last?.violations ?? []).slice(0, 6).map(v => `${v.kind} ${v.node} ${v.id} expected ${String(v.expected)} held ${String(v.held)}`),
        offences: logs.offences.samples,
        bans: logs.bans.samples,
        authFailures: logs.authFailures.samples,
        protocolErrors: logs.protocolErrors.samples,
        errorLines: logs.errorLines.samples,
        restartFailures: this.restartFailures.slice(0, 3),
        anomalies: this.anomalies.slice(0, 5)
      },
      info: { anomalies: this.anomalies.length, stuckWarnings: logs.stuckWarnings.count, silentPeers: logs.silentPeers.count, restartFailuresRecovered: this.restartFailures.length }
    }
    return { ok, report }
  }

  /** Synchronous: stop every node process and remove the namespaces (also from signal handlers). */
  disposeSync (keepDir: boolean): void {
    for (const n of this.nodes) {
      n.expectExit = true
      const pid = n.proc.pid
      if (pid !== undefined) {
        try { process.kill(pid, 'SIGCONT') } catch {}
        try { process.kill(pid, 'SIGKILL') } catch {}
      }
    }
    this.mesh?.destroy()
    this.writesLog?.end()
    if (!keepDir && this.runDir !== '') rmSync(this.runDir, { recursive: true, force: true })
    removeSnapshot()
  }
}

/** A kept seed: small, one fault per line, with what failed and on which commit. */
function seedFileText (opts: Options, schedule: Schedule, report: Record<string, unknown>): string {
  let commit = ''
  try { commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() } catch {}
  const failed = { at: new Date().toISOString(), ...(commit !== '' ? { commit } : {}), violations: report.violations, firstOffenceS: report.firstOffenceS }
  return [
    '{',
    `  "seed": ${opts.seed}, "duration": ${opts.duration}, "nodes": ${opts.nodes}, "rate": ${opts.rate},${opts.streams ? ' "streams": true,' : ''}`,
    '  "faults": [',
    schedule.faults.map(f => `    ${JSON.stringify(f)}`).join(',\n'),
    '  ],',
    `  "failed": ${JSON.stringify(failed)}`,
    '}'
  ].join('\n') + '\n'
}

function loadReplay (file: string): Schedule & { rate?: number, streams?: boolean } {
  const data = JSON.parse(readFileSync(file, 'utf8')) as Schedule & { rate?: number, streams?: boolean }
  if (typeof data.seed !== 'number' || typeof data.duration !== 'number' || !Array.isArray(data.faults)) throw new Error(`${file} is not a soak seed file (seed, duration, nodes, faults)`)
  return data
}

async function main (): Promise<number> {
  const opts = parseArgs(process.argv.slice(2))
  let schedule: Schedule
  if (opts.replay !== undefined) {
    const r = loadReplay(resolve(opts.replay))
    opts.seed = r.seed
    opts.duration = r.duration
    opts.nodes = r.nodes ?? opts.nodes
    if (r.rate !== undefined) opts.rate = r.rate
    if (r.streams === true) opts.streams = true
    schedule = { seed: r.seed, duration: r.duration, nodes: opts.nodes, faults: r.faults }
  } else {
    schedule = makeSchedule(opts.seed, opts.duration, opts.nodes)
  }
  const { cli } = await snapshotBuild()
  useCli(cli)
  const soak = new Soak(opts, schedule)
  const limitMs = (opts.duration + opts.settle + 300) * 1000
  let disposed = false
  const dispose = (keep: boolean): void => {
    if (disposed) return
    disposed = true
    soak.disposeSync(keep)
  }
  const onSignal = (signal: string, code: number): void => {
    dispose(opts.keep)
    process.stdout.write(JSON.stringify({ ok: false, seed: opts.seed, aborted: signal }) + '\n')
    process.exit(code)
  }
  process.on('SIGINT', () => onSignal('SIGINT', 130))
  process.on('SIGTERM', () => onSignal('SIGTERM', 143))
  process.on('SIGHUP', () => onSignal('SIGHUP', 129))
  process.on('exit', () => dispose(opts.keep))
  // the soak must end even if a node hangs where no other timeout applies (setup, a heal)
  const watchdog = setTimeout(() => {
    dispose(true)
    process.stdout.write(JSON.stringify({ ok: false, seed: opts.seed, error: `the soak did not finish within ${Math.round(limitMs / 1000)} s`, runDir: soak.runDir }) + '\n')
    process.exit(1)
  }, limitMs)
  watchdog.unref()
  let ok = false
  let report: Record<string, unknown>
  try {
    ({ ok, report } = await soak.run())
  } catch (err) {
    report = { ok: false, seed: opts.seed, duration: opts.duration, error: (err as Error).message.split('\n').slice(0, 6).join(' | '), mode: soak.mode }
  }
  const keep = opts.keep || !ok
  if (!ok && opts.save && opts.replay === undefined && report.error === undefined) {
    const dir = join(ROOT, 'test', 'soak', 'seeds')
    mkdirSync(dir, { recursive: true })
    const file = join(dir, `seed-${opts.seed}-${opts.duration}s-${opts.nodes}n-${opts.rate}w.json`)
    if (!existsSync(file)) {
      writeFileSync(file, seedFileText(opts, schedule, report))
    }
    report.seedFile = file
  }
  if (keep) report.runDir = soak.runDir
  dispose(keep)
  process.stdout.write(JSON.stringify(report) + '\n')
  return ok ? 0 : 1
}

main().then(code => process.exit(code), (err: Error) => {
  process.stdout.write(JSON.stringify({ ok: false, error: err.message }) + '\n')
  process.exit(1)
})
