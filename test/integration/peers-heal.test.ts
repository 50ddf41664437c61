/**
 * A healed link comes back within a few seconds, without hammering a dead
 * peer: the redial backoff of a peer that went away recently is capped at
 * FAST_REDIAL_MAX_MS (with jitter), and the accepting side of a link to a
 * platform it shares a rule with redials it too. Before: only the dialling
 * side redialled, its backoff doubling from 0.5 s to 60 s, so a peer back
 * after half a minute waited up to half a minute more.
 */
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { FAST_REDIAL_MAX_MS } from '../../src/network/peers.js'
import { createSyncNode } from '../../src/node/node.js'
import type { SyncNode } from '../../src/node/node.js'
import { freePort } from '../../scripts/lib/cluster.js'
import { eventually, KEY, removeDir, tempDir } from '../helpers/nodes.js'


const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

describe('a healed link', () => {
  const cleanup: Array<() => Promise<void>> = []
  afterEach(async () => {
    for (const f of cleanup.splice(0).reverse()) await f().catch(() => {})
  })

  const start = async (dir: string, name: string, port = 0): Promise<SyncNode> => {
    const node = await createSyncNode({ dataDir: join(dir, name), key: KEY, name, listen: [`/ip4/127.0.0.1/tcp/${port}`], targetConnections: 0 })
    await node.start()
    cleanup.push(async () => { await node.stop() })
    return node
  }
  const linked = async (from: SyncNode, to: SyncNode): Promise<boolean> => (await from.peers.list()).some(p => p.peerId === to.peerId && p.connected && p.authenticated)

  it('comes back within a few seconds of a peer that was away for half a minute', async () => {
    const dir = await tempDir()
    cleanup.push(async () => { await removeDir(dir) })
    const port = await freePort()
    const a = await start(dir, 'a')
    let b = await start(dir, 'b', port)
    await a.peers.add(b.getMultiaddrs()[0])
    await eventually(async () => await linked(a, b), 'a to link up with b')
    // b goes away for 35 s: a keeps dialling a closed port (before, its backoff grew to 16 s, then 32 s)
    await b.stop()
    await sleep(35_000)
    b = await start(dir, 'b', port)
    const back = Date.now()
    await eventually(async () => await linked(a, b), 'a to redial b once it is back', 30_000)
    // within the cap, the jitter and a dial (generous: before, this took ~28 s)
    expect(Date.now() - back).toBeLessThan(3 * FAST_REDIAL_MAX_MS)
  }, 90_000)

  it('is redialled by the accepting side when the dialling side does not', async () => {
    const dir = await tempDir()
    cleanup.push(async () => { await removeDir(dir) })
    const a = await start(dir, 'a')
    const b = await start(dir, 'b')
    await a.peers.add(b.getMultiaddrs()[0])
    await eventually(async () => await linked(a, b), 'a to link up with b')
    // a rule between them: each is a platform the other shares a rule with, known from the registry
    await a.registry.addRule({ from: { platform: 'a', collection: 'x' }, to: { platform: 'b', collection: 'x' } })
    await eventually(() => b.registry.rules().length === 1 && b.registry.platforms().some(p => p.name === 'a' && p.addrs.length > 0), 'b to learn the rule and a\'s addresses')
    // a forgets b and hangs up: a will not dial b again (no registry dialling: target degree 0); b, which
    // only accepted the link, redials a at its registry address
    await a.peers.remove(b.peerId)
    await eventually(async () => !(await linked(b, a)), 'the link to go down')
    await eventually(async () => await linked(b, a), 'b to redial a', 20_000)
    await a.records.put('x', 'after', { ok: true })
    await eventually(async () => (await b.records.get('x', 'after'))?.value.ok === true, 'a\'s write to reach b over the new link')
  }, 60_000)
})
