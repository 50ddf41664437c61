/**
 * The soak's network when it runs as root: every node in its own network
 * namespace, linked by a veth pair to a bridge in a hub namespace (the mesh,
 * 10.77.0.0/24), and by a second veth pair to the root namespace (the
 * control link, a /30 per node) over which the soak reaches the node's HTTP
 * API. Faults change only the mesh: a split moves one side's bridge ports to
 * a second bridge, an isolation takes a node's port down, a slow link puts a
 * token-bucket filter (tc tbf) on both ends of a node's mesh link.
 *
 * Every object is named after the soak's pid (`smsoak-PID-…` namespaces,
 * `skPIDc…` links in the root namespace), so a later run can remove what a
 * run killed with SIGKILL left behind: `removeStale()` deletes the objects
 * of pids that are no longer soaks.
 */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'

const NS_PREFIX = 'smsoak-'

function ip (args: string[], allowFail = false): string {
  try {
    return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  } catch (err) {
    if (allowFail) return ''
    const e = err as { stderr?: string, message: string }
    throw new Error(`ip ${args.join(' ')} failed: ${(e.stderr ?? e.message).trim()}`)
  }
}

function nsExec (ns: string, cmd: string[], allowFail = false): string {
  return ip(['netns', 'exec', ns, ...cmd], allowFail)
}

/** Whether `pid` is a running soak (so its namespaces are not stale). */
function isLiveSoak (pid: number): boolean {
  if (pid === process.pid) return true
  try {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
    return /soak/.test(cmd)
  } catch {
    return false
  }
}

/** Remove namespaces and links left by soaks that are no longer running; returns what was removed. */
export function removeStale (): string[] {
  const removed: string[] = []
  for (const line of ip(['netns', 'list'], true).split('\n')) {
    const name = line.split(' ')[0]
    const m = new RegExp(`^${NS_PREFIX}(\\d+)-`).exec(name)
    if (m === null || isLiveSoak(Number(m[1]))) continue
    for (const pid of ip(['netns', 'pids', name], true).split(/\s+/).filter(Boolean)) {
      try { process.kill(Number(pid), 'SIGKILL') } catch {}
    }
    ip(['netns', 'del', name], true)
    removed.push(name)
  }
  for (const line of ip(['-o', 'link', 'show'], true).split('\n')) {
    const m = /^\d+:\s+(sk(\d+)c\d+)[@:]/.exec(line)
    if (m === null || isLiveSoak(Number(m[2]))) continue
    ip(['link', 'del', m[1]], true)
    removed.push(m[1])
  }
  return removed
}

/** Whether this process may create network namespaces (root, and the kernel allows it). */
export function canUseNetns (): boolean {
  if (process.getuid?.() !== 0) return false
  const probe = `${NS_PREFIX}${process.pid}-probe`
  try {
    ip(['netns', 'add', probe])
    ip(['netns', 'del', probe])
    return true
  } catch {
    ip(['netns', 'del', probe], true)
    return false
  }
}

export class NetnsMesh {
  readonly hub: string
  readonly nodes: string[] = []
  /** Whether tc tbf works here (checked at setup). */
  tc = false
  private readonly ctlNet: number
  private created = false

  constructor (readonly count: number) {
    this.hub = `${NS_PREFIX}${process.pid}-hub`
    const used = ip(['-4', '-o', 'addr', 'show'], true)
    let net = (process.pid % 200) + 20
    while (used.includes(`10.231.${net}.`)) net = net >= 250 ? 20 : net + 1
    this.ctlNet = net
  }

  private rootLink (i: number): string { return `sk${process.pid}c${i}` }
  private port (i: number): string { return `p${i}` }

  meshAddr (i: number): string { return `10.77.0.${10 + i}` }
  apiAddr (i: number): string { return `10.231.${this.ctlNet}.${4 * i + 2}` }
  ns (i: number): string { return this.nodes[i] }

  setup (): void {
    this.created = true
    ip(['netns', 'add', this.hub])
    ip(['-n', this.hub, 'link', 'set', 'lo', 'up'])
    for (const br of ['br0', 'br1']) {
      ip(['-n', this.hub, 'link', 'add', br, 'type', 'bridge'])
      ip(['-n', this.hub, 'link', 'set', br, 'up'])
    }
    for (let i = 0; i < this.count; i++) {
      const ns = `${NS_PREFIX}${process.pid}-n${i}`
      this.nodes.push(ns)
      ip(['netns', 'add', ns])
      ip(['-n', ns, 'link', 'set', 'lo', 'up'])
      // mesh link: node ns mesh0 <-> hub pI on br0
      ip(['-n', this.hub, 'link', 'add', this.port(i), 'type', 'veth', 'peer', 'name', 'mesh0', 'netns', ns])
      ip(['-n', this.hub, 'link', 'set', this.port(i), 'master', 'br0'])
      ip(['-n', this.hub, 'link', 'set', this.port(i), 'up'])
      ip(['-n', ns, 'addr', 'add', `${this.meshAddr(i)}/24`, 'dev', 'mesh0'])
      ip(['-n', ns, 'link', 'set', 'mesh0', 'up'])
      // control link: root skPIDcI <-> node ns ctl0
      ip(['link', 'add', this.rootLink(i), 'type', 'veth', 'peer', 'name', 'ctl0', 'netns', ns])
      ip(['addr', 'add', `10.231.${this.ctlNet}.${4 * i + 1}/30`, 'dev', this.rootLink(i)])
      ip(['link', 'set', this.rootLink(i), 'up'])
      ip(['-n', ns, 'addr', 'add', `${this.apiAddr(i)}/30`, 'dev', 'ctl0'])
      ip(['-n', ns, 'link', 'set', 'ctl0', 'up'])
    }
    try {
      nsExec(this.hub, ['tc', 'qdisc', 'add', 'dev', this.port(0), 'root', 'tbf', 'rate', '1mbit', 'burst', '16kb', 'latency', '100ms'])
      nsExec(this.hub, ['tc', 'qdisc', 'del', 'dev', this.port(0), 'root'])
      this.tc = true
    } catch {
      this.tc = false
    }
  }

  /** The nodes in `side` reach each other and nobody else. */
  split (side: number[]): void {
    for (const i of side) ip(['-n', this.hub, 'link', 'set', this.port(i), 'master', 'br1'])
  }

  /** Node i loses its mesh link (carrier down on its veth). */
  isolate (i: number): void {
    ip(['-n', this.hub, 'link', 'set', this.port(i), 'down'])
  }

  /** Node i's mesh link becomes slow both ways; false when tc is not available. */
  slow (i: number, rate = '384kbit'): boolean {
    if (!this.tc) return false
    nsExec(this.hub, ['tc', 'qdisc', 'replace', 'dev', this.port(i), 'root', 'tbf', 'rate', rate, 'burst', '16kb', 'latency', '300ms'])
    nsExec(this.ns(i), ['tc', 'qdisc', 'replace', 'dev', 'mesh0', 'root', 'tbf', 'rate', rate, 'burst', '16kb', 'latency', '300ms'])
    return true
  }

  /** Every node back on br0, every link up and at full speed. */
  heal (): void {
    for (let i = 0; i < this.count; i++) {
      ip(['-n', this.hub, 'link', 'set', this.port(i), 'master', 'br0'])
      ip(['-n', this.hub, 'link', 'set', this.port(i), 'up'])
      if (this.tc) {
        nsExec(this.hub, ['tc', 'qdisc', 'del', 'dev', this.port(i), 'root'], true)
        nsExec(this.ns(i), ['tc', 'qdisc', 'del', 'dev', 'mesh0', 'root'], true)
      }
    }
  }

  /** Kill whatever still runs in the namespaces, delete them and the control links (synchronous: safe in a signal handler). */
  destroy (): void {
    if (!this.created) return
    for (const ns of [...this.nodes, this.hub]) {
      for (const pid of ip(['netns', 'pids', ns], true).split(/\s+/).filter(Boolean)) {
        try { process.kill(Number(pid), 'SIGCONT'); process.kill(Number(pid), 'SIGKILL') } catch {}
      }
    }
    for (let i = 0; i < this.nodes.length; i++) ip(['link', 'del', this.rootLink(i)], true)
    for (const ns of [...this.nodes, this.hub]) ip(['netns', 'del', ns], true)
    this.created = false
  }
}
