/**
 * The rule engine through the library and the HTTP API of two real nodes in
 * one process (libp2p on 127.0.0.1, LevelDB in temp dirs): mirror targets
 * refusing local writes, the changes feed (resumable, followed), webhooks
 * (signed, retried), dry runs on a target and elsewhere, rule updates, and
 * the events the library emits.
 */
import '../../src/polyfill.js'
import { createHmac } from 'node:crypto'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { IncomingHttpHeaders, Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ApiClient } from '../../src/api/client.js'
import { startApiServer } from '../../src/api/server.js'
import type { ApiServer } from '../../src/api/server.js'
import { createSyncNode } from '../../src/node/node.js'
import type { ConflictRecord, FeedLine, TransformErrorRecord } from '../../src/core/types.js'
import { eventually as until } from '../helpers/nodes.js'

const KEY = 'r'.repeat(40)
const TOKEN = 'rules-node-token-' + 'c'.repeat(32)
const WEBHOOK_SECRET = 'webhook-secret-' + 'd'.repeat(20)
type Node = Awaited<ReturnType<typeof createSyncNode>>

describe('rules on real nodes (library and HTTP API)', () => {
  let root: string
  const nodes: Node[] = []
  const servers: ApiServer[] = []
  let alpha: Node
  let beta: Node
  let a: ApiClient
  let b: ApiClient
  let betaUrl: string
  let betaTransforms: string

  async function launch (name: string, transformsDir?: string): Promise<{ node: Node, client: ApiClient, url: string }> {
    // the webhook receivers of these tests listen on loopback, which a node refuses unless allowed
    const webhooks = { allow: ['127.0.0.1'], secrets: { orders: WEBHOOK_SECRET } }
    const node = await createSyncNode({ dataDir: join(root, name), key: KEY, name, region: 'eu', listen: ['/ip4/127.0.0.1/tcp/0'], webhooks, ...(transformsDir !== undefined ? { transformsDir } : {}) })
    await node.start()
    nodes.push(node)
    const server = await startApiServer(node, { host: '127.0.0.1', port: 0, token: TOKEN })
    servers.push(server)
    return { node, client: new ApiClient(server.url, TOKEN), url: server.url }
  }

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'syncmesh-rules-node-'))
    betaTransforms = join(root, 'beta-transforms')
    await mkdir(betaTransforms)
    const first = await launch('alpha')
    alpha = first.node
    a = first.client
    const second = await launch('beta', betaTransforms)
    beta = second.node
    b = second.client
    betaUrl = second.url
    await beta.peers.add(alpha.getMultiaddrs()[0])
    await until(() => beta.registry.platforms().some(p => p.name === 'alpha') && alpha.registry.platforms().some(p => p.name === 'beta'), 'the registries to meet')
  }, 60_000)

  afterAll(async () => {
    for (const server of servers) await server.close().catch(() => {})
    for (const node of nodes) await node.stop().catch(() => {})
    if (root != null) await rm(root, { recursive: true, force: true })
  }, 60_000)

  async function ruleReady (node: Node, id: string): Promise<boolean> {
    const r = (await node.status()).rules.find(x => x.id === id)
    return r?.local === true && r.backfilled && r.problem === undefined
  }

  it('a mirror target refuses local writes with 409; the changes feed is resumable and can be followed', async () => {
    const rule = await a.addRule({ from: { platform: 'alpha', collection: 'posts' }, to: { platform: 'beta', collection: 'mirror' }, mode: 'mirror' })
    await until(async () => await ruleReady(beta, rule.id), 'the mirror rule on beta')
    await a.putRecord('posts', '1', { title: 'one' })
    await until(async () => (await beta.records.get('mirror', '1')) !== undefined, 'posts/1 on beta')

    for (const attempt of [
      async () => await b.putRecord('mirror', 'x', { mine: true }),
      async () => await b.deleteRecord('mirror', '1'),
      async () => await beta.records.import('mirror', [{ id: 'y', value: {} }])
    ]) {
      await expect(attempt()).rejects.toMatchObject({ code: 'MIRROR_TARGET_READ_ONLY', status: 409, message: expect.stringContaining('alpha:posts') })
    }
    expect((await beta.records.list('mirror')).records.map(r => r.id)).toEqual(['1'])

    // the feed: every line carries its cursor; resuming after the last one gives nothing new
    const first: FeedLine[] = []
    for await (const line of b.changes({ collection: 'mirror' })) first.push(line)
    expect(first).toEqual([expect.objectContaining({ type: 'change', collection: 'mirror', id: '1', op: 'put', value: { title: 'one' }, ruleId: rule.id, cursor: expect.stringMatching(/^\d+$/) })])
    const resumed: FeedLine[] = []
    for await (const line of b.changes({ collection: 'mirror', since: first[0].cursor })) resumed.push(line)
    expect(resumed).toEqual([])
    await expect(b.changes({ since: 'yesterday' }).next()).rejects.toMatchObject({ code: 'INVALID_CURSOR', status: 400 })

    // following: a new change arrives on the open stream, heartbeats while idle
    const abort = new AbortController()
    const seen: FeedLine[] = []
    const following = (async () => {
      for await (const line of b.changes({ collection: 'mirror', since: first[0].cursor, follow: true, heartbeatSeconds: 1, signal: abort.signal })) {
        seen.push(line)
        if (seen.some(l => l.type === 'heartbeat') && seen.some(l => l.type === 'change' && l.id === '2')) break
      }
    })()
    await a.putRecord('posts', '2', { title: 'two' })
    await until(() => seen.some(l => l.type === 'heartbeat') && seen.some(l => l.type === 'change' && l.id === '2'), 'the followed feed to deliver the change and a heartbeat', 10_000)
    abort.abort()
    await following.catch(() => {})
    const change = seen.find(l => l.type === 'change') as Extract<FeedLine, { type: 'change' }>
    expect(Number(change.cursor)).toBeGreaterThan(Number(first[0].cursor))
    // the library emits the same changes as events, with their cursors
    const events: string[] = []
    const listener = (evt: Event): void => { const d = (evt as CustomEvent).detail; if (d.collection === 'mirror') events.push(`${d.op}:${d.id}:${typeof d.cursor}`) }
    beta.addEventListener('change', listener)
    try {
      await a.deleteRecord('posts', '2')
      await until(() => events.includes('del:2:string'), 'the change event of the delete')
    } finally {
      beta.removeEventListener('change', listener)
    }
  })

  it('change events of synced records are collected only while someone reads them', async () => {
    const rule = await a.addRule({ from: { platform: 'alpha', collection: 'notes' }, to: { platform: 'beta', collection: 'notes' } })
    await until(async () => await ruleReady(beta, rule.id), 'the notes rule on beta')
    // what each commit on beta hands on (internals: the results the rule service sees)
    const service = (beta as unknown as { ruleService: { afterCommit: (r: { changes: unknown[], feed?: unknown }) => void } }).ruleService
    const commits: Array<{ changes: number, feed: boolean }> = []
    const original = service.afterCommit.bind(service)
    service.afterCommit = (r) => { commits.push({ changes: r.changes.length, feed: r.feed !== undefined }); original(r) }
    try {
      await a.putRecord('notes', 'n1', { text: 'unread' })
      // the commit is handed on once durable (the record is readable a moment before)
      await until(() => commits.some(c => c.feed), 'the commit of notes/n1 on beta')
      expect(commits.filter(c => c.feed).every(c => c.changes === 0)).toBe(true)
      // the feed has it all the same, from its index
      const lines: FeedLine[] = []
      for await (const line of beta.changes({ collection: 'notes' })) lines.push(line)
      expect(lines).toEqual([expect.objectContaining({ type: 'change', id: 'n1', value: { text: 'unread' }, ruleId: rule.id })])

      // a listener: the next synced change is collected and emitted
      commits.length = 0
      const events: string[] = []
      const listener = (evt: Event): void => { const d = (evt as CustomEvent).detail; if (d.collection === 'notes') events.push(`${d.op}:${d.id}`) }
      beta.addEventListener('change', listener)
      try {
        await a.putRecord('notes', 'n2', { text: 'heard' })
        await until(() => events.includes('put:n2'), 'the change event of notes/n2')
        expect(commits.filter(c => c.feed).some(c => c.changes > 0)).toBe(true)
      } finally {
        beta.removeEventListener('change', listener)
      }
    } finally {
      service.afterCommit = original
    }
  })

  it('a webhook receives each applied change, signed, and failures are retried', async () => {
    const secret = WEBHOOK_SECRET
    const received: Array<{ headers: IncomingHttpHeaders, body: string, status: number }> = []
    let calls = 0
    const server: Server = createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        calls++
        const status = calls === 1 ? 503 : 200
        received.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), status })
        res.writeHead(status).end()
      })
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`
      const rule = await a.addRule({ from: { platform: 'alpha', collection: 'orders' }, to: { platform: 'beta', collection: 'orders' }, webhook: { url, secretRef: 'orders' } })
      expect((await a.listRules()).find(r => r.id === rule.id)?.webhook).toEqual({ url, secretRef: 'orders' })
      await until(async () => await ruleReady(beta, rule.id), 'the webhook rule on beta')
      await a.putRecord('orders', 'o1', { total: 5 })
      await a.putRecord('orders', 'o2', { total: 7 })
      await until(() => received.filter(r => r.status === 200).length >= 2, 'two delivered webhooks', 20_000)
      const ok = received.filter(r => r.status === 200)
      for (const r of received) {
        expect(r.headers['x-syncmesh-signature-256']).toBe('sha256=' + createHmac('sha256', secret).update(r.body).digest('hex'))
        expect(r.headers['content-type']).toBe('application/json')
      }
      const bodies = ok.map(r => JSON.parse(r.body))
      expect(bodies.map(x => x.change.id)).toEqual(['o1', 'o2'])
      expect(bodies[0]).toMatchObject({ rule: rule.id, platform: 'beta', change: { collection: 'orders', op: 'put', value: { total: 5 } } })
      // the failed first attempt was retried as the same delivery
      expect(received[0].headers['x-syncmesh-delivery']).toBe(received[1].headers['x-syncmesh-delivery'])
      await until(async () => (await b.status()).rules.find(r => r.id === rule.id)?.webhook?.delivered === 2, 'the webhook status')
      const st = (await b.status()).rules.find(r => r.id === rule.id)
      expect(st?.webhook).toMatchObject({ url, delivered: 2, failures: 1, lastError: 'HTTP 503' })
    } finally {
      server.close()
    }
  }, 40_000)

  it('a rule that still carries an inline webhook secret (written before secret references) keeps delivering, with a warning', async () => {
    const secret = 'inline-secret-' + 'e'.repeat(20)
    const received: Array<{ signature: unknown, body: string }> = []
    const server: Server = createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        received.push({ signature: req.headers['x-syncmesh-signature-256'], body: Buffer.concat(chunks).toString('utf8') })
        res.writeHead(204).end()
      })
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/legacy`
      // the record the previous release's addRule wrote; the API no longer accepts it
      const legacy = { id: 'r-legacy', from: { platform: 'alpha', collection: 'legacy' }, to: { platform: 'beta', collection: 'legacy' }, mode: 'merge', createdAt: new Date().toISOString(), webhook: { url, secret } }
      await expect(alpha.registry.addRule({ from: legacy.from, to: legacy.to, webhook: { url, secret } })).rejects.toMatchObject({ code: 'INVALID_RULE' })
      await (alpha as unknown as { writeLocal: (ops: unknown[]) => Promise<unknown> }).writeLocal([{ collection: '$rules', id: legacy.id, op: 'put', value: legacy }])
      await until(async () => await ruleReady(beta, legacy.id), 'the legacy rule on beta')
      expect((await b.listRules()).find(r => r.id === legacy.id)?.webhook).toEqual({ url, secret: '(redacted)' })
      await a.putRecord('legacy', 'l1', { n: 1 })
      await until(() => received.length >= 1, 'the legacy webhook delivery', 20_000)
      expect(received[0].signature).toBe('sha256=' + createHmac('sha256', secret).update(received[0].body).digest('hex'))
      const st = (await b.status()).rules.find(r => r.id === legacy.id)
      expect(st?.webhook?.warning).toMatch(/inline, replicated in clear to every node/)
      // an unrelated update keeps it; moving it to a secret reference drops it from the registry
      expect((await a.updateRule(legacy.id, { where: { n: 1 } })).webhook).toEqual({ url, secret: '(redacted)' })
      await a.updateRule(legacy.id, { webhook: { url, secretRef: 'orders' } })
      expect(JSON.stringify(alpha.registry.rule(legacy.id))).not.toContain(secret)
    } finally {
      server.close()
    }
  }, 40_000)

  it('dry runs (exact on the target, estimated elsewhere), rules with transforms, conflicts, updates, and their events', async () => {
    await writeFile(join(betaTransforms, 'upper.mjs'), `
      export default function (record) {
        if (record.value.title === 'bad') throw new Error('no bad titles')
        return { ...record.value, title: String(record.value.title).toUpperCase() }
      }`)
    await beta.records.put('arts', 'keep', { local: true })
    await beta.records.put('arts', 'x', { local: true })
    await a.putRecord('news', 'd1', { title: 'a', status: 'published' })
    await a.putRecord('news', 'd2', { title: 'bad', status: 'published' })
    await a.putRecord('news', 'd3', { title: 'c', status: 'draft' })
    const spec = { from: { platform: 'alpha', collection: 'news' }, to: { platform: 'beta', collection: 'arts' }, mode: 'mirror' as const, where: { status: 'published' }, transform: 'upper.mjs' }
    // with rule streams only the source holds the records a rule reads: a dry run runs there, estimated for beta
    const streams = (await alpha.status()).streams === true
    if (streams) {
      await expect(b.dryRunRule(spec)).rejects.toMatchObject({ code: 'DRY_RUN_UNAVAILABLE', status: 409, message: expect.stringContaining('on its source, alpha') })
    } else {
      await until(async () => (await b.dryRunRule(spec)).source.records === 3, 'beta to hold alpha:news')
      const onBeta = await b.dryRunRule(spec)
      expect(onBeta).toMatchObject({ dryRun: true, evaluatedOn: 'beta', source: { platform: 'alpha', records: 3, complete: true } })
      expect(onBeta.targets).toEqual([expect.objectContaining({ platform: 'beta', exact: true, matching: 1, creates: 1, updates: 0, deletes: 2, skipped: 1, errors: 1 })])
    }
    const onAlpha = await a.dryRunRule(spec)
    expect(onAlpha.source).toMatchObject({ platform: 'alpha', records: 3 })
    expect(onAlpha.targets).toEqual([expect.objectContaining({ platform: 'beta', exact: false, matching: 2, note: expect.stringContaining(streams ? 'known once the rule runs' : 'run the dry run there') })])
    // nothing was written
    expect((await beta.records.list('arts')).records.map(r => r.id)).toEqual(['keep', 'x'])

    const transformErrors: TransformErrorRecord[] = []
    const conflicts: ConflictRecord[] = []
    const backfills: string[] = []
    beta.addEventListener('transform-error', (evt) => transformErrors.push((evt as CustomEvent<TransformErrorRecord>).detail))
    beta.addEventListener('conflict', (evt) => conflicts.push((evt as CustomEvent<ConflictRecord>).detail))
    beta.addEventListener('backfill', (evt) => backfills.push((evt as CustomEvent<{ ruleId: string }>).detail.ruleId))

    const rule = await a.addRule({ ...spec, mode: 'merge' })
    await until(() => backfills.includes(rule.id), 'the backfill event')
    expect(await beta.records.get('arts', 'd1')).toMatchObject({ value: { title: 'A', status: 'published' } })
    expect(transformErrors).toEqual([expect.objectContaining({ ruleId: rule.id, id: 'd2', error: 'no bad titles', module: 'upper.mjs' })])
    expect((await b.ruleErrors(rule.id)).total).toBe(1)
    expect((await b.status()).rules.find(r => r.id === rule.id)).toMatchObject({ transformErrors: 1, target: 'beta:arts', targets: ['beta'] })

    // a local edit of what the rule placed is a conflict of the rule
    await b.putRecord('arts', 'd1', { mine: true })
    await until(() => conflicts.length === 1, 'the conflict event')
    expect(conflicts[0]).toMatchObject({ ruleId: rule.id, id: 'd1', kind: 'local-write', winner: 'incoming', incoming: { local: true } })
    expect(await b.ruleConflicts(rule.id)).toMatchObject({ total: 1, conflicts: [{ n: 1, id: 'd1' }] })

    // an update (drop the filter) re-evaluates: d3 arrives, the newer local d1 stays
    if (streams) {
      await expect(b.dryRunUpdate(rule.id, { where: null })).rejects.toMatchObject({ code: 'DRY_RUN_UNAVAILABLE', status: 409 })
      expect((await a.dryRunUpdate(rule.id, { where: null })).targets[0]).toMatchObject({ platform: 'beta', exact: false, matching: 3 })
    } else {
      const dry = await b.dryRunUpdate(rule.id, { where: null })
      expect(dry.targets[0]).toMatchObject({ exact: true, creates: 1, errors: 1 })
    }
    const updated = await a.updateRule(rule.id, { where: null })
    expect(updated.where).toBeUndefined()
    expect(updated.updatedAt).toBeDefined()
    await until(async () => (await beta.records.get('arts', 'd3')) !== undefined, 'the re-evaluation on beta')
    expect((await beta.records.get('arts', 'd3'))?.value).toEqual({ title: 'C', status: 'draft' })
    expect((await beta.records.get('arts', 'd1'))?.value).toEqual({ mine: true })
    expect((await b.getRule(rule.id)).updatedAt).toBe(updated.updatedAt)
    await expect(a.updateRule('r-nope', { mode: 'merge' })).rejects.toMatchObject({ code: 'NOT_FOUND', status: 404 })
    await expect(a.updateRule(rule.id, { where: { $bogus: 1 } })).rejects.toMatchObject({ code: 'INVALID_FILTER', status: 400 })
  }, 40_000)
})
