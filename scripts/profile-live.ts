/**
 * `npm run profile:live [-- --nodes 5 --rate 250 --seconds 30]`: live writes
 * in a two-way mesh of real node processes on 127.0.0.1, the way the soak
 * and the README set it up (a ring plus one chord; one `nI:events → *:events`
 * rule per node), and what they cost: every node takes its share of `rate`
 * writes/s through the HTTP API (updates of 2,000 ids per node, up to 64 in
 * flight), then the run waits until every node holds the same log. Prints
 * one JSON line: writes acknowledged and their rate, seconds to agreement
 * after the last write, each node's CPU share while writing and its CPU time
 * per acknowledged write (all of the node's work: its own writes, receiving,
 * relaying), and the second node's traffic and store counters (entries
 * received and their duplicates, frames by type, LevelDB batches and keys).
 * Compare builds by the CPU per write of interleaved runs. `--cpu-prof DIR`
 * writes a V8 CPU profile of the second node into DIR (open it in Chrome's
 * DevTools).
 */
import { randomBytes } from 'node:crypto'
import { NodeProcess, tempDir, waitFor } from './lib/cluster.js'
import { cpuSeconds } from './bench/proc.js'

const args = process.argv.slice(2)
const arg = (name: string, fallback: number): number => {
  const i = args.indexOf(name)
  const v = i >= 0 ? Number(args[i + 1]) : fallback
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${name} needs a positive number`)
  return v
}
const NODES = Math.floor(arg('--nodes', 5))
const RATE = arg('--rate', 250)
const SECONDS = arg('--seconds', 30)
const IN_FLIGHT = 64
const CPU_PROF = ((i) => i >= 0 ? args[i + 1] : undefined)(args.indexOf('--cpu-prof'))

async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}

async function main (): Promise<void> {
  if (NODES < 2) throw new Error('--nodes must be at least 2')
  const key = randomBytes(32).toString('hex')
  const parent = await tempDir('syncmesh-live-')
  const nodes: NodeProcess[] = []
  try {
    for (let i = 0; i < NODES; i++) nodes.push(await NodeProcess.create(`n${i}`, key, { parent }))
    await Promise.all(nodes.map(async (n, i) => await n.start([], i === 1 && CPU_PROF !== undefined ? { nodeArgs: ['--cpu-prof', '--cpu-prof-dir', CPU_PROF] } : {})))
    const edges: Array<[number, number]> = []
    for (let i = 0; i < NODES; i++) if (NODES > 2 || i === 0) edges.push([i, (i + 1) % NODES])
    if (NODES >= 5) edges.push([0, 2])
    for (const [a, b] of edges) await nodes[a].addPeer(nodes[b].multiaddr)
    const names = nodes.map(n => n.name)
    for (const n of nodes) await n.knows(names, 60_000)
    for (const n of nodes) await nodes[0].addRule({ from: { platform: n.name, collection: 'events' }, to: { platform: '*', collection: 'events' } })
    await waitFor(async () => {
      for (const n of nodes) if ((await n.status()).rules.filter((r: { local?: boolean }) => r.local === true).length !== NODES - 1) return false
      return true
    }, 'every node to apply the other nodes\' rules', 60_000)

    const pids = nodes.map(n => n.child?.pid)
    const cpu0 = pids.map(pid => cpuSeconds(pid) ?? NaN)
    const t0 = Date.now()
    const end = t0 + SECONDS * 1000
    let issued = 0
    let acked = 0
    let inFlight = 0
    while (Date.now() < end) {
      const due = Math.floor((Date.now() - t0) / 1000 * RATE)
      while (issued < due && inFlight < IN_FLIGHT) {
        const i = issued % NODES
        const id = `${nodes[i].name}-${Math.floor(issued / NODES) % 2000}`
        issued++
        inFlight++
        nodes[i].put('events', id, { n: issued, pad: 'x'.repeat(100) }).then(() => { acked++ }, () => {}).finally(() => { inFlight-- })
      }
      await sleep(5)
    }
    while (inFlight > 0) await sleep(10)
    const writeSeconds = (Date.now() - t0) / 1000
    const cpuWriting = pids.map((pid, i) => (cpuSeconds(pid) ?? NaN) - cpu0[i])
    const t1 = Date.now()
    await waitFor(async () => {
      const vectors = await Promise.all(nodes.map(async n => JSON.stringify(((await n.status()).origins as Array<{ origin: string, seq: number }>).map(o => [o.origin, o.seq]).sort())))
      return vectors.every(v => v === vectors[0])
    }, 'every node to hold the same log', 300_000, 200)
    const agreeSeconds = (Date.now() - t1) / 1000
    const cpuAll = pids.map((pid, i) => (cpuSeconds(pid) ?? NaN) - cpu0[i])
    const metrics = (await nodes[1].request<string>('GET', '/metrics')).body
    const counters: Record<string, number> = {}
    for (const line of String(metrics).split('\n')) {
      const m = /^(syncmesh_sync_(?:frames_received|entries_received|duplicate_entries)_total|syncmesh_db_(?:batches|keys)_written_total)(\{[^}]*\})? (\S+)$/.exec(line)
      if (m === null) continue
      const label = /type="([^"]+)"/.exec(m[2] ?? '')?.[1] ?? /op="([^"]+)"/.exec(m[2] ?? '')?.[1]
      const name = m[1].replace(/^syncmesh_/, '').replace(/_total$/, '') + (label !== undefined ? `.${label}` : '')
      counters[name] = (counters[name] ?? 0) + Number(m[3])
    }
    console.log(JSON.stringify({
      nodes: NODES,
      rate: RATE,
      seconds: SECONDS,
      acknowledged: acked,
      writesPerSecond: Math.round(acked / writeSeconds),
      agreementSeconds: Math.round(agreeSeconds * 10) / 10,
      cpuPercentWhileWriting: cpuWriting.map(c => Math.round(c / writeSeconds * 100)),
      cpuMsPerWrite: cpuAll.map(c => Math.round(c * 1000 / acked * 100) / 100),
      n1: counters
    }))
  } finally {
    await Promise.all(nodes.map(async n => await n.stop().catch(() => {})))
    for (const n of nodes) await n.cleanup().catch(() => {})
  }
}

main().catch((err: Error) => {
  console.error(err.message)
  process.exit(1)
})
