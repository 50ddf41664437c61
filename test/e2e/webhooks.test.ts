/**
 * Webhooks against hostile endpoints: a real node process (the CLI, LevelDB
 * in a temp dir) whose rules POST to HTTP servers in this test on 127.0.0.1.
 * The node POSTs only where its own configuration allows (--webhook-allow,
 * config.json "webhooks"), checks the address a name resolves to, does not
 * follow redirects, reads at most 64 KiB of an answer (an endless 1 GiB body
 * does not grow its memory), gives up on a slow endpoint after its timeout,
 * and gives up on a change after its attempts so the next one is delivered.
 * The signing secret lives in the node's config, never in the rule.
 */
import { createHmac } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { NodeProcess, runCli, waitFor } from '../../scripts/lib/cluster.js'

const KEY = 'w'.repeat(40)
const SECRET = 'hook-secret-' + 'x'.repeat(24)
const GiB = 1024 * 1024 * 1024

interface Json { [k: string]: any }

interface Endpoint {
  server: Server
  port: number
  url: string
  /** Requests received (head and body read). */
  hits: Array<{ headers: IncomingMessage['headers'], body: string }>
}

async function endpoint (handle: (req: IncomingMessage, res: ServerResponse, body: string) => void): Promise<Endpoint> {
  const hits: Endpoint['hits'] = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8')
      hits.push({ headers: req.headers, body })
      handle(req, res, body)
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return { server, port, url: `http://127.0.0.1:${port}/hook`, hits }
}

async function rssMiB (pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1])
  return kb / 1024
}

describe('webhooks against hostile endpoints (real node process)', () => {
  let node: NodeProcess
  let ok: Endpoint
  let redirect: Endpoint
  let stolen: Endpoint
  let huge: Endpoint
  let slow: Endpoint
  let notAllowed: Endpoint
  /** Bytes the endless endpoint managed to send, per request, before the node closed the connection. */
  const hugeSent: number[] = []
  const held: ServerResponse[] = []

  beforeAll(async () => {
    ok = await endpoint((_req, res) => res.writeHead(204).end())
    stolen = await endpoint((_req, res) => res.writeHead(200).end())
    redirect = await endpoint((_req, res) => res.writeHead(307, { location: stolen.url }).end())
    huge = await endpoint((_req, res) => {
      // an endless answer (stopped at 1 GiB), written as fast as the node reads
      res.writeHead(200, { 'content-type': 'application/octet-stream' })
      const chunk = Buffer.alloc(64 * 1024, 0x61)
      let sent = 0
      const slot = hugeSent.push(0) - 1
      const pump = (): void => {
        while (sent < GiB) {
          sent += chunk.length
          hugeSent[slot] = sent
          if (!res.write(chunk)) {
            res.once('drain', pump)
            return
          }
        }
        res.end()
      }
      res.on('close', () => res.removeAllListeners('drain'))
      pump()
    })
    slow = await endpoint((_req, res) => { held.push(res) }) // never answers
    notAllowed = await endpoint((_req, res) => res.writeHead(200).end())

    node = await NodeProcess.create('hooks', KEY)
    const configPath = join(node.dir, 'config.json')
    const config = JSON.parse(await readFile(configPath, 'utf8')) as Json
    config.webhooks = { secrets: { main: SECRET }, maxAttempts: 2, timeout: 2 }
    await writeFile(configPath, JSON.stringify(config))
    // loopback endpoints must be allowed one by one; notAllowed's port is not, and "localhost" only by name
    const allow = [ok, redirect, stolen, huge, slow].flatMap(e => ['--webhook-allow', `127.0.0.1:${e.port}`])
    await node.start(['--target-peers', '0', ...allow, '--webhook-allow', `localhost:${notAllowed.port}`])
  }, 60_000)

  afterAll(async () => {
    for (const r of held) r.destroy()
    await node?.cleanup()
    for (const e of [ok, redirect, stolen, huge, slow, notAllowed]) e?.server.closeAllConnections()
    for (const e of [ok, redirect, stolen, huge, slow, notAllowed]) e?.server.close()
  })

  let n = 0
  /** A rule from one collection of the node to another, with a webhook; returns its id and source collection. */
  async function hookRule (url: string, secretRef = 'main'): Promise<{ id: string, source: string }> {
    n++
    const source = `in${n}`
    const r = await node.request<Json>('POST', '/v1/rules', { from: { platform: 'hooks', collection: source }, to: { platform: 'hooks', collection: `out${n}` }, webhook: { url, secretRef } })
    expect(r.status, JSON.stringify(r.body)).toBe(201)
    return { id: r.body.id, source }
  }

  async function hookStatus (ruleId: string): Promise<Json | undefined> {
    return ((await node.status()).rules as Json[]).find(r => r.id === ruleId)?.webhook
  }

  it('delivers to an allowed endpoint, signed with the secret from the node\'s config; a new inline secret is refused', async () => {
    const rule = await hookRule(ok.url)
    await node.put(rule.source, 'a', { n: 1 })
    await waitFor(async () => (await hookStatus(rule.id))?.delivered === 1, 'the delivery', 20_000)
    expect(ok.hits).toHaveLength(1)
    expect(ok.hits[0].headers['x-syncmesh-signature-256']).toBe('sha256=' + createHmac('sha256', SECRET).update(ok.hits[0].body).digest('hex'))
    expect(JSON.parse(ok.hits[0].body).change).toMatchObject({ id: 'a', value: { n: 1 } })
    // the rule, as every node holds it, names the secret and does not carry it
    const listed = await node.request<Json[]>('GET', '/v1/rules')
    expect(JSON.stringify(listed.body)).not.toContain(SECRET)
    expect(listed.body.find(r => r.id === rule.id)?.webhook).toEqual({ url: ok.url, secretRef: 'main' })

    const inline = await node.request<Json>('POST', '/v1/rules', { from: { platform: 'hooks', collection: 'x' }, to: { platform: 'hooks', collection: 'y' }, webhook: { url: ok.url, secret: SECRET } })
    expect(inline.status).toBe(400)
    expect(inline.body.error.code).toBe('INVALID_RULE')
    expect(inline.body.error.message).toMatch(/secretRef/)
    const creds = await node.request<Json>('POST', '/v1/rules', { from: { platform: 'hooks', collection: 'x' }, to: { platform: 'hooks', collection: 'y' }, webhook: { url: `http://user:pw@127.0.0.1:${ok.port}/`, secretRef: 'main' } })
    expect(creds.body.error?.code).toBe('INVALID_RULE')
  }, 30_000)

  it('does not follow a 307 redirect to another (even allowed) port; gives up on the change and delivers the next', async () => {
    const rule = await hookRule(redirect.url)
    await node.put(rule.source, 'r1', { secret: 'data' })
    await waitFor(async () => (await hookStatus(rule.id))?.failed === 1, 'the change to be given up', 20_000)
    await node.put(rule.source, 'r2', { n: 2 })
    await waitFor(async () => (await hookStatus(rule.id))?.failed === 2, 'the next change to be tried and given up', 20_000)
    const st = await hookStatus(rule.id) as Json
    expect(st).toMatchObject({ delivered: 0, failures: 4, failed: 2, lastFailure: { id: 'r2' } })
    expect(st.lastError).toMatch(/^HTTP 307 \(redirects are not followed/)
    expect(redirect.hits.map(h => JSON.parse(h.body).change.id)).toEqual(['r1', 'r1', 'r2', 'r2'])
    expect(stolen.hits).toHaveLength(0)
  }, 30_000)

  it('reads at most the cap of an endless (1 GiB) answer and closes: memory does not grow', async () => {
    const pid = node.pid as number
    const rule = await hookRule(huge.url)
    const before = await rssMiB(pid)
    let peak = before
    const sampler = setInterval(() => { rssMiB(pid).then(v => { peak = Math.max(peak, v) }, () => {}) }, 50)
    try {
      for (let i = 0; i < 5; i++) await node.put(rule.source, `h${i}`, { i })
      await waitFor(async () => (await hookStatus(rule.id))?.delivered === 5, 'five deliveries (a 200 is a 200, whatever follows)', 30_000)
    } finally {
      clearInterval(sampler)
    }
    expect(await hookStatus(rule.id)).toMatchObject({ delivered: 5, failures: 0, failed: 0 })
    expect(hugeSent).toHaveLength(5)
    // the node closed each answer early: the endpoint got out no more than socket buffers hold, never the 1 GiB
    for (const sent of hugeSent) expect(sent).toBeLessThan(64 * 1024 * 1024)
    expect(peak - before, `RSS ${before.toFixed(0)} → peak ${peak.toFixed(0)} MiB`).toBeLessThan(64)
  }, 60_000)

  it('gives up on an endpoint that never answers after its timeout', async () => {
    const rule = await hookRule(slow.url)
    const started = Date.now()
    await node.put(rule.source, 's1', {})
    await waitFor(async () => (await hookStatus(rule.id))?.failed === 1, 'the slow change to be given up', 20_000).catch(async (err: Error) => {
      throw new Error(`${err.message}; status ${JSON.stringify(await hookStatus(rule.id))}, ${slow.hits.length} hits; the node logged:\n${node.stderr.split('\n').filter(l => l.includes(rule.id)).join('\n')}`)
    })
    const st = await hookStatus(rule.id) as Json
    expect(st).toMatchObject({ delivered: 0, failures: 2, failed: 1, lastError: 'no answer within 2 s' })
    expect(slow.hits).toHaveLength(2)
    // two attempts of 2 s and one backoff of 1 s
    expect(Date.now() - started).toBeGreaterThanOrEqual(4_000)
  }, 30_000)

  it('refuses loopback unless allowed (by address and port), and by name too (the resolved address is checked)', async () => {
    // 127.0.0.1 on a port the node does not allow: the host check blocks the rule here, nothing is consumed
    const blockedRule = await hookRule(notAllowed.url)
    await node.put(blockedRule.source, 'b1', {})
    await waitFor(async () => (await hookStatus(blockedRule.id))?.blocked !== undefined, 'the rule to be blocked here')
    const blocked = await hookStatus(blockedRule.id) as Json
    expect(blocked.blocked).toMatch(/is not in this node's "webhooks.allow"/)
    expect(blocked.delivered).toBe(0)

    // "localhost:PORT" is allowed by name, but it resolves to a loopback address the node does not allow
    const byName = await hookRule(`http://localhost:${notAllowed.port}/hook`)
    await node.put(byName.source, 'n1', {})
    await waitFor(async () => (await hookStatus(byName.id))?.failed === 1, 'the loopback name to be refused', 20_000)
    expect((await hookStatus(byName.id))?.lastError).toMatch(/^localhost resolves to (127\.0\.0\.1|::1), a loopback, private, link-local or reserved address/)

    // a secret the node does not hold: blocked, not sent unsigned
    const noSecret = await hookRule(ok.url, 'unknown')
    await node.put(noSecret.source, 'u1', {})
    await waitFor(async () => (await hookStatus(noSecret.id))?.blocked !== undefined, 'the rule without a secret here to be blocked')
    expect((await hookStatus(noSecret.id))?.blocked).toMatch(/the secret "unknown" is not in this node's "webhooks.secrets"/)
    expect(ok.hits).toHaveLength(1)
  }, 60_000)

  it('resumes a blocked webhook from where it waited once the node allows it', async () => {
    const rule = ((await node.status()).rules as Json[]).find(r => r.webhook?.url === notAllowed.url) as Json
    await node.stop()
    await node.start(['--target-peers', '0', '--webhook-allow', `127.0.0.1:${notAllowed.port}`])
    await waitFor(async () => (await hookStatus(rule.id))?.delivered === 1, 'the waiting change to be delivered', 20_000)
    expect(notAllowed.hits.map(h => JSON.parse(h.body).change.id)).toEqual(['b1'])
  }, 60_000)

  it('with "*" (any public host) still refuses loopback, private, link-local and metadata addresses in any spelling', async () => {
    await node.stop()
    await node.start(['--target-peers', '0', '--webhook-allow', '*'])
    const before = notAllowed.hits.length
    for (const url of [
      'http://10.0.0.5:8080/hook', 'http://169.254.169.254/latest/meta-data/', 'http://192.168.1.1/', 'http://[::1]:' + String(notAllowed.port) + '/',
      'http://[::ffff:127.0.0.1]:' + String(notAllowed.port) + '/', 'http://0x7f000001:' + String(notAllowed.port) + '/', 'http://0.0.0.0:' + String(notAllowed.port) + '/', 'http://[fd00::1]/'
    ]) {
      const rule = await hookRule(url)
      await node.put(rule.source, 'p1', {})
      await waitFor(async () => (await hookStatus(rule.id))?.failed === 1, `${url} to be refused`, 20_000)
      const st = await hookStatus(rule.id) as Json
      expect(st.lastError, url).toMatch(/is a loopback, private, link-local or reserved address, and not in this node's "webhooks.allow"/)
      expect(st.delivered).toBe(0)
    }
    expect(notAllowed.hits).toHaveLength(before)
  }, 90_000)

  it('refuses an inline secret and a malformed allow entry on the command line, and in config.json', async () => {
    const inline = await runCli(['rule', 'add', '--from', 'hooks:a', '--to', 'hooks:b', '--webhook', ok.url, '--webhook-secret', SECRET, '--data', node.dir])
    expect(inline.code).toBe(2)
    expect(inline.stderr).toMatch(/--webhook-secret is no longer accepted.*--webhook-secret-ref/)
    const noRef = await runCli(['rule', 'add', '--from', 'hooks:a', '--to', 'hooks:b', '--webhook', ok.url, '--data', node.dir])
    expect(noRef.code).toBe(2)
    expect(noRef.stderr).toMatch(/--webhook needs --webhook-secret-ref NAME/)
    await node.stop()
    const badFlag = await runCli(['start', '--data', node.dir, '--key', KEY, '--webhook-allow', 'hooks.example.com:http'])
    expect(badFlag.code).toBe(2)
    expect(badFlag.stderr).toMatch(/--webhook-allow "hooks.example.com:http": the port must be a number/)
    const configPath = join(node.dir, 'config.json')
    const config = JSON.parse(await readFile(configPath, 'utf8')) as Json
    await writeFile(configPath, JSON.stringify({ ...config, webhooks: { ...config.webhooks, allow: ['http://hooks.example.com/'] } }))
    const badConfig = await runCli(['start', '--data', node.dir, '--key', KEY, '--listen', '/ip4/127.0.0.1/tcp/0', '--api', '127.0.0.1:0'])
    expect(badConfig.code).not.toBe(0)
    expect(badConfig.stderr).toMatch(/webhooks\.allow\.0: "http:\/\/hooks\.example\.com\/" is a URL: allow its host \("hooks\.example\.com"\)/)
    await writeFile(configPath, JSON.stringify(config))
  }, 60_000)
})
