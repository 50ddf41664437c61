/**
 * 4. Mesh fan-out. `nodes` processes (--target-peers 0); each dials `degree`
 * random others (a seeded random graph, made connected if it is not); one
 * rule from the writer to every other node (writer:fan → nodeK:fan). Once
 * every link is authenticated and every node knows its rule, `writes`
 * records are imported on the writer (one streamed NDJSON import). Timed
 * from the start of the import until every other node holds them: each node
 * is probed every ~50 ms with a GET of the LAST record written (cheap, where
 * polling /v1/status on 29 nodes would cost them real CPU). An origin's log
 * is stored contiguously and a rule is applied in the same batch that stores
 * the entry, so the last record readable means all are; this is checked
 * afterwards on every node through its status (rule applied = writes).
 *
 * Receptions per entry per node: for node v, the number of entries its
 * peers sent it during the window, divided by the writes, averaged over the
 * non-writers. This is read on the SENDING side (status peers[v].entriesSent
 * of each neighbour u), because the receiving side's peers[].entriesReceived
 * counts only entries that were new to the node (session.ts adds
 * `ingest(...).stored`, the fresh entries after dropping those at or below
 * the held seq): duplicates are not visible there, so that figure ("stored
 * per entry") is 1.0 by construction and shown for reference. entriesSent
 * counts every entry put in a Batch frame (before it is written to the
 * stream), duplicates included. Counters are snapshotted before the import
 * and read again 1 s after the last node finished, and the deltas are used.
 *
 * CPU: each node's user+system time (/proc) over the same window, per entry
 * written: the writer's, and the median of the others', also split into
 * the main thread (JavaScript) and the rest (V8's compiler and GC threads,
 * libuv's pool, LevelDB's compaction; Node 20 leaves them unnamed), summed
 * over the other nodes. With 30 processes on 2 cores the time is set by the
 * total: (writer + 29 × node) × writes / 2 cores.
 *
 * `SM_FANOUT_WARM=N` (an experiment, off by default): N writes of other
 * records first, until every node holds them, then the timed writes: nodes
 * whose code V8 has already compiled for this work.
 */
import { recordId, recordValue, ndjsonChunks } from '../data.js'
import { applied, authenticatedPeers, mapLimit, now, ruleActive, sleep, until } from '../env.js'
import type { NodeStatus } from '../../../src/core/types.js'
import type { NodeProcess } from '../../lib/cluster.js'
import { cpuSeconds, machineCpu, threadCpuSeconds } from '../proc.js'
import { mean, median, rng } from '../stats.js'
import type { FigureDef, Workload } from '../types.js'
import { fmtN } from './util.js'

export function fanoutWorkload (sizes: { fanoutNodes: number, fanoutDegree: number, fanoutWrites: number }, seed: number): Workload {
  const w = 'fanout'
  const label = `${fmtN(sizes.fanoutWrites)} writes → ${sizes.fanoutNodes} nodes`
  const figures: FigureDef[] = [
    { id: 'fanout.seconds', workload: w, label: `${label}: all nodes hold them`, unit: 's', digits: 2, target: { op: '<=', value: 10 } },
    { id: 'fanout.median_node_seconds', workload: w, label: `${label}: median node holds them`, unit: 's', digits: 2 },
    { id: 'fanout.import_seconds', workload: w, label: `${label}: import on the writer`, unit: 's', digits: 2 },
    { id: 'fanout.receptions_per_entry', workload: w, label: 'receptions per entry per node (sent to it, dups incl.)', unit: 'x', digits: 2, target: { op: '<=', value: 3 } },
    { id: 'fanout.max_receptions_per_entry', workload: w, label: 'receptions per entry, worst node', unit: 'x', digits: 2 },
    { id: 'fanout.stored_per_entry', workload: w, label: 'entriesReceived per entry per node (new only)', unit: 'x', digits: 2 },
    { id: 'fanout.writer_cpu_us_per_entry', workload: w, label: 'CPU of the writer per entry (import + sending)', unit: 'µs', digits: 0 },
    { id: 'fanout.node_cpu_us_per_entry', workload: w, label: 'CPU of another node per entry (receive, store, apply, forward)', unit: 'µs', digits: 0 },
    { id: 'fanout.machine_busy', workload: w, label: 'machine busy during the window (2 cores = 100%)', unit: '%', digits: 0 },
    { id: 'fanout.setup_seconds', workload: w, label: `setup: start ${sizes.fanoutNodes} nodes, link, rules`, unit: 's', digits: 1 }
  ]
  return {
    name: 'fanout',
    title: 'Mesh fan-out',
    figures,
    async run (ctx, run) {
      const rand = rng(seed + run)
      const n = sizes.fanoutNodes
      const writes = sizes.fanoutWrites
      const tSetup = now()
      const cl = await ctx.cluster('fanout')
      const names = Array.from({ length: n }, (_, i) => `node${String(i).padStart(2, '0')}`)
      const nodes = await mapLimit(names, 4, async name => await cl.add(name))
      await mapLimit(nodes, 4, async node => await cl.start(node))
      const edges = randomGraph(n, sizes.fanoutDegree, rand)
      const degree = new Array<number>(n).fill(0)
      for (const [a, b] of edges) { degree[a]++; degree[b]++ }
      // two dials at a time: a burst of Noise handshakes on 2 cores can exceed the 1 s mesh-key proof deadline
      await mapLimit(edges, 2, async ([a, b]) => await nodes[a].addPeer(nodes[b].multiaddr))
      const writer = nodes[0]
      const rules = new Map<NodeProcess, string>()
      for (const node of nodes.slice(1)) {
        rules.set(node, await cl.addRule(writer, { from: { platform: writer.name, collection: 'fan' }, to: { platform: node.name, collection: 'fan' } }))
      }
      // A link whose mesh-key proof timed out (it happens when the 2 cores are
      // busy) is banned for 30 s and redialled with backoff: wait for every
      // link up to 120 s; then go on if the authenticated links still connect
      // every node (the missing links are logged and kept in the JSON), else fail.
      let statuses: NodeStatus[] = []
      const ready = (): { linked: number, ruled: number, caughtUp: number } => ({
        linked: statuses.filter((s, i) => authenticatedPeers(s) >= degree[i]).length,
        ruled: statuses.filter((s, i) => i === 0 || ruleActive(s, rules.get(nodes[i]) as string)).length,
        caughtUp: statuses.filter(s => s.caughtUp).length
      })
      const settled = async (): Promise<boolean> => {
        statuses = await mapLimit(nodes, 6, async node => await cl.status(node))
        const r = ready()
        return r.ruled === n && r.caughtUp === n && (r.linked === n || (now() - tSetup > 120_000 && liveGraphConnected(statuses)))
      }
      await until(settled, `all ${n} nodes to link up and know their rules`, 300_000, 250).catch((err: Error) => {
        const r = ready()
        throw new Error(`${err.message}: ${r.linked}/${n} nodes fully linked, ${r.ruled}/${n} know their rule, ${r.caughtUp}/${n} caught up; ${missingLinks(statuses, nodes.map(x => x.name), edges).join('; ')}`)
      })
      const missing = missingLinks(statuses, nodes.map(x => x.name), edges)
      if (missing.length > 0) ctx.log(`    note: going on without ${missing.length} link(s) that did not come back after failing authentication (the rest still connects every node): ${missing.join('; ')}`)
      const setupS = (now() - tSetup) / 1000
      const ecc = eccentricity(n, edges, 0)
      ctx.log(`    ${n} nodes, ${edges.length} links (degree ${Math.min(...degree)}–${Math.max(...degree)}), writer reaches all within ${ecc} hops; setup ${setupS.toFixed(1)} s`)

      const warm = Number(process.env.SM_FANOUT_WARM ?? 0)
      if (warm > 0) {
        const tw = now()
        await writer.importStream('fan', ndjsonChunks(warm, { prefix: 'w' }))
        await until(async () => (await mapLimit(nodes.slice(1), 6, async node => await cl.client(node).probe('fan', recordId('w', warm - 1)))).every(c => c === 200), 'warm-up', 300_000, 100)
        ctx.log(`    warm-up: ${warm} writes reached all in ${((now() - tw) / 1000).toFixed(1)} s`)
        await sleep(3000)
      }
      const before = await mapLimit(nodes, 6, async node => await cl.status(node))
      const done = new Array<number>(n).fill(NaN)
      done[0] = 0
      const cpu0 = nodes.map(node => cpuSeconds(node.pid) ?? NaN)
      const threads0 = nodes.map(node => threadCpuSeconds(node.pid))
      const machine0 = machineCpu()
      const t0 = now()
      let importS = NaN
      const importing = writer.importStream('fan', ndjsonChunks(writes, { prefix: 'f' })).then((count) => {
        importS = (now() - t0) / 1000
        if (count !== writes) throw new Error(`the writer imported ${count} of ${writes}`)
      })
      let importError: unknown
      importing.catch((err) => { importError = err })
      const deadline = t0 + Math.max(120_000, writes * 20)
      const lastId = recordId('f', writes - 1)
      while (done.some(Number.isNaN)) {
        if (importError !== undefined) throw importError
        if (now() > deadline) {
          throw new Error(`fan-out: ${done.filter(Number.isNaN).length} nodes still lack entries after ${Math.round((now() - t0) / 1000)} s\n${await lagReport(nodes.filter((_, i) => Number.isNaN(done[i])))}`)
        }
        const pending = nodes.map((node, i) => ({ node, i })).filter(x => Number.isNaN(done[x.i]))
        await mapLimit(pending, 6, async ({ node, i }) => {
          if (await cl.client(node).probe('fan', lastId) === 200) done[i] = (now() - t0) / 1000
        })
        await sleep(50)
      }
      /** What the nodes that lag hold of the writer's log, and what each of their links says. */
      async function lagReport (lagging: NodeProcess[]): Promise<string> {
        const byPeer = new Map(nodes.map(x => [x.peerId, x]))
        const lines: string[] = []
        for (const node of lagging) {
          const st = await cl.status(node).catch(() => undefined)
          if (st === undefined) { lines.push(`${node.name}: no status`); continue }
          const o = st.origins.find(x => x.origin === writer.peerId)
          lines.push(`${node.name}: holds ${o?.seq ?? 0} of the writer's log (announced ${o?.announced ?? 0}${o?.stuck !== undefined ? `, stuck on ${o.stuck.peer}` : ''}); caughtUp ${String(st.caughtUp)}`)
          for (const p of st.peers) {
            const peer = byPeer.get(p.peerId)
            const theirs = peer !== undefined ? (await cl.status(peer).catch(() => undefined))?.origins.find(x => x.origin === writer.peerId)?.seq : undefined
            lines.push(`  ${peer?.name ?? p.peerId}: connected ${String(p.connected)}, authenticated ${String(p.authenticated)}, sent ${p.entriesSent}, received ${p.entriesReceived}, holds ${theirs ?? '?'}${p.lastError !== undefined ? `, last error: ${p.lastError}` : ''}${p.offences !== undefined ? `, offences ${p.offences}` : ''}`)
          }
        }
        return lines.join('\n')
      }
      await importing
      // the probe's premise, checked: every node applied every write
      const short = (await mapLimit(nodes.slice(1), 6, async node => ({ node, applied: applied(await cl.status(node), rules.get(node) as string) }))).filter(x => x.applied < writes)
      if (short.length > 0) throw new Error(`the last write was readable, but ${short.map(x => `${x.node.name} applied ${x.applied}`).join(', ')} of ${writes}`)
      const seconds = Math.max(...done)
      // CPU until the last node held everything (the import ends before): what each entry cost where
      const cpu1 = nodes.map(node => cpuSeconds(node.pid) ?? NaN)
      const machine1 = machineCpu()
      const cpuUs = cpu1.map((c, i) => (c - cpu0[i]) * 1e6 / writes)
      // the other nodes' CPU: main thread (JS) and the rest (V8's GC and compiler, libuv's pool, LevelDB; Node 20 does not name them)
      const byThread = new Map<string, number>()
      nodes.slice(1).forEach((node, k) => {
        const before = threads0[k + 1]
        for (const [tid, { cpu }] of threadCpuSeconds(node.pid)) {
          const key = tid === String(node.pid) ? 'main thread' : 'other threads'
          byThread.set(key, (byThread.get(key) ?? 0) + cpu - (before.get(tid)?.cpu ?? 0))
        }
      })
      const threadUs = Object.fromEntries([...byThread].sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, Math.round(v * 1e6 / writes / (n - 1))]))
      await sleep(1000)
      const after = await mapLimit(nodes, 6, async node => await cl.status(node))

      // receptions of node v: what its neighbours sent it during the window
      const idx = new Map(before.map((s, i) => [s.peerId, i]))
      const received = new Array<number>(n).fill(0)
      for (let u = 0; u < n; u++) {
        for (const p of after[u].peers) {
          const v = idx.get(p.peerId)
          if (v === undefined) continue
          received[v] += p.entriesSent - sentTo(before[u], p.peerId)
        }
      }
      const storedNew = after.map((s, i) => sum(s.peers.map(p => p.entriesReceived)) - sum(before[i].peers.map(p => p.entriesReceived)))
      const perEntry = received.slice(1).map(r => r / writes)
      const storedPerEntry = storedNew.slice(1).map(r => r / writes)

      // verify once, on the node that finished last
      const last = done.indexOf(seconds)
      const count = await nodes[last].count('fan')
      if (count !== writes + warm) throw new Error(`${nodes[last].name} holds ${count} of ${writes + warm} records`)
      const v = await nodes[last].get('fan', recordId('f', writes - 1))
      if (JSON.stringify(v) !== JSON.stringify(recordValue(writes - 1))) throw new Error(`wrong value on ${nodes[last].name}: ${JSON.stringify(v)}`)
      ctx.log(`    CPU per entry per other node by thread (µs): ${Object.entries(threadUs).map(([k, v]) => `${k} ${v}`).join(', ')}`)
      ctx.log(`    all ${n} hold ${fmtN(writes)} after ${seconds.toFixed(2)} s; ${mean(perEntry).toFixed(2)} receptions per entry per node (worst ${Math.max(...perEntry).toFixed(2)})`)

      return {
        values: {
          'fanout.seconds': seconds,
          'fanout.median_node_seconds': median(done.slice(1)),
          'fanout.import_seconds': importS,
          'fanout.receptions_per_entry': mean(perEntry),
          'fanout.max_receptions_per_entry': Math.max(...perEntry),
          'fanout.stored_per_entry': mean(storedPerEntry),
          'fanout.writer_cpu_us_per_entry': cpuUs[0],
          'fanout.node_cpu_us_per_entry': median(cpuUs.slice(1)),
          'fanout.machine_busy': machine0 !== undefined && machine1 !== undefined ? 100 * (machine1.busy - machine0.busy) / (machine1.total - machine0.total) : NaN,
          'fanout.setup_seconds': setupS
        },
        info: {
          seed: seed + run,
          links: edges.length,
          missingLinks: missing,
          degreeMin: Math.min(...degree),
          degreeMax: Math.max(...degree),
          writerEccentricityHops: ecc,
          transmissionsPerEntryAllLinks: sum(received) / writes,
          nodeSeconds: done,
          nodeCpuUsPerEntry: cpuUs.map(x => Math.round(x)),
          nodeCpuUsPerEntryByThread: threadUs
        }
      }
    }
  }
}

/** Whether the authenticated links reach every node. */
function liveGraphConnected (statuses: NodeStatus[]): boolean {
  const ids = new Set(statuses.map(s => s.peerId))
  const adj = new Map(statuses.map(s => [s.peerId, s.peers.filter(p => p.connected && p.authenticated && ids.has(p.peerId)).map(p => p.peerId)]))
  const seen = new Set([statuses[0].peerId])
  const queue = [statuses[0].peerId]
  while (queue.length > 0) {
    for (const b of adj.get(queue.shift() as string) ?? []) if (!seen.has(b)) { seen.add(b); queue.push(b) }
  }
  return seen.size === statuses.length
}

/** Planned links that are not authenticated on both ends, with what each end reports. */
function missingLinks (statuses: NodeStatus[], names: string[], edges: Array<[number, number]>): string[] {
  if (statuses.length === 0) return []
  const out: string[] = []
  for (const [a, b] of edges) {
    const pa = statuses[a].peers.find(p => p.peerId === statuses[b].peerId)
    const pb = statuses[b].peers.find(p => p.peerId === statuses[a].peerId)
    if (pa?.authenticated === true && pa.connected && pb?.authenticated === true && pb.connected) continue
    const state = (p: typeof pa): string => p === undefined ? 'unknown' : `${p.connected ? 'connected' : 'not connected'}${p.authenticated ? ', authenticated' : ''}${p.lastError !== undefined ? `, last error: ${p.lastError}` : ''}`
    out.push(`${names[a]}→${names[b]} (${names[a]} sees ${state(pa)}; ${names[b]} sees ${state(pb)})`)
  }
  return out
}

function sum (xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0)
}

function sentTo (s: NodeStatus, peerId: string): number {
  return s.peers.find(p => p.peerId === peerId)?.entriesSent ?? 0
}

/** Each node dials `degree` random others it has no link with yet; then components are joined. Edges are [dialer, dialed]. */
export function randomGraph (n: number, degree: number, rand: () => number): Array<[number, number]> {
  const adj = Array.from({ length: n }, () => new Set<number>())
  const edges: Array<[number, number]> = []
  const link = (a: number, b: number): void => { adj[a].add(b); adj[b].add(a); edges.push([a, b]) }
  for (let a = 0; a < n; a++) {
    const others = Array.from({ length: n }, (_, i) => i).filter(b => b !== a && !adj[a].has(b))
    for (let k = others.length - 1; k > 0; k--) {
      const j = Math.floor(rand() * (k + 1));
      [others[k], others[j]] = [others[j], others[k]]
    }
    for (const b of others.slice(0, Math.min(degree, others.length))) link(a, b)
  }
  // join components (rare with degree ≥ 2, but the run must be connected)
  for (;;) {
    const comp = componentOf(n, adj, 0)
    if (comp.size === n) break
    const inside = [...comp]
    const outside = Array.from({ length: n }, (_, i) => i).filter(i => !comp.has(i))
    link(outside[Math.floor(rand() * outside.length)], inside[Math.floor(rand() * inside.length)])
  }
  return edges
}

function componentOf (n: number, adj: Array<Set<number>>, start: number): Set<number> {
  const seen = new Set([start])
  const queue = [start]
  while (queue.length > 0) {
    const a = queue.shift() as number
    for (const b of adj[a]) if (!seen.has(b)) { seen.add(b); queue.push(b) }
  }
  void n
  return seen
}

/** Hops from `start` to the farthest node. */
function eccentricity (n: number, edges: Array<[number, number]>, start: number): number {
  const adj = Array.from({ length: n }, () => [] as number[])
  for (const [a, b] of edges) { adj[a].push(b); adj[b].push(a) }
  const dist = new Array<number>(n).fill(-1)
  dist[start] = 0
  const queue = [start]
  while (queue.length > 0) {
    const a = queue.shift() as number
    for (const b of adj[a]) if (dist[b] === -1) { dist[b] = dist[a] + 1; queue.push(b) }
  }
  return Math.max(...dist)
}
