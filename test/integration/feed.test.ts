/**
 * The changes feed when followed: a follower that has read everything gets
 * the next commit's lines from memory (no index read); whatever the timing,
 * it sees every record at its newest state, in cursor order, once per change.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { commitLines } from '../../src/store/changes.js'
import type { FeedCommit } from '../../src/store/changes.js'
import type { ChangeEvent, FeedLine } from '../../src/core/types.js'
import { removeDir, startNode } from '../helpers/nodes.js'
import type { TestNode } from '../helpers/nodes.js'

const version = { hlc: '1.0', origin: 'o', seq: 1 }
const change = (collection: string, id: string, cursor: number, n: number): ChangeEvent => ({ collection, id, op: 'put', value: { n }, version, cursor: String(cursor) })

describe('commitLines', () => {
  it('gives each record once at its newest cursor, in cursor order, for the collection asked', () => {
    const commit: FeedCommit = { from: 10, to: 14, changes: [change('a', 'x', 11, 1), change('b', 'y', 12, 2), change('a', 'x', 13, 3), change('a', 'z', 14, 4)] }
    expect(commitLines(commit, undefined)?.map(l => [l.collection, l.id, l.cursor, l.value?.n])).toEqual([['b', 'y', '12', 2], ['a', 'x', '13', 3], ['a', 'z', '14', 4]])
    expect(commitLines(commit, 'a')?.map(l => l.cursor)).toEqual(['13', '14'])
  })

  it('refuses a commit whose changes do not account for every cursor (the follower reads the index instead)', () => {
    expect(commitLines({ from: 10, to: 13, changes: [change('a', 'x', 11, 1), change('a', 'y', 13, 2)] }, undefined)).toBeUndefined()
    expect(commitLines({ from: 10, to: 11, changes: [change('a', 'x', 12, 1)] }, undefined)).toBeUndefined()
  })
})

let n: TestNode | undefined
afterEach(async () => {
  await n?.node.stop().catch(() => {})
  if (n !== undefined) await removeDir(n.dir)
  n = undefined
})

describe('following the changes feed', () => {
  it('sees every change of single writes and imports, newest state last, cursors increasing', async () => {
    n = await startNode('feeder')
    const node = n.node
    const abort = new AbortController()
    const seen: Array<Extract<FeedLine, { type: 'change' }>> = []
    const following = (async () => {
      for await (const line of node.changes({ collection: 'docs', since: 'now', follow: true, heartbeatMs: 1000, signal: abort.signal })) {
        if (line.type === 'change') seen.push(line)
      }
    })()
    // single writes back to back (commits land while the follower is busy), an import that writes
    // one record twice, deletes, and writes to another collection in between
    const writes: Array<Promise<unknown>> = []
    for (let i = 0; i < 200; i++) writes.push(node.records.put('docs', `d${i % 50}`, { i }))
    await Promise.all(writes)
    await node.records.put('other', 'o1', { x: 1 })
    await node.records.import('docs', [{ id: 'd1', value: { i: 1000 } }, { id: 'd2', value: { i: 1001 } }, { id: 'd1', value: { i: 1002 } }])
    await node.records.delete('docs', 'd3')
    const expected = new Map<string, unknown>()
    for await (const line of node.changes({ collection: 'docs', since: '0' })) if (line.type === 'change') expected.set(line.id, line.op === 'put' ? line.value : null)
    const last = (): Map<string, unknown> => new Map(seen.map(l => [l.id, l.op === 'put' ? l.value : null]))
    const deadline = Date.now() + 10_000
    while (JSON.stringify([...last()].sort()) !== JSON.stringify([...expected].sort()) && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 20))
    abort.abort()
    await following.catch(() => {})
    expect(Object.fromEntries(last())).toEqual(Object.fromEntries(expected))
    expect(expected.get('d1')).toEqual({ i: 1002 })
    expect(expected.get('d3')).toBeNull()
    const cursors = seen.map(l => Number(l.cursor))
    expect(cursors).toEqual([...cursors].sort((a, b) => a - b))
    expect(new Set(cursors).size).toBe(cursors.length)
    expect(seen.every(l => l.collection === 'docs')).toBe(true)
  })
})

describe('following one collection', () => {
  it('waits quietly while other collections change (no reading in a loop)', async () => {
    n = await startNode('quiet')
    const node = n.node
    const db = (node as unknown as { store: { db: { iterator: (...args: unknown[]) => unknown } } }).store.db
    let reads = 0
    const iterator = db.iterator.bind(db)
    db.iterator = (...args: unknown[]) => { reads++; return iterator(...args) }
    // the newest change is in another collection before the follower starts
    await node.records.put('docs', 'd1', { n: 1 })
    await node.records.put('other', 'o1', { n: 1 })
    const abort = new AbortController()
    const seen: string[] = []
    const following = (async () => {
      for await (const line of node.changes({ collection: 'docs', since: '0', follow: true, heartbeatMs: 5000, signal: abort.signal })) {
        if (line.type === 'change') seen.push(line.id)
      }
    })()
    await new Promise(resolve => setTimeout(resolve, 200))
    const before = reads
    await new Promise(resolve => setTimeout(resolve, 300))
    expect(reads - before).toBeLessThan(5)
    await node.records.put('docs', 'd2', { n: 2 })
    const deadline = Date.now() + 5000
    while (!seen.includes('d2') && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 20))
    abort.abort()
    await following.catch(() => {})
    expect(seen).toEqual(['d1', 'd2'])
  })
})
