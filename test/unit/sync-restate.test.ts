import { describe, expect, it } from 'vitest'
import { restatedSeq } from '../../src/network/sync/session.js'

describe('restatedSeq: what a peer is believed to hold after it restates its vector', () => {
  it('raises to a higher stated value', () => {
    expect(restatedSeq(700, 500, 0, [])).toBe(700)
  })

  it('keeps what batches still in flight bring the peer to (a periodic Vector crossing them)', () => {
    // we sent (100,612], (612,1124], (1124,1636]; the peer had processed only the first when it wrote its Vector
    const inFlight = [{ fromSeq: 100, toSeq: 612 }, { fromSeq: 612, toSeq: 1124 }, { fromSeq: 1124, toSeq: 1636 }]
    expect(restatedSeq(612, 1636, 612, inFlight)).toBe(1636)
    // the peer processed none yet: the chain still starts at what it holds
    expect(restatedSeq(100, 1636, 100, inFlight)).toBe(1636)
  })

  it('rewinds to the stated value after a gap: the batch in flight does not continue it', () => {
    // the peer holds 300; we sent (500,800] (we believed it held 500); it dropped the batch as a gap
    expect(restatedSeq(300, 800, 300, [{ fromSeq: 500, toSeq: 800 }])).toBe(300)
  })

  it('rewinds only to the end of the chain that continues the stated value', () => {
    const inFlight = [{ fromSeq: 300, toSeq: 400 }, { fromSeq: 450, toSeq: 600 }]
    expect(restatedSeq(300, 600, 0, inFlight)).toBe(400)
  })

  it('never below what the peer claimed to hold (a Have, or a batch it sent), never above what we believed', () => {
    expect(restatedSeq(300, 900, 750, [])).toBe(750)
    expect(restatedSeq(300, 500, 750, [])).toBe(500)
    expect(restatedSeq(300, 500, 0, [{ fromSeq: 300, toSeq: 2000 }])).toBe(500)
  })
})
