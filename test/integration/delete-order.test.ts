/**
 * Targets of the same rules end the same whatever part of a source's history
 * reached them (real nodes over TCP on 127.0.0.1, real LevelDB, with and
 * without rule streams): a target that syncs after its source deleted a
 * record gets the delete alone (the put it superseded is compacted away),
 * and an older write of the record by another source, arriving later, must
 * lose to that delete there as it does on a target that saw the put first.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { createSyncNode } from '../../src/node/node.js'
import type { SyncNode } from '../../src/node/node.js'
import { eventually, KEY, recordsOf, removeDir, tempDir } from '../helpers/nodes.js'

describe.each([false, true])('a delete reaching a target alone (streams: %s)', (streams) => {
  const running: Array<{ node: SyncNode, dir: string }> = []

  async function start (name: string, hub?: SyncNode): Promise<SyncNode> {
    const dir = await tempDir()
    const node = await createSyncNode({ dataDir: dir, key: KEY, name, listen: ['/ip4/127.0.0.1/tcp/0'], targetConnections: 0, streams })
    await node.start()
    running.push({ node, dir })
    if (hub !== undefined) await node.peers.add(hub.getMultiaddrs()[0])
    return node
  }

  /** The node's conflicts over `id` in every rule applied there, as [rule source, kind], once its records of posts are `want`. */
  async function settled (node: SyncNode, id: string, want: Record<string, unknown>): Promise<string> {
    const all = async (): Promise<string[][]> => {
      const out: string[][] = []
      for (const r of (await node.status()).rules.filter(x => x.local)) {
        for (const c of (await node.registry.conflicts(r.id)).conflicts) if (c.id === id) out.push([r.from, c.kind])
      }
      return out.sort()
    }
    await eventually(async () => (await all()).length > 0 && JSON.stringify(await recordsOf(node, 'posts')) === JSON.stringify(want), `${node.name} to settle`)
    return JSON.stringify(await all())
  }

  /**
   * alpha sends its posts to beta; dee writes p1, then alpha writes p1 (and
   * q1 when asked) and deletes p1, and beta applies it all. No rule sends
   * dee's posts yet.
   */
  async function deletedOnBeta (options: { q1?: boolean } = {}): Promise<{ alpha: SyncNode, beta: SyncNode }> {
    const alpha = await start('alpha')
    const beta = await start('beta', alpha)
    const dee = await start('dee', alpha)
    await alpha.registry.addRule({ from: { platform: 'alpha', collection: 'posts' }, to: { platform: 'beta', collection: 'posts' } })
    await dee.records.put('posts', 'p1', { from: 'dee' })
    await alpha.records.put('posts', 'p1', { from: 'alpha' })
    if (options.q1 === true) await alpha.records.put('posts', 'q1', { from: 'alpha' })
    await eventually(async () => (await recordsOf(beta, 'posts')).p1?.from === 'alpha', 'beta to get alpha\'s p1')
    await alpha.records.delete('posts', 'p1')
    await eventually(async () => (await recordsOf(beta, 'posts')).p1 === undefined, 'beta to apply alpha\'s delete')
    return { alpha, beta }
  }

  afterEach(async () => {
    for (const r of running.splice(0)) {
      await r.node.stop().catch(() => {})
      await removeDir(r.dir)
    }
  })

  it.each([false, true])('an older write of another source, arriving later, loses to it as on a target that saw the put first (the rule to b2 made after the delete: %s)', async (late) => {
    const alpha = await start('alpha')
    const dee = await start('dee', alpha)
    const b1 = await start('b1', alpha)
    for (const to of late ? ['b1'] : ['b1', 'b2']) await alpha.registry.addRule({ from: { platform: 'alpha', collection: 'posts' }, to: { platform: to, collection: 'posts' } })
    // dee writes p1 first; no rule sends dee's posts yet
    await dee.records.put('posts', 'p1', { from: 'dee' })
    await alpha.records.put('posts', 'p1', { from: 'alpha' })
    await eventually(async () => (await recordsOf(b1, 'posts')).p1?.from === 'alpha', 'b1 to get alpha\'s p1')
    await alpha.records.delete('posts', 'p1')
    await eventually(async () => (await recordsOf(b1, 'posts')).p1 === undefined, 'b1 to apply alpha\'s delete')
    // b2 joins now: alpha's log holds the delete alone
    const b2 = await start('b2', alpha)
    if (late) await alpha.registry.addRule({ from: { platform: 'alpha', collection: 'posts' }, to: { platform: 'b2', collection: 'posts' } })
    await eventually(async () => (await b2.status()).rules.some(r => r.local && r.backfilled), 'alpha → b2 backfilled on b2')
    // then dee's posts go to both: dee's p1 is older than alpha's delete
    for (const to of ['b1', 'b2']) await alpha.registry.addRule({ from: { platform: 'dee', collection: 'posts' }, to: { platform: to, collection: 'posts' } })
    for (const b of [b1, b2]) await eventually(async () => (await b.status()).rules.filter(r => r.local && r.backfilled).length === 2, `${b.name} to backfill dee's rule`)
    // on both, dee's p1 met alpha's delete (whichever came first there: one conflict) and lost
    for (const b of [b1, b2]) expect(await settled(b, 'p1', {}), b.name).toMatch(/^\[\["(alpha|dee):posts","other-source"\]\]$/)
  }, 60_000)

  it('through a chain: a node that relays the delete to a later target gives it the tombstone too', async () => {
    const { alpha } = await deletedOnBeta()
    // gamma joins, and beta's posts go on to it; then dee's older p1 too
    const gamma = await start('gamma', alpha)
    await alpha.registry.addRule({ from: { platform: 'beta', collection: 'posts' }, to: { platform: 'gamma', collection: 'posts' } })
    await eventually(async () => (await gamma.status()).rules.some(r => r.local && r.backfilled), 'beta → gamma backfilled on gamma')
    await alpha.registry.addRule({ from: { platform: 'dee', collection: 'posts' }, to: { platform: 'gamma', collection: 'posts' } })
    expect(await settled(gamma, 'p1', {})).toMatch(/^\[\["(beta|dee):posts","other-source"\]\]$/)
  }, 60_000)

  it('through a chain added after two-way sync: the delete the relay left out while its targets got it from the source reaches the chain\'s new target', async () => {
    const { alpha } = await deletedOnBeta({ q1: true })
    // two-way: beta's posts go back to alpha, which holds them from its own rule: beta passes on nothing
    await alpha.registry.addRule({ from: { platform: 'beta', collection: 'posts' }, to: { platform: 'alpha', collection: 'posts' } })
    await eventually(async () => (await alpha.status()).rules.some(r => r.local && r.from === 'beta:posts' && r.backfilled), 'beta → alpha backfilled')
    // then beta's posts go to gamma too, which alpha's rule does not reach; then dee's older p1
    const gamma = await start('gamma', alpha)
    await alpha.registry.addRule({ from: { platform: 'beta', collection: 'posts' }, to: { platform: 'gamma', collection: 'posts' } })
    await eventually(async () => (await recordsOf(gamma, 'posts')).q1 !== undefined, 'gamma to get q1 from beta')
    await alpha.registry.addRule({ from: { platform: 'dee', collection: 'posts' }, to: { platform: 'gamma', collection: 'posts' } })
    expect(await settled(gamma, 'p1', { q1: { from: 'alpha' } })).toMatch(/^\[\["(beta|dee):posts","other-source"\]\]$/)
  }, 60_000)
})
