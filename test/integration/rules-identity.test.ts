/**
 * Two-way sync between three real nodes in one process (libp2p on
 * 127.0.0.1, LevelDB in temp dirs), the way the docs suggest: one
 * `X:events → *:events` rule per node, so every node both sends and receives
 * the collection and rule writes are relayed on (chaining). A write keeps its
 * identity wherever it travels: one import of 30 records on one node ends
 * with exactly one change per record on every node, no conflict, and the
 * same version everywhere. Relays log none of it again: every node gets each
 * write from the write's own rule (RuleSet relayedPutsLeftOut; with rule
 * streams, a relay's rule stream leaves them out: RuleSet streamLeavesOut). A
 * node that joins outside that rule's reach gets the writes made before it
 * joined from a relay, which then logs them after all (in its rule stream).
 */
import '../../src/polyfill.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ChangeEvent, FeedLine } from '../../src/core/types.js'
import type { SyncNode } from '../../src/node/node.js'
import { countRecords, eventually, removeDir, startNode } from '../helpers/nodes.js'
import type { TestNode } from '../helpers/nodes.js'
import { ownSeq } from '../helpers/relay-mesh.js'

const RECORDS = 30

describe('a write keeps its identity through chaining (three nodes, two-way rules)', () => {
  const nodes: TestNode[] = []
  const names = ['alpha', 'beta', 'gamma']
  const events = new Map<string, ChangeEvent[]>()

  beforeAll(async () => {
    for (const name of names) {
      const n = await startNode(name)
      nodes.push(n)
      const seen: ChangeEvent[] = []
      events.set(name, seen)
      n.node.addEventListener('change', (e) => { const c = (e as CustomEvent<ChangeEvent>).detail; if (c.collection === 'events') seen.push(c) })
    }
    const [alpha, beta, gamma] = nodes.map(n => n.node)
    await beta.peers.add(alpha.getMultiaddrs()[0])
    await gamma.peers.add(alpha.getMultiaddrs()[0])
    await gamma.peers.add(beta.getMultiaddrs()[0])
    await eventually(() => nodes.every(n => n.node.registry.platforms().length === 3), 'every registry to hold three platforms')
  }, 60_000)

  afterAll(async () => {
    for (const n of nodes) await n.node.stop().catch(() => {})
    for (const n of nodes) await removeDir(n.dir)
  }, 60_000)

  async function feed (node: SyncNode): Promise<FeedLine[]> {
    const out: FeedLine[] = []
    for await (const line of node.changes({ collection: 'events' })) out.push(line)
    return out
  }

  /** The nodes' own logs and feeds stop moving (chaining has run its course). */
  async function settled (): Promise<void> {
    let last = ''
    let stableSince = Date.now()
    await eventually(async () => {
      const states = await Promise.all(nodes.map(async n => {
        const s = await n.node.status()
        return JSON.stringify([s.origins.map(o => [o.origin, o.seq]), s.rules.map(r => [r.id, r.applied, r.conflicts]), s.caughtUp])
      }))
      const now = JSON.stringify(states)
      if (now !== last) {
        last = now
        stableSince = Date.now()
        return false
      }
      return Date.now() - stableSince >= 1500
    }, 'the three nodes to settle', 30_000)
  }

  it('one import of 30 records: one change per record on every node, no conflict, identical versions', async () => {
    const [alpha] = nodes.map(n => n.node)
    for (const n of nodes) {
      await n.node.registry.addRule({ from: { platform: n.node.name, collection: 'events' }, to: { platform: '*', collection: 'events' } })
    }
    await eventually(async () => {
      for (const n of nodes) {
        const rules = (await n.node.status()).rules
        // every node applies the two rules of the other nodes
        if (rules.filter(r => r.local && r.backfilled && r.problem === undefined).length !== 2) return false
      }
      return true
    }, 'the rules to be active on every node')

    const seqBefore = await Promise.all(nodes.map(async n => await ownSeq(n.node)))
    const lines = Array.from({ length: RECORDS }, (_, i) => ({ id: `e${String(i).padStart(2, '0')}`, value: { n: i, text: `event ${i}` } }))
    const { imported } = await alpha.records.import('events', lines)
    expect(imported).toBe(RECORDS)
    await eventually(async () => {
      for (const n of nodes) if (await countRecords(n.node, 'events') !== RECORDS) return false
      return true
    }, 'every node to hold the 30 records')
    await settled()

    for (const [i, n] of nodes.entries()) {
      const name = names[i]
      const status = await n.node.status()
      expect(status.rules.map(r => ({ rule: r.from, conflicts: r.conflicts })), `${name}'s rules`).toEqual(status.rules.map(r => ({ rule: r.from, conflicts: 0 })))
      for (const rule of status.rules) expect((await n.node.registry.conflicts(rule.id)).total, `${name}'s conflict log of ${rule.from}`).toBe(0)
      // one change event per record, and the feed took one cursor per record
      const seen = events.get(name) ?? []
      expect(seen.length, `${name}'s change events`).toBe(RECORDS)
      expect(new Set(seen.map(c => c.id)).size).toBe(RECORDS)
      const lines = await feed(n.node)
      expect(lines.length).toBe(RECORDS)
      expect(Math.max(...lines.map(l => Number(l.cursor))), `${name}'s last feed cursor`).toBe(RECORDS)
    }

    // the writes travel once: in alpha's log only; beta and gamma log none of them again
    const seqAfter = await Promise.all(nodes.map(async n => await ownSeq(n.node)))
    expect(seqAfter[0] - seqBefore[0], "alpha's own log").toBe(RECORDS)
    expect(seqAfter.slice(1), "beta's and gamma's own logs").toEqual(seqBefore.slice(1))

    // the same write, the same version, on every node: the origin's
    for (const { id } of lines) {
      const versions = await Promise.all(nodes.map(async n => (await n.node.records.get('events', id))?.version))
      expect(versions[0]?.origin).toBe(alpha.peerId)
      expect(versions[1], `beta's version of ${id}`).toEqual(versions[0])
      expect(versions[2], `gamma's version of ${id}`).toEqual(versions[0])
    }
  }, 120_000)

  it('updates and deletes travel the same way: one change each, no conflict, identical versions and tombstones', async () => {
    const [alpha] = nodes.map(n => n.node)
    const before = await Promise.all(nodes.map(async n => Math.max(...(await feed(n.node)).map(l => Number(l.cursor)))))
    const seenBefore = names.map(name => events.get(name)?.length ?? 0)
    for (let i = 0; i < 10; i++) await alpha.records.put('events', `e${String(i).padStart(2, '0')}`, { n: i, text: `event ${i}, updated` })
    for (let i = 10; i < 15; i++) await alpha.records.delete('events', `e${String(i).padStart(2, '0')}`)
    await eventually(async () => {
      for (const n of nodes) {
        if (await countRecords(n.node, 'events') !== RECORDS - 5) return false
        if ((await n.node.records.get('events', 'e09'))?.value.text !== 'event 9, updated') return false
      }
      return true
    }, 'the updates and deletes on every node')
    await settled()
    for (const [i, n] of nodes.entries()) {
      const name = names[i]
      const status = await n.node.status()
      expect(status.rules.map(r => r.conflicts), `${name}'s conflicts`).toEqual(status.rules.map(() => 0))
      expect((events.get(name)?.length ?? 0) - seenBefore[i], `${name}'s change events`).toBe(15)
      const last = Math.max(...(await feed(n.node)).map(l => Number(l.cursor)))
      expect(last - before[i], `${name}'s feed cursors taken`).toBe(15)
    }
    for (let i = 0; i < RECORDS; i++) {
      const id = `e${String(i).padStart(2, '0')}`
      const records = await Promise.all(nodes.map(async n => await n.node.records.get('events', id)))
      if (i >= 10 && i < 15) {
        expect(records, `${id} deleted everywhere`).toEqual([undefined, undefined, undefined])
        continue
      }
      expect(records[1], `beta's ${id}`).toEqual(records[0])
      expect(records[2], `gamma's ${id}`).toEqual(records[0])
    }
  }, 120_000)

  it('a relay deletes and updates records that came from another node: every node follows, though the relay never logged them', async () => {
    const [alpha, beta] = nodes.map(n => n.node)
    const betaSeq = async (): Promise<number> => await ownSeq(beta)
    const before = await betaSeq()
    // e20..e22 and e23 are alpha's writes; beta holds them from alpha's rule only
    expect((await beta.records.get('events', 'e20'))?.version.origin).toBe(alpha.peerId)
    for (const id of ['e20', 'e21', 'e22']) expect(await beta.records.delete('events', id)).toBe(true)
    await beta.records.put('events', 'e23', { n: 23, text: 'edited on beta' })
    await eventually(async () => {
      for (const n of nodes) {
        for (const id of ['e20', 'e21', 'e22']) if (await n.node.records.get('events', id) !== undefined) return false
        if ((await n.node.records.get('events', 'e23'))?.value.text !== 'edited on beta') return false
      }
      return true
    }, "beta's deletes and update on every node")
    await settled()
    expect(await betaSeq(), "beta's own log: its four writes").toBe(before + 4)
    for (const id of ['e20', 'e21', 'e22', 'e23', 'e24']) {
      const records = await Promise.all(nodes.map(async n => await n.node.records.get('events', id)))
      expect(records[0], `alpha's ${id}`).toEqual(records[1])
      expect(records[2], `gamma's ${id}`).toEqual(records[1])
    }
  }, 120_000)
})

describe('a relay logs what it left out once a reader of its collection reaches a node the writes\' own rule does not', () => {
  const nodes: TestNode[] = []

  afterAll(async () => {
    for (const n of nodes) await n.node.stop().catch(() => {})
    for (const n of nodes) await removeDir(n.dir)
  }, 60_000)

  it('a node outside the source rule\'s region joins later and gets the earlier writes through the relay', async () => {
    // alpha sends to region eu (beta, gamma); beta sends on to every node. While every node is in
    // eu, beta's rule reaches no one alpha's rule does not: beta logs nothing of alpha's writes.
    const alpha = await startNode('alpha', { region: 'us' })
    nodes.push(alpha)
    const beta = await startNode('beta', { region: 'eu' })
    nodes.push(beta)
    const gamma = await startNode('gamma', { region: 'eu' })
    nodes.push(gamma)
    await beta.node.peers.add(alpha.node.getMultiaddrs()[0])
    await gamma.node.peers.add(beta.node.getMultiaddrs()[0])
    await eventually(() => nodes.every(n => n.node.registry.platforms().length === 3), 'every registry to hold three platforms')
    await alpha.node.registry.addRule({ from: { platform: 'alpha', collection: 'events' }, to: { region: 'eu', collection: 'events' } })
    await alpha.node.registry.addRule({ from: { platform: 'beta', collection: 'events' }, to: { platform: '*', collection: 'events' } })
    await eventually(async () => (await beta.node.status()).rules.some(r => r.local && r.backfilled) && (await gamma.node.status()).rules.filter(r => r.local && r.backfilled).length === 2, 'the rules to be active')
    const betaSeq = async (): Promise<number> => await ownSeq(beta.node)
    const before = await betaSeq()
    for (let i = 0; i < 20; i++) await alpha.node.records.put('events', `a${i}`, { i })
    await eventually(async () => await countRecords(gamma.node, 'events') === 20 && await countRecords(beta.node, 'events') === 20, 'beta and gamma to hold alpha\'s 20 records')
    const quiet = await betaSeq()
    expect(quiet, "beta's own log while its rule reaches no one alpha's does not").toBe(before)

    // delta (region ap) joins: beta's rule reaches it, alpha's does not
    const delta = await startNode('delta', { region: 'ap' })
    nodes.push(delta)
    await delta.node.peers.add(beta.node.getMultiaddrs()[0])
    await eventually(async () => await countRecords(delta.node, 'events') === 20, 'delta to get alpha\'s earlier 20 records through beta', 30_000)
    expect(await betaSeq(), "beta's own log: alpha's writes, logged once delta needed them").toBeGreaterThanOrEqual(quiet + 20)
    // and what alpha writes from now on reaches delta through beta as it is written
    for (let i = 20; i < 25; i++) await alpha.node.records.put('events', `a${i}`, { i })
    await eventually(async () => await countRecords(delta.node, 'events') === 25, 'delta to get alpha\'s new records')
    const record = await delta.node.records.get('events', 'a3')
    expect(record?.value).toEqual({ i: 3 })
    expect(record?.version.origin, 'the write keeps its origin through the relay').toBe(alpha.node.peerId)
  }, 120_000)
})

describe('what a relay left out is logged after a restart too, when the node that needs it joined while the relay was down', () => {
  const nodes: TestNode[] = []

  afterAll(async () => {
    for (const n of nodes) await n.node.stop().catch(() => {})
    for (const n of nodes) await removeDir(n.dir)
  }, 60_000)

  it('beta, stopped while delta joins, logs alpha\'s earlier writes when it starts again', async () => {
    const alpha = await startNode('alpha', { region: 'us' })
    const beta = await startNode('beta', { region: 'eu' })
    const gamma = await startNode('gamma', { region: 'eu' })
    nodes.push(alpha, beta, gamma)
    await beta.node.peers.add(alpha.node.getMultiaddrs()[0])
    await gamma.node.peers.add(beta.node.getMultiaddrs()[0])
    await gamma.node.peers.add(alpha.node.getMultiaddrs()[0])
    await eventually(() => nodes.every(n => n.node.registry.platforms().length === 3), 'every registry to hold three platforms')
    await alpha.node.registry.addRule({ from: { platform: 'alpha', collection: 'events' }, to: { region: 'eu', collection: 'events' } })
    await alpha.node.registry.addRule({ from: { platform: 'beta', collection: 'events' }, to: { platform: '*', collection: 'events' } })
    await eventually(async () => (await beta.node.status()).rules.some(r => r.local && r.backfilled), 'the rules to be active on beta')
    for (let i = 0; i < 20; i++) await alpha.node.records.put('events', `a${i}`, { i })
    await eventually(async () => await countRecords(beta.node, 'events') === 20, 'beta to hold alpha\'s 20 records')
    await beta.node.stop()

    // delta joins through gamma while beta is down; alpha's rule does not reach it
    const delta = await startNode('delta', { region: 'ap' })
    nodes.push(delta)
    await delta.node.peers.add(gamma.node.getMultiaddrs()[0])
    await eventually(() => delta.node.registry.platforms().length === 4 && gamma.node.registry.platforms().length === 4, 'delta to join')
    expect(await countRecords(delta.node, 'events')).toBe(0)

    const again = await startNode('beta', { dir: beta.dir, region: 'eu' })
    nodes[1] = again
    await again.node.peers.add(gamma.node.getMultiaddrs()[0])
    await eventually(async () => await countRecords(delta.node, 'events') === 20, 'delta to get alpha\'s 20 records through beta\'s log, by way of gamma', 30_000)
  }, 120_000)
})
