/**
 * Control frames between honest nodes stay far below the flood limit
 * (MAX_CONTROL_FRAMES_PER_SECOND), also when a peer stops reading for a
 * while and then reads everything that waited for it at once: a relay that
 * stores run after run of a busy origin tells a silent peer at most
 * HAVE_BURST Haves, then holds the newest one per origin until the peer is
 * heard from again. Real nodes, real libp2p over loopback TCP; the silent
 * peer is played by hand.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { encodeHave } from '../src/network/sync/codec.js'
import { HAVE_BURST } from '../src/network/sync/session.js'
import type { SyncNode } from '../src/node/node.js'
import { eventually, KEY, removeDir, startNode } from './helpers/nodes.js'
import type { TestNode } from './helpers/nodes.js'
import { RawPeer } from './helpers/raw-peer.js'
import type { RawSession } from './helpers/raw-peer.js'

async function held (node: SyncNode, origin: string): Promise<number> {
  return (await node.status()).origins.find(o => o.origin === origin)?.seq ?? 0
}

function havesOf (s: RawSession, origin: string): Array<{ at: number, seq: number }> {
  const out: Array<{ at: number, seq: number }> = []
  for (const { at, msg } of s.received) if (msg.type === 'have' && msg.origin === origin) out.push({ at, seq: msg.seq })
  return out
}

describe('control frames to a peer that says nothing', () => {
  const nodes: TestNode[] = []
  const peers: RawPeer[] = []
  afterEach(async () => {
    for (const p of peers.splice(0)) await p.stop().catch(() => {})
    for (const n of nodes.splice(0)) {
      await n.node.stop().catch(() => {})
      await removeDir(n.dir)
    }
  })

  it('a relay storing one small run after another sends a silent peer at most HAVE_BURST Haves, and the newest one once it speaks', async () => {
    const origin = await startNode('O')
    const relay = await startNode('U')
    nodes.push(origin, relay)
    await relay.node.peers.add(origin.node.getMultiaddrs()[0])
    const O = origin.node.peerId
    await eventually(async () => await held(relay.node, O) > 0 && await held(relay.node, O) === await held(origin.node, O), 'the relay to hold the origin\'s registry entries')
    // the peer holds nothing, grants one batch and then says nothing: it neither reads on (no credit)
    // nor tells the relay anything, like a node that is stopped or whose ingest is stuck
    const peer = new RawPeer(KEY)
    peers.push(peer)
    await peer.start()
    const s = await peer.session(relay.node.getMultiaddrs()[0], { credit: 1 })
    // churn: one write, one commit, one run after another on the origin; the relay stores each as it comes
    const writes = 3 * HAVE_BURST
    for (let i = 0; i < writes; i++) await origin.node.records.put('events', `e${i % 20}`, { i })
    const last = await held(origin.node, O)
    await eventually(async () => await held(relay.node, O) === last, 'the relay to hold every write', 60_000)
    await new Promise(resolve => setTimeout(resolve, 500))
    const haves = s.received.filter(r => r.msg.type === 'have').length
    const origins = new Set(s.received.filter(r => r.msg.type === 'have').map(r => (r.msg as { origin: string }).origin)).size
    // without holding them back, the relay sent one Have per run it stored (~writes)
    expect(haves, `Haves sent to a silent peer while the relay stored ${writes} runs`).toBeLessThanOrEqual(HAVE_BURST + origins)
    expect(havesOf(s, O).some(h => h.seq === last)).toBe(false)
    // the peer speaks (any frame): what was held goes out, the newest seq of each origin
    s.framed.sendNow(encodeHave(relay.node.peerId, 1))
    await eventually(() => havesOf(s, O).some(h => h.seq === last), 'the held Have naming the origin\'s newest seq')
  }, 120_000)
})
