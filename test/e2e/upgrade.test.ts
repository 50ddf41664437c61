/**
 * Data directories made by an earlier release, opened by this one (real node
 * processes). The fixtures are made by that release's own CLI:
 * scripts/make-fixture.ts (see docs/upgrading.md).
 */
import { execFile } from 'node:child_process'
import { readdir, readFile, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { isDeepStrictEqual, promisify } from 'node:util'
import { Level } from 'level'
import { afterAll, describe, expect, it } from 'vitest'
import { NodeProcess, ROOT, runCli, tempDir, waitFor } from '../../scripts/lib/cluster.js'
import { CURRENT_FORMAT, FORMAT_KEY } from '../../src/store/format.js'
import { ChangeLog } from '../../src/log/changelog.js'
import { decodeEntry } from '../../src/log/entry.js'
import type { LogEntry } from '../../src/log/entry.js'
import { verifyAttestedRuns } from '../../src/log/signing.js'
import type { AttestedCert } from '../../src/log/signing.js'
import { Store } from '../../src/store/db.js'
import { keys, LOG_TAGS, prefixRange } from '../../src/store/keys.js'

const FIXTURE_1 = join(ROOT, 'test', 'fixtures', 'data-format-1')
const FIXTURE_2 = join(ROOT, 'test', 'fixtures', 'data-format-2')
const FIXTURE_3 = join(ROOT, 'test', 'fixtures', 'data-format-3')
const FIXTURE_4 = join(ROOT, 'test', 'fixtures', 'data-format-4')
const FIXTURE_5 = join(ROOT, 'test', 'fixtures', 'data-format-5')
/** The mesh key the fixture's nodes were made with (their DIR/mesh.key). */
const KEY = 'fixture-mesh-key-0123456789abcdef0123456789abcdef'

interface Snapshot {
  peerId: string
  name: string
  records: Record<string, Array<{ id: string, value: unknown, version: unknown }>>
  deleted: Record<string, string[]>
  platforms: Array<{ name: string, peerId: string, region?: string, tags?: string[] }>
  rules: unknown[]
  peers: Array<{ peerId: string, addrs: string[] }>
  vector: Record<string, number>
}

/** A fixture's expected.json: what its release answered for each node. */
interface Expected { ruleId: string, hub: Snapshot, edge: Snapshot }

/** A fixture unpacked: a node process for each of its data directories (not started), and a pristine copy of them. */
interface Opened { expected: Expected, hub: NodeProcess, edge: NodeProcess, pristine: string }

/**
 * Where another origin's held seq is after the start: `refetched` for a log
 * stored from version 1 batches (the upgrade to data format 4 lowered it to
 * 0, to fetch it again with its origin's attestations), `kept` for a log
 * stored with its origin's attestations (format 4 and later).
 */
type OthersHeld = 'refetched' | 'kept'

async function unpack (fixture: string): Promise<string> {
  const parent = await tempDir('syncmesh-upgrade-')
  await promisify(execFile)('tar', ['-xzf', join(fixture, 'data.tar.gz'), '-C', parent])
  return parent
}

async function dump (path: string): Promise<Array<[string, string]>> {
  const db = new Level<string, Uint8Array>(path, { keyEncoding: 'utf8', valueEncoding: 'view' })
  await db.open()
  try {
    return (await db.iterator().all()).map(([k, v]) => [k, Buffer.from(v).toString('hex')])
  } finally {
    await db.close()
  }
}

async function checkIntact (node: NodeProcess, want: Snapshot, others: Snapshot[], held: OthersHeld): Promise<void> {
  expect(node.peerId).toBe(want.peerId)
  await checkRecords(node, want)
  await checkRest(node, want, others, held)
}

/** Its records as the earlier release left them. */
async function checkRecords (node: NodeProcess, want: Snapshot): Promise<void> {
  for (const [collection, records] of Object.entries(want.records)) {
    const r = await node.request<{ records: Array<{ id: string, value: unknown, version: unknown }> }>('GET', `/v1/collections/${collection}/records?limit=1000`)
    expect(r.body.records.map(x => ({ id: x.id, value: x.value, version: x.version })), collection).toEqual(records)
  }
  for (const [collection, ids] of Object.entries(want.deleted)) {
    for (const id of ids) expect((await node.request('GET', `/v1/collections/${collection}/records/${id}`)).status, `${collection}/${id}`).toBe(404)
  }
}

async function checkRest (node: NodeProcess, want: Snapshot, others: Snapshot[], held: OthersHeld): Promise<void> {
  const platforms = (await node.request<Snapshot['platforms']>('GET', '/v1/platforms')).body
  for (const p of want.platforms) {
    const now = platforms.find(x => x.name === p.name)
    // a node re-registers its own addresses (a new port here) at start; everything else is as it was
    if (p.name === want.name || others.some(o => o.name === p.name)) expect(now).toMatchObject({ name: p.name, peerId: p.peerId, ...(p.region !== undefined ? { region: p.region } : {}) })
    else expect(now).toEqual(p)
  }
  expect((await node.request('GET', '/v1/rules')).body).toEqual(want.rules)
  const peers = (await node.request<Array<{ peerId: string, addrs: string[], persisted: boolean }>>('GET', '/v1/peers')).body
  for (const p of want.peers) expect(peers.find(x => x.peerId === p.peerId)).toMatchObject({ peerId: p.peerId, addrs: p.addrs, persisted: true })
  const status = await node.status()
  const vector = Object.fromEntries((status.origins as Array<{ origin: string, seq: number }>).map(o => [o.origin, o.seq]))
  for (const [origin, seq] of Object.entries(want.vector)) {
    // its own log may have grown by its re-registration
    if (origin === want.peerId) expect(vector[origin]).toBeGreaterThanOrEqual(seq)
    // another origin's log stored from version 1 batches is fetched again with its attestations (data format 4);
    // one stored with them is held as far as before (the node has not synced yet)
    else expect(vector[origin] ?? 0, origin).toBe(held === 'refetched' ? 0 : seq)
  }
}

/** Each node holds the other's log again as far as before the upgrade: fetched again, with its origin's attestations. */
async function refetched (a: NodeProcess, b: NodeProcess, want: Expected): Promise<void> {
  const seqOf = async (n: NodeProcess, origin: string): Promise<number> => ((await n.status()).origins as Array<{ origin: string, seq: number }>).find(o => o.origin === origin)?.seq ?? 0
  await waitFor(async () => await seqOf(a, want.edge.peerId) >= want.hub.vector[want.edge.peerId] && await seqOf(b, want.hub.peerId) >= want.edge.vector[want.hub.peerId], 'each node to fetch the other\'s log again')
}

async function vectorOf (node: NodeProcess): Promise<Record<string, number>> {
  return Object.fromEntries(((await node.status()).origins as Array<{ origin: string, seq: number }>).map(o => [o.origin, o.seq]))
}

/**
 * The fixture's two nodes, started, find each other again: each holds the
 * other's log as far as before (fetched again after an upgrade that lowered
 * it), records as they were; a post written on edge reaches hub by the old
 * rule (filter, rename, transform); and each ends holding the other's log as
 * far as its origin does.
 */
async function syncAgain (hub: NodeProcess, edge: NodeProcess, expected: Expected): Promise<void> {
  await edge.addPeer(hub.multiaddr)
  await refetched(hub, edge, expected)
  await checkRecords(hub, expected.hub)
  await checkRecords(edge, expected.edge)
  await edge.put('posts', 'p4', { kind: 'a', title: 'after the upgrade' })
  await waitFor(async () => (await hub.get('inbox', 'p4'))?.heading === 'AFTER THE UPGRADE', 'a post written on edge after the start to reach hub by the old rule')
  await waitFor(async () => isDeepStrictEqual(await vectorOf(hub), await vectorOf(edge)), 'each node to hold the other\'s log as far as its origin')
}

/**
 * The start upgraded `node` from format `from` after a backup: its status
 * says so, and the backup (mode 0700) is an exact copy of the database as the
 * earlier release left it (`pristine`, the fixture's db unpacked apart).
 * Returns the copy's keys and values.
 */
async function checkUpgraded (node: NodeProcess, from: number, pristine: string): Promise<Array<[string, string]>> {
  const status = await node.status()
  expect(status.database).toMatchObject({ format: CURRENT_FORMAT, upgradedFrom: from })
  const backups = (await readdir(node.dir)).filter(n => n.startsWith(`backup-format-${from}-`))
  expect(backups).toHaveLength(1)
  expect(status.database.backup).toBe(join(node.dir, backups[0]))
  expect((await stat(join(node.dir, backups[0]))).mode & 0o077).toBe(0)
  const copy = await dump(join(node.dir, backups[0], 'db'))
  expect(copy).toEqual(await dump(pristine))
  return copy
}

/** The start found `node`'s directory current: no upgrade, and `backups` backups (those of earlier upgrades). */
async function checkNotUpgraded (node: NodeProcess, backups: number): Promise<void> {
  expect(node.stderr).not.toContain('data format')
  expect(node.stderr).not.toContain('upgraded the data directory')
  expect((await readdir(node.dir)).filter(n => n.startsWith('backup-format-'))).toHaveLength(backups)
  const { database } = await node.status()
  expect(database).toMatchObject({ format: CURRENT_FORMAT })
  expect(database.upgradedFrom).toBeUndefined()
  expect(database.backup).toBeUndefined()
}

/**
 * Fixtures for the tests of one describe block, removed with their node
 * processes after them. `open` unpacks one twice: the directories the nodes
 * run on, and a pristine copy beside them to compare backups with.
 */
function fixtures (): { procs: NodeProcess[], dirs: string[], open: (fixture: string) => Promise<Opened> } {
  const procs: NodeProcess[] = []
  const dirs: string[] = []
  afterAll(async () => {
    for (const p of procs) await p.kill().catch(() => {})
    for (const d of dirs) await rm(d, { recursive: true, force: true })
  })
  const open = async (fixture: string): Promise<Opened> => {
    const expected = JSON.parse(await readFile(join(fixture, 'expected.json'), 'utf8')) as Expected
    const parent = await unpack(fixture)
    const pristine = await unpack(fixture)
    dirs.push(parent, pristine)
    const hub = new NodeProcess(join(parent, 'hub'), 'hub', KEY)
    const edge = new NodeProcess(join(parent, 'edge'), 'edge', KEY)
    procs.push(hub, edge)
    return { expected, hub, edge, pristine }
  }
  return { procs, dirs, open }
}

/**
 * What a stopped node serves of `origin`'s log under sync protocol version
 * 2 (its own log, or another origin's it holds with that origin's
 * attestations), read from its database and verified as a receiver does: the
 * attestations must tile (0, held] and carry exactly the newest entry of
 * every record.
 */
async function checkLogAttested (dir: string, origin: string): Promise<{ certs: AttestedCert[], entries: LogEntry[] }> {
  const store = new Store(join(dir, 'db'))
  await store.open()
  try {
    const log = new ChangeLog(store)
    await log.load()
    const out = { certs: [] as AttestedCert[], entries: [] as LogEntry[] }
    let at = 0
    for (;;) {
      const b = await log.readAttested(origin, at, 3, 1 << 20)
      if (b === undefined) break
      const entries = b.entries.map(raw => Object.assign(decodeEntry(origin, raw), { bytes: raw }))
      verifyAttestedRuns(origin, entries, b.certs, { from: b.fromSeq, to: b.toSeq })
      out.certs.push(...b.certs)
      out.entries.push(...entries)
      at = b.toSeq
    }
    expect(at).toBe(log.vector.get(origin))
    const newest: number[] = []
    // every record's newest entry (the `latest` index of the origin)
    for await (const [, value] of store.db.iterator(prefixRange(keys.latestPrefix(store.logs.of(origin), '').slice(0, -1)))) newest.push(Number(Buffer.from(value).toString()))
    expect(out.entries.map(e => e.seq)).toEqual(newest.sort((a, b) => a - b))
    return out
  } finally {
    await store.close()
  }
}

/** Both nodes stopped: each serves its own log and the other's, as held, with their origins' attestations. */
async function checkLogsAttested (hub: NodeProcess, edge: NodeProcess, expected: Expected): Promise<void> {
  expect(await hub.stop()).toBe(0)
  expect(await edge.stop()).toBe(0)
  for (const node of [hub, edge]) {
    for (const origin of [expected.hub.peerId, expected.edge.peerId]) await checkLogAttested(node.dir, origin)
  }
}

describe('a data directory of format 1 (release 84937b5)', () => {
  const { procs, dirs, open } = fixtures()

  it('is upgraded in place at start after a backup, keeps everything, and syncs with a fresh node and its upgraded peer', async () => {
    const { expected, hub, edge, pristine } = await open(FIXTURE_1)
    await hub.start()
    expect(hub.stderr).toContain('this data directory has data format 1')
    expect(hub.stderr).toMatch(/backed up the database \(format 1\) to \S*backup-format-1-/)
    expect(hub.stderr).toContain(`upgraded the data directory from format 1 to 2`)
    await checkIntact(hub, expected.hub, [expected.edge], 'refetched')

    // the format is current, and the backup is an exact copy of the database as the earlier release left it
    const copy = await checkUpgraded(hub, 1, join(pristine, 'hub', 'db'))
    expect(copy.some(([k]) => k === FORMAT_KEY)).toBe(false)
    expect(copy.length).toBeGreaterThan(30)

    // the other node of the old mesh, upgraded too; they find each other again and its rule still applies on hub
    await edge.start()
    await checkIntact(edge, expected.edge, [expected.hub], 'refetched')
    await syncAgain(hub, edge, expected)

    // a node of this release that never ran the old one: records flow both ways
    const fresh = await NodeProcess.create('fresh', KEY, { parent: join(hub.dir, '..') })
    procs.push(fresh)
    await fresh.start()
    await fresh.addPeer(hub.multiaddr)
    await hub.addRule({ from: { platform: 'hub', collection: 'notes' }, to: { platform: 'fresh', collection: 'notes' } })
    await hub.addRule({ from: { platform: 'fresh', collection: 'drafts' }, to: { platform: 'hub', collection: 'drafts' } })
    await fresh.put('drafts', 'd1', { text: 'from the new node' })
    await hub.put('notes', 'n4', { text: 'after the upgrade' })
    await waitFor(async () => (await hub.get('drafts', 'd1'))?.text === 'from the new node', 'a record of the fresh node to reach hub')
    await waitFor(async () => await fresh.count('notes') === 3, 'hub notes (written before and after the upgrade) to reach the fresh node')
    expect(await fresh.all('notes')).toEqual(await hub.all('notes'))
    expect(await fresh.get('notes', 'n2')).toBeUndefined()
    // the fresh node verified and stored edge's log as the old release signed it, relayed by hub
    await waitFor(async () => ((await fresh.status()).origins as Array<{ origin: string, seq: number }>).find(o => o.origin === expected.edge.peerId)?.seq === (await edge.status()).origins.find((o: { origin: string }) => o.origin === expected.edge.peerId).seq, 'edge\'s log to reach the fresh node')
    for (const p of [hub, edge, fresh]) expect((await p.status()).peers.every((x: { offences?: number }) => (x.offences ?? 0) === 0)).toBe(true)

    // the next start finds it current: no second upgrade, no second backup
    expect(await hub.stop()).toBe(0)
    await hub.start()
    await checkNotUpgraded(hub, 1)
    // its own log, signed by the earlier release and written to since, is attested for version 2
    expect(await hub.stop()).toBe(0)
    await checkLogAttested(hub.dir, expected.hub.peerId)
  }, 240_000)

  it('a directory of a newer format is refused with DATA_FORMAT_NEWER and left as it was', async () => {
    const parent = await unpack(FIXTURE_1)
    dirs.push(parent)
    const dir = join(parent, 'edge')
    const db = new Level<string, Uint8Array>(join(dir, 'db'), { keyEncoding: 'utf8', valueEncoding: 'view' })
    await db.put(FORMAT_KEY, Buffer.from(String(CURRENT_FORMAT + 1)))
    await db.close()
    const before = await dump(join(dir, 'db'))
    const res = await runCli(['start', '--data', dir, '--key', KEY, '--listen', '/ip4/127.0.0.1/tcp/0', '--api', '127.0.0.1:0'], { timeoutMs: 90_000 })
    expect(res.code).not.toBe(0)
    expect(res.stderr).toContain('DATA_FORMAT_NEWER')
    expect(res.stderr).toContain(`written by a newer syncmesh (data format ${CURRENT_FORMAT + 1}); this release reads data formats up to ${CURRENT_FORMAT}`)
    expect(await dump(join(dir, 'db'))).toEqual(before)
    expect((await readdir(dir)).filter(n => n.startsWith('backup-'))).toEqual([])
  }, 120_000)
})

describe('a data directory of format 2 (release 7b586b6)', () => {
  const { open } = fixtures()

  it('is upgraded to the current format: its own log gains version 2 attestations that a receiver verifies, the other node\'s log is fetched again with them, and it keeps everything', async () => {
    const { expected, hub, edge, pristine } = await open(FIXTURE_2)
    await hub.start()
    expect(hub.stderr).toContain('this data directory has data format 2')
    expect(hub.stderr).toContain('upgraded the data directory from format 2 to 3')
    expect(hub.stderr).toContain('upgraded the data directory from format 3 to 4')
    expect(hub.stderr).toContain('the logs of 1 other origins will be fetched again')
    expect(hub.stderr).toMatch(/attested the own log for sync protocol version 2: \d+ runs, \d+ gone spans, 0 stretches left unattested/)
    await checkIntact(hub, expected.hub, [expected.edge], 'refetched')
    await checkUpgraded(hub, 2, join(pristine, 'hub', 'db'))
    await edge.start()
    await checkIntact(edge, expected.edge, [expected.hub], 'refetched')
    await syncAgain(hub, edge, expected)
    // writes after the upgrade supersede entries attested by it
    await hub.put('notes', 'n1', { text: 'after the upgrade' })
    expect((await hub.request('DELETE', '/v1/collections/tasks/records/t2')).status).toBeLessThan(300)
    expect(await hub.stop()).toBe(0)
    expect(await edge.stop()).toBe(0)
    const own = await checkLogAttested(hub.dir, expected.hub.peerId)
    expect(own.certs.some(c => c.gone)).toBe(true) // n2's put and delete, t1's first write: compacted away
    await checkLogAttested(edge.dir, expected.edge.peerId)
  }, 240_000)

  it('opened with rule streams, both nodes upgrade in place and keep everything; the old rule then runs by its stream: the source filters and projects, the target applies', async () => {
    const { expected, hub, edge } = await open(FIXTURE_2)
    await hub.start(['--streams'])
    expect(hub.stderr).toContain('upgraded the data directory from format 3 to 4')
    await edge.start(['--streams'])
    expect((await hub.status()).streams).toBe(true)
    await checkRecords(hub, expected.hub)
    await checkRecords(edge, expected.edge)
    await edge.addPeer(hub.multiaddr)
    // written after the switch: it reaches hub only through the rule's stream, filtered and projected on edge
    await edge.put('posts', 'p4', { kind: 'a', title: 'by the stream', draft: 'DRAFTMARK' })
    await edge.put('posts', 'p5', { kind: 'b', title: 'filtered out on edge' })
    await waitFor(async () => (await hub.get('inbox', 'p4'))?.heading === 'BY THE STREAM', 'a post written after the switch to reach hub by the rule\'s stream')
    const p4 = await hub.get('inbox', 'p4')
    expect(p4).not.toHaveProperty('draft')
    expect(await hub.get('inbox', 'p5')).toBeUndefined()
    const rule = ((await hub.status()).rules as Array<{ id: string, backfilled: boolean, waitingForKey?: string[] }>).find(r => r.id === expected.ruleId)
    expect(rule?.waitingForKey).toBeUndefined()
    // what hub held from before the switch is still there, as it was
    await checkRecords(hub, { ...expected.hub, records: Object.fromEntries(Object.entries(expected.hub.records).filter(([c]) => c !== 'inbox')) })
    for (const r of expected.hub.records.inbox) expect(await hub.get('inbox', r.id)).toEqual(r.value)
    expect(await hub.stop()).toBe(0)
    expect(await edge.stop()).toBe(0)
    // the field the rule excludes stayed on edge: no file of hub's data directory holds it
    const files = await readdir(hub.dir, { withFileTypes: true, recursive: true })
    for (const f of files.filter(f => f.isFile())) expect((await readFile(join(f.parentPath, f.name))).includes('DRAFTMARK'), f.name).toBe(false)
    expect((await readdir(join(edge.dir, 'db'))).length).toBeGreaterThan(0)
  }, 240_000)
})

describe('a data directory of format 3 (release 34743de)', () => {
  const { open } = fixtures()

  it('is upgraded to the current format after a backup: the other node\'s log, stored from version 1 batches, is fetched again with its attestations; the own log keeps the attestations its release wrote; everything else stays', async () => {
    const { expected, hub, edge, pristine } = await open(FIXTURE_3)
    await hub.start()
    expect(hub.stderr).toContain('this data directory has data format 3')
    expect(hub.stderr).toMatch(/backed up the database \(format 3\) to \S*backup-format-3-/)
    expect(hub.stderr).toContain('the logs of 1 other origins will be fetched again')
    expect(hub.stderr).toContain('upgraded the data directory from format 3 to 4')
    expect(hub.stderr).toContain('upgraded the data directory from format 4 to 5')
    // that release attested the own log as it wrote it: the upgrade does not
    expect(hub.stderr).not.toContain('attested the own log')
    await checkIntact(hub, expected.hub, [expected.edge], 'refetched')
    const copy = await checkUpgraded(hub, 3, join(pristine, 'hub', 'db'))
    expect(copy.find(([k]) => k === FORMAT_KEY)?.[1]).toBe(Buffer.from('3').toString('hex'))
    await edge.start()
    expect(edge.stderr).toContain('upgraded the data directory from format 3 to 4')
    await checkIntact(edge, expected.edge, [expected.hub], 'refetched')
    await checkUpgraded(edge, 3, join(pristine, 'edge', 'db'))
    await syncAgain(hub, edge, expected)
    await checkLogsAttested(hub, edge, expected)
  }, 240_000)
})

describe('a data directory of format 4 (release 417f188)', () => {
  const { open } = fixtures()

  it('is upgraded to format 5 after a backup: every log\'s keys move under its alias and nothing else changes; the other node\'s log is held as far as before; the nodes sync and the old rule applies', async () => {
    const { expected, hub, edge, pristine } = await open(FIXTURE_4)
    await hub.start()
    expect(hub.stderr).toContain('this data directory has data format 4')
    expect(hub.stderr).toMatch(/gave 2 logs their aliases and moved \d+ keys under them/)
    expect(hub.stderr).toContain('upgraded the data directory from format 4 to 5')
    await checkIntact(hub, expected.hub, [expected.edge], 'kept')
    await checkUpgraded(hub, 4, join(pristine, 'hub', 'db'))
    await edge.start()
    await checkIntact(edge, expected.edge, [expected.hub], 'kept')
    await checkUpgraded(edge, 4, join(pristine, 'edge', 'db'))
    await syncAgain(hub, edge, expected)
    await checkLogsAttested(hub, edge, expected)
    // no key names a log by its id any more, and each log's keys are where they were, under its alias
    for (const node of [hub, edge]) await checkAliased(node.dir, join(pristine, node === hub ? 'hub' : 'edge', 'db'))
  }, 240_000)
})

describe('a data directory of format 5 (release cb2eef4)', () => {
  const { open } = fixtures()

  it('opens as it is (the current format, no upgrade, no backup), keeps everything, the other node\'s log held as far as before; the nodes sync and the old rule applies', async () => {
    const { expected, hub, edge } = await open(FIXTURE_5)
    await hub.start()
    await checkNotUpgraded(hub, 0)
    await checkIntact(hub, expected.hub, [expected.edge], 'kept')
    await edge.start()
    await checkNotUpgraded(edge, 0)
    await checkIntact(edge, expected.edge, [expected.hub], 'kept')
    await syncAgain(hub, edge, expected)
    await checkLogsAttested(hub, edge, expected)
  }, 240_000)
})

/**
 * The database of a stopped node upgraded from format 4: every per-log key
 * is under an alias that names a log, and every per-log key of the format 4
 * database (`legacy`) that the node has not changed since is there under
 * its log's alias with the same value.
 */
async function checkAliased (dir: string, legacy: string): Promise<void> {
  const now = new Map(await dump(join(dir, 'db')))
  const aliases = new Map<string, string>()
  for (const [k, v] of now) if (k.startsWith('o\x00')) aliases.set(k.slice(2), Buffer.from(v, 'hex').toString())
  expect(aliases.size).toBeGreaterThanOrEqual(2)
  const named = new Set(aliases.values())
  for (const k of now.keys()) {
    if (!LOG_TAGS.includes(k[0] as typeof LOG_TAGS[number]) || k[1] !== '\x00') continue
    const part = k.slice(2).split('\x00')[0]
    expect(named.has(part), k.slice(0, 80)).toBe(true)
  }
  let same = 0
  for (const [k, v] of await dump(legacy)) {
    if (!LOG_TAGS.includes(k[0] as typeof LOG_TAGS[number]) || k[1] !== '\x00') continue
    const [log, ...rest] = k.slice(2).split('\x00')
    const alias = aliases.get(log)
    expect(alias, log).toBeDefined()
    const moved = [`${k[0]}`, alias, ...rest].join('\x00')
    if (now.get(moved) === v) same++
  }
  // the entries and certificates of both logs as they were (attestations and vectors move on as the nodes write)
  expect(same).toBeGreaterThan(10)
}
