/**
 * The local API against hostile and broken input, on a real node
 * (createSyncNode, LevelDB in a temp dir): every broken input gets a 4xx with
 * a JSON error `{"error":{"code","message"}}` — names and ids at and beyond
 * their limits, control characters, over-long URLs and headers, deep JSON,
 * malformed HTTP — every route but health needs the token, and a warning is
 * logged when the API is bound to a non-loopback address.
 */
import '../../src/polyfill.js'
import { mkdtemp, rm } from 'node:fs/promises'
import { isConsolePath } from '../../src/api/console.js'
import { rawRequest } from '../helpers/http.js'
import type { RawResponse } from '../helpers/http.js'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isLoopback, startApiServer } from '../../src/api/server.js'
import type { ApiServer } from '../../src/api/server.js'
import { createSyncNode } from '../../src/node/node.js'
import { MAX_JSON_DEPTH, jsonTextTooDeep, jsonTooDeep } from '../../src/store/json-depth.js'

const KEY = 'h'.repeat(40)
const TOKEN = 'hardening-token-' + 'c'.repeat(32)
const auth = { authorization: `Bearer ${TOKEN}` }
const jsonHeaders = { ...auth, 'content-type': 'application/json' }
const ndjsonHeaders = { ...auth, 'content-type': 'application/x-ndjson' }

type Res = RawResponse

let url: URL
async function raw (method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<Res> {
  return await rawRequest(url, { method, path, headers, ...(body !== undefined ? { body } : {}) })
}

/** Bytes straight onto a TCP socket; the whole answer. */
async function socketExchange (payload: string): Promise<string> {
  return await new Promise((resolve, reject) => {
    const s = connect(Number(url.port), url.hostname, () => s.write(payload))
    let out = ''
    s.setEncoding('utf8')
    s.on('data', (d: string) => { out += d })
    s.on('close', () => resolve(out))
    s.on('error', reject)
    setTimeout(() => s.destroy(), 5000).unref()
  })
}

function expectJsonError (res: Res, status: number, code: string): void {
  expect({ status: res.status, code: res.json?.error?.code }, res.text.slice(0, 300)).toEqual({ status, code })
  expect(typeof res.json.error.message).toBe('string')
  expect(res.json.error.message.length).toBeGreaterThan(10)
  expect(res.json.error.message.length).toBeLessThan(600) // never echoes a huge input
}

function nested (depth: number): unknown {
  let v: unknown = { leaf: true }
  for (let i = 1; i < depth; i++) v = i % 2 === 0 ? { n: v } : [v]
  return v
}

describe('local API hardening (real node)', () => {
  let root: string
  let node: Awaited<ReturnType<typeof createSyncNode>>
  let server: ApiServer

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'syncmesh-api-hard-'))
    node = await createSyncNode({ dataDir: join(root, 'n'), key: KEY, name: 'hard', listen: ['/ip4/127.0.0.1/tcp/0'] })
    await node.start()
    server = await startApiServer(node, { host: '127.0.0.1', port: 0, token: TOKEN })
    url = new URL(server.url)
  }, 60_000)

  afterAll(async () => {
    await server?.close().catch(() => {})
    await node?.stop().catch(() => {})
    if (root !== undefined) await rm(root, { recursive: true, force: true })
  })

  async function stillServing (): Promise<void> {
    const put = await raw('PUT', '/v1/collections/alive/records/x', jsonHeaders, JSON.stringify({ at: Date.now() }))
    expect(put.status).toBe(200)
    expect((await raw('GET', '/v1/health')).status).toBe(200)
  }

  it('binds to loopback and needs the token on every route but health and the console\'s files', async () => {
    expect(isLoopback(url.hostname)).toBe(true)
    // every route the server registered (so a new route is covered without touching this test), plus an unknown one
    const served = server.routes.filter(r => r.url !== '/v1/health' && !isConsolePath(r.url))
    // the console's files hold no data: they are all there is without a token
    expect(server.routes.filter(r => isConsolePath(r.url)).map(r => r.url).sort()).toEqual(['/', '/', '/console/app.css', '/console/app.css', '/console/app.js', '/console/app.js', '/console/index.html', '/console/index.html', '/favicon.ico', '/favicon.ico'])
    for (const must of ['GET /v1/status', 'GET /metrics', 'GET /v1/keys', 'POST /v1/keys/reload', 'PUT /v1/collections/:collection/records/:id', 'POST /v1/collections/:collection/import', 'POST /v1/rules']) {
      expect(served.map(r => `${r.method} ${r.url}`)).toContain(must)
    }
    const routes: Array<[string, string, string?]> = served.map(r => {
      const path = r.url.replace(/:collection/g, 'p').replace(/:[A-Za-z]+/g, 'x')
      const body = r.url.endsWith('/import') ? '{"id":"x","value":{}}\n' : ['POST', 'PUT', 'PATCH'].includes(r.method) ? '{}' : undefined
      return [r.method, path, body]
    })
    routes.push(['GET', '/v1/no-such-route'], ['DELETE', '/v1/no-such-route/x'])
    const badAuth: Array<Record<string, string>> = [
      {}, { authorization: '' }, { authorization: 'Bearer' }, { authorization: `Bearer ${TOKEN.slice(0, -1)}` },
      { authorization: `Bearer ${TOKEN}x` }, { authorization: `Basic ${TOKEN}` }, { authorization: TOKEN },
      { authorization: `Bearer ${TOKEN.toUpperCase()}` }, { authorization: `Bearer  ${TOKEN} extra` }
    ]
    for (const [method, path, body] of routes) {
      for (const headers of badAuth) {
        const res = await raw(method, path, { ...headers, ...(body !== undefined ? { 'content-type': path.endsWith('/import') ? 'application/x-ndjson' : 'application/json' } : {}) }, body)
        if (method === 'HEAD') {
          expect(res.status, `${method} ${path}`).toBe(401)
          continue
        }
        expectJsonError(res, 401, 'UNAUTHORIZED')
      }
    }
    expect((await raw('GET', '/v1/health')).status).toBe(200)
    expect((await raw('HEAD', '/v1/health')).status).toBe(200)
    // the record was never written
    expect((await raw('GET', '/v1/collections/p/records/x', auth)).status).toBe(404)
  })

  it('validates collection names through every record route', async () => {
    const bad = ['a'.repeat(129), 'a%20b', '%C3%A9t%C3%A9', '-x', '.x', '_x', '%24rules', '%24platforms', 'a%2Fb', 'a%00', 'a:b', '%F0%9F%8E%89']
    for (const c of bad) {
      expectJsonError(await raw('PUT', `/v1/collections/${c}/records/x`, jsonHeaders, '{}'), 400, 'INVALID_COLLECTION')
      expectJsonError(await raw('GET', `/v1/collections/${c}/records/x`, auth), 400, 'INVALID_COLLECTION')
      expectJsonError(await raw('DELETE', `/v1/collections/${c}/records/x`, auth), 400, 'INVALID_COLLECTION')
      expectJsonError(await raw('GET', `/v1/collections/${c}/records`, auth), 400, 'INVALID_COLLECTION')
      expectJsonError(await raw('POST', `/v1/collections/${c}/import`, ndjsonHeaders, '{"id":"x","value":{}}\n'), 400, 'INVALID_COLLECTION')
    }
    for (const c of ['a'.repeat(128), '0', 'A.b-c_d', '9lives']) {
      expect((await raw('PUT', `/v1/collections/${c}/records/x`, jsonHeaders, '{"ok":1}')).status, c).toBe(200)
    }
    // a collection name longer than the router accepts
    expectJsonError(await raw('GET', `/v1/collections/${'c'.repeat(3000)}/records`, auth), 414, 'URI_TOO_LONG')
    await stillServing()
  })

  it('validates record ids: length, control characters, encoding', async () => {
    const bad = ['x'.repeat(513), 'a%00b', 'a%0Ab', '%0D', 'tab%09', '%7F', 'c1%C2%85', '%1F', '%C2%9F']
    for (const id of bad) {
      expectJsonError(await raw('PUT', `/v1/collections/ids/records/${id}`, jsonHeaders, '{}'), 400, 'INVALID_ID')
      expectJsonError(await raw('GET', `/v1/collections/ids/records/${id}`, auth), 400, 'INVALID_ID')
      expectJsonError(await raw('DELETE', `/v1/collections/ids/records/${id}`, auth), 400, 'INVALID_ID')
    }
    expectJsonError(await raw('PUT', '/v1/collections/ids/records/', jsonHeaders, '{}'), 400, 'INVALID_ID')
    expectJsonError(await raw('PUT', `/v1/collections/ids/records/${'y'.repeat(3000)}`, jsonHeaders, '{}'), 414, 'URI_TOO_LONG')
    expectJsonError(await raw('GET', '/v1/collections/ids/records/%', auth), 400, 'BAD_URL')
    expectJsonError(await raw('GET', '/v1/collections/ids/records/%E0%A4%A', auth), 400, 'BAD_URL')
    expectJsonError(await raw('GET', '/v1/collections/ids/records/%FF', auth), 400, 'BAD_URL')
    for (const id of ['x'.repeat(512), 'a%2Fb', 'with%20space', '%F0%9F%8E%89', '%E2%80%AE', '..', '%24x']) {
      const put = await raw('PUT', `/v1/collections/ids/records/${id}`, jsonHeaders, '{"ok":1}')
      expect(put.status, id).toBe(200)
      expect((await raw('GET', `/v1/collections/ids/records/${id}`, auth)).json.id).toBe(decodeURIComponent(id))
    }
    // import lines are held to the same rules
    expectJsonError(await raw('POST', '/v1/collections/ids/import', ndjsonHeaders, JSON.stringify({ id: 'a\u0000b', value: {} }) + '\n'), 400, 'INVALID_NDJSON')
    expectJsonError(await raw('POST', '/v1/collections/ids/import', ndjsonHeaders, JSON.stringify({ id: 'z'.repeat(513), value: {} }) + '\n'), 400, 'INVALID_NDJSON')
    expectJsonError(await raw('POST', '/v1/collections/ids/import', ndjsonHeaders, JSON.stringify({ id: '', value: {} }) + '\n'), 400, 'INVALID_NDJSON')
    await stillServing()
  })

  it('refuses ids that are not well-formed Unicode, which would collapse into one record', async () => {
    // each lone surrogate would be stored as U+FFFD: three acknowledged writes, one record
    for (const id of ['\ud800', '\udfff', 'a\ud83d', '\udc00b']) {
      await expect(node.records.put('lone', id, { id })).rejects.toMatchObject({ code: 'INVALID_ID', message: expect.stringMatching(/well-formed Unicode/) })
      await expect(node.records.get('lone', id)).rejects.toMatchObject({ code: 'INVALID_ID' })
      const res = await raw('POST', '/v1/collections/lone/import', ndjsonHeaders, `{"id":${JSON.stringify(id)},"value":{}}\n`)
      expectJsonError(res, 400, 'INVALID_NDJSON')
      expect(res.json.error.message).toMatch(/^line 1: "id" is not well-formed Unicode/)
    }
    await expect(node.records.put('\ud800', 'x', {})).rejects.toMatchObject({ code: 'INVALID_COLLECTION' })
    await expect(node.records.import('lone', [{ id: 'ok', value: {} }, { id: '\ud800', value: {} }])).rejects.toMatchObject({ code: 'INVALID_NDJSON' })
    expect((await node.records.list('lone')).records).toEqual([])
    // a surrogate pair is one character and fine
    await node.records.put('lone', '\ud83c\udf89', { party: true })
    expect((await node.records.get('lone', '\ud83c\udf89'))?.value).toEqual({ party: true })
    expect((await node.records.get('lone', '\ufffd'))).toBeUndefined()
    await stillServing()
  })

  it('says how many records a failed import kept, and at which line it stopped', async () => {
    const lines: string[] = []
    for (let i = 0; i < 2500; i++) lines.push(JSON.stringify({ id: `r${i}`, value: { i } }))
    lines.push('{oops')
    for (let i = 2500; i < 2600; i++) lines.push(JSON.stringify({ id: `r${i}`, value: { i } }))
    const res = await raw('POST', '/v1/collections/partial/import', ndjsonHeaders, lines.join('\n') + '\n')
    expectJsonError(res, 400, 'INVALID_NDJSON')
    let committed = 0
    let after: string | undefined
    do {
      const page = await node.records.list('partial', { limit: 1000, ...(after !== undefined ? { after } : {}) })
      committed += page.records.length
      after = page.next
    } while (after !== undefined)
    expect(committed).toBe(2000) // two batches of 1,000 were committed before the bad line
    expect(res.json.error.message).toMatch(/^line 2501: not valid JSON .*; the first 2000 records of the file were imported, none after them/)
    const none = await raw('POST', '/v1/collections/partial2/import', ndjsonHeaders, '{"id":"a","value":{}}\n{"id":"b","value":1}\n')
    expect(none.json.error.message).toMatch(/^line 2: "value" must be a JSON object; no record was imported/)
    const long = await raw('POST', '/v1/collections/partial3/import', ndjsonHeaders, lines.slice(0, 1200).join('\n') + '\n' + JSON.stringify({ id: 'big', value: { s: 'x'.repeat(1100 * 1024) } }) + '\n')
    expectJsonError(long, 413, 'LINE_TOO_LONG')
    expect(long.json.error.message).toMatch(/^line 1201: longer than .*; the first 1000 records of the file were imported, none after them/)
    await stillServing()
  }, 30_000)

  it('refuses JSON nested deeper than the limit everywhere it enters', async () => {
    expect(jsonTooDeep(nested(MAX_JSON_DEPTH))).toBe(false)
    expect(jsonTooDeep(nested(MAX_JSON_DEPTH + 1))).toBe(true)
    expect(jsonTextTooDeep(Buffer.from(JSON.stringify(nested(MAX_JSON_DEPTH))))).toBe(false)
    expect(jsonTextTooDeep(Buffer.from(JSON.stringify(nested(MAX_JSON_DEPTH + 1))))).toBe(true)
    expect(jsonTextTooDeep(Buffer.from(JSON.stringify({ s: '['.repeat(500) + '\\"{{{' })))).toBe(false)

    const ok = { root: nested(MAX_JSON_DEPTH - 1) }
    expect((await raw('PUT', '/v1/collections/deep/records/ok', jsonHeaders, JSON.stringify(ok))).status).toBe(200)
    for (const depth of [MAX_JSON_DEPTH + 1, 5_000, 100_000]) {
      const body = '{"a":'.repeat(depth) + '1' + '}'.repeat(depth)
      expectJsonError(await raw('PUT', '/v1/collections/deep/records/x', jsonHeaders, body), 400, 'JSON_TOO_DEEP')
    }
    expectJsonError(await raw('PUT', '/v1/collections/deep/records/x', jsonHeaders, '{"a":' + '['.repeat(200_000) + ']'.repeat(200_000) + '}'), 400, 'JSON_TOO_DEEP')
    const deepWhere = '{"$and":['.repeat(5000) + '{"x":1}' + ']}'.repeat(5000)
    expectJsonError(await raw('POST', '/v1/rules', jsonHeaders, `{"from":{"platform":"hard","collection":"a"},"to":{"platform":"hard","collection":"b"},"where":${deepWhere}}`), 400, 'JSON_TOO_DEEP')
    expectJsonError(await raw('POST', '/v1/platforms', jsonHeaders, JSON.stringify({ name: 'p', peerId: 'x', tags: [nested(200)] })), 400, 'JSON_TOO_DEEP')
    const line = JSON.stringify({ id: 'deep', value: { a: nested(MAX_JSON_DEPTH + 5) } })
    const imp = await raw('POST', '/v1/collections/deep/import', ndjsonHeaders, line + '\n')
    expectJsonError(imp, 400, 'INVALID_NDJSON')
    expect(imp.json.error.message).toMatch(/levels deep/)
    expect((await raw('GET', '/v1/collections/deep/records/x', auth)).status).toBe(404)
    await stillServing()
  })

  it('answers oversized headers and malformed HTTP with a JSON error too', async () => {
    expectJsonError(await raw('GET', '/v1/status', { authorization: `Bearer ${'x'.repeat(20_000)}` }), 431, 'HEADERS_TOO_LARGE')
    expectJsonError(await raw('GET', `/v1/collections/p/records?after=${'a'.repeat(20_000)}`, auth), 431, 'HEADERS_TOO_LARGE')
    for (const garbage of ['GARBAGE\r\n\r\n', 'GET / HTTP/9.9\r\n\r\n', 'GET /v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n', '\x00\x01\x02\r\n\r\n']) {
      const answer = await socketExchange(garbage)
      expect(answer, JSON.stringify(garbage)).toMatch(/^HTTP\/1\.1 4\d\d /)
      const body = answer.slice(answer.indexOf('\r\n\r\n') + 4)
      expect(JSON.parse(body).error.code).toBe('BAD_REQUEST')
    }
    await stillServing()
  })

  it('keeps to its body and query limits', async () => {
    expectJsonError(await raw('PUT', '/v1/collections/lim/records/x', jsonHeaders, JSON.stringify({ s: 'x'.repeat(1024 * 1024) })), 413, 'BODY_TOO_LARGE')
    expectJsonError(await raw('POST', '/v1/peers', jsonHeaders, JSON.stringify({ multiaddr: 'x'.repeat(1024 * 1024) })), 413, 'BODY_TOO_LARGE')
    expectJsonError(await raw('POST', '/v1/collections/lim/import', ndjsonHeaders, JSON.stringify({ id: 'x', value: { s: 'y'.repeat(1024 * 1024 + 10) } }) + '\n'), 413, 'LINE_TOO_LONG')
    expectJsonError(await raw('GET', '/v1/collections/lim/records?limit=1&limit=2', auth), 400, 'INVALID_INPUT')
    expectJsonError(await raw('GET', '/v1/collections/lim/records?after=a&after=b', auth), 400, 'INVALID_INPUT')
    expectJsonError(await raw('GET', '/v1/collections/lim/records?limit=1e3', auth), 400, 'INVALID_INPUT')
    expectJsonError(await raw('GET', '/v1/collections/lim/records?limit=-1', auth), 400, 'INVALID_INPUT')
    expectJsonError(await raw('GET', '/v1/collections/lim/records?__proto__=1', auth), 400, 'INVALID_INPUT')
    expectJsonError(await raw('PUT', '/v1/collections/lim/records/x', jsonHeaders, '{"__proto__":{"polluted":1}}'), 400, 'INVALID_JSON')
    expectJsonError(await raw('PUT', '/v1/collections/lim/records/x', { ...auth, 'content-type': 'application/json' }, ''), 400, 'INVALID_JSON')
    expectJsonError(await raw('PUT', '/v1/collections/lim/records/x', { ...auth, 'content-type': 'application/xml' }, '<a/>'), 415, 'UNSUPPORTED_MEDIA_TYPE')
    expectJsonError(await raw('POST', '/v1/peers', jsonHeaders, JSON.stringify({ multiaddr: 'garbage' })), 400, 'INVALID_MULTIADDR')
    expectJsonError(await raw('POST', '/v1/platforms', jsonHeaders, JSON.stringify({ name: 'bad name', peerId: 'x' })), 400, 'INVALID_PLATFORM')
    expectJsonError(await raw('POST', '/v1/rules', jsonHeaders, JSON.stringify({ from: { platform: 'a', collection: 'b c' }, to: { platform: 'a', collection: 'd' } })), 400, 'INVALID_COLLECTION')
    expectJsonError(await raw('POST', '/v1/keys/reload', auth), 409, 'KEYRING_MISSING')
    await stillServing()
  })
})

describe('API bind address', () => {
  it('logs a warning when bound to a non-loopback address, and none on loopback', async () => {
    const root = await mkdtemp(join(tmpdir(), 'syncmesh-api-bind-'))
    const node = await createSyncNode({ dataDir: join(root, 'n'), key: KEY, name: 'bind', listen: ['/ip4/127.0.0.1/tcp/0'] })
    await node.start()
    try {
      const lines: string[] = []
      const sink = new Writable({ write (chunk: Buffer, _enc, done) { lines.push(chunk.toString()); done() } })
      const logger = pino({ level: 'info' }, sink)
      const open = await startApiServer(node, { host: '0.0.0.0', port: 0, token: TOKEN, logger })
      await open.close()
      const warning = lines.map(l => JSON.parse(l) as { level: number, msg: string }).find(l => /not a loopback address/.test(l.msg))
      expect(warning?.level).toBe(40)
      expect(warning?.msg).toMatch(/0\.0\.0\.0:\d+/)
      lines.length = 0
      const local = await startApiServer(node, { host: '127.0.0.1', port: 0, token: TOKEN, logger })
      await local.close()
      expect(lines.some(l => /loopback/.test(l))).toBe(false)
    } finally {
      await node.stop()
      await rm(root, { recursive: true, force: true })
    }
    expect(isLoopback('127.0.0.1')).toBe(true)
    expect(isLoopback('127.1.2.3')).toBe(true)
    expect(isLoopback('::1')).toBe(true)
    expect(isLoopback('::ffff:127.0.0.1')).toBe(true)
    expect(isLoopback('0.0.0.0')).toBe(false)
    expect(isLoopback('::')).toBe(false)
    expect(isLoopback('10.0.0.1')).toBe(false)
    expect(isLoopback('128.0.0.1')).toBe(false)
  })
})
