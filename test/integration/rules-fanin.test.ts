/**
 * Rules whose source is a group of platforms (`region=eu:devices`,
 * `tag=edge:sensors`, `'*:notes'`), on real nodes in one process (libp2p on
 * 127.0.0.1, LevelDB in temp dirs): a hub collecting what the sites of a group
 * write with one rule, membership following the registry (a platform joining
 * is backfilled, one leaving stops feeding: a merge target keeps its records,
 * a mirror removes them), the target never reading itself, and a mirror fed
 * by two sources writing the same id.
 */
import '../../src/polyfill.js'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createSyncNode } from '../../src/node/node.js'
import { startApiServer } from '../../src/api/server.js'
import type { ApiServer } from '../../src/api/server.js'
import type { JsonObject, RuleSpec, RuleStatus } from '../../src/core/types.js'
import { eventually as until } from '../helpers/nodes.js'
import { caughtUp } from '../helpers/relay-mesh.js'

const KEY = 'f'.repeat(40)
const TOKEN = 'rules-fanin-token-' + 'e'.repeat(32)
type Node = Awaited<ReturnType<typeof createSyncNode>>

describe('rules with a group source (fan-in)', () => {
  let root: string
  const nodes: Node[] = []
  let hub: Node
  let eu1: Node
  let eu2: Node
  let us1: Node
  let api: ApiServer | undefined

  async function launch (name: string, region: string, transformsDir?: string): Promise<Node> {
    const node = await createSyncNode({ dataDir: join(root, name), key: KEY, name, region, listen: ['/ip4/127.0.0.1/tcp/0'], ...(transformsDir !== undefined ? { transformsDir } : {}) })
    await node.start()
    nodes.push(node)
    return node
  }

  async function connect (node: Node): Promise<void> {
    await node.peers.add(hub.getMultiaddrs()[0])
    const name = (await node.status()).name
    await until(() => hub.registry.platforms().some(p => p.name === name) && node.registry.platforms().length === hub.registry.platforms().length, `${name} and the hub to share the registry`)
  }

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'syncmesh-rules-fanin-'))
    const transforms = join(root, 'hub-transforms')
    await mkdir(transforms)
    await writeFile(join(transforms, 'via.mjs'), 'export default (record, context) => ({ ...record.value, via: context.source.platform })\n')
    hub = await launch('hub', 'core', transforms)
    eu1 = await launch('eu1', 'eu')
    eu2 = await launch('eu2', 'eu')
    us1 = await launch('us1', 'us')
    for (const n of [eu1, eu2, us1]) await connect(n)
    await until(() => nodes.every(n => n.registry.platforms().length === 4), 'every node to know the four platforms')
  }, 120_000)

  afterAll(async () => {
    await api?.close().catch(() => {})
    for (const node of nodes) await node.stop().catch(() => {})
    if (root != null) await rm(root, { recursive: true, force: true })
  }, 60_000)

  async function ruleStatus (node: Node, id: string): Promise<RuleStatus | undefined> {
    return (await node.status()).rules.find(r => r.id === id)
  }

  async function ruleReady (node: Node, id: string): Promise<boolean> {
    const r = await ruleStatus(node, id)
    return r?.local === true && r.backfilled && r.problem === undefined
  }

  async function value (node: Node, collection: string, id: string): Promise<JsonObject | undefined> {
    return (await node.records.get(collection, id))?.value
  }

  async function ids (node: Node, collection: string): Promise<string[]> {
    return (await node.records.list(collection, { limit: 1000 })).records.map(r => r.id).sort()
  }

  /** Wait until the hub holds every entry `node` has written (its whole log and, with rule streams, its streams; whether a rule applies it or not). */
  async function hubHolds (node: Node): Promise<void> {
    await caughtUp(hub, node)
  }

  async function tags (node: Node): Promise<string[]> {
    const name = (await node.status()).name
    return hub.registry.platforms().find(p => p.name === name)?.tags ?? []
  }

  async function tag (node: Node, tags: string[]): Promise<void> {
    const name = (await node.status()).name
    const current = hub.registry.platforms().find(p => p.name === name)
    if (current === undefined) throw new Error(`no platform ${name}`)
    await hub.registry.addPlatform({ ...current, tags })
    await until(() => JSON.stringify(hub.registry.platforms().find(p => p.name === name)?.tags ?? []) === JSON.stringify(tags), `${name}'s tags on the hub`)
  }

  it('region=eu:devices → hub:devices: the hub gets both eu sites\' records and none of the other region\'s; a transform sees each record\'s own source', async () => {
    await eu1.records.put('devices', 'd1', { site: 'eu1' })
    await eu1.records.put('devices', 'd2', { site: 'eu1' })
    await eu2.records.put('devices', 'd3', { site: 'eu2' })
    await us1.records.put('devices', 'd4', { site: 'us1' })
    const spec: RuleSpec = { from: { region: 'eu', collection: 'devices' }, to: { platform: 'hub', collection: 'devices' } }
    const rule = await hub.registry.addRule(spec, { checkPlatforms: true })
    expect(rule.from).toEqual({ region: 'eu', collection: 'devices' })
    const via = await hub.registry.addRule({ from: { region: 'eu', collection: 'devices' }, to: { platform: 'hub', collection: 'devices-via' }, transform: 'via.mjs' })
    await until(async () => await ruleReady(hub, rule.id) && await ruleReady(hub, via.id), 'the fan-in rules on the hub')
    await until(async () => (await ids(hub, 'devices')).length === 3, 'the eu devices on the hub')
    expect(await ids(hub, 'devices')).toEqual(['d1', 'd2', 'd3'])
    await hubHolds(us1)
    expect(await hub.records.get('devices', 'd4')).toBeUndefined()

    const st = await ruleStatus(hub, rule.id)
    expect(st?.from).toBe('region=eu:devices')
    expect(st?.sources?.map(s => s.platform).sort()).toEqual(['eu1', 'eu2'])
    expect(st?.sources?.every(s => s.backfilled)).toBe(true)
    expect(st?.applied).toBe(3)
    // only the hub applies it: a site is a source, not a target
    expect((await ruleStatus(eu1, rule.id))?.local).toBe(false)
    expect(await eu1.records.get('devices', 'd3')).toBeUndefined()

    // written after the rule: applied as it arrives
    await eu2.records.put('devices', 'd5', { site: 'eu2' })
    await until(async () => (await value(hub, 'devices', 'd5'))?.site === 'eu2', 'd5 on the hub')
    await until(async () => (await value(hub, 'devices-via', 'd5'))?.via === 'eu2', 'd5 through the transform')
    expect(await value(hub, 'devices-via', 'd1')).toEqual({ site: 'eu1', via: 'eu1' })
    expect(await value(hub, 'devices-via', 'd3')).toEqual({ site: 'eu2', via: 'eu2' })

    // a local write over what the rule placed is a conflict of the rule, as with one source
    await hub.records.put('devices', 'd2', { site: 'edited on the hub' })
    const conflicts = await hub.registry.conflicts?.(rule.id)
    expect(conflicts?.conflicts.find(c => c.id === 'd2')?.kind).toBe('local-write')
  }, 120_000)

  it('a site joining the region later is backfilled: it registers with what it wrote before', async () => {
    const rule = (hub.registry.rules()).find(r => r.from.region === 'eu' && r.to.collection === 'devices')
    expect(rule).toBeDefined()
    const eu3 = await launch('eu3', 'eu')
    await eu3.records.put('devices', 'd6', { site: 'eu3' })
    await eu3.records.put('devices', 'd7', { site: 'eu3' })
    await connect(eu3)
    await until(async () => (await value(hub, 'devices', 'd6'))?.site === 'eu3' && (await value(hub, 'devices', 'd7'))?.site === 'eu3', 'eu3\'s devices on the hub')
    await until(async () => (await ruleStatus(hub, rule?.id ?? ''))?.sources?.some(s => s.platform === 'eu3' && s.backfilled) === true, 'eu3 listed as a backfilled source')
  }, 120_000)

  it('tag=edge:sensors: a platform getting the tag is backfilled from what the hub already holds; one losing it stops feeding (merge keeps its records, mirror removes them)', async () => {
    await tag(eu1, ['edge'])
    await eu1.records.put('sensors', 's1', { at: 'eu1' })
    await us1.records.put('sensors', 's2', { at: 'us1' })
    const merge = await hub.registry.addRule({ from: { tag: 'edge', collection: 'sensors' }, to: { platform: 'hub', collection: 'sensors-merge' } })
    const mirror = await hub.registry.addRule({ from: { tag: 'edge', collection: 'sensors' }, to: { platform: 'hub', collection: 'sensors-mirror' }, mode: 'mirror' })
    await until(async () => await ruleReady(hub, merge.id) && await ruleReady(hub, mirror.id), 'the tag rules on the hub')
    await until(async () => (await ids(hub, 'sensors-merge')).length === 1 && (await ids(hub, 'sensors-mirror')).length === 1, 's1 on the hub')
    await hubHolds(us1)
    expect(await ids(hub, 'sensors-merge')).toEqual(['s1'])
    expect(await ids(hub, 'sensors-mirror')).toEqual(['s1'])

    // us1 joins the group: what the hub holds of it already is backfilled
    await tag(us1, ['edge'])
    await until(async () => (await value(hub, 'sensors-merge', 's2'))?.at === 'us1' && (await value(hub, 'sensors-mirror', 's2'))?.at === 'us1', 'us1\'s s2 backfilled on the hub')

    // eu1 leaves the group: it stops feeding; the merge target keeps s1, the mirror removes it
    await tag(eu1, [])
    await until(async () => (await ids(hub, 'sensors-mirror')).join() === 's2', 'the mirror to drop what only eu1 held')
    expect(await ids(hub, 'sensors-merge')).toEqual(['s1', 's2'])
    await until(async () => await ruleReady(hub, mirror.id), 'the mirror backfilled again')
    expect((await ruleStatus(hub, mirror.id))?.sources?.map(s => s.platform)).toEqual(['us1'])
    await eu1.records.put('sensors', 's3', { at: 'eu1' })
    await us1.records.put('sensors', 's4', { at: 'us1' })
    await until(async () => (await value(hub, 'sensors-merge', 's4')) !== undefined, 's4 on the hub')
    await hubHolds(eu1)
    expect(await hub.records.get('sensors-merge', 's3')).toBeUndefined()
    expect(await hub.records.get('sensors-mirror', 's3')).toBeUndefined()

    // back in the group: backfilled afresh, what it wrote while out included
    await tag(eu1, ['edge'])
    // (each rule backfills on its own: with rule streams each reads its own stream of eu1)
    await until(async () => (await ids(hub, 'sensors-mirror')).join() === 's1,s2,s3,s4', 'eu1 back in the mirror')
    await until(async () => (await ids(hub, 'sensors-merge')).join() === 's1,s2,s3,s4', 'eu1 back in the merge')
  }, 120_000)

  it("'*:notes' → hub:notes: the hub's own writes to notes are not read as a source", async () => {
    await hub.records.put('notes', 'n-hub', { by: 'hub' })
    const rule = await hub.registry.addRule({ from: { platform: '*', collection: 'notes' }, to: { platform: 'hub', collection: 'notes' } })
    await eu2.records.put('notes', 'n-eu2', { by: 'eu2' })
    await until(async () => (await value(hub, 'notes', 'n-eu2'))?.by === 'eu2', 'eu2\'s note on the hub')
    await until(async () => await ruleReady(hub, rule.id), 'the rule on the hub')
    await hub.records.put('notes', 'n-hub2', { by: 'hub' })
    const st = await ruleStatus(hub, rule.id)
    expect(st?.sources?.map(s => s.platform).sort()).toEqual(['eu1', 'eu2', 'eu3', 'us1'])
    // the hub's notes are its own writes, untouched by the rule: the rule applied eu2's note only
    expect(st?.applied).toBe(1)
    const own = await hub.records.get('notes', 'n-hub2')
    expect(own?.version.origin).toBe(hub.peerId)
    // a local write: in the hub's whole log, or with rule streams in none (seq 0)
    if ((await hub.status()).streams === true) expect(own?.version.seq).toBe(0)
    else expect(own?.version.seq).toBeGreaterThan(0)
    const feed: string[] = []
    for await (const line of hub.changes({ collection: 'notes' })) if (line.type === 'change') feed.push(`${line.id}:${line.ruleId ?? 'local'}`)
    expect(feed.sort()).toEqual(['n-eu2:' + rule.id, 'n-hub2:local', 'n-hub:local'].sort())
    // nothing flows back to the sites: the hub is the only target
    expect(await eu2.records.get('notes', 'n-hub')).toBeUndefined()
  }, 120_000)

  it('a mirror fed by two sources writing the same id converges to the later write; its backfill keeps both sources\' records', async () => {
    // a record no source produces, there before the rule: the mirror's sweep removes it
    await hub.records.put('things', 'stale', { v: 'hub' })
    await eu1.records.put('things', 't0', { v: 'eu1' })
    await eu2.records.put('things', 't00', { v: 'eu2' })
    await hubHolds(eu1)
    await hubHolds(eu2)
    const rule = await hub.registry.addRule({ from: { region: 'eu', collection: 'things' }, to: { platform: 'hub', collection: 'things' }, mode: 'mirror' })
    await until(async () => await ruleReady(hub, rule.id), 'the mirror on the hub')
    expect(await ids(hub, 'things')).toEqual(['t0', 't00'])
    await eu1.records.delete('things', 't0')
    await eu2.records.delete('things', 't00')
    await until(async () => (await ids(hub, 'things')).length === 0, 'the deletes on the hub')
    await eu1.records.put('things', 't1', { v: 'a' })
    await until(async () => (await value(hub, 'things', 't1'))?.v === 'a', 'eu1\'s t1 on the hub')
    await eu2.records.put('things', 't1', { v: 'b' })
    await until(async () => (await value(hub, 'things', 't1'))?.v === 'b', 'eu2\'s later t1 on the hub')
    await eu1.records.put('things', 't2', { v: 'eu1' })
    await eu2.records.put('things', 't3', { v: 'eu2' })
    await until(async () => (await ids(hub, 'things')).join() === 't1,t2,t3', 't2 and t3 on the hub')
    // an earlier write of t1 arriving later does not win: eu1 rewrites t1, the later write
    await eu1.records.put('things', 't1', { v: 'c' })
    await until(async () => (await value(hub, 'things', 't1'))?.v === 'c', 'eu1\'s newer t1 on the hub')
    const conflicts = await hub.registry.conflicts?.(rule.id)
    expect(conflicts?.total ?? 0).toBeGreaterThan(0)
    expect(conflicts?.conflicts.some(c => c.id === 't1' && c.kind === 'other-source')).toBe(true)

    // a changed rule backfills every source again, then sweeps: both sources' records stay, the later t1 still wins
    await hub.registry.updateRule?.(rule.id, { rename: { v: 'w' } })
    await until(async () => (await value(hub, 'things', 't3'))?.w === 'eu2' && (await value(hub, 'things', 't2'))?.w === 'eu1' && await ruleReady(hub, rule.id), 'the re-evaluation and sweep')
    expect(await ids(hub, 'things')).toEqual(['t1', 't2', 't3'])
    expect(await value(hub, 'things', 't1')).toEqual({ w: 'c' })
    expect(await value(hub, 'things', 't2')).toEqual({ w: 'eu1' })
    expect(await value(hub, 'things', 't3')).toEqual({ w: 'eu2' })
    // an earlier write arriving later does not win either: eu4 writes t9 before it joins, eu1 writes it after
    const eu4 = await launch('eu4', 'eu')
    const early = await eu4.records.put('things', 't9', { v: 'eu4, earlier' })
    // a later clock for eu1's write (the same millisecond would be decided by the peer ids)
    await until(() => Date.now() > Number(early.version.hlc.split('.')[0]) + 1, 'the clock to move on')
    const late = await eu1.records.put('things', 't9', { v: 'eu1, later' })
    expect(Number(late.version.hlc.split('.')[0])).toBeGreaterThan(Number(early.version.hlc.split('.')[0]))
    await until(async () => (await value(hub, 'things', 't9'))?.w === 'eu1, later', 'eu1\'s t9 on the hub')
    await connect(eu4)
    await until(async () => (await ruleStatus(hub, rule.id))?.sources?.some(s => s.platform === 'eu4' && s.backfilled) === true && await ruleReady(hub, rule.id), 'eu4 backfilled into the mirror')
    expect(await value(hub, 'things', 't9')).toEqual({ w: 'eu1, later' })
    expect(await ids(hub, 'things')).toEqual(['t1', 't2', 't3', 't9'])
    // a source deleting its record: the mirror follows
    expect(await eu1.records.delete('things', 't2')).toBe(true)
    await until(async () => (await ids(hub, 'things')).join() === 't1,t3,t9', 't2 gone on the hub')
  }, 120_000)

  it('insert-only keeps the first source\'s record; --key matches records of several sources by a field, the later write winning', async () => {
    const once = await hub.registry.addRule({ from: { region: 'eu', collection: 'orders' }, to: { platform: 'hub', collection: 'orders-once' }, mode: 'insert-only' })
    const keyed = await hub.registry.addRule({ from: { region: 'eu', collection: 'orders' }, to: { platform: 'hub', collection: 'orders-by-ref' }, key: 'ref' })
    await until(async () => await ruleReady(hub, once.id) && await ruleReady(hub, keyed.id), 'the rules on the hub')
    const first = await eu1.records.put('orders', 'o1', { ref: 'A-1', by: 'eu1' })
    await until(async () => (await value(hub, 'orders-once', 'o1'))?.by === 'eu1' && (await value(hub, 'orders-by-ref', 'A-1'))?.by === 'eu1', 'eu1\'s order on the hub')
    await until(() => Date.now() > Number(first.version.hlc.split('.')[0]) + 1, 'the clock to move on')
    // eu2 writes the same id (insert-only keeps eu1's) and, under another local id, the same ref (the later write wins)
    await eu2.records.put('orders', 'o1', { ref: 'B-1', by: 'eu2' })
    await until(async () => (await value(hub, 'orders-by-ref', 'B-1'))?.by === 'eu2', 'eu2\'s o1 by ref')
    // each source keeps its own record of what it placed: eu2's o1 is not eu1's o1 (whose A-1 stays)
    expect(await value(hub, 'orders-by-ref', 'A-1')).toEqual({ ref: 'A-1', by: 'eu1' })
    await eu2.records.put('orders', 'x9', { ref: 'A-1', by: 'eu2' })
    await until(async () => (await value(hub, 'orders-by-ref', 'A-1'))?.by === 'eu2' && (await value(hub, 'orders-by-ref', 'B-1'))?.by === 'eu2', 'eu2\'s orders by ref')
    await hubHolds(eu2)
    expect(await value(hub, 'orders-once', 'o1')).toEqual({ ref: 'A-1', by: 'eu1' })
    expect(await ids(hub, 'orders-once')).toEqual(['o1', 'x9'])
    expect(await ids(hub, 'orders-by-ref')).toEqual(['A-1', 'B-1'])
    // eu2's o1 moves to another ref: what it placed under B-1 goes, eu1's A-1 record is untouched by it
    await eu2.records.put('orders', 'o1', { ref: 'B-2', by: 'eu2' })
    await until(async () => (await ids(hub, 'orders-by-ref')).join() === 'A-1,B-2', 'eu2\'s o1 moved to B-2')
    expect(await value(hub, 'orders-by-ref', 'A-1')).toEqual({ ref: 'A-1', by: 'eu2' })
  }, 120_000)

  it('a mirror paused while a source leaves the group: resumed, it catches up with the others and removes what only the one that left held', async () => {
    await tag(eu1, [...await tags(eu1), 'line'])
    await tag(eu2, [...await tags(eu2), 'line'])
    const rule = await hub.registry.addRule({ from: { tag: 'line', collection: 'parts' }, to: { platform: 'hub', collection: 'parts' }, mode: 'mirror' })
    await eu1.records.put('parts', 'p1', { by: 'eu1' })
    await eu2.records.put('parts', 'p2', { by: 'eu2' })
    await until(async () => (await ids(hub, 'parts')).join() === 'p1,p2' && await ruleReady(hub, rule.id), 'both sources in the mirror')
    await hub.registry.pauseRule?.(rule.id)
    await until(async () => (await ruleStatus(hub, rule.id))?.paused === true, 'the pause on the hub')
    await eu1.records.put('parts', 'p3', { by: 'eu1' })
    await eu2.records.put('parts', 'p4', { by: 'eu2' })
    await tag(eu2, (await tags(eu2)).filter(t => t !== 'line'))
    await hubHolds(eu1)
    await hubHolds(eu2)
    expect(await ids(hub, 'parts')).toEqual(['p1', 'p2'])
    await hub.registry.resumeRule?.(rule.id)
    await until(async () => (await ids(hub, 'parts')).join() === 'p1,p3', 'the catch-up and the removal of what eu2 held')
    await until(async () => await ruleReady(hub, rule.id), 'the mirror settled')
    expect((await ruleStatus(hub, rule.id))?.sources?.map(s => s.platform)).toEqual(['eu1'])
  }, 120_000)

  it('over HTTP: a group "from" is taken as targets are, malformed selectors are refused with INVALID_RULE, an empty group is no unknown platform', async () => {
    api = await startApiServer(hub, { host: '127.0.0.1', port: 0, token: TOKEN })
    const post = async (body: unknown): Promise<{ status: number, json: Record<string, unknown> }> => {
      const res = await fetch(`${api?.url ?? ''}/v1/rules`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
      return { status: res.status, json: await res.json() as Record<string, unknown> }
    }
    const to = { platform: 'hub', collection: 'fleet' }
    const before = hub.registry.rules().length
    for (const from of [{ region: 'eu', tag: 'edge', collection: 'fleet' }, { collection: 'fleet' }, { region: 'not a name', collection: 'fleet' }, { platform: 'eu1', region: 'eu', collection: 'fleet' }]) {
      const r = await post({ from, to })
      expect(r.status, JSON.stringify(from)).toBe(400)
      expect(r.json.code ?? (r.json.error as Record<string, unknown> | undefined)?.code, JSON.stringify(r.json)).toBe('INVALID_RULE')
    }
    expect(hub.registry.rules().length).toBe(before)
    // no platform is in region "mars" yet: saved without force, it does nothing and is no problem
    const empty = await post({ from: { region: 'mars', collection: 'fleet' }, to })
    expect(empty.status).toBe(201)
    const unknown = await post({ from: { platform: 'nosuch', collection: 'fleet' }, to })
    expect(unknown.status).toBe(400)
    expect(unknown.json.code ?? (unknown.json.error as Record<string, unknown> | undefined)?.code).toBe('UNKNOWN_PLATFORM')
    const id = (empty.json.id ?? (empty.json.rule as Record<string, unknown> | undefined)?.id) as string
    await until(async () => (await ruleStatus(hub, id))?.local === true, 'the rule on the hub')
    const st = await ruleStatus(hub, id)
    expect(st?.from).toBe('region=mars:fleet')
    expect(st?.sources).toEqual([])
    expect(st?.problem).toBeUndefined()
    expect(st?.backfilled).toBe(true)
    // the dry run of a group source adds up its sources per target
    const drySpec = { from: { region: 'eu', collection: 'devices' }, to: { platform: 'hub', collection: 'devices-dry' } }
    const dry = await post({ ...drySpec, dryRun: true })
    if ((await hub.status()).streams === true) {
      // with rule streams each source alone holds its records: 409 on the hub, naming the sources; on a source, its own
      expect(dry.status).toBe(409)
      const error = dry.json.error as Record<string, unknown>
      expect(error.code).toBe('DRY_RUN_UNAVAILABLE')
      expect(String(error.message)).toMatch(/eu1, eu2, eu3, eu4/)
      const own = await eu1.registry.dryRunRule!(drySpec)
      expect(own.source.note).toMatch(/run the dry run on eu2, eu3, eu4/)
      // d1, d2
      expect(own.targets).toEqual([expect.objectContaining({ platform: 'hub', exact: false, matching: 2 })])
      return
    }
    expect(dry.status).toBe(200)
    const report = dry.json as unknown as { source: { platform: string, records: number }, targets: Array<{ platform: string, matching: number, exact: boolean }> }
    expect(report.source.platform).toBe('region=eu')
    expect(report.targets.map(t => t.platform)).toEqual(['hub'])
    expect(report.targets[0].exact).toBe(true)
    // d1, d2 (eu1), d3, d5 (eu2), d6, d7 (eu3); eu4 wrote no devices
    expect(report.targets[0].matching).toBe(6)
  }, 120_000)

  it('after a restart of the hub, a group rule keeps its sources and applies what they wrote meanwhile', async () => {
    const rule = hub.registry.rules().find(r => r.from.region === 'eu' && r.to.collection === 'devices')
    if (rule === undefined) throw new Error('no devices rule')
    const applied = (await ruleStatus(hub, rule.id))?.applied ?? 0
    const addr = hub.getMultiaddrs()[0].toString()
    const listen = addr.slice(0, addr.indexOf('/p2p/'))
    await api?.close()
    api = undefined
    await hub.stop()
    nodes.splice(nodes.indexOf(hub), 1)
    await eu1.records.put('devices', 'd8', { site: 'eu1, while the hub was down' })
    hub = await createSyncNode({ dataDir: join(root, 'hub'), key: KEY, name: 'hub', region: 'core', listen: [listen], transformsDir: join(root, 'hub-transforms') })
    await hub.start()
    nodes.push(hub)
    for (const n of [eu1, eu2]) await n.peers.add(hub.getMultiaddrs()[0]).catch(() => {})
    await until(async () => (await value(hub, 'devices', 'd8'))?.site === 'eu1, while the hub was down', 'd8 on the restarted hub')
    await eu2.records.put('devices', 'd9', { site: 'eu2' })
    await until(async () => (await value(hub, 'devices', 'd9'))?.site === 'eu2', 'd9 on the restarted hub')
    await until(async () => await ruleReady(hub, rule.id), 'the rule settled')
    const st = await ruleStatus(hub, rule.id)
    expect(st?.sources?.map(s => s.platform).sort()).toEqual(['eu1', 'eu2', 'eu3', 'eu4'])
    // d8 and d9 only: nothing applied before the restart is written again
    expect(st?.applied).toBe(applied + 2)
  }, 120_000)
})
