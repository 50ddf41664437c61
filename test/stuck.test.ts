/**
 * A sync is reported stuck when the node is behind and its copy of the
 * origin's log has not advanced for a while, not when the lag merely stays
 * the same size (a source writing all the time).
 */
import { describe, expect, it } from 'vitest'
import { StuckDetector } from '../src/node/stuck.js'
import type { OriginStatus } from '../src/node/types.js'

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
