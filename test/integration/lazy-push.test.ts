/**
 * Lazy push (protocols/sync §6.2) against a peer played by hand: a relay
 * holds back an origin it pushes lazily while the peer shows it is getting
 * that origin elsewhere (Haves that raise what it holds), and pushes once
 * the peer falls silent; and a node that accepts a run tells the peers that
 * hold more of that origin that it progresses. Real nodes, real libp2p over
 * loopback TCP. The origin's records travel in its whole log, or with rule
 * streams in the stream of the rule that sends them: lazy push works per log.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { VersionVector } from '../../src/log/vector.js'
import { LAZY_PUSH_MS } from '../../src/network/sync/session.js'
import { encodeCredit, encodeHave } from '../../src/network/sync/codec.js'
import { SYNC_PROTOCOL, SYNC_PROTOCOL_STREAMS } from '../../src/network/constants.js'
import { ruleStreamId } from '../../src/rules/stream-plan.js'
import type { SyncNode } from '../../src/node/node.js'
import { eventually, KEY, removeDir, startNode } from '../helpers/nodes.js'
import type { TestNode } from '../helpers/nodes.js'
import { RawPeer } from '../helpers/raw-peer.js'
import type { RawSession } from '../helpers/raw-peer.js'

const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

async function held (node: SyncNode, origin: string): Promise<number> {
  return (await node.status()).origins.find(o => o.origin === origin)?.seq ?? 0
}

async function importRecords (node: SyncNode, prefix: string, n: number): Promise<void> {
  await node.records.import('items', Array.from({ length: n }, (_, i) => ({ id: `${prefix}${i}`, value: { n: i, text: 'x'.repeat(100) } })))
}

/** The batches of `origin` the node sent in a raw session (each credited, so the node never runs dry). */
function batchesOf (s: RawSession, origin: string): Array<{ at: number, fromSeq: number, toSeq: number }> {
  const out: Array<{ at: number, fromSeq: number, toSeq: number }> = []
  for (const { at, msg } of s.received) if (msg.type === 'batch' && msg.origin === origin) out.push({ at, fromSeq: msg.fromSeq, toSeq: msg.toSeq })
  return out
}

/**
 * Send the origin's records to the relay by a rule (O:items → U:items); returns the log that carries them (the
 * origin's whole log, or with rule streams the rule's stream) and the sync protocol a peer speaks to the relay.
 */
async function carrier (origin: SyncNode, relay: SyncNode): Promise<{ log: string, protocol: string }> {
  const rule = await origin.registry.addRule({ from: { platform: origin.name, collection: 'items' }, to: { platform: relay.name, collection: 'items' } })
  if ((await origin.status()).streams !== true) return { log: origin.peerId, protocol: SYNC_PROTOCOL }
  return { log: `${origin.peerId}/${ruleStreamId(rule)}`, protocol: SYNC_PROTOCOL_STREAMS }
}

function creditEveryBatch (s: RawSession): () => void {
  let seen = 0
  const timer = setInterval(() => {
    const n = s.received.filter(r => r.msg.type === 'batch').length
    if (n > seen) s.framed.sendNow(encodeCredit(n - seen))
    seen = n
  }, 20)
  return () => clearInterval(timer)
}

describe('lazy push', () => {
  const nodes: TestNode[] = []
  const peers: RawPeer[] = []
  const stops: Array<() => void> = []
  afterEach(async () => {
    for (const stop of stops.splice(0)) stop()
    for (const p of peers.splice(0)) await p.stop().catch(() => {})
    for (const n of nodes.splice(0)) {
      await n.node.stop().catch(() => {})
      await removeDir(n.dir)
    }
  })

  /** O → relay U, and a peer played by hand linked to U that says it got O's first run elsewhere: U pushes O to it lazily. */
  async function lazyLink (): Promise<{ origin: TestNode, relay: TestNode, s: RawSession, O: string, first: number }> {
    const origin = await startNode('O')
    const relay = await startNode('U')
    nodes.push(origin, relay)
    await relay.node.peers.add(origin.node.getMultiaddrs()[0])
    const { log: O, protocol } = await carrier(origin.node, relay.node)
    await importRecords(origin.node, 'a', 100)
    const first = await held(origin.node, O)
    await eventually(async () => await held(relay.node, O) === first, 'the relay to hold the origin\'s first run')
    const peer = new RawPeer(KEY)
    peers.push(peer)
    await peer.start()
    const s = await peer.session(relay.node.getMultiaddrs()[0], { credit: 64, protocol })
    stops.push(creditEveryBatch(s))
    // pushed at once: the peer is told everything the relay holds of O
    await eventually(() => batchesOf(s, O).some(b => b.toSeq === first), 'the relay to push O\'s first run')
    // the peer says it got O's run elsewhere first (a Have at or below what the relay sent): lazy from now on
    s.framed.sendNow(encodeHave(O, first))
    await sleep(100)
    return { origin, relay, s, O, first }
  }

  /** Write a run on O and wait until the relay holds it; returns its end. */
  async function nextRun (t: { origin: TestNode, relay: TestNode, O: string }, prefix: string): Promise<number> {
    await importRecords(t.origin.node, prefix, 100)
    const end = await held(t.origin.node, t.O)
    await eventually(async () => await held(t.relay.node, t.O) === end, `the relay to hold O up to ${end}`)
    return end
  }

  /** Announce progress on O (as if fed by another path) every LAZY_PUSH_MS / 6 for `ms`; returns the last seq announced. */
  async function progressFor (s: RawSession, O: string, from: number, ms: number): Promise<number> {
    const since = Date.now()
    let progress = from
    while (Date.now() - since < ms) {
      s.framed.sendNow(encodeHave(O, ++progress))
      await sleep(LAZY_PUSH_MS / 6)
    }
    return progress
  }

  it('a relay holds an origin back from a peer that keeps progressing on it elsewhere, and pushes once it stalls', async () => {
    const t = await lazyLink()
    const { s, O, first } = t
    const second = await nextRun(t, 'b')
    // the peer keeps announcing progress on O (through the other path, behind the relay): for more
    // than LAZY_PUSH_MS the relay must not push it the runs it holds back
    const progress = await progressFor(s, O, first, LAZY_PUSH_MS * 1.7)
    expect(batchesOf(s, O).filter(b => b.toSeq > first)).toEqual([])
    // silent from now on: within LAZY_PUSH_MS (and the sender's check interval) the relay pushes the rest
    const silentSince = Date.now()
    await eventually(() => batchesOf(s, O).some(b => b.toSeq === second), 'the relay to push O\'s second run lazily once the peer stalls', LAZY_PUSH_MS * 3)
    const pushed = batchesOf(s, O).filter(b => b.toSeq > first)
    // (a batch starts where a signed run starts: the run may reach back below what the peer announced)
    expect(pushed[0].fromSeq).toBeLessThanOrEqual(progress)
    expect(pushed[0].at - silentSince).toBeGreaterThanOrEqual(LAZY_PUSH_MS - 1000)
  }, 60_000)

  it('after a lazy push the link stays lazy if the peer progresses from elsewhere again, and turns eager if it does not', async () => {
    const t = await lazyLink()
    const { s, O } = t
    // the peer stalls: the relay pushes the second run lazily
    const second = await nextRun(t, 'b')
    await eventually(() => batchesOf(s, O).some(b => b.toSeq === second), 'the lazy push of the second run', LAZY_PUSH_MS * 3)
    // then the peer progresses from elsewhere again: the relay stays lazy and holds the third run back
    const progressSince = Date.now()
    const third = await nextRun(t, 'c')
    await progressFor(s, O, second, LAZY_PUSH_MS * 1.7)
    expect(batchesOf(s, O).filter(b => b.toSeq > second), `pushed within ${Date.now() - progressSince} ms of progress`).toEqual([])
    // silent again: one more lazy push, and with still no progress from elsewhere LAZY_PUSH_MS later the
    // link turns eager: a new run then goes at once
    await eventually(() => batchesOf(s, O).some(b => b.toSeq === third), 'the lazy push of the third run', LAZY_PUSH_MS * 3)
    await sleep(LAZY_PUSH_MS + 1000)
    const fourth = await nextRun(t, 'd')
    const heldAt = Date.now()
    await eventually(() => batchesOf(s, O).some(b => b.toSeq === fourth), 'the eager push of the fourth run', LAZY_PUSH_MS * 3)
    const pushed = batchesOf(s, O).find(b => b.toSeq === fourth) as { at: number }
    expect(pushed.at - heldAt).toBeLessThan(LAZY_PUSH_MS / 2)
  }, 60_000)

  it('a node that accepts a run tells the peers holding more of that origin, at a bounded rate', async () => {
    const origin = await startNode('O')
    const relay = await startNode('U')
    nodes.push(origin, relay)
    const { log: O, protocol } = await carrier(origin.node, relay.node)
    await importRecords(origin.node, 'a', 50)
    // a peer that holds far more of O than the relay ever will in this test
    const peer = new RawPeer(KEY)
    peers.push(peer)
    await peer.start()
    const ahead = 1_000_000
    const s = await peer.session(relay.node.getMultiaddrs()[0], { vector: VersionVector.from([[O, ahead]]), credit: 64, protocol })
    stops.push(creditEveryBatch(s))
    const t0 = Date.now()
    // the relay gets O's log from O itself, in runs: 50, then one write at a time
    await relay.node.peers.add(origin.node.getMultiaddrs()[0])
    await eventually(async () => await held(relay.node, O) === await held(origin.node, O), 'the relay to hold O\'s first run')
    for (let i = 0; i < 20; i++) {
      await origin.node.records.put('items', `b${i}`, { n: i })
      await sleep(50)
    }
    const last = await held(origin.node, O)
    await eventually(async () => await held(relay.node, O) === last, 'the relay to hold all of O')
    await sleep(200)
    const haves = s.received.filter(r => r.msg.type === 'have' && r.msg.origin === O).map(r => ({ at: r.at, seq: (r.msg as { seq: number }).seq }))
    // told, although the peer holds more: the Haves name what the relay accepted
    expect(haves.length).toBeGreaterThanOrEqual(1)
    for (const h of haves) expect(h.seq).toBeLessThanOrEqual(last)
    expect(haves[haves.length - 1].seq).toBeGreaterThan(0)
    // ~21 runs were accepted over ~1 s+: at most one Have per PROGRESS_HAVE_MS (LAZY_PUSH_MS / 4), plus the first
    const span = Date.now() - t0
    expect(haves.length).toBeLessThanOrEqual(Math.ceil(span / (LAZY_PUSH_MS / 4)) + 1)
    for (let i = 1; i < haves.length; i++) expect(haves[i].at - haves[i - 1].at).toBeGreaterThanOrEqual(LAZY_PUSH_MS / 4 - 100)
    // and never a Have about a peer's own log to that peer, nor a batch of O (it holds more)
    expect(batchesOf(s, O)).toEqual([])
  }, 60_000)
})
