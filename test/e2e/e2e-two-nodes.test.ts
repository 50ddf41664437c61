/**
 * Two real `syncmesh start` processes on
 * 127.0.0.1 (port 0) in temp dirs, driven through the CLI and the HTTP API.
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { makeNdjson, NodeProcess, runCli, tempDir, waitFor } from '../../scripts/lib/cluster.js'

const KEY = 'a7f3c9e1b5d2f8a4c6e0b9d7f1a3c5e8'
const WRONG = 'ffffffffffffffffffffffffffffffff00'

describe('two real node processes', () => {
  const procs: NodeProcess[] = []
  afterAll(async () => {
    for (const p of procs) await p.cleanup()
  })

  it('syncs by rule, survives restarts, and keeps a wrong-key node out', async () => {
    const parent = await tempDir()
    const a = await NodeProcess.create('A', KEY, { parent })
    const b = await NodeProcess.create('B', KEY, { parent })
    const c = await NodeProcess.create('C', WRONG, { parent })
    procs.push(a, b, c)
    await a.start()
    await b.start()

    // B adds A by multiaddr, through the CLI
    const added = await runCli(['peer', 'add', a.multiaddr, '--data', b.dir, '--json'])
    expect(added.code, added.stderr).toBe(0)
    expect(JSON.parse(added.stdout).peerId).toBe(a.peerId)

    await a.knows(['B']) // a rule naming a platform the registry lacks is refused
    const rule = await runCli(['rule', 'add', '--from', 'A:posts', '--to', 'B:articles', '--data', a.dir, '--json'])
    expect(rule.code, rule.stderr).toBe(0)
    expect(JSON.parse(rule.stdout).mode).toBe('merge')

    // 1000 records imported on A all reach B with identical values
    const file = join(parent, 'posts.ndjson')
    await writeFile(file, makeNdjson(1000, 'p'))
    const t0 = performance.now()
    const imp = await runCli(['import', 'posts', file, '--data', a.dir, '--json'])
    expect(imp.code, imp.stderr).toBe(0)
    expect(JSON.parse(imp.stdout).imported).toBe(1000)
    await waitFor(async () => await b.count('articles') === 1000, 'B to hold 1000 articles')
    const ms = performance.now() - t0
    console.log(`[measure] 1000-record import on A until all readable on B: ${ms.toFixed(0)} ms`)
    expect(await b.all('articles')).toEqual(await a.all('posts'))

    // B lists A by its platform name and region, in the API and in the CLI's status
    const bPeers = await b.request<Array<{ peerId: string, platform?: string }>>('GET', '/v1/peers')
    expect(bPeers.body.find(p => p.peerId === a.peerId)?.platform).toBe('A')
    const statusText = await runCli(['status', '--data', b.dir])
    expect(statusText.stdout).toMatch(/^\s+A\s+yes\b/m)

    // an update and a delete on A are reflected on B
    const upd = await runCli(['put', 'posts', 'p00000007', '{"title":"edited"}', '--data', a.dir])
    expect(upd.code, upd.stderr).toBe(0)
    const del = await runCli(['del', 'posts', 'p00000008', '--data', a.dir])
    expect(del.code, del.stderr).toBe(0)
    await waitFor(async () => (await b.get('articles', 'p00000007'))?.title === 'edited', 'the update to reach B')
    await waitFor(async () => await b.get('articles', 'p00000008') === undefined, 'the delete to reach B')
    const gone = await runCli(['get', 'articles', 'p00000008', '--data', b.dir])
    expect(gone.code).toBe(1)

    // B stopped, 500 more written on A, B restarted: B catches up
    expect(await b.stop()).toBe(0)
    // A says at info level that B went away, and keeps it listed with since when
    expect(a.stderr).toMatch(new RegExp(`"level":30.*peer ${b.peerId} connected and proved the mesh key`))
    await waitFor(() => new RegExp(`"level":30.*peer ${b.peerId} disconnected`).test(a.stderr), 'A to log that B disconnected', 10_000)
    const away = (await a.request<Array<{ peerId: string, connected: boolean, disconnectedSince?: string }>>('GET', '/v1/peers')).body.find(p => p.peerId === b.peerId)
    expect(away?.connected).toBe(false)
    expect(Date.parse(away?.disconnectedSince ?? '')).toBeGreaterThan(0)
    expect(await a.importNdjson('posts', makeNdjson(500, 'q'))).toBe(500)
    await b.start()
    await waitFor(async () => await b.count('articles') === 1499, 'B to catch up to 1499 articles')

    // a node with the wrong key learns nothing, while A and B keep syncing
    await c.start()
    const cAdd = await runCli(['peer', 'add', a.multiaddr, '--data', c.dir])
    // the dial itself succeeds; authentication then fails, and peer add says so
    expect(cAdd.code).toBe(1)
    expect(cAdd.stderr).toContain('PEER_KEY_NOT_PROVED')
    await waitFor(() => a.stderr.includes(c.peerId) && /mesh-key authentication failed/.test(a.stderr), 'A to log the wrong-key peer', 10_000)
    await a.put('posts', 'after-c', { title: 'still syncing' })
    await waitFor(async () => (await b.get('articles', 'after-c'))?.title === 'still syncing', 'A and B to keep syncing')
    await new Promise(resolve => setTimeout(resolve, 1500))
    expect(await c.count('articles')).toBe(0)
    expect(await c.count('posts')).toBe(0)
    const cPlatforms = await c.request<Array<{ name: string }>>('GET', '/v1/platforms')
    expect(cPlatforms.body.map(p => p.name)).toEqual(['C'])
    const cRules = await c.request<unknown[]>('GET', '/v1/rules')
    expect(cRules.body).toEqual([])
    const cPeers = await c.request<Array<{ authenticated: boolean }>>('GET', '/v1/peers')
    expect(cPeers.body.every(p => !p.authenticated)).toBe(true)

    // after restarting both, all data is still there
    const before = await b.all('articles')
    await a.stop()
    await b.stop()
    await a.start()
    await b.start()
    expect(await a.count('posts')).toBe(1500)
    expect(await b.all('articles')).toEqual(before)
    expect(before.size).toBe(1500)
  }, 180_000)
})
