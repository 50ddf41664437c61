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
    for (const b of [b1, b2]) {
      // dee's p1 met alpha's delete there: a conflict of dee's rule, which the delete won
      const fromDee = (await b.status()).rules.find(r => r.local && r.from === 'dee:posts')
      const conflicts = async (): Promise<string> => JSON.stringify((await b.registry.conflicts(fromDee?.id ?? '')).conflicts.map(c => [c.id, c.kind, c.winner]))
      await eventually(async () => await conflicts() !== '[]', `${b.name} to apply dee's p1`)
      expect(await conflicts(), b.name).toBe(JSON.stringify([['p1', 'other-source', 'existing']]))
      expect(await recordsOf(b, 'posts'), b.name).toEqual({})
    }
  }, 60_000)
})
