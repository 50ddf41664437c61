import { afterEach, describe, expect, it } from 'vitest'
import { countRecords, eventually, removeDir, startNode } from '../helpers/nodes.js'
import type { TestNode } from '../helpers/nodes.js'

describe('two nodes in one process', () => {
  const nodes: TestNode[] = []
  afterEach(async () => {
    for (const n of nodes.splice(0)) {
      await n.node.stop().catch(() => {})
      await removeDir(n.dir)
    }
  })

  it('syncs records through a merge rule, both ways of learning the registry', async () => {
    const a = await startNode('A')
    const b = await startNode('B')
    nodes.push(a, b)
    await b.node.peers.add(a.node.getMultiaddrs()[0])
    await a.node.registry.addRule({ from: { platform: 'A', collection: 'posts' }, to: { platform: 'B', collection: 'articles' } })
    for (let i = 0; i < 50; i++) await a.node.records.put('posts', `p${i}`, { n: i, title: `post ${i}` })
    await eventually(async () => await countRecords(b.node, 'articles') === 50, 'B to hold 50 articles')
    expect((await b.node.records.get('articles', 'p7'))?.value).toEqual({ n: 7, title: 'post 7' })
    // the registry reached B
    expect(b.node.registry.platforms().map(p => p.name)).toEqual(['A', 'B'])
    expect(b.node.registry.rules()).toHaveLength(1)
    await a.node.records.put('posts', 'p7', { n: 7, title: 'changed' })
    await a.node.records.delete('posts', 'p8')
    await eventually(async () => (await b.node.records.get('articles', 'p7'))?.value.title === 'changed', 'update to reach B')
    await eventually(async () => await b.node.records.get('articles', 'p8') === undefined, 'delete to reach B')
  })

  it('refuses a peer with the wrong key', async () => {
    const a = await startNode('A')
    const c = await startNode('C', { key: 'w'.repeat(40) })
    nodes.push(a, c)
    await a.node.records.put('posts', '1', { x: 1 })
    await c.node.peers.add(a.node.getMultiaddrs()[0]).catch(() => {})
    await new Promise(resolve => setTimeout(resolve, 1500))
    expect(c.node.registry.platforms().map(p => p.name)).toEqual(['C'])
    const peers = await c.node.peers.list()
    expect(peers.every(p => !p.authenticated)).toBe(true)
  })
})
