import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { InvalidInputError } from '../../src/core/errors.js'
import { applyPlan, compileRule, parseEntryValue, planEntry } from '../../src/rules/engine.js'
import type { ApplyContext } from '../../src/rules/engine.js'
import { newEntry } from '../../src/log/entry.js'
import type { LogEntry } from '../../src/log/entry.js'
import { logId } from '../../src/log/log-id.js'
import { planStreamEntry } from '../../src/rules/stream-plan.js'
import { Store } from '../../src/store/db.js'
import { decodeRecord, encodeRecord, recordState } from '../../src/store/records.js'
import { removeDir, tempDir } from '../helpers/nodes.js'
import type { Rule } from '../../src/core/types.js'
import { encodeJson } from '../../src/store/db.js'
import { keys } from '../../src/store/keys.js'
import { PLATFORMS_COLLECTION, RULES_COLLECTION } from '../../src/store/names.js'
import { Harness, newPeerId, OriginLog, platformValue, ruleValue, Scenario } from '../helpers/ingest-harness.js'

const cleanup: Array<() => Promise<void>> = []

afterEach(async () => {
  while (cleanup.length > 0) await (cleanup.pop() as () => Promise<void>)()
})

async function scenario (options: { srcWall?: number } = {}): Promise<Scenario> {
  const s = await Scenario.create(options)
  cleanup.push(async () => { await s.h.destroy() })
  return s
}

function hex (bytes: Uint8Array | undefined): string | undefined {
  return bytes === undefined ? undefined : Buffer.from(bytes).toString('hex')
}

describe('planEntry (pure)', () => {
  const rule = (over: Partial<Rule> = {}): Rule => ({
    id: 'r', createdAt: '', mode: 'merge', from: { platform: 'a', collection: 'posts' }, to: { platform: 'b', collection: 'articles' }, ...over
  })
  const put = (value: unknown, id = '1'): LogEntry => ({ origin: 'o', seq: 1, hlc: { wall: 1, logical: 0 }, collection: 'posts', id, op: 'put', value: encodeJson(value) })
  const del: LogEntry = { origin: 'o', seq: 2, hlc: { wall: 2, logical: 0 }, collection: 'posts', id: '1', op: 'del' }

  it('plans puts, deletes and skips', () => {
    const merge = compileRule(rule(), 'peer')
    const e = put({ a: 1 })
    expect(planEntry(merge, e, parseEntryValue(e))).toEqual({ kind: 'put', targetId: '1', value: { a: 1 } })
    expect(planEntry(merge, del, undefined)).toEqual({ kind: 'del' })
    const insertOnly = compileRule(rule({ mode: 'insert-only' }), 'peer')
    expect(planEntry(insertOnly, del, undefined)).toEqual({ kind: 'skip' })
    const filtered = compileRule(rule({ where: { a: 2 } }), 'peer')
    expect(planEntry(filtered, e, parseEntryValue(e))).toEqual({ kind: 'skip' })
  })

  it('skips with a reason when the value is unusable or the key is missing', () => {
    const merge = compileRule(rule(), 'peer')
    const notObject: LogEntry = { ...put({}), value: new TextEncoder().encode('[1]') }
    expect(parseEntryValue(notObject)).toBeUndefined()
    expect(planEntry(merge, notObject, undefined)).toMatchObject({ kind: 'skip', reason: expect.any(String) })
    const keyed = compileRule(rule({ key: 'slug' }), 'peer')
    const noKey = put({ title: 'x' })
    expect(planEntry(keyed, noKey, parseEntryValue(noKey))).toMatchObject({ kind: 'skip', reason: expect.stringContaining('slug') })
    const badKey = put({ slug: 'a\u0000b' })
    expect(planEntry(keyed, badKey, parseEntryValue(badKey))).toMatchObject({ kind: 'skip' })
    const objKey = put({ slug: { x: 1 } })
    expect(planEntry(keyed, objKey, parseEntryValue(objKey))).toMatchObject({ kind: 'skip' })
  })

  it('compileRule accepts every mode and rejects invalid filters', () => {
    expect(compileRule(rule({ mode: 'mirror' }), 'peer').rule.mode).toBe('mirror')
    expect(() => compileRule(rule({ where: { $bogus: 1 } }), 'peer')).toThrow(InvalidInputError)
  })
})

describe('merge mode', () => {
  it('upserts: creates and updates target records, stamped with the source version and the rule', async () => {
    const s = await scenario()
    await s.addRule({ id: 'r1' })
    const r1 = await s.feed(s.src.put('posts', '1', { title: 'first' }))
    expect(r1.stored).toBe(1)
    expect(r1.changes).toEqual([{
      collection: 'articles', id: '1', op: 'put', value: { title: 'first' }, ruleId: 'r1',
      version: { hlc: expect.any(String), origin: s.src.origin, seq: 1 }, cursor: expect.any(String)
    }])
    expect(await s.h.value('articles', '1')).toEqual({ title: 'first' })
    const rec = await s.h.record('articles', '1')
    expect(rec?.rule).toBe('r1')
    expect(rec?.version).toMatchObject({ origin: s.src.origin, seq: 1 })
    // the source collection itself is not written on the target
    expect(await s.h.record('posts', '1')).toBeUndefined()

    await s.feed(s.src.put('posts', '1', { title: 'second' }), s.src.put('posts', '2', { title: 'other' }))
    expect(await s.h.live('articles')).toEqual({ 1: { title: 'second' }, 2: { title: 'other' } })
    expect(s.h.ingestor.applied('r1')).toBe(3)
    expect(await s.h.raw(keys.targetMap('r1', '1'))).toBeDefined()
  })

  it('deletes what the rule placed, leaving a tombstone', async () => {
    const s = await scenario()
    await s.addRule({ id: 'r1' })
    await s.feed(s.src.put('posts', '1', { title: 'x' }), s.src.put('posts', '2', { title: 'y' }))
    const r = await s.feed(s.src.del('posts', '1'))
    expect(r.changes).toEqual([{ collection: 'articles', id: '1', op: 'del', ruleId: 'r1', version: expect.objectContaining({ seq: 3 }), cursor: expect.any(String) }])
    expect(await s.h.live('articles')).toEqual({ 2: { title: 'y' } })
    const tomb = await s.h.record('articles', '1')
    expect(tomb).toBeDefined()
    expect(tomb?.value).toBeUndefined()
    expect(tomb?.version.seq).toBe(3)
    expect(await s.h.raw(keys.targetMap('r1', '1'))).toBeUndefined()
    // a newer put of the source record recreates it
    const again = await s.feed(s.src.put('posts', '1', { title: 'back' }))
    expect(again.changes).toHaveLength(1)
    expect(await s.h.value('articles', '1')).toEqual({ title: 'back' })
  })

  it('a delete of a record it never saw leaves the rule\'s tombstone', async () => {
    const s = await scenario()
    await s.addRule({ id: 'r1' })
    const r = await s.feed(s.src.del('posts', 'ghost'))
    expect(r.stored).toBe(1)
    expect(r.changes).toEqual([{ collection: 'articles', id: 'ghost', op: 'del', ruleId: 'r1', version: expect.objectContaining({ seq: 1 }), cursor: expect.any(String) }])
    const tomb = await s.h.record('articles', 'ghost')
    expect(tomb?.value).toBeUndefined()
    expect(tomb).toMatchObject({ rule: 'r1', version: { origin: s.src.origin, seq: 1 } })
  })

  it('a filtered rule leaves no tombstone for a delete of a record it never placed', async () => {
    const s = await scenario()
    await s.addRule({ id: 'pub', where: { status: 'published' } })
    const r = await s.feed(s.src.put('posts', 'd', { status: 'draft' }), s.src.del('posts', 'd'))
    expect(r.changes).toEqual([])
    expect(await s.h.record('articles', 'd')).toBeUndefined()
  })

  it('does not apply other collections of the source, or rules of other targets', async () => {
    const s = await scenario()
    await s.addRule({ id: 'r1' })
    await s.addRule({ id: 'elsewhere', to: { platform: 'other', collection: 'articles' }, from: { platform: 'src', collection: 'pages' } }).catch(() => undefined)
    expect(s.h.rules.get('elsewhere')).toBeUndefined()
    const r = await s.feed(s.src.put('pages', '1', { t: 1 }), s.src.put('posts', '1', { t: 2 }))
    expect(r.stored).toBe(2)
    expect(r.changes.map(c => `${c.collection}/${c.id}`)).toEqual(['articles/1'])
    expect(await s.h.record('pages', '1')).toBeUndefined()
  })

  it('entries of another origin are not applied by a rule of this source', async () => {
    const s = await scenario()
    await s.addRule({ id: 'r1' })
    const stranger = new OriginLog(await newPeerId())
    const r = await s.h.ingestRun(stranger.origin, [stranger.put('posts', '1', { t: 1 })])
    expect(r?.stored).toBe(1)
    expect(r?.changes).toEqual([])
    expect(await s.h.live('articles')).toEqual({})
  })

  it('one source entry can feed several rules', async () => {
    const s = await scenario()
    await s.addRule({ id: 'r1' })
    await s.addRule({ id: 'r2', to: { platform: 'tgt', collection: 'copies' }, include: ['title'] })
    const r = await s.feed(s.src.put('posts', '1', { title: 't', body: 'b' }))
    expect(r.changes.map(c => `${c.ruleId}:${c.collection}/${c.id}`).sort()).toEqual(['r1:articles/1', 'r2:copies/1'])
    expect(await s.h.value('articles', '1')).toEqual({ title: 't', body: 'b' })
    expect(await s.h.value('copies', '1')).toEqual({ title: 't' })
  })
})

describe('last writer wins on the target', () => {
  it('a newer local write is not overwritten (or deleted) by an older incoming entry', async () => {
    const s = await scenario({ srcWall: Date.now() - 60_000 })
    await s.addRule({ id: 'r1' })
    await s.feed(s.src.put('posts', '1', { from: 'source', v: 1 }))
    await s.h.writeLocal([{ collection: 'articles', id: '1', op: 'put', value: { from: 'local' } }])
    const localBytes = hex(await s.h.raw(keys.record('articles', '1')))
    // still older than the local write (source clock ~60 s behind)
    const r = await s.feed(s.src.put('posts', '1', { from: 'source', v: 2 }))
    expect(r.stored).toBe(1)
    expect(r.changes).toEqual([])
    expect(hex(await s.h.raw(keys.record('articles', '1')))).toBe(localBytes)
    const d = await s.feed(s.src.del('posts', '1'))
    expect(d.changes).toEqual([])
    expect(await s.h.value('articles', '1')).toEqual({ from: 'local' })
  })

  it('an older local write is overwritten by a newer incoming entry, and a later local write wins again', async () => {
    const s = await scenario()
    await s.addRule({ id: 'r1' })
    await s.h.writeLocal([{ collection: 'articles', id: '2', op: 'put', value: { from: 'local' } }])
    const ahead = { wall: Date.now() + 20_000, logical: 0 }
    const r = await s.feed(s.src.put('posts', '2', { from: 'source' }, ahead))
    expect(r.changes).toHaveLength(1)
    expect(await s.h.value('articles', '2')).toEqual({ from: 'source' })
    // the clock observed the incoming entry: the next local write orders after it
    const { entries } = await s.h.writeLocal([{ collection: 'articles', id: '2', op: 'put', value: { from: 'local', v: 2 } }])
    expect(entries[0].hlc.wall).toBeGreaterThanOrEqual(ahead.wall)
    expect(await s.h.value('articles', '2')).toEqual({ from: 'local', v: 2 })
  })

  it('a newer incoming delete removes a record the rule placed', async () => {
    const s = await scenario()
    await s.addRule({ id: 'r1' })
    await s.feed(s.src.put('posts', '3', { v: 1 }))
    const d = await s.feed(s.src.del('posts', '3', { wall: Date.now() + 10_000, logical: 0 }))
    expect(d.changes.map(c => c.op)).toEqual(['del'])
    expect(await s.h.value('articles', '3')).toBeUndefined()
  })

  it('concurrent writes from two sources resolve the same way whatever the arrival order', async () => {
    const srcA = new OriginLog(await newPeerId())
    const srcB = new OriginLog(await newPeerId())
    const admin = new OriginLog(await newPeerId(), Date.now() - 120_000)
    const same = { wall: Date.now() - 5_000, logical: 7 }
    const registry = [
      admin.put(PLATFORMS_COLLECTION, 'a', platformValue('a', srcA.origin)),
      admin.put(PLATFORMS_COLLECTION, 'b', platformValue('b', srcB.origin)),
      admin.put(RULES_COLLECTION, 'ra', ruleValue({ id: 'ra', from: { platform: 'a', collection: 'posts' }, to: { platform: 'tgt', collection: 'articles' } })),
      admin.put(RULES_COLLECTION, 'rb', ruleValue({ id: 'rb', from: { platform: 'b', collection: 'posts' }, to: { platform: 'tgt', collection: 'articles' } }))
    ]
    const fromA = [srcA.put('posts', 'x', { from: 'a' }, same), srcA.put('posts', 'y', { from: 'a' }, { wall: same.wall + 1, logical: 0 })]
    const fromB = [srcB.put('posts', 'x', { from: 'b' }, same), srcB.put('posts', 'y', { from: 'b' }, { wall: same.wall, logical: 0 })]
    const results: Array<Map<string, string>> = []
    for (const order of [[srcA, srcB], [srcB, srcA]]) {
      const h = await Harness.create('tgt')
      cleanup.push(async () => { await h.destroy() })
      await h.ingestRun(admin.origin, registry)
      expect(h.rules.all().map(r => r.rule.id).sort()).toEqual(['ra', 'rb'])
      for (const o of order) await h.ingestRun(o.origin, o === srcA ? fromA : fromB)
      // the records as stored, but their changes-feed cursor (which follows arrival order)
      const stored = async (id: string): Promise<string> => JSON.stringify({ ...await h.record('articles', id), cursor: undefined })
      results.push(new Map([['x', await stored('x')], ['y', await stored('y')]]))
      // same HLC: the greater origin wins; y: A's clock is ahead
      const winner = srcA.origin > srcB.origin ? 'a' : 'b'
      expect(await h.value('articles', 'x')).toEqual({ from: winner })
      expect(await h.value('articles', 'y')).toEqual({ from: 'a' })
    }
    expect(results[0]).toEqual(results[1])
  })

  it('a delete of one source and an older write of another resolve the same way whatever arrived, also when the deleted put never did', async () => {
    const srcA = new OriginLog(await newPeerId())
    const srcB = new OriginLog(await newPeerId())
    const admin = new OriginLog(await newPeerId(), Date.now() - 120_000)
    const t = Date.now() - 5_000
    const registry = [
      admin.put(PLATFORMS_COLLECTION, 'a', platformValue('a', srcA.origin)),
      admin.put(PLATFORMS_COLLECTION, 'b', platformValue('b', srcB.origin)),
      admin.put(RULES_COLLECTION, 'ra', ruleValue({ id: 'ra', from: { platform: 'a', collection: 'posts' }, to: { platform: 'tgt', collection: 'articles' } })),
      admin.put(RULES_COLLECTION, 'rb', ruleValue({ id: 'rb', from: { platform: 'b', collection: 'posts' }, to: { platform: 'tgt', collection: 'articles' } }))
    ]
    // A wrote x after B did, then deleted it; a log compacted since holds A's delete alone (seq 2)
    const fromB = [srcB.put('posts', 'x', { from: 'b' }, { wall: t, logical: 0 })]
    const putA = srcA.put('posts', 'x', { from: 'a' }, { wall: t + 1, logical: 0 })
    const delA = srcA.del('posts', 'x', { wall: t + 2, logical: 0 })
    const results: string[] = []
    for (const [order, fromA] of [['ab', [putA, delA]], ['ab', [delA]], ['ba', [putA, delA]], ['ba', [delA]]] as const) {
      const h = await Harness.create('tgt')
      cleanup.push(async () => { await h.destroy() })
      await h.ingestRun(admin.origin, registry)
      for (const o of order) await h.ingestRun(o === 'a' ? srcA.origin : srcB.origin, o === 'a' ? [...fromA] : fromB)
      expect(await h.value('articles', 'x'), `${order}, ${fromA.length} entries of A`).toBeUndefined()
      results.push(JSON.stringify({ ...await h.record('articles', 'x'), cursor: undefined }))
    }
    expect(new Set(results).size).toBe(1)
  })
})

describe('where filter', () => {
  it('applies only matching records', async () => {
    const s = await scenario()
    await s.addRule({ id: 'pub', where: { status: 'published' } })
    const r = await s.feed(
      s.src.put('posts', 'p1', { status: 'published', t: 1 }),
      s.src.put('posts', 'p2', { status: 'draft', t: 2 }),
      s.src.put('posts', 'p3', { t: 3 })
    )
    expect(r.stored).toBe(3)
    expect(r.changes.map(c => c.id)).toEqual(['p1'])
    expect(r.skipped).toEqual([]) // filtered records are not "skipped for a reason"
    expect(await s.h.live('articles')).toEqual({ p1: { status: 'published', t: 1 } })
    expect(s.h.ingestor.applied('pub')).toBe(1)
  })

  it('a record published later is applied then', async () => {
    const s = await scenario()
    await s.addRule({ id: 'pub', where: { status: 'published' } })
    await s.feed(s.src.put('posts', 'p', { status: 'draft' }))
    expect(await s.h.value('articles', 'p')).toBeUndefined()
    await s.feed(s.src.put('posts', 'p', { status: 'published' }))
    expect(await s.h.value('articles', 'p')).toEqual({ status: 'published' })
  })

  it('a delete of a never-applied record does not delete a same-id local record on the target', async () => {
    const s = await scenario()
    await s.addRule({ id: 'pub', where: { status: 'published' } })
    await s.feed(s.src.put('posts', 'p2', { status: 'draft' }))
    await s.h.writeLocal([{ collection: 'articles', id: 'p2', op: 'put', value: { mine: true } }])
    const before = hex(await s.h.raw(keys.record('articles', 'p2')))
    // a newer delete from the source: it must still not touch the local record
    const r = await s.feed(s.src.del('posts', 'p2', { wall: Date.now() + 30_000, logical: 0 }))
    expect(r.changes).toEqual([])
    expect(hex(await s.h.raw(keys.record('articles', 'p2')))).toBe(before)
    expect(await s.h.value('articles', 'p2')).toEqual({ mine: true })
  })

  it('a delete of an applied record deletes it', async () => {
    const s = await scenario()
    await s.addRule({ id: 'pub', where: { status: 'published' } })
    await s.feed(s.src.put('posts', 'p1', { status: 'published' }), s.src.put('posts', 'p2', { status: 'draft' }))
    const r = await s.feed(s.src.del('posts', 'p1'), s.src.del('posts', 'p2'))
    expect(r.changes.map(c => `${c.op}:${c.id}`)).toEqual(['del:p1'])
    expect(await s.h.live('articles')).toEqual({})
  })
})

describe('key field', () => {
  it('maps ids through the key field and deletes through the mapping', async () => {
    const s = await scenario()
    await s.addRule({ id: 'k', key: 'slug' })
    const r = await s.feed(
      s.src.put('posts', '1', { slug: 'hello-world', t: 1 }),
      s.src.put('posts', '2', { slug: 42, t: 2 }),
      s.src.put('posts', '3', { t: 3 }),
      s.src.put('posts', '4', { slug: '', t: 4 })
    )
    expect(r.changes.map(c => c.id)).toEqual(['hello-world', '42'])
    expect(r.skipped.map(x => x.id).sort()).toEqual(['3', '4'])
    for (const x of r.skipped) expect(x.ruleId).toBe('k')
    expect(await s.h.live('articles')).toEqual({ 'hello-world': { slug: 'hello-world', t: 1 }, 42: { slug: 42, t: 2 } })
    expect(await s.h.record('articles', '1')).toBeUndefined()
    expect(Buffer.from(await s.h.raw(keys.targetMap('k', '1')) as Uint8Array).toString()).toBe('hello-world')

    const d = await s.feed(s.src.del('posts', '1'), s.src.del('posts', '3'))
    expect(d.changes).toEqual([expect.objectContaining({ id: 'hello-world', op: 'del' })])
    expect(await s.h.live('articles')).toEqual({ 42: { slug: 42, t: 2 } })
  })

  it('a nested key path', async () => {
    const s = await scenario()
    await s.addRule({ id: 'k', key: 'meta.slug' })
    await s.feed(s.src.put('posts', '1', { meta: { slug: 'deep' } }))
    expect(Object.keys(await s.h.live('articles'))).toEqual(['deep'])
  })

  it('an update of the source record updates the mapped target', async () => {
    const s = await scenario()
    await s.addRule({ id: 'k', key: 'slug' })
    await s.feed(s.src.put('posts', '1', { slug: 'a', v: 1 }))
    await s.feed(s.src.put('posts', '1', { slug: 'a', v: 2 }))
    expect(await s.h.live('articles')).toEqual({ a: { slug: 'a', v: 2 } })
  })
})

describe('insert-only mode', () => {
  it('inserts once and never overwrites or deletes', async () => {
    const s = await scenario()
    await s.addRule({ id: 'ins', mode: 'insert-only' })
    const first = await s.feed(s.src.put('posts', '1', { v: 1 }))
    expect(first.changes).toHaveLength(1)
    const bytes = hex(await s.h.raw(keys.record('articles', '1')))
    const update = await s.feed(s.src.put('posts', '1', { v: 2 }, { wall: Date.now() + 10_000, logical: 0 }))
    expect(update.changes).toEqual([])
    const del = await s.feed(s.src.del('posts', '1', { wall: Date.now() + 20_000, logical: 0 }))
    expect(del.changes).toEqual([])
    expect(hex(await s.h.raw(keys.record('articles', '1')))).toBe(bytes)
    expect(await s.h.value('articles', '1')).toEqual({ v: 1 })
    expect(s.h.ingestor.applied('ins')).toBe(1)
  })

  it('does not overwrite an existing local record, even with a newer entry', async () => {
    const s = await scenario()
    await s.addRule({ id: 'ins', mode: 'insert-only' })
    await s.h.writeLocal([{ collection: 'articles', id: '5', op: 'put', value: { local: true } }])
    const r = await s.feed(s.src.put('posts', '5', { v: 1 }, { wall: Date.now() + 10_000, logical: 0 }), s.src.put('posts', '6', { v: 6 }))
    expect(r.changes.map(c => c.id)).toEqual(['6'])
    expect(await s.h.live('articles')).toEqual({ 5: { local: true }, 6: { v: 6 } })
  })
})

describe('transforms', () => {
  it('include', async () => {
    const s = await scenario()
    await s.addRule({ id: 't', include: ['title', 'body', 'missing'] })
    await s.feed(s.src.put('posts', '1', { title: 'T', body: 'B', secret: 'S', n: 1 }))
    expect(await s.h.value('articles', '1')).toEqual({ title: 'T', body: 'B' })
  })

  it('exclude', async () => {
    const s = await scenario()
    await s.addRule({ id: 't', exclude: ['secret', 'internal'] })
    await s.feed(s.src.put('posts', '1', { title: 'T', secret: 'S', internal: { a: 1 }, n: 1 }))
    expect(await s.h.value('articles', '1')).toEqual({ title: 'T', n: 1 })
  })

  it('rename, applied simultaneously', async () => {
    const s = await scenario()
    await s.addRule({ id: 't', rename: { title: 'name', a: 'b', b: 'a' } })
    await s.feed(s.src.put('posts', '1', { title: 'T', a: 1, b: 2, other: true }))
    expect(await s.h.value('articles', '1')).toEqual({ name: 'T', a: 2, b: 1, other: true })
  })

  it('include, exclude and rename together, with a filter on the source value', async () => {
    const s = await scenario()
    await s.addRule({ id: 't', where: { status: 'published' }, include: ['title', 'body', 'status', 'secret'], exclude: ['secret'], rename: { title: 'headline', status: 'state' } })
    const r = await s.feed(
      s.src.put('posts', '1', { title: 'T', body: 'B', status: 'published', secret: 'S', extra: 1 }),
      s.src.put('posts', '2', { title: 'U', status: 'draft' })
    )
    expect(r.changes).toEqual([expect.objectContaining({ id: '1', value: { headline: 'T', body: 'B', state: 'published' } })])
    expect(await s.h.live('articles')).toEqual({ 1: { headline: 'T', body: 'B', state: 'published' } })
  })

  it('the key field is read from the source value, before renames', async () => {
    const s = await scenario()
    await s.addRule({ id: 't', key: 'slug', rename: { slug: 'path' } })
    await s.feed(s.src.put('posts', '1', { slug: 's1', t: 1 }))
    expect(await s.h.live('articles')).toEqual({ s1: { path: 's1', t: 1 } })
  })
})

describe('rule set', () => {
  it('reports rules it cannot activate and activates them once the source platform is known', async () => {
    const s = await scenario()
    const later = new OriginLog(await newPeerId())
    await s.h.ingestRun(s.admin.origin, [
      s.admin.put(RULES_COLLECTION, 'waiting', ruleValue({ id: 'waiting', from: { platform: 'later', collection: 'posts' }, to: { platform: 'tgt', collection: 'articles' } })),
      s.admin.put(RULES_COLLECTION, 'bad', ruleValue({ id: 'bad', where: { $bogus: 1 }, from: { platform: 'src', collection: 'posts' }, to: { platform: 'tgt', collection: 'other' } }))
    ])
    expect(s.h.rules.get('waiting')).toBeUndefined()
    expect(s.h.rules.get('bad')).toBeUndefined()
    expect(s.h.rules.problems.map(p => p.ruleId).sort()).toEqual(['bad', 'waiting'])
    await s.h.ingestRun(s.admin.origin, [s.admin.put(PLATFORMS_COLLECTION, 'later', platformValue('later', later.origin))])
    expect(s.h.lastChanged.map(c => c.rule.id)).toEqual(['waiting'])
    expect(s.h.rules.get('waiting')?.sourcePeer).toBe(later.origin)
    const r = await s.h.ingestRun(later.origin, [later.put('posts', '1', { t: 1 })])
    expect(r?.changes.map(c => c.ruleId)).toEqual(['waiting'])
  })

  it('a removed rule stops applying', async () => {
    const s = await scenario()
    await s.addRule({ id: 'r1' })
    await s.feed(s.src.put('posts', '1', { v: 1 }))
    await s.removeRule('r1')
    expect(s.h.rules.get('r1')).toBeUndefined()
    const r = await s.feed(s.src.put('posts', '1', { v: 2 }), s.src.put('posts', '2', { v: 1 }))
    expect(r.changes).toEqual([])
    expect(await s.h.live('articles')).toEqual({ 1: { v: 1 } })
  })

  it('a rule re-created after removal takes over: a later source delete still reaches the target', async () => {
    const s = await scenario()
    await s.addRule({ id: 'old' })
    await s.feed(s.src.put('posts', '1', { v: 1 }), s.src.put('posts', '2', { v: 2 }))
    await s.removeRule('old')
    const fresh = await s.addRule({ id: 'new' })
    const chunks = await s.h.backfillAll(fresh)
    expect(chunks.flatMap(c => c.changes)).toEqual([]) // the target already holds these very writes
    expect(await s.h.ingestor.backfillDone('new')).toBe(true)
    const r = await s.feed(s.src.del('posts', '1'))
    expect(r.changes).toEqual([expect.objectContaining({ id: '1', op: 'del', ruleId: 'new' })])
    expect(await s.h.live('articles')).toEqual({ 2: { v: 2 } })
  })

  it('two rules placing the same write: either one can delete it later', async () => {
    const s = await scenario()
    await s.addRule({ id: 'en', where: { lang: 'en' } })
    await s.addRule({ id: 'featured', where: { featured: true } })
    const r = await s.feed(s.src.put('posts', '1', { lang: 'en', featured: true }))
    expect(r.changes).toHaveLength(1) // the second rule finds the same version already there
    await s.removeRule(r.changes[0].ruleId as string)
    const d = await s.feed(s.src.del('posts', '1'))
    expect(d.changes.map(c => c.op)).toEqual(['del'])
    expect(await s.h.live('articles')).toEqual({})
  })
})

describe('a rule stream\'s delete naming the write it removes', () => {
  it('removes the target\'s own record when the target sends its collection on as it is to the stream\'s origin (asked by the origin\'s peer id)', async () => {
    const self = await newPeerId()
    const beta = await newPeerId()
    const gamma = await newPeerId()
    const rule: Rule = { id: 'r-beta', from: { platform: 'beta', collection: 'events' }, to: { platform: '*', collection: 'events' }, mode: 'merge', createdAt: '2026-01-01T00:00:00.000Z' } as Rule
    const compiled = compileRule(rule, beta, { localName: 'alpha', stream: 'r.0123456789abcdef0123' })
    const dir = await tempDir('syncmesh-engine-')
    const store = new Store(join(dir, 'db'))
    await store.open()
    try {
      // the target's own write of the record, which beta never placed here
      const recordKey = keys.record('events', 'e1')
      await store.db.put(recordKey, encodeRecord(recordState({ origin: self, seq: 0, hlc: { wall: 1000, logical: 0 } }, { by: 'alpha' })))
      const asked: string[] = []
      await store.exclusive(async () => {
        const txn = store.txn()
        await txn.prefetch([recordKey, keys.targetMap(compiled.stateId, 'e1')])
        const ctx: ApplyContext = {
          txn,
          self,
          reeval: false,
          freshVersion: () => ({ origin: self, seq: 0, hlc: { wall: 3000, logical: 0 } }),
          published: () => false,
          keepChanges: false,
          writeRecord: (collection, id, state, _previous, key) => { txn.put(key ?? keys.record(collection, id), encodeRecord(state)); return 1 },
          conflict: () => {},
          platformOf: () => undefined,
          sendsTo: (_c, peer) => { asked.push(peer); return peer === beta }
        }
        // beta deletes the record, whose write it held was gamma's
        const entry = newEntry(logId(beta, 'r.0123456789abcdef0123'), 1, { wall: 2000, logical: 0 }, 'events', 'e1', 'del', undefined, beta, 0, { origin: gamma, hlc: { wall: 900, logical: 0 } })
        expect(applyPlan(ctx, compiled, entry, planStreamEntry(compiled, entry, undefined))).toHaveLength(1)
        await txn.commit()
      })
      expect(asked).toEqual([beta])
      const after = decodeRecord((await store.db.get(recordKey))!)
      expect(after.value).toBeUndefined()
      expect(after.version.origin).toBe(beta)
    } finally {
      await store.close()
      await removeDir(dir)
    }
  })
})
