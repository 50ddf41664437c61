/**
 * The rule engine across real `syncmesh start` processes on 127.0.0.1
 * (port 0, temp dirs), driven through the CLI and the HTTP API: a region
 * target with a filter and per-record targeting, a tag target in insert-only
 * mode with a key field (then removed), a chain relayed through a third node, a mirror that removes what its source lacks and refuses local
 * writes, a transform module (one record failing), a webhook, a conflict, a
 * dry run (with rule streams on the source, refused on a target), a rule
 * update re-evaluating the source through the chain, the changes feed, and a
 * restart.
 */
import { createHmac } from 'node:crypto'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { NodeProcess, runCli, tempDir, waitFor } from '../../scripts/lib/cluster.js'

const KEY = '9c1e7a5b3d2f4e6a8b0c1d3e5f7a9b2c4d'
const NO_DISCOVERY = ['--target-peers', '0']
const SECRET = 'e2e-webhook-secret-0123456789'

interface Json { [k: string]: any }

/** NDJSON lines of a response body (NodeProcess.request parses a single-line body as JSON). */
function ndjson (body: unknown): Json[] {
  const text = typeof body === 'string' ? body : JSON.stringify(body)
  return text.trim() === '' ? [] : text.trim().split('\n').map(l => JSON.parse(l) as Json)
}

describe('the rule engine across real node processes', () => {
  const procs: NodeProcess[] = []
  let parent = ''
  afterAll(async () => {
    await Promise.all(procs.map(async p => await p.kill()))
    if (parent !== '') await rm(parent, { recursive: true, force: true })
  })

  it('region, tag and per-record targets, insert-only with a key, chains, mirror, transforms, webhooks, conflicts, dry run, update, removal, changes feed', async () => {
    parent = await tempDir()
    const hub = await NodeProcess.create('hub', KEY, { parent, region: 'core' })
    const eu1 = await NodeProcess.create('eu1', KEY, { parent, region: 'eu' })
    const eu2 = await NodeProcess.create('eu2', KEY, { parent, region: 'eu' })
    const us1 = await NodeProcess.create('us1', KEY, { parent, region: 'us' })
    procs.push(hub, eu1, eu2, us1)
    // eu2's transform module, in its data directory's transforms/
    await mkdir(join(eu2.dir, 'transforms'))
    await writeFile(join(eu2.dir, 'transforms', 'stamp.mjs'), `
      export default function (record, context) {
        if (record.value.title === 'boom') throw new Error('cannot stamp ' + record.id)
        return { ...record.value, stampedBy: context.target.platform }
      }`)
    // webhook receiver
    const hooks: Array<{ signature: string | undefined, body: string }> = []
    const server = createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        hooks.push({ signature: req.headers['x-syncmesh-signature-256'] as string | undefined, body: Buffer.concat(chunks).toString('utf8') })
        res.writeHead(204).end()
      })
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    const hookUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/syncmesh`
    // eu2 may POST to the receiver (a loopback address) and holds the secret the rule names
    const eu2Config = JSON.parse(await readFile(join(eu2.dir, 'config.json'), 'utf8')) as Json
    eu2Config.webhooks = { allow: [`127.0.0.1:${(server.address() as AddressInfo).port}`], secrets: { stamped: SECRET } }
    await writeFile(join(eu2.dir, 'config.json'), JSON.stringify(eu2Config))

    try {
      const cli = async (node: NodeProcess, args: string[]): Promise<Json> => {
        const r = await runCli([...args, '--data', node.dir, '--json'])
        expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0)
        return JSON.parse(r.stdout) as Json
      }
      for (const n of [hub, eu1, eu2, us1]) await n.start(NO_DISCOVERY)
      for (const n of [eu1, eu2, us1]) await n.addPeer(hub.multiaddr) // a star: everything between leaves goes through the hub
      await us1.put('pages', 'stray', { local: 'before the mirror' })
      await eu2.put('tagged', 'one', { local: 'kept by insert-only' })
      // tag eu2 (platform add overwrites its registry entry; the node keeps the tag when it re-registers)
      await cli(hub, ['platform', 'add', 'eu2', '--peer', eu2.peerId, '--region', 'eu', '--tag', 'edge'])

      await hub.knows(['eu1', 'eu2', 'us1'])
      const regional = await cli(hub, ['rule', 'add', '--from', 'hub:posts', '--to', 'region=eu:posts', '--where', '{"status":"published"}', '--targets-field', 'only'])
      const chain = await cli(hub, ['rule', 'add', '--from', 'eu1:posts', '--to', 'us1:copies', '--rename', 'title=headline'])
      const mirror = await cli(hub, ['rule', 'add', '--from', 'hub:pages', '--to', 'us1:pages', '--mode', 'mirror'])
      const stamped = await cli(hub, ['rule', 'add', '--from', 'hub:posts', '--to', 'eu2:stamped', '--transform', 'stamp.mjs', '--webhook', hookUrl, '--webhook-secret-ref', 'stamped'])
      const tagged = await cli(hub, ['rule', 'add', '--from', 'hub:posts', '--to', 'tag=edge:tagged', '--mode', 'insert-only', '--key', 'title', '--include', 'status'])
      expect(regional.to).toEqual({ region: 'eu', collection: 'posts' })
      expect(stamped.webhook).toEqual({ url: hookUrl, secretRef: 'stamped' })

      await hub.importNdjson('posts', [
        { id: 'p1', value: { title: 'one', status: 'published' } },
        { id: 'p2', value: { title: 'two', status: 'draft' } },
        { id: 'p3', value: { title: 'three', status: 'published', only: ['eu2'] } },
        { id: 'p4', value: { title: 'boom', status: 'published' } }
      ].map(l => JSON.stringify(l)).join('\n') + '\n')
      await hub.put('pages', 'a', { body: 'A' })
      await hub.put('pages', 'b', { body: 'B' })

      // region target with filter and per-record targeting
      await waitFor(async () => (await eu1.count('posts')) === 2 && (await eu2.count('posts')) === 3, 'the eu platforms to get their posts')
      expect([...(await eu1.all('posts')).keys()].sort()).toEqual(['p1', 'p4'])
      expect([...(await eu2.all('posts')).keys()].sort()).toEqual(['p1', 'p3', 'p4'])
      expect(await us1.count('posts')).toBe(0)
      // chain: what the regional rule wrote into eu1:posts flows on to us1 (relayed by the hub)
      await waitFor(async () => (await us1.count('copies')) === 2, 'the chain eu1:posts → us1:copies')
      expect(await us1.get('copies', 'p1')).toEqual({ headline: 'one', status: 'published' })
      // mirror: the stray local record is gone, local writes are refused
      await waitFor(async () => [...(await us1.all('pages')).keys()].sort().join() === 'a,b', 'us1:pages to mirror hub:pages')
      const refused = await runCli(['put', 'pages', 'x', '{"mine":true}', '--data', us1.dir])
      expect(refused.code).toBe(1)
      expect(refused.stderr).toMatch(/^error \[MIRROR_TARGET_READ_ONLY\]: .*hub:pages/)
      // transform module: p4 fails and is reported, the others are stamped
      await waitFor(async () => (await eu2.count('stamped')) === 3, 'eu2:stamped')
      expect(await eu2.get('stamped', 'p2')).toEqual({ title: 'two', status: 'draft', stampedBy: 'eu2' })
      const eu2Rule = ((await eu2.status()).rules as Json[]).find(r => r.id === stamped.id) as Json
      expect(eu2Rule).toMatchObject({ local: true, transformErrors: 1, lastTransformError: { id: 'p4', error: 'cannot stamp p4' } })
      // webhook: every stamped record, signed
      await waitFor(() => hooks.length >= 3, 'three webhook deliveries')
      for (const h of hooks) expect(h.signature).toBe('sha256=' + createHmac('sha256', SECRET).update(h.body).digest('hex'))
      expect(hooks.map(h => JSON.parse(h.body).change.id).sort()).toEqual(['p1', 'p2', 'p3'])

      // conflict: a local edit on eu1, then a newer write at the hub wins
      await eu1.put('posts', 'p1', { title: 'edited on eu1' })
      await hub.put('posts', 'p1', { title: 'one, edited at the hub', status: 'published' })
      await waitFor(async () => (await eu1.get('posts', 'p1'))?.title === 'one, edited at the hub', 'the hub write to win on eu1')
      const conflicts = await eu1.request<Json>('GET', `/v1/rules/${regional.id as string}/conflicts`)
      expect(conflicts.status).toBe(200)
      expect(conflicts.body.total).toBe(2)
      expect(conflicts.body.conflicts[0]).toMatchObject({ id: 'p1', kind: 'local-write', winner: 'incoming', existing: { local: true, value: { title: 'edited on eu1' } }, incoming: { platform: 'hub' } })
      expect(((await eu1.status()).rules as Json[]).find(r => r.id === regional.id)?.conflicts).toBe(2)

      // dry run: exact on the target, an estimate elsewhere; nothing written
      if ((await hub.status()).streams === true) {
        // with rule streams only the source holds the records the rule reads: on a target it is refused, naming
        // the source, and on the source it counts what each target would get
        const onTarget = await runCli(['rule', 'update', regional.id, '--unset', 'where', '--dry-run', '--data', eu1.dir])
        expect(onTarget.code).toBe(1)
        expect(onTarget.stderr).toMatch(/^error \[DRY_RUN_UNAVAILABLE\]: .*on its source, hub/)
        const dry = await cli(hub, ['rule', 'update', regional.id, '--unset', 'where', '--dry-run'])
        expect(dry.targets.find((t: Json) => t.platform === 'eu1')).toMatchObject({ exact: false, matching: 3 })
        expect(dry.targets.find((t: Json) => t.platform === 'eu2')).toMatchObject({ exact: false, matching: 4 })
      } else {
        const dry = await cli(eu1, ['rule', 'update', regional.id, '--unset', 'where', '--dry-run'])
        expect(dry.targets.find((t: Json) => t.platform === 'eu1')).toMatchObject({ exact: true, creates: 1, matching: 3 })
        expect(dry.targets.find((t: Json) => t.platform === 'eu2')).toMatchObject({ exact: false, matching: 4 })
      }
      expect(await eu1.count('posts')).toBe(2)
      // the update: the drafts arrive on both eu platforms, and on through the chain
      const updated = await cli(hub, ['rule', 'update', regional.id, '--unset', 'where'])
      expect(updated.where).toBeUndefined()
      await waitFor(async () => (await eu1.count('posts')) === 3 && (await us1.count('copies')) === 3, 'the re-evaluated drafts on eu1 and through the chain')

      // tag target, insert-only, key field: records keyed by title; the local "one" is not overwritten
      // (p1's title changed at the hub above: with the title as key that is another record; insert-only never deletes)
      await waitFor(async () => (await eu2.count('tagged')) === 5, 'eu2:tagged')
      expect(Object.fromEntries(await eu2.all('tagged'))).toEqual({
        one: { local: 'kept by insert-only' }, 'one, edited at the hub': { status: 'published' }, two: { status: 'draft' }, three: { status: 'published' }, boom: { status: 'published' }
      })
      expect(await eu1.count('tagged')).toBe(0)
      // removing a rule stops it at once, leaving what it wrote
      const removed = await runCli(['rule', 'rm', tagged.id, '--data', hub.dir])
      expect(removed.code, removed.stderr).toBe(0)
      await waitFor(async () => !((await eu2.request<Json[]>('GET', '/v1/rules')).body).some(r => r.id === tagged.id), 'the removal to reach eu2')
      await hub.put('posts', 'p5', { title: 'five', status: 'published' })
      await waitFor(async () => (await eu2.get('posts', 'p5')) !== undefined, 'p5 on eu2')
      expect(await eu2.count('tagged')).toBe(5)

      // the changes feed of eu1: resumable NDJSON
      const feed = await eu1.request('GET', '/v1/changes?collection=posts')
      expect(feed.status).toBe(200)
      const lines = ndjson(feed.body)
      expect(lines.map(l => l.id).sort()).toEqual(['p1', 'p2', 'p4', 'p5'])
      expect(lines.every(l => l.type === 'change' && /^\d+$/.test(l.cursor))).toBe(true)
      const after = await eu1.request('GET', `/v1/changes?collection=posts&since=${lines[1].cursor as string}`)
      expect(ndjson(after.body).map(l => l.id)).toEqual(lines.slice(2).map(l => l.id))
      const viaCli = await runCli(['changes', '--collection', 'posts', '--since', lines[0].cursor, '--data', eu1.dir])
      expect(viaCli.code, viaCli.stderr).toBe(0)
      expect(ndjson(viaCli.stdout).map(l => l.cursor)).toEqual(lines.slice(1).map(l => l.cursor))
      const shown = await runCli(['rule', 'show', stamped.id, '--data', eu2.dir])
      expect(shown.code, shown.stderr).toBe(0)
      expect(shown.stdout).toMatch(/transform errors 1/)
      expect(shown.stdout).toMatch(/p4: cannot stamp p4/)
      const status = await runCli(['status', '--data', eu1.dir])
      expect(status.stdout).toMatch(/CONFLICTS/)

      // after a restart the mirror still refuses and everything is there
      await us1.stop()
      await us1.start(NO_DISCOVERY)
      expect([...(await us1.all('pages')).keys()].sort()).toEqual(['a', 'b'])
      const again = await us1.request<Json>('PUT', '/v1/collections/pages/records/x', { mine: true })
      expect(again.status).toBe(409)
      expect(again.body.error.code).toBe('MIRROR_TARGET_READ_ONLY')
      expect(chain.mode).toBe('merge')
      expect(mirror.mode).toBe('mirror')
    } finally {
      server.close()
    }
  }, 180_000)
})
