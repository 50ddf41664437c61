/**
 * Mesh scenarios with real node processes on loopback: multi-hop
 * store-and-forward, a ring, partition and heal, lazy push when the eager
 * relay dies, kill -9 during catch-up,
 * an offline node catching up while `syncmesh wait` reports progress, and the
 * connection cap in a mesh where every node knows every other.
 */
import { createHash } from 'node:crypto'
import { rm } from 'node:fs/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { makeNdjson, NodeProcess, runCli, tempDir, waitFor } from '../../scripts/lib/cluster.js'

const KEY = '3b9e0c1d2a4f6e8b7c5d3e1f0a9b8c7d6e'
/** Registry discovery off: only the links a test makes exist. */
const NO_DISCOVERY = ['--target-peers', '0']

let procs: NodeProcess[] = []
let parents: string[] = []

async function cluster (names: string[], options: { regions?: string[] } = {}): Promise<NodeProcess[]> {
  const parent = await tempDir()
  parents.push(parent)
  const out: NodeProcess[] = []
  for (let i = 0; i < names.length; i++) {
    const region = options.regions?.[i]
    out.push(await NodeProcess.create(names[i], KEY, { parent, ...(region !== undefined ? { region } : {}) }))
  }
  procs.push(...out)
  return out
}

/**
 * How far `node` holds each of `origin`'s logs: its whole log and, with rule streams, its rule streams
 * (`<peer id>/r.…`), which carry the records a whole log carries without streams.
 */
async function originLogs (node: NodeProcess, origin: string): Promise<Map<string, number>> {
  const s = await node.status()
  return new Map((s.origins as Array<{ origin: string, seq: number }>)
    .filter(o => o.origin === origin || o.origin.startsWith(`${origin}/`))
    .map(o => [o.origin, o.seq]))
}

/** How many entries `node` holds of `origin`'s logs, all together. */
async function originSeq (node: NodeProcess, origin: string): Promise<number> {
  return [...(await originLogs(node, origin)).values()].reduce((sum, seq) => sum + seq, 0)
}

/** `node` holds each of `origin`'s logs at least as far as `heads` says. */
async function holds (node: NodeProcess, origin: string, heads: Map<string, number>): Promise<boolean> {
  const held = await originLogs(node, origin)
  return [...heads].every(([log, seq]) => (held.get(log) ?? 0) >= seq)
}

function digest (records: Map<string, unknown>): string {
  const h = createHash('sha256')
  for (const id of [...records.keys()].sort()) h.update(id).update('\0').update(JSON.stringify(records.get(id))).update('\n')
  return h.digest('hex')
}

afterEach(async () => {
  await Promise.all(procs.map(async p => await p.kill()))
  for (const d of parents) await rm(d, { recursive: true, force: true })
  procs = []
  parents = []
})

describe('gossip mesh', () => {
  it('store-and-forward: a target two hops away that was offline gets everything from a stopped origin', async () => {
    const [origin, r1, r2, target] = await cluster(['origin', 'relay1', 'relay2', 'target'])
    for (const n of [origin, r1, r2, target]) await n.start(NO_DISCOVERY)
    await r1.addPeer(origin.multiaddr)
    await r2.addPeer(r1.multiaddr)
    await target.addPeer(r2.multiaddr)
    await origin.knows(['target'])
    expect(await target.stop()).toBe(0)
    await origin.addRule({ from: { platform: 'origin', collection: 'items' }, to: { platform: 'target', collection: 'items' } })
    expect(await origin.importNdjson('items', makeNdjson(2000, 'i'))).toBe(2000)
    const heads = await originLogs(origin, origin.peerId)
    await waitFor(async () => await holds(r2, origin.peerId, heads), 'relay2 to hold the origin\'s logs')
    await origin.stop() // for good

    await target.start(NO_DISCOVERY)
    await target.addPeer(r2.multiaddr)
    await waitFor(async () => await target.count('items') === 2000, 'target to hold 2000 items')
    const status = await target.status()
    expect(status.peers.filter((p: { connected: boolean }) => p.connected)).toHaveLength(1)
  }, 120_000)

  // whole-log relay mechanics: a node the origin never knew reads its whole log from the relays; with rule streams
  // a stream is read with a key its origin seals to targets it knows (the test above, and e2e-streams with alpha gone)
  it('store-and-forward: a new node two hops away gets everything from a stopped origin', async () => {
    const WHOLE_LOG = { env: { SYNCMESH_STREAMS: '0' } }
    const [origin, r1, r2] = await cluster(['origin', 'relay1', 'relay2'])
    for (const n of [origin, r1, r2]) await n.start(NO_DISCOVERY, WHOLE_LOG)
    await r1.addPeer(origin.multiaddr)
    await r2.addPeer(r1.multiaddr)
    const target = await NodeProcess.create('target', KEY, { parent: parents[0] })
    procs.push(target)
    await origin.addRule({ from: { platform: 'origin', collection: 'items' }, to: { platform: 'target', collection: 'items' } })
    expect(await origin.importNdjson('items', makeNdjson(2000, 'i'))).toBe(2000)
    const heads = await originLogs(origin, origin.peerId)
    await waitFor(async () => await holds(r2, origin.peerId, heads), 'relay2 to hold the origin log')
    await origin.stop() // for good

    await target.start(NO_DISCOVERY, WHOLE_LOG)
    await target.addPeer(r2.multiaddr)
    await waitFor(async () => await target.count('items') === 2000, 'target to hold 2000 items')
    const status = await target.status()
    expect(status.peers.filter((p: { connected: boolean }) => p.connected)).toHaveLength(1)
  }, 120_000)

  it('a ring of 6: the sixth node holds every record; every registry is complete', async () => {
    const nodes = await cluster(['n0', 'n1', 'n2', 'n3', 'n4', 'n5'])
    for (const n of nodes) await n.start(NO_DISCOVERY)
    for (let i = 0; i < 6; i++) await nodes[i].addPeer(nodes[(i + 1) % 6].multiaddr)
    for (let i = 1; i < 6; i++) {
      await nodes[i].addRule({ from: { platform: `n${i}`, collection: 'readings' }, to: { platform: 'n0', collection: 'all' } })
      expect(await nodes[i].importNdjson('readings', makeNdjson(200, `n${i}-`))).toBe(200)
    }
    await waitFor(async () => await nodes[0].count('all') === 1000, 'n0 to hold all 1000 records')
    for (const n of nodes) {
      await waitFor(async () => {
        const p = await n.request<unknown[]>('GET', '/v1/platforms')
        const r = await n.request<unknown[]>('GET', '/v1/rules')
        return p.body.length === 6 && r.body.length === 5
      }, `${n.name} to list 6 platforms and 5 rules`)
      const s = await n.status()
      expect(s.peers.filter((p: { connected: boolean }) => p.connected).length).toBeLessThanOrEqual(2)
    }
  }, 120_000)

  it('partition and heal: both sides write, then every node converges', async () => {
    const [a, b, c, d, e] = await cluster(['a', 'b', 'c', 'd', 'e'])
    for (const n of [a, b, c, d, e]) await n.start(NO_DISCOVERY)
    // side 1: a-b, side 2: c-d-e, bridge b-c
    await a.addPeer(b.multiaddr)
    await d.addPeer(c.multiaddr)
    await e.addPeer(d.multiaddr)
    await b.addPeer(c.multiaddr)
    const rules = [
      await a.addRule({ from: { platform: 'a', collection: 'notes' }, to: { platform: 'e', collection: 'from-a' } }),
      await e.addRule({ from: { platform: 'e', collection: 'notes' }, to: { platform: 'a', collection: 'from-e' } }),
      await c.addRule({ from: { platform: 'c', collection: 'notes' }, to: { platform: 'b', collection: 'from-c' } })
    ]
    await waitFor(async () => (await a.request<unknown[]>('GET', '/v1/rules')).body.length === 3 && (await e.request<unknown[]>('GET', '/v1/rules')).body.length === 3, 'rules everywhere')

    // split
    const rm = await b.request('DELETE', `/v1/peers/${c.peerId}`)
    expect(rm.status).toBe(200)
    await waitFor(async () => (await b.status()).peers.every((p: { peerId: string, connected: boolean }) => p.peerId !== c.peerId || !p.connected), 'the bridge to drop')
    await a.importNdjson('notes', makeNdjson(300, 'a'))
    await e.importNdjson('notes', makeNdjson(300, 'e'))
    await c.importNdjson('notes', makeNdjson(300, 'c'))
    await a.put('notes', 'a00000001', { edited: 'during the partition' })
    await new Promise(resolve => setTimeout(resolve, 1000))
    expect(await e.count('from-a')).toBe(0)

    // heal
    await b.addPeer(c.multiaddr)
    await waitFor(async () => await e.count('from-a') === 300 && await a.count('from-e') === 300 && await b.count('from-c') === 300, 'targets to converge')
    expect(digest(await e.all('from-a'))).toBe(digest(await a.all('notes')))
    expect(digest(await a.all('from-e'))).toBe(digest(await e.all('notes')))
    expect(digest(await b.all('from-c'))).toBe(digest(await c.all('notes')))
    // and every node holds every origin's log to the same version
    const heads = await Promise.all([a, b, c, d, e].map(async n => (await n.status()).origins.map((o: { origin: string, seq: number }) => `${o.origin}:${o.seq}`).sort().join(',')))
    await waitFor(async () => {
      const now = await Promise.all([a, b, c, d, e].map(async n => (await n.status()).origins.map((o: { origin: string, seq: number }) => `${o.origin}:${o.seq}`).sort().join(',')))
      return new Set(now).size === 1
    }, `all logs to converge (was ${new Set(heads).size} distinct)`)
    expect(rules).toHaveLength(3)
  }, 120_000)

  it('lazy push: when the relay that pushes an origin eagerly dies, the one that pushed it lazily delivers', async () => {
    // a square: origin — b — d and origin — c — d; d gets the origin's records over two paths
    const [origin, b, c, d] = await cluster(['origin', 'b', 'c', 'd'])
    for (const n of [origin, b, c, d]) await n.start(NO_DISCOVERY)
    await b.addPeer(origin.multiaddr)
    await c.addPeer(origin.multiaddr)
    await d.addPeer(b.multiaddr)
    await d.addPeer(c.multiaddr)
    // the origin's records go to d: in its whole log, or with rule streams in the rule's stream
    await origin.knows(['b', 'c', 'd'])
    await origin.addRule({ from: { platform: 'origin', collection: 'items' }, to: { platform: 'd', collection: 'items' } })
    const received = async (): Promise<Map<string, number>> => new Map((await d.status()).peers.map((p: { peerId: string, entriesReceived: number }) => [p.peerId, p.entriesReceived]))
    const importAndWait = async (prefix: string, n = 1000): Promise<void> => {
      await origin.importNdjson('items', makeNdjson(n, prefix))
      const heads = await originLogs(origin, origin.peerId)
      await waitFor(async () => await holds(d, origin.peerId, heads), `d to hold the origin's logs up to ${[...heads.values()].join(', ')}`)
    }
    // the first import reaches d twice over: d answers the later copies with Have, and that relay
    // pushes the origin to d lazily from then on (protocols/sync §6.2)
    await importAndWait('one')
    const before = await received()
    // a smaller second import: what d has not announced within LAZY_PUSH_MS the lazy relay pushes, and on a
    // loaded machine d's backlog of a larger one can take that long
    await importAndWait('two', 300)
    const after = await received()
    const delivered = (peer: string): number => (after.get(peer) ?? 0) - (before.get(peer) ?? 0)
    const [eager, lazy] = delivered(b.peerId) >= delivered(c.peerId) ? [b, c] : [c, b]
    console.log(`[measure] second import of 300: ${delivered(eager.peerId)} entries through the eager relay, ${delivered(lazy.peerId)} through the lazy one`)
    // the second import came (almost all) over one path: the other relay had been pruned
    expect(delivered(lazy.peerId) + delivered(eager.peerId)).toBe(300)
    expect(delivered(lazy.peerId)).toBeLessThanOrEqual(75)
    // the eager relay dies; the lazy one sends what d does not announce within LAZY_PUSH_MS, then eagerly again
    await eager.kill()
    const t0 = Date.now()
    const lazyBefore = (await received()).get(lazy.peerId) ?? 0
    await importAndWait('three')
    expect((await received()).get(lazy.peerId)).toBeGreaterThanOrEqual(lazyBefore + 1000)
    console.log(`[measure] after the eager relay died, d received 1000 entries through the lazy one in ${Date.now() - t0} ms`)
  }, 90_000)

  it('kill -9 of the target during a 50,000-record catch-up loses and duplicates nothing', async () => {
    const [source, target] = await cluster(['source', 'target'])
    await source.start(NO_DISCOVERY)
    await target.start(NO_DISCOVERY)
    await target.addPeer(source.multiaddr)
    const rule = await source.addRule({ from: { platform: 'source', collection: 'bulk' }, to: { platform: 'target', collection: 'bulk' } })
    await waitFor(async () => (await target.request<unknown[]>('GET', '/v1/rules')).body.length === 1, 'the rule to reach the target')
    await target.stop()
    for (let i = 0; i < 5; i++) await source.importNdjson('bulk', makeNdjson(10_000, 'b', i * 10_000))
    await target.start(NO_DISCOVERY)
    await waitFor(async () => await originSeq(target, source.peerId) > 5_000, 'the catch-up to be under way', 60_000, 20)
    const seqAtKill = await originSeq(target, source.peerId)
    await target.kill()
    expect(seqAtKill).toBeLessThan(50_000)
    await target.start(NO_DISCOVERY)
    await waitFor(async () => await target.count('bulk') === 50_000, 'the target to hold all 50,000 records', 120_000, 250)
    expect(digest(await target.all('bulk'))).toBe(digest(await source.all('bulk')))
    const status = await target.status()
    const rs = (status.rules as Array<{ id: string, applied: number }>).find(r => r.id === rule.id)
    expect(rs?.applied).toBe(50_000) // each entry applied exactly once
  }, 240_000)

  it('an offline node catches up 20,000 records while `wait` reports progress', async () => {
    const [source, target] = await cluster(['source', 'target'])
    await source.start(NO_DISCOVERY)
    await target.start(NO_DISCOVERY)
    await target.addPeer(source.multiaddr)
    await source.addRule({ from: { platform: 'source', collection: 'events' }, to: { platform: 'target', collection: 'events' } })
    await waitFor(async () => (await target.request<unknown[]>('GET', '/v1/rules')).body.length === 1, 'the rule to reach the target')
    await target.stop()
    for (let i = 0; i < 2; i++) await source.importNdjson('events', makeNdjson(10_000, 'e', i * 10_000))
    await target.start(NO_DISCOVERY)
    const t0 = performance.now()
    const waited = await runCli(['wait', '--timeout', '120', '--data', target.dir])
    const seconds = (performance.now() - t0) / 1000
    expect(waited.code, waited.stderr).toBe(0)
    // caught up means caught up: every record is there when wait returns
    expect(await target.count('events')).toBe(20_000)
    // progress is shown while there is any to show: a catch-up that ends before the wait command has
    // started (the node redials at once and takes in ~25,000 records/s) leaves nothing to report
    if (!/^caught up .* after 0s/m.test(waited.stdout)) expect(waited.stderr).toMatch(/behind|lag|%/i)
    console.log(`[measure] offline catch-up of 20,000 records (start of wait until caught up): ${seconds.toFixed(2)} s, ${(20_000 / seconds).toFixed(0)} records/s`)
  }, 180_000)

  it('keeps connections within the maximum in a 12-node mesh where every node knows every other', async () => {
    const names = Array.from({ length: 12 }, (_, i) => `m${i}`)
    const regions = names.map((_, i) => ['eu', 'us', 'ap'][i % 3])
    const nodes = await cluster(names, { regions })
    const MAX = 4
    for (const n of nodes) await n.start(['--target-peers', '3', '--max-peers', String(MAX)])
    // every node is told every other node's address (persisted peers, redialled): kept with "save"
    // even where the proof of the key over it does not finish (a peer at its maximum may close it)
    for (const n of nodes) {
      await Promise.all(nodes.filter(other => other !== n).map(async other => await n.request('POST', '/v1/peers', { multiaddr: other.multiaddr, save: true })))
    }
    try {
      await waitFor(async () => (await Promise.all(nodes.map(async n => (await n.request<unknown[]>('GET', '/v1/platforms')).body.length))).every(c => c === 12), 'every registry to list 12 platforms', 120_000, 500)
    } catch (err) {
      // seen once under a fully loaded CI run (22-30 s otherwise): say which nodes lagged and what they logged
      for (const n of nodes) {
        const count = (await n.request<unknown[]>('GET', '/v1/platforms')).body.length
        if (count === 12) continue
        const peers = (await n.status()).peers.filter((p: { connected: boolean }) => p.connected).length
        console.error(`${n.name}: ${count} platforms, ${peers} connected peers; last warnings:\n${n.stderr.split('\n').filter(l => /"level":(40|50)/.test(l)).slice(-8).join('\n')}`)
      }
      throw err
    }
    for (let round = 0; round < 10; round++) {
      for (const n of nodes) {
        const s = await n.status()
        // the maximum is on peers that proved the mesh key (connections still at the door have their own budget)
        const connected = s.peers.filter((p: { authenticated: boolean }) => p.authenticated).length
        expect(connected, `${n.name} has ${connected} connections`).toBeLessThanOrEqual(MAX)
      }
      await new Promise(resolve => setTimeout(resolve, 300))
    }
    // and the mesh still carries data end to end
    await nodes[5].addRule({ from: { platform: 'm5', collection: 'x' }, to: { platform: 'm11', collection: 'x' } })
    await nodes[5].put('x', '1', { hello: 'mesh' })
    await waitFor(async () => (await nodes[11].get('x', '1'))?.hello === 'mesh', 'a record to cross the capped mesh', 60_000)
  }, 180_000)
})
