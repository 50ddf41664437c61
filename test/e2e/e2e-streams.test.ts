/**
 * Rule streams (EXPERIMENTAL, protocols/sync/streams.md) across three real
 * `syncmesh start` processes on 127.0.0.1 (port 0, temp dirs), driven through
 * the CLI and the HTTP API. alpha is the source, beta the target, gamma the
 * relay between them: discovery is off (--target-peers 0) and beta's only
 * link is gamma, so whatever beta gets from alpha went through gamma.
 *
 * The rule alpha:posts → beta:posts sends published posts without their
 * `secret` field. Every title, body, secret and id carries a marker: beta
 * must hold exactly the published posts without `secret`, and nothing of a
 * draft or a secret anywhere on its disk; gamma, outside the rule's targets,
 * must hold none of the posts in readable form, neither in any file of its
 * data directory nor in any key or value of its LevelDB (table files are
 * compressed, so the test reads the database itself, from a copy, with the
 * node stopped). Then beta is stopped while alpha writes more, and catches
 * up through gamma when it is back; then once more with alpha stopped before
 * beta is back, so that all it gets comes from gamma's copy.
 */
import { randomBytes } from 'node:crypto'
import { cp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Level } from 'level'
import { afterAll, describe, expect, it } from 'vitest'
import { createSyncNode } from '../../src/node/node.js'
import { NodeProcess, runCli, tempDir, waitFor } from '../../scripts/lib/cluster.js'

const KEY = '5e0b7c2a9d4f1e8c3b6a0d5f2e9c7b1a4d'
const NO_DISCOVERY = ['--target-peers', '0']
/** Unique to this run, so that a marker found on disk cannot come from anything but this test's writes. */
const RUN = randomBytes(6).toString('hex')

interface Json { [k: string]: any }

/** Markers of one post, by what may be seen where. */
function post (i: number, published: boolean): { id: string, value: Json } {
  const kind = published ? 'PUB' : 'DRAFT'
  return {
    id: `${kind.toLowerCase()}id${RUN}x${i}`,
    value: { title: `${kind}TITLE${RUN}x${i}`, status: published ? 'published' : 'draft', body: `${kind}BODY${RUN}x${i}`, secret: `SECRET${RUN}x${i}` }
  }
}

/** What beta must hold for the published posts: the values without `secret`. */
function sent (value: Json): Json {
  const { secret, ...rest } = value
  return rest
}

/** Every file under `dir`, as latin1 text (LevelDB tables, the manifest, config, keys). */
async function filesText (dir: string): Promise<string> {
  let text = ''
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue
    text += (await readFile(join(entry.parentPath, entry.name))).toString('latin1') + '\n'
  }
  return text
}

/**
 * Every key and value of a stopped node's LevelDB, decompressed, as latin1
 * text. LevelDB has no read-only mode (opening may write a new manifest), so
 * this opens a copy: the node's directory is left as it was.
 */
async function dbText (dataDir: string, scratch: string): Promise<{ text: string, keys: number }> {
  const copy = join(scratch, `db-copy-${randomBytes(4).toString('hex')}`)
  await cp(join(dataDir, 'db'), copy, { recursive: true })
  const db = new Level<Buffer, Buffer>(copy, { createIfMissing: false, keyEncoding: 'buffer', valueEncoding: 'buffer' })
  await db.open()
  const parts: string[] = []
  let keys = 0
  try {
    for await (const [key, value] of db.iterator()) {
      parts.push(key.toString('latin1'), value.toString('latin1'))
      keys++
    }
  } finally {
    await db.close()
    await rm(copy, { recursive: true, force: true })
  }
  return { text: parts.join('\n'), keys }
}

/** Each kind of marker found in `text`, with what surrounds its first match (so a failure shows where the leak is). */
function leaks (text: string, kinds: Record<string, RegExp>): string[] {
  const found: string[] = []
  for (const [kind, pattern] of Object.entries(kinds)) {
    const m = pattern.exec(text)
    if (m !== null) found.push(`${kind}: ${m[0]} in …${text.slice(Math.max(0, m.index - 120), m.index + 60)}…`)
  }
  return found
}

describe('rule streams across three real node processes', () => {
  const procs: NodeProcess[] = []
  let parent = ''
  afterAll(async () => {
    for (const p of procs) await p.kill()
    if (parent !== '') await rm(parent, { recursive: true, force: true })
  })

  it('beta gets only the published posts without their secret, through gamma, which holds none of it readable; beta catches up through gamma after a restart, also with alpha gone', async () => {
    parent = await tempDir()
    const alpha = await NodeProcess.create('alpha', KEY, { parent })
    const gamma = await NodeProcess.create('gamma', KEY, { parent })
    const beta = await NodeProcess.create('beta', KEY, { parent })
    procs.push(alpha, gamma, beta)
    // alpha and gamma take rule streams from config.json, beta from the flag
    for (const n of [alpha, gamma]) {
      const config = JSON.parse(await readFile(join(n.dir, 'config.json'), 'utf8')) as Json
      await writeFile(join(n.dir, 'config.json'), JSON.stringify({ ...config, streams: true }))
    }
    const betaArgs = [...NO_DISCOVERY, '--streams']
    await alpha.start(NO_DISCOVERY)
    await gamma.start(NO_DISCOVERY)
    await beta.start(betaArgs)
    for (const n of [alpha, gamma, beta]) expect((await n.status()).streams, n.name).toBe(true)
    const text = await runCli(['status', '--data', beta.dir])
    expect(text.code, text.stderr).toBe(0)
    expect(text.stdout).toMatch(/carried by rule streams/)

    // the links: alpha — gamma — beta, and no other
    await gamma.addPeer(alpha.multiaddr)
    await beta.addPeer(gamma.multiaddr)
    for (const n of [alpha, gamma, beta]) await n.knows(['alpha', 'gamma', 'beta'])
    const noDirectLink = async (): Promise<void> => {
      const [fromAlpha, fromBeta] = await Promise.all([alpha.request<Json[]>('GET', '/v1/peers'), beta.request<Json[]>('GET', '/v1/peers')])
      expect(fromAlpha.body.filter(p => p.peerId === beta.peerId && p.connected === true)).toEqual([])
      expect(fromBeta.body.filter(p => p.peerId === alpha.peerId && p.connected === true)).toEqual([])
    }

    // gamma's own record: the scans below must find it, or they could not find anything (letters that nothing
    // else on gamma holds: LevelDB compresses its tables, and a piece seen before is stored as a reference to it)
    const gammaOwn = 'GAMMAOWNQZXJVKWY'
    await gamma.put('notes', 'own', { text: gammaOwn })

    const all = new Map<string, Json>()
    const write = async (from: number, to: number): Promise<void> => {
      for (let i = from; i < to; i++) {
        const p = post(i, i % 2 === 0)
        await alpha.put('posts', p.id, p.value)
        all.set(p.id, p.value)
      }
    }
    const expected = (): Json => Object.fromEntries([...all].filter(([, v]) => v.status === 'published').map(([id, v]) => [id, sent(v)]))
    // written before the rule exists: alpha fills the rule's stream from its records
    await write(0, 12)
    const rule = await runCli(['rule', 'add', '--from', 'alpha:posts', '--to', 'beta:posts', '--where', '{"status":"published"}', '--exclude', 'secret', '--data', alpha.dir, '--json'])
    expect(rule.code, rule.stderr).toBe(0)
    expect(JSON.parse(rule.stdout)).toMatchObject({ from: { platform: 'alpha', collection: 'posts' }, to: { platform: 'beta', collection: 'posts' }, exclude: ['secret'] })
    await write(12, 24)
    await waitFor(async () => (await beta.count('posts')) === Object.keys(expected()).length, 'beta to hold the published posts', 90_000)
    expect(Object.fromEntries(await beta.all('posts'))).toEqual(expected())
    expect(await gamma.count('posts')).toBe(0)
    // gamma relayed alpha's rule stream (beta has no other way to alpha) and holds it; each node's status says its part
    const streamAt = async (n: NodeProcess): Promise<Json | undefined> => ((await n.status()).origins as Json[]).find(o => String(o.origin).startsWith(`${alpha.peerId}/r.`))
    const stream = await streamAt(gamma)
    expect(stream?.seq).toBeGreaterThanOrEqual(Object.keys(expected()).length)
    const ruleId = JSON.parse(rule.stdout).id as string
    expect(stream?.stream).toEqual({ rule: ruleId, role: 'relay' })
    expect((await streamAt(beta))?.stream).toEqual({ rule: ruleId, role: 'target' })
    expect((await streamAt(alpha))?.stream).toEqual({ rule: ruleId, role: 'source' })
    await noDirectLink()

    // offline catch-up, two hops: beta stopped while alpha writes more (new posts, a published one changed)
    expect(await beta.stop()).toBe(0)
    await write(24, 40)
    const changed = post(2, true)
    changed.value = { ...changed.value, body: `PUBBODY${RUN}changed` }
    await alpha.put('posts', changed.id, changed.value)
    all.set(changed.id, changed.value)
    await beta.start(betaArgs)
    expect((await beta.status()).streams).toBe(true)
    await waitFor(async () => {
      expect(Object.fromEntries(await beta.all('posts'))).toEqual(expected())
      return true
    }, 'beta to catch up through gamma', 90_000)
    expect(await beta.get('posts', changed.id)).toEqual(sent(changed.value))
    expect(await gamma.count('posts')).toBe(0)
    await noDirectLink()

    // and from gamma's copy alone: beta stopped, alpha writes, gamma holds all of alpha's stream, alpha stops
    expect(await beta.stop()).toBe(0)
    await write(40, 50)
    const streamSeq = async (n: NodeProcess): Promise<number | undefined> => (await streamAt(n))?.seq
    await waitFor(async () => {
      const [atAlpha, atGamma] = await Promise.all([streamSeq(alpha), streamSeq(gamma)])
      return atAlpha !== undefined && atGamma === atAlpha
    }, 'gamma to hold all of alpha\'s stream', 60_000)
    expect(await alpha.stop()).toBe(0)
    await beta.start(betaArgs)
    await waitFor(async () => {
      expect(Object.fromEntries(await beta.all('posts'))).toEqual(expected())
      return true
    }, 'beta to catch up from gamma with alpha stopped', 90_000)
    expect(((await beta.request<Json[]>('GET', '/v1/peers')).body).filter(p => p.connected === true).map(p => p.peerId)).toEqual([gamma.peerId])

    // the disks, with the nodes stopped (a stopped node's db/ holds tables only)
    for (const n of [gamma, beta]) expect(await n.stop(), `${n.name} exit code`).toBe(0)
    const ofPublished = { 'published title': new RegExp(`PUBTITLE${RUN}`), 'published body': new RegExp(`PUBBODY${RUN}`), 'published id': new RegExp(`pubid${RUN}`) }
    const keptBack = { 'draft title': new RegExp(`DRAFTTITLE${RUN}`), 'draft body': new RegExp(`DRAFTBODY${RUN}`), 'draft id': new RegExp(`draftid${RUN}`), secret: new RegExp(`SECRET${RUN}`) }
    const gammaFiles = await filesText(gamma.dir)
    const gammaDb = await dbText(gamma.dir, parent)
    expect(gammaDb.keys).toBeGreaterThan(0)
    expect(gammaDb.text).toContain(gammaOwn)
    expect(gammaFiles).toContain(gammaOwn)
    expect(leaks(gammaFiles, { ...ofPublished, ...keptBack }), 'posts in the files of gamma').toEqual([])
    expect(leaks(gammaDb.text, { ...ofPublished, ...keptBack }), 'posts in gamma\'s LevelDB').toEqual([])
    const betaFiles = await filesText(beta.dir)
    const betaDb = await dbText(beta.dir, parent)
    // what beta holds is found by the same scans (its published posts), what the rule keeps back is not
    expect(betaDb.text).toContain(`PUBTITLE${RUN}x0`)
    expect(leaks(betaFiles, keptBack), 'drafts or secrets in the files of beta').toEqual([])
    expect(leaks(betaDb.text, keptBack), 'drafts or secrets in beta\'s LevelDB').toEqual([])
  }, 360_000)

  it('config "streams", the --streams flag and the library option: the flag and the option win over the config', async () => {
    const dir = await tempDir()
    try {
      const node = await NodeProcess.create('solo', KEY, { parent: dir })
      procs.push(node)
      // a config field of the wrong type stops the start with a message naming it
      const config = JSON.parse(await readFile(join(node.dir, 'config.json'), 'utf8')) as Json
      await writeFile(join(node.dir, 'config.json'), JSON.stringify({ ...config, streams: 'yes' }))
      await expect(node.start(NO_DISCOVERY)).rejects.toThrow(/config\.json: streams: /)
      // absent from the config (and SYNCMESH_STREAMS unset): off
      const unset = { SYNCMESH_STREAMS: undefined }
      await writeFile(join(node.dir, 'config.json'), JSON.stringify(config))
      await node.start(NO_DISCOVERY, { env: unset })
      expect((await node.status()).streams).toBe(false)
      const text = await runCli(['status', '--data', node.dir], { env: unset })
      expect(text.code, text.stderr).toBe(0)
      expect(text.stdout).toMatch(/^node +solo/m)
      expect(text.stdout).not.toMatch(/rule streams/)
      await node.stop()
      // absent from the config, SYNCMESH_STREAMS decides
      await node.start(NO_DISCOVERY, { env: { SYNCMESH_STREAMS: '1' } })
      expect((await node.status()).streams, 'SYNCMESH_STREAMS=1, no flag, no config').toBe(true)
      await node.stop()
      await writeFile(join(node.dir, 'config.json'), JSON.stringify({ ...config, streams: false }))
      await node.start([...NO_DISCOVERY, '--streams'])
      expect((await node.status()).streams, 'the flag over config "streams": false').toBe(true)
      await node.stop()
      // the library option wins over config.json
      await writeFile(join(node.dir, 'config.json'), JSON.stringify({ ...config, streams: true }))
      for (const streams of [false, true, undefined]) {
        const lib = await createSyncNode({ dataDir: node.dir, key: KEY, listen: ['/ip4/127.0.0.1/tcp/0'], targetConnections: 0, ...(streams !== undefined ? { streams } : {}) })
        await lib.start()
        try {
          expect((await lib.status()).streams, `option ${String(streams)}`).toBe(streams ?? true)
        } finally {
          await lib.stop()
        }
      }
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  }, 120_000)
})
