/**
 * Operator-added peers come back after a disconnect even while the node has
 * other connections (they are wanted up to the connection cap, not only up
 * to the target degree). Before: a node with `targetConnections` 0 or 1 and
 * one link left never redialled the others, and a fan-out benchmark run split
 * the mesh into islands that stayed apart.
 */
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { createSyncNode } from '../../src/node/node.js'
import type { SyncNode } from '../../src/node/node.js'
import { eventually, KEY, removeDir, tempDir } from '../helpers/nodes.js'

describe('persisted peers', () => {
  const cleanup: Array<() => Promise<void>> = []
  afterEach(async () => {
    for (const f of cleanup.splice(0).reverse()) await f().catch(() => {})
  })

  it('are redialled after a disconnect while other connections are up', async () => {
    // no node dials platforms from the registry (target degree 0): only a's operator-added peers link them
    const dir = await tempDir()
    cleanup.push(async () => { await removeDir(dir) })
    const start = async (name: string): Promise<SyncNode> => {
      const node = await createSyncNode({ dataDir: join(dir, name), key: KEY, name, listen: ['/ip4/127.0.0.1/tcp/0'], targetConnections: 0 })
      await node.start()
      cleanup.push(async () => { await node.stop() })
      return node
    }
    const a = await start('a')
    const b = { node: await start('b') }
    const c = { node: await start('c') }
    await a.peers.add(b.node.getMultiaddrs()[0])
    await a.peers.add(c.node.getMultiaddrs()[0])
    const connected = async (peerId: string): Promise<boolean> => (await a.peers.list()).some(p => p.peerId === peerId && p.connected && p.authenticated)
    await eventually(async () => await connected(b.node.peerId) && await connected(c.node.peerId), 'a to link up with b and c')
    // b hangs up on a (it forgets a; a still wants b): a keeps c and must get b back. The gap can be
    // shorter than a poll under load, so the new link is recognised by its own authentication (lastSeen
    // is stamped on each); b does not dial a (it forgot a, and discovers nothing), so it is a's redial
    const seenBefore = (await a.peers.list()).find(p => p.peerId === b.node.peerId)?.lastSeen ?? ''
    await new Promise(resolve => setTimeout(resolve, 5)) // the new stamp differs from the old one
    await b.node.peers.remove(a.peerId)
    const relinked = async (): Promise<boolean> => {
      const info = (await a.peers.list()).find(p => p.peerId === b.node.peerId)
      return info !== undefined && info.connected && info.authenticated && (info.lastSeen ?? '') > seenBefore
    }
    await eventually(relinked, 'a to redial b after b hung up', 20_000)
    expect(await connected(c.node.peerId)).toBe(true)
  })
})
