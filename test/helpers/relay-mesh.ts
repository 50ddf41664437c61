/**
 * Small meshes of in-process nodes for the tests of relays and deletes
 * (test/integration/relay-*.test.ts): three nodes peered as a triangle,
 * plain two-way rules, and waits on how far a node holds another's logs.
 */
import { afterAll } from 'vitest'
import type { SyncNode } from '../../src/node/node.js'
import { eventually, removeDir, startNode } from './nodes.js'
import type { TestNode } from './nodes.js'

/**
 * How many entries `n` has written to its own logs that carry records: its whole log, or with rule streams
 * its rule streams (`<peer id>/r.…`: its whole log then carries the registry only, the keys of its streams among it).
 */
export async function ownSeq (n: SyncNode): Promise<number> {
  const status = await n.status()
  const carriesRecords = (origin: string): boolean => status.streams === true ? origin.startsWith(`${n.peerId}/`) : origin === n.peerId
  return status.origins.filter(o => carriesRecords(o.origin)).reduce((sum, o) => sum + o.seq, 0)
}

/** How far `n` holds each log of `peer`'s: its whole log and its rule streams. */
async function logsOf (n: SyncNode, peer: string): Promise<Map<string, number>> {
  return new Map((await n.status()).origins.filter(o => o.origin === peer || o.origin.startsWith(`${peer}/`)).map(o => [o.origin, o.seq]))
}

/** `reader` holds each of `writer`'s own logs (its whole log, its rule streams) as they are now. */
export async function caughtUp (reader: SyncNode, writer: SyncNode): Promise<void> {
  const written = await logsOf(writer, writer.peerId)
  await eventually(async () => {
    const held = await logsOf(reader, writer.peerId)
    return [...written].every(([log, seq]) => (held.get(log) ?? 0) >= seq)
  }, `${reader.name} to hold ${writer.name}'s logs`, 30_000)
}

export async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}

/** Stop and remove every node `nodes` holds after the suite (push each node there as it starts). */
export function cleanup (nodes: TestNode[]): void {
  afterAll(async () => {
    for (const n of nodes) await n.node.stop().catch(() => {})
    for (const n of nodes) await removeDir(n.dir)
  }, 60_000)
}

/** alpha, beta and gamma, each peered with the others, once every registry holds the three (added to `nodes`). */
export async function triangle (nodes: TestNode[]): Promise<[TestNode, TestNode, TestNode]> {
  const three: [TestNode, TestNode, TestNode] = [await startNode('alpha'), await startNode('beta'), await startNode('gamma')]
  nodes.push(...three)
  const [alpha, beta, gamma] = three
  await beta.node.peers.add(alpha.node.getMultiaddrs()[0])
  await gamma.node.peers.add(alpha.node.getMultiaddrs()[0])
  await gamma.node.peers.add(beta.node.getMultiaddrs()[0])
  await eventually(() => three.every(n => n.node.registry.platforms().length === 3), 'three platforms everywhere')
  return three
}

/** One plain two-way rule per node (`X:events → *:events`), added by `by`, once every node applies the others'. Returns the rule ids by platform. */
export async function twoWay (nodes: TestNode[], by = nodes[0]): Promise<Map<string, string>> {
  const ids = new Map<string, string>()
  for (const n of nodes) {
    const r = await by.node.registry.addRule({ from: { platform: n.node.name, collection: 'events' }, to: { platform: '*', collection: 'events' } })
    ids.set(n.node.name, r.id)
  }
  await eventually(async () => {
    for (const n of nodes) if ((await n.node.status()).rules.filter(r => r.local && r.backfilled).length !== nodes.length - 1) return false
    return true
  }, 'the rules to be active')
  return ids
}
