/**
 * Make a data-directory fixture with a given release of syncmesh: two nodes,
 * made and run by THAT release's CLI, with everything a data directory holds,
 * packed for test/e2e/upgrade.test.ts, which opens it with the current release.
 *
 *   npm run build
 *   node dist/scripts/make-fixture.js --cli /path/to/release/dist/src/cli/bin.cjs --out test/fixtures/data-format-N
 *
 * The release's own build is needed (its `npm run build`), e.g. for the
 * release before data formats were recorded (format 1):
 *
 *   git archive 84937b5 | tar -x -C /tmp/rel-84937b5
 *   ln -s "$PWD/node_modules" /tmp/rel-84937b5/node_modules
 *   (cd /tmp/rel-84937b5 && npm run build)
 *   node dist/scripts/make-fixture.js --cli /tmp/rel-84937b5/dist/src/cli/bin.cjs --out test/fixtures/data-format-1
 *
 * What it makes, in OUT/data.tar.gz (directories hub/ and edge/, each with
 * its mesh.key):
 *   - hub (region eu) and edge, connected to each other with `peer add`
 *     (a persisted peer on each);
 *   - hub: notes n1 n3 (n2 written then deleted), tasks t1 t2 (t1 updated);
 *   - edge: posts p1 p2 (p3 written then deleted): hub holds edge's log,
 *     with its run certificates;
 *   - a platform "archive" registered by hand (peer id, region, address, tag);
 *   - a rule edge:posts → hub:inbox with a filter, a rename and a transform
 *     module (hub/transforms/upper.js), applied on hub;
 * and OUT/expected.json: what the release itself answered for each node
 * (identity, records with their versions, deleted ids, platforms, rules,
 * persisted peers, the version vector), for the test to compare against.
 */
import { execFile } from 'node:child_process'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { NodeProcess, runCli, tempDir, useCli, waitFor } from './lib/cluster.js'

const KEY = 'fixture-mesh-key-0123456789abcdef0123456789abcdef'
const COLLECTIONS = ['notes', 'tasks', 'posts', 'inbox']

function arg (name: string): string {
  const i = process.argv.indexOf(name)
  const v = i >= 0 ? process.argv[i + 1] : undefined
  if (v === undefined) throw new Error(`missing ${name}; usage: node dist/scripts/make-fixture.js --cli RELEASE/dist/src/cli/bin.cjs --out DIR`)
  return v
}

async function cli (node: NodeProcess, args: string[]): Promise<string> {
  const r = await runCli([...args, '--data', node.dir])
  if (r.code !== 0) throw new Error(`syncmesh ${args.join(' ')} on ${node.name} failed (${r.code}): ${r.stderr}`)
  return r.stdout.trim()
}

interface Snapshot {
  peerId: string
  name: string
  records: Record<string, Array<{ id: string, value: unknown, version: unknown }>>
  deleted: Record<string, string[]>
  platforms: unknown[]
  rules: unknown[]
  peers: Array<{ peerId: string, addrs: string[] }>
  vector: Record<string, number>
}

async function snapshot (node: NodeProcess, deleted: Record<string, string[]>): Promise<Snapshot> {
  const records: Snapshot['records'] = {}
  for (const c of COLLECTIONS) {
    const r = await node.request<{ records: Array<{ id: string, value: unknown, version: unknown }> }>('GET', `/v1/collections/${c}/records?limit=1000`)
    records[c] = r.body.records.map(x => ({ id: x.id, value: x.value, version: x.version }))
  }
  const status = await node.status()
  const peers = (await node.request<Array<{ peerId: string, addrs: string[], persisted: boolean }>>('GET', '/v1/peers')).body
  return {
    peerId: node.peerId,
    name: node.name,
    records,
    deleted,
    platforms: (await node.request<unknown[]>('GET', '/v1/platforms')).body,
    rules: (await node.request<unknown[]>('GET', '/v1/rules')).body,
    peers: peers.filter(p => p.persisted).map(p => ({ peerId: p.peerId, addrs: p.addrs })),
    vector: Object.fromEntries((status.origins as Array<{ origin: string, seq: number }>).map(o => [o.origin, o.seq]))
  }
}

async function main (): Promise<void> {
  const release = resolve(arg('--cli'))
  const out = resolve(arg('--out'))
  useCli(release)
  const version = (await runCli(['--version'])).stdout.trim()
  const parent = await tempDir('syncmesh-fixture-')
  const hub = await NodeProcess.create('hub', KEY, { parent, region: 'eu' })
  const edge = await NodeProcess.create('edge', KEY, { parent })
  try {
    for (const n of [hub, edge]) await writeFile(join(n.dir, 'mesh.key'), KEY + '\n', { mode: 0o600 })
    await mkdir(join(hub.dir, 'transforms'), { mode: 0o700 })
    await writeFile(join(hub.dir, 'transforms', 'upper.js'), 'export default function (record) {\n  return { ...record.value, heading: String(record.value.heading ?? \'\').toUpperCase() }\n}\n')
    await hub.start()
    await edge.start()
    await cli(hub, ['peer', 'add', edge.multiaddr])
    await cli(edge, ['peer', 'add', hub.multiaddr])
    await waitFor(async () => (await hub.request<unknown[]>('GET', '/v1/platforms')).body.length >= 2 && (await edge.request<unknown[]>('GET', '/v1/platforms')).body.length >= 2, 'both nodes registered')

    await cli(hub, ['put', 'notes', 'n1', '{"text":"first","n":1}'])
    await cli(hub, ['put', 'notes', 'n2', '{"text":"second","n":2}'])
    await cli(hub, ['put', 'notes', 'n3', '{"text":"third","n":3,"nested":{"a":[1,2,{"b":null}]}}'])
    await cli(hub, ['del', 'notes', 'n2'])
    await cli(hub, ['put', 'tasks', 't1', '{"done":false}'])
    await cli(hub, ['put', 'tasks', 't2', '{"done":true,"title":"ünïcödé ✓"}'])
    await cli(hub, ['put', 'tasks', 't1', '{"done":true}'])
    const archive = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    await cli(hub, ['platform', 'add', 'archive', '--peer', archive, '--region', 'us', '--addr', '/ip4/127.0.0.1/tcp/4999', '--tag', 'cold'])
    const ruleId = await cli(hub, ['rule', 'add', '--from', 'edge:posts', '--to', 'hub:inbox', '--where', '{"kind":"a"}', '--rename', 'title=heading', '--exclude', 'draft', '--transform', 'upper.js'])
    await waitFor(async () => (await edge.request<unknown[]>('GET', '/v1/rules')).body.length === 1, 'the rule reached edge')
    await cli(edge, ['put', 'posts', 'p1', '{"kind":"a","title":"hello","draft":"x"}'])
    await cli(edge, ['put', 'posts', 'p2', '{"kind":"b","title":"not copied"}'])
    await cli(edge, ['put', 'posts', 'p3', '{"kind":"a","title":"gone"}'])
    await cli(edge, ['del', 'posts', 'p3'])
    await waitFor(async () => {
      const [a, b] = [await hub.status(), await edge.status()]
      const inbox = (await hub.request<{ records: unknown[] }>('GET', '/v1/collections/inbox/records')).body.records
      return a.caughtUp === true && b.caughtUp === true && a.origins.length === 2 && b.origins.length === 2 && inbox.length === 1 &&
        JSON.stringify(a.origins.map((o: { seq: number }) => o.seq)) === JSON.stringify(b.origins.map((o: { seq: number }) => o.seq))
    }, 'both nodes caught up, the rule applied on hub')
    const deleted = { hub: { notes: ['n2'], posts: ['p3'], inbox: ['p3', 'p2'] }, edge: { notes: ['n2'], posts: ['p3'] } }
    const expected = { release: version, ruleId, hub: await snapshot(hub, deleted.hub), edge: await snapshot(edge, deleted.edge) }
    await hub.stop()
    await edge.stop()
    for (const n of [hub, edge]) await rm(join(n.dir, 'api.json'), { force: true })

    await rm(out, { recursive: true, force: true })
    await mkdir(out, { recursive: true })
    await promisify(execFile)('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '-czf', join(out, 'data.tar.gz'), '-C', parent, 'hub', 'edge'])
    await writeFile(join(out, 'expected.json'), JSON.stringify(expected, null, 2) + '\n')
    process.stdout.write(`fixture made by syncmesh ${version} (${release}) in ${out}\n`)
  } finally {
    await hub.kill().catch(() => {})
    await edge.kill().catch(() => {})
    await rm(parent, { recursive: true, force: true })
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`make-fixture failed: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
