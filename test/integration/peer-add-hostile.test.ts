/**
 * POST /v1/peers from a caller who sends garbage or points the node at
 * something that is not a peer: a clear error with a stable code and a short
 * message, nothing saved, the node keeps running. Real node, real HTTP, real
 * TCP listeners on loopback.
 */
import '../../src/polyfill.js'
import { createServer } from 'node:net'
import type { Server, Socket } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startApiServer } from '../../src/api/server.js'
import type { ApiServer } from '../../src/api/server.js'
import { rawRequest } from '../helpers/http.js'
import { removeDir, startNode } from '../helpers/nodes.js'
import type { TestNode } from '../helpers/nodes.js'

const TOKEN = 'peer-add-token-' + 'f'.repeat(32)

describe('peer add against hostile input (real node)', () => {
  let n: TestNode
  let server: ApiServer
  let url: URL
  let hole: Server
  const held: Socket[] = []

  beforeAll(async () => {
    n = await startNode('adder')
    server = await startApiServer(n.node, { host: '127.0.0.1', port: 0, token: TOKEN })
    url = new URL(server.url)
    // accepts connections and never says a word
    hole = createServer((s) => { held.push(s); s.on('error', () => {}) })
    await new Promise<void>(resolve => hole.listen(0, '127.0.0.1', () => resolve()))
  }, 60_000)
  afterAll(async () => {
    for (const s of held) s.destroy()
    await new Promise<void>(resolve => hole.close(() => resolve()))
    await server?.close()
    await n?.node.stop()
    await removeDir(n.dir)
  })

  const add = async (body: unknown): Promise<{ status: number, code?: string, message: string }> => {
    const res = await rawRequest(url, { method: 'POST', path: '/v1/peers', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
    return { status: res.status, code: res.json?.error?.code, message: String(res.json?.error?.message ?? res.text) }
  }

  it('a huge multiaddr is refused with INVALID_MULTIADDR and a short message, nothing saved', async () => {
    for (const multiaddr of ['/ip4/' + '1'.repeat(100_000) + '/tcp/1', '/dns4/' + 'a'.repeat(100_000) + '/tcp/1/p2p/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo', 'x'.repeat(100_000)]) {
      for (const save of [false, true]) {
        const r = await add({ multiaddr, save })
        expect({ status: r.status, code: r.code }, r.message.slice(0, 200)).toEqual({ status: 400, code: 'INVALID_MULTIADDR' })
        expect(r.message.length).toBeLessThan(600)
      }
    }
    expect(await n.node.peers.list()).toEqual([])
    expect((await rawRequest(url, { path: '/v1/health' })).status).toBe(200)
  })

  it('an address that accepts and says nothing answers PEER_UNREACHABLE in bounded time, nothing saved', async () => {
    const port = (hole.address() as { port: number }).port
    const r = await add({ multiaddr: `/ip4/127.0.0.1/tcp/${port}` })
    expect({ status: r.status, code: r.code }, r.message).toEqual({ status: 502, code: 'PEER_UNREACHABLE' })
    expect(held.length).toBeGreaterThan(0) // it did dial
    expect(await n.node.peers.list()).toEqual([])
  }, 60_000)
})

describe('peer add to a node of another mesh key (real nodes)', () => {
  const nodes: TestNode[] = []
  afterAll(async () => {
    for (const t of nodes) {
      await t.node.stop().catch(() => {})
      await removeDir(t.dir)
    }
  })

  it('says why the key was not proved, with or without the /p2p/ suffix, and keeps nothing', async () => {
    const a = await startNode('keyA')
    nodes.push(a)
    // one node of the other key per form of address: a node refuses a peer that failed the key for a while
    const addrs: string[] = []
    for (const [i, withId] of [[0, false], [1, true]] as const) {
      const other = await startNode(`key${i}`, { key: 'z'.repeat(40) })
      nodes.push(other)
      const full = other.node.getMultiaddrs()[0]
      addrs.push(withId ? full : full.replace(/\/p2p\/[^/]+$/, ''))
    }
    for (const addr of addrs) {
      const err = await a.node.peers.add(addr).then(() => undefined, (e: { code?: string, message: string }) => e)
      expect(err?.code, addr).toBe('PEER_KEY_NOT_PROVED')
      expect(err?.message, addr).toMatch(/wrong mesh key/)
    }
    expect(await a.node.peers.list()).toEqual([])
  }, 60_000)
})
