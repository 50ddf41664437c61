/**
 * Node processes and temp dirs of the benchmark, and their cleanup: every
 * process started and every directory created is tracked here and removed
 * at the end of its run, on an error, on SIGINT/SIGTERM/SIGHUP, and (as a
 * last resort, synchronously) when the bench process exits.
 */
import { rmSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { generateMeshKey } from '../../src/node/config.js'
import type { NodeStatus, RuleSpec } from '../../src/core/types.js'
import { NodeProcess, tempDir } from '../lib/cluster.js'
import { FastClient } from './http.js'

/** Only the links the benchmark makes exist: registry discovery is off. */
export const NO_DISCOVERY = ['--target-peers', '0']

const liveClusters = new Set<BenchCluster>()

export class BenchCluster {
  readonly parent: string
  readonly key: string
  readonly nodes: NodeProcess[] = []
  /** When set, nodes run with --cpu-prof and write their profiles under this dir (on a clean stop). */
  readonly profileDir?: string
  private readonly label: string
  private readonly clients = new Map<NodeProcess, { api: string, client: FastClient }>()

  /** Every node starts with --streams (rule streams). */
  readonly streams: boolean

  private constructor (parent: string, label: string, profileDir?: string, streams = false) {
    this.parent = parent
    this.label = label
    this.streams = streams
    this.key = generateMeshKey()
    if (profileDir !== undefined) this.profileDir = profileDir
  }

  static async create (label: string, options: { profileDir?: string, streams?: boolean } = {}): Promise<BenchCluster> {
    const c = new BenchCluster(await tempDir(`syncmesh-bench-${label}-`), label, options.profileDir, options.streams)
    liveClusters.add(c)
    return c
  }

  /** `syncmesh init` a node in this cluster's dir (not started). */
  async add (name: string): Promise<NodeProcess> {
    const node = await NodeProcess.create(name, this.key, { parent: this.parent })
    this.nodes.push(node)
    return node
  }

  /** Start on 127.0.0.1 (ports 0), discovery off, logs at warn unless $SYNCMESH_LOG_LEVEL says otherwise. */
  async start (node: NodeProcess, extra: string[] = []): Promise<void> {
    const nodeArgs = this.profileDir !== undefined ? ['--cpu-prof', '--cpu-prof-dir', join(this.profileDir, `${this.label}-${node.name}`)] : []
    // $SM_NODEARGS: extra node/V8 flags for every node (experiments: `SM_NODEARGS="--max-semi-space-size=32" npm run bench`)
    nodeArgs.push(...(process.env.SM_NODEARGS ?? '').split(' ').filter(a => a !== ''))
    await node.start([...NO_DISCOVERY, ...(this.streams ? ['--streams'] : []), ...extra], { env: { SYNCMESH_LOG_LEVEL: process.env.SYNCMESH_LOG_LEVEL ?? 'warn' }, nodeArgs })
  }

  /** A keep-alive client for the node's current API (renewed after a restart). */
  client (node: NodeProcess): FastClient {
    const have = this.clients.get(node)
    if (have !== undefined && have.api === node.api) return have.client
    have?.client.close()
    const client = new FastClient(node.api, node.token)
    this.clients.set(node, { api: node.api, client })
    return client
  }

  async status (node: NodeProcess): Promise<NodeStatus> {
    return await this.client(node).status()
  }

  async addRule (on: NodeProcess, spec: RuleSpec): Promise<string> {
    return (await on.addRule(spec as unknown as Record<string, unknown>)).id
  }

  /** The last lines each node wrote on stderr (for error reports). */
  stderrTails (lines = 15): string {
    return this.nodes
      .filter(n => n.stderr.trim() !== '')
      .map(n => `--- ${n.name} stderr (last lines) ---\n${n.stderr.trimEnd().split('\n').slice(-lines).join('\n')}`)
      .join('\n')
  }

  async dispose (): Promise<void> {
    for (const { client } of this.clients.values()) client.close()
    this.clients.clear()
    if (this.profileDir !== undefined) {
      // a profile is written only on a clean exit: SIGTERM first, SIGKILL after 20 s
      await Promise.all(this.nodes.map(async n => {
        const timer = setTimeout(() => { n.kill().catch(() => {}) }, 20_000)
        await n.stop().catch(() => {})
        clearTimeout(timer)
      }))
    }
    await Promise.all(this.nodes.map(async n => await n.kill().catch(() => {})))
    await rm(this.parent, { recursive: true, force: true })
    liveClusters.delete(this)
  }

  /** Synchronous last resort (process 'exit'): SIGKILL and delete. */
  disposeSync (): void {
    for (const n of this.nodes) {
      try { n.child?.kill('SIGKILL') } catch {}
    }
    try { rmSync(this.parent, { recursive: true, force: true }) } catch {}
    liveClusters.delete(this)
  }
}

export async function disposeAll (): Promise<void> {
  await Promise.all([...liveClusters].map(async c => await c.dispose().catch(() => c.disposeSync())))
}

let installed = false

/** Clean up on signals and at exit. */
export function installCleanup (log: (msg: string) => void): void {
  if (installed) return
  installed = true
  let stopping = false
  const onSignal = (signal: NodeJS.Signals, code: number): void => {
    if (stopping) {
      // a second Ctrl-C: do it synchronously and leave now
      for (const c of [...liveClusters]) c.disposeSync()
      process.exit(code)
    }
    stopping = true
    log(`\n${signal}: stopping the node processes and deleting their temp dirs…`)
    disposeAll().finally(() => process.exit(code))
  }
  process.on('SIGINT', () => onSignal('SIGINT', 130))
  process.on('SIGTERM', () => onSignal('SIGTERM', 143))
  process.on('SIGHUP', () => onSignal('SIGHUP', 129))
  process.on('exit', () => {
    for (const c of [...liveClusters]) c.disposeSync()
  })
}

/** Run fn over items with at most `limit` in flight. */
export async function mapLimit<T, R> (items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++
      out[i] = await fn(items[i], i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  return out
}

export const now = (): number => performance.now()

export async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}

/** Poll until check() holds; throws with `what` on timeout. */
export async function until (check: () => Promise<boolean>, what: string, timeoutMs: number, intervalMs = 50): Promise<void> {
  const deadline = now() + timeoutMs
  let last: unknown
  while (now() < deadline) {
    try {
      if (await check()) return
      last = undefined
    } catch (err) {
      last = err
    }
    await sleep(intervalMs)
  }
  throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}${last !== undefined ? ` (last error: ${(last as Error).message})` : ''}`)
}

/** The local rule's applied count on a node (0 if the node does not know the rule yet). */
export function applied (status: NodeStatus, ruleId: string): number {
  return status.rules.find(r => r.id === ruleId)?.applied ?? 0
}

/** The node knows the rule, is its target, and the rule is active (no problem reported). */
export function ruleActive (status: NodeStatus, ruleId: string): boolean {
  const r = status.rules.find(x => x.id === ruleId)
  return r !== undefined && r.local && r.problem === undefined
}

/** Highest contiguous seq this node holds of `origin`'s log. */
export function originSeq (status: NodeStatus, origin: string): number {
  return status.origins.find(o => o.origin === origin)?.seq ?? 0
}

/** The logs of `peer` a node holds, its whole log and its rule streams (`<peer>/<stream>`, with --streams), each with its seq. */
export function logsOf (status: NodeStatus, peer: string): Map<string, number> {
  return new Map(status.origins.filter(o => o.origin === peer || o.origin.startsWith(`${peer}/`)).map(o => [o.origin, o.seq]))
}

export function authenticatedPeers (status: NodeStatus): number {
  return status.peers.filter(p => p.connected && p.authenticated).length
}
