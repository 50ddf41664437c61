/**
 * The rule engine on one node's real write path (LevelDB in a temp
 * dir, the Ingestor, the registry): mirror mode, group and per-record targets,
 * transform modules, rule updates, chaining (across several in-process nodes
 * whose logs are ferried between them), conflicts and the changes feed index.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { decodeEntry } from '../../src/log/entry.js'
import type { LogEntry } from '../../src/log/entry.js'
import { readFeed } from '../../src/store/changes.js'
import type { ConflictRecord, JsonObject } from '../../src/core/types.js'
import { decodeJson } from '../../src/store/db.js'
import { keys, prefixRange } from '../../src/store/keys.js'
import { PLATFORMS_COLLECTION, RULES_COLLECTION } from '../../src/store/names.js'
import { Harness, newPeerId, OriginLog, platformValue, ruleValue, Scenario } from '../helpers/ingest-harness.js'
import type { RuleInput } from '../helpers/ingest-harness.js'

const cleanup: Array<() => Promise<void>> = []

afterEach(async () => {
  while (cleanup.length > 0) await (cleanup.pop() as () => Promise<void>)()
})

async function scenario (): Promise<Scenario> {
  const s = await Scenario.create()
  cleanup.push(async () => { await s.h.destroy() })
  return s
}

async function harness (name: string): Promise<Harness> {
  const h = await Harness.create(name)
  cleanup.push(async () => { await h.destroy() })
  return h
}

async function module (h: Harness, name: string, source: string): Promise<void> {
  await mkdir(h.transformsDir, { recursive: true })
  await writeFile(join(h.transformsDir, name), source)
}

async function conflictLog (h: Harness, ruleId: string): Promise<ConflictRecord[]> {
  const out: ConflictRecord[] = []
  for await (const v of h.store.db.values(prefixRange(keys.conflictPrefix(ruleId)))) out.push(decodeJson<ConflictRecord>(v))
  return out
}

describe('mirror mode', () => {
  it('is an exact copy of the filtered source: creates, updates, deletes, and drops records that stop matching', async () => {
    const s = await scenario()
    await s.addRule({ id: 'm', mode: 'mirror', where: { status: 'published' } })
    await s.feed(s.src.put('posts', 'p1', { status: 'published', v: 1 }), s.src.put('posts', 'p2', { status: 'draft' }), s.src.put('posts', 'p3', { status: 'published' }))
    expect(await s.h.live('articles')).toEqual({ p1: { status: 'published', v: 1 }, p3: { status: 'published' } })
    // p1 stops matching: dropped; p3 deleted at the source; p2 starts matching
    const r = await s.feed(s.src.put('posts', 'p1', { status: 'draft', v: 2 }), s.src.del('posts', 'p3'), s.src.put('posts', 'p2', { status: 'published' }))
    expect(r.changes.map(c => `${c.op}:${c.id}`).sort()).toEqual(['del:p1', 'del:p3', 'put:p2'])
    expect(await s.h.live('articles')).toEqual({ p2: { status: 'published' } })
    // matching again: back
    await s.feed(s.src.put('posts', 'p1', { status: 'published', v: 3 }))
    expect(await s.h.live('articles')).toEqual({ p1: { status: 'published', v: 3 }, p2: { status: 'published' } })
  })

  it('on creation removes what the source lacks (local records included) and replaces same-id records, even newer ones', async () => {
    const s = await scenario()
    await s.feed(s.src.put('posts', 'p1', { from: 'source' }), s.src.put('posts', 'p2', { from: 'source' }))
    // local records on the target, written after the source's (so with later clocks)
    await s.h.writeLocal([
      { collection: 'articles', id: 'p1', op: 'put', value: { mine: true } },
      { collection: 'articles', id: 'stray', op: 'put', value: { mine: true } }
    ])
    const rule = await s.addRule({ id: 'm', mode: 'mirror' })
    const chunks = await s.h.backfillAll(rule)
    expect(await s.h.live('articles')).toEqual({ p1: { from: 'source' }, p2: { from: 'source' } })
    expect(chunks.flatMap(c => c.changes).map(c => `${c.op}:${c.id}`).sort()).toEqual(['del:stray', 'put:p1', 'put:p2'])
    expect((await s.h.record('articles', 'stray'))?.rule).toBe('m')
    expect(await s.h.ingestor.backfillDone('m')).toBe(true)
    // replacing the newer local p1 is reported as a conflict the mirror won
    const conflicts = await conflictLog(s.h, 'm')
    expect(conflicts).toEqual([expect.objectContaining({ id: 'p1', kind: 'local-write', winner: 'incoming', existing: expect.objectContaining({ local: true, value: { mine: true } }) })])
    // a source record with the swept id (and an older clock than the sweep) still arrives
    await s.feed(s.src.put('posts', 'stray', { from: 'source' }, { wall: Date.now() - 50_000, logical: 0 }))
    expect(await s.h.value('articles', 'stray')).toEqual({ from: 'source' })
  })

  it('drops records that the targets field or the transform module no longer give it', async () => {
    const s = await scenario()
    await module(s.h, 'skip-hidden.mjs', 'export default (record) => record.value.hidden === true ? null : record.value')
    await s.addRule({ id: 'm', mode: 'mirror', targetsField: 'for', transform: 'skip-hidden.mjs' })
    expect(s.h.rules.get('m')?.module).toBeDefined()
    await s.feed(s.src.put('posts', 'a', { for: ['tgt'] }), s.src.put('posts', 'b', {}), s.src.put('posts', 'c', { for: 'other' }))
    expect(Object.keys(await s.h.live('articles')).sort()).toEqual(['a', 'b'])
    await s.feed(s.src.put('posts', 'a', { for: ['other'] }), s.src.put('posts', 'b', { hidden: true }))
    expect(await s.h.live('articles')).toEqual({})
  })

  it('a mirror target takes no other rule', async () => {
    const s = await scenario()
    await s.addRule({ id: 'm', mode: 'mirror', createdAt: '2024-01-01T00:00:00.000Z' })
    await s.h.ingestRun(s.admin.origin, [s.admin.put(RULES_COLLECTION, 'other', ruleValue({ id: 'other', from: { platform: 'src', collection: 'pages' }, to: { platform: 'tgt', collection: 'articles' }, createdAt: '2024-02-01T00:00:00.000Z' }))])
    expect(s.h.rules.get('other')).toBeUndefined()
    expect(s.h.rules.problems).toEqual([{ ruleId: 'other', message: expect.stringContaining('mirror rule m') }])
    expect(s.h.rules.mirrorFor('articles')?.id).toBe('m')
  })

  it('a narrower filter, re-evaluated, drops what no longer matches from a mirror and keeps it in a merge target', async () => {
    const s = await scenario()
    for (const [id, mode] of [['m', 'mirror'], ['g', 'merge']] as const) {
      await s.h.backfillAll(await s.addRule({ id, mode, to: { platform: 'tgt', collection: `to-${id}` } }))
    }
    await s.feed(s.src.put('posts', '1', { lang: 'en' }), s.src.put('posts', '2', { lang: 'fr' }))
    for (const id of ['m', 'g']) {
      const rule = await s.addRule({ id, mode: id === 'm' ? 'mirror' : 'merge', to: { platform: 'tgt', collection: `to-${id}` }, where: { lang: 'en' }, updatedAt: new Date().toISOString() })
      expect(s.h.lastChanged.map(c => c.rule.id)).toEqual([id])
      await s.h.backfillAll(rule)
      expect((await s.h.ingestor.backfillState(id))?.reeval).toBe(true)
    }
    expect(Object.keys(await s.h.live('to-m'))).toEqual(['1'])
    expect(Object.keys(await s.h.live('to-g')).sort()).toEqual(['1', '2'])
  })
})

describe('targets', () => {
  it('a region target applies on the platforms of the region, follows the registry, and never on the source', async () => {
    const s = await scenario()
    const rule: RuleInput = { id: 'eu', from: { platform: 'src', collection: 'posts' }, to: { region: 'eu', collection: 'articles' } }
    await s.feed(s.src.put('posts', '1', { t: 1 }))
    await s.h.ingestRun(s.admin.origin, [s.admin.put(RULES_COLLECTION, 'eu', ruleValue(rule))])
    expect(s.h.rules.get('eu')).toBeUndefined() // tgt has no region yet
    await s.h.ingestRun(s.admin.origin, [s.admin.put(PLATFORMS_COLLECTION, 'tgt', platformValue('tgt', s.h.self, { region: 'eu' }))])
    expect(s.h.lastChanged.map(c => c.rule.id)).toEqual(['eu'])
    await s.h.backfillAll(s.h.rules.get('eu') as NonNullable<ReturnType<typeof s.h.rules.get>>)
    expect(await s.h.live('articles')).toEqual({ 1: { t: 1 } })
    // the source itself is in the region too, but a rule never targets its own source
    await s.h.ingestRun(s.admin.origin, [s.admin.put(PLATFORMS_COLLECTION, 'tgt', platformValue('tgt', s.h.self, { region: 'eu' })), s.admin.put(RULES_COLLECTION, 'self', ruleValue({ id: 'self', from: { platform: 'tgt', collection: 'notes' }, to: { region: 'eu', collection: 'copies' } }))])
    expect(s.h.rules.get('self')).toBeUndefined()
    // leaving the region stops the rule, keeping what it wrote
    await s.h.ingestRun(s.admin.origin, [s.admin.put(PLATFORMS_COLLECTION, 'tgt', platformValue('tgt', s.h.self, { region: 'us' }))])
    expect(s.h.rules.get('eu')).toBeUndefined()
    await s.feed(s.src.put('posts', '2', { t: 2 }))
    expect(await s.h.live('articles')).toEqual({ 1: { t: 1 } })
  })

  it('tag and "*" targets', async () => {
    const s = await scenario()
    await s.h.ingestRun(s.admin.origin, [s.admin.put(PLATFORMS_COLLECTION, 'tgt', platformValue('tgt', s.h.self, { tags: ['edge', 'cms'] }))])
    await s.addRule({ id: 'tag', to: { tag: 'edge', collection: 'by-tag' } })
    await s.addRule({ id: 'all', to: { platform: '*', collection: 'by-all' } })
    await s.h.ingestRun(s.admin.origin, [s.admin.put(RULES_COLLECTION, 'none', ruleValue({ id: 'none', from: { platform: 'src', collection: 'posts' }, to: { tag: 'store', collection: 'nope' } }))])
    expect(s.h.rules.get('none')).toBeUndefined()
    await s.feed(s.src.put('posts', '1', { t: 1 }))
    expect(await s.h.live('by-tag')).toEqual({ 1: { t: 1 } })
    expect(await s.h.live('by-all')).toEqual({ 1: { t: 1 } })
  })

  it('per-record targeting: a record naming platforms is delivered only there', async () => {
    const s = await scenario()
    await s.addRule({ id: 'r', targetsField: 'meta.platforms' })
    const r = await s.feed(
      s.src.put('posts', 'mine', { meta: { platforms: ['tgt', 'other'] } }),
      s.src.put('posts', 'single', { meta: { platforms: 'tgt' } }),
      s.src.put('posts', 'theirs', { meta: { platforms: ['other'] } }),
      s.src.put('posts', 'everyone', { title: 'x' }),
      s.src.put('posts', 'null', { meta: { platforms: null } }),
      s.src.put('posts', 'bad', { meta: { platforms: 5 } })
    )
    expect(Object.keys(await s.h.live('articles')).sort()).toEqual(['everyone', 'mine', 'null', 'single'])
    expect(r.skipped).toEqual([{ ruleId: 'r', id: 'bad', reason: expect.stringContaining('must name platforms') }])
  })
})

describe('transform modules', () => {
  it('transform the value, skip on null, and report a throw without stopping the sync', async () => {
    const s = await scenario()
    await module(s.h, 'slug.mjs', `
      export default function (record, context) {
        if (record.value.skip) return null
        if (record.value.boom) throw new TypeError('cannot slugify ' + record.id)
        return { ...record.value, slug: record.value.title.toLowerCase().replace(/ /g, '-'), via: context.rule.id, from: context.source.platform, on: context.target.platform }
      }`)
    await s.addRule({ id: 't', transform: 'slug.mjs', exclude: ['secret'] })
    const r = await s.feed(
      s.src.put('posts', '1', { title: 'Hello World', secret: 's' }),
      s.src.put('posts', '2', { title: 'x', skip: true }),
      s.src.put('posts', '3', { title: 'y', boom: true }),
      s.src.put('posts', '4', { title: 'Last One' })
    )
    expect(await s.h.live('articles')).toEqual({
      1: { title: 'Hello World', slug: 'hello-world', via: 't', from: 'src', on: 'tgt' },
      4: { title: 'Last One', slug: 'last-one', via: 't', from: 'src', on: 'tgt' }
    })
    expect(r.transformErrors).toEqual([expect.objectContaining({ ruleId: 't', module: 'slug.mjs', collection: 'posts', id: '3', error: 'TypeError: cannot slugify 3', n: 1 })])
    expect(s.h.ingestor.counter('t', 'transformErrors')).toBe(1)
    // the error log keeps the newest 20
    for (let i = 0; i < 25; i++) await s.feed(s.src.put('posts', `e${i}`, { title: 'z', boom: true }))
    expect(s.h.ingestor.counter('t', 'transformErrors')).toBe(26)
    expect(await s.h.keysWithPrefix(keys.transformErrorPrefix('t'))).toHaveLength(20)
    await s.h.reopen()
    expect(s.h.ingestor.counter('t', 'transformErrors')).toBe(26)
  })

  it('async and TypeScript modules; bad returns are errors; modules outside the directory are refused', async () => {
    const s = await scenario()
    await module(s.h, 'async.ts', `
      interface V { n: number }
      export async function transform (record: { value: V }): Promise<V | string> {
        await new Promise(resolve => setTimeout(resolve, 1))
        return record.value.n > 1 ? 'not an object' : { n: record.value.n * 10 }
      }`)
    await s.addRule({ id: 'ts', transform: 'async.ts' })
    const r = await s.feed(s.src.put('posts', '1', { n: 1 }), s.src.put('posts', '2', { n: 2 }))
    expect(await s.h.live('articles')).toEqual({ 1: { n: 10 } })
    expect(r.transformErrors?.[0].error).toMatch(/returned string/)
    await s.h.ingestRun(s.admin.origin, [s.admin.put(RULES_COLLECTION, 'out', ruleValue({ id: 'out', from: { platform: 'src', collection: 'posts' }, to: { platform: 'tgt', collection: 'x' }, transform: '/etc/passwd' }))])
    expect(s.h.rules.problems).toEqual([{ ruleId: 'out', message: expect.stringContaining('outside the transforms directory') }])
    await s.h.ingestRun(s.admin.origin, [s.admin.put(RULES_COLLECTION, 'missing', ruleValue({ id: 'missing', from: { platform: 'src', collection: 'posts' }, to: { platform: 'tgt', collection: 'y' }, transform: 'nope.js' }))])
    expect(s.h.rules.problems.find(p => p.ruleId === 'missing')?.message).toMatch(/not found/)
  })

  it('a changed module re-evaluates the source data', async () => {
    const s = await scenario()
    await module(s.h, 'v.mjs', 'export default (r) => ({ ...r.value, version: 1 })')
    const rule = await s.addRule({ id: 'v', transform: 'v.mjs' })
    await s.feed(s.src.put('posts', '1', { t: 1 }))
    await s.h.backfillAll(rule)
    const before = await s.h.record('articles', '1')
    await module(s.h, 'v.mjs', 'export default (r) => ({ ...r.value, version: 2, changed: true })')
    const changed = await s.h.reloadModules()
    expect(changed.map(c => c.rule.id)).toEqual(['v'])
    await s.h.backfillAll(changed[0])
    const after = await s.h.record('articles', '1')
    expect(after?.value).toEqual({ t: 1, version: 2, changed: true })
    expect(after?.version).toEqual(before?.version) // the same source write, re-evaluated
  })
})

describe('rule updates re-evaluate the source data', () => {
  it('a changed rename rewrites what the rule wrote; conflicts met before are not counted again', async () => {
    const s = await scenario()
    await s.addRule({ id: 'r', rename: { title: 'name' } })
    await s.feed(s.src.put('posts', '1', { title: 'a' }), s.src.put('posts', '2', { title: 'b' }))
    // a later local write on 2 wins over the next source update: one conflict
    await s.h.writeLocal([{ collection: 'articles', id: '2', op: 'put', value: { mine: true } }])
    await s.feed(s.src.put('posts', '2', { title: 'c' }))
    expect(s.h.ingestor.counter('r', 'conflicts')).toBe(2) // the local write over the rule's record, the update that lost
    const updated = await s.addRule({ id: 'r', rename: { title: 'headline' }, updatedAt: new Date().toISOString() })
    await s.h.backfillAll(updated)
    expect(await s.h.live('articles')).toEqual({ 1: { headline: 'a' }, 2: { mine: true } })
    expect(s.h.ingestor.counter('r', 'conflicts')).toBe(2)
  })
})

describe('conflicts', () => {
  it('a local write meets an incoming one: logged with both versions and the winner, whichever wins', async () => {
    const s = await scenario()
    await s.addRule({ id: 'r' })
    await s.feed(s.src.put('posts', '1', { v: 'source 1' }))
    await s.h.writeLocal([{ collection: 'articles', id: '1', op: 'put', value: { v: 'local' } }])
    // an update older than the local write loses; a newer one wins
    await s.feed(s.src.put('posts', '1', { v: 'older' }))
    const r = await s.feed(s.src.put('posts', '1', { v: 'newer' }, { wall: Date.now() + 5_000, logical: 0 }))
    expect(r.conflicts).toHaveLength(1)
    expect(await s.h.value('articles', '1')).toEqual({ v: 'newer' })
    const log = await conflictLog(s.h, 'r')
    expect(log.map(c => [c.kind, c.winner])).toEqual([['local-write', 'incoming'], ['local-write', 'existing'], ['local-write', 'incoming']])
    expect(log[1]).toMatchObject({
      n: 2, ruleId: 'r', collection: 'articles', id: '1',
      existing: { op: 'put', local: true, value: { v: 'local' }, version: { origin: s.h.self } },
      incoming: { op: 'put', local: false, ruleId: 'r', platform: 'src', value: { v: 'older' }, version: { origin: s.src.origin } }
    })
    // the source's next write replaces its own version: no conflict
    await s.feed(s.src.put('posts', '1', { v: 'newest' }, { wall: Date.now() + 6_000, logical: 0 }))
    expect(s.h.ingestor.counter('r', 'conflicts')).toBe(3)
  })

  it('a local write that loses to a later write the rule placed is a conflict too', async () => {
    const s = await scenario()
    await s.addRule({ id: 'r' })
    // a source clock far ahead (beyond what this node adopts): its write stays the later one
    await s.feed(s.src.put('posts', '1', { v: 'from the future' }, { wall: Date.now() + 10 * 60_000, logical: 0 }))
    const { result } = await s.h.writeLocal([{ collection: 'articles', id: '1', op: 'put', value: { v: 'local' } }])
    expect(result.changes).toEqual([])
    expect(await s.h.value('articles', '1')).toEqual({ v: 'from the future' })
    expect(result.conflicts).toEqual([expect.objectContaining({ kind: 'local-write', winner: 'existing', incoming: expect.objectContaining({ local: true, value: { v: 'local' } }) })])
  })

  it('two sources writing one target record, and two source records with one key', async () => {
    const s = await scenario()
    const other = new OriginLog(await newPeerId())
    await s.h.ingestRun(s.admin.origin, [s.admin.put(PLATFORMS_COLLECTION, 'other', platformValue('other', other.origin))])
    await s.addRule({ id: 'a' })
    await s.addRule({ id: 'b', from: { platform: 'other', collection: 'posts' } })
    await s.addRule({ id: 'k', key: 'slug', to: { platform: 'tgt', collection: 'by-slug' } })
    await s.feed(s.src.put('posts', '1', { from: 'src', slug: 's' }), s.src.put('posts', '2', { from: 'src 2', slug: 's' }))
    await s.h.ingestRun(other.origin, [other.put('posts', '1', { from: 'other' }, { wall: Date.now() + 1_000, logical: 0 })])
    expect(await s.h.value('articles', '1')).toEqual({ from: 'other' })
    expect((await conflictLog(s.h, 'b')).map(c => [c.kind, c.winner, c.existing.ruleId])).toEqual([['other-source', 'incoming', 'a']])
    expect((await conflictLog(s.h, 'k')).map(c => [c.kind, c.id, c.winner])).toEqual([['key-collision', 's', 'incoming']])
  })

  it('keeps the newest 50 per rule and counts them all, across restarts', async () => {
    const s = await scenario()
    await s.addRule({ id: 'r' })
    await s.feed(...Array.from({ length: 60 }, (_, i) => s.src.put('posts', `p${i}`, { v: 1 })))
    await s.h.writeLocal(Array.from({ length: 60 }, (_, i) => ({ collection: 'articles', id: `p${i}`, op: 'put' as const, value: { mine: true } })))
    expect(s.h.ingestor.counter('r', 'conflicts')).toBe(60)
    const log = await conflictLog(s.h, 'r')
    expect(log.map(c => c.n)).toEqual(Array.from({ length: 50 }, (_, i) => i + 11))
    await s.h.reopen()
    expect(s.h.ingestor.counter('r', 'conflicts')).toBe(60)
  })
})

/** Nodes in one process: each a Harness; `ferry` carries one node's own log to another. */
async function mesh (names: string[], rules: RuleInput[]): Promise<Map<string, Harness>> {
  const nodes = new Map<string, Harness>()
  for (const n of names) nodes.set(n, await harness(n))
  const admin = new OriginLog(await newPeerId(), Date.now() - 120_000)
  const registry = [
    ...names.map(n => admin.put(PLATFORMS_COLLECTION, n, platformValue(n, (nodes.get(n) as Harness).self))),
    ...rules.map(r => admin.put(RULES_COLLECTION, r.id, ruleValue(r)))
  ]
  for (const h of nodes.values()) await h.ingestRun(admin.origin, registry)
  return nodes
}

/** Carry everything `from` holds of every origin to `to`; returns the entries `to` newly stored. */
async function ferry (from: Harness, to: Harness): Promise<number> {
  let stored = 0
  for (const origin of [...from.log.vector.origins()]) {
    const held = to.log.vector.get(origin)
    const run = await from.log.readRun(origin, held, 100_000, 1 << 30)
    if (run === undefined) continue
    const entries: LogEntry[] = run.entries.map(b => decodeEntry(origin, b))
    const r = await to.ingest(origin, held, run.toSeq, entries)
    stored += r?.stored ?? 0
  }
  return stored
}

/** Ferry between every pair until nothing moves; returns the rounds it took. */
async function settle (nodes: Harness[], maxRounds = 20): Promise<number> {
  for (let round = 1; round <= maxRounds; round++) {
    let moved = 0
    for (const a of nodes) for (const b of nodes) if (a !== b) moved += await ferry(a, b)
    if (moved === 0) return round
  }
  throw new Error(`still moving after ${maxRounds} rounds: a cycle of rules did not settle`)
}

describe('chaining', () => {
  it('records a rule writes into B:x flow on through B:x → C:y, with the original write\'s clock', async () => {
    const nodes = await mesh(['A', 'B', 'C'], [
      { id: 'ab', from: { platform: 'A', collection: 'posts' }, to: { platform: 'B', collection: 'x' } },
      { id: 'bc', from: { platform: 'B', collection: 'x' }, to: { platform: 'C', collection: 'y' }, rename: { t: 'title' } }
    ])
    const [a, b, c] = ['A', 'B', 'C'].map(n => nodes.get(n) as Harness)
    const { entries } = await a.writeLocal([{ collection: 'posts', id: '1', op: 'put', value: { t: 'hello' } }])
    await settle([a, b, c])
    expect(await b.live('x')).toEqual({ 1: { t: 'hello' } })
    expect(await c.live('y')).toEqual({ 1: { title: 'hello' } })
    // B logged the derived write once, with the identity of A's write (its clock, origin and seq); C's record carries it
    const derived = (await b.ownEntries()).filter(e => e.collection === 'x')
    expect(derived).toHaveLength(1)
    expect(derived[0].hlc).toEqual(entries[0].hlc)
    expect({ writer: derived[0].writer, writerSeq: derived[0].writerSeq }).toEqual({ writer: a.self, writerSeq: entries[0].seq })
    expect((await b.record('x', '1'))?.version).toEqual({ hlc: entries[0].hlc, origin: a.self, seq: entries[0].seq })
    expect((await c.record('y', '1'))?.version).toEqual({ hlc: entries[0].hlc, origin: a.self, seq: entries[0].seq })
    // a delete travels the chain too
    await a.writeLocal([{ collection: 'posts', id: '1', op: 'del' }])
    await settle([a, b, c])
    expect(await c.live('y')).toEqual({})
  })

  it('a write relayed through chaining is the same write: one change, no conflict, one version on every node (three nodes, two-way rules)', async () => {
    const rules = ['A', 'B', 'C'].map(n => ({ id: `${n.toLowerCase()}-all`, from: { platform: n, collection: 'events' }, to: { platform: '*', collection: 'events' } }))
    const nodes = await mesh(['A', 'B', 'C'], rules)
    const [a, b, c] = ['A', 'B', 'C'].map(n => nodes.get(n) as Harness)
    const { entries } = await a.writeLocal(Array.from({ length: 5 }, (_, i) => ({ collection: 'events', id: `e${i}`, op: 'put' as const, value: { i } })))
    // B gets A's writes first and relays them to C before C gets them from A
    await ferry(a, b)
    await ferry(b, c)
    await settle([a, b, c])
    for (const [i, e] of entries.entries()) {
      const versions = await Promise.all([a, b, c].map(async h => await h.record('events', `e${i}`)))
      for (const v of versions) expect(v?.version).toEqual({ hlc: e.hlc, origin: a.self, seq: e.seq })
    }
    for (const h of [b, c]) {
      for (const r of rules) expect(await conflictLog(h, r.id)).toEqual([])
      // one feed cursor per record: nothing was written twice
      const feed = await readFeed(h.store, 0, 'events', 100)
      expect(feed.lines.map(l => Number(l.cursor)).sort((x, y) => x - y)).toEqual([1, 2, 3, 4, 5])
    }
  })

  it('the same write reaching a target through two rules with different transforms ends the same whichever copy comes first', async () => {
    const rules = [
      { id: 'r1-direct', from: { platform: 'A', collection: 'posts' }, to: { platform: 'C', collection: 'y' } },
      { id: 'r2-to-b', from: { platform: 'A', collection: 'posts' }, to: { platform: 'B', collection: 'x' }, rename: { t: 'title' } },
      { id: 'r0-via-b', from: { platform: 'B', collection: 'x' }, to: { platform: 'C', collection: 'y' } }
    ]
    const outcomes: unknown[] = []
    for (const relayedFirst of [false, true]) {
      const nodes = await mesh(['A', 'B', 'C'], rules)
      const [a, b, c] = ['A', 'B', 'C'].map(n => nodes.get(n) as Harness)
      const { entries } = await a.writeLocal([{ collection: 'posts', id: '1', op: 'put', value: { t: 'hello' } }])
      await ferry(a, b)
      if (relayedFirst) {
        // only B's own log (the relayed copy) first
        const run = await b.log.readRun(b.self, 0, 100_000, 1 << 30)
        if (run === undefined) throw new Error('B logged nothing')
        await c.ingest(b.self, 0, run.toSeq, run.entries.map(x => decodeEntry(b.self, x)))
      }
      await settle([a, b, c])
      const rec = await c.record('y', '1')
      // the value, and whether the record carries the write's own version (the meshes' peer ids and clocks differ)
      outcomes.push({ value: rec?.value, theWrite: JSON.stringify(rec?.version) === JSON.stringify({ hlc: entries[0].hlc, origin: a.self, seq: entries[0].seq }) })
      for (const r of rules) expect(await conflictLog(c, r.id)).toEqual([])
    }
    // the rule with the smaller id gives the value
    expect(outcomes).toEqual([{ value: { title: 'hello' }, theWrite: true }, { value: { title: 'hello' }, theWrite: true }])
  })

  it('only collections a rule reads from are logged; when such a rule appears, what is there is published', async () => {
    const nodes = await mesh(['A', 'B'], [{ id: 'ab', from: { platform: 'A', collection: 'posts' }, to: { platform: 'B', collection: 'x' } }])
    const [a, b] = ['A', 'B'].map(n => nodes.get(n) as Harness)
    await a.writeLocal([{ collection: 'posts', id: '1', op: 'put', value: { n: 1 } }, { collection: 'posts', id: '2', op: 'put', value: { n: 2 } }])
    await settle([a, b])
    expect(await b.live('x')).toEqual({ 1: { n: 1 }, 2: { n: 2 } })
    expect((await b.ownEntries()).filter(e => e.collection === 'x')).toEqual([])
    // a rule from B:x appears (B → B:copies, a rule on the same node)
    const admin = new OriginLog(await newPeerId(), Date.now() - 100_000)
    await b.ingestRun(admin.origin, [admin.put(RULES_COLLECTION, 'bb', ruleValue({ id: 'bb', from: { platform: 'B', collection: 'x' }, to: { platform: 'B', collection: 'copies' } }))])
    expect(b.rules.isPublished('x')).toBe(true)
    await b.publishAll('x')
    expect((await b.ownEntries()).filter(e => e.collection === 'x').map(e => e.id).sort()).toEqual(['1', '2'])
    expect(await b.live('copies')).toEqual({ 1: { n: 1 }, 2: { n: 2 } })
    // publishing again adds nothing; new writes are logged as they are applied
    await b.ingestor.unpublish('x')
    await b.publishAll('x')
    expect((await b.ownEntries()).filter(e => e.collection === 'x')).toHaveLength(2)
    await a.writeLocal([{ collection: 'posts', id: '3', op: 'put', value: { n: 3 } }])
    const r = await ferry(a, b)
    expect(r).toBe(1)
    expect((await b.ownEntries()).filter(e => e.collection === 'x')).toHaveLength(3)
    expect(await b.value('copies', '3')).toEqual({ n: 3 })
  })

  it('a node on which no rule ever wrote a record does not read the collection when a rule on it appears', async () => {
    const nodes = await mesh(['A', 'B'], [])
    const [a, b] = ['A', 'B'].map(n => nodes.get(n) as Harness)
    await a.writeLocal([1, 2, 3].map(i => ({ collection: 'posts', id: String(i), op: 'put' as const, value: { n: i } })))
    const before = (await a.ownEntries()).length
    const admin = new OriginLog(await newPeerId(), Date.now() - 100_000)
    await a.ingestRun(admin.origin, [admin.put(RULES_COLLECTION, 'ab', ruleValue({ id: 'ab', from: { platform: 'A', collection: 'posts' }, to: { platform: 'B', collection: 'x' } }))])
    expect(a.rules.isPublished('posts')).toBe(true)
    const db = a.store.db
    const iterator = db.iterator.bind(db)
    const ranges: string[] = []
    db.iterator = ((options?: { gt?: string, gte?: string }) => {
      ranges.push(options?.gt ?? options?.gte ?? '')
      return iterator(options)
    }) as typeof db.iterator
    try {
      await a.publishAll('posts')
    } finally {
      db.iterator = iterator
    }
    expect(ranges.filter(r => r.startsWith(keys.recordPrefix('posts')))).toEqual([])
    expect(await a.raw(keys.publish('posts'))).toBeDefined() // done: not scanned at the next start either
    // its local writes were logged when made, and reach the rule's target as before
    expect((await a.ownEntries()).length).toBe(before)
    await settle([a, b])
    const rule = b.rules.get('ab')
    if (rule === undefined) throw new Error('rule ab is not active on B')
    await b.backfillAll(rule)
    expect(await b.live('x')).toEqual({ 1: { n: 1 }, 2: { n: 2 }, 3: { n: 3 } })
  })

  it('two-way sync (a cycle of two rules) settles, also with a transform that changes the value every time', async () => {
    const nodes = await mesh(['A', 'B'], [
      { id: 'ab', from: { platform: 'A', collection: 'notes' }, to: { platform: 'B', collection: 'notes' } },
      { id: 'ba', from: { platform: 'B', collection: 'notes' }, to: { platform: 'A', collection: 'notes' }, transform: 'count.mjs' }
    ])
    const [a, b] = ['A', 'B'].map(n => nodes.get(n) as Harness)
    await module(a, 'count.mjs', 'export default (r) => ({ ...r.value, hops: (r.value.hops ?? 0) + 1 })')
    expect((await a.reloadModules()).map(c => c.rule.id)).toEqual(['ba'])
    await a.writeLocal([{ collection: 'notes', id: '1', op: 'put', value: { v: 1 } }])
    expect(await settle([a, b])).toBeLessThanOrEqual(3)
    expect(await a.value('notes', '1')).toEqual({ v: 1 })
    expect(await b.value('notes', '1')).toEqual({ v: 1 })
    await b.writeLocal([{ collection: 'notes', id: '1', op: 'put', value: { v: 2 } }])
    expect(await settle([a, b])).toBeLessThanOrEqual(3)
    expect(await a.value('notes', '1')).toEqual({ v: 2, hops: 1 })
    expect(await b.value('notes', '1')).toEqual({ v: 2 })
    // deletes go both ways
    await b.writeLocal([{ collection: 'notes', id: '1', op: 'del' }])
    await settle([a, b])
    expect(await a.value('notes', '1')).toBeUndefined()
  })
})

describe('changes feed index', () => {
  it('keeps the newest change per record, in commit order, resumable by cursor', async () => {
    const h = await harness('tgt')
    await h.writeLocal([{ collection: 'a', id: '1', op: 'put', value: { v: 1 } }, { collection: 'a', id: '2', op: 'put', value: { v: 1 } }, { collection: 'b', id: '1', op: 'put', value: {} }])
    await h.writeLocal([{ collection: 'a', id: '1', op: 'put', value: { v: 2 } }, { collection: 'a', id: '2', op: 'del' }])
    const all = await readFeed(h.store, 0, undefined, 100)
    expect(all.lines.map(l => `${l.cursor} ${l.collection}/${l.id} ${l.op}`)).toEqual(['3 b/1 put', '4 a/1 put', '5 a/2 del'])
    expect(all.lines[1].value).toEqual({ v: 2 })
    const onlyA = await readFeed(h.store, 3, 'a', 100)
    expect(onlyA.lines.map(l => l.cursor)).toEqual(['4', '5'])
    expect((await readFeed(h.store, 5, 'a', 100)).lines).toEqual([])
    // bounded on disk: one index entry per record
    expect(await h.keysWithPrefix(keys.feedByCollectionPrefix('a'))).toHaveLength(2)
    expect(await h.keysWithPrefix(keys.feedByCollectionPrefix('b'))).toHaveLength(1)
    // the whole node's feed merges the collections in cursor order, chunk by chunk
    await h.writeLocal([{ collection: 'b', id: '2', op: 'put', value: {} }, { collection: 'c', id: '1', op: 'put', value: {} }, { collection: 'a', id: '3', op: 'put', value: {} }])
    const seen: string[] = []
    let cursor = 0
    for (;;) {
      const chunk = await readFeed(h.store, cursor, undefined, 2)
      if (chunk.read === 0) break
      seen.push(...chunk.lines.map(l => `${l.cursor}:${l.collection}/${l.id}`))
      cursor = chunk.last
    }
    expect(seen).toEqual(['3:b/1', '4:a/1', '5:a/2', '6:b/2', '7:c/1', '8:a/3'])
    await h.reopen()
    expect(h.ingestor.lastCursor()).toBe(8)
  })

  it('indexes records written before the feed existed, once', async () => {
    const h = await harness('tgt')
    await h.writeLocal([{ collection: 'a', id: '1', op: 'put', value: { v: 1 } }])
    // an old data directory: records without cursors, no index
    const bytes = await h.raw(keys.record('a', '1')) as Uint8Array
    const old = decodeJson<JsonObject>(bytes)
    delete old.c
    await h.store.db.batch([
      { type: 'put', key: keys.record('a', '1'), value: new TextEncoder().encode(JSON.stringify(old)) },
      { type: 'del', key: keys.feedByCollection('a', 1) }, { type: 'del', key: keys.meta('feed-indexed') }, { type: 'del', key: keys.meta('feed-cursor') }
    ])
    await h.reopen()
    const feed = await readFeed(h.store, 0, undefined, 10)
    expect(feed.lines.map(l => `${l.collection}/${l.id}`)).toEqual(['a/1'])
  })
})
