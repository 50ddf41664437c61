/**
 * Per-peer metric series stay bounded: a peer holding the mesh key that
 * comes with a new identity, syncs and goes, leaves no series behind once
 * the node forgets it (as it forgets the peer's state). Real node, real
 * libp2p over loopback TCP; the throwaway identities are played by hand.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { eventually, KEY, removeDir, startNode } from '../helpers/nodes.js'
import type { TestNode } from '../helpers/nodes.js'
import { EITHER_SYNC_PROTOCOL, RawPeer } from '../helpers/raw-peer.js'

describe('per-peer metrics under identity churn', () => {
  const nodes: TestNode[] = []
  const peers: RawPeer[] = []
  afterEach(async () => {
    for (const p of peers.splice(0)) await p.stop().catch(() => {})
    for (const n of nodes.splice(0)) {
      await n.node.stop().catch(() => {})
      await removeDir(n.dir)
    }
  })

  it('a peer id that synced and left is dropped from the per-peer series when the node forgets it', async () => {
    const a = await startNode('A')
    nodes.push(a)
    await a.node.records.put('posts', 'p1', { title: 'one' })
    const addr = a.node.getMultiaddrs()[0]
    const text = async (): Promise<string> => await a.node.metrics.registry.metrics()
    const gone: string[] = []
    for (let i = 0; i < 3; i++) {
      const peer = new RawPeer(KEY)
      await peer.start()
      const s = await peer.session(addr, { credit: 8, protocol: EITHER_SYNC_PROTOCOL })
      // the node counted this identity's frames and what it sent it
      await eventually(async () => s.received.some(r => r.msg.type === 'batch') && (await text()).includes(`peer="${peer.peerId}"`), 'the node to count the session')
      expect(await text()).toMatch(new RegExp(`^syncmesh_sync_bytes_received_total\\{peer="${peer.peerId}",platform=""\\} \\d+$`, 'm'))
      await peer.stop()
      gone.push(peer.peerId)
    }
    // forgotten with their last connection: nothing of them stays in the peer list, nor in /metrics
    await eventually(async () => (await a.node.peers.list()).every(p => !gone.includes(p.peerId)), 'the node to forget the throwaway peers')
    await eventually(async () => {
      const m = await text()
      return gone.every(id => !m.includes(id))
    }, 'the per-peer series of the forgotten peers to be removed', 10_000)
    // a peer without the mesh key gets no series at all (only the unlabelled count of failed authentications)
    const stranger = new RawPeer('w'.repeat(40))
    peers.push(stranger)
    await stranger.start()
    await expect(stranger.session(addr, { protocol: EITHER_SYNC_PROTOCOL })).rejects.toThrow()
    await eventually(async () => /^syncmesh_auth_failures_total [1-9]/m.test(await text()), 'the failed authentication to be counted')
    expect(await text()).not.toContain(stranger.peerId)
    // the node's own series are still served
    expect(await text()).toMatch(/^syncmesh_sync_frames_received_total\{type="hello"\} \d+$/m)
  }, 60_000)
})
