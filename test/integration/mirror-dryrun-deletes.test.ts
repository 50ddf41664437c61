/**
 * A mirror dry run counts a record the source deleted (and the target holds
 * from elsewhere) once, as the real backfill removes it once: on the target
 * (whole logs: it holds the source's log), and with rule streams on the
 * source into a collection of its own (only the source holds its records).
 */
import { afterEach, describe, expect, it } from 'vitest'
import { createSyncNode } from '../../src/node/node.js'
import type { SyncNode } from '../../src/node/node.js'
import { eventually, KEY, recordsOf, removeDir, tempDir } from '../helpers/nodes.js'

describe('mirror dry run and a delete of a record the rule never placed', () => {
  const running: Array<{ node: SyncNode, dir: string }> = []

  async function start (name: string, hub?: SyncNode, streams = false): Promise<SyncNode> {
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

  // whole logs: a dry run on the target reads the source's log it holds (with rule streams that is 409 there)
  it('counts the removal of x once', async () => {
    const alpha = await start('alpha')
    const beta = await start('beta', alpha)
    await eventually(() => beta.registry.platforms().some(p => p.name === 'alpha'), 'registries')
    await beta.records.put('m', 'x', { local: true })
    await alpha.records.put('posts', 'x', { a: 1 })
    await alpha.records.delete('posts', 'x')
    await alpha.records.put('posts', 'y', { a: 2 })
    const spec = { from: { platform: 'alpha', collection: 'posts' }, to: { platform: 'beta', collection: 'm' }, mode: 'mirror' as const }
    await eventually(async () => (await beta.registry.dryRunRule!(spec)).targets[0]?.matching === 1 && (await beta.registry.dryRunRule!(spec)).source.complete, 'beta to hold alpha:posts')
    const dry = await beta.registry.dryRunRule!(spec)
    // the real thing
    await alpha.registry.addRule(spec)
    await eventually(async () => JSON.stringify(Object.keys(await recordsOf(beta, 'm'))) === '["y"]', 'the mirror on beta')
    expect(dry.targets[0]).toMatchObject({ creates: 1, deletes: 1 })
  }, 60_000)

  it('rule streams: on the source, into a collection of its own, counts the removal of x once', async () => {
    const alpha = await start('alpha', undefined, true)
    await alpha.records.put('m', 'x', { local: true })
    await alpha.records.put('posts', 'x', { a: 1 })
    await alpha.records.delete('posts', 'x')
    await alpha.records.put('posts', 'y', { a: 2 })
    const spec = { from: { platform: 'alpha', collection: 'posts' }, to: { platform: 'alpha', collection: 'm' }, mode: 'mirror' as const }
    const dry = await alpha.registry.dryRunRule!(spec)
    // the real thing
    await alpha.registry.addRule(spec)
    await eventually(async () => JSON.stringify(Object.keys(await recordsOf(alpha, 'm'))) === '["y"]', 'the mirror on alpha')
    expect(dry.targets[0]).toMatchObject({ exact: true, creates: 1, deletes: 1 })
  }, 60_000)
})
