/**
 * Connectors where an operator looks: `syncmesh status`, GET /v1/status,
 * /metrics and the console's overview (Debian's Chromium through
 * playwright-core, skipped when it is missing), on a real node process with
 * a real SQLite application database.
 */
import { existsSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { chromium } from 'playwright-core'
import { afterAll, describe, expect, it } from 'vitest'
import { NodeProcess, runCli, tempDir, waitFor } from '../../scripts/lib/cluster.js'

const KEY = '7c1e9a3f5b2d8e4a6c0f1b3d5e7a9c2e4f'
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

interface Json { [k: string]: any }

describe('connectors in status, /metrics and the console', () => {
  const cleanup: Array<() => Promise<void>> = []
  afterAll(async () => {
    for (const fn of cleanup.reverse()) await fn().catch(() => {})
  })

  it('lists each connector with its direction, counters, refused rows and lag', async () => {
    const parent = await tempDir()
    cleanup.push(async () => await rm(parent, { recursive: true, force: true }))
    const node = await NodeProcess.create('S', KEY, { parent })
    cleanup.push(async () => await node.kill())
    await node.start(['--target-peers', '0'])
    const file = join(parent, 'app.db')
    const app = new Database(file)
    cleanup.push(async () => { app.close() })
    app.pragma('journal_mode = WAL')
    app.exec('CREATE TABLE items (id TEXT PRIMARY KEY, title TEXT NOT NULL, n INTEGER)')
    const add = await runCli(['connector', 'add', 'sqlite', '--db', file, '--table', 'items', '--collection', 'items', '--id', 'id', '--direction', 'out', '--data', node.dir, '--json'])
    expect(add.code, add.stderr).toBe(0)
    const id = (JSON.parse(add.stdout) as Json).id as string

    const insert = app.prepare('INSERT INTO items (id, title, n) VALUES (?, ?, ?)')
    app.transaction(() => { for (let i = 0; i < 25; i++) insert.run(`i${i}`, `item ${i}`, i) })()
    insert.run('L'.repeat(600), 'an id the node refuses', 0)
    await waitFor(async () => await node.count('items') === 25, 'the node to take the rows')
    await waitFor(async () => ((await node.status()).connectors as Json[])[0].refusedRows === 1, 'the refused row to be counted')

    // GET /v1/status
    const status = await node.status()
    expect(status.connectors).toHaveLength(1)
    expect(status.connectors[0]).toMatchObject({ id, kind: 'sqlite', table: 'items', collection: 'items', direction: 'out', running: true, captured: 25, applied: 0, refusedRows: 1, errors: 0, lag: 0 })
    expect(status.connectors[0].lastRefused.id).toBe('L'.repeat(200))

    // syncmesh status
    const text = await runCli(['status', '--data', node.dir])
    expect(text.code, text.stderr).toBe(0)
    expect(text.stdout).toContain('CONNECTORS (1; docs/connectors.md)')
    expect(text.stdout).toMatch(new RegExp(`${id}\\s+sqlite:items → items\\s+yes\\s+0\\s+25\\s+0\\s+0\\s+1`))

    // /metrics
    const metrics = (await node.request<string>('GET', '/metrics')).body
    const labels = `connector="${id}",kind="sqlite",table="items",collection="items"`
    expect(metrics).toContain(`syncmesh_connector_captured_total{${labels}} 25`)
    expect(metrics).toContain(`syncmesh_connector_refused_rows_total{${labels}} 1`)
    expect(metrics).toContain(`syncmesh_connector_applied_total{${labels}} 0`)
    expect(metrics).toContain(`syncmesh_connector_lag{${labels}} 0`)
    expect(metrics).toContain(`syncmesh_connector_running{${labels}} 1`)
    // counters keep counting across scrapes (each scrape adds the growth since the last)
    insert.run('late', 'one more', 1)
    await waitFor(async () => await node.count('items') === 26, 'the node to take the late row')
    const again = (await node.request<string>('GET', '/metrics')).body
    expect(again).toContain(`syncmesh_connector_captured_total{${labels}} 26`)

    // lag: outbox rows not yet taken, while the node is stopped the application keeps writing
    await node.stop()
    app.transaction(() => { for (let i = 100; i < 140; i++) insert.run(`i${i}`, `item ${i}`, i) })()
    await node.start(['--target-peers', '0'])
    await waitFor(async () => await node.count('items') === 66, 'the node to take the rows written while it was down')
    expect(((await node.status()).connectors as Json[])[0]).toMatchObject({ captured: 40, lag: 0, running: true })

    // the console's overview
    if (!existsSync(CHROMIUM)) {
      console.warn(`[skip] the console part needs Chromium at ${CHROMIUM}`)
    } else {
      const res = await runCli(['console', '--data', node.dir, '--json'])
      expect(res.code, res.stderr).toBe(0)
      const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'] })
      cleanup.push(async () => await browser.close())
      const page = await browser.newPage()
      const errors: string[] = []
      page.on('pageerror', (err) => errors.push(err.message))
      await page.goto((JSON.parse(res.stdout) as { url: string }).url)
      const tableEl = page.getByRole('table', { name: 'Connectors' })
      await tableEl.getByText('sqlite: items').waitFor()
      const row = await tableEl.locator('tbody tr').first().innerText()
      expect(row).toMatch(/→ items/)
      expect(row).toMatch(/running/)
      expect(row).toMatch(/\b40\b/) // captured since this start
      await expect.poll(async () => await page.getByRole('heading', { name: 'Connectors (1)' }).count()).toBe(1)
      expect(errors).toEqual([])
    }

    // a removed connector leaves status and /metrics
    expect((await node.request<string>('GET', '/metrics')).body).toContain(`syncmesh_connector_captured_total{${labels}} 40`) // since this start
    expect((await runCli(['connector', 'rm', id, '--data', node.dir])).code).toBe(0)
    expect((await node.status()).connectors).toEqual([])
    const gone = (await node.request<string>('GET', '/metrics')).body
    expect(gone).not.toContain(`connector="${id}"`)
    expect((await runCli(['status', '--data', node.dir])).stdout).not.toContain('CONNECTORS')
  }, 180_000)
})
