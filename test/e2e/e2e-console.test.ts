/**
 * The operator's console in a real browser (Debian's Chromium, driven by
 * playwright-core) against real node processes, and the API tokens it
 * relies on: kept across restarts, rotated, read-only.
 */
import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { chromium } from 'playwright-core'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { NodeProcess, runCli, tempDir, waitFor } from '../../scripts/lib/cluster.js'

const KEY = 'f0e1d2c3b4a5968778695a4b3c2d1e0f'
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const haveBrowser = existsSync(CHROMIUM)
if (!haveBrowser && process.env.SYNCMESH_REQUIRE_BROWSER === '1') throw new Error(`no browser at ${CHROMIUM}: install Debian's chromium (apt-get install chromium) or set CHROMIUM_PATH`)
if (!haveBrowser) console.warn(`[skip] the console's browser tests need Chromium at ${CHROMIUM} (apt-get install chromium)`)

/** Headless Chromium as it runs on a machine without internet. */
async function launch (): Promise<Browser> {
  return await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
  })
}

async function consoleUrl (dir: string, readOnly = false): Promise<string> {
  const res = await runCli(['console', '--data', dir, '--json', ...(readOnly ? ['--read-only'] : [])])
  expect(res.code, res.stderr).toBe(0)
  return (JSON.parse(res.stdout) as { url: string }).url
}

describe.skipIf(!haveBrowser)('the console in a browser', () => {
  const procs: NodeProcess[] = []
  let browser: Browser
  let shots: string
  let a: NodeProcess
  let b: NodeProcess

  beforeAll(async () => {
    const parent = await tempDir()
    // the screenshots in docs/console are made by: SYNCMESH_SCREENSHOTS=docs/console npx vitest run test/e2e/e2e-console.test.ts
    shots = process.env.SYNCMESH_SCREENSHOTS ?? join(parent, 'screenshots')
    await mkdir(shots, { recursive: true })
    a = await NodeProcess.create('alpha', KEY, { parent, region: 'eu' })
    b = await NodeProcess.create('beta', KEY, { parent, region: 'us' })
    procs.push(a, b)
    await a.start()
    await b.start()
    expect((await runCli(['peer', 'add', a.multiaddr, '--data', b.dir])).code).toBe(0)
    for (let i = 1; i <= 6; i++) await a.put('posts', `p${i}`, { title: `post ${i}`, status: i % 2 === 0 ? 'draft' : 'published' })
    browser = await launch()
  })

  afterAll(async () => {
    await browser?.close()
    for (const p of procs) await p.cleanup()
  })

  async function openConsole (url: string): Promise<Page> {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
    const errors: string[] = []
    page.on('pageerror', (err) => errors.push(err.message))
    page.on('console', (msg) => { if (msg.type() === 'error') errors.push(msg.text()) })
    page.on('response', (r) => { if (r.status() >= 400) errors.push(`${r.status()} ${r.url()}`) })
    ;(page as Page & { errors: string[] }).errors = errors
    await page.goto(url)
    return page
  }

  it('signs in from the console URL, drops the token from the address bar, and shows peers and lag', async () => {
    const t0 = performance.now()
    const url = await consoleUrl(a.dir)
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/#token=[0-9a-f]{64}$/)
    const page = await openConsole(url)
    await page.getByRole('table', { name: 'Peers' }).getByText('beta').waitFor()
    console.log(`[measure] syncmesh console to a rendered overview: ${(performance.now() - t0).toFixed(0)} ms`)
    expect(page.url()).not.toContain('token=')
    expect(await page.evaluate(() => sessionStorage.getItem('syncmesh-token'))).toBe(a.token)
    await expect(page.locator('#node-name').textContent()).resolves.toBe('alpha')
    await page.getByRole('table', { name: 'Peers' }).getByText('connected').first().waitFor()
    await page.getByRole('table', { name: 'Origins' }).waitFor()
    // the page is served with a strict policy, and nothing on it came from elsewhere
    const res = await fetch(a.api + '/')
    expect(res.headers.get('content-security-policy')).toContain("default-src 'none'")
    await page.screenshot({ path: join(shots, 'overview.png') })
    expect((page as Page & { errors: string[] }).errors).toEqual([])
    await page.close()
  })

  it('creates a rule with a filter through the form, shows its dry run, and the records arrive on the target', async () => {
    const page = await openConsole(await consoleUrl(a.dir))
    await page.getByRole('link', { name: 'Rules' }).click()
    await page.getByLabel('From (platform:collection)').fill('alpha:posts')
    await page.getByLabel(/^To /).fill('beta:articles')
    await page.getByLabel('Filter (where, JSON)').fill('{"status":"published"}')
    await page.getByLabel('Exclude fields').fill('status')
    await page.getByRole('button', { name: 'Dry run' }).click()
    await page.getByRole('heading', { name: 'Dry run' }).waitFor()
    await expect(page.locator('#dry-run').textContent()).resolves.toContain('6 records')
    await page.screenshot({ path: join(shots, 'rule-dry-run.png'), fullPage: true })
    await page.getByRole('button', { name: 'Save rule' }).click()
    await page.getByRole('table', { name: 'Rules' }).getByText('alpha:posts').waitFor()
    await waitFor(async () => await b.count('articles') === 3, 'the three published posts to reach beta')
    expect(await b.get('articles', 'p1')).toEqual({ title: 'post 1' })
    expect(await b.get('articles', 'p2')).toBeUndefined()

    // pause it: the state says so on every node, and a post written meanwhile stays where it is
    const [rule] = (await a.request<Array<{ id: string }>>('GET', '/v1/rules')).body
    await page.getByRole('button', { name: `Pause rule ${rule.id}` }).click()
    await page.getByRole('button', { name: `Resume rule ${rule.id}` }).waitFor()
    await page.getByRole('table', { name: 'Rules' }).getByText('paused').waitFor()
    await waitFor(async () => (await b.request<{ paused?: boolean }>('GET', `/v1/rules/${rule.id}`)).body.paused === true, 'the pause to reach beta')
    await a.put('posts', 'p7', { title: 'post 7', status: 'published' })
    const held = async (n: NodeProcess): Promise<number> => ((await n.status()).origins as Array<{ origin: string, seq: number }>).find(o => o.origin === a.peerId)?.seq ?? 0
    const head = await held(a)
    await waitFor(async () => await held(b) >= head, 'beta to hold alpha\'s log')
    await new Promise(resolve => setTimeout(resolve, 1_000))
    expect(await b.get('articles', 'p7')).toBeUndefined()

    // a rule naming a platform the registry lacks is saved only when forced, and shows as a problem
    await page.getByLabel('From (platform:collection)').fill('alpha:posts')
    await page.getByLabel(/^To /).fill('nosuch:posts')
    await page.getByLabel(/^Save even when a platform/).check()
    await page.getByRole('button', { name: 'Save rule' }).click()
    await page.getByRole('table', { name: 'Rules' }).getByText(/target platform "nosuch" is not in the registry/).waitFor()
    await page.screenshot({ path: join(shots, 'rules.png'), fullPage: true })

    // resumed, the target catches up
    await page.getByRole('button', { name: `Resume rule ${rule.id}` }).click()
    await page.getByRole('button', { name: `Pause rule ${rule.id}` }).waitFor()
    await waitFor(async () => (await b.get('articles', 'p7'))?.title === 'post 7', 'the post written while paused to reach beta once resumed')
    await page.getByRole('link', { name: 'Platforms' }).click()
    await page.getByRole('table', { name: 'Platforms' }).getByText('beta').waitFor()
    await page.screenshot({ path: join(shots, 'platforms.png'), fullPage: true })
    await page.getByRole('link', { name: 'Charts' }).click()
    await page.getByRole('img', { name: /Sync throughput/ }).waitFor()
    await page.screenshot({ path: join(shots, 'charts.png'), fullPage: true })
    expect((page as Page & { errors: string[] }).errors).toEqual([])
    await page.close()
  })

  it('edits and deletes a record, and shows the change in the live feed', async () => {
    const page = await openConsole(await consoleUrl(a.dir))
    await page.getByRole('link', { name: 'Data' }).click()
    await page.getByRole('table', { name: 'Records of posts' }).getByRole('link', { name: 'p3' }).click()
    const editor = page.getByLabel('JSON of p3')
    await editor.fill('{"title":"edited in the console","status":"published"}')
    await page.getByRole('button', { name: 'Save record' }).click()
    await waitFor(async () => (await a.get('posts', 'p3'))?.title === 'edited in the console', 'the edit to be stored on alpha')
    await waitFor(async () => (await b.get('articles', 'p3'))?.title === 'edited in the console', 'the edit to reach beta')
    // a write from elsewhere shows in the live feed
    await page.getByText('Changes (live)').waitFor()
    await new Promise(resolve => setTimeout(resolve, 300))
    await a.put('posts', 'p9', { title: 'from the API', status: 'draft' })
    await page.locator('#feed').getByText(/put posts\/p9/).waitFor()
    await page.getByRole('table', { name: 'Records of posts' }).getByRole('link', { name: 'p5' }).click()
    page.once('dialog', (d) => { void d.accept() })
    await page.getByRole('button', { name: 'Delete record' }).click()
    await waitFor(async () => await a.get('posts', 'p5') === undefined, 'p5 to be deleted on alpha')
    await page.screenshot({ path: join(shots, 'data.png'), fullPage: true })
    expect((page as Page & { errors: string[] }).errors).toEqual([])
    await page.close()
  })

  it('with the read-only token shows everything and offers no change; the API refuses changes', async () => {
    const url = await consoleUrl(a.dir, true)
    const page = await openConsole(url)
    await page.locator('#access').getByText('read-only').waitFor()
    await page.getByRole('link', { name: 'Rules' }).click()
    await page.getByRole('table', { name: 'Rules' }).waitFor()
    expect(await page.getByRole('button', { name: 'Save rule' }).count()).toBe(0)
    const token = decodeURIComponent(url.split('#token=')[1])
    const put = await fetch(`${a.api}/v1/collections/posts/records/x`, { method: 'PUT', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: '{"a":1}' })
    expect(put.status).toBe(403)
    expect(((await put.json()) as { error: { code: string } }).error.code).toBe('READ_ONLY_TOKEN')
    expect(await a.get('posts', 'x')).toBeUndefined()
    const metrics = await fetch(`${a.api}/metrics`, { headers: { authorization: `Bearer ${token}` } })
    expect(metrics.status).toBe(200)
    await page.close()
  })
})

describe('API tokens across restarts and rotation', () => {
  const procs: NodeProcess[] = []
  afterAll(async () => {
    for (const p of procs) await p.cleanup()
  })

  it('keeps both tokens across a restart, rotates them, and serves metrics without a token only where asked', async () => {
    const parent = await tempDir()
    const n = await NodeProcess.create('gamma', KEY, { parent })
    procs.push(n)
    await n.start()
    const first = n.token
    const ro = await runCli(['api', 'token', 'show', '--read-only', '--data', n.dir])
    expect(ro.code, ro.stderr).toBe(0)
    const readOnly = ro.stdout.trim()
    const scrape = async (token: string): Promise<number> => (await fetch(`${n.api}/metrics`, { headers: { authorization: `Bearer ${token}` } })).status
    expect(await scrape(readOnly)).toBe(200)

    // a scraper keeps working across a restart
    expect(await n.stop()).toBe(0)
    await n.start()
    expect(n.token).toBe(first)
    expect(await scrape(readOnly)).toBe(200)

    // rotation: the old full token stops working at once, the new one works, api.json follows
    const rot = await runCli(['api', 'token', 'rotate', '--data', n.dir, '--json'])
    expect(rot.code, rot.stderr).toBe(0)
    const next = (JSON.parse(rot.stdout) as { token: string }).token
    expect(next).not.toBe(first)
    expect(await scrape(first)).toBe(401)
    expect(await scrape(next)).toBe(200)
    const status = await runCli(['status', '--data', n.dir, '--json'])
    expect(status.code, status.stderr).toBe(0)
    const rotRo = await runCli(['api', 'token', 'rotate', '--read-only', '--data', n.dir])
    expect(rotRo.code, rotRo.stderr).toBe(0)
    expect(await scrape(readOnly)).toBe(401)
    expect(await scrape(rotRo.stdout.trim())).toBe(200)

    // a metrics address without a token, when the operator asks for it
    expect(await n.stop()).toBe(0)
    await n.start(['--metrics', '127.0.0.1:0'])
    const line = /serving metrics without a token on (http:\/\/\S+)"/.exec(n.stderr)
    expect(line).not.toBeNull()
    const open = await fetch(line![1].replace(/\\"$/, ''))
    expect(open.status).toBe(200)
    expect(await open.text()).toContain('syncmesh_peers_connected')
    expect((await fetch(line![1].replace(/\/metrics.*$/, '/v1/status'))).status).toBe(404)
    expect(await scrape(next)).toBe(200)
  })
})
