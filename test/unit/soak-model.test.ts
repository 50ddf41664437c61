/**
 * The soak's verdicts (scripts/lib/soak-model.ts) and its seeded schedule
 * (scripts/lib/soak-schedule.ts): what counts as lost, stale, resurrected or
 * a last-writer-wins violation, and that a seed always gives the same faults.
 */
import { describe, expect, it } from 'vitest'
import { History, check } from '../../scripts/lib/soak-model.js'
import type { Held, NodeView, WriteOp } from '../../scripts/lib/soak-model.js'
import { makeSchedule } from '../../scripts/lib/soak-schedule.js'

const op = (o: Partial<WriteOp> & Pick<WriteOp, 'node' | 'op' | 'id'>): WriteOp => ({ t: 0, outcome: 'ack', ...o })
const held = (w: string, version?: Held['version']): Held => ({ w, value: { w }, ...(version !== undefined ? { version } : {}) })
const view = (entries: Record<string, Held>): NodeView => new Map(Object.entries(entries))

describe('soak checks: owned ids', () => {
  it('passes when every node holds the last acknowledged write, and nothing that was deleted', () => {
    const h = new History()
    h.add(op({ node: 'n0', op: 'put', id: 'n0-1', w: 'a' }), false)
    h.add(op({ node: 'n0', op: 'put', id: 'n0-1', w: 'b' }), false)
    h.add(op({ node: 'n0', op: 'put', id: 'n0-2', w: 'c' }), false)
    h.add(op({ node: 'n0', op: 'del', id: 'n0-2' }), false)
    const r = check(h, new Map([['n0', view({ 'n0-1': held('b') })], ['n1', view({ 'n0-1': held('b') })]]), undefined)
    expect(r.violations).toEqual([])
    expect(r.digestsEqual).toBe(true)
  })

  it('reports a missing, a stale and a resurrected record on a replica', () => {
    const h = new History()
    h.add(op({ node: 'n0', op: 'put', id: 'x', w: 'a' }), false)
    h.add(op({ node: 'n0', op: 'put', id: 'x', w: 'b' }), false)
    h.add(op({ node: 'n0', op: 'put', id: 'y', w: 'c' }), false)
    h.add(op({ node: 'n0', op: 'put', id: 'z', w: 'd' }), false)
    h.add(op({ node: 'n0', op: 'del', id: 'z' }), false)
    const origin = view({ x: held('b'), y: held('c') })
    const replica = view({ x: held('a'), z: held('d') })
    const r = check(h, new Map([['n0', origin], ['n1', replica]]), undefined)
    expect(r.counts).toMatchObject({ stale: 1, lost: 1, resurrected: 1, 'origin-lost': 0 })
    expect(r.digestsEqual).toBe(false)
  })

  it('lets the owner decide a write of unknown outcome, and holds every replica to that', () => {
    const h = new History()
    h.add(op({ node: 'n0', op: 'put', id: 'x', w: 'a' }), false)
    h.add(op({ node: 'n0', op: 'put', id: 'x', w: 'b', outcome: 'unknown' }), false)
    h.add(op({ node: 'n0', op: 'put', id: 'new', w: 'c', outcome: 'unknown' }), false)
    // the owner kept the unknown write of x and lost the unknown create: both allowed
    expect(check(h, new Map([['n0', view({ x: held('b') })], ['n1', view({ x: held('b') })]]), undefined).violations).toEqual([])
    expect(check(h, new Map([['n0', view({ x: held('a') })], ['n1', view({ x: held('a') })]]), undefined).violations).toEqual([])
    // but a replica that disagrees with the owner is stale
    const r = check(h, new Map([['n0', view({ x: held('a') })], ['n1', view({ x: held('b') })]]), undefined)
    expect(r.counts.stale).toBe(1)
    // and an acknowledged write missing on its owner is lost there
    const lost = check(h, new Map([['n0', view({})], ['n1', view({})]]), undefined)
    expect(lost.counts['origin-lost']).toBe(1)
  })

  it('reports a record nobody wrote', () => {
    const h = new History()
    const r = check(h, new Map([['n0', view({ ghost: held('g') })]]), undefined)
    expect(r.counts.unexpected).toBe(1)
  })
})

describe('soak checks: shared ids (last writer wins)', () => {
  const v = (hlc: string, origin: string, seq = 1): { hlc: string, origin: string, seq: number } => ({ hlc, origin, seq })

  it('expects the acknowledged write with the largest (HLC, origin) everywhere', () => {
    const h = new History()
    h.add(op({ node: 'n0', op: 'put', id: 's', w: 'early', version: v('1000.0', 'peerA') }), true)
    h.add(op({ node: 'n1', op: 'put', id: 's', w: 'late', version: v('1000.5', 'peerB') }), true)
    h.add(op({ node: 'n2', op: 'put', id: 's', w: 'tie', version: v('1000.5', 'peerC') }), true)
    const good = check(h, new Map([['n0', view({ s: held('tie') })], ['n1', view({ s: held('tie') })]]), undefined)
    expect(good.violations).toEqual([])
    const bad = check(h, new Map([['n0', view({ s: held('late') })], ['n1', view({ s: held('tie') })]]), undefined)
    expect(bad.counts.lww).toBe(1)
    expect(bad.lwwIds).toEqual(['s'])
    expect(bad.sharedDiffering).toBe(1)
  })

  it('accepts an unknown-outcome write as winner only if its own node shows it with a later version', () => {
    const h = new History()
    h.add(op({ node: 'n0', op: 'put', id: 's', w: 'acked', version: v('2000.0', 'peerA') }), true)
    h.add(op({ node: 'n1', op: 'put', id: 's', w: 'maybe', outcome: 'unknown' }), true)
    const later = check(h, new Map([['n0', view({ s: held('maybe') })], ['n1', view({ s: held('maybe', v('2001.0', 'peerB')) })]]), undefined)
    expect(later.violations).toEqual([])
    const earlier = check(h, new Map([['n0', view({ s: held('maybe') })], ['n1', view({ s: held('maybe', v('1999.0', 'peerB')) })]]), undefined)
    expect(earlier.counts.lww).toBe(2)
  })
})

describe('soak checks: the mirror rule', () => {
  it('wants the mirror to equal its source exactly', () => {
    const h = new History()
    h.add(op({ node: 'n0', op: 'put', id: 'a', w: 'a1' }), false)
    const src = view({ a: held('a1') })
    const ok = check(h, new Map([['n0', src], ['n2', view({ a: held('a1') })]]), { source: 'n0', targets: new Map([['n2', view({ a: held('a1') })]]) })
    expect(ok.violations).toEqual([])
    const extra = check(h, new Map([['n0', src], ['n2', view({ a: held('a1') })]]), { source: 'n0', targets: new Map([['n2', view({ a: held('a1'), b: held('b1') })]]) })
    expect(extra.counts.mirror).toBe(1)
  })
})

describe('soak schedule', () => {
  it('is the same for the same seed and differs between seeds', () => {
    expect(makeSchedule(101, 240, 5)).toEqual(makeSchedule(101, 240, 5))
    expect(makeSchedule(101, 240, 5).faults).not.toEqual(makeSchedule(102, 240, 5).faults)
  })

  it('keeps faults one after another inside the run, and uses every kind', () => {
    for (const seed of [1, 2, 3, 42, 303]) {
      const s = makeSchedule(seed, 240, 5)
      let end = 0
      for (const f of s.faults) {
        expect(f.at).toBeGreaterThanOrEqual(end)
        end = f.at + f.dur
        expect(end).toBeLessThanOrEqual(240)
        if (f.node !== undefined) expect(f.node).toBeLessThan(5)
        if (f.kind === 'split') expect((f.side ?? []).length).toBeGreaterThan(0)
        if (f.kind === 'split') expect((f.side ?? []).length).toBeLessThanOrEqual(2)
      }
      expect(new Set(s.faults.map(f => f.kind))).toEqual(new Set(['kill', 'kill-import', 'split', 'isolate', 'pause', 'slow']))
    }
  })
})
