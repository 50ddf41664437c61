/**
 * The OpenAPI document a real node serves (GET /v1/openapi.json) describes
 * every route the server registered, with the schemas its handlers parse.
 */
import '../../src/polyfill.js'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startApiServer } from '../../src/api/server.js'
import type { ApiServer } from '../../src/api/server.js'
import { createSyncNode } from '../../src/node/node.js'
import { packageVersion } from '../../src/core/version.js'

const TOKEN = 'openapi-test-token-' + 'c'.repeat(32)

interface Doc { openapi: string, info: { version: string }, paths: Record<string, Record<string, { summary: string, requestBody?: { content: Record<string, { schema: { properties?: Record<string, unknown>, required?: string[] } }> }, parameters?: Array<{ name: string, in: string }>, security?: unknown[] }>> }

describe('the OpenAPI document', () => {
  let root: string
  let node: Awaited<ReturnType<typeof createSyncNode>>
  let server: ApiServer
  let doc: Doc

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'syncmesh-openapi-'))
    node = await createSyncNode({ dataDir: join(root, 'a'), key: 'x'.repeat(32), name: 'alpha', listen: ['/ip4/127.0.0.1/tcp/0'] })
    await node.start()
    server = await startApiServer(node, { host: '127.0.0.1', port: 0, token: TOKEN })
    const res = await fetch(`${server.url}/v1/openapi.json`, { headers: { authorization: `Bearer ${TOKEN}` } })
    expect(res.status).toBe(200)
    doc = await res.json() as Doc
  })

  afterAll(async () => {
    await server?.close()
    await node?.stop()
    await rm(root, { recursive: true, force: true })
  })

  it('is OpenAPI 3.1 with the package version', () => {
    expect(doc.openapi).toBe('3.1.0')
    expect(doc.info.version).toBe(packageVersion())
    expect(packageVersion()).toMatch(/^\d+\.\d+\.\d+/)
  })

  it('lists every API route the server registered, under its OpenAPI path', () => {
    const api = server.routes.filter(r => r.method !== 'HEAD' && (r.url.startsWith('/v1/') || r.url === '/metrics'))
    expect(api.length).toBeGreaterThan(20)
    const missing = api.filter(r => doc.paths[r.url.replace(/:([A-Za-z0-9_]+)/g, '{$1}')]?.[r.method.toLowerCase()] === undefined)
    expect(missing.map(r => `${r.method} ${r.url}`)).toEqual([])
  })

  it('takes request bodies and query parameters from the schemas the handlers parse', () => {
    const peers = doc.paths['/v1/peers'].post
    const body = peers.requestBody?.content['application/json'].schema
    expect(body?.required).toEqual(['multiaddr'])
    const list = doc.paths['/v1/collections/{collection}/records'].get
    expect(list.parameters?.map(p => `${p.in}:${p.name}`).sort()).toEqual(['path:collection', 'query:after', 'query:limit'])
    expect(Object.keys(doc.paths['/v1/collections/{collection}/import'].post.requestBody?.content ?? {})).toContain('application/x-ndjson')
    // the health check is the one route without a token
    expect(doc.paths['/v1/health'].get.security).toEqual([])
  })

  it('needs the token like every other route', async () => {
    const res = await fetch(`${server.url}/v1/openapi.json`)
    expect(res.status).toBe(401)
  })
})
