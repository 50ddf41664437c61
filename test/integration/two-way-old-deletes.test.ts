/**
 * Two-way sync over a source with deletes made before any rule existed
 * (records no other node ever held): each node applies them as tombstones,
 * and logs none of them again in its own log, or with rule streams in its
 * own rule stream (every reader gets them from the source's own rule), as it
 * leaves out relayed puts.
 */
import '../../src/polyfill.js'
import { describe, expect, it } from 'vitest'
import { eventually } from '../helpers/nodes.js'
import type { TestNode } from '../helpers/nodes.js'
import { caughtUp, cleanup, ownSeq, sleep, triangle, twoWay } from '../helpers/relay-mesh.js'

describe('two-way sync over a source with old deletes', () => {
  const nodes: TestNode[] = []
  cleanup(nodes)

  it('beta and gamma log nothing for alpha\'s deletes of records they never held', async () => {
    const [alpha, beta, gamma] = await triangle(nodes)
    const N = 20
    for (let i = 0; i < N; i++) await alpha.node.records.put('events', `e${i}`, { i })
    for (let i = 0; i < N; i++) await alpha.node.records.delete('events', `e${i}`)
    const before = { beta: await ownSeq(beta.node), gamma: await ownSeq(gamma.node) }
    const rules = await twoWay([alpha, beta, gamma])
    await caughtUp(beta.node, alpha.node)
    await caughtUp(gamma.node, alpha.node)
    // the deletes did reach both: alpha's rule applied each of them there (as a tombstone)
    for (const n of [beta, gamma]) {
      const applied = async (): Promise<number> => (await n.node.status()).rules.find(r => r.id === rules.get('alpha'))?.applied ?? 0
      await eventually(async () => await applied() >= N, `${n.node.name} to apply alpha's ${N} deletes`)
    }
    await sleep(1500)
    const after = { beta: await ownSeq(beta.node), gamma: await ownSeq(gamma.node) }
    expect(after.beta - before.beta).toBe(0)
    expect(after.gamma - before.gamma).toBe(0)
  }, 180_000)
})
