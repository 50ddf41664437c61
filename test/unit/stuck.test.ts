/**
 * A sync is reported stuck when the node is behind and its copy of the
 * origin's log has not advanced for a while, not when the lag merely stays
 * the same size (a source writing all the time).
 */
import { describe, expect, it } from 'vitest'
import { StallTracker, StuckDetector } from '../../src/node/stuck.js'
import type { OriginStatus } from '../../src/core/types.js'

const at = (seq: number, announced: number): OriginStatus => ({ origin: 'o1', seq, announced, lag: announced - seq, announcedBy: 'peerA' })

describe('StuckDetector', () => {
  it('does not report a node that keeps receiving while its lag stays the same', () => {
    const d = new StuckDetector(30_000)
    for (let t = 0; t <= 120_000; t += 5_000) {
      // the source writes 1,000 entries every 5 s; the node stays 15,000 behind
      expect(d.check([at(t, t + 15_000)], t)).toEqual([])
    }
  })

  it('reports once when nothing arrives for the whole period, with the peer waited on', () => {
    const d = new StuckDetector(30_000)
    expect(d.check([at(100, 500)], 0)).toEqual([])
    expect(d.check([at(100, 500)], 25_000)).toEqual([])
    const found = d.check([at(100, 600)], 30_000)
    expect(found).toHaveLength(1)
    expect(found[0].origin.lag).toBe(500)
    expect(found[0].forMs).toBe(30_000)
    expect(d.get('o1')).toMatchObject({ peer: 'peerA', reported: true })
    expect(d.check([at(100, 600)], 35_000)).toEqual([]) // once
    // progress clears it
    d.check([at(200, 600)], 40_000)
    expect(d.get('o1')?.reported).toBe(false)
    // caught up: forgotten
    d.check([at(600, 600)], 45_000)
    expect(d.get('o1')).toBeUndefined()
  })
})

describe('StallTracker', () => {
  const bad = { origin: 'o1', fromSeq: 10, toSeq: 20, code: 'RUN_SIGNATURE_MISMATCH', reason: 'altered', offence: true }

  it('makes the second refusal of the same batch from the same peer a stall, once, until the range is held', () => {
    const t = new StallTracker()
    expect(t.refused('p1', bad, 0)).toBeUndefined()
    // another peer, or another range, is another batch
    expect(t.refused('p2', bad, 1)).toBeUndefined()
    expect(t.refused('p1', { ...bad, toSeq: 21 }, 2)).toBeUndefined()
    const stall = t.refused('p1', bad, 1000)
    expect(stall).toMatchObject({ peer: 'p1', origin: 'o1', fromSeq: 10, toSeq: 20, refusals: 2, since: 1000 })
    expect(t.refused('p1', bad, 2000)).toBeUndefined() // reported once
    expect(t.active()).toHaveLength(1)
    expect(t.recent()[0].refusals).toBe(3)
    expect(t).toMatchObject({ total: 1 })
    expect(t.byCode()).toEqual({ RUN_SIGNATURE_MISMATCH: 1 })
    // not held yet: still active; held: recovered, and single refusals of held ranges are forgotten
    expect(t.progress(() => 15, 3000)).toEqual([])
    const recovered = t.progress(() => 21, 4000)
    expect(recovered.map(s => s.peer)).toEqual(['p1'])
    expect(recovered[0].recovered).toBe(4000)
    expect(t.active()).toHaveLength(0)
    expect(t.recent()).toHaveLength(1)
  })

  it('forgets a single refusal after the window', () => {
    const t = new StallTracker()
    t.refused('p1', bad, 0)
    expect(t.refused('p1', bad, 11 * 60_000)).toBeUndefined()
    expect(t.refused('p1', bad, 11 * 60_000 + 1)).toBeDefined()
  })

  it('stays bounded whatever peers send', () => {
    const t = new StallTracker()
    for (let i = 0; i < 5000; i++) t.refused(`p${i % 7}`, { ...bad, fromSeq: i, toSeq: i + 1 }, i)
    expect((t as unknown as { batches: Map<string, unknown> }).batches.size).toBeLessThanOrEqual(1000)
  })
})
