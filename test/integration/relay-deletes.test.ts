/**
 * Deletes where relays leave relayed puts out of their logs (RuleSet
 * relayedPutsLeftOut; with rule streams out of their rule streams, RuleSet
 * streamLeavesOut) and deletes name the write they removed (LogEntry.prev): every
 * node ends with the same records, also a node that joins later or leaves
 * the reach of the write's own rule, and a source's delete leaves a target's
 * own record alone.
 */
import '../../src/polyfill.js'
import { describe, expect, it } from 'vitest'
import { eventually, startNode } from '../helpers/nodes.js'
import type { TestNode } from '../helpers/nodes.js'
import { caughtUp, cleanup, ownSeq, sleep, triangle, twoWay } from '../helpers/relay-mesh.js'

describe('a node that leaves the reach of the write\'s own rule still follows the relay\'s deletes', () => {
  const nodes: TestNode[] = []
  cleanup(nodes)

  it('alpha narrows its rule to beta while beta is down, then deletes: gamma follows beta and deletes it too', async () => {
    const alpha = await startNode('alpha')
    let beta = await startNode('beta')
    const gamma = await startNode('gamma')
    nodes.push(alpha, beta, gamma)
    await beta.node.peers.add(alpha.node.getMultiaddrs()[0])
    await gamma.node.peers.add(alpha.node.getMultiaddrs()[0])
    await gamma.node.peers.add(beta.node.getMultiaddrs()[0])
    await eventually(() => nodes.every(n => n.node.registry.platforms().length === 3), 'three platforms everywhere')
    const rA = await alpha.node.registry.addRule({ from: { platform: 'alpha', collection: 'events' }, to: { platform: '*', collection: 'events' } })
    await alpha.node.registry.addRule({ from: { platform: 'beta', collection: 'events' }, to: { platform: '*', collection: 'events' } })
    await eventually(async () => (await beta.node.status()).rules.some(r => r.local && r.backfilled) &&
      (await gamma.node.status()).rules.filter(r => r.local && r.backfilled).length === 2, 'the rules to be active')
    for (const id of ['e1', 'e2']) await alpha.node.records.put('events', id, { id })
    await eventually(async () => await beta.node.records.get('events', 'e1') !== undefined && await gamma.node.records.get('events', 'e2') !== undefined, 'beta and gamma to hold e1, e2')
    await caughtUp(gamma.node, beta.node)

    // beta is down while alpha's rule stops reaching gamma and alpha deletes e1
    const betaDir = beta.dir
    await beta.node.stop()
    await alpha.node.registry.updateRule(rA.id, { to: { platform: 'beta', collection: 'events' } })
    await eventually(() => gamma.node.registry.rule(rA.id)?.to.platform === 'beta', 'gamma to see the narrowed rule')
    expect(await alpha.node.records.delete('events', 'e1')).toBe(true)

    beta = await startNode('beta', { dir: betaDir })
    nodes[1] = beta
    await beta.node.peers.add(alpha.node.getMultiaddrs()[0])
    await gamma.node.peers.add(beta.node.getMultiaddrs()[0])
    await eventually(async () => await beta.node.records.get('events', 'e1') === undefined, 'beta to apply alpha\'s delete')
    await sleep(3000) // beta's republish of what it left out
    await caughtUp(gamma.node, beta.node)
    await sleep(1000)
    // alpha and beta deleted e1; gamma, a target of beta's two-way rule, must follow beta
    expect(await alpha.node.records.get('events', 'e1')).toBeUndefined()
    expect(await gamma.node.records.get('events', 'e1'), 'gamma\'s e1 (beta and alpha have none)').toBeUndefined()
  }, 180_000)
})

describe('a relay\'s log never goes stale: a node joining later gets no record the mesh deleted', () => {
  const nodes: TestNode[] = []
  cleanup(nodes)

  it('beta logged alpha\'s put while it relayed, then stopped logging; alpha deletes; delta joins and does not get the record back', async () => {
    const [alpha, beta, gamma] = await triangle(nodes)
    // alpha → beta only, beta → everyone: beta relays alpha's writes to gamma, so it logs them
    const rA = await alpha.node.registry.addRule({ from: { platform: 'alpha', collection: 'events' }, to: { platform: 'beta', collection: 'events' } })
    await alpha.node.registry.addRule({ from: { platform: 'beta', collection: 'events' }, to: { platform: '*', collection: 'events' } })
    await eventually(async () => (await beta.node.status()).rules.some(r => r.local && r.backfilled) &&
      (await gamma.node.status()).rules.some(r => r.local && r.backfilled), 'the rules to be active')
    const before = await ownSeq(beta.node)
    await alpha.node.records.put('events', 'e1', { v: 1 })
    await eventually(async () => await gamma.node.records.get('events', 'e1') !== undefined, 'gamma to get e1 through beta')
    expect(await ownSeq(beta.node), 'beta logged alpha\'s put').toBe(before + 1)

    // alpha's rule now reaches everyone: beta stops logging alpha's writes (two-way sync, plain rules)
    await alpha.node.registry.updateRule(rA.id, { to: { platform: '*', collection: 'events' } })
    await eventually(async () => (await gamma.node.status()).rules.filter(r => r.local && r.backfilled).length === 2, 'gamma to apply alpha\'s widened rule')
    await alpha.node.records.delete('events', 'e1')
    await eventually(async () => await beta.node.records.get('events', 'e1') === undefined && await gamma.node.records.get('events', 'e1') === undefined, 'beta and gamma to delete e1')

    // a node joins later (also a target of both rules)
    const delta = await startNode('delta')
    nodes.push(delta)
    await delta.node.peers.add(beta.node.getMultiaddrs()[0])
    await delta.node.peers.add(alpha.node.getMultiaddrs()[0])
    await eventually(async () => (await delta.node.status()).rules.filter(r => r.local && r.backfilled).length === 2, 'delta to backfill both rules', 60_000)
    await caughtUp(delta.node, beta.node)
    await caughtUp(delta.node, alpha.node)
    await sleep(1000)
    for (const n of [alpha, beta, gamma]) expect(await n.node.records.get('events', 'e1'), `${n.node.name}'s e1`).toBeUndefined()
    expect(await delta.node.records.get('events', 'e1'), 'delta\'s e1 (deleted on every other node)').toBeUndefined()
  }, 180_000)
})

describe('a delete naming the write it removed does not remove a target\'s own record', () => {
  const nodes: TestNode[] = []
  cleanup(nodes)

  it('beta deletes a record it got from alpha and one of its own; a later rule beta → gamma leaves gamma\'s own record of the first id alone, and the second loses to the later delete', async () => {
    const alpha = await startNode('alpha')
    const beta = await startNode('beta')
    const gamma = await startNode('gamma')
    nodes.push(alpha, beta, gamma)
    await beta.node.peers.add(alpha.node.getMultiaddrs()[0])
    await gamma.node.peers.add(beta.node.getMultiaddrs()[0])
    await eventually(() => nodes.every(n => n.node.registry.platforms().length === 3), 'three platforms everywhere')
    await alpha.node.registry.addRule({ from: { platform: 'alpha', collection: 'events' }, to: { platform: 'beta', collection: 'events' } })
    await eventually(async () => (await beta.node.status()).rules.some(r => r.local && r.backfilled), 'alpha → beta active')

    // beta holds x from alpha and y it wrote itself; gamma then writes its own x and y (later
    // versions than beta's), and beta deletes both after that
    await alpha.node.records.put('events', 'x', { from: 'alpha' })
    await beta.node.records.put('events', 'y', { from: 'beta' })
    await eventually(async () => await beta.node.records.get('events', 'x') !== undefined, 'beta to get alpha\'s x')
    await sleep(50)
    await gamma.node.records.put('events', 'x', { mine: 'gamma' })
    await gamma.node.records.put('events', 'y', { mine: 'gamma' })
    await sleep(50)
    await beta.node.records.delete('events', 'x')
    await beta.node.records.delete('events', 'y')

    // now beta's collection is sent to gamma
    await alpha.node.registry.addRule({ from: { platform: 'beta', collection: 'events' }, to: { platform: 'gamma', collection: 'events' } })
    await eventually(async () => (await gamma.node.status()).rules.some(r => r.local && r.backfilled), 'beta → gamma backfilled on gamma')
    await caughtUp(gamma.node, beta.node)
    await sleep(1000)
    // x: beta's delete names alpha's write, which gamma never held: gamma's own x stays
    expect(await gamma.node.records.get('events', 'x'), 'gamma\'s own x').toBeDefined()
    // y: beta's delete of its own record is a write of y later than gamma's, as it would be had beta's put reached
    // gamma first: the later write wins, and the rule logs overwriting gamma's own record as a conflict
    expect(await gamma.node.records.get('events', 'y'), 'gamma\'s own y, older than beta\'s delete').toBeUndefined()
    const toGamma = (await gamma.node.status()).rules.find(r => r.local)
    expect((await gamma.node.registry.conflicts(toGamma?.id ?? '')).conflicts.map(c => [c.id, c.kind, c.winner])).toEqual([['y', 'local-write', 'incoming']])
  }, 180_000)
})

describe('two-way sync from the start: records deleted everywhere stay deleted on a node joining later', () => {
  const nodes: TestNode[] = []
  cleanup(nodes)

  for (const [title, alphaWritesFirst] of [['beta updates alpha\'s records, alpha deletes them, delta joins', true], ['beta creates records, alpha deletes them, delta joins', false]] as const) {
    it(title, async () => {
      const mesh: TestNode[] = []
      const [alpha, beta] = await triangle(mesh)
      nodes.push(...mesh)
      await twoWay(mesh)
      const ids = Array.from({ length: 20 }, (_, i) => `e${i}`)
      if (alphaWritesFirst) {
        for (const id of ids) await alpha.node.records.put('events', id, { v: 1 })
        await eventually(async () => await beta.node.records.get('events', 'e19') !== undefined, 'beta to hold alpha\'s records')
      }
      for (const id of ids) await beta.node.records.put('events', id, { v: 2 })
      await eventually(async () => (await alpha.node.records.get('events', 'e19'))?.value.v === 2, 'alpha to hold beta\'s writes')
      for (const id of ids) await alpha.node.records.delete('events', id)
      await eventually(async () => {
        for (const n of mesh) if (await n.node.records.get('events', 'e19') !== undefined) return false
        return true
      }, 'every node to delete them')

      const delta = await startNode('delta')
      nodes.push(delta)
      await delta.node.peers.add(alpha.node.getMultiaddrs()[0])
      await eventually(async () => (await delta.node.status()).rules.filter(r => r.local && r.backfilled).length === 3, 'delta to backfill the three rules', 60_000)
      await caughtUp(delta.node, beta.node)
      await caughtUp(delta.node, alpha.node)
      await sleep(1000)
      const left: string[] = []
      for (const id of ids) if (await delta.node.records.get('events', id) !== undefined) left.push(id)
      expect(left, 'records delta holds that every other node deleted').toEqual([])
    }, 180_000)
  }
})
