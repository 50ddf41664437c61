import { describe, expect, it } from 'vitest'
import { compareHlc, formatHlc, HybridClock, MAX_DRIFT_MS, parseHlc, ZERO_HLC } from '../../src/core/hlc.js'
import type { Hlc } from '../../src/core/hlc.js'

/** A controllable wall clock. */
function fakeNow (start: number): { now: () => number, set: (t: number) => void } {
  let t = start
  return { now: () => t, set: (v: number) => { t = v } }
}

function expectIncreasing (list: Hlc[]): void {
  for (let i = 1; i < list.length; i++) {
    expect(compareHlc(list[i - 1], list[i]), `${formatHlc(list[i - 1])} < ${formatHlc(list[i])}`).toBe(-1)
  }
}

describe('HybridClock.tick', () => {
  it('follows the wall clock when it moves forward', () => {
    const clock = fakeNow(1_000)
    const hlc = new HybridClock(ZERO_HLC, clock.now)
    expect(hlc.tick()).toEqual({ wall: 1_000, logical: 0 })
    clock.set(1_005)
    expect(hlc.tick()).toEqual({ wall: 1_005, logical: 0 })
    clock.set(2_000)
    expect(hlc.tick()).toEqual({ wall: 2_000, logical: 0 })
  })

  it('counts logically while the wall clock stands still', () => {
    const clock = fakeNow(5_000)
    const hlc = new HybridClock(ZERO_HLC, clock.now)
    const ticks = Array.from({ length: 100 }, () => hlc.tick())
    expectIncreasing(ticks)
    expect(ticks[0]).toEqual({ wall: 5_000, logical: 0 })
    expect(ticks[99]).toEqual({ wall: 5_000, logical: 99 })
  })

  it('stays monotonic when the wall clock goes backwards', () => {
    const clock = fakeNow(10_000)
    const hlc = new HybridClock(ZERO_HLC, clock.now)
    const ticks: Hlc[] = [hlc.tick()]
    clock.set(9_000) // NTP step back
    ticks.push(hlc.tick(), hlc.tick())
    clock.set(1)
    ticks.push(hlc.tick())
    clock.set(10_000)
    ticks.push(hlc.tick())
    clock.set(10_001)
    ticks.push(hlc.tick())
    expectIncreasing(ticks)
    expect(ticks[1]).toEqual({ wall: 10_000, logical: 1 })
    expect(ticks[4]).toEqual({ wall: 10_000, logical: 4 })
    expect(ticks[5]).toEqual({ wall: 10_001, logical: 0 })
  })

  it('is monotonic under a random walk of the wall clock', () => {
    let seed = 12345
    const rand = (): number => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648 }
    const clock = fakeNow(1_000_000)
    const hlc = new HybridClock(ZERO_HLC, clock.now)
    const ticks: Hlc[] = []
    for (let i = 0; i < 2_000; i++) {
      const r = rand()
      if (r < 0.3) clock.set(clock.now() - Math.floor(rand() * 500))
      else if (r < 0.7) clock.set(clock.now() + Math.floor(rand() * 500))
      ticks.push(hlc.tick())
    }
    expectIncreasing(ticks)
  })

  it('starts after the timestamp it was created with', () => {
    const clock = fakeNow(100)
    const hlc = new HybridClock({ wall: 500, logical: 7 }, clock.now)
    expect(hlc.current()).toEqual({ wall: 500, logical: 7 })
    expect(hlc.tick()).toEqual({ wall: 500, logical: 8 })
  })

  it('returns copies: mutating a returned timestamp does not affect the clock', () => {
    const clock = fakeNow(100)
    const start = { wall: 50, logical: 0 }
    const hlc = new HybridClock(start, clock.now)
    start.wall = 1_000_000
    const t = hlc.tick()
    t.wall = 9_999_999
    const c = hlc.current()
    c.logical = 1234
    expect(hlc.current()).toEqual({ wall: 100, logical: 0 })
    expect(ZERO_HLC).toEqual({ wall: 0, logical: 0 })
  })

  it('uses Date.now by default', () => {
    const before = Date.now()
    const t = new HybridClock().tick()
    expect(t.wall).toBeGreaterThanOrEqual(before)
    expect(t.wall).toBeLessThanOrEqual(Date.now())
  })
})

describe('HybridClock.observe', () => {
  it('a remote timestamp ahead of us makes the next tick greater than it', () => {
    const clock = fakeNow(1_000)
    const hlc = new HybridClock(ZERO_HLC, clock.now)
    hlc.tick()
    const remote = { wall: 1_000 + MAX_DRIFT_MS - 1, logical: 42 }
    hlc.observe(remote)
    expect(hlc.current()).toEqual(remote)
    const next = hlc.tick()
    expect(compareHlc(next, remote)).toBe(1)
    expect(next).toEqual({ wall: remote.wall, logical: 43 })
  })

  it('a remote timestamp with the same wall and higher logical is adopted', () => {
    const clock = fakeNow(1_000)
    const hlc = new HybridClock(ZERO_HLC, clock.now)
    hlc.tick()
    hlc.observe({ wall: 1_000, logical: 9 })
    expect(hlc.tick()).toEqual({ wall: 1_000, logical: 10 })
  })

  it('a remote timestamp behind us changes nothing', () => {
    const clock = fakeNow(5_000)
    const hlc = new HybridClock(ZERO_HLC, clock.now)
    hlc.tick()
    hlc.tick()
    const before = hlc.current()
    hlc.observe({ wall: 4_000, logical: 100 })
    hlc.observe({ wall: 5_000, logical: 0 })
    expect(hlc.current()).toEqual(before)
    expect(hlc.tick()).toEqual({ wall: 5_000, logical: 2 })
  })

  it('observing a timestamp equal to the last one still gives a greater next tick', () => {
    const clock = fakeNow(5_000)
    const hlc = new HybridClock(ZERO_HLC, clock.now)
    const t = hlc.tick()
    hlc.observe(t)
    expect(compareHlc(hlc.tick(), t)).toBe(1)
  })

  it('once the wall clock passes the observed timestamp, ticks follow the wall clock again', () => {
    const clock = fakeNow(1_000)
    const hlc = new HybridClock(ZERO_HLC, clock.now)
    hlc.observe({ wall: 2_000, logical: 5 })
    clock.set(2_500)
    expect(hlc.tick()).toEqual({ wall: 2_500, logical: 0 })
  })

  it('a remote timestamp beyond MAX_DRIFT_MS in the future is not adopted', () => {
    const clock = fakeNow(1_000_000)
    const hlc = new HybridClock(ZERO_HLC, clock.now)
    const t = hlc.tick()
    hlc.observe({ wall: 1_000_000 + MAX_DRIFT_MS + 1, logical: 0 })
    hlc.observe({ wall: Number.MAX_SAFE_INTEGER, logical: 0 })
    expect(hlc.current()).toEqual(t)
    expect(hlc.tick()).toEqual({ wall: 1_000_000, logical: 1 })
  })

  it('a remote timestamp exactly MAX_DRIFT_MS ahead is still adopted', () => {
    const clock = fakeNow(1_000_000)
    const hlc = new HybridClock(ZERO_HLC, clock.now)
    const remote = { wall: 1_000_000 + MAX_DRIFT_MS, logical: 3 }
    hlc.observe(remote)
    expect(hlc.current()).toEqual(remote)
    expect(compareHlc(hlc.tick(), remote)).toBe(1)
  })

  it('drift is measured against the current wall clock, not the last tick', () => {
    const clock = fakeNow(1_000)
    const hlc = new HybridClock(ZERO_HLC, clock.now)
    hlc.tick()
    const far = { wall: 1_000 + 2 * MAX_DRIFT_MS, logical: 0 }
    hlc.observe(far)
    expect(compareHlc(hlc.current(), far)).toBe(-1)
    clock.set(1_000 + MAX_DRIFT_MS + 10) // our clock caught up enough to tolerate it
    hlc.observe(far)
    expect(hlc.current()).toEqual(far)
  })

  it('after a remote with the largest logical counter, the next tick is still representable (uint32 logical)', () => {
    const clock = fakeNow(1_000)
    const hlc = new HybridClock(ZERO_HLC, clock.now)
    const remote = { wall: 1_000, logical: 0xffffffff } // any peer may send this: hlc_logical is a uint32
    hlc.observe(remote)
    const next = hlc.tick()
    expect(compareHlc(next, remote)).toBe(1)
    expect(next.logical).toBeLessThanOrEqual(0xffffffff)
    // it survives the text form used to persist the clock
    expect(parseHlc(formatHlc(next))).toEqual(next)
    const after = hlc.tick()
    expect(compareHlc(after, next)).toBe(1)
    expect(after.logical).toBeLessThanOrEqual(0xffffffff)
  })

  it('does not keep a reference to the observed object', () => {
    const clock = fakeNow(1_000)
    const hlc = new HybridClock(ZERO_HLC, clock.now)
    const remote = { wall: 2_000, logical: 1 }
    hlc.observe(remote)
    remote.wall = 1
    expect(hlc.current()).toEqual({ wall: 2_000, logical: 1 })
  })
})

describe('compareHlc', () => {
  it('orders by wall, then logical', () => {
    expect(compareHlc({ wall: 1, logical: 9 }, { wall: 2, logical: 0 })).toBe(-1)
    expect(compareHlc({ wall: 2, logical: 0 }, { wall: 1, logical: 9 })).toBe(1)
    expect(compareHlc({ wall: 2, logical: 1 }, { wall: 2, logical: 2 })).toBe(-1)
    expect(compareHlc({ wall: 2, logical: 2 }, { wall: 2, logical: 1 })).toBe(1)
    expect(compareHlc({ wall: 2, logical: 2 }, { wall: 2, logical: 2 })).toBe(0)
    expect(compareHlc(ZERO_HLC, { wall: 0, logical: 1 })).toBe(-1)
  })

  it('sorts a shuffled list into the expected order', () => {
    const sorted: Hlc[] = [
      { wall: 0, logical: 0 }, { wall: 0, logical: 1 }, { wall: 1, logical: 0 }, { wall: 1, logical: 10 },
      { wall: 1_700_000_000_000, logical: 0 }, { wall: 1_700_000_000_000, logical: 4294967295 }, { wall: Number.MAX_SAFE_INTEGER, logical: 0 }
    ]
    const shuffled = [sorted[4], sorted[1], sorted[6], sorted[0], sorted[5], sorted[3], sorted[2]]
    expect([...shuffled].sort(compareHlc)).toEqual(sorted)
  })
})

describe('formatHlc / parseHlc', () => {
  it('round-trips', () => {
    const samples: Hlc[] = [
      { wall: 0, logical: 0 },
      { wall: 1, logical: 0 },
      { wall: 1_732_237_200_000, logical: 3 },
      { wall: Number.MAX_SAFE_INTEGER, logical: 0xffffffff },
      { wall: 42, logical: 1_000_000 }
    ]
    for (const h of samples) {
      const text = formatHlc(h)
      expect(parseHlc(text)).toEqual(h)
      expect(formatHlc(parseHlc(text) as Hlc)).toBe(text)
    }
    expect(formatHlc({ wall: 1_732_237_200_000, logical: 3 })).toBe('1732237200000.3')
  })

  it('the text form of ticks round-trips and keeps their order', () => {
    const clock = fakeNow(1_700_000_000_000)
    const hlc = new HybridClock(ZERO_HLC, clock.now)
    const ticks = [hlc.tick(), hlc.tick()]
    clock.set(1_700_000_000_001)
    ticks.push(hlc.tick())
    for (const t of ticks) expect(parseHlc(formatHlc(t))).toEqual(t)
    expectIncreasing(ticks.map(t => parseHlc(formatHlc(t)) as Hlc))
  })

  it.each([
    [''],
    ['1'],
    ['1.'],
    ['.1'],
    ['.'],
    ['a.b'],
    ['1.b'],
    ['1.2.3'],
    ['-1.0'],
    ['1.-1'],
    ['+1.0'],
    [' 1.0'],
    ['1.0 '],
    ['1.0\n'],
    ['\n1.0'],
    ['1,0'],
    ['1e3.0'],
    ['0x10.0'],
    ['1.5e1'],
    ['12345678901234567.0'], // 17 digits
    ['9007199254740992.0'], // MAX_SAFE_INTEGER + 1
    ['9999999999999999.0'],
    ['1.4294967296'], // logical beyond uint32
    ['1.12345678901'], // 11 digits
    ['１.０'], // full-width digits
    ['1.0\u0000']
  ])('rejects %j', (text) => {
    expect(parseHlc(text)).toBeUndefined()
  })

  it('accepts the largest values', () => {
    expect(parseHlc('9007199254740991.4294967295')).toEqual({ wall: Number.MAX_SAFE_INTEGER, logical: 4294967295 })
  })
})
