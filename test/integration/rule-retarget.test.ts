/**
 * A rule whose targets change and change back, through real nodes (real
 * libp2p over TCP on 127.0.0.1, real LevelDB in temp dirs), with and
 * without rule streams: a node the rule targets again gets what its source
 * wrote while the node was not a target, as a new target gets everything.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { createSyncNode } from '../../src/node/node.js'
import type { SyncNode } from '../../src/node/node.js'
import type { Rule } from '../../src/core/types.js'
import { countRecords, eventually, KEY, recordsOf, removeDir, tempDir } from '../helpers/nodes.js'

interface Running { node: SyncNode, dir: string }

/** The node's records of `collection` as JSON text (id → value): compared whole. */
async function textOf (node: SyncNode, collection: string): Promise<string> {
  return JSON.stringify(await recordsOf(node, collection))
}

describe.each([false, true])('a rule targeting a node again (streams: %s)', (streams) => {
  const running: Running[] = []

  /** Nodes that each dial the first, returned once every registry lists them all. */
  async function star (...names: string[]): Promise<SyncNode[]> {
    const nodes: SyncNode[] = []
    for (const name of names) {
      const dir = await tempDir()
      const node = await createSyncNode({ dataDir: dir, key: KEY, name, listen: ['/ip4/127.0.0.1/tcp/0'], targetConnections: 0, streams })
      await node.start()
      running.push({ node, dir })
      nodes.push(node)
    }
    for (const n of nodes.slice(1)) await n.peers.add(nodes[0].getMultiaddrs()[0])
    await eventually(() => nodes.every(n => n.registry.platforms().length === nodes.length), 'every platform everywhere')
    return nodes
  }

  /** alpha's rule sending its posts to every node, and two posts of alpha's: a, and gone (deleted later). */
  async function postsToAll (alpha: SyncNode): Promise<Rule> {
    const rule = await alpha.registry.addRule({ from: { platform: 'alpha', collection: 'posts' }, to: { platform: '*', collection: 'posts' } })
    await alpha.records.put('posts', 'a', { n: 1 })
    await alpha.records.put('posts', 'gone', { n: 2 })
    return rule
  }

  /** postsToAll's rule sends to gamma only while alpha writes p0, updates a and deletes gone; once gamma follows. */
  async function writtenForGammaOnly (alpha: SyncNode, gamma: SyncNode, rule: Rule): Promise<void> {
    await alpha.registry.updateRule(rule.id, { to: { platform: 'gamma', collection: 'posts' } })
    await alpha.records.put('posts', 'p0', { n: 3 })
    await alpha.records.put('posts', 'a', { n: 4 })
    await alpha.records.delete('posts', 'gone')
    await eventually(async () => await textOf(gamma, 'posts') === JSON.stringify({ a: { n: 4 }, p0: { n: 3 } }), 'gamma to follow')
  }

  /** The stopped `node` started again on its directory, dialling `hub`. */
  async function restart (node: SyncNode, hub: SyncNode): Promise<SyncNode> {
    const at = running.find(r => r.node === node)!
    const again = await createSyncNode({ dataDir: at.dir, key: KEY, name: node.name, listen: ['/ip4/127.0.0.1/tcp/0'], targetConnections: 0, streams })
    await again.start()
    running.push({ node: again, dir: at.dir })
    await again.peers.add(hub.getMultiaddrs()[0])
    return again
  }

  afterEach(async () => {
    for (const r of running.splice(0)) {
      await r.node.stop().catch(() => {})
      await removeDir(r.dir)
    }
  })

  it('gets what was written and deleted while it was not a target', async () => {
    const [alpha, beta, gamma] = await star('alpha', 'beta', 'gamma')
    const rule = await postsToAll(alpha)
    await eventually(async () => await countRecords(beta, 'posts') === 2 && await countRecords(gamma, 'posts') === 2, 'beta and gamma to hold both records')
    // beta is no target for a while: what alpha writes and deletes meanwhile reaches gamma only
    await writtenForGammaOnly(alpha, gamma, rule)
    await alpha.registry.updateRule(rule.id, { to: { platform: '*', collection: 'posts' } })
    await eventually(async () => await textOf(beta, 'posts') === JSON.stringify({ a: { n: 4 }, p0: { n: 3 } }), 'beta to get what it missed', 30_000)
    expect((await beta.status()).rules.find(r => r.id === rule.id)?.backfilled).toBe(true)
  })
  it('paused, moved off the node and back while it restarts, then resumed: gets what was written meanwhile', async () => {
    const [alpha, beta, gamma] = await star('alpha', 'beta', 'gamma')
    const rule = await postsToAll(alpha)
    await eventually(async () => await countRecords(beta, 'posts') === 2, 'beta to hold both records')
    await alpha.registry.pauseRule!(rule.id)
    await eventually(() => beta.registry.rule(rule.id)?.paused === true, 'beta to see the pause')
    // paused, the rule moves off beta, which restarts while it is no target, and comes back before it is resumed
    await alpha.records.put('posts', 'p1', { n: 5 })
    await alpha.registry.updateRule(rule.id, { to: { platform: 'gamma', collection: 'posts' } })
    await eventually(() => beta.registry.rule(rule.id)?.to.platform === 'gamma', 'beta to see the move')
    await alpha.records.put('posts', 'p0', { n: 3 })
    await alpha.records.put('posts', 'a', { n: 4 })
    await alpha.records.delete('posts', 'gone')
    await beta.stop()
    const again = await restart(beta, alpha)
    await alpha.registry.updateRule(rule.id, { to: { platform: '*', collection: 'posts' } })
    await eventually(() => again.registry.rule(rule.id)?.to.platform === '*', 'beta to see the move back')
    await alpha.registry.resumeRule!(rule.id)
    const want = await textOf(alpha, 'posts')
    await eventually(async () => await textOf(again, 'posts') === want, 'beta to get what it missed', 30_000)
    expect(Object.keys(await recordsOf(gamma, 'posts')).sort()).toEqual(['a', 'p0', 'p1'])
  })
  it('moved off the node and back while the node is down: gets what was written meanwhile', async () => {
    const [alpha, beta, gamma] = await star('alpha', 'beta', 'gamma')
    const rule = await postsToAll(alpha)
    await eventually(async () => await countRecords(beta, 'posts') === 2, 'beta to hold both records')
    // beta never sees the rule leave it: both changes arrive while it is down
    await beta.stop()
    await writtenForGammaOnly(alpha, gamma, rule)
    await alpha.registry.updateRule(rule.id, { to: { platform: '*', collection: 'posts' } })
    await alpha.records.put('posts', 'p9', { n: 9 })
    const again = await restart(beta, alpha)
    const want = await textOf(alpha, 'posts')
    await eventually(async () => await textOf(again, 'posts') === want, 'beta to get what it missed', 30_000)
  })
  it('a rule reading a group of sources, moved off the node and back: gets what each source wrote meanwhile', async () => {
    const [alpha, beta, gamma, delta] = await star('alpha', 'beta', 'gamma', 'delta')
    const rule = await alpha.registry.addRule({ from: { platform: '*', collection: 'posts' }, to: { platform: 'gamma', collection: 'posts' } })
    await alpha.records.put('posts', 'a', { n: 1 })
    await beta.records.put('posts', 'b', { n: 1 })
    await beta.records.put('posts', 'gone', { n: 2 })
    await eventually(async () => await countRecords(gamma, 'posts') === 3, 'gamma to hold the three records')
    await alpha.registry.updateRule(rule.id, { to: { platform: 'delta', collection: 'posts' } })
    await eventually(() => gamma.registry.rule(rule.id)?.to.platform === 'delta', 'gamma to see the move')
    await alpha.records.put('posts', 'a', { n: 4 })
    await beta.records.put('posts', 'b2', { n: 3 })
    await beta.records.delete('posts', 'gone')
    await eventually(async () => await countRecords(delta, 'posts') === 3 && (await recordsOf(delta, 'posts')).gone === undefined, 'delta to follow')
    await alpha.registry.updateRule(rule.id, { to: { platform: 'gamma', collection: 'posts' } })
    await eventually(async () => await textOf(gamma, 'posts') === JSON.stringify({ a: { n: 4 }, b: { n: 1 }, b2: { n: 3 } }), 'gamma to get what it missed', 30_000)
  })
  it('a rule not active here for a while for a problem (a mirror rule took its target collection) gets what was written meanwhile once the problem is gone', async () => {
    const [alpha, beta, gamma] = await star('alpha', 'beta', 'gamma')
    const rule = await alpha.registry.addRule({ from: { platform: 'alpha', collection: 'posts' }, to: { platform: 'beta', collection: 'posts' } })
    await alpha.records.put('posts', 'a', { n: 1 })
    await eventually(async () => (await recordsOf(beta, 'posts')).a !== undefined, 'beta to hold a')
    const mirror = await alpha.registry.addRule({ from: { platform: 'gamma', collection: 'notes' }, to: { platform: 'beta', collection: 'posts' }, mode: 'mirror' })
    const problem = async (): Promise<string | undefined> => (await beta.status()).rules.find(r => r.id === rule.id)?.problem
    await eventually(async () => await problem() !== undefined, 'the rule to have a problem on beta')
    await alpha.records.put('posts', 'p1', { n: 2 })
    await gamma.records.put('notes', 'n1', { n: 3 })
    await eventually(async () => (await recordsOf(beta, 'posts')).n1 !== undefined, 'beta to hold the mirror\'s record')
    await alpha.registry.removeRule(mirror.id)
    await eventually(async () => await problem() === undefined, 'the problem to be gone on beta')
    await eventually(async () => (await recordsOf(beta, 'posts')).p1 !== undefined, 'beta to get what alpha wrote while the rule had a problem', 15_000)
  })
  it('changed while it was not a target (a rename): the node targeted again holds what the rule writes now', async () => {
    const [alpha, beta, gamma] = await star('alpha', 'beta', 'gamma')
    const rule = await alpha.registry.addRule({ from: { platform: 'alpha', collection: 'posts' }, to: { platform: '*', collection: 'posts' }, rename: { t: 'title' } })
    await alpha.records.put('posts', 'a', { t: 'x' })
    await eventually(async () => await textOf(beta, 'posts') === JSON.stringify({ a: { title: 'x' } }), 'beta to hold a')
    await alpha.registry.updateRule(rule.id, { to: { platform: 'gamma', collection: 'posts' } })
    await eventually(() => beta.registry.rule(rule.id)?.to.platform === 'gamma', 'beta to see the move')
    await alpha.registry.updateRule(rule.id, { rename: { t: 'heading' } })
    await eventually(async () => await textOf(gamma, 'posts') === JSON.stringify({ a: { heading: 'x' } }), 'gamma to follow')
    await alpha.registry.updateRule(rule.id, { to: { platform: '*', collection: 'posts' } })
    await eventually(async () => await textOf(beta, 'posts') === JSON.stringify({ a: { heading: 'x' } }), 'beta to hold what the rule writes now', 15_000)
  })

  it('a delete made on a node before its own rule exists reaches the others once the rule sends its records', async () => {
    const [alpha, beta, gamma] = await star('alpha', 'beta', 'gamma')
    const own = await alpha.registry.addRule({ from: { platform: 'alpha', collection: 'events' }, to: { platform: '*', collection: 'events' } })
    await alpha.records.put('events', 'x', { n: 1 })
    await alpha.records.put('events', 'y', { n: 2 })
    await eventually(async () => await countRecords(beta, 'events') === 2 && await countRecords(gamma, 'events') === 2, 'beta and gamma to hold x and y')
    await beta.records.delete('events', 'x')
    const back = await beta.registry.addRule({ from: { platform: 'beta', collection: 'events' }, to: { platform: '*', collection: 'events' } })
    const ready = async (n: SyncNode, id: string): Promise<boolean> => (await n.status()).rules.find(r => r.id === id)?.backfilled === true
    await eventually(async () => await ready(alpha, back.id) && await ready(gamma, back.id) && await ready(beta, own.id), 'the rules backfilled')
    await eventually(async () => (await Promise.all([alpha, beta, gamma].map(async n => Object.keys(await recordsOf(n, 'events')).join()))).every(ids => ids === 'y'), 'x gone everywhere', 15_000)
    for (const n of [alpha, beta, gamma]) expect(Object.keys(await recordsOf(n, 'events'))).toEqual(['y'])
  })
})
