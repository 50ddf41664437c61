/**
 * Pausing and resuming a rule while its source keeps writing (puts,
 * overwrites and deletes of a few records) loses no write and puts no older
 * value back: once resumed for good, the target holds exactly what the
 * source holds. The pauses are made on the source node (the pause travels in
 * its log between its writes) and on the target node. Real nodes, real
 * libp2p over loopback TCP.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { RULE_MODE_NAMES, modeOf } from '../../src/core/modes.js'
import { eventually, recordsOf, removeDir, startNode } from '../helpers/nodes.js'
import type { TestNode } from '../helpers/nodes.js'

describe('rule pause and resume under live writes', () => {
  const nodes: TestNode[] = []
  afterEach(async () => {
    for (const n of nodes.splice(0)) {
      await n.node.stop().catch(() => {})
      await removeDir(n.dir)
    }
  })

  // the modes whose target ends as a copy of the source (deletes followed, no record kept over a newer one)
  const copying = RULE_MODE_NAMES.filter(m => modeOf(m).deletes && !modeOf(m).keepsExisting)
  it.each(copying)('%s: the target ends with exactly the source\'s records after pauses and resumes between writes', async (mode) => {
    const a = await startNode('A')
    const b = await startNode('B')
    nodes.push(a, b)
    await b.node.peers.add(a.node.getMultiaddrs()[0])
    await eventually(() => a.node.registry.platforms().some(p => p.name === 'B') && b.node.registry.platforms().some(p => p.name === 'A'), 'the registries to meet')
    const rule = await a.node.registry.addRule({ from: { platform: 'A', collection: 'posts' }, to: { platform: 'B', collection: 'posts' }, mode })
    await eventually(async () => (await b.node.status()).rules.some(r => r.id === rule.id && r.backfilled), 'the rule to run on B')
    const ids = Array.from({ length: 20 }, (_, i) => `p${i}`)
    let n = 0
    for (let round = 0; round < 8; round++) {
      // pause on the source or on the target, write meanwhile, resume on the other one
      const pauser = round % 2 === 0 ? a.node : b.node
      const resumer = round % 2 === 0 ? b.node : a.node
      await pauser.registry.pauseRule!(rule.id)
      for (let i = 0; i < 25; i++) {
        const id = ids[(n * 7) % ids.length]
        if (n % 11 === 10) await a.node.records.delete('posts', id)
        else await a.node.records.put('posts', id, { n })
        n++
      }
      // the other node may not have seen the pause yet: the resume must come after it
      await eventually(() => resumer.registry.rule?.(rule.id)?.paused === true, 'the pause to reach the resuming node')
      await resumer.registry.resumeRule!(rule.id)
      for (let i = 0; i < 10; i++) {
        const id = ids[(n * 7) % ids.length]
        await a.node.records.put('posts', id, { n })
        n++
      }
    }
    const want = await recordsOf(a.node, 'posts')
    await eventually(async () => JSON.stringify(await recordsOf(b.node, 'posts')) === JSON.stringify(want), 'the target to hold exactly the source\'s records', 60_000)
    expect(await recordsOf(b.node, 'posts')).toEqual(want)
    const status = (await b.node.status()).rules.find(r => r.id === rule.id)
    expect(status?.paused).toBe(false)
  }, 180_000)
})
