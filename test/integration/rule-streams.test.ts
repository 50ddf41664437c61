/**
 * Rule streams (protocols/sync/streams.md) through real nodes: real libp2p
 * over TCP on 127.0.0.1, real LevelDB in temp dirs, every node started with
 * `streams: true`. A rule's filter and projection run on its source: what
 * the rule filters out or excludes never leaves the source; what it sends is
 * encrypted under a key sealed to its targets only, so a node outside the
 * rule's targets that relays the stream holds none of it in readable form.
 */
import { cp, readdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { createSyncNode } from '../../src/node/node.js'
import type { SyncNode } from '../../src/node/node.js'
import type { PeerInfo, Rule } from '../../src/core/types.js'
import { SYNC_PROTOCOL, SYNC_PROTOCOL_STREAMS } from '../../src/network/constants.js'
import { ruleStreamId } from '../../src/rules/stream-plan.js'
import { decodeEntry } from '../../src/log/entry.js'
import type { ChangeLog } from '../../src/log/changelog.js'
import { encodeAttested } from '../../src/log/signing.js'
import { encodeBatchFrame } from '../../src/network/sync/codec.js'
import { RawPeer } from '../helpers/raw-peer.js'
import { eventually, KEY, recordsOf, removeDir, tempDir } from '../helpers/nodes.js'
import { keys } from '../../src/store/keys.js'
import type { Store } from '../../src/store/db.js'

interface Running { node: SyncNode, dir: string }

/** A node with rule streams that dials only the peers it is given: the test decides the links. */
async function start (name: string, dir?: string, streams = true, relay?: 'all' | 'audience', options: { maxEntriesPerKey?: number } = {}): Promise<Running> {
  const d = dir ?? await tempDir()
  const node = await createSyncNode({ dataDir: d, key: KEY, name, listen: ['/ip4/127.0.0.1/tcp/0'], targetConnections: 0, streams, ...(relay !== undefined ? { relay } : {}), ...options })
  await node.start()
  return { node, dir: d }
}

/** Every node's registry lists all of `nodes`: their platforms reached each other. */
async function allKnown (...nodes: Running[]): Promise<void> {
  await eventually(() => nodes.every(n => n.node.registry.platforms().length === nodes.length), `${nodes.length} platforms everywhere`)
}

/** The ids of the node's records of `collection`, sorted, joined by commas. */
async function idsOf (n: Running, collection: string): Promise<string> {
  return [...(await all(n.node, collection)).keys()].sort().join()
}

/** The node's posts as sorted JSON text: compared whole. */
async function postsText (n: Running): Promise<string> {
  return JSON.stringify(Object.fromEntries([...(await all(n.node, 'posts'))].sort()))
}

async function all (node: SyncNode, collection: string): Promise<Map<string, Record<string, unknown>>> {
  return new Map(Object.entries(await recordsOf(node, collection)))
}

/** Every file under `dir`, as latin1 text (LevelDB tables, logs, the manifest): where a marker could sit on disk. */
async function filesText (dir: string): Promise<string> {
  let text = ''
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue
    text += (await readFile(join(entry.parentPath, entry.name))).toString('latin1')
  }
  return text
}

interface RawDb {
  iterator: (o: object) => AsyncIterable<[string, Uint8Array]>
  get: (k: string) => Promise<Uint8Array | undefined>
}

/** The node's LevelDB, read as it is (what a test looks for on disk). */
function dbOf (node: SyncNode): RawDb {
  return (node as unknown as { store: { db: RawDb } }).store.db
}

/** Every key and value of the node's LevelDB, decompressed, as latin1 text. */
async function dbText (node: SyncNode): Promise<string> {
  const db = dbOf(node)
  let text = ''
  for await (const [key, value] of db.iterator({})) text += key + '\n' + Buffer.from(value).toString('latin1') + '\n'
  return text
}

/** The ids of the `$keys` registry records the node holds (envelopes of stream keys). */
async function keyRecordIds (node: SyncNode): Promise<string[]> {
  const db = dbOf(node)
  const prefix = 'r\x00$keys\x00'
  const out: string[] = []
  for await (const [key] of db.iterator({ gte: prefix, lt: 'r\x00$keys\x01' })) out.push(key.slice(prefix.length))
  return out
}

/** How many entries of stream log `streamLog` the node stores under each epoch (in clear in every entry). */
async function entriesPerEpoch (node: SyncNode, streamLog: string): Promise<Map<number, number>> {
  const prefix = keys.entryPrefix((node as unknown as { store: Store }).store.logs.of(streamLog))
  const out = new Map<number, number>()
  for await (const [, value] of dbOf(node).iterator({ gte: prefix, lt: prefix.slice(0, -1) + '\x01' })) {
    const epoch = decodeEntry(streamLog, value).epoch ?? 0
    out.set(epoch, (out.get(epoch) ?? 0) + 1)
  }
  return out
}

/** Whether the node, a rule's source, has filled its stream `stream` from its records. */
async function streamFilled (node: SyncNode, stream: string): Promise<boolean> {
  const saved = await dbOf(node).get(`m\x00stream-fill\x00${stream}`)
  return saved !== undefined && JSON.parse(Buffer.from(saved).toString()).done === true
}

describe('rule streams between real nodes', () => {
  const running: Running[] = []
  /** Nodes with rule streams, each after the first dialling `dials(nodes, i)` (`options`: a node's own, by name); returned once every registry lists them all. */
  async function linked (names: string[], dials: (i: number) => number, options: Record<string, { maxEntriesPerKey?: number }> = {}): Promise<Running[]> {
    const nodes: Running[] = []
    for (const name of names) nodes.push(await start(name, undefined, true, undefined, options[name]))
    running.push(...nodes)
    for (let i = 1; i < nodes.length; i++) await nodes[i].node.peers.add(nodes[dials(i)].node.getMultiaddrs()[0])
    await allKnown(...nodes)
    return nodes
  }

  /** Each node after the first dials the first. */
  async function star (...names: string[]): Promise<Running[]> {
    return await linked(names, () => 0)
  }

  /** Each node after the first dials the one before it: the last reaches the first only through the others. */
  async function line (...names: string[]): Promise<Running[]> {
    return await linked(names, (i) => i - 1)
  }

  /**
   * alpha, with rule streams, on a data directory the test backs up and puts
   * back as an operator restores one: `open` starts it there (again).
   */
  async function restorable (options: { maxEntriesPerKey?: number } = {}): Promise<{ open: (...peers: SyncNode[]) => Promise<SyncNode>, backup: () => Promise<void>, restore: () => Promise<void> }> {
    const dir = await tempDir()
    const copy = await tempDir()
    /** alpha started on its directory, dialling `peers`. */
    const open = async (...peers: SyncNode[]): Promise<SyncNode> => {
      const node = await createSyncNode({ dataDir: dir, key: KEY, name: 'alpha', listen: ['/ip4/127.0.0.1/tcp/0'], targetConnections: 0, streams: true, ...options })
      await node.start()
      running.push({ node, dir }, { node, dir: copy })
      for (const peer of peers) await node.peers.add(peer.getMultiaddrs()[0])
      return node
    }
    return {
      open,
      backup: async () => await cp(dir, copy, { recursive: true }),
      restore: async () => {
        await rm(dir, { recursive: true, force: true })
        await cp(copy, dir, { recursive: true })
      }
    }
  }

  /** restorable's alpha, opened, with beta and gamma linked to it, once every registry lists the three. */
  async function restorableWithTwo (): Promise<Awaited<ReturnType<typeof restorable>> & { first: SyncNode, beta: Running, gamma: Running }> {
    const r = await restorable()
    const first = await r.open()
    const beta = await start('beta')
    const gamma = await start('gamma')
    running.push(beta, gamma)
    await beta.node.peers.add(first.getMultiaddrs()[0])
    await gamma.node.peers.add(first.getMultiaddrs()[0])
    await eventually(() => [first, beta.node, gamma.node].every(n => n.registry.platforms().length === 3), 'three platforms everywhere')
    return { ...r, first, beta, gamma }
  }

  /**
   * alpha (restorable) sends its published posts to beta and gamma; after a
   * backup, beta leaves the rule's targets (epoch 2 begins) and p0, a draft
   * before, is sent under epoch 2 only; then alpha is restored and takes
   * its registry and its stream back from the others.
   */
  async function restoredAfterTargetLeft (): Promise<{ alpha: SyncNode, beta: Running, gamma: Running, rule: Rule, stream: string }> {
    const { open, backup, restore, first: opened, beta, gamma } = await restorableWithTwo()
    let alpha = opened
    const rule = await alpha.registry.addRule({ from: { platform: 'alpha', collection: 'posts' }, to: { platform: '*', collection: 'posts' }, where: { status: 'published' } })
    await alpha.records.put('posts', 'p0', { status: 'draft' })
    await alpha.records.put('posts', 'a', { status: 'published' })
    await eventually(async () => (await all(beta.node, 'posts')).has('a') && (await all(gamma.node, 'posts')).has('a'), 'beta and gamma to hold a')
    await alpha.stop()
    await backup()
    // after the backup: beta leaves the rule's targets, epoch 2 begins, and p0 is sent under it only
    alpha = await open(beta.node, gamma.node)
    await alpha.registry.updateRule(rule.id, { to: { platform: 'gamma', collection: 'posts' } })
    const stream = ruleStreamId(alpha.registry.rule(rule.id)!)
    const streamLog = `${alpha.peerId}/${stream}`
    await eventually(async () => (await keyRecordIds(gamma.node)).includes(`${alpha.peerId}/${stream}/2/${gamma.node.peerId}`), 'gamma to hold the envelope of epoch 2')
    await alpha.records.put('posts', 'p0', { status: 'published' })
    await eventually(async () => (await all(gamma.node, 'posts')).has('p0'), 'gamma to hold p0')
    expect((await entriesPerEpoch(alpha, streamLog)).get(2)).toBe(1)
    const held = (await alpha.status()).origins.find(o => o.origin === streamLog)?.seq ?? 0
    await alpha.stop()
    await restore()
    alpha = await open(beta.node, gamma.node)
    await eventually(async () => alpha.registry.rule(rule.id)?.to.platform === 'gamma' && ((await alpha.status()).origins.find(o => o.origin === streamLog)?.seq ?? 0) >= held, 'alpha to take its registry and its stream back')
    return { alpha, beta, gamma, rule, stream }
  }

  afterEach(async () => {
    for (const r of running.splice(0)) {
      await r.node.stop().catch(() => {})
      await removeDir(r.dir)
    }
  })

  it('the target gets only the records the rule sends, without the fields it excludes; a relay outside the rule holds none of the rest', async () => {
    // beta reaches alpha only through gamma
    const [alpha, gamma, beta] = await line('alpha', 'gamma', 'beta')
    // written before the rule exists: the source fills the rule's stream from its records
    for (let i = 0; i < 20; i++) {
      await alpha.node.records.put('posts', `early${i}`, { title: `EARLYPUB${i}`, status: i % 2 === 0 ? 'published' : 'draft', body: i % 2 === 0 ? `PUBBODY${i}` : `DRAFTBODY${i}`, secret: `SECRETMARK${i}` })
    }
    await alpha.node.registry.addRule({ from: { platform: 'alpha', collection: 'posts' }, to: { platform: 'beta', collection: 'posts' }, where: { status: 'published' }, exclude: ['secret'] })
    for (let i = 0; i < 20; i++) {
      await alpha.node.records.put('posts', `late${i}`, { title: `LATEPUB${i}`, status: i % 2 === 0 ? 'published' : 'draft', body: i % 2 === 0 ? `PUBBODY${i}` : `DRAFTBODY${i}`, secret: `SECRETMARK${i}` })
    }
    const expected = new Map<string, Record<string, unknown>>()
    for (let i = 0; i < 20; i += 2) {
      expected.set(`early${i}`, { title: `EARLYPUB${i}`, status: 'published', body: `PUBBODY${i}` })
      expected.set(`late${i}`, { title: `LATEPUB${i}`, status: 'published', body: `PUBBODY${i}` })
    }
    await eventually(async () => (await all(beta.node, 'posts')).size === expected.size, 'beta to hold the published posts', 30_000)
    expect(Object.fromEntries(await all(beta.node, 'posts'))).toEqual(Object.fromEntries(expected))
    expect((await all(gamma.node, 'posts')).size).toBe(0)
    // gamma relayed the stream (beta reaches alpha only through it) and holds it, encrypted; status says who does what
    const streamOf = async (n: Running) => (await n.node.status()).origins.find(o => o.origin.startsWith(`${alpha.node.peerId}/r.`))
    const stream = await streamOf(gamma)
    expect(stream?.seq).toBeGreaterThanOrEqual(expected.size)
    const ruleId = alpha.node.registry.rules()[0].id
    expect(stream?.stream).toEqual({ rule: ruleId, role: 'relay' })
    expect((await streamOf(beta))?.stream).toEqual({ rule: ruleId, role: 'target' })
    expect((await streamOf(alpha))?.stream).toEqual({ rule: ruleId, role: 'source' })
    // nothing the rule keeps back is anywhere on beta; nothing of alpha's posts is readable on gamma,
    // in LevelDB (every key and value, decompressed) or in any file of its data directory
    expect(await dbText(beta.node)).not.toMatch(/SECRETMARK|DRAFTBODY/)
    const gammaDb = await dbText(gamma.node)
    const leak = /SECRETMARK|DRAFTBODY|PUBBODY|EARLYPUB|LATEPUB|early\d|late\d/.exec(gammaDb)
    expect(leak === null ? '' : gammaDb.slice(Math.max(0, leak.index - 300), leak.index + 100)).toBe('')
    for (const n of [beta, gamma]) await n.node.stop()
    expect(await filesText(beta.dir)).not.toMatch(/SECRETMARK|DRAFTBODY/)
    expect(await filesText(gamma.dir)).not.toMatch(/SECRETMARK|DRAFTBODY|PUBBODY|EARLYPUB|LATEPUB|early\d|late\d/)
  })

  it('a post that stops matching, an update, a delete and a key move reach a mirror target as the rule says', async () => {
    const [alpha, beta] = await star('alpha', 'beta')
    await alpha.node.registry.addRule({ from: { platform: 'alpha', collection: 'posts' }, to: { platform: 'beta', collection: 'pages' }, mode: 'mirror', where: { status: 'published' }, key: 'slug', include: ['title', 'slug'] })
    await alpha.node.records.put('posts', 'p1', { title: 'one', slug: 'one', status: 'published' })
    await alpha.node.records.put('posts', 'p2', { title: 'two', slug: 'two', status: 'published' })
    await alpha.node.records.put('posts', 'p3', { title: 'three', slug: 'three', status: 'published' })
    await alpha.node.records.put('posts', 'p4', { title: 'four', slug: 'four', status: 'draft' })
    await eventually(async () => (await all(beta.node, 'pages')).size === 3, 'beta to hold three pages')
    // a dry run is made on the source, which alone holds the records the rule reads; elsewhere it says where to run it
    const spec = { from: { platform: 'alpha', collection: 'posts' }, to: { platform: 'beta', collection: 'x' }, where: { status: 'published' } }
    await expect(beta.node.registry.dryRunRule!(spec)).rejects.toMatchObject({ code: 'DRY_RUN_UNAVAILABLE', message: expect.stringContaining('on its source, alpha') })
    const report = await alpha.node.registry.dryRunRule!(spec)
    expect(report.source).toMatchObject({ platform: 'alpha', collection: 'posts', records: 4, complete: true })
    expect(report.targets).toEqual([expect.objectContaining({ platform: 'beta', collection: 'x', exact: false, matching: 3, skipped: 1, creates: 0 })])
    expect(report.targets[0].note).toContain('with rule streams')
    // a target on the source itself is evaluated exactly, by the rule engine against its records
    const local = await alpha.node.registry.dryRunRule!({ ...spec, to: { platform: 'alpha', collection: 'copy' } })
    expect(local.targets).toEqual([expect.objectContaining({ platform: 'alpha', exact: true, matching: 3, creates: 3 })])
    await alpha.node.records.put('posts', 'p1', { title: 'one', slug: 'one', status: 'draft' }) // stops matching
    await alpha.node.records.put('posts', 'p2', { title: 'TWO', slug: 'two', status: 'published' }) // update
    await alpha.node.records.delete('posts', 'p3')
    await alpha.node.records.put('posts', 'p4', { title: 'four', slug: 'fourth', status: 'published' }) // starts matching
    await alpha.node.records.put('posts', 'p2', { title: 'TWO', slug: 'second', status: 'published' }) // key moves
    await eventually(async () => {
      const pages = await all(beta.node, 'pages')
      return pages.size === 2 && pages.has('second') && pages.has('fourth')
    }, 'beta to hold the pages the rule sends now', 20_000)
    expect(Object.fromEntries(await all(beta.node, 'pages'))).toEqual({ second: { title: 'TWO', slug: 'second' }, fourth: { title: 'four', slug: 'fourth' } })
  })

  it('a node with rule streams and one without do not sync, and both say why', async () => {
    const streams = await start('alpha')
    const plain = await start('beta', undefined, false)
    running.push(streams, plain)
    await plain.node.peers.add(streams.node.getMultiaddrs()[0])
    const peerInfo = async (n: SyncNode, peer: string): Promise<PeerInfo | undefined> => (await n.peers.list()).find(p => p.peerId === peer)
    await eventually(async () => (await peerInfo(plain.node, streams.node.peerId))?.incompatible !== undefined, 'the mismatch to show on the node without streams')
    expect((await peerInfo(plain.node, streams.node.peerId))?.incompatible).toMatchObject({ code: 'SYNC_PROTOCOL_MISMATCH', ours: SYNC_PROTOCOL, theirs: [SYNC_PROTOCOL_STREAMS] })
    // the same release on both sides: the message says the setting differs, not to upgrade a node
    const told = (await peerInfo(plain.node, streams.node.peerId))?.incompatible?.message ?? ''
    expect(told).toContain('the peer carries rules by rule streams and this node does not')
    expect(told).toContain('give every node of the mesh the same setting')
    expect(told).not.toContain('upgrade')
    await eventually(async () => (await peerInfo(streams.node, plain.node.peerId))?.incompatible !== undefined, 'the mismatch to show on the node with streams')
    expect((await peerInfo(streams.node, plain.node.peerId))?.incompatible).toMatchObject({ code: 'SYNC_PROTOCOL_MISMATCH', ours: SYNC_PROTOCOL_STREAMS, theirs: [SYNC_PROTOCOL] })
    expect((await peerInfo(streams.node, plain.node.peerId))?.incompatible?.message).toContain('this node carries rules by rule streams and the peer does not')
    expect(plain.node.registry.platforms().map(p => p.name)).toEqual(['beta'])
  })

  it('a target moved off a rule gets no key for what is written after: the stream goes on under a new epoch, and the new target reads it from its start', async () => {
    const [alpha, beta, delta] = await star('alpha', 'beta', 'delta')
    const rule = await alpha.node.registry.addRule({ from: { platform: 'alpha', collection: 'posts' }, to: { platform: 'beta', collection: 'posts' } })
    for (let i = 0; i < 3; i++) await alpha.node.records.put('posts', `before${i}`, { body: `MARKBEFORE${i}` })
    await eventually(async () => (await all(beta.node, 'posts')).size === 3, 'beta to hold the first posts')
    await alpha.node.registry.updateRule(rule.id, { to: { platform: 'delta', collection: 'posts' } })
    await eventually(async () => (await all(delta.node, 'posts')).size === 3, 'delta to read the stream from its start')
    for (let i = 0; i < 3; i++) await alpha.node.records.put('posts', `after${i}`, { body: `MARKAFTER${i}` })
    await eventually(async () => (await all(delta.node, 'posts')).size === 6, 'delta to hold every post')
    // beta carries the stream on (every node relays every stream) and holds the new entries, encrypted
    const streamLog = (await alpha.node.status()).origins.find(o => o.origin.startsWith(`${alpha.node.peerId}/r.`))?.origin as string
    const seq = (await alpha.node.status()).origins.find(o => o.origin === streamLog)?.seq as number
    await eventually(async () => ((await beta.node.status()).origins.find(o => o.origin === streamLog)?.seq ?? 0) >= seq, 'beta to hold the whole stream')
    // its envelopes: epoch 1 only; delta's: both epochs
    const envelopes = async (n: Running): Promise<number[]> => (await keyRecordIds(n.node))
      .filter(id => id.startsWith(`${streamLog}/`) && id.endsWith(`/${n.node.peerId}`)).map(id => Number(id.split('/')[2])).sort()
    expect(await envelopes(beta)).toEqual([1])
    expect(await envelopes(delta)).toEqual([1, 2])
    // nothing written after its removal is readable on beta
    expect((await all(beta.node, 'posts')).size).toBe(3)
    expect(await dbText(beta.node)).not.toMatch(/MARKAFTER/)
    expect(await dbText(beta.node)).toMatch(/MARKBEFORE/)
  })

  it('two-way sync between three nodes (one X:events → *:events rule each): every write and delete reaches every node once, with its identity', async () => {
    const nodes = [await start('alpha'), await start('beta'), await start('gamma')]
    running.push(...nodes)
    const [alpha, beta, gamma] = nodes
    await beta.node.peers.add(alpha.node.getMultiaddrs()[0])
    await gamma.node.peers.add(beta.node.getMultiaddrs()[0]) // a line: alpha and gamma only through beta
    await allKnown(...nodes)
    for (const n of nodes) await alpha.node.registry.addRule({ from: { platform: n.node.name, collection: 'events' }, to: { platform: '*', collection: 'events' } })
    const changes = new Map<string, number>()
    for (const n of nodes) n.node.addEventListener('change', (e) => { const c = (e as CustomEvent<{ collection: string }>).detail; if (c.collection === 'events') changes.set(n.node.name, (changes.get(n.node.name) ?? 0) + 1) })
    for (let i = 0; i < 10; i++) await nodes[i % 3].node.records.put('events', `e${i}`, { n: i, by: nodes[i % 3].node.name })
    const same = async (size: number): Promise<boolean> => {
      const views = await Promise.all(nodes.map(async n => JSON.stringify([...(await all(n.node, 'events')).entries()].sort())))
      return views.every(v => v === views[0]) && (await all(alpha.node, 'events')).size === size
    }
    await eventually(async () => await same(10), 'every node to hold the ten events')
    // each node saw each write once, its own or through a rule, with the write's own version, and no conflict
    await eventually(() => nodes.every(n => changes.get(n.node.name) === 10), 'ten changes on every node')
    const versions = await Promise.all(nodes.map(async n => (await n.node.records.get('events', 'e5'))?.version))
    expect(versions[1]).toEqual(versions[0])
    expect(versions[2]).toEqual(versions[0])
    for (const n of nodes) {
      const conflicts = (await Promise.all((await n.node.status()).rules.map(async r => (await n.node.registry.conflicts!(r.id, 50)).conflicts))).flat()
      expect(conflicts, `${n.node.name}'s conflicts`).toEqual([])
    }
    // a relay deletes and updates records that came from the others: every node follows
    await beta.node.records.delete('events', 'e0')
    await beta.node.records.put('events', 'e2', { n: 2, by: 'beta, later' })
    await eventually(async () => await same(9) && (await all(gamma.node, 'events')).get('e2')?.by === 'beta, later', 'the relay\'s delete and update everywhere')
    await new Promise(resolve => setTimeout(resolve, 500))
    for (const n of nodes) expect(changes.get(n.node.name), `${n.node.name}'s changes`).toBe(12)
  })

  it('fan-in: one rule reading every site sends each site\'s records to the hub in that site\'s own stream, which the other sites relay and cannot read', async () => {
    const hub = await start('hub')
    const s1 = await start('site1')
    const s2 = await start('site2')
    running.push(hub, s1, s2)
    await s1.node.peers.add(hub.node.getMultiaddrs()[0])
    await s2.node.peers.add(s1.node.getMultiaddrs()[0]) // site2 reaches the hub only through site1
    await allKnown(hub, s1, s2)
    await hub.node.registry.addRule({ from: { platform: '*', collection: 'devices' }, to: { platform: 'hub', collection: 'devices' }, exclude: ['serial'] })
    for (const [n, site] of [[s1, 'site1'], [s2, 'site2']] as const) {
      for (let i = 0; i < 5; i++) await n.node.records.put('devices', `${site}-d${i}`, { site, temp: i, serial: `SERIALOF${site}${i}` })
    }
    await eventually(async () => (await all(hub.node, 'devices')).size === 10, 'the hub to hold every site\'s devices')
    expect((await all(hub.node, 'devices')).get('site2-d3')).toEqual({ site: 'site2', temp: 3 })
    // each site's stream: its own, relayed by the other; no site holds the other's devices in readable form
    const roles = async (n: Running): Promise<string[]> => (await n.node.status()).origins.filter(o => o.stream !== undefined).map(o => `${o.platform ?? o.origin}:${o.stream?.role ?? ''}`).sort()
    const stream = ruleStreamId(hub.node.registry.rules()[0])
    expect(await roles(hub)).toEqual([`site1/${stream}:target`, `site2/${stream}:target`])
    expect(await roles(s1)).toEqual([`site1/${stream}:source`, `site2/${stream}:relay`])
    expect((await all(s1.node, 'devices')).size).toBe(5)
    expect(await dbText(s1.node)).not.toMatch(/SERIALOFsite2|site2-d/)
    expect(await dbText(s2.node)).not.toMatch(/SERIALOFsite1|site1-d/)
    expect(await dbText(hub.node)).not.toMatch(/SERIALOF/)
  })

  it('a rule with a targets field sends each record only to the targets it names, one stream per target: the others relay it unread', async () => {
    const alpha = await start('alpha')
    const beta = await start('beta')
    const gamma = await start('gamma')
    running.push(alpha, beta, gamma)
    await beta.node.peers.add(alpha.node.getMultiaddrs()[0])
    await gamma.node.peers.add(beta.node.getMultiaddrs()[0]) // gamma reaches alpha only through beta
    await allKnown(alpha, beta, gamma)
    await alpha.node.registry.addRule({ from: { platform: 'alpha', collection: 'notes' }, to: { platform: '*', collection: 'notes' }, targetsField: 'to' })
    await alpha.node.records.put('notes', 'n1', { to: ['beta'], text: 'FORBETAONLY' })
    await alpha.node.records.put('notes', 'n2', { to: ['gamma'], text: 'FORGAMMAONLY' })
    await alpha.node.records.put('notes', 'n3', { to: ['beta', 'gamma'], text: 'FORBOTH' })
    await eventually(async () => (await all(beta.node, 'notes')).size === 2 && (await all(gamma.node, 'notes')).size === 2, 'each target to hold its notes')
    expect([...(await all(beta.node, 'notes')).keys()].sort()).toEqual(['n1', 'n3'])
    expect([...(await all(gamma.node, 'notes')).keys()].sort()).toEqual(['n2', 'n3'])
    // a later note for gamma only: in gamma's stream, which beta relays
    await alpha.node.records.put('notes', 'n4', { to: ['gamma'], text: 'LATERFORGAMMA' })
    await eventually(async () => (await all(gamma.node, 'notes')).size === 3, 'gamma to hold the later note')
    expect(await dbText(beta.node)).not.toMatch(/FORGAMMAONLY|LATERFORGAMMA/)
    expect(await dbText(gamma.node)).not.toMatch(/FORBETAONLY/)
    const streams = (await beta.node.status()).origins.filter(o => o.stream !== undefined).map(o => o.stream?.role).sort()
    expect(streams).toEqual(['relay', 'target'])
  })

  it('a mirror of every site: the hub holds exactly what each site\'s stream sends, after the mirror\'s sweep, deletes and records that stop matching', async () => {
    const [hub, s1, s2] = await star('hub', 'site1', 'site2')
    for (const [n, site] of [[s1, 'site1'], [s2, 'site2']] as const) {
      for (let i = 0; i < 4; i++) await n.node.records.put('devices', `${site}-d${i}`, { site, on: i !== 3 })
    }
    // written on the hub before the rule: a mirror removes what no source sends
    await hub.node.records.put('devices', 'stray', { on: true })
    const rule = await hub.node.registry.addRule({ from: { platform: '*', collection: 'devices' }, to: { platform: 'hub', collection: 'devices' }, mode: 'mirror', where: { on: true } })
    const want = ['site1-d0', 'site1-d1', 'site1-d2', 'site2-d0', 'site2-d1', 'site2-d2']
    await eventually(async () => JSON.stringify([...(await all(hub.node, 'devices')).keys()].sort()) === JSON.stringify(want), 'the hub to mirror both sites').catch(async (err) => {
      console.error('the hub holds', JSON.stringify([...(await all(hub.node, 'devices')).keys()].sort()), JSON.stringify((await hub.node.status()).rules), JSON.stringify((await hub.node.status()).origins.map(o => [o.platform, o.seq, o.lag, o.stream])), [...((hub.node as any).ingestor.awaitingKey)])
      throw err
    })
    await eventually(async () => (await hub.node.status()).rules.find(r => r.id === rule.id)?.backfilled === true, 'the mirror to finish its backfill and sweep')
    expect([...(await all(hub.node, 'devices')).keys()].sort()).toEqual(want)
    await s1.node.records.delete('devices', 'site1-d0')
    await s2.node.records.put('devices', 'site2-d1', { site: 'site2', on: false })
    await s2.node.records.put('devices', 'site2-d3', { site: 'site2', on: true })
    const now = ['site1-d1', 'site1-d2', 'site2-d0', 'site2-d2', 'site2-d3']
    await eventually(async () => JSON.stringify([...(await all(hub.node, 'devices')).keys()].sort()) === JSON.stringify(now), 'the hub to follow the sites')
  })

  it('relay policy audience: a node carries only the streams it can read; a target that reaches the source only through it gets the data once another path exists', async () => {
    const alpha = await start('alpha')
    const gamma = await start('gamma', undefined, true, 'audience')
    const beta = await start('beta')
    running.push(alpha, gamma, beta)
    await gamma.node.peers.add(alpha.node.getMultiaddrs()[0])
    await beta.node.peers.add(gamma.node.getMultiaddrs()[0])
    await allKnown(alpha, gamma, beta)
    await alpha.node.registry.addRule({ from: { platform: 'alpha', collection: 'posts' }, to: { platform: 'beta', collection: 'posts' } })
    // a stream gamma can read: its own rule's, which it carries
    await alpha.node.registry.addRule({ from: { platform: 'alpha', collection: 'notes' }, to: { platform: 'gamma', collection: 'notes' } })
    for (let i = 0; i < 5; i++) await alpha.node.records.put('posts', `p${i}`, { body: `POSTBODY${i}` })
    await alpha.node.records.put('notes', 'n1', { text: 'for gamma' })
    await eventually(async () => (await all(gamma.node, 'notes')).size === 1, 'gamma to get its own rule\'s data')
    const streams = async (n: Running): Promise<string[]> => (await n.node.status()).origins.filter(o => o.stream !== undefined).map(o => o.stream?.role ?? '')
    await eventually(async () => (await gamma.node.status()).caughtUp, 'gamma to be caught up: it lacks nothing it carries')
    expect((await gamma.node.status()).relay).toBe('audience')
    expect(await streams(gamma)).toEqual(['target'])
    expect(await dbText(gamma.node)).not.toMatch(/POSTBODY/)
    // beta reaches alpha only through gamma, which does not carry beta's stream: nothing yet
    expect((await all(beta.node, 'posts')).size).toBe(0)
    // another path, through a node that relays everything
    const delta = await start('delta')
    running.push(delta)
    await delta.node.peers.add(alpha.node.getMultiaddrs()[0])
    await beta.node.peers.add(delta.node.getMultiaddrs()[0])
    await eventually(async () => (await all(beta.node, 'posts')).size === 5, 'beta to get the posts through delta')
    expect(await streams(delta)).toEqual(expect.arrayContaining(['relay']))
    expect(await streams(gamma)).toEqual(['target'])
  })

  it('a rule created while its source is offline: its target says it waits for the source\'s key, and gets the data once the source is back', async () => {
    const [alpha, gamma, beta] = await line('alpha', 'gamma', 'beta')
    for (let i = 0; i < 5; i++) await alpha.node.records.put('posts', `p${i}`, { title: `post ${i}` })
    await alpha.node.stop()
    // the rule is made on gamma while alpha is down: alpha has never seen it, so its stream does not exist
    const rule = await gamma.node.registry.addRule({ from: { platform: 'alpha', collection: 'posts' }, to: { platform: 'beta', collection: 'posts' } })
    await eventually(() => beta.node.registry.rules().length === 1, 'beta to learn the rule')
    const ruleOn = async (n: Running) => (await n.node.status()).rules.find(r => r.id === rule.id)
    await eventually(async () => (await ruleOn(beta))?.waitingForKey !== undefined, 'beta to report the rule waiting for alpha\'s key')
    expect(await ruleOn(beta)).toMatchObject({ local: true, backfilled: false, waitingForKey: ['alpha'], applied: 0 })
    expect((await all(beta.node, 'posts')).size).toBe(0)
    // alpha comes back (a new address: it dials gamma), learns the rule from gamma, fills the stream and seals its key to beta
    const back = await start('alpha', alpha.dir)
    running.push(back)
    await back.node.peers.add(gamma.node.getMultiaddrs()[0])
    await eventually(async () => (await all(beta.node, 'posts')).size === 5, 'beta to get the posts once alpha is back', 30_000)
    await eventually(async () => (await ruleOn(beta))?.backfilled === true, 'the rule backfilled on beta')
    expect((await ruleOn(beta))?.waitingForKey).toBeUndefined()
    expect((await ruleOn(beta))?.applied).toBe(5)
  })

  it('records updated while the source fills a mirror\'s stream reach the target in their newest state', async () => {
    const [alpha, beta] = await star('alpha', 'beta')
    const n = 4000
    await alpha.node.records.import('items', Array.from({ length: n }, (_, i) => ({ id: `i${String(i).padStart(5, '0')}`, value: { rev: 0, i } })))
    await alpha.node.registry.addRule({ from: { platform: 'alpha', collection: 'items' }, to: { platform: 'beta', collection: 'items' }, mode: 'mirror' })
    // every record changes while the fill runs through them, in small batches (each its own transaction)
    for (let from = n - 1; from >= 0; from -= 100) {
      await alpha.node.records.import('items', Array.from({ length: Math.min(100, from + 1) }, (_, k) => ({ id: `i${String(from - k).padStart(5, '0')}`, value: { rev: 1, i: from - k } })))
    }
    await eventually(async () => {
      const held = await all(beta.node, 'items')
      return held.size === n && [...held.values()].every(v => v.rev === 1)
    }, 'beta to hold every record at rev 1', 60_000)
  })

  it('a stream starts a new epoch before its key has encrypted more entries than a key may; the target gets every epoch\'s key and all the records', async () => {
    const dir = await tempDir()
    const node = await createSyncNode({ dataDir: dir, key: KEY, name: 'alpha', listen: ['/ip4/127.0.0.1/tcp/0'], targetConnections: 0, streams: true, maxEntriesPerKey: 5 })
    await node.start()
    const alpha: Running = { node, dir }
    const beta = await start('beta')
    running.push(alpha, beta)
    await beta.node.peers.add(alpha.node.getMultiaddrs()[0])
    await allKnown(alpha, beta)
    await alpha.node.registry.addRule({ from: { platform: 'alpha', collection: 'posts' }, to: { platform: 'beta', collection: 'posts' } })
    for (let i = 0; i < 12; i++) await alpha.node.records.put('posts', `p${i}`, { n: i })
    await eventually(async () => (await all(beta.node, 'posts')).size === 12, 'beta to hold the twelve posts')
    // the entries of the stream, as alpha stores them: the epoch of each is in clear
    const stream = ruleStreamId(alpha.node.registry.rules()[0])
    let perEpoch = await entriesPerEpoch(alpha.node, `${alpha.node.peerId}/${stream}`)
    expect([...perEpoch.values()].reduce((a, b) => a + b, 0)).toBe(12)
    expect(perEpoch.size).toBeGreaterThanOrEqual(3)
    for (const n of perEpoch.values()) expect(n).toBeLessThanOrEqual(5)
    // beta holds an envelope of every epoch
    const ids = await keyRecordIds(beta.node)
    for (const epoch of perEpoch.keys()) expect(ids).toContain(`${alpha.node.peerId}/${stream}/${epoch}/${beta.node.peerId}`)
    // the count holds across a restart: the next writes fill the current epoch up to the limit, then a new one begins
    await alpha.node.stop()
    const again = await createSyncNode({ dataDir: dir, key: KEY, name: 'alpha', listen: ['/ip4/127.0.0.1/tcp/0'], targetConnections: 0, streams: true, maxEntriesPerKey: 5 })
    await again.start()
    running.push({ node: again, dir })
    await again.peers.add(beta.node.getMultiaddrs()[0])
    for (let i = 12; i < 20; i++) await again.records.put('posts', `p${i}`, { n: i })
    await eventually(async () => (await all(beta.node, 'posts')).size === 20, 'beta to hold the twenty posts')
    perEpoch = await entriesPerEpoch(again, `${alpha.node.peerId}/${stream}`)
    expect([...perEpoch.values()].reduce((a, b) => a + b, 0)).toBe(20)
    for (const n of perEpoch.values()) expect(n).toBeLessThanOrEqual(5)
  })

  it('a source restored from a backup goes on under a new epoch above every one it had, once its stream comes back: the target reads what it writes next', async () => {
    const { open, backup, restore } = await restorable({ maxEntriesPerKey: 4 })
    let alpha = await open()
    const beta = await start('beta')
    running.push(beta)
    await beta.node.peers.add(alpha.getMultiaddrs()[0])
    await eventually(() => alpha.registry.platforms().length === 2 && beta.node.registry.platforms().length === 2, 'two platforms everywhere')
    await alpha.registry.addRule({ from: { platform: 'alpha', collection: 'posts' }, to: { platform: 'beta', collection: 'posts' } })
    for (let i = 0; i < 3; i++) await alpha.records.put('posts', `p${i}`, { n: i })
    await eventually(async () => (await all(beta.node, 'posts')).size === 3, 'beta to hold three posts')
    await alpha.stop()
    await backup()
    // after the backup: more writes, and a second epoch whose key the backup does not have
    alpha = await open(beta.node)
    for (let i = 3; i < 7; i++) await alpha.records.put('posts', `p${i}`, { n: i })
    await eventually(async () => (await all(beta.node, 'posts')).size === 7, 'beta to hold seven posts')
    const stream = `${alpha.peerId}/${ruleStreamId(alpha.registry.rules()[0])}`
    const held = (await alpha.status()).origins.find(o => o.origin === stream)?.seq ?? 0
    await alpha.stop()
    await restore()
    alpha = await open(beta.node)
    // it takes its stream back from beta before writing again (docs/operators-guide.md, "Backup and restore")
    await eventually(async () => ((await alpha.status()).origins.find(o => o.origin === stream)?.seq ?? 0) >= held, 'alpha to take its stream back')
    await alpha.records.put('posts', 'after', { n: 99 })
    await eventually(async () => (await all(beta.node, 'posts')).get('after')?.n === 99, 'beta to read what alpha wrote after the restore', 20_000)
    expect((await beta.node.status()).rules[0].unreadable).toBeUndefined()
  })

  it('a platform that leaves a rule\'s source group and comes back: what it wrote and deleted while out is sent then, also after a restart while out', async () => {
    const hub = await start('hub')
    let site = await start('site1')
    running.push(hub, site)
    await site.node.peers.add(hub.node.getMultiaddrs()[0])
    await allKnown(hub, site)
    const tag = async (tags: string[]): Promise<void> => {
      const current = hub.node.registry.platforms().find(p => p.name === 'site1')
      if (current === undefined) throw new Error('no platform site1')
      await hub.node.registry.addPlatform({ ...current, tags })
      await eventually(() => [hub, site].every(n => JSON.stringify(n.node.registry.platforms().find(p => p.name === 'site1')?.tags ?? []) === JSON.stringify(tags)), `site1's tags ${tags.join() || 'none'} everywhere`)
    }
    const ids = async (): Promise<string> => [...(await all(hub.node, 'sensors')).keys()].sort().join()
    await tag(['edge'])
    const rule = await hub.node.registry.addRule({ from: { tag: 'edge', collection: 'sensors' }, to: { platform: 'hub', collection: 'sensors' } })
    await site.node.records.put('sensors', 's1', { n: 1 })
    await eventually(async () => await ids() === 's1', 's1 on the hub')
    // out of the group: its writes go into no stream; back in it, its stream is filled with them
    await tag([])
    await site.node.records.put('sensors', 's2', { n: 2 })
    await site.node.records.put('sensors', 's1', { n: 10 })
    await tag(['edge'])
    await eventually(async () => await ids() === 's1,s2' && (await all(hub.node, 'sensors')).get('s1')?.n === 10, 'what site1 wrote while out on the hub')
    // out again, and restarted while out: back in the group, what it wrote before and after the restart is sent
    await tag([])
    await site.node.records.put('sensors', 's3', { n: 3 })
    await site.node.records.delete('sensors', 's2')
    await site.node.stop()
    site = await start('site1', site.dir)
    running.push(site)
    await site.node.peers.add(hub.node.getMultiaddrs()[0])
    await site.node.records.put('sensors', 's4', { n: 4 })
    await tag(['edge'])
    await eventually(async () => await ids() === 's1,s3,s4', 'what site1 wrote and deleted while out, across its restart, on the hub')
    await eventually(async () => (await hub.node.status()).rules.find(r => r.id === rule.id)?.backfilled === true, 'the rule backfilled on the hub')
  })

  it('a target that passed over entries of a stream for want of its key is not backfilled until it has read the stream again', async () => {
    const alpha = await start('alpha')
    running.push(alpha)
    for (let i = 0; i < 5; i++) await alpha.node.records.put('posts', `p${i}`, { n: i })
    // a rule for a target that is not there yet: alpha fills the stream, and seals its key to beta once beta registers
    const rule = await alpha.node.registry.addRule({ from: { platform: 'alpha', collection: 'posts' }, to: { platform: 'beta', collection: 'posts' } })
    const beta = await start('beta')
    running.push(beta)
    // hold beta's reading again of the stream (once the key arrived) until its status is read
    const ingestor = (beta.node as unknown as { ingestor: { clearAwaitingKey: (id: string) => Promise<void> } }).ingestor
    const clear = ingestor.clearAwaitingKey.bind(ingestor)
    let held: (() => void) | undefined
    let release: () => void = () => {}
    const released = new Promise<void>(resolve => { release = resolve })
    ingestor.clearAwaitingKey = async (id: string): Promise<void> => {
      held = () => {}
      await released
      await clear(id)
    }
    await beta.node.peers.add(alpha.node.getMultiaddrs()[0])
    try {
      await eventually(() => held !== undefined, 'beta to get the key after entries it passed over')
      const st = (await beta.node.status()).rules.find(r => r.id === rule.id)
      expect(st?.waitingForKey).toBeUndefined()
      expect(st?.backfilled).toBe(false)
    } finally {
      release()
    }
    await eventually(async () => (await beta.node.status()).rules.find(r => r.id === rule.id)?.backfilled === true && (await all(beta.node, 'posts')).size === 5, 'the rule backfilled on beta, with the posts')
  })

  it('a rule changed on its source side (a rename) rewrites what it placed on a merge target, from one source and from a group', async () => {
    const [hub, s1, s2] = await star('hub', 'site1', 'site2')
    const one = await hub.node.registry.addRule({ from: { platform: 'site1', collection: 'things' }, to: { platform: 'hub', collection: 'one' } })
    const group = await hub.node.registry.addRule({ from: { platform: '*', collection: 'things' }, to: { platform: 'hub', collection: 'group' } })
    await s1.node.records.put('things', 't1', { v: 'a' })
    await s2.node.records.put('things', 't2', { v: 'b' })
    const ready = async (id: string): Promise<boolean> => (await hub.node.status()).rules.find(r => r.id === id)?.backfilled === true
    await eventually(async () => (await all(hub.node, 'one')).get('t1')?.v === 'a' && (await all(hub.node, 'group')).size === 2 && await ready(one.id) && await ready(group.id), 'the records on the hub')
    // the rename runs on the sources: each sends its records again in the rule's new stream
    await hub.node.registry.updateRule?.(one.id, { rename: { v: 'w' } })
    await hub.node.registry.updateRule?.(group.id, { rename: { v: 'w' } })
    await eventually(async () => JSON.stringify(Object.fromEntries(await all(hub.node, 'one'))) === JSON.stringify({ t1: { w: 'a' } }) && await ready(one.id), 'the single-source rule re-evaluated')
    await eventually(async () => JSON.stringify(Object.fromEntries(await all(hub.node, 'group'))) === JSON.stringify({ t1: { w: 'a' }, t2: { w: 'b' } }) && await ready(group.id), 'the group rule re-evaluated')
    // the same writes, no conflict
    expect((await hub.node.records.get('group', 't2'))?.version.origin).toBe(s2.node.peerId)
    for (const r of [one, group]) expect((await hub.node.registry.conflicts!(r.id, 50)).total).toBe(0)
    // changed back: the source's earlier stream, which it fills again with what it wrote meanwhile
    await s1.node.records.put('things', 't3', { v: 'c' })
    await eventually(async () => (await all(hub.node, 'one')).get('t3')?.w === 'c', 't3 on the hub')
    await hub.node.registry.updateRule?.(one.id, { rename: null })
    await eventually(async () => JSON.stringify(Object.fromEntries(await all(hub.node, 'one'))) === JSON.stringify({ t1: { v: 'a' }, t3: { v: 'c' } }) && await ready(one.id), 'the rule changed back, re-evaluated')
    expect((await hub.node.registry.conflicts!(one.id, 50)).total).toBe(0)
  })

  it('a record deleted or no longer matching right after its rule changed, before the new stream\'s fill reached it, leaves the targets that got it from the earlier stream', async () => {
    const [alpha, beta] = await star('alpha', 'beta')
    const n = 2000
    const id = (i: number): string => `i${String(i).padStart(5, '0')}`
    await alpha.node.records.import('items', Array.from({ length: n }, (_, i) => ({ id: id(i), value: { kind: 'item', i } })))
    const rule = await alpha.node.registry.addRule({ from: { platform: 'alpha', collection: 'items' }, to: { platform: 'beta', collection: 'items' }, mode: 'mirror', where: { kind: 'item' } })
    await eventually(async () => (await all(beta.node, 'items')).size === n, 'beta to hold every item', 30_000)
    // a new stream, filled in chunks from the first id: the last records change before the fill reaches them
    await alpha.node.registry.updateRule(rule.id, { where: { kind: { $eq: 'item' } } })
    await alpha.node.records.delete('items', id(n - 1))
    await alpha.node.records.put('items', id(n - 2), { kind: 'other', i: n - 2 })
    await alpha.node.records.put('items', 'marker', { kind: 'item', i: -1 })
    await eventually(async () => (await all(beta.node, 'items')).has('marker'), 'beta to read the new stream')
    await eventually(async () => (await beta.node.status()).rules.find(r => r.id === rule.id)?.backfilled === true && JSON.stringify(beta.node.registry.rule(rule.id)?.where) === '{"kind":{"$eq":"item"}}', 'beta to have read the whole new stream', 30_000)
    const held = await all(beta.node, 'items')
    expect(held.has(id(n - 1))).toBe(false)
    expect(held.has(id(n - 2))).toBe(false)
    expect(held.size).toBe(n - 1)
  })

  it('a rule changed back to its earlier source parts: its earlier stream is brought up to date, so a target that reads it from its start gets the records as they are now', async () => {
    const [alpha, beta, gamma] = await star('alpha', 'beta', 'gamma')
    const rule = await alpha.node.registry.addRule({ from: { platform: 'alpha', collection: 'posts' }, to: { platform: 'beta', collection: 'posts' }, mode: 'mirror', where: { kind: 'post' } })
    for (let i = 0; i < 4; i++) await alpha.node.records.put('posts', `p${i}`, { kind: 'post', rev: 0 })
    await eventually(async () => (await all(beta.node, 'posts')).size === 4, 'beta to hold the first posts')
    // another `where` that matches the same records: the rule's source parts change, and so does its stream
    await alpha.node.registry.updateRule(rule.id, { where: { kind: { $eq: 'post' } } })
    await alpha.node.records.put('posts', 'p0', { kind: 'post', rev: 1 })
    await alpha.node.records.put('posts', 'p1', { kind: 'post', rev: 1 })
    await alpha.node.records.delete('posts', 'p2')
    await alpha.node.records.put('posts', 'p4', { kind: 'post', rev: 1 })
    const now = { p0: { kind: 'post', rev: 1 }, p1: { kind: 'post', rev: 1 }, p3: { kind: 'post', rev: 0 }, p4: { kind: 'post', rev: 1 } }
    await eventually(async () => await postsText(beta) === JSON.stringify(now), 'beta to hold the posts as they are after the change')
    // back to the first `where`: the rule's first stream again, which did not get what was written meanwhile
    await alpha.node.registry.updateRule(rule.id, { where: { kind: 'post' } })
    await alpha.node.records.put('posts', 'p5', { kind: 'post', rev: 2 })
    const then = JSON.stringify({ ...now, p5: { kind: 'post', rev: 2 } })
    await eventually(async () => await postsText(beta) === then, 'beta to hold the posts as they are now')
    // a new target reads that stream from its start
    await alpha.node.registry.updateRule(rule.id, { to: { platform: 'gamma', collection: 'posts' } })
    await eventually(async () => (await all(gamma.node, 'posts')).has('p5'), 'gamma to read the stream')
    const ruleOn = async (n: Running) => (await n.node.status()).rules.find(r => r.id === rule.id)
    await eventually(async () => (await ruleOn(gamma))?.backfilled === true, 'gamma to have read the whole stream')
    expect(await postsText(gamma)).toBe(then)
  })

  it('a rule changed while its source is offline, and changed back once it is back: the source brings the stream it sends again up to date', async () => {
    const [alpha, beta, gamma] = await line('alpha', 'beta', 'gamma')
    const rule = await alpha.node.registry.addRule({ from: { platform: 'alpha', collection: 'posts' }, to: { platform: 'beta', collection: 'posts' }, mode: 'mirror', where: { kind: 'post' } })
    for (let i = 0; i < 3; i++) await alpha.node.records.put('posts', `p${i}`, { kind: 'post', rev: 0 })
    await eventually(async () => (await all(beta.node, 'posts')).size === 3, 'beta to hold the first posts')
    await alpha.node.stop()
    // changed on beta while alpha is down: alpha learns it when it is back, and no longer sends the first stream
    await beta.node.registry.updateRule(rule.id, { where: { kind: { $eq: 'post' } } })
    const back = await start('alpha', alpha.dir)
    running.push(back)
    await back.node.peers.add(beta.node.getMultiaddrs()[0])
    await eventually(() => JSON.stringify(back.node.registry.rule(rule.id)?.where) === '{"kind":{"$eq":"post"}}', 'alpha to learn the change')
    await back.node.records.put('posts', 'p0', { kind: 'post', rev: 1 })
    await back.node.records.delete('posts', 'p1')
    await back.node.records.put('posts', 'p3', { kind: 'post', rev: 1 })
    const now = { p0: { kind: 'post', rev: 1 }, p2: { kind: 'post', rev: 0 }, p3: { kind: 'post', rev: 1 } }
    await eventually(async () => await postsText(beta) === JSON.stringify(now), 'beta to hold the posts as they are after the change')
    // back to the first `where`, and a new target that reads the first stream from its start
    await back.node.registry.updateRule(rule.id, { where: { kind: 'post' }, to: { platform: 'gamma', collection: 'posts' } })
    await back.node.records.put('posts', 'p4', { kind: 'post', rev: 2 })
    const then = JSON.stringify({ ...now, p4: { kind: 'post', rev: 2 } })
    await eventually(async () => (await all(gamma.node, 'posts')).has('p4'), 'gamma to read the stream')
    await eventually(async () => (await gamma.node.status()).rules.find(r => r.id === rule.id)?.backfilled === true, 'gamma to have read the whole stream')
    expect(await postsText(gamma)).toBe(then)
  })

  it('records written while a new rule\'s stream is filled that the rule never sent put nothing in its stream when they are deleted or do not match', async () => {
    const [alpha, beta] = await star('alpha', 'beta')
    const n = 2000
    await alpha.node.records.import('items', Array.from({ length: n }, (_, i) => ({ id: `i${String(i).padStart(5, '0')}`, value: { kind: 'item', i } })))
    await alpha.node.records.put('items', 'zz-gone', { kind: 'other' })
    const rule = await alpha.node.registry.addRule({ from: { platform: 'alpha', collection: 'items' }, to: { platform: 'beta', collection: 'items' }, mode: 'mirror', where: { kind: 'item' } })
    // the fill reads from the first id: these change before it reaches them
    await alpha.node.records.delete('items', 'zz-gone')
    await alpha.node.records.put('items', 'zz-other', { kind: 'other' })
    await eventually(async () => (await all(beta.node, 'items')).size === n && (await beta.node.status()).rules.find(r => r.id === rule.id)?.backfilled === true, 'beta to hold every item', 30_000)
    const streamLog = `${alpha.node.peerId}/${ruleStreamId((await alpha.node.registry.rule(rule.id))!)}`
    expect((await alpha.node.status()).origins.find(o => o.origin === streamLog)?.seq).toBe(n)
  })

  it('a restored source whose stream comes back in many batches starts one new epoch, not one per batch', async () => {
    const { open, backup, restore } = await restorable()
    let alpha = await open()
    const beta = await start('beta')
    running.push(beta)
    await beta.node.peers.add(alpha.getMultiaddrs()[0])
    await eventually(() => alpha.registry.platforms().length === 2 && beta.node.registry.platforms().length === 2, 'two platforms everywhere')
    await alpha.registry.addRule({ from: { platform: 'alpha', collection: 'posts' }, to: { platform: 'beta', collection: 'posts' } })
    await alpha.records.put('posts', 'first', { n: 0 })
    await eventually(async () => (await all(beta.node, 'posts')).size === 1, 'beta to hold the first post')
    await alpha.stop()
    await backup()
    alpha = await open(beta.node)
    const n = 3000
    await alpha.records.import('posts', Array.from({ length: n }, (_, i) => ({ id: `p${i}`, value: { n: i } })))
    await eventually(async () => (await all(beta.node, 'posts')).size === n + 1, 'beta to hold every post', 30_000)
    const stream = `${alpha.peerId}/${ruleStreamId(alpha.registry.rules()[0])}`
    await alpha.stop()
    await restore()
    alpha = await open(beta.node)
    await eventually(async () => ((await alpha.status()).origins.find(o => o.origin === stream)?.seq ?? 0) >= n + 1, 'alpha to take its stream back')
    await alpha.records.put('posts', 'after', { n: -1 })
    await eventually(async () => (await all(beta.node, 'posts')).get('after')?.n === -1, 'beta to read what alpha wrote after the restore', 20_000)
    expect([...(await entriesPerEpoch(alpha, stream)).keys()].sort()).toEqual([1, 2])
  })

  it('a source restored from a backup taken before a target left its rule starts its new epoch above the one the backup missed: the remaining target reads what it writes next', async () => {
    const { open, backup, restore, first: opened, beta, gamma } = await restorableWithTwo()
    let alpha = opened
    const rule = await alpha.registry.addRule({ from: { platform: 'alpha', collection: 'posts' }, to: { platform: '*', collection: 'posts' } })
    await alpha.records.put('posts', 'p0', { n: 0 })
    await eventually(async () => (await all(beta.node, 'posts')).size === 1 && (await all(gamma.node, 'posts')).size === 1, 'beta and gamma to hold p0')
    await alpha.stop()
    await backup()
    // after the backup: beta leaves the rule's targets, so the stream goes on under epoch 2, sealed to gamma only
    alpha = await open(beta.node, gamma.node)
    await alpha.registry.updateRule(rule.id, { to: { platform: 'gamma', collection: 'posts' } })
    const stream = ruleStreamId(alpha.registry.rule(rule.id)!)
    await eventually(async () => (await keyRecordIds(gamma.node)).includes(`${alpha.peerId}/${stream}/2/${gamma.node.peerId}`) && (await keyRecordIds(beta.node)).includes(`${alpha.peerId}/${stream}/2/${gamma.node.peerId}`), 'the envelope of epoch 2 everywhere')
    await alpha.stop()
    await restore()
    // restored: its database has epoch 1 only; the registry (the rule's new targets, the envelopes of epoch 2) comes back
    alpha = await open(beta.node, gamma.node)
    await eventually(async () => alpha.registry.rule(rule.id)?.to.platform === 'gamma' && (await keyRecordIds(alpha)).includes(`${alpha.peerId}/${stream}/2/${gamma.node.peerId}`), 'alpha to take its registry back')
    await alpha.records.put('posts', 'after', { n: 1 })
    await eventually(async () => (await all(gamma.node, 'posts')).get('after')?.n === 1, 'gamma to read what alpha wrote after the restore', 20_000)
    expect((await gamma.node.status()).rules[0].unreadable).toBeUndefined()
    expect((await all(beta.node, 'posts')).has('after')).toBe(false)
  })

  it('a source restored from a backup that lacks an epoch\'s key derives it again when its stream comes back: a record sent only under that epoch, deleted after the restore, leaves the target', async () => {
    const { open, backup, restore } = await restorable({ maxEntriesPerKey: 4 })
    let alpha = await open()
    const beta = await start('beta')
    running.push(beta)
    await beta.node.peers.add(alpha.getMultiaddrs()[0])
    await eventually(() => alpha.registry.platforms().length === 2 && beta.node.registry.platforms().length === 2, 'two platforms everywhere')
    await alpha.registry.addRule({ from: { platform: 'alpha', collection: 'posts' }, to: { platform: 'beta', collection: 'posts' }, mode: 'mirror', where: { status: 'published' } })
    // p0 is a draft when the backup is taken: the stream never sent it
    await alpha.records.put('posts', 'p0', { status: 'draft' })
    await alpha.records.put('posts', 'a', { status: 'published' })
    await eventually(async () => (await all(beta.node, 'posts')).has('a'), 'beta to hold a')
    await alpha.stop()
    await backup()
    // after the backup: epoch 1 fills up, and p0, published, is sent under epoch 2 only
    alpha = await open(beta.node)
    for (const id of ['b', 'c', 'd']) await alpha.records.put('posts', id, { status: 'published' })
    await alpha.records.put('posts', 'p0', { status: 'published' })
    await eventually(async () => (await all(beta.node, 'posts')).has('p0'), 'beta to hold p0')
    const stream = `${alpha.peerId}/${ruleStreamId(alpha.registry.rules()[0])}`
    expect([...(await entriesPerEpoch(alpha, stream)).keys()].sort()).toEqual([1, 2])
    const held = (await alpha.status()).origins.find(o => o.origin === stream)?.seq ?? 0
    await alpha.stop()
    await restore()
    // restored: the key of epoch 1 only, and p0 a draft; the stream comes back from beta
    alpha = await open(beta.node)
    await eventually(async () => ((await alpha.status()).origins.find(o => o.origin === stream)?.seq ?? 0) >= held, 'alpha to take its stream back')
    await alpha.records.delete('posts', 'p0')
    await alpha.records.put('posts', 'after', { status: 'published' })
    await eventually(async () => (await all(beta.node, 'posts')).has('after'), 'beta to read what alpha wrote after the restore', 20_000)
    // the delete went before the write, in the same stream: beta holds no p0
    expect([...(await all(beta.node, 'posts')).keys()].sort()).toEqual(['a', 'after', 'b', 'c', 'd'])
    expect((await beta.node.status()).rules[0].unreadable).toBeUndefined()
  })

  it('a source restored from a backup taken before a target left its rule recovers the key of the epoch that began then, seals it to no one who left, and the remaining target drops what it deletes', async () => {
    const { alpha, beta, gamma, stream } = await restoredAfterTargetLeft()
    await alpha.records.delete('posts', 'p0')
    await alpha.records.put('posts', 'after', { status: 'published' })
    await eventually(async () => (await all(gamma.node, 'posts')).has('after'), 'gamma to read what alpha wrote after the restore', 20_000)
    expect([...(await all(gamma.node, 'posts')).keys()].sort()).toEqual(['a', 'after'])
    expect((await gamma.node.status()).rules[0].unreadable).toBeUndefined()
    // beta, out of the audience since epoch 2, holds no envelope of it, nor p0 or what came after
    expect((await keyRecordIds(beta.node)).filter(id => id.startsWith(`${alpha.peerId}/${stream}/2/`))).toEqual([`${alpha.peerId}/${stream}/2/${gamma.node.peerId}`])
    expect([...(await all(beta.node, 'posts')).keys()]).toEqual(['a'])
  })

  it('a target that left a rule before its source was restored and is added again after reads the stream whole: it gets the key of the epoch the source recovered', async () => {
    const { alpha, beta, gamma, rule, stream } = await restoredAfterTargetLeft()
    await alpha.records.put('posts', 'after', { status: 'published' })
    await eventually(async () => (await all(gamma.node, 'posts')).has('after'), 'gamma to read what alpha wrote after the restore', 20_000)
    expect([...(await all(beta.node, 'posts')).keys()]).toEqual(['a'])
    // beta is a target again (into another collection: a new pass on beta, the same stream): a member reads
    // the stream from its start, p0 under the recovered epoch 2 included
    await alpha.registry.updateRule(rule.id, { to: { platform: '*', collection: 'articles' } })
    expect(ruleStreamId(alpha.registry.rule(rule.id)!)).toBe(stream)
    await eventually(async () => (await idsOf(beta, 'articles')) === 'a,after,p0', 'beta to read the whole stream', 20_000)
    expect((await beta.node.status()).rules[0].unreadable).toBeUndefined()
    expect((await keyRecordIds(beta.node))).toContain(`${alpha.peerId}/${stream}/2/${beta.node.peerId}`)
  })

  it('a mirror whose filter narrows drops the records that no longer match, though nothing writes them: the new stream sends what the earlier one sent and the new one does not', async () => {
    const [alpha, beta] = await star('alpha', 'beta')
    const rule = await alpha.node.registry.addRule({ from: { platform: 'alpha', collection: 'items' }, to: { platform: 'beta', collection: 'items' }, mode: 'mirror', where: { kind: { $in: ['a', 'b'] } } })
    await alpha.node.records.put('items', 'pa', { kind: 'a' })
    await alpha.node.records.put('items', 'pb', { kind: 'b' })
    await alpha.node.records.put('items', 'pc', { kind: 'c' })
    await eventually(async () => (await all(beta.node, 'items')).size === 2, 'beta to hold pa and pb')
    await alpha.node.registry.updateRule(rule.id, { where: { kind: 'a' } })
    await eventually(async () => [...(await all(beta.node, 'items')).keys()].join() === 'pa', 'beta to hold pa only', 20_000)
    // the stream of the changed rule names no record neither filter sent: pc is in none of its entries
    const stream = `${alpha.node.peerId}/${ruleStreamId(alpha.node.registry.rule(rule.id)!)}`
    expect((await alpha.node.status()).origins.find(o => o.origin === stream)?.seq).toBe(2)
  })

  it('a mirror whose filter narrows as it moves to another target: the new target is not told of records only the earlier one got', async () => {
    const [alpha, beta, gamma] = await star('alpha', 'beta', 'gamma')
    const rule = await alpha.node.registry.addRule({ from: { platform: 'alpha', collection: 'items' }, to: { platform: 'beta', collection: 'items' }, mode: 'mirror', where: { kind: { $in: ['a', 'b'] } } })
    await alpha.node.records.put('items', 'pa', { kind: 'a' })
    await alpha.node.records.put('items', 'pb', { kind: 'b' })
    await eventually(async () => (await all(beta.node, 'items')).size === 2, 'beta to hold pa and pb')
    await alpha.node.registry.updateRule(rule.id, { to: { platform: 'gamma', collection: 'items' }, where: { kind: 'a' } })
    await eventually(async () => [...(await all(gamma.node, 'items')).keys()].join() === 'pa', 'gamma to hold pa', 20_000)
    const streamId = ruleStreamId(alpha.node.registry.rule(rule.id)!)
    const stream = `${alpha.node.peerId}/${streamId}`
    await eventually(async () => await streamFilled(alpha.node, streamId), 'the new stream filled')
    // pb was sent to beta only: the stream gamma reads names pa alone
    expect((await alpha.node.status()).origins.find(o => o.origin === stream)?.seq).toBe(1)
  })

  it('a mirror whose filter narrows as it goes back to a target that left it: the target is not told of records written after it left', async () => {
    const [alpha, beta, gamma] = await star('alpha', 'beta', 'gamma')
    const rule = await alpha.node.registry.addRule({ from: { platform: 'alpha', collection: 'items' }, to: { platform: '*', collection: 'items' }, mode: 'mirror', where: { kind: { $in: ['a', 'b'] } } })
    await alpha.node.records.put('items', 'pa', { kind: 'a' })
    await eventually(async () => (await all(beta.node, 'items')).size === 1 && (await all(gamma.node, 'items')).size === 1, 'beta and gamma to hold pa')
    // gamma leaves: the stream goes on under epoch 2, which gamma never gets, and pb is written under it
    await alpha.node.registry.updateRule(rule.id, { to: { platform: 'beta', collection: 'items' } })
    const earlier = ruleStreamId(alpha.node.registry.rule(rule.id)!)
    await eventually(async () => (await keyRecordIds(alpha.node)).includes(`${alpha.node.peerId}/${earlier}/2/${beta.node.peerId}`), 'the key of epoch 2 sealed to beta')
    await alpha.node.records.put('items', 'pb', { kind: 'b' })
    await eventually(async () => (await all(beta.node, 'items')).size === 2, 'beta to hold pa and pb')
    await alpha.node.registry.updateRule(rule.id, { to: { platform: 'gamma', collection: 'items' }, where: { kind: 'a' } })
    const streamId = ruleStreamId(alpha.node.registry.rule(rule.id)!)
    await eventually(async () => await streamFilled(alpha.node, streamId), 'the new stream filled')
    await eventually(async () => [...(await all(gamma.node, 'items')).keys()].join() === 'pa', 'gamma to hold pa')
    // pb was written under a key gamma never held: the stream gamma reads names pa alone
    expect((await alpha.node.status()).origins.find(o => o.origin === `${alpha.node.peerId}/${streamId}`)?.seq).toBe(1)
  })

  it('a dry run of a mirror on the source into a collection of its own counts as deleted only the records the source does not produce', async () => {
    const alpha = await start('alpha')
    running.push(alpha)
    await allKnown(alpha)
    await alpha.node.records.put('posts', 'p1', { n: 1 })
    await alpha.node.records.put('posts', 'p2', { n: 2 })
    // copy holds p1 as the mirror would make it, and x, which no post produces
    await alpha.node.records.put('copy', 'p1', { n: 1 })
    await alpha.node.records.put('copy', 'x', { n: 0 })
    const report = await alpha.node.registry.dryRunRule!({ from: { platform: 'alpha', collection: 'posts' }, to: { platform: 'alpha', collection: 'copy' }, mode: 'mirror' })
    expect(report.targets).toEqual([expect.objectContaining({ platform: 'alpha', exact: true, matching: 2, creates: 1, updates: 1, deletes: 1 })])
  })

  it('a dry run of a rule reading a group of sources runs on each source of the group, counting its own records; elsewhere it says where', async () => {
    const [hub, s1] = await star('hub', 'site1')
    for (let i = 0; i < 3; i++) await s1.node.records.put('devices', `d${i}`, { temp: i })
    const spec = { from: { platform: '*', collection: 'devices' }, to: { platform: 'hub', collection: 'devices' }, where: { temp: { $gte: 1 } } }
    await expect(hub.node.registry.dryRunRule!(spec)).rejects.toMatchObject({ code: 'DRY_RUN_UNAVAILABLE', message: expect.stringContaining('site1') })
    const report = await s1.node.registry.dryRunRule!(spec)
    expect(report.rule.from.platform).toBe('*')
    expect(report.source).toMatchObject({ collection: 'devices', records: 3 })
    expect(report.source.note).toContain('site1')
    expect(report.targets).toEqual([expect.objectContaining({ platform: 'hub', collection: 'devices', exact: false, matching: 2, skipped: 1 })])
  })

  it('a rule from a node to itself applies what is written after its backfill, and what it writes goes on through the next rule\'s stream', async () => {
    const [alpha, beta] = await star('alpha', 'beta')
    const own = await alpha.node.registry.addRule({ from: { platform: 'alpha', collection: 'in' }, to: { platform: 'alpha', collection: 'out' } })
    await alpha.node.registry.addRule({ from: { platform: 'alpha', collection: 'out' }, to: { platform: 'beta', collection: 'copy' } })
    await eventually(async () => (await alpha.node.status()).rules.find(r => r.id === own.id)?.backfilled === true, 'the rule to alpha itself to be backfilled')
    await alpha.node.records.put('in', 'a', { n: 1 })
    await eventually(async () => (await all(alpha.node, 'out')).get('a')?.n === 1, 'alpha to copy the record to its own collection')
    await eventually(async () => (await all(beta.node, 'copy')).get('a')?.n === 1, 'beta to get it through the next rule')
    await alpha.node.records.delete('in', 'a')
    await eventually(async () => (await all(alpha.node, 'out')).size === 0 && (await all(beta.node, 'copy')).size === 0, 'the delete to follow')
  })

  it('a write that lost to a newer one on the target is logged as a conflict once, not again when the rule\'s new stream sends it after a change', async () => {
    const [alpha, beta] = await star('alpha', 'beta')
    await alpha.node.records.put('posts', 'p1', { title: 'from alpha', kind: 'post' })
    // beta's own write to the same id is newer than alpha's: a later millisecond (in the same one the clocks
    // tie, and the peer ids decide)
    const wall = Date.now()
    while (Date.now() <= wall + 1) await new Promise(resolve => setTimeout(resolve, 2))
    await beta.node.records.put('posts', 'p1', { title: 'from beta' })
    const rule = await alpha.node.registry.addRule({ from: { platform: 'alpha', collection: 'posts' }, to: { platform: 'beta', collection: 'posts' } })
    const backfilled = async (): Promise<boolean> => (await beta.node.status()).rules.find(r => r.id === rule.id)?.backfilled === true
    await eventually(async () => await backfilled() && (await beta.node.registry.conflicts!(rule.id, 50)).total === 1, 'beta to log the conflict')
    const [first] = (await beta.node.registry.conflicts!(rule.id, 50)).conflicts
    expect(first).toMatchObject({ id: 'p1', kind: 'local-write', winner: 'existing' })
    // beta restarts: what its conflict log holds is read back from disk
    await beta.node.stop()
    const again = await start('beta', beta.dir)
    running.push(again)
    beta.node = again.node
    await beta.node.peers.add(alpha.node.getMultiaddrs()[0])
    // a change on the source side: a new stream, whose fill sends alpha's write again
    await alpha.node.registry.updateRule(rule.id, { exclude: ['kind'] })
    const stream = ruleStreamId({ ...rule, exclude: ['kind'] })
    await eventually(async () => await streamFilled(alpha.node, stream), 'alpha to fill the rule\'s new stream')
    await alpha.node.records.put('posts', 'p2', { title: 'later', kind: 'post' })
    await eventually(async () => (await all(beta.node, 'posts')).get('p2')?.title === 'later' && await backfilled(), 'beta to read the new stream')
    expect((await all(beta.node, 'posts')).get('p1')).toEqual({ title: 'from beta' })
    const after = await beta.node.registry.conflicts!(rule.id, 50)
    expect(after.total).toBe(1)
    expect(after.conflicts).toEqual([first])
  })

  it('a record written again under a new epoch leaves no entry of the earlier one: the source, a relay and the target hold one entry per record, a delete included, and the target the newest values', async () => {
    // gamma reaches alpha only through beta, which relays the stream; alpha's key encrypts four entries at most
    const [alpha, beta, gamma] = await linked(['alpha', 'beta', 'gamma'], (i) => i - 1, { alpha: { maxEntriesPerKey: 4 } })
    const rule = await alpha.node.registry.addRule({ from: { platform: 'alpha', collection: 'posts' }, to: { platform: 'gamma', collection: 'posts' } })
    const streamId = ruleStreamId(rule)
    const streamLog = `${alpha.node.peerId}/${streamId}`
    await eventually(async () => await streamFilled(alpha.node, streamId), 'the stream filled')
    const ids = ['p0', 'p1', 'p2', 'p3']
    // epoch 1 holds the first writes; each round of rewrites fills the key and begins a new epoch
    for (let rev = 0; rev < 3; rev++) for (const id of ids) await alpha.node.records.put('posts', id, { rev, body: `REV${rev}${id}` })
    // a delete of a record whose newest entry is a put of an earlier epoch: a new epoch, and the delete is kept
    await alpha.node.records.delete('posts', 'p3')
    const stored = async (n: Running): Promise<string> => JSON.stringify([...(await entriesPerEpoch(n.node, streamLog))].sort((a, b) => a[0] - b[0]))
    // 13 entries written: 4 in each of epochs 1 to 3, the delete in epoch 4; what is left is each record's newest
    expect((await alpha.node.status()).origins.find(o => o.origin === streamLog)?.seq).toBe(13)
    expect(await stored(alpha)).toBe(JSON.stringify([[3, 3], [4, 1]]))
    await eventually(async () => {
      const held = await all(gamma.node, 'posts')
      return held.size === 3 && [...held.values()].every(v => v.rev === 2)
    }, 'gamma to hold p0 to p2 at their newest and not p3', 30_000)
    // the relay and the target drop what the origin attests gone: the same entries as the source
    for (const n of [beta, gamma]) await eventually(async () => await stored(n) === await stored(alpha), 'the relay and the target to hold one entry per record', 30_000)
    expect(Object.fromEntries(await all(gamma.node, 'posts'))).toEqual({ p0: { rev: 2, body: 'REV2p0' }, p1: { rev: 2, body: 'REV2p1' }, p2: { rev: 2, body: 'REV2p2' } })
    // every epoch's key was made when the count of entries it encrypted (not the live ones) reached the limit
    const epochs = (await keyRecordIds(gamma.node)).filter(id => id.startsWith(`${streamLog}/`) && id.endsWith(`/${gamma.node.peerId}`)).map(id => Number(id.split('/')[2])).sort()
    expect(epochs).toEqual([1, 2, 3, 4])
  })

  it('a target that joins after records were written again under new epochs reads each record once; the target that left keeps what it had and gets nothing new', async () => {
    const [alpha, beta, gamma] = await linked(['alpha', 'beta', 'gamma'], () => 0, { alpha: { maxEntriesPerKey: 3 } })
    const rule = await alpha.node.registry.addRule({ from: { platform: 'alpha', collection: 'posts' }, to: { platform: 'beta', collection: 'posts' } })
    const streamLog = `${alpha.node.peerId}/${ruleStreamId(rule)}`
    const ids = ['a', 'b', 'c']
    for (let rev = 0; rev < 4; rev++) for (const id of ids) await alpha.node.records.put('posts', id, { rev })
    await eventually(async () => [...(await all(beta.node, 'posts')).values()].filter(v => v.rev === 3).length === 3, 'beta to hold every post at rev 3')
    // gamma takes beta's place: it reads the stream from its start, where each record has one entry
    await alpha.node.registry.updateRule(rule.id, { to: { platform: 'gamma', collection: 'posts' } })
    await eventually(async () => (await gamma.node.status()).rules[0]?.backfilled === true && (await all(gamma.node, 'posts')).size === 3, 'gamma to read the stream', 30_000)
    expect(Object.fromEntries(await all(gamma.node, 'posts'))).toEqual({ a: { rev: 3 }, b: { rev: 3 }, c: { rev: 3 } })
    expect((await gamma.node.status()).rules[0].applied).toBe(3)
    // written after beta left, under an epoch beta holds no key of: gamma gets the put and the delete, beta keeps what it had
    await alpha.node.records.put('posts', 'a', { rev: 4 })
    await alpha.node.records.delete('posts', 'b')
    await eventually(async () => JSON.stringify(Object.fromEntries(await all(gamma.node, 'posts'))) === JSON.stringify({ a: { rev: 4 }, c: { rev: 3 } }), 'gamma to take the put and the delete')
    const stored = async (n: Running): Promise<number> => [...(await entriesPerEpoch(n.node, streamLog)).values()].reduce((x, y) => x + y, 0)
    expect(await stored(alpha)).toBe(3)
    for (const n of [beta, gamma]) await eventually(async () => await stored(n) === 3, 'the stream to hold one entry per record everywhere')
    expect(Object.fromEntries(await all(beta.node, 'posts'))).toEqual({ a: { rev: 3 }, b: { rev: 3 }, c: { rev: 3 } })
  })
  it('a group mirror whose target lacks the key of a source\'s new epoch keeps what that source sent through a sweep, though the entries of the earlier epoch are gone; it reads the new ones once the key is there', async () => {
    const [hub, alpha, beta] = await linked(['hub', 'alpha', 'beta'], () => 0, { alpha: { maxEntriesPerKey: 2 } })
    const tag = async (on: Running, name: string, tags: string[]): Promise<void> => {
      const current = on.node.registry.platforms().find(p => p.name === name)
      if (current === undefined) throw new Error(`no platform ${name}`)
      await on.node.registry.addPlatform({ ...current, tags })
    }
    for (const name of ['alpha', 'beta']) await tag(hub, name, ['edge'])
    await eventually(() => [hub, alpha, beta].every(n => n.node.registry.platforms().filter(p => p.tags?.includes('edge') === true).length === 2), 'alpha and beta tagged edge everywhere')
    const rule = await hub.node.registry.addRule({ from: { tag: 'edge', collection: 'devices' }, to: { platform: 'hub', collection: 'devices' }, mode: 'mirror' })
    await alpha.node.records.put('devices', 'a1', { n: 1 })
    await alpha.node.records.put('devices', 'a2', { n: 1 })
    await beta.node.records.put('devices', 'b1', { n: 1 })
    await eventually(async () => await idsOf(hub, 'devices') === 'a1,a2,b1' && (await hub.node.status()).rules[0]?.backfilled === true, 'the hub to mirror alpha and beta')
    // the hub is away while alpha writes a1 again, under epoch 2 (its key is full): its entry of epoch 1 is dropped
    await hub.node.stop()
    await alpha.node.records.put('devices', 'a1', { n: 2 })
    const streamLog = `${alpha.node.peerId}/${ruleStreamId(rule)}`
    expect(JSON.stringify([...await entriesPerEpoch(alpha.node, streamLog)])).toBe(JSON.stringify([[1, 1], [2, 1]]))
    // back, the hub reaches no node: a relay played by the test brings it alpha's stream, not alpha's registry (the key of epoch 2)
    const again = await start('hub', hub.dir)
    running.push(again)
    const held = (await again.node.status()).origins.find(o => o.origin === streamLog)?.seq ?? 0
    const log = (alpha.node as unknown as { changelog: ChangeLog }).changelog
    const batch = await log.readAttested(streamLog, held, 100, 1 << 20)
    if (batch === undefined) throw new Error('alpha serves nothing of its stream')
    const relay = new RawPeer(KEY)
    await relay.start()
    try {
      const session = await relay.session(again.node.getMultiaddrs()[0].toString(), { protocol: SYNC_PROTOCOL_STREAMS })
      session.framed.sendNow(encodeBatchFrame(streamLog, batch.fromSeq, batch.toSeq, batch.entries, batch.certs.map(c => encodeAttested({ ...c, live: undefined })), batch.updates.map(u => encodeAttested(u))))
      await eventually(async () => JSON.stringify([...await entriesPerEpoch(again.node, streamLog)]) === JSON.stringify([[1, 1], [2, 1]]), 'the hub to hold alpha\'s stream as alpha does')
    } finally {
      await relay.stop()
    }
    expect((await keyRecordIds(again.node)).filter(id => id.startsWith(`${streamLog}/2/`))).toEqual([])
    // beta leaves the group: the mirror removes what only beta sent, and keeps a1, whose entry it cannot read yet
    await tag(again, 'beta', [])
    await eventually(async () => !(await all(again.node, 'devices')).has('b1'), 'the hub to remove what only beta sent')
    expect(Object.fromEntries(await all(again.node, 'devices'))).toEqual({ a1: { n: 1 }, a2: { n: 1 } })
    // alpha's registry reaches the hub: with the key of epoch 2 it reads alpha's stream again
    await again.node.peers.add(alpha.node.getMultiaddrs()[0])
    await eventually(async () => (await all(again.node, 'devices')).get('a1')?.n === 2 && (await again.node.status()).rules[0]?.backfilled === true, 'the hub to read a1 under epoch 2')
    expect(Object.fromEntries(await all(again.node, 'devices'))).toEqual({ a1: { n: 2 }, a2: { n: 1 } })
  })

  /**
   * On alpha, a → b and b → a (keyed by `alt`, so a record of a names
   * another record of a), and a → beta; once all three are backfilled.
   */
  async function writesBackToItself (alpha: SyncNode, beta: SyncNode): Promise<{ toB: Rule, out: Rule }> {
    const toB = await alpha.registry.addRule({ from: { platform: 'alpha', collection: 'a' }, to: { platform: 'alpha', collection: 'b' } })
    const back = await alpha.registry.addRule({ from: { platform: 'alpha', collection: 'b' }, to: { platform: 'alpha', collection: 'a' }, key: 'alt' })
    const out = await alpha.registry.addRule({ from: { platform: 'alpha', collection: 'a' }, to: { platform: 'beta', collection: 'a' } })
    const ready = async (n: SyncNode, id: string): Promise<boolean> => (await n.status()).rules.find(r => r.id === id)?.backfilled === true
    await eventually(async () => await ready(alpha, toB.id) && await ready(alpha, back.id) && await ready(beta, out.id), 'the rules backfilled')
    return { toB, out }
  }

  it('a write that comes back to a collection through the node\'s own rules within one transaction is appended after what the transaction sent before in the same stream', async () => {
    const [alpha, beta] = await star('alpha', 'beta')
    // a → b and b → a (the key names another record) on alpha itself; a → beta, where the test reads what a's stream sent
    await writesBackToItself(alpha.node, beta.node)
    // one write: x in a, then x in b, then y in a (its alt), all in its transaction; a's stream sends x, then y
    await alpha.node.records.put('a', 'x', { alt: 'y' })
    await eventually(async () => (await all(alpha.node, 'a')).has('y'), 'alpha to write y through its own rules')
    await eventually(async () => [...(await all(beta.node, 'a')).keys()].sort().join() === 'x,y', 'beta to get x and y', 10_000)
  })

  it('a stream appended to twice in one transaction starts a new epoch before its key encrypts more entries than it may, counting what the transaction appended before', async () => {
    const [alpha, beta] = await linked(['alpha', 'beta'], () => 0, { alpha: { maxEntriesPerKey: 1 } })
    const { toB, out } = await writesBackToItself(alpha.node, beta.node)
    // one write, x in a, then y in a through b in the same transaction: a's streams are appended to twice
    await alpha.node.records.put('a', 'x', { alt: 'y' })
    await eventually(async () => [...(await all(beta.node, 'a')).keys()].sort().join() === 'x,y', 'beta to get x and y', 10_000)
    for (const rule of [toB, out]) {
      const perEpoch = await entriesPerEpoch(alpha.node, `${alpha.node.peerId}/${ruleStreamId(rule)}`)
      expect([...perEpoch.values()].reduce((a, b) => a + b, 0), `entries of ${rule.id}'s stream`).toBe(2)
      expect(Math.max(...perEpoch.values()), `entries of ${rule.id}'s stream under one epoch`).toBe(1)
    }
  })

  describe('two-way sync without echoes (streams.md §4a)', () => {
    /** How many entries the node stores of its own stream of the rule it is the source of. */
    async function ownStreamEntries (n: Running): Promise<number> {
      const rule = n.node.registry.rules().find(r => r.from.platform === n.node.name)!
      const perEpoch = await entriesPerEpoch(n.node, `${n.node.peerId}/${ruleStreamId(rule)}`)
      return [...perEpoch.values()].reduce((a, b) => a + b, 0)
    }

    /** Every node holds the same `events`, `size` of them. */
    async function converged (nodes: Running[], size: number): Promise<boolean> {
      const views = await Promise.all(nodes.map(async n => JSON.stringify([...(await all(n.node, 'events')).entries()].sort())))
      return views.every(v => v === views[0]) && (await all(nodes[0].node, 'events')).size === size
    }

    /** A node with rule streams in `region`. */
    async function startIn (name: string, region: string, at?: string): Promise<Running> {
      const dir = at ?? await tempDir()
      const node = await createSyncNode({ dataDir: dir, key: KEY, name, region, listen: ['/ip4/127.0.0.1/tcp/0'], targetConnections: 0, streams: true })
      await node.start()
      const r = { node, dir }
      running.push(r)
      return r
    }

    for (const count of [3, 5]) {
      it(`${count} nodes, one X:events → *:events rule each: each node's own stream holds only its own writes, and every node holds every record with its writer's identity`, async () => {
        const names = ['alpha', 'beta', 'gamma', 'delta', 'epsilon'].slice(0, count)
        const nodes = await star(...names)
        for (const n of nodes) await nodes[0].node.registry.addRule({ from: { platform: n.node.name, collection: 'events' }, to: { platform: '*', collection: 'events' } })
        await eventually(() => nodes.every(n => n.node.registry.rules().length === count), 'every node to know every rule')
        const perNode = 10
        for (let i = 0; i < perNode; i++) for (const n of nodes) await n.node.records.put('events', `${n.node.name}-${i}`, { n: i, by: n.node.name })
        await eventually(async () => await converged(nodes, count * perNode), `every node to hold the ${count * perNode} events`)
        // a node holds a record once it applied it, and what it appends to its streams for it is in the same
        // transaction: nothing more is appended once every node holds every record
        const entries = await Promise.all(nodes.map(ownStreamEntries))
        expect(entries, 'entries of each node\'s own stream').toEqual(nodes.map(() => perNode))
        for (const n of nodes) {
          const version = (await n.node.records.get('events', 'alpha-3'))?.version
          expect(version, `${n.node.name}'s version of alpha's write`).toEqual((await nodes[0].node.records.get('events', 'alpha-3'))?.version)
          const conflicts = (await Promise.all((await n.node.status()).rules.map(async r => (await n.node.registry.conflicts!(r.id, 50)).conflicts))).flat()
          expect(conflicts, `${n.node.name}'s conflicts`).toEqual([])
        }
      })
    }

    it('a delete made on a node of a record another node wrote, which its stream left out, reaches every node, through a line too', async () => {
      const nodes = await line('alpha', 'beta', 'gamma')
      const [alpha, beta, gamma] = nodes
      for (const n of nodes) await alpha.node.registry.addRule({ from: { platform: n.node.name, collection: 'events' }, to: { platform: '*', collection: 'events' } })
      await eventually(() => nodes.every(n => n.node.registry.rules().length === 3), 'every node to know every rule')
      for (const id of ['a0', 'a1', 'a2']) await alpha.node.records.put('events', id, { by: 'alpha' })
      await gamma.node.records.put('events', 'g0', { by: 'gamma' })
      await eventually(async () => await converged(nodes, 4), 'every node to hold the four events')
      expect(await ownStreamEntries(beta)).toBe(0)
      // beta and gamma delete alpha's writes, alpha deletes gamma's: none of them ever sent the record
      await beta.node.records.delete('events', 'a0')
      await gamma.node.records.delete('events', 'a1')
      await alpha.node.records.delete('events', 'g0')
      await eventually(async () => await converged(nodes, 1), 'the three deletes everywhere')
      for (const n of nodes) expect([...(await all(n.node, 'events')).keys()], n.node.name).toEqual(['a2'])
      // beta's stream carries its one delete; a later write of alpha's is left out again
      expect(await ownStreamEntries(beta)).toBe(1)
      await alpha.node.records.put('events', 'a3', { by: 'alpha' })
      await eventually(async () => await converged(nodes, 2), 'alpha\'s next write everywhere')
      expect(await ownStreamEntries(beta)).toBe(1)
      // beta's rule gets a projection: its new stream leaves nothing out, and what the earlier one left out is forgotten
      const leftOut = async (): Promise<string[]> => {
        const saved = await dbOf(beta.node).get('m\x00stream-skips')
        return saved === undefined ? [] : [...new Set((JSON.parse(Buffer.from(saved).toString()) as string[]).map(pair => pair.split('\x00')[0]))]
      }
      const rule = beta.node.registry.rules().find(r => r.from.platform === 'beta')!
      expect(await leftOut()).toEqual([ruleStreamId(rule)])
      await alpha.node.registry.updateRule(rule.id, { exclude: ['secret'] })
      const changed = ruleStreamId(alpha.node.registry.rule(rule.id)!)
      await eventually(async () => await streamFilled(beta.node, changed) && (await leftOut()).length === 0, 'beta to fill its new stream and forget what the earlier one left out')
      // a2 and a3, and the three deletes (a rule that places every record sends the deletes of records its
      // stream never sent, to targets that may not hold them: beta's own, and those it relayed, now that the
      // new stream leaves nothing out)
      const perEpoch = await entriesPerEpoch(beta.node, `${beta.node.peerId}/${changed}`)
      expect([...perEpoch.values()].reduce((a, b) => a + b, 0)).toBe(5)
    })

    it('the write\'s own rule changes its mode: the relays\' streams carry again the writes they left out', async () => {
      const nodes = await star('alpha', 'beta', 'gamma')
      const [alpha, beta, gamma] = nodes
      for (const n of nodes) await alpha.node.registry.addRule({ from: { platform: n.node.name, collection: 'events' }, to: { platform: '*', collection: 'events' } })
      await eventually(() => nodes.every(n => n.node.registry.rules().length === 3), 'every node to know every rule')
      for (const id of ['a0', 'a1', 'a2']) await alpha.node.records.put('events', id, { by: 'alpha' })
      await eventually(async () => await converged(nodes, 3), 'every node to hold alpha\'s three events')
      expect([await ownStreamEntries(beta), await ownStreamEntries(gamma)]).toEqual([0, 0])
      const own = alpha.node.registry.rules().find(r => r.from.platform === 'alpha')!
      await alpha.node.registry.updateRule(own.id, { mode: 'insert-only' })
      // what a merge rule of beta's or gamma's sends is no longer what alpha's rule sends: they send it themselves
      await eventually(async () => await ownStreamEntries(beta) === 3 && await ownStreamEntries(gamma) === 3, 'beta and gamma to send alpha\'s events in their streams')
    })

    it('a node that joins as the target of one node\'s rule only gets every record: that node\'s stream carries again what it left out, also after a restart', async () => {
      const alpha = await startIn('alpha', 'eu')
      const beta = await startIn('beta', 'eu')
      const gamma = await startIn('gamma', 'eu')
      await beta.node.peers.add(alpha.node.getMultiaddrs()[0])
      await gamma.node.peers.add(alpha.node.getMultiaddrs()[0])
      await allKnown(alpha, beta, gamma)
      // alpha and gamma send to their region, beta to every platform
      await alpha.node.registry.addRule({ from: { platform: 'alpha', collection: 'events' }, to: { region: 'eu', collection: 'events' } })
      await alpha.node.registry.addRule({ from: { platform: 'gamma', collection: 'events' }, to: { region: 'eu', collection: 'events' } })
      await alpha.node.registry.addRule({ from: { platform: 'beta', collection: 'events' }, to: { platform: '*', collection: 'events' } })
      const three = [alpha, beta, gamma]
      await eventually(() => three.every(n => n.node.registry.rules().length === 3), 'every node to know every rule')
      for (let i = 0; i < 5; i++) for (const n of three) await n.node.records.put('events', `${n.node.name}-${i}`, { n: i })
      await eventually(async () => await converged(three, 15), 'the three to hold the fifteen events')
      expect(await ownStreamEntries(beta)).toBe(5)
      // beta restarts: what it left out is read back from disk
      await beta.node.stop()
      beta.node = (await startIn('beta', 'eu', beta.dir)).node
      await beta.node.peers.add(alpha.node.getMultiaddrs()[0])
      // delta, in another region, is a target of beta's rule only: alpha's and gamma's writes reach it through beta's stream
      const delta = await startIn('delta', 'us')
      await delta.node.peers.add(beta.node.getMultiaddrs()[0])
      await allKnown(alpha, beta, gamma, delta)
      await eventually(async () => (await all(delta.node, 'events')).size === 15, 'delta to hold the fifteen events')
      expect((await delta.node.records.get('events', 'alpha-2'))?.version).toEqual((await alpha.node.records.get('events', 'alpha-2'))?.version)
      expect(await ownStreamEntries(beta)).toBe(15)
      // what alpha writes next goes on through beta's stream too
      await alpha.node.records.put('events', 'alpha-5', { n: 5 })
      await gamma.node.records.delete('events', 'alpha-0')
      await eventually(async () => await converged([...three, delta], 15) && (await all(delta.node, 'events')).has('alpha-5'), 'alpha\'s write and gamma\'s delete on every node')
    })
    it('a line whose relay restarts while the others write and delete, then deletes and writes itself; the writer\'s rule gets a filter and a node joins: every node ends with the same records', async () => {
      const nodes = await line('alpha', 'beta', 'gamma')
      const [alpha, beta, gamma] = nodes
      for (const n of nodes) await alpha.node.registry.addRule({ from: { platform: n.node.name, collection: 'events' }, to: { platform: '*', collection: 'events' } })
      await eventually(() => nodes.every(n => n.node.registry.rules().length === 3), 'every node to know every rule')
      for (let i = 0; i < 4; i++) for (const n of nodes) await n.node.records.put('events', `${n.node.name}-${i}`, { n: i, keep: i % 2 === 0 })
      await eventually(async () => await converged(nodes, 12), 'the twelve events everywhere')
      // beta, the relay, is down: alpha and gamma write and delete each other's records apart
      await beta.node.stop()
      await alpha.node.records.put('events', 'alpha-0', { n: 10, keep: true })
      await alpha.node.records.delete('events', 'gamma-1')
      await gamma.node.records.delete('events', 'alpha-1')
      await gamma.node.records.put('events', 'alpha-2', { n: 12, keep: true })
      // back, beta deletes a record of alpha's and updates one of gamma's before it hears of theirs
      beta.node = (await start('beta', beta.dir)).node
      await beta.node.records.delete('events', 'alpha-3')
      await beta.node.records.put('events', 'gamma-0', { n: 20, keep: false })
      await alpha.node.peers.add(beta.node.getMultiaddrs()[0])
      await gamma.node.peers.add(beta.node.getMultiaddrs()[0])
      await eventually(async () => await converged(nodes, 9), 'the nine events left everywhere after the restart')
      // alpha's rule gets a filter (the relays' streams carry what they left out), beta deletes a record of
      // alpha's, and delta joins through gamma with a rule of its own
      const own = alpha.node.registry.rules().find(r => r.from.platform === 'alpha')!
      await alpha.node.registry.updateRule(own.id, { where: { keep: true } })
      await beta.node.records.delete('events', 'alpha-0')
      const delta = await start('delta')
      running.push(delta)
      await delta.node.peers.add(gamma.node.getMultiaddrs()[0])
      await allKnown(alpha, beta, gamma, delta)
      await alpha.node.registry.addRule({ from: { platform: 'delta', collection: 'events' }, to: { platform: '*', collection: 'events' } })
      await delta.node.records.put('events', 'delta-0', { n: 0 })
      const all4 = [alpha, beta, gamma, delta]
      await eventually(async () => await converged(all4, 9), 'the four nodes to hold the same nine events')
      expect(await idsOf(delta, 'events')).toBe('alpha-2,beta-0,beta-1,beta-2,beta-3,delta-0,gamma-0,gamma-2,gamma-3')
    })
    it('a node that joins while a writer is offline gets that writer\'s records, which the relays left out, once the writer is back', async () => {
      const nodes = await star('beta', 'alpha', 'gamma')
      const [beta, alpha, gamma] = nodes
      for (const n of nodes) await beta.node.registry.addRule({ from: { platform: n.node.name, collection: 'events' }, to: { platform: '*', collection: 'events' } })
      await eventually(() => nodes.every(n => n.node.registry.rules().length === 3), 'every node to know every rule')
      await alpha.node.records.put('events', 'a0', { n: 0 })
      await beta.node.records.put('events', 'b0', { n: 0 })
      await eventually(async () => await converged(nodes, 2), 'the two events everywhere')
      await alpha.node.stop()
      const delta = await start('delta')
      running.push(delta)
      await delta.node.peers.add(beta.node.getMultiaddrs()[0])
      await eventually(() => delta.node.registry.platforms().length === 4, 'delta to know every platform')
      await beta.node.registry.addRule({ from: { platform: 'delta', collection: 'events' }, to: { platform: '*', collection: 'events' } })
      await delta.node.records.put('events', 'd0', { n: 0 })
      await eventually(async () => (await all(beta.node, 'events')).has('d0') && (await all(delta.node, 'events')).has('b0'), 'beta and delta to exchange their events')
      // beta's and gamma's streams left a0 out: delta reads it in alpha's stream, whose key only alpha seals
      alpha.node = (await start('alpha', alpha.dir)).node
      await alpha.node.peers.add(beta.node.getMultiaddrs()[0])
      await eventually(async () => await converged([alpha, beta, gamma, delta], 3), 'the four nodes to hold the three events', 30_000)
    })
  })
})
