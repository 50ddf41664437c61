/**
 * The HTTP API in front of real nodes (createSyncNode, libp2p on 127.0.0.1,
 * LevelDB in temp dirs): every route, every broken input gets a 4xx JSON
 * error and the node keeps serving, and two nodes sync through the API.
 */
import '../../src/polyfill.js'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ApiClient } from '../../src/api/client.js'
import { startApiServer } from '../../src/api/server.js'
import { rawRequest } from '../helpers/http.js'
import type { RawResponse } from '../helpers/http.js'
import type { ApiServer } from '../../src/api/server.js'
import { createSyncNode } from '../../src/node/node.js'

const KEY = 'x'.repeat(32)
const TOKEN = 'node-test-token-' + 'b'.repeat(32)

type Node = Awaited<ReturnType<typeof createSyncNode>>

async function raw (url: string, options: { method?: string, path: string, headers?: Record<string, string>, body?: string }): Promise<RawResponse> {
  return await rawRequest(url, options)
}

async function until (check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`condition not met within ${timeoutMs} ms`)
}

const auth = { authorization: `Bearer ${TOKEN}` }
const jsonHeaders = { ...auth, 'content-type': 'application/json' }

describe('HTTP API on a real node', () => {
  let root: string
  const nodes: Node[] = []
  const servers: ApiServer[] = []
  let a: ApiClient
  let b: ApiClient
  let aUrl: string

  async function launch (name: string): Promise<{ node: Node, client: ApiClient, url: string }> {
    const node = await createSyncNode({ dataDir: join(root, name), key: KEY, name, listen: ['/ip4/127.0.0.1/tcp/0'] })
    await node.start()
    nodes.push(node)
    const server = await startApiServer(node, { host: '127.0.0.1', port: 0, token: TOKEN })
    servers.push(server)
    return { node, client: new ApiClient(server.url, TOKEN), url: server.url }
  }

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'syncmesh-api-node-'))
    const first = await launch('alpha')
    a = first.client
    aUrl = first.url
    b = (await launch('beta')).client
  }, 60_000)

  afterAll(async () => {
    for (const server of servers) await server.close().catch(() => {})
    for (const node of nodes) await node.stop().catch(() => {})
    if (root != null) await rm(root, { recursive: true, force: true })
  }, 60_000)

  async function stillServing (): Promise<void> {
    expect((await a.health()).ok).toBe(true)
    const stored = await a.putRecord('alive', 'x', { at: Date.now() })
    expect((await a.getRecord('alive', 'x')).version).toEqual(stored.version)
  }

  it('serves health and status', async () => {
    const health = await raw(aUrl, { path: '/v1/health' })
    expect(health.status).toBe(200)
    expect(health.json).toMatchObject({ ok: true, name: 'alpha' })
    const status = await a.status()
    expect(status.name).toBe('alpha')
    expect(status.peerId).toBe(health.json.peerId)
    expect(status.multiaddrs.length).toBeGreaterThan(0)
  })

  it('puts, gets, pages and deletes records', async () => {
    const stored = await a.putRecord('posts', '42', { title: 'hello' })
    expect(stored).toMatchObject({ collection: 'posts', id: '42', value: { title: 'hello' } })
    expect(await a.getRecord('posts', '42')).toEqual(stored)
    for (let i = 0; i < 12; i++) await a.putRecord('paged', `k${String(i).padStart(2, '0')}`, { i })
    const first = await a.listRecords('paged', { limit: 5 })
    expect(first.records).toHaveLength(5)
    expect(first.next).toBeDefined()
    const ids: string[] = []
    for await (const r of a.iterateRecords('paged', { pageSize: 5 })) ids.push(r.id)
    expect(ids).toHaveLength(12)
    expect(await a.deleteRecord('posts', '42')).toEqual({ deleted: true })
    await expect(a.getRecord('posts', '42')).rejects.toMatchObject({ code: 'NOT_FOUND', status: 404 })
    await expect(a.deleteRecord('posts', '42')).rejects.toMatchObject({ code: 'NOT_FOUND', status: 404 })
  })

  it('pages over deleted records (tombstones) without short or empty pages', async () => {
    for (let i = 0; i < 12; i++) await a.putRecord('tomb', `k${String(i).padStart(2, '0')}`, { i })
    for (const id of ['k01', 'k02', 'k03', 'k05', 'k11']) await a.deleteRecord('tomb', id)
    const first = await a.listRecords('tomb', { limit: 3 })
    expect(first.records.map(r => r.id)).toEqual(['k00', 'k04', 'k06'])
    expect(first.next).toBe('k06')
    const second = await a.listRecords('tomb', { after: first.next, limit: 3 })
    expect(second.records.map(r => r.id)).toEqual(['k07', 'k08', 'k09'])
    const last = await a.listRecords('tomb', { after: second.next, limit: 3 })
    expect(last.records.map(r => r.id)).toEqual(['k10'])
    expect(last.next).toBeUndefined()
  })

  it('answers every broken input with a 4xx JSON error and keeps serving', async () => {
    const cases: Array<{ req: Parameters<typeof raw>[1], status: number, code: string }> = [
      { req: { method: 'PUT', path: '/v1/collections/p/records/x', headers: jsonHeaders, body: '[1]' }, status: 400, code: 'INVALID_VALUE' },
      { req: { method: 'PUT', path: '/v1/collections/p/records/x', headers: jsonHeaders, body: '"s"' }, status: 400, code: 'INVALID_VALUE' },
      { req: { method: 'PUT', path: '/v1/collections/p/records/x', headers: jsonHeaders, body: '7' }, status: 400, code: 'INVALID_VALUE' },
      { req: { method: 'PUT', path: '/v1/collections/p/records/x', headers: jsonHeaders, body: 'null' }, status: 400, code: 'INVALID_VALUE' },
      { req: { method: 'PUT', path: '/v1/collections/p/records/x', headers: jsonHeaders, body: '{"a":' }, status: 400, code: 'INVALID_JSON' },
      { req: { method: 'PUT', path: '/v1/collections/p/records/x', headers: jsonHeaders, body: JSON.stringify({ s: 'x'.repeat(1024 * 1024 + 1) }) }, status: 413, code: 'BODY_TOO_LARGE' },
      { req: { method: 'PUT', path: '/v1/collections/p/records/x', headers: { ...auth, 'content-type': 'text/plain' }, body: '{}' }, status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
      { req: { path: '/v1/collections/p/records?limit=0', headers: auth }, status: 400, code: 'INVALID_INPUT' },
      { req: { path: '/v1/collections/p/records?limit=5000', headers: auth }, status: 400, code: 'INVALID_INPUT' },
      { req: { path: '/v1/collections/p/records?limit=x', headers: auth }, status: 400, code: 'INVALID_INPUT' },
      { req: { path: '/v1/status' }, status: 401, code: 'UNAUTHORIZED' },
      { req: { path: '/v1/status', headers: { authorization: 'Bearer wrong' } }, status: 401, code: 'UNAUTHORIZED' },
      { req: { path: '/metrics', headers: { authorization: 'Bearer wrong' } }, status: 401, code: 'UNAUTHORIZED' },
      { req: { path: '/v1/nothing-here', headers: auth }, status: 404, code: 'ROUTE_NOT_FOUND' },
      { req: { method: 'POST', path: '/v1/peers', headers: jsonHeaders, body: '{}' }, status: 400, code: 'INVALID_INPUT' },
      { req: { method: 'POST', path: '/v1/platforms', headers: jsonHeaders, body: '{"name":"x"}' }, status: 400, code: 'INVALID_INPUT' },
      { req: { method: 'POST', path: '/v1/rules', headers: jsonHeaders, body: '{"from":"a:b"}' }, status: 400, code: 'INVALID_INPUT' },
      { req: { method: 'POST', path: '/v1/collections/imp/import', headers: { ...auth, 'content-type': 'application/x-ndjson' }, body: '{"id":"1","value":{}}\nnope\n' }, status: 400, code: 'INVALID_NDJSON' }
    ]
    for (const c of cases) {
      const res = await raw(aUrl, c.req)
      expect({ path: c.req.path, status: res.status, code: res.json?.error?.code }).toEqual({ path: c.req.path, status: c.status, code: c.code })
      expect(typeof res.json.error.message).toBe('string')
    }
    // the node's own validation comes through as 4xx too
    const badCollection = await raw(aUrl, { method: 'PUT', path: '/v1/collections/%24platforms/records/x', headers: jsonHeaders, body: '{}' })
    expect(badCollection.status).toBeGreaterThanOrEqual(400)
    expect(badCollection.status).toBeLessThan(500)
    expect(typeof badCollection.json.error.code).toBe('string')
    await stillServing()
  })

  it('streams an NDJSON import larger than the JSON body limit', async () => {
    const path = join(root, 'bulk.ndjson')
    const count = 12_000
    const lines: string[] = []
    for (let i = 0; i < count; i++) lines.push(JSON.stringify({ id: `r${i}`, value: { i, pad: 'p'.repeat(150) } }))
    await writeFile(path, lines.join('\n') + '\n')
    const result = await a.importFile('bulk', path)
    expect(result).toEqual({ imported: count })
    expect((await a.getRecord('bulk', 'r11999')).value).toMatchObject({ i: 11999 })
  }, 60_000)

  it('names the bad line of an import', async () => {
    const path = join(root, 'bad.ndjson')
    await writeFile(path, '{"id":"a","value":{}}\n\n{"id":"b","value":"nope"}\n')
    await expect(a.importFile('bad', path)).rejects.toMatchObject({ code: 'INVALID_NDJSON', status: 400, message: expect.stringMatching(/^line 3: /) })
    await stillServing()
  })

  it('lists its own platform and manages rules', async () => {
    const platforms = await a.listPlatforms()
    expect(platforms.map((p) => p.name)).toContain('alpha')
    // beta is not linked yet: its name is not in alpha's registry, so the rule is forced
    await expect(a.addRule({ from: { platform: 'alpha', collection: 'posts' }, to: { platform: 'beta', collection: 'articles' } })).rejects.toMatchObject({ code: 'UNKNOWN_PLATFORM', status: 400 })
    const rule = await a.addRule({ from: { platform: 'alpha', collection: 'posts' }, to: { platform: 'beta', collection: 'articles' }, mode: 'merge' }, { force: true })
    expect(rule.id).toBeTruthy()
    expect((await a.listRules()).map((r) => r.id)).toContain(rule.id)
    // a dry run reports and writes nothing
    const report = await a.dryRunRule({ from: { platform: 'alpha', collection: 'posts' }, to: { platform: 'beta', collection: 'x' } })
    expect(report).toMatchObject({ dryRun: true, evaluatedOn: 'alpha', source: { platform: 'alpha', collection: 'posts', complete: true } })
    expect((await a.listRules()).map((r) => r.id)).toEqual([rule.id])
    expect(await a.removeRule(rule.id)).toEqual({ removed: true })
    await expect(a.removeRule(rule.id)).rejects.toMatchObject({ code: 'NOT_FOUND', status: 404 })
    await expect(a.removePlatform('no-such-platform')).rejects.toMatchObject({ code: 'NOT_FOUND', status: 404 })
  })

  it('peers two nodes and syncs a record through a rule', async () => {
    const aStatus = await a.status()
    const addr = aStatus.multiaddrs.find((m) => m.includes('/p2p/')) as string
    const added = await b.addPeer(addr)
    expect(added.peerId).toBe(aStatus.peerId)
    await until(async () => (await b.listPeers()).some((p) => p.peerId === aStatus.peerId && p.connected))
    await until(async () => (await b.listPlatforms()).some((p) => p.name === 'alpha'))
    await until(async () => (await a.listPlatforms()).some((p) => p.name === 'beta'))
    await a.addRule({ from: { platform: 'alpha', collection: 'notes' }, to: { platform: 'beta', collection: 'copies' } })
    await a.putRecord('notes', 'n1', { text: 'hi' })
    await until(async () => {
      try {
        await b.getRecord('copies', 'n1')
        return true
      } catch {
        return false
      }
    })
    expect((await b.getRecord('copies', 'n1')).value).toEqual({ text: 'hi' })

    const metrics = await b.metrics()
    expect(metrics).toMatch(/^syncmesh_peers_connected 1$/m)
    expect(metrics).toContain(`syncmesh_origin_seq{origin="${aStatus.peerId}",platform="alpha"}`)
    expect(metrics).toMatch(/^syncmesh_db_compactions_total 0$/m)
    expect(metrics).toMatch(/^syncmesh_db_memtable_flushes_total \d+$/m)
    expect(metrics).toMatch(/^syncmesh_origin_lag\{origin="[^"]+",platform="[^"]*"\} \d+$/m)
    // counted where it happened: entries and bytes from alpha, by peer id and platform name; frames by type
    const sample = (name: string, labels: string): number => Number(new RegExp(`^${name}\\{${labels}\\} (\\S+)$`, 'm').exec(metrics)?.[1] ?? NaN)
    expect(sample('syncmesh_sync_entries_received_total', `peer="${aStatus.peerId}",platform="alpha"`)).toBeGreaterThan(0)
    expect(sample('syncmesh_sync_bytes_received_total', `peer="${aStatus.peerId}",platform="alpha"`)).toBeGreaterThan(0)
    expect(sample('syncmesh_sync_frames_received_total', 'type="batch"')).toBeGreaterThan(0)
    expect(sample('syncmesh_sync_frames_received_total', 'type="hello"')).toBeGreaterThan(0)
    const rule = (await b.status()).rules.find(r => r.to === 'beta:copies')
    expect(sample('syncmesh_rule_applied_total', `rule="${String(rule?.id)}",from="alpha:notes",to="beta:copies"`)).toBe(1)
    expect(metrics).toMatch(/^syncmesh_build_info\{version="\d+\.\d+\.\d+[^"]*"\} 1$/m)
    expect(sample('syncmesh_http_requests_total', 'method="GET",route="/v1/collections/:collection/records/:id",status="200"')).toBeGreaterThan(0)
    expect(metrics).toMatch(/^syncmesh_http_request_duration_seconds_count\{method="GET",route="\/v1\/peers"\} \d+$/m)
    // what the store wrote: one local write is at least its log entry and its record, in one batch
    const written = (m: string): { batches: number, puts: number, bytes: number } => ({
      batches: Number(/^syncmesh_db_batches_written_total (\d+)$/m.exec(m)?.[1] ?? NaN),
      puts: Number(/^syncmesh_db_keys_written_total\{op="put"\} (\d+)$/m.exec(m)?.[1] ?? NaN),
      bytes: Number(/^syncmesh_db_bytes_written_total (\d+)$/m.exec(m)?.[1] ?? NaN)
    })
    const before = written(metrics)
    expect(before.puts).toBeGreaterThanOrEqual(before.batches)
    expect(before.batches).toBeGreaterThan(0)
    await b.putRecord('local', 'w1', { text: 'x'.repeat(1000) })
    const after = written(await b.metrics())
    expect(after.batches).toBeGreaterThan(before.batches)
    expect(after.puts - before.puts).toBeGreaterThanOrEqual(2)
    expect(after.bytes - before.bytes).toBeGreaterThan(1000)
    expect((await b.status()).database?.written?.puts).toBeGreaterThanOrEqual(after.puts)
    // _total only on counters, and every counter ends in _total
    const types = [...metrics.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map(m => ({ name: m[1], type: m[2] }))
    expect(types.filter(t => t.name.startsWith('syncmesh_') && t.name.endsWith('_total') !== (t.type === 'counter'))).toEqual([])

    expect(await b.removePeer(aStatus.peerId)).toEqual({ removed: true })
    await expect(b.removePeer(aStatus.peerId)).rejects.toMatchObject({ code: 'NOT_FOUND', status: 404 })
  }, 60_000)
})
