/**
 * The HTTP layer (src/api/server.ts) and its client (src/api/client.ts)
 * against an in-memory stand-in for the node, so every route, status code
 * and error body can be checked without libp2p. test/integration/api.node.test.ts runs
 * the same API against a real node.
 */
import '../../src/polyfill.js'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { request as httpRequest } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { ApiClient } from '../../src/api/client.js'
import { startApiServer } from '../../src/api/server.js'
import { InvalidInputError, SyncmeshError } from '../../src/core/errors.js'
import type {
  ImportLine, JsonObject, NodeStatus, PeerInfo, PeersApi, Platform, RecordPage, RecordsApi,
  RegistryApi, Rule, RuleSpec, StoredRecord, SyncNodeApi
} from '../../src/core/types.js'
import { rawRequest } from '../helpers/http.js'

const TOKEN = 'test-token-' + 'a'.repeat(32)

/** Just enough of a node: records in a Map, imports committed in batches. */
class FakeNode extends EventTarget implements SyncNodeApi {
  readonly peerId = '12D3KooWFakeFakeFakeFakeFakeFakeFakeFakeFakeFake'
  readonly name = 'fake'
  readonly region = 'test'
  seq = 0
  importBatch = 3
  failNextStatus = false
  readonly data = new Map<string, Map<string, StoredRecord>>()
  readonly peerMap = new Map<string, PeerInfo>()
  readonly platformMap = new Map<string, Platform>()
  readonly ruleMap = new Map<string, Rule>()

  reset (): void {
    this.data.clear()
    this.peerMap.clear()
    this.platformMap.clear()
    this.ruleMap.clear()
    this.failNextStatus = false
  }

  #coll (collection: string): Map<string, StoredRecord> {
    if (!/^[A-Za-z0-9_.-]+$/.test(collection)) throw new InvalidInputError(`invalid collection name "${collection}"`)
    let c = this.data.get(collection)
    if (c == null) this.data.set(collection, c = new Map())
    return c
  }

  #write (collection: string, id: string, value: JsonObject): StoredRecord {
    const record: StoredRecord = { collection, id, value, version: { hlc: `${Date.now()}.0`, origin: this.peerId, seq: ++this.seq } }
    this.#coll(collection).set(id, record)
    return record
  }

  readonly records: RecordsApi = {
    put: async (collection, id, value) => this.#write(collection, id, value),
    get: async (collection, id) => this.#coll(collection).get(id),
    delete: async (collection, id) => this.#coll(collection).delete(id),
    list: async (collection, options = {}): Promise<RecordPage> => {
      const limit = options.limit ?? 100
      const ids = [...this.#coll(collection).keys()].sort().filter((id) => options.after == null || id > options.after)
      const page = ids.slice(0, limit)
      const records = page.map((id) => this.#coll(collection).get(id) as StoredRecord)
      return ids.length > limit ? { records, next: page[page.length - 1] } : { records }
    },
    import: async (collection, lines: AsyncIterable<ImportLine> | Iterable<ImportLine>, onProgress) => {
      let imported = 0
      let batch: ImportLine[] = []
      const commit = (): void => {
        for (const line of batch) this.#write(collection, line.id, line.value)
        imported += batch.length
        batch = []
        onProgress?.(imported)
      }
      for await (const line of lines) {
        batch.push(line)
        if (batch.length >= this.importBatch) commit()
      }
      commit()
      return { imported }
    }
  }

  readonly peers: PeersApi = {
    add: async (multiaddr) => {
      const m = /\/p2p\/([^/]+)$/.exec(multiaddr)
      if (m == null) throw new InvalidInputError(`"${multiaddr}" has no /p2p/PEER_ID`, 'INVALID_MULTIADDR')
      const peer: PeerInfo = {
        peerId: m[1] as string, addrs: [multiaddr], connected: true, authenticated: true, persisted: true,
        entriesSent: 0, entriesReceived: 0, bytesSent: 0, bytesReceived: 0, lastSeen: new Date().toISOString()
      }
      this.peerMap.set(peer.peerId, peer)
      return peer
    },
    list: async () => [...this.peerMap.values()],
    remove: async (peerId) => this.peerMap.delete(peerId)
  }

  readonly registry: RegistryApi = {
    platforms: () => [...this.platformMap.values()],
    addPlatform: async (platform) => { this.platformMap.set(platform.name, platform); return platform },
    removePlatform: async (name) => this.platformMap.delete(name),
    rules: () => [...this.ruleMap.values()],
    addRule: async (spec: RuleSpec) => {
      if (spec.from.platform === 'boom') throw new Error('secret internal detail')
      const rule: Rule = { ...spec, id: `r${this.ruleMap.size + 1}`, mode: spec.mode ?? 'merge', createdAt: new Date().toISOString() }
      this.ruleMap.set(rule.id, rule)
      return rule
    },
    removeRule: async (id) => this.ruleMap.delete(id)
  }

  getMultiaddrs (): string[] {
    return [`/ip4/127.0.0.1/tcp/4001/p2p/${this.peerId}`]
  }

  async status (): Promise<NodeStatus> {
    if (this.failNextStatus) {
      this.failNextStatus = false
      throw new SyncmeshError('NOT_RUNNING', 'the node is not running; call start() first', 503)
    }
    return {
      peerId: this.peerId,
      name: this.name,
      region: this.region,
      multiaddrs: this.getMultiaddrs(),
      startedAt: new Date(0).toISOString(),
      peers: [...this.peerMap.values()],
      origins: [{ origin: this.peerId, platform: 'fake', seq: this.seq, announced: this.seq, lag: 0 }, { origin: 'other-origin', seq: 5, announced: 7, lag: 2 }],
      rules: [...this.ruleMap.values()].map((r) => ({ id: r.id, from: `${r.from.platform}:${r.from.collection}`, to: `${r.to.platform}:${r.to.collection}`, mode: r.mode, local: true, applied: 3, pending: 4, backfilled: true })),
      caughtUp: false
    }
  }
}

const auth = { authorization: `Bearer ${TOKEN}` }
const jsonHeaders = { ...auth, 'content-type': 'application/json' }

function expectError (res: { status: number, json: any }, status: number, code: string): void {
  expect(res.status).toBe(status)
  expect(res.json?.error?.code).toBe(code)
  expect(typeof res.json?.error?.message).toBe('string')
  expect(res.json.error.message.length).toBeGreaterThan(10)
}

describe('HTTP API (in-memory node)', () => {
  const node = new FakeNode()
  let server: Awaited<ReturnType<typeof startApiServer>>
  let client: ApiClient
  let dir: string

  beforeAll(async () => {
    server = await startApiServer(node, { host: '127.0.0.1', port: 0, token: TOKEN })
    client = new ApiClient(server.url, TOKEN)
    dir = await mkdtemp(join(tmpdir(), 'syncmesh-api-'))
  })

  afterAll(async () => {
    await server?.close()
    if (dir != null) await rm(dir, { recursive: true, force: true })
  })

  beforeEach(() => node.reset())

  async function stillServing (): Promise<void> {
    const health = await client.health()
    expect(health.ok).toBe(true)
    await client.putRecord('alive', 'x', { ok: true })
    expect((await client.getRecord('alive', 'x')).value).toEqual({ ok: true })
  }

  it('reports its URL on 127.0.0.1 with the picked port', () => {
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
    expect(server.url).not.toMatch(/:0$/)
  })

  it('serves health without a token', async () => {
    const res = await rawRequest(server.url, { path: '/v1/health' })
    expect(res.status).toBe(200)
    expect(res.json).toEqual({ ok: true, peerId: node.peerId, name: 'fake' })
  })

  describe('authentication', () => {
    it('rejects a missing token', async () => {
      const res = await rawRequest(server.url, { path: '/v1/status' })
      expectError(res, 401, 'UNAUTHORIZED')
      expect(res.headers['www-authenticate']).toBe('Bearer')
    })

    it('rejects a wrong token, a token prefix and a malformed header', async () => {
      for (const header of [`Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(0, -1)}`, 'Bearer', `Basic ${TOKEN}`, TOKEN, '']) {
        expectError(await rawRequest(server.url, { path: '/v1/status', headers: { authorization: header } }), 401, 'UNAUTHORIZED')
      }
    })

    it('guards /metrics and unknown routes too', async () => {
      expectError(await rawRequest(server.url, { path: '/metrics' }), 401, 'UNAUTHORIZED')
      expectError(await rawRequest(server.url, { path: '/nope' }), 401, 'UNAUTHORIZED')
    })

    it('rejects an unauthenticated import before reading the body', async () => {
      const res = await rawRequest(server.url, { method: 'POST', path: '/v1/collections/c/import', headers: { 'content-type': 'application/x-ndjson' }, body: '{"id":"a","value":{}}\n' })
      expectError(res, 401, 'UNAUTHORIZED')
      expect(node.data.get('c')?.size ?? 0).toBe(0)
    })

    it('turns a 401 into a SyncmeshError in the client', async () => {
      const bad = new ApiClient(server.url, 'wrong')
      await expect(bad.status()).rejects.toMatchObject({ code: 'UNAUTHORIZED', status: 401 })
    })
  })

  it('serves status', async () => {
    const status = await client.status()
    expect(status.peerId).toBe(node.peerId)
    expect(status.origins).toHaveLength(2)
  })

  describe('records', () => {
    it('puts, gets, lists and deletes', async () => {
      const stored = await client.putRecord('posts', '42', { title: 'hello' })
      expect(stored).toMatchObject({ collection: 'posts', id: '42', value: { title: 'hello' } })
      expect(stored.version.seq).toBeGreaterThan(0)
      expect(await client.getRecord('posts', '42')).toEqual(stored)
      const page = await client.listRecords('posts')
      expect(page.records).toEqual([stored])
      expect(page.next).toBeUndefined()
      expect(await client.deleteRecord('posts', '42')).toEqual({ deleted: true })
      await expect(client.getRecord('posts', '42')).rejects.toMatchObject({ code: 'NOT_FOUND', status: 404 })
      await expect(client.deleteRecord('posts', '42')).rejects.toMatchObject({ code: 'NOT_FOUND', status: 404 })
    })

    it('answers PUT with 200 and the stored record', async () => {
      const res = await rawRequest(server.url, { method: 'PUT', path: '/v1/collections/posts/records/1', headers: jsonHeaders, body: '{"a":1}' })
      expect(res.status).toBe(200)
      expect(res.json).toMatchObject({ collection: 'posts', id: '1', value: { a: 1 } })
    })

    it('handles ids that need escaping', async () => {
      const id = 'a/b c?d#e%f'
      await client.putRecord('posts', id, { x: 1 })
      expect((await client.getRecord('posts', id)).id).toBe(id)
      expect([...(node.data.get('posts')?.keys() ?? [])]).toEqual([id])
    })

    it('pages with after and limit', async () => {
      for (let i = 0; i < 25; i++) await client.putRecord('p', `id${String(i).padStart(2, '0')}`, { i })
      const first = await client.listRecords('p', { limit: 10 })
      expect(first.records).toHaveLength(10)
      expect(first.next).toBe('id09')
      const second = await client.listRecords('p', { after: first.next, limit: 10 })
      expect(second.records[0]?.id).toBe('id10')
      const all: string[] = []
      for await (const r of client.iterateRecords('p', { pageSize: 7 })) all.push(r.id)
      expect(all).toHaveLength(25)
      expect(new Set(all).size).toBe(25)
    })

    it('rejects bad limits and unknown query parameters', async () => {
      for (const q of ['limit=0', 'limit=1001', 'limit=abc', 'limit=1.5', 'limit=-1', 'limit=', 'limit=1&limit=2', 'lmit=5']) {
        expectError(await rawRequest(server.url, { path: `/v1/collections/p/records?${q}`, headers: auth }), 400, 'INVALID_INPUT')
      }
      const ok = await rawRequest(server.url, { path: '/v1/collections/p/records?limit=1000', headers: auth })
      expect(ok.status).toBe(200)
      await stillServing()
    })

    it('rejects bodies that are not JSON objects with INVALID_VALUE', async () => {
      for (const body of ['[1,2]', '"text"', '42', 'null', 'true']) {
        const res = await rawRequest(server.url, { method: 'PUT', path: '/v1/collections/p/records/x', headers: jsonHeaders, body })
        expectError(res, 400, 'INVALID_VALUE')
      }
      expectError(await rawRequest(server.url, { method: 'PUT', path: '/v1/collections/p/records/x', headers: auth }), 400, 'INVALID_VALUE')
      expect(node.data.get('p')?.size ?? 0).toBe(0)
      await stillServing()
    })

    it('rejects invalid and empty JSON with INVALID_JSON', async () => {
      for (const body of ['{"a":', '{a:1}', "{'a':1}", '{"a":1}}', '\u0000']) {
        expectError(await rawRequest(server.url, { method: 'PUT', path: '/v1/collections/p/records/x', headers: jsonHeaders, body }), 400, 'INVALID_JSON')
      }
      expectError(await rawRequest(server.url, { method: 'PUT', path: '/v1/collections/p/records/x', headers: { ...jsonHeaders, 'content-length': '0' }, body: '' }), 400, 'INVALID_JSON')
      await stillServing()
    })

    it('rejects prototype poisoning', async () => {
      const res = await rawRequest(server.url, { method: 'PUT', path: '/v1/collections/p/records/x', headers: jsonHeaders, body: '{"__proto__":{"admin":true}}' })
      expect(res.status).toBe(400)
      expect(res.json.error.code).toBe('INVALID_JSON')
      await stillServing()
    })

    it('rejects a body over 1 MiB with 413 BODY_TOO_LARGE', async () => {
      const big = JSON.stringify({ blob: 'x'.repeat(1024 * 1024 + 10) })
      expectError(await rawRequest(server.url, { method: 'PUT', path: '/v1/collections/p/records/x', headers: jsonHeaders, body: big }), 413, 'BODY_TOO_LARGE')
      await stillServing()
    })

    it('accepts a body just under 1 MiB', async () => {
      const value = { blob: 'x'.repeat(1024 * 1024 - 100) }
      await client.putRecord('p', 'big', value)
      expect((await client.getRecord('p', 'big')).value).toEqual(value)
    })

    it('rejects other content types with 415', async () => {
      for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/x-ndjson']) {
        expectError(await rawRequest(server.url, { method: 'PUT', path: '/v1/collections/p/records/x', headers: { ...auth, 'content-type': type }, body: '{"a":1}' }), 415, 'UNSUPPORTED_MEDIA_TYPE')
      }
      await stillServing()
    })

    it('passes the node\'s own errors through', async () => {
      expectError(await rawRequest(server.url, { method: 'PUT', path: '/v1/collections/bad%20name/records/x', headers: jsonHeaders, body: '{}' }), 400, 'INVALID_INPUT')
    })

    it('rejects a malformed URL', async () => {
      expectError(await rawRequest(server.url, { path: '/v1/collections/p/records/%E0%A4%A', headers: auth }), 400, 'BAD_URL')
      await stillServing()
    })
  })

  describe('import', () => {
    async function postImport (body: string | Buffer, contentType = 'application/x-ndjson', collection = 'imp'): Promise<{ status: number, json: any }> {
      return await rawRequest(server.url, { method: 'POST', path: `/v1/collections/${collection}/import`, headers: { ...auth, 'content-type': contentType }, body })
    }

    it('imports NDJSON with every accepted content type', async () => {
      for (const type of ['application/x-ndjson', 'application/ndjson', 'text/plain; charset=utf-8', 'application/octet-stream']) {
        const res = await postImport('{"id":"a","value":{"n":1}}\r\n\n  \n{"id":"b","value":{"n":2}}', type)
        expect(res.status).toBe(200)
        expect(res.json).toEqual({ imported: 2 })
      }
      expect(node.data.get('imp')?.get('b')?.value).toEqual({ n: 2 })
    })

    it('imports an empty body as zero records', async () => {
      expect((await postImport('')).json).toEqual({ imported: 0 })
    })

    it('names the line of a malformed record', async () => {
      node.importBatch = 2
      const lines = ['{"id":"1","value":{}}', '{"id":"2","value":{}}', '', '{"id":"3","value":{}}', '{"id":"4","value":[1]}', '{"id":"5","value":{}}']
      const res = await postImport(lines.join('\n'))
      expectError(res, 400, 'INVALID_NDJSON')
      expect(res.json.error.message).toMatch(/^line 5: /)
      expect(res.json.error.message).toMatch(/; the first 2 records of the file were imported, none after them/)
      // the first batch (2 lines) was committed, the rest was not
      expect(node.data.get('imp')?.size).toBe(2)
      node.importBatch = 3
      await stillServing()
    })

    it('rejects lines that are not JSON, not objects, or lack id/value', async () => {
      for (const bad of ['not json', '[1]', '{"value":{}}', '{"id":"","value":{}}', '{"id":1,"value":{}}', '{"id":"x"}', '{"id":"x","value":null}']) {
        const res = await postImport(`{"id":"ok","value":{}}\n${bad}\n`)
        expectError(res, 400, 'INVALID_NDJSON')
        expect(res.json.error.message).toMatch(/^line 2: /)
      }
    })

    it('rejects an overlong line', async () => {
      const res = await postImport(`{"id":"x","value":{"s":"${'y'.repeat(1024 * 1024 + 1)}"}}\n`)
      expectError(res, 413, 'LINE_TOO_LONG')
      await stillServing()
    })

    it('rejects JSON as content type with 415 and a hint', async () => {
      const res = await postImport('{"id":"a","value":{}}', 'application/json')
      expectError(res, 415, 'UNSUPPORTED_MEDIA_TYPE')
      expect(res.json.error.message).toMatch(/x-ndjson/)
    })

    it('streams a body far larger than the JSON limit from a file', async () => {
      const path = join(dir, 'big.ndjson')
      const count = 20_000
      const lines: string[] = []
      for (let i = 0; i < count; i++) lines.push(JSON.stringify({ id: `r${i}`, value: { i, pad: 'p'.repeat(100) } }))
      await writeFile(path, lines.join('\n') + '\n')
      node.importBatch = 500
      let last: { bytes: number, lines: number, totalBytes?: number } = { bytes: 0, lines: 0 }
      const result = await client.importFile('bulk', path, (p) => { last = { ...p } })
      expect(result).toEqual({ imported: count })
      expect(last.lines).toBe(count)
      expect(last.bytes).toBe(last.totalBytes)
      expect(last.bytes).toBeGreaterThan(2 * 1024 * 1024)
      expect(node.data.get('bulk')?.size).toBe(count)
      node.importBatch = 3
    })

    it('reports a bad line from a streamed file through the client', async () => {
      const path = join(dir, 'bad.ndjson')
      const lines: string[] = []
      for (let i = 0; i < 5000; i++) lines.push(JSON.stringify({ id: `r${i}`, value: { i } }))
      lines[3000] = '{oops'
      await writeFile(path, lines.join('\n'))
      await expect(client.importFile('bulk2', path)).rejects.toMatchObject({ code: 'INVALID_NDJSON', status: 400, message: expect.stringMatching(/^line 3001: /) })
      await stillServing()
    })

    it('survives a client that aborts mid-upload', async () => {
      const u = new URL(server.url)
      await new Promise<void>((resolve) => {
        const req = httpRequest({
          host: u.hostname, port: u.port, method: 'POST', path: '/v1/collections/aborted/import',
          headers: { ...auth, 'content-type': 'application/x-ndjson', 'content-length': '100000' }
        })
        req.on('error', () => resolve())
        req.on('close', () => resolve())
        req.write('{"id":"a","value":{}}\n{"id":"b","val')
        setTimeout(() => req.destroy(), 100)
      })
      await new Promise((resolve) => setTimeout(resolve, 100))
      await stillServing()
    })

    it('reports a missing file', async () => {
      await expect(client.importFile('x', join(dir, 'missing.ndjson'))).rejects.toMatchObject({ code: 'FILE_NOT_FOUND' })
    })
  })

  describe('peers, platforms, rules', () => {
    const peerAddr = '/ip4/127.0.0.1/tcp/4002/p2p/12D3KooWOther'

    it('adds, lists and removes peers', async () => {
      const res = await rawRequest(server.url, { method: 'POST', path: '/v1/peers', headers: jsonHeaders, body: JSON.stringify({ multiaddr: peerAddr }) })
      expect(res.status).toBe(201)
      expect(res.json.peerId).toBe('12D3KooWOther')
      expect((await client.listPeers()).map((p) => p.peerId)).toEqual(['12D3KooWOther'])
      expect(await client.removePeer('12D3KooWOther')).toEqual({ removed: true })
      await expect(client.removePeer('12D3KooWOther')).rejects.toMatchObject({ code: 'NOT_FOUND', status: 404 })
    })

    it('validates the peer body', async () => {
      for (const body of ['{}', '{"multiaddr":5}', '{"multiaddr":""}', '{"multiaddr":"/x","extra":1}', '[]', '"x"']) {
        expectError(await rawRequest(server.url, { method: 'POST', path: '/v1/peers', headers: jsonHeaders, body }), 400, 'INVALID_INPUT')
      }
      await expect(client.addPeer('/ip4/1.2.3.4/tcp/1')).rejects.toMatchObject({ code: 'INVALID_MULTIADDR', status: 400 })
    })

    it('adds, lists and removes platforms', async () => {
      const res = await rawRequest(server.url, { method: 'POST', path: '/v1/platforms', headers: jsonHeaders, body: JSON.stringify({ name: 'hub', peerId: 'P1', region: 'eu' }) })
      expect(res.status).toBe(201)
      expect(res.json).toEqual({ name: 'hub', peerId: 'P1', region: 'eu', addrs: [] })
      expect(await client.listPlatforms()).toHaveLength(1)
      expect(await client.removePlatform('hub')).toEqual({ removed: true })
      await expect(client.removePlatform('hub')).rejects.toMatchObject({ code: 'NOT_FOUND' })
      const bad = await rawRequest(server.url, { method: 'POST', path: '/v1/platforms', headers: jsonHeaders, body: '{"name":"x"}' })
      expectError(bad, 400, 'INVALID_INPUT')
      expect(bad.json.error.message).toMatch(/peerId/)
    })

    it('adds, lists and removes rules', async () => {
      const spec: RuleSpec = { from: { platform: 'a', collection: 'posts' }, to: { platform: 'b', collection: 'articles' }, where: { status: 'published' }, rename: { t: 'title' } }
      const rule = await client.addRule(spec)
      expect(rule).toMatchObject({ ...spec, mode: 'merge' })
      expect(await client.listRules()).toEqual([rule])
      expect(await client.removeRule(rule.id)).toEqual({ removed: true })
      await expect(client.removeRule(rule.id)).rejects.toMatchObject({ code: 'NOT_FOUND' })
    })

    it('validates rule bodies and answers dry runs with 501', async () => {
      for (const body of ['{}', '{"from":{"platform":"a"},"to":{"platform":"b","collection":"c"}}', '{"from":{"platform":"a","collection":"c"},"to":{"platform":"b","collection":"c"},"mode":"sideways"}', '{"from":{"platform":"a","collection":"c"},"to":{"platform":"b","collection":"c"},"where":[1]}']) {
        expectError(await rawRequest(server.url, { method: 'POST', path: '/v1/rules', headers: jsonHeaders, body }), 400, 'INVALID_INPUT')
      }
      await expect(client.addRule({ from: { platform: 'a', collection: 'c' }, to: { platform: 'b', collection: 'c' } }, { dryRun: true }))
        .rejects.toMatchObject({ code: 'NOT_SUPPORTED', status: 501 })
      expect(node.ruleMap.size).toBe(0)
    })

    it('hides unexpected errors behind a generic 500', async () => {
      const res = await rawRequest(server.url, { method: 'POST', path: '/v1/rules', headers: jsonHeaders, body: JSON.stringify({ from: { platform: 'boom', collection: 'c' }, to: { platform: 'b', collection: 'c' } }) })
      expectError(res, 500, 'INTERNAL')
      expect(res.text).not.toMatch(/secret/)
      await stillServing()
    })

    it('maps a SyncmeshError status from the node', async () => {
      node.failNextStatus = true
      expectError(await rawRequest(server.url, { path: '/v1/status', headers: auth }), 503, 'NOT_RUNNING')
    })
  })

  it('answers unknown routes and methods with 404 ROUTE_NOT_FOUND', async () => {
    expectError(await rawRequest(server.url, { path: '/v2/status', headers: auth }), 404, 'ROUTE_NOT_FOUND')
    expectError(await rawRequest(server.url, { method: 'PATCH', path: '/v1/collections/p/records/x', headers: jsonHeaders, body: '{}' }), 404, 'ROUTE_NOT_FOUND')
    expectError(await rawRequest(server.url, { method: 'POST', path: '/v1/health', headers: auth }), 404, 'ROUTE_NOT_FOUND')
    await stillServing()
  })

  it('serves Prometheus gauges read from status', async () => {
    await client.addPeer('/ip4/127.0.0.1/tcp/4002/p2p/12D3KooWOther')
    await client.addRule({ from: { platform: 'a', collection: 'c' }, to: { platform: 'b', collection: 'c' } })
    const res = await rawRequest(server.url, { path: '/metrics', headers: auth })
    expect(res.status).toBe(200)
    expect(String(res.headers['content-type'])).toMatch(/^text\/plain/)
    expect(res.text).toMatch(/^syncmesh_peers_connected 1$/m)
    expect(res.text).toMatch(/^syncmesh_origin_lag\{origin="other-origin",platform="[^"]*"\} 2$/m)
    expect(res.text).toMatch(/^syncmesh_origin_seq\{origin="other-origin",platform="[^"]*"\} 5$/m)
    expect(res.text).toMatch(/^syncmesh_rule_pending\{rule="r1",from="[^"]*",to="[^"]*"\} 4$/m)
    expect(res.text).toMatch(/^process_cpu_user_seconds_total /m)
    expect(await client.metrics()).toMatch(/syncmesh_peers_connected/)
  })

  it('reports NODE_UNREACHABLE when nothing listens', async () => {
    const other = await startApiServer(node, { host: '127.0.0.1', port: 0, token: TOKEN })
    const url = other.url
    await other.close()
    const gone = new ApiClient(url, TOKEN)
    await expect(gone.status()).rejects.toMatchObject({ code: 'NODE_UNREACHABLE', status: 503, message: expect.stringContaining(url) })
  })

  it('rejects a bad API URL in the client', () => {
    expect(() => new ApiClient('not a url', TOKEN)).toThrow(/not a URL/)
    expect(() => new ApiClient('ftp://x', TOKEN)).toThrow(/http/)
  })

  it('fails to start on a port in use with API_PORT_IN_USE', async () => {
    const port = Number(new URL(server.url).port)
    await expect(startApiServer(node, { host: '127.0.0.1', port, token: TOKEN })).rejects.toMatchObject({ code: 'API_PORT_IN_USE' })
  })
})
