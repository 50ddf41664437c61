/**
 * 2. Live latency. Nodes connected and idle; single PUTs on the source,
 * started 20 ms apart (the next PUT waits for the previous sample to finish
 * if it took longer). A sample is the time from the PUT's response arriving
 * (the API call returning on the source) until the record is readable on
 * the target.
 *
 * "Readable" is observed two ways, in two separate phases on the same nodes:
 *
 *  - feed (the headline figures): the bench follows the target's changes
 *    feed (GET /v1/changes?follow=true&collection=live), which the node
 *    pushes a line to when the change commits; the sample ends when the
 *    line for that record arrives. No polling load on the target. The feed
 *    line is written after the commit, so this is the moment a GET would
 *    first succeed, plus one read of the feed and one loopback write.
 *    (It can in principle be ≤ 0, if the change reached the target before
 *    the source's HTTP response reached the bench.)
 *  - poll (cross-check, and the fallback for a node without a feed): right
 *    after the PUT returns, GET the record on the target in a tight loop, one
 *    request at a time on a keep-alive node:http socket, until it answers
 *    200. Resolution is one GET round trip (reported as "poll round trip",
 *    ~0.4 ms idle): the figure is an upper bound, and the polling costs the
 *    target CPU while it waits.
 *
 * One hop: source → target. Chain: hop0 → hop1 → … → hop4 in a line
 * (--target-peers 0, so only the chain links exist), the rule from hop0 to
 * hop4, so every entry is stored and forwarded by three relays.
 */
import type { NodeProcess } from '../../lib/cluster.js'
import { recordValue } from '../data.js'
import type { BenchCluster } from '../env.js'
import { authenticatedPeers, now, ruleActive, sleep, until } from '../env.js'
import { FeedFollower } from '../http.js'
import type { FastClient } from '../http.js'
import { median, quantile } from '../stats.js'
import type { Context, FigureDef, Workload } from '../types.js'

interface LatencySizes { latencySamples: number, latencyIntervalMs: number, chainHops: number }

export function latencyWorkload (sizes: LatencySizes): Workload {
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
    { id: 'latency.hop1.poll_p50_ms', workload: w, label: '1 hop, GET polling: p50', unit: 'ms', digits: 2 },
    { id: 'latency.hop1.poll_p99_ms', workload: w, label: '1 hop, GET polling: p99', unit: 'ms', digits: 2 },
    { id: `latency.hop${hops}.poll_p50_ms`, workload: w, label: `${hops} hops, GET polling: p50`, unit: 'ms', digits: 2 },
    { id: `latency.hop${hops}.poll_p99_ms`, workload: w, label: `${hops} hops, GET polling: p99`, unit: 'ms', digits: 2 },
    { id: 'latency.poll_rtt_ms', workload: w, label: 'probe: GET round trip on the target', unit: 'ms', digits: 2 },
    { id: 'latency.put_rtt_ms', workload: w, label: 'probe: PUT round trip on the source', unit: 'ms', digits: 2 }
  ]
  return {
    name: 'latency',
    title: 'Live change latency',
    figures,
    async run (ctx) {
      const values: Record<string, number> = {}
      const info: Record<string, unknown> = {}
      const pollRtt: number[] = []
      const putRtt: number[] = []
      for (const key of ['hop1', `hop${hops}`]) {
        const r = key === 'hop1' ? await oneHop(ctx, sizes) : await chain(ctx, sizes)
        const primary = r.feed ?? r.poll
        values[`latency.${key}.p50_ms`] = quantile(primary.latency, 0.5)
        values[`latency.${key}.p95_ms`] = quantile(primary.latency, 0.95)
        values[`latency.${key}.p99_ms`] = quantile(primary.latency, 0.99)
        values[`latency.${key}.max_ms`] = Math.max(...primary.latency)
        values[`latency.${key}.poll_p50_ms`] = quantile(r.poll.latency, 0.5)
        values[`latency.${key}.poll_p99_ms`] = quantile(r.poll.latency, 0.99)
        pollRtt.push(...r.poll.pollRtt)
        putRtt.push(...r.poll.putRtt, ...(r.feed?.putRtt ?? []))
        info[`${key}.probe`] = r.feed !== undefined ? 'changes feed' : `GET polling (no feed: ${r.feedError ?? ''})`
        info[`${key}.samples`] = primary.latency.length
        info[`${key}.poll_mean_gets_per_sample`] = r.poll.polls.reduce((a, b) => a + b, 0) / r.poll.polls.length
        if (r.feed !== undefined) info[`${key}.feed_samples_at_or_below_0ms`] = r.feed.latency.filter(x => x <= 0).length
      }
      values['latency.poll_rtt_ms'] = median(pollRtt)
      values['latency.put_rtt_ms'] = median(putRtt)
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

interface Measured { feed?: Samples, feedError?: string, poll: Samples }

async function oneHop (ctx: Context, sizes: LatencySizes): Promise<Measured> {
  const cl = await ctx.cluster('latency')
  const source = await cl.add('source')
  const target = await cl.add('target')
  await Promise.all([cl.start(source), cl.start(target)])
  const ruleId = await cl.addRule(source, { from: { platform: 'source', collection: 'live' }, to: { platform: 'target', collection: 'live' } })
  await target.addPeer(source.multiaddr)
  await settle(cl, [source, target], target, ruleId)
  return await measure(ctx, '1 hop', cl, source, target, sizes)
}

async function chain (ctx: Context, sizes: LatencySizes): Promise<Measured> {
  const cl = await ctx.cluster('chain')
  const nodes: NodeProcess[] = []
  for (let i = 0; i <= sizes.chainHops; i++) nodes.push(await cl.add(`hop${i}`))
  await Promise.all(nodes.map(async n => await cl.start(n)))
  for (let i = 1; i < nodes.length; i++) await nodes[i].addPeer(nodes[i - 1].multiaddr)
  const first = nodes[0]
  const last = nodes[nodes.length - 1]
  const ruleId = await cl.addRule(first, { from: { platform: first.name, collection: 'live' }, to: { platform: last.name, collection: 'live' } })
  await settle(cl, nodes, last, ruleId)
  return await measure(ctx, `${sizes.chainHops} hops`, cl, first, last, sizes)
}

/** Both phases on one set of nodes: the feed first (ids f…), then GET polling (ids p…). */
async function measure (ctx: Context, what: string, cl: BenchCluster, source: NodeProcess, sink: NodeProcess, sizes: LatencySizes): Promise<Measured> {
  const sc = cl.client(source)
  const tc = cl.client(sink)
  const out: Measured = { poll: { latency: [], polls: [], pollRtt: [], putRtt: [] } }
  const feed = new FeedFollower()
  try {
    await feed.open(sink.api, sink.token, 'live')
    const probe = async (id: string, tPut: number): Promise<{ latency: number, polls: number }> => ({ latency: await feed.arrival(id, 10_000) - tPut, polls: 0 })
    out.feed = await sample(sc, 'f', probe, sizes)
  } catch (err) {
    out.feedError = (err as Error).message
    ctx.log(`    ${what}: the changes feed is not usable (${out.feedError}); measuring with GET polling only`)
  } finally {
    feed.close()
  }
  out.poll = await sample(sc, 'p', async (id, tPut) => await pollUntilReadable(tc, id, tPut, out.poll.pollRtt), sizes, out.poll)
  const p = (xs: number[], q: number): string => quantile(xs, q).toFixed(2)
  ctx.log(`    ${what}: ${out.feed !== undefined ? `feed p50 ${p(out.feed.latency, 0.5)} ms, p99 ${p(out.feed.latency, 0.99)} ms; ` : ''}GET polling p50 ${p(out.poll.latency, 0.5)} ms, p99 ${p(out.poll.latency, 0.99)} ms (${out.poll.latency.length} samples each)`)
  return out
}

/** Wait until every link is authenticated, the sink knows its rule, and everything is quiet. */
async function settle (cl: BenchCluster, nodes: NodeProcess[], sink: NodeProcess, ruleId: string): Promise<void> {
  await until(async () => {
    const statuses = await Promise.all(nodes.map(async n => await cl.status(n)))
    const linksOk = statuses.every((s, i) => authenticatedPeers(s) >= (i === 0 || i === nodes.length - 1 ? 1 : 2))
    return linksOk && ruleActive(await cl.status(sink), ruleId) && statuses.every(s => s.caughtUp)
  }, 'the nodes to connect and the rule to reach the target', 60_000, 100)
}

async function pollUntilReadable (tc: FastClient, id: string, tPut: number, pollRtt: number[]): Promise<{ latency: number, polls: number }> {
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

async function sample (sc: FastClient, prefix: string, probe: (id: string, tPut: number) => Promise<{ latency: number, polls: number }>, sizes: LatencySizes, into?: Samples): Promise<Samples> {
  const out: Samples = into ?? { latency: [], polls: [], pollRtt: [], putRtt: [] }
  // warm-up (not counted): code paths, sockets, the rule's first application
  for (let i = 0; i < 20; i++) {
    await sc.put('live', `${prefix}warm${i}`, recordValue(i))
    await probe(`${prefix}warm${i}`, now())
    await sleep(sizes.latencyIntervalMs)
  }
  out.pollRtt.length = 0
  const base = now()
  for (let i = 0; i < sizes.latencySamples; i++) {
    const due = base + i * sizes.latencyIntervalMs
    const wait = due - now()
    if (wait > 0) await sleep(wait)
    const id = `${prefix}${i}`
    const t0 = now()
    await sc.put('live', id, recordValue(i))
    const tPut = now()
    out.putRtt.push(tPut - t0)
    const r = await probe(id, tPut)
    out.latency.push(r.latency)
    out.polls.push(r.polls)
  }
  return out
}
