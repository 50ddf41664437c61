/**
 * 2. Live latency. Nodes connected and idle; single PUTs on the source,
 * started 20 ms apart (the next PUT waits for the previous sample to finish
 * if it took longer). A sample is the time from the PUT's response arriving
 * (the API call returning on the source) until a GET of that record on the
 * target first answers 200.
 *
 * "Readable" is probed by GETting the record on the target in a tight loop
 * (one request at a time on a keep-alive node:http socket) right after the
 * PUT returns: the API has no change feed to wait on. The probe's round
 * trip (~0.4–0.5 ms here, reported as "poll round trip") is the resolution:
 * the figure is an upper bound, at most one round trip above the true time.
 * The probe also costs the target some CPU while it waits.
 *
 * One hop: source → target. Chain: hop0 → hop1 → … → hop4 in a line
 * (--target-peers 0, so only the chain links exist), the rule from hop0 to
 * hop4, so every entry is stored and forwarded by three relays.
 */
import type { NodeProcess } from '../../lib/cluster.js'
import { recordValue } from '../data.js'
import type { BenchCluster } from '../env.js'
import { authenticatedPeers, now, ruleActive, sleep, until } from '../env.js'
import type { FastClient } from '../http.js'
import { median, quantile } from '../stats.js'
import type { Context, FigureDef, Workload } from '../types.js'

export function latencyWorkload (sizes: { latencySamples: number, latencyIntervalMs: number, chainHops: number }): Workload {
  const w = 'latency'
  const hops = sizes.chainHops
  const figures: FigureDef[] = [
    { id: 'latency.hop1.p50_ms', workload: w, label: '1 hop: p50', unit: 'ms', digits: 2, target: { op: '<=', value: 2 } },
    { id: 'latency.hop1.p95_ms', workload: w, label: '1 hop: p95', unit: 'ms', digits: 2 },
    { id: 'latency.hop1.p99_ms', workload: w, label: '1 hop: p99', unit: 'ms', digits: 2, target: { op: '<=', value: 5 } },
    { id: 'latency.hop1.max_ms', workload: w, label: '1 hop: max', unit: 'ms', digits: 2 },
    { id: `latency.hop${hops}.p50_ms`, workload: w, label: `${hops} hops: p50`, unit: 'ms', digits: 2 },
    { id: `latency.hop${hops}.p95_ms`, workload: w, label: `${hops} hops: p95`, unit: 'ms', digits: 2 },
    { id: `latency.hop${hops}.p99_ms`, workload: w, label: `${hops} hops: p99`, unit: 'ms', digits: 2, target: { op: '<=', value: 20 } },
    { id: `latency.hop${hops}.max_ms`, workload: w, label: `${hops} hops: max`, unit: 'ms', digits: 2 },
    { id: 'latency.poll_rtt_ms', workload: w, label: 'probe: GET round trip on the target (resolution)', unit: 'ms', digits: 2 },
    { id: 'latency.put_rtt_ms', workload: w, label: 'probe: PUT round trip on the source', unit: 'ms', digits: 2 }
  ]
  return {
    name: 'latency',
    title: 'Live change latency',
    figures,
    async run (ctx) {
      const values: Record<string, number> = {}
      const info: Record<string, unknown> = {}
      const one = await oneHop(ctx, sizes)
      const chain = await chainHops(ctx, sizes)
      for (const [key, r] of [['hop1', one], [`hop${hops}`, chain]] as const) {
        values[`latency.${key}.p50_ms`] = quantile(r.latency, 0.5)
        values[`latency.${key}.p95_ms`] = quantile(r.latency, 0.95)
        values[`latency.${key}.p99_ms`] = quantile(r.latency, 0.99)
        values[`latency.${key}.max_ms`] = Math.max(...r.latency)
        info[`${key}.samples`] = r.latency.length
        info[`${key}.mean_polls_per_sample`] = r.polls.reduce((a, b) => a + b, 0) / r.polls.length
        info[`${key}.first_poll_hits`] = r.polls.filter(p => p === 1).length
      }
      values['latency.poll_rtt_ms'] = median([...one.pollRtt, ...chain.pollRtt])
      values['latency.put_rtt_ms'] = median([...one.putRtt, ...chain.putRtt])
      return { values, info }
    }
  }
}

interface Samples {
  latency: number[]
  polls: number[]
  pollRtt: number[]
  putRtt: number[]
}

async function oneHop (ctx: Context, sizes: { latencySamples: number, latencyIntervalMs: number }): Promise<Samples> {
  const cl = await ctx.cluster('latency')
  const source = await cl.add('source')
  const target = await cl.add('target')
  await Promise.all([cl.start(source), cl.start(target)])
  const ruleId = await cl.addRule(source, { from: { platform: 'source', collection: 'live' }, to: { platform: 'target', collection: 'live' } })
  await target.addPeer(source.multiaddr)
  await settle(cl, [source, target], target, ruleId)
  const r = await sample(cl.client(source), cl.client(target), sizes)
  ctx.log(`    1 hop: p50 ${quantile(r.latency, 0.5).toFixed(2)} ms, p99 ${quantile(r.latency, 0.99).toFixed(2)} ms over ${r.latency.length} samples`)
  return r
}

async function chainHops (ctx: Context, sizes: { latencySamples: number, latencyIntervalMs: number, chainHops: number }): Promise<Samples> {
  const cl = await ctx.cluster('chain')
  const nodes: NodeProcess[] = []
  for (let i = 0; i <= sizes.chainHops; i++) nodes.push(await cl.add(`hop${i}`))
  await Promise.all(nodes.map(async n => await cl.start(n)))
  for (let i = 1; i < nodes.length; i++) await nodes[i].addPeer(nodes[i - 1].multiaddr)
  const first = nodes[0]
  const last = nodes[nodes.length - 1]
  const ruleId = await cl.addRule(first, { from: { platform: first.name, collection: 'live' }, to: { platform: last.name, collection: 'live' } })
  await settle(cl, nodes, last, ruleId)
  const r = await sample(cl.client(first), cl.client(last), sizes)
  ctx.log(`    ${sizes.chainHops} hops: p50 ${quantile(r.latency, 0.5).toFixed(2)} ms, p99 ${quantile(r.latency, 0.99).toFixed(2)} ms over ${r.latency.length} samples`)
  return r
}

/** Wait until every link is authenticated, the sink knows its rule, and everything is quiet. */
async function settle (cl: BenchCluster, nodes: NodeProcess[], sink: NodeProcess, ruleId: string): Promise<void> {
  await until(async () => {
    const statuses = await Promise.all(nodes.map(async n => await cl.status(n)))
    const linksOk = statuses.every((s, i) => authenticatedPeers(s) >= (i === 0 || i === nodes.length - 1 ? 1 : 2))
    return linksOk && ruleActive(await cl.status(sink), ruleId) && statuses.every(s => s.caughtUp)
  }, 'the nodes to connect and the rule to reach the target', 60_000, 100)
}

async function probeUntilReadable (tc: FastClient, id: string, tPut: number, pollRtt: number[]): Promise<{ latency: number, polls: number }> {
  let polls = 0
  for (;;) {
    const tq = now()
    const status = await tc.probe('live', id)
    const tr = now()
    polls++
    pollRtt.push(tr - tq)
    if (status === 200) return { latency: tr - tPut, polls }
    if (status !== 404) throw new Error(`GET live/${id} on the target answered ${status}`)
    if (tr - tPut > 10_000) throw new Error(`record live/${id} did not reach the target within 10 s`)
  }
}

async function sample (sc: FastClient, tc: FastClient, sizes: { latencySamples: number, latencyIntervalMs: number }): Promise<Samples> {
  const out: Samples = { latency: [], polls: [], pollRtt: [], putRtt: [] }
  // warm-up (not counted): code paths, sockets, the rule's first application
  const scratch: number[] = []
  for (let i = 0; i < 20; i++) {
    await sc.put('live', `warm${i}`, recordValue(i))
    await probeUntilReadable(tc, `warm${i}`, now(), scratch)
    await sleep(sizes.latencyIntervalMs)
  }
  const base = now()
  for (let i = 0; i < sizes.latencySamples; i++) {
    const due = base + i * sizes.latencyIntervalMs
    const wait = due - now()
    if (wait > 0) await sleep(wait)
    const id = `s${i}`
    const t0 = now()
    await sc.put('live', id, recordValue(i))
    const tPut = now()
    out.putRtt.push(tPut - t0)
    const r = await probeUntilReadable(tc, id, tPut, out.pollRtt)
    out.latency.push(r.latency)
    out.polls.push(r.polls)
  }
  return out
}
