/**
 * Hostile HTTP requests keep the API's own metrics bounded: unknown routes,
 * odd methods, long and random URLs, with and without the token, are
 * labelled by route pattern (or "unmatched"), never by what the client sent.
 * The OpenAPI document names no secret of the node. Real node, real HTTP.
 */
import '../../src/polyfill.js'
import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startApiServer } from '../../src/api/server.js'
import type { ApiServer } from '../../src/api/server.js'
import { rawRequest } from '../helpers/http.js'
import { KEY, removeDir, startNode } from '../helpers/nodes.js'
import type { TestNode } from '../helpers/nodes.js'

const TOKEN = 'labels-token-' + 'd'.repeat(32)
const READ_ONLY = 'labels-read-only-' + 'e'.repeat(32)

describe('HTTP metrics labels under hostile requests (real node)', () => {
  let n: TestNode
  let server: ApiServer
  let url: URL

  beforeAll(async () => {
    n = await startNode('labels')
    server = await startApiServer(n.node, { host: '127.0.0.1', port: 0, token: TOKEN, readOnlyToken: READ_ONLY })
    url = new URL(server.url)
  }, 60_000)
  afterAll(async () => {
    await server?.close()
    await n?.node.stop()
    await removeDir(n.dir)
  })

  const series = async (): Promise<string[]> =>
    (await n.node.metrics.registry.metrics()).split('\n').filter(l => l.startsWith('syncmesh_http_request'))

  async function hostileRound (): Promise<string[]> {
    const sent: string[] = []
    const methods = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'PROPFIND', 'BREW', 'X' + randomBytes(3).toString('hex').toUpperCase()]
    for (const method of methods) {
      for (const authorization of [undefined, `Bearer ${TOKEN}`, 'Bearer wrong']) {
        const tail = randomBytes(8).toString('hex')
        for (const path of [`/${tail}`, `/v1/${tail}/${'a'.repeat(2000)}`, `/v1/rules/r-${tail}/pause`, `/v1/collections/c${tail}/records/${tail}?x=${tail}`]) {
          sent.push(tail)
          await rawRequest(url, { method, path, headers: authorization !== undefined ? { authorization } : {} }).catch(() => {})
        }
      }
    }
    return sent
  }

  it('a second round of new hostile URLs and methods adds no series, and no label holds what a client sent', async () => {
    const first = await hostileRound()
    const after1 = await series()
    const second = await hostileRound()
    const after2 = await series()
    // label sets, without the values
    const labelSets = (lines: string[]): Set<string> => new Set(lines.map(l => l.replace(/ \S+$/, '')))
    expect([...labelSets(after2)].filter(s => !labelSets(after1).has(s))).toEqual([])
    const routes = new Set([...server.routes.map(r => r.url), 'unmatched'])
    for (const line of after2) {
      const route = /route="([^"]*)"/.exec(line)?.[1]
      if (route !== undefined) expect(routes.has(route), line).toBe(true)
      for (const tail of [...first, ...second]) expect(line.includes(tail), line).toBe(false)
    }
  }, 120_000)

  it('the OpenAPI document holds neither API token nor the mesh key', async () => {
    const res = await rawRequest(url, { path: '/v1/openapi.json', headers: { authorization: `Bearer ${READ_ONLY}` } })
    expect(res.status).toBe(200)
    for (const secret of [TOKEN, READ_ONLY, KEY]) expect(res.text.includes(secret)).toBe(false)
    expect((await rawRequest(url, { path: '/v1/openapi.json' })).status).toBe(401)
  })
})
