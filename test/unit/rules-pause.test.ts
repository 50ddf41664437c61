/**
 * A rule paused in the middle of its backfill and resumed: the target's pass
 * (a real Ingestor on a real LevelDB) first catches up from where the rule
 * stopped, then the pass the pause interrupted goes on. The state is the one
 * RuleService writes when a paused rule runs again (src/node/rule-service.ts).
 */
import { afterEach, describe, expect, it } from 'vitest'
import type { LogEntry } from '../../src/log/entry.js'
import type { BackfillState } from '../../src/node/ingest.js'
import { encodeJson } from '../../src/store/db.js'
import { keys } from '../../src/store/keys.js'
import { RULES_COLLECTION } from '../../src/store/names.js'
import { ruleValue, Scenario } from '../helpers/ingest-harness.js'

const cleanup: Array<() => Promise<void>> = []
afterEach(async () => {
  while (cleanup.length > 0) await (cleanup.pop() as () => Promise<void>)()
})

const COUNT = 1_234 // more than two chunks of 500
const RULE = { id: 'late', from: { platform: 'src', collection: 'posts' }, to: { platform: 'tgt', collection: 'articles' } }

describe.each(['log', 'index'] as const)('a rule paused during its backfill (%s order)', (order) => {
  it('catches up from where it stopped, then finishes the interrupted pass; nothing written while paused is lost', async () => {
    const s = await Scenario.create()
    cleanup.push(async () => { await s.h.destroy() })
    s.h.ingestor.backfillOrder = order
    const entries: LogEntry[] = []
    for (let i = 0; i < COUNT; i++) entries.push(s.src.put('posts', `p${String(i).padStart(5, '0')}`, { i }))
    await s.feed(...entries)
    const rule = await s.addRule({ id: 'late' })
    let calls = 0
    const first = await s.h.backfillAll(rule, () => calls++ === 0) // stopped after its first chunk
    expect(first).toHaveLength(1)
    const interrupted = await s.h.ingestor.backfillState('late') as BackfillState
    expect(interrupted.done).toBe(false)

    // paused: the rule is no longer active here, and where it stopped is the source's log held now
    await s.h.ingestRun(s.admin.origin, [s.admin.put(RULES_COLLECTION, 'late', { ...ruleValue(RULE), paused: true })])
    expect(s.h.rules.get('late')).toBeUndefined()
    expect(s.h.rules.paused().map(r => r.id)).toEqual(['late'])
    const stoppedAt = s.h.log.held(s.src.origin)
    const whilePaused = await s.feed(
      s.src.put('posts', 'p00010', { changed: 'while paused' }), // backfilled before the pause
      s.src.put('posts', 'p01000', { changed: 'while paused' }), // not reached by the pass yet
      s.src.put('posts', 'p09999', { created: 'while paused' }),
      s.src.del('posts', 'p00011'))
    expect(whilePaused.changes).toEqual([])
    expect(await s.h.value('articles', 'p00010')).toEqual({ i: 10 })

    // resumed
    const resumed = await s.addRule({ id: 'late' })
    const state: BackfillState = { source: interrupted.source, fingerprint: interrupted.fingerprint, done: false, phase: 'source', order: 'log', afterSeq: stoppedAt, catchUp: true, then: interrupted }
    await s.h.store.db.put(keys.backfill('late'), encodeJson(state))
    const chunks = await s.h.backfillAll(resumed)
    // the catch-up reads only what came after the pause point
    expect(chunks[0].changes.map(c => `${c.op} ${c.id}`).sort()).toEqual(['del p00011', 'put p00010', 'put p01000', 'put p09999'])
    const live = await s.h.live('articles')
    expect(Object.keys(live)).toHaveLength(COUNT) // all of them, less p00011, plus p09999
    expect(live.p00010).toEqual({ changed: 'while paused' })
    expect(live.p01000).toEqual({ changed: 'while paused' }) // the interrupted pass did not put the older value back
    expect(live.p09999).toEqual({ created: 'while paused' })
    expect(live.p00011).toBeUndefined()
    expect(live.p01233).toEqual({ i: 1233 })
    expect(await s.h.ingestor.backfillDone('late')).toBe(true)
  })
})
