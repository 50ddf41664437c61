import { afterEach, describe, expect, it, vi } from 'vitest'
import { decodeEntry } from '../../src/log/entry.js'
import type { LogEntry } from '../../src/log/entry.js'
import { compareHlc, MAX_DRIFT_MS, parseHlc } from '../../src/core/hlc.js'
import type { CompiledRule } from '../../src/rules/engine.js'
import { utf8 } from '../../src/store/db.js'
import { keys } from '../../src/store/keys.js'
import { PLATFORMS_COLLECTION, RULES_COLLECTION } from '../../src/store/names.js'
import { Harness, newPeerId, OriginLog, platformValue, ruleValue, Scenario } from '../helpers/ingest-harness.js'

const cleanup: Array<() => Promise<void>> = []

afterEach(async () => {
  vi.restoreAllMocks()
  while (cleanup.length > 0) await (cleanup.pop() as () => Promise<void>)()
})

async function scenario (): Promise<Scenario> {
  const s = await Scenario.create()
  cleanup.push(async () => { await s.h.destroy() })
  return s
}

async function harness (): Promise<Harness> {
  const h = await Harness.create('tgt')
  cleanup.push(async () => { await h.destroy() })
  return h
}

function hex (bytes: Uint8Array | undefined): string | undefined {
  return bytes === undefined ? undefined : Buffer.from(bytes).toString('hex')
}

describe('ingest: runs, duplicates and gaps', () => {
  it('applying the same run twice changes nothing', async () => {
    const s = await scenario()
    await s.addRule({ id: 'r1' })
    const run = [s.src.put('posts', '1', { v: 1 }), s.src.put('posts', '2', { v: 2 }), s.src.del('posts', '1'), s.src.put('posts', '3', { v: 3 })]
    const first = await s.h.ingest(s.src.origin, 0, 4, run)
    expect(first?.stored).toBe(4)
    expect(first?.advanced).toEqual({ origin: s.src.origin, seq: 4 })
    expect(first?.changes.length).toBeGreaterThan(0)
    const before = await s.h.dump()
    const recordBytes = hex(await s.h.raw(keys.record('articles', '2')))

    const second = await s.h.ingest(s.src.origin, 0, 4, run)
    expect(second).toBeDefined()
    expect(second?.stored).toBe(0)
    expect(second?.changes).toEqual([])
    expect(second?.registry).toEqual([])
    expect(second?.advanced).toBeUndefined()
    expect(hex(await s.h.raw(keys.record('articles', '2')))).toBe(recordBytes)
    expect(await s.h.dump()).toEqual(before)
    expect(s.h.log.vector.get(s.src.origin)).toBe(4)
    expect(s.h.ingestor.applied('r1')).toBe(first?.changes.length)
  })

  it('the same entries inside a longer run are ignored; only the new tail is stored and applied', async () => {
    const s = await scenario()
    await s.addRule({ id: 'r1' })
    const e = [1, 2, 3, 4, 5].map(i => s.src.put('posts', `r${i}`, { i }))
    await s.h.ingest(s.src.origin, 0, 3, e.slice(0, 3))
    const r = await s.h.ingest(s.src.origin, 0, 5, e)
    expect(r?.stored).toBe(2)
    expect(r?.changes.map(c => c.id)).toEqual(['r4', 'r5'])
    expect(s.h.log.vector.get(s.src.origin)).toBe(5)
  })

  it('out-of-order duplicates (an older run arriving late) are ignored, even with other content', async () => {
    const s = await scenario()
    await s.addRule({ id: 'r1' })
    const e = [s.src.put('posts', 'a', { v: 1 }), s.src.put('posts', 'a', { v: 2 }), s.src.put('posts', 'b', { v: 1 }), s.src.put('posts', 'c', { v: 1 }), s.src.put('posts', 'd', { v: 1 })]
    await s.h.ingest(s.src.origin, 0, 5, e)
    const before = await s.h.dump()
    // late copies of runs already covered
    for (const [from, to, entries] of [[0, 2, e.slice(0, 2)], [1, 3, e.slice(1, 3)], [2, 4, e.slice(2, 4)], [0, 1, e.slice(0, 1)], [4, 5, e.slice(4)]] as Array<[number, number, LogEntry[]]>) {
      const r = await s.h.ingest(s.src.origin, from, to, entries)
      expect(r?.stored, `(${from}, ${to}]`).toBe(0)
      expect(r?.changes).toEqual([])
    }
    // a forged or stale copy of seq 1 with different content is also ignored
    const stale: LogEntry = { ...e[0], value: utf8.encode('{"v":"stale"}') }
    const r = await s.h.ingest(s.src.origin, 0, 1, [stale])
    expect(r?.stored).toBe(0)
    expect(await s.h.dump()).toEqual(before)
    expect(await s.h.value('articles', 'a')).toEqual({ v: 2 })
  })

  it('a run overlapping what is held stores only the entries above held', async () => {
    const s = await scenario()
    await s.addRule({ id: 'r1' })
    const e = [1, 2, 3, 4, 5, 6].map(i => s.src.put('posts', `r${i}`, { i }))
    await s.h.ingest(s.src.origin, 0, 4, e.slice(0, 4))
    const r = await s.h.ingest(s.src.origin, 2, 6, e.slice(2))
    expect(r?.stored).toBe(2)
    expect(r?.changes.map(c => c.id)).toEqual(['r5', 'r6'])
  })

  it('a gap (from_seq beyond what is held) returns undefined and stores nothing', async () => {
    const s = await scenario()
    await s.addRule({ id: 'r1' })
    const e = [1, 2, 3, 4, 5].map(i => s.src.put('posts', `r${i}`, { i }))
    await s.h.ingest(s.src.origin, 0, 2, e.slice(0, 2))
    const before = await s.h.dump()
    const r = await s.h.ingest(s.src.origin, 3, 5, e.slice(3))
    expect(r).toBeUndefined()
    expect(await s.h.dump()).toEqual(before)
    expect(s.h.log.vector.get(s.src.origin)).toBe(2)
    expect(await s.h.raw(keys.entry(s.h.store.logs.of(s.src.origin), 4))).toBeUndefined()
    expect(await s.h.record('articles', 'r4')).toBeUndefined()
    // the same for an origin never heard of
    const other = new OriginLog(await newPeerId())
    other.seq = 10
    expect(await s.h.ingest(other.origin, 10, 11, [other.put('posts', 'x', {})])).toBeUndefined()
    expect(s.h.log.vector.get(other.origin)).toBe(0)
    expect(await s.h.dump()).toEqual(before)
    // once the missing part arrives, the rest follows
    expect((await s.h.ingest(s.src.origin, 2, 3, [e[2]]))?.stored).toBe(1)
    expect((await s.h.ingest(s.src.origin, 3, 5, e.slice(3)))?.stored).toBe(2)
    expect(Object.keys(await s.h.live('articles')).sort()).toEqual(['r1', 'r2', 'r3', 'r4', 'r5'])
  })

  it('a run whose newest seqs were compacted away advances the vector to to_seq', async () => {
    const s = await scenario()
    const e = [s.src.put('posts', '1', {}), s.src.put('posts', '2', {})]
    s.src.seq = 7 // seqs 3..7 superseded at the sender
    const r = await s.h.ingest(s.src.origin, 0, 7, e)
    expect(r?.stored).toBe(2)
    expect(s.h.log.vector.get(s.src.origin)).toBe(7)
    const next = await s.h.ingest(s.src.origin, 7, 8, [s.src.put('posts', '3', {})])
    expect(next?.stored).toBe(1)
    await s.h.reopen()
    expect(s.h.log.vector.get(s.src.origin)).toBe(8)
  })

  it('stores other origins\' logs even when no rule applies them (to forward them)', async () => {
    const h = await harness()
    const a = new OriginLog(await newPeerId())
    const r = await h.ingestRun(a.origin, [a.put('posts', '1', { v: 1 }), a.put('posts', '1', { v: 2 })])
    expect(r?.stored).toBe(2)
    expect(r?.changes).toEqual([])
    expect(await h.record('posts', '1')).toBeUndefined()
    const run = await h.log.readRun(a.origin, 0, 10, 1_000_000)
    expect(run?.entries.map(x => decodeEntry(a.origin, x).seq)).toEqual([2])
  })

  it('concurrent ingests of the same run store it once', async () => {
    const s = await scenario()
    await s.addRule({ id: 'r1' })
    const e = Array.from({ length: 50 }, (_, i) => s.src.put('posts', `r${i}`, { i }))
    const results = await Promise.all(Array.from({ length: 5 }, async () => await s.h.ingest(s.src.origin, 0, 50, e)))
    expect(results.map(r => r?.stored).sort()).toEqual([0, 0, 0, 0, 50])
    expect(results.reduce((n, r) => n + (r?.changes.length ?? 0), 0)).toBe(50)
    expect(s.h.ingestor.applied('r1')).toBe(50)
  })
})

describe('ingest: this node\'s own log coming back', () => {
  it('rule writes made while taking back its own log take seqs after the batch end, not after its last surviving entry', async () => {
    // a node restored from a backup gets its own log back from peers; the batch (0, 4] holds
    // seqs 1 and 2 only (3 and 4 were superseded later and compacted away)
    const s = await scenario()
    await s.addRule({ id: 'own', from: { platform: 'tgt', collection: 'posts' }, to: { platform: 'tgt', collection: 'articles' } })
    // articles is a rule's source, so the rule's writes into it go into this node's log (chaining)
    await s.addRule({ id: 'on', from: { platform: 'tgt', collection: 'articles' }, to: { platform: 'tgt', collection: 'copies' } })
    const me = new OriginLog(s.h.self)
    const e = [me.put('posts', 'a', { v: 1 }), me.put('posts', 'b', { v: 1 })]
    const r = await s.h.ingest(s.h.self, 0, 4, e)
    expect(r?.stored).toBe(2)
    expect(await s.h.value('articles', 'a')).toEqual({ v: 1 })
    const derived = (await s.h.ownEntries(0)).filter(x => x.collection === 'articles')
    expect(derived.map(x => x.id).sort()).toEqual(['a', 'b'])
    // seqs 3 and 4 belong to the origin's own (compacted) history: reusing them would fork the log
    for (const x of derived) expect(x.seq).toBeGreaterThan(4)
    expect(s.h.log.held(s.h.self)).toBe(6)
  })
})

describe('ingest: registry', () => {
  it('registry entries from any origin build the registry and the rules', async () => {
    const h = await harness()
    const admin = new OriginLog(await newPeerId())
    const src = await newPeerId()
    const r = await h.ingestRun(admin.origin, [
      admin.put(PLATFORMS_COLLECTION, 'src', platformValue('src', src)),
      admin.put(RULES_COLLECTION, 'r1', ruleValue({ id: 'r1', from: { platform: 'src', collection: 'posts' }, to: { platform: 'tgt', collection: 'articles' } }))
    ])
    expect(r?.registry.map(x => `${x.collection}/${x.id}`)).toEqual(['$platforms/src', '$rules/r1'])
    expect(r?.changes).toEqual([]) // registry records are not record changes
    expect(h.registry.platform('src')?.peerId).toBe(src)
    expect(h.rules.get('r1')?.sourcePeer).toBe(src)
    expect(h.lastChanged.map(c => c.rule.id)).toEqual(['r1'])
    // and survive a restart: the registry is rebuilt from the stored records
    await h.reopen()
    expect(h.registry.platform('src')?.peerId).toBe(src)
    expect(h.rules.get('r1')).toBeDefined()
  })

  it('rule records are last-writer-wins: an older write does not undo a newer delete', async () => {
    const h = await harness()
    const older = new OriginLog(await newPeerId(), Date.now() - 100_000)
    const newer = new OriginLog(await newPeerId(), Date.now() - 50_000)
    const rule = ruleValue({ id: 'r1', from: { platform: 'src', collection: 'posts' }, to: { platform: 'tgt', collection: 'articles' } })
    await h.ingestRun(newer.origin, [newer.put(RULES_COLLECTION, 'r1', rule), newer.del(RULES_COLLECTION, 'r1')])
    expect(h.registry.rule('r1')).toBeUndefined()
    const r = await h.ingestRun(older.origin, [older.put(RULES_COLLECTION, 'r1', rule)])
    expect(r?.registry).toEqual([])
    expect(h.registry.rule('r1')).toBeUndefined()
  })

  it('platform entries are claims of their writers, not last-writer-wins records: a delete withdraws only its writer\'s claim', async () => {
    const h = await harness()
    const older = new OriginLog(await newPeerId(), Date.now() - 100_000)
    const newer = new OriginLog(await newPeerId(), Date.now() - 50_000)
    const src = await newPeerId()
    const del = await h.ingestRun(newer.origin, [newer.del(PLATFORMS_COLLECTION, 'src')])
    expect(del?.registry).toEqual([{ collection: PLATFORMS_COLLECTION, id: 'src', value: undefined, from: { origin: newer.origin, seq: 1, hlc: expect.anything() } }])
    await h.ingestRun(older.origin, [older.put(PLATFORMS_COLLECTION, 'src', platformValue('src', src))])
    expect(h.registry.platform('src')?.peerId).toBe(src)
    // the writer's own later delete withdraws its claim, whatever the clocks
    await h.ingestRun(older.origin, [older.del(PLATFORMS_COLLECTION, 'src', { wall: 1, logical: 0 })])
    expect(h.registry.platform('src')).toBeUndefined()
    await h.reopen()
    expect(h.registry.platform('src')).toBeUndefined()
  })
})

describe('ingest: clock', () => {
  it('observes incoming clocks, persists the clock, and orders later local writes after them', async () => {
    const h = await harness()
    const a = new OriginLog(await newPeerId())
    const ahead = { wall: Date.now() + 40_000, logical: 5 }
    await h.ingestRun(a.origin, [a.put('posts', '1', {}, ahead)])
    expect(compareHlc(h.ingestor.clock.current(), ahead)).toBeGreaterThanOrEqual(0)
    const saved = parseHlc(utf8.decode(await h.raw(keys.meta('hlc')) as Uint8Array))
    expect(saved).toEqual(ahead)
    await h.reopen()
    expect(compareHlc(h.ingestor.clock.current(), ahead)).toBeGreaterThanOrEqual(0)
    const { entries } = await h.writeLocal([{ collection: 'notes', id: 'n', op: 'put', value: {} }])
    expect(compareHlc(entries[0].hlc, ahead)).toBe(1)
  })

  it('a local write after an entry with the largest logical counter keeps its clock on disk and on the wire', async () => {
    const h = await harness()
    const a = new OriginLog(await newPeerId())
    const remote = { wall: Date.now() + 5_000, logical: 0xffffffff }
    await h.ingestRun(a.origin, [a.put('posts', '1', {}, remote)])
    const { entries } = await h.writeLocal([{ collection: 'notes', id: 'n', op: 'put', value: {} }])
    expect(compareHlc(entries[0].hlc, remote)).toBe(1)
    // what peers receive (the stored protobuf entry) carries the same clock as the local record
    const stored = decodeEntry(h.self, await h.raw(keys.entry(h.store.logs.of(h.self), 1)) as Uint8Array)
    expect(stored.hlc).toEqual(entries[0].hlc)
    expect((await h.record('notes', 'n'))?.version.hlc).toEqual(entries[0].hlc)
    // and the persisted clock can be read back
    expect(parseHlc(utf8.decode(await h.raw(keys.meta('hlc')) as Uint8Array))).toEqual(entries[0].hlc)
  })

  it('does not adopt a clock too far in the future', async () => {
    const h = await harness()
    const a = new OriginLog(await newPeerId())
    const far = { wall: Date.now() + 10 * MAX_DRIFT_MS, logical: 0 }
    const r = await h.ingestRun(a.origin, [a.put('posts', '1', {}, far)])
    expect(r?.stored).toBe(1)
    expect(h.ingestor.clock.current().wall).toBeLessThan(far.wall)
    const { entries } = await h.writeLocal([{ collection: 'notes', id: 'n', op: 'put', value: {} }])
    expect(entries[0].hlc.wall).toBeLessThan(far.wall)
  })
})

describe('writeLocal', () => {
  it('assigns consecutive seqs, also across restarts', async () => {
    const h = await harness()
    const first = await h.writeLocal([
      { collection: 'notes', id: 'a', op: 'put', value: { n: 1 } },
      { collection: 'notes', id: 'b', op: 'put', value: { n: 2 } },
      { collection: 'notes', id: 'a', op: 'put', value: { n: 3 } }
    ])
    expect(first.entries.map(e => e.seq)).toEqual([1, 2, 3])
    expect(first.entries.every(e => e.origin === h.self)).toBe(true)
    for (let i = 1; i < first.entries.length; i++) expect(compareHlc(first.entries[i - 1].hlc, first.entries[i].hlc)).toBe(-1)
    expect(first.result.stored).toBe(3)
    expect(first.result.advanced).toEqual({ origin: h.self, seq: 3 })
    const second = await h.writeLocal([{ collection: 'notes', id: 'c', op: 'put', value: {} }, { collection: 'notes', id: 'b', op: 'del' }])
    expect(second.entries.map(e => e.seq)).toEqual([4, 5])
    await h.reopen()
    expect(h.log.vector.get(h.self)).toBe(5)
    const third = await h.writeLocal([{ collection: 'notes', id: 'd', op: 'put', value: {} }])
    expect(third.entries.map(e => e.seq)).toEqual([6])
    expect(compareHlc(second.entries[1].hlc, third.entries[0].hlc)).toBe(-1)
    expect(await h.live('notes')).toEqual({ a: { n: 3 }, c: {}, d: {} })
  })

  it('concurrent writers get distinct consecutive seqs', async () => {
    const h = await harness()
    const all = await Promise.all(Array.from({ length: 20 }, async (_, i) => await h.writeLocal([{ collection: 'notes', id: `n${i}`, op: 'put', value: { i } }, { collection: 'notes', id: `m${i}`, op: 'put', value: { i } }])))
    const seqs = all.flatMap(r => r.entries.map(e => e.seq)).sort((x, y) => x - y)
    expect(seqs).toEqual(Array.from({ length: 40 }, (_, i) => i + 1))
    for (const r of all) expect(r.entries[1].seq).toBe(r.entries[0].seq + 1)
    expect(h.log.vector.get(h.self)).toBe(40)
  })

  it('writes entry, record, vector and clock in one atomic batch', async () => {
    const h = await harness()
    const batches = recordBatches(h.store.db)
    const { entries, result } = await h.writeLocal([{ collection: 'notes', id: 'x', op: 'put', value: { hello: 'world' } }])
    expect(batches.list).toHaveLength(1)
    const written = batches.list[0].filter(o => o.type === 'put').map(o => o.key)
    expect(written).toEqual(expect.arrayContaining([
      keys.entry(h.store.logs.of(h.self), 1),
      keys.latest(h.store.logs.of(h.self), 'notes', 'x'),
      keys.vector(h.store.logs.of(h.self)),
      keys.record('notes', 'x'),
      keys.meta('hlc')
    ]))
    expect(result.changes).toEqual([expect.objectContaining({ collection: 'notes', id: 'x', op: 'put', value: { hello: 'world' } })])
    expect(result.changes[0].ruleId).toBeUndefined()
    batches.restore()

    // everything is on disk after a restart
    await h.reopen()
    const stored = decodeEntry(h.self, await h.raw(keys.entry(h.store.logs.of(h.self), 1)) as Uint8Array)
    expect(stored).toMatchObject({ seq: 1, collection: 'notes', id: 'x', op: 'put', hlc: entries[0].hlc })
    expect(JSON.parse(utf8.decode(stored.value as Uint8Array))).toEqual({ hello: 'world' })
    expect(utf8.decode(await h.raw(keys.latest(h.store.logs.of(h.self), 'notes', 'x')) as Uint8Array)).toBe('1')
    expect(utf8.decode(await h.raw(keys.vector(h.store.logs.of(h.self))) as Uint8Array)).toBe('1')
    expect(h.log.vector.get(h.self)).toBe(1)
    const rec = await h.record('notes', 'x')
    expect(rec?.value).toEqual({ hello: 'world' })
    expect(rec?.version).toEqual({ hlc: entries[0].hlc, origin: h.self, seq: 1 })
    expect(parseHlc(utf8.decode(await h.raw(keys.meta('hlc')) as Uint8Array))).toEqual(entries[0].hlc)
  })

  it('a delete writes a tombstone in the same batch; a delete of a missing record writes none', async () => {
    const h = await harness()
    await h.writeLocal([{ collection: 'notes', id: 'x', op: 'put', value: { v: 1 } }])
    const batches = recordBatches(h.store.db)
    const del = await h.writeLocal([{ collection: 'notes', id: 'x', op: 'del' }])
    batches.restore()
    expect(batches.list).toHaveLength(1)
    const keysWritten = batches.list[0].map(o => o.key)
    expect(keysWritten).toEqual(expect.arrayContaining([keys.entry(h.store.logs.of(h.self), 2), keys.record('notes', 'x'), keys.vector(h.store.logs.of(h.self))]))
    expect(del.result.changes).toEqual([expect.objectContaining({ op: 'del', id: 'x' })])
    expect((await h.record('notes', 'x'))?.value).toBeUndefined()
    expect((await h.record('notes', 'x'))?.version.seq).toBe(2)
    // compaction dropped the put
    expect(await h.raw(keys.entry(h.store.logs.of(h.self), 1))).toBeUndefined()

    const ghost = await h.writeLocal([{ collection: 'notes', id: 'never', op: 'del' }])
    expect(ghost.entries[0].seq).toBe(3)
    expect(ghost.result.changes).toEqual([])
    expect(await h.record('notes', 'never')).toBeUndefined()
  })

  it('local writes to a rule\'s source collection are applied by local rules too', async () => {
    const h = await harness()
    const admin = new OriginLog(await newPeerId())
    await h.ingestRun(admin.origin, [
      admin.put(PLATFORMS_COLLECTION, 'tgt', platformValue('tgt', h.self)),
      admin.put(RULES_COLLECTION, 'self', ruleValue({ id: 'self', from: { platform: 'tgt', collection: 'drafts' }, to: { platform: 'tgt', collection: 'published' }, where: { ready: true } }))
    ])
    const { result } = await h.writeLocal([
      { collection: 'drafts', id: '1', op: 'put', value: { ready: true } },
      { collection: 'drafts', id: '2', op: 'put', value: { ready: false } }
    ])
    expect(result.changes.map(c => `${c.collection}/${c.id}`).sort()).toEqual(['drafts/1', 'drafts/2', 'published/1'])
    expect(await h.live('published')).toEqual({ 1: { ready: true } })
  })
})

// both ways a pass reads its source: in log order (the default), and by the collection's index
describe.each(['log', 'index'] as const)('backfill (%s order)', (order) => {
  const COUNT = 1_234 // more than two chunks of 500
  // in log order the first 500 entries are seqs 2, 4…502 (seqs 1 and 3 were replaced by the update of
  // p00000 and the delete of p00002, both at the end): p00001, p00003…p00501; by the index, the first
  // 500 records are p00000…p00499, of which p00002 is deleted
  const FIRST_CHUNK_APPLIED = order === 'log' ? 500 : 499
  // what the first chunk writes: by the index, also the tombstone of p00002 (a delete of a record the
  // rule never placed leaves the rule's tombstone); in log order the delete is in the last chunk
  const FIRST_CHUNK_CHANGES = 500
  // what a whole pass writes: the COUNT - 1 live records and p00002's tombstone
  const PASS_CHANGES = COUNT

  async function withData (): Promise<Scenario> {
    const s = await scenario()
    s.h.ingestor.backfillOrder = order
    const entries: LogEntry[] = []
    for (let i = 0; i < COUNT; i++) entries.push(s.src.put('posts', `p${String(i).padStart(5, '0')}`, { i, status: i % 2 === 0 ? 'published' : 'draft' }))
    // some updates and deletes before the rule exists
    entries.push(s.src.put('posts', 'p00000', { i: 0, status: 'published', updated: true }))
    entries.push(s.src.del('posts', 'p00002'))
    const r = await s.feed(...entries)
    expect(r.changes).toEqual([]) // no rule yet
    return s
  }

  /** Backfill `rule` with a live write of the source landing between its first and second chunk. */
  async function backfillWithLiveWrite (s: Scenario, rule: CompiledRule, entry: LogEntry): Promise<void> {
    let calls = 0
    let live: Promise<unknown> | undefined
    await s.h.backfillAll(rule, () => {
      if (calls++ === 1) live = s.feed(entry)
      return true
    })
    await live
  }

  it('a rule added after the data exists applies all of it', async () => {
    const s = await withData()
    const rule = await s.addRule({ id: 'late' })
    expect(s.h.lastChanged.map(c => c.rule.id)).toEqual(['late'])
    expect(await s.h.ingestor.backfillDone('late')).toBe(false)
    const chunks = await s.h.backfillAll(rule)
    expect(chunks.length).toBe(3)
    const live = await s.h.live('articles')
    expect(Object.keys(live)).toHaveLength(COUNT - 1)
    expect(live.p00000).toEqual({ i: 0, status: 'published', updated: true })
    expect(live.p00002).toBeUndefined()
    expect(live.p01233).toEqual({ i: 1233, status: 'draft' })
    expect(chunks.reduce((n, c) => n + c.changes.length, 0)).toBe(PASS_CHANGES)
    expect(s.h.ingestor.applied('late')).toBe(PASS_CHANGES)
    expect(await s.h.ingestor.backfillDone('late')).toBe(true)
    // the versions are those of the source entries
    expect((await s.h.record('articles', 'p00000'))?.version).toMatchObject({ origin: s.src.origin, seq: COUNT + 1 })
    // a finished backfill does nothing when run again
    expect(await s.h.backfillAll(rule)).toEqual([])
    // and live entries keep flowing through the rule
    await s.feed(s.src.del('posts', 'p00001'))
    expect(await s.h.value('articles', 'p00001')).toBeUndefined()
  })

  it('applies the filter and transforms of the rule', async () => {
    const s = await withData()
    const rule = await s.addRule({ id: 'pub', where: { status: 'published' }, exclude: ['status'] })
    await s.h.backfillAll(rule)
    const live = await s.h.live('articles')
    // even i are published; p00002 was deleted
    expect(Object.keys(live)).toHaveLength(Math.ceil(COUNT / 2) - 1)
    expect(live.p00004).toEqual({ i: 4 })
    expect(live.p00003).toBeUndefined()
  })

  it('is resumable: interrupted after the first chunk, it continues where it stopped', async () => {
    const s = await withData()
    const rule = await s.addRule({ id: 'late' })
    let calls = 0
    const firstRun = await s.h.backfillAll(rule, () => calls++ === 0)
    expect(firstRun).toHaveLength(1)
    // the first chunk reads 500 records; by the index, one of them (p00002) is a delete
    expect(firstRun[0].changes).toHaveLength(FIRST_CHUNK_CHANGES)
    expect(await s.h.ingestor.backfillDone('late')).toBe(false)
    expect(Object.keys(await s.h.live('articles'))).toHaveLength(FIRST_CHUNK_APPLIED)

    const secondRun = await s.h.backfillAll(rule)
    const resumed = secondRun.flatMap(c => c.changes)
    expect(resumed).toHaveLength(PASS_CHANGES - FIRST_CHUNK_CHANGES)
    expect(resumed.some(c => firstRun[0].changes.some(f => f.id === c.id))).toBe(false)
    expect(Object.keys(await s.h.live('articles'))).toHaveLength(COUNT - 1)
    expect(await s.h.ingestor.backfillDone('late')).toBe(true)
    expect(s.h.ingestor.applied('late')).toBe(PASS_CHANGES)
  })

  it('resumes after a restart', async () => {
    const s = await withData()
    const rule = await s.addRule({ id: 'late' })
    let calls = 0
    await s.h.backfillAll(rule, () => calls++ === 0)
    await s.h.reopen()
    expect(s.h.ingestor.applied('late')).toBe(FIRST_CHUNK_CHANGES)
    const again = s.h.rules.get('late')
    expect(again).toBeDefined()
    const chunks = await s.h.backfillAll(again as NonNullable<typeof again>)
    expect(chunks.reduce((n, c) => n + c.changes.length, 0)).toBe(PASS_CHANGES - FIRST_CHUNK_CHANGES)
    expect(Object.keys(await s.h.live('articles'))).toHaveLength(COUNT - 1)
    expect(s.h.ingestor.applied('late')).toBe(PASS_CHANGES)
  })

  it('entries arriving during an interrupted backfill are applied live and not applied twice', async () => {
    const s = await withData()
    const rule = await s.addRule({ id: 'late' })
    let calls = 0
    await s.h.backfillAll(rule, () => calls++ === 0)
    // a live update of a record not backfilled yet, and of one already backfilled
    const live = await s.feed(s.src.put('posts', 'p01000', { live: true }), s.src.put('posts', 'p00010', { live: true }))
    expect(live.changes.map(c => c.id).sort()).toEqual(['p00010', 'p01000'])
    const rest = await s.h.backfillAll(rule)
    const ids = rest.flatMap(c => c.changes.map(x => x.id))
    expect(ids).not.toContain('p01000') // already holds that version
    expect(await s.h.value('articles', 'p01000')).toEqual({ live: true })
    expect(await s.h.value('articles', 'p00010')).toEqual({ live: true })
    expect(Object.keys(await s.h.live('articles'))).toHaveLength(COUNT - 1)
  })

  it('a live update landing between two chunks: the next chunk, read before it, passes over the replaced entry', async () => {
    const s = await withData()
    const rule = await s.addRule({ id: 'late' })
    let plannedP700 = 0
    const matches = rule.matches
    rule.matches = (v) => {
      if (v.i === 700 || v.live === true) plannedP700++
      return matches(v)
    }
    // p00700 is in the second chunk (by the index p00500…p00999, in log order seqs 503…1002), read while the first was applied
    await backfillWithLiveWrite(s, rule, s.src.put('posts', 'p00700', { live: true }))
    // planned once, live: the chunk read before the update holds p00700's replaced entry, which is not planned again
    expect(plannedP700).toBe(1)
    expect(await s.h.value('articles', 'p00700')).toEqual({ live: true })
    expect((await s.h.record('articles', 'p00700'))?.version).toMatchObject({ origin: s.src.origin, seq: s.src.seq })
    expect(Object.keys(await s.h.live('articles'))).toHaveLength(COUNT - 1)
    expect(s.h.ingestor.applied('late')).toBe(PASS_CHANGES)
  })

  it('a record deleted before the pass and created again between two chunks keeps its mapping (the delete read ahead is not applied)', async () => {
    const s = await withData()
    await s.feed(s.src.del('posts', 'p00700'))
    const rule = await s.addRule({ id: 'late' })
    await backfillWithLiveWrite(s, rule, s.src.put('posts', 'p00700', { again: true }))
    expect(await s.h.value('articles', 'p00700')).toEqual({ again: true })
    // the rule still knows it placed p00700: the source's next delete reaches the target
    await s.feed(s.src.del('posts', 'p00700'))
    expect(await s.h.value('articles', 'p00700')).toBeUndefined()
  })

  it('skips what arrived after it started (applied live): each entry is planned once', async () => {
    const s = await withData()
    const rule = await s.addRule({ id: 'late' })
    let planned = 0
    const matches = rule.matches
    rule.matches = (v) => { planned++; return matches(v) }
    let calls = 0
    await s.h.backfillAll(rule, () => calls++ === 0)
    expect(planned).toBe(FIRST_CHUNK_APPLIED) // 500 read (by the index, one a delete: not matched)
    // while the backfill is interrupted: new records, and an update of one not backfilled yet
    const fresh: LogEntry[] = []
    for (let i = 0; i < 100; i++) fresh.push(s.src.put('posts', `q${String(i).padStart(5, '0')}`, { i }))
    fresh.push(s.src.put('posts', 'p01200', { live: true }))
    await s.feed(...fresh)
    expect(planned).toBe(FIRST_CHUNK_APPLIED + 101)
    const rest = await s.h.backfillAll(rule)
    // the backfill plans the rest of what it started with (the COUNT - 1 records live then, but p01200), not
    // the 101 entries applied live (p01200's earlier entry was compacted away by its update: nothing left to backfill for it)
    expect(planned).toBe(COUNT - 2 + 101)
    expect(rest.flatMap(c => c.changes.map(x => x.id))).not.toContain('q00000')
    expect(await s.h.value('articles', 'p01200')).toEqual({ live: true })
    expect(Object.keys(await s.h.live('articles'))).toHaveLength(COUNT - 1 + 100)
    expect(s.h.ingestor.applied('late')).toBe(PASS_CHANGES + 100)
  })

  it('starts over from the new source when the source platform moves to another peer', async () => {
    const s = await withData()
    const rule = await s.addRule({ id: 'late' })
    await s.h.backfillAll(rule)
    expect(await s.h.ingestor.backfillDone('late')).toBe(true)
    // the platform "src" is reinstalled with a new identity that already has data
    const moved = new OriginLog(await newPeerId(), Date.now()) // its writes are newer than the old source's
    await s.h.ingestRun(moved.origin, [moved.put('posts', 'fresh', { v: 'new' }), moved.put('posts', 'p00005', { v: 'new' })])
    expect(await s.h.value('articles', 'fresh')).toBeUndefined()
    await s.h.ingestRun(s.admin.origin, [s.admin.put(PLATFORMS_COLLECTION, 'src', platformValue('src', moved.origin))])
    expect(s.h.lastChanged.map(c => c.rule.id)).toEqual(['late'])
    const recompiled = s.h.rules.get('late')
    expect(recompiled?.sourcePeer).toBe(moved.origin)
    expect(await s.h.ingestor.backfillDone('late')).toBe(true) // until the backfill for the new source runs
    const chunks = await s.h.backfillAll(recompiled as NonNullable<typeof recompiled>)
    expect(chunks.flatMap(c => c.changes.map(x => x.id)).sort()).toEqual(['fresh', 'p00005'])
    expect(await s.h.value('articles', 'fresh')).toEqual({ v: 'new' })
    expect(await s.h.ingestor.backfillDone('late')).toBe(true)
  })

  it('reads by the index when the source\'s log is mostly other collections, and still applies everything once', async () => {
    const s = await scenario()
    s.h.ingestor.backfillOrder = order
    const entries: LogEntry[] = []
    for (let i = 0; i < 1800; i++) {
      entries.push(i % 6 === 0 ? s.src.put('posts', `p${String(i).padStart(5, '0')}`, { i }) : s.src.put('comments', `c${i}`, { i }))
    }
    await s.feed(...entries)
    const rule = await s.addRule({ id: 'few' })
    let planned = 0
    const matches = rule.matches
    rule.matches = (v) => { planned++; return matches(v) }
    const chunks = await s.h.backfillAll(rule)
    expect(Object.keys(await s.h.live('articles'))).toHaveLength(300)
    // the records the first (log-order) chunk applied are passed over by the index pass
    expect(planned).toBe(300)
    expect(chunks.reduce((n, c) => n + c.changes.length, 0)).toBe(300)
    expect(s.h.ingestor.applied('few')).toBe(300)
    expect((await s.h.ingestor.backfillState('few'))?.order).toBe('index')
  })

  it('keeps to log order when the log is the rule\'s collection', async () => {
    const s = await withData()
    const rule = await s.addRule({ id: 'late' })
    await s.h.backfillAll(rule)
    expect((await s.h.ingestor.backfillState('late'))?.order).toBe(order)
  })

  it('does not overwrite newer local records on the target', async () => {
    const s = await withData()
    await s.h.writeLocal([{ collection: 'articles', id: 'p00007', op: 'put', value: { mine: true } }])
    const rule = await s.addRule({ id: 'late' })
    await s.h.backfillAll(rule)
    expect(await s.h.value('articles', 'p00007')).toEqual({ mine: true })
  })
})

/**
 * Let a test see or change every write batch the store makes (chained
 * batches, see Store.write): `wrap` gets each one before it is used.
 */
function interceptBatches (db: Harness['store']['db'], wrap: (chained: ReturnType<Harness['store']['db']['batch']>) => void): { restore: () => void } {
  const original = db.batch.bind(db) as () => ReturnType<typeof db.batch>
  const spy = vi.spyOn(db, 'batch').mockImplementation(((...args: unknown[]) => {
    if (args.length > 0) throw new Error('expected a chained batch')
    const chained = original()
    wrap(chained)
    return chained
  }) as unknown as typeof db.batch)
  return { restore: () => spy.mockRestore() }
}

/** The operations of every write batch the store makes, until restore(). */
function recordBatches (db: Harness['store']['db']): { list: Array<Array<{ type: 'put' | 'del', key: string }>>, restore: () => void } {
  const list: Array<Array<{ type: 'put' | 'del', key: string }>> = []
  const { restore } = interceptBatches(db, (chained) => {
    const ops: Array<{ type: 'put' | 'del', key: string }> = []
    list.push(ops)
    const put = chained.put.bind(chained)
    const del = chained.del.bind(chained)
    // the store passes all but a batch's first operation to classic-level's native batch directly (db.ts NativeBatch)
    const native = chained as unknown as { _put: (key: string, value: Uint8Array) => void, _del: (key: string) => void }
    const nativePut = native._put.bind(chained)
    const nativeDel = native._del.bind(chained)
    let inPublic = false
    chained.put = ((key: string, value: Uint8Array) => { inPublic = true; try { ops.push({ type: 'put', key }); return put(key, value) } finally { inPublic = false } }) as typeof chained.put
    chained.del = ((key: string) => { inPublic = true; try { ops.push({ type: 'del', key }); return del(key) } finally { inPublic = false } }) as typeof chained.del
    native._put = (key, value) => { if (!inPublic) ops.push({ type: 'put', key }); nativePut(key, value) }
    native._del = (key) => { if (!inPublic) ops.push({ type: 'del', key }); nativeDel(key) }
  })
  return { list, restore }
}

describe('pipelined commits', () => {
  it('a batch applied while the previous one is still being written sees its writes', async () => {
    const h = await harness()
    const o = new OriginLog(await newPeerId())
    // three runs handed over at once, as a sync session does: later ones start before earlier ones are durable
    const a = o.put('notes', 'x', { v: 1 })
    const b = o.put('notes', 'x', { v: 2 }) // supersedes a (compaction across pipelined transactions)
    const c = o.put('notes', 'y', { v: 1 })
    const results = await Promise.all([h.ingest(o.origin, 0, 1, [a]), h.ingest(o.origin, 1, 2, [b]), h.ingest(o.origin, 2, 3, [c])])
    expect(results.map(r => r?.stored)).toEqual([1, 1, 1])
    expect(h.log.vector.get(o.origin)).toBe(3)
    expect(await h.raw(keys.entry(h.store.logs.of(o.origin), 1))).toBeUndefined() // compacted by b
    await h.reopen()
    expect(h.log.vector.get(o.origin)).toBe(3)
    expect(utf8.decode(await h.raw(keys.latest(h.store.logs.of(o.origin), 'notes', 'x')) as Uint8Array)).toBe('2')
  })

  it('a rule and data arriving in one batch: the backfill it starts sees that batch although its write may still be in flight', async () => {
    const s = await scenario()
    // as the node does: registry changes take effect under the write lock, and a new rule starts its backfill at once
    const backfills: Array<Promise<unknown>> = []
    s.h.ingestor.onRegistry = (changes) => {
      for (const r of changes) s.h.registry.apply(r.collection, r.id, r.value)
      for (const rule of s.h.rules.rebuild(s.h.registry, s.h.localName)) backfills.push(s.h.backfillAll(rule))
    }
    // the source platform writes the rule and a record: one batch, so the record is not applied live
    const entries = [
      s.src.put(RULES_COLLECTION, 'r1', ruleValue({ id: 'r1', from: { platform: 'src', collection: 'posts' }, to: { platform: 'tgt', collection: 'articles' } })),
      s.src.put('posts', 'n1', { text: 'hi' })
    ]
    // a slow disk: the batch is still being written when the backfill starts
    const slow = interceptBatches(s.h.store.db, (chained) => {
      const write = chained.write.bind(chained)
      chained.write = (async () => { await new Promise(resolve => setTimeout(resolve, 150)); await write() }) as typeof chained.write
    })
    const result = await s.h.ingestor.ingest(s.src.origin, 0, 2, entries)
    slow.restore()
    expect(result?.changes).toEqual([])
    expect(backfills).toHaveLength(1)
    await Promise.all(backfills)
    expect(await s.h.value('articles', 'n1')).toEqual({ text: 'hi' })
  })

  it('a failed write stops all writing with STORE_WRITE_FAILED; what was acknowledged stays', async () => {
    const h = await harness()
    await h.writeLocal([{ collection: 'notes', id: 'kept', op: 'put', value: { v: 1 } }])
    const diskFull = interceptBatches(h.store.db, (chained) => {
      chained.write = (async () => { throw new Error('No space left on device') }) as typeof chained.write
    })
    await expect(h.writeLocal([{ collection: 'notes', id: 'lost', op: 'put', value: { v: 1 } }])).rejects.toMatchObject({ code: 'STORE_WRITE_FAILED', message: expect.stringMatching(/No space left on device.*restart the node/) })
    diskFull.restore()
    // the disk is fine again, but this store stays stopped until the node restarts
    await expect(h.writeLocal([{ collection: 'notes', id: 'later', op: 'put', value: { v: 1 } }])).rejects.toMatchObject({ code: 'STORE_WRITE_FAILED' })
    await h.reopen()
    expect(await h.value('notes', 'kept')).toEqual({ v: 1 })
    expect(await h.value('notes', 'lost')).toBeUndefined()
    await h.writeLocal([{ collection: 'notes', id: 'later', op: 'put', value: { v: 1 } }])
    expect(await h.value('notes', 'later')).toEqual({ v: 1 })
  })
})
