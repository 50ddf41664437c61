/**
 * Relays leave relayed puts out of their logs (RuleSet relayedPutsLeftOut)
 * while the registry changes under them: plain two-way sync
 * (`X:events → *:events` on every node), a rule removed while nodes are
 * down, a filtered rule next to plain ones, a platform revoked (with and
 * without purge) before a node joins. Every node ends with the same
 * records, and a target's own record no rule shares is left alone.
 */
import '../../src/polyfill.js'
import { describe, expect, it } from 'vitest'
import { countRecords, eventually, startNode } from '../helpers/nodes.js'
import type { TestNode } from '../helpers/nodes.js'
import { caughtUp, cleanup, sleep, triangle, twoWay } from '../helpers/relay-mesh.js'

describe('a relay\'s delete of the writer\'s record, applied on the writer after its rule stopped reaching the relay', () => {
  const nodes: TestNode[] = []
  cleanup(nodes)

  it('alpha is down while beta deletes alpha\'s e1 (gamma follows); alpha removes its rule while the others are down; all come back', async () => {
    let [alpha, beta, gamma] = await triangle(nodes)
    const rules = await twoWay(nodes)
    await alpha.node.records.put('events', 'e1', { v: 1 })
    await eventually(async () => await beta.node.records.get('events', 'e1') !== undefined && await gamma.node.records.get('events', 'e1') !== undefined, 'beta and gamma to hold e1')
    for (const [a, b] of [[alpha, beta], [alpha, gamma], [beta, gamma], [gamma, beta]]) await caughtUp(a.node, b.node)

    // alpha down: beta deletes e1, gamma follows (plain two-way sync everywhere)
    await alpha.node.stop()
    expect(await beta.node.records.delete('events', 'e1')).toBe(true)
    await eventually(async () => await gamma.node.records.get('events', 'e1') === undefined, 'gamma to apply beta\'s delete')
    await caughtUp(gamma.node, beta.node)
    await beta.node.stop()
    await gamma.node.stop()

    // alpha alone stops sending its events (beta's and gamma's rules still send theirs to alpha)
    alpha = await startNode('alpha', { dir: alpha.dir })
    nodes[0] = alpha
    expect(await alpha.node.registry.removeRule(rules.get('alpha') as string)).toBe(true)

    gamma = await startNode('gamma', { dir: gamma.dir })
    nodes[2] = gamma
    beta = await startNode('beta', { dir: beta.dir })
    nodes[1] = beta
    await gamma.node.peers.add(alpha.node.getMultiaddrs()[0])
    await beta.node.peers.add(alpha.node.getMultiaddrs()[0])
    await gamma.node.peers.add(beta.node.getMultiaddrs()[0])
    for (const [a, b] of [[alpha, beta], [alpha, gamma], [beta, alpha], [gamma, alpha]]) await caughtUp(a.node, b.node)
    await eventually(() => gamma.node.registry.rule(rules.get('alpha') as string) === undefined && beta.node.registry.rule(rules.get('alpha') as string) === undefined, 'the rule removal everywhere')
    await sleep(3000)
    expect(await beta.node.records.get('events', 'e1'), 'beta\'s e1').toBeUndefined()
    expect(await gamma.node.records.get('events', 'e1'), 'gamma\'s e1').toBeUndefined()
    // beta's and gamma's rules (→ *) reach alpha: alpha must apply the delete as gamma did
    expect(await alpha.node.records.get('events', 'e1'), 'alpha\'s e1 (beta and gamma have none)').toBeUndefined()
  }, 240_000)
})

describe('a relay\'s delete naming another node\'s write leaves a target\'s own record that its filtered rule never shared alone', () => {
  const nodes: TestNode[] = []
  cleanup(nodes)

  it('alpha sends beta only public records; alpha\'s own private x outlives beta\'s delete of gamma\'s older x', async () => {
    let [alpha, beta, gamma] = await triangle(nodes)
    await alpha.node.registry.addRule({ from: { platform: 'alpha', collection: 'events' }, to: { platform: 'beta', collection: 'events' }, where: { public: true } })
    await alpha.node.registry.addRule({ from: { platform: 'beta', collection: 'events' }, to: { platform: '*', collection: 'events' } })
    await alpha.node.registry.addRule({ from: { platform: 'gamma', collection: 'events' }, to: { platform: 'beta', collection: 'events' } })
    await eventually(async () => (await beta.node.status()).rules.filter(r => r.local && r.backfilled).length === 2 &&
      (await alpha.node.status()).rules.filter(r => r.local && r.backfilled).length === 1, 'the rules to be active')

    // alpha is down while gamma writes x (beta gets it, and logs it: its rule reaches alpha, gamma's does not)
    await alpha.node.stop()
    await gamma.node.records.put('events', 'x', { from: 'gamma' })
    await eventually(async () => await beta.node.records.get('events', 'x') !== undefined, 'beta to get gamma\'s x')
    await caughtUp(gamma.node, beta.node)
    await beta.node.stop()
    await gamma.node.stop()

    // alpha, alone, writes its own private x (later than gamma's): its rule to beta leaves it out
    alpha = await startNode('alpha', { dir: alpha.dir })
    nodes[0] = alpha
    await alpha.node.records.put('events', 'x', { mine: 'alpha', public: false })

    beta = await startNode('beta', { dir: beta.dir })
    nodes[1] = beta
    gamma = await startNode('gamma', { dir: gamma.dir })
    nodes[2] = gamma
    await beta.node.peers.add(alpha.node.getMultiaddrs()[0])
    await gamma.node.peers.add(beta.node.getMultiaddrs()[0])
    await caughtUp(alpha.node, beta.node)
    await caughtUp(beta.node, alpha.node)
    expect((await alpha.node.records.get('events', 'x'))?.value, 'alpha\'s own x, later than gamma\'s').toEqual({ mine: 'alpha', public: false })
    expect((await beta.node.records.get('events', 'x'))?.value).toEqual({ from: 'gamma' })

    // beta deletes the x it holds (gamma's write)
    expect(await beta.node.records.delete('events', 'x')).toBe(true)
    await caughtUp(alpha.node, beta.node)
    await sleep(2000)
    expect(await alpha.node.records.get('events', 'x'), 'alpha\'s own x, which it never shared').toBeDefined()
  }, 240_000)
})

describe('a node joining after a platform was revoked and purged gets the records the others hold from it', () => {
  const nodes: TestNode[] = []
  cleanup(nodes)

  for (const purge of [true, false]) {
    it(`alpha writes, is revoked${purge ? ' with --purge' : ''} and goes away; delta joins beta`, async () => {
      const mesh: TestNode[] = []
      const [alpha, beta, gamma] = await triangle(mesh)
      nodes.push(...mesh)
      await twoWay(mesh, beta) // in beta's log: alpha's log may be purged
      for (let i = 0; i < 10; i++) await alpha.node.records.put('events', `a${i}`, { i })
      await eventually(async () => await countRecords(beta.node, 'events') === 10 && await countRecords(gamma.node, 'events') === 10, 'beta and gamma to hold alpha\'s records')
      await alpha.node.stop()
      await beta.node.registry.revokePlatform('alpha', { purge })
      await eventually(() => gamma.node.registry.platforms().find(p => p.name === 'alpha')?.revoked === true, 'gamma to see the revocation')
      await sleep(2000)
      expect(await countRecords(beta.node, 'events')).toBe(10)

      const delta = await startNode('delta')
      nodes.push(delta)
      await delta.node.peers.add(beta.node.getMultiaddrs()[0])
      await eventually(async () => (await delta.node.status()).rules.filter(r => r.local && r.backfilled).length >= 2, 'delta to backfill beta\'s and gamma\'s rules', 60_000)
      await caughtUp(delta.node, beta.node)
      await caughtUp(delta.node, gamma.node)
      await sleep(3000)
      // beta's and gamma's rules (→ *) reach delta; both hold alpha's 10 records
      expect(await countRecords(delta.node, 'events'), 'delta\'s records (beta and gamma hold 10)').toBe(10)
    }, 240_000)
  }
})
