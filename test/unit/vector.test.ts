import { describe, expect, it } from 'vitest'
import { VersionVector } from '../../src/log/vector.js'

const A = 'origin-a'
const B = 'origin-b'
const C = 'origin-c'

function vec (obj: Record<string, number>): VersionVector {
  return VersionVector.from(Object.entries(obj))
}

describe('VersionVector basics', () => {
  it('an unknown origin is at 0 and a new vector is empty', () => {
    const v = new VersionVector()
    expect(v.get(A)).toBe(0)
    expect(v.size).toBe(0)
    expect(v.entries()).toEqual([])
    expect([...v.origins()]).toEqual([])
    expect(v.toJSON()).toEqual({})
  })

  it('advance raises and never lowers', () => {
    const v = new VersionVector()
    expect(v.advance(A, 5)).toBe(true)
    expect(v.get(A)).toBe(5)
    expect(v.advance(A, 3)).toBe(false)
    expect(v.get(A)).toBe(5)
    expect(v.advance(A, 5)).toBe(false)
    expect(v.get(A)).toBe(5)
    expect(v.advance(A, 0)).toBe(false)
    expect(v.advance(A, -1)).toBe(false)
    expect(v.get(A)).toBe(5)
    expect(v.advance(A, 6)).toBe(true)
    expect(v.get(A)).toBe(6)
    expect(v.advance(A, Number.MAX_SAFE_INTEGER)).toBe(true)
    expect(v.get(A)).toBe(Number.MAX_SAFE_INTEGER)
  })

  it('advance to 0 or below does not create an origin', () => {
    const v = new VersionVector()
    expect(v.advance(A, 0)).toBe(false)
    expect(v.advance(B, -3)).toBe(false)
    expect(v.size).toBe(0)
  })

  it('set states a seq exactly, lowering it if needed, and removes the origin at 0', () => {
    const v = vec({ [A]: 10, [B]: 3 })
    v.set(A, 4)
    expect(v.get(A)).toBe(4)
    v.set(B, 7)
    expect(v.get(B)).toBe(7)
    v.set(A, 0)
    expect(v.get(A)).toBe(0)
    expect([...v.origins()]).toEqual([B])
    v.set(B, -1)
    expect(v.size).toBe(0)
    v.set(C, 1)
    expect(v.toJSON()).toEqual({ [C]: 1 })
  })

  it('from accepts pairs and {origin, seq} objects and keeps the maximum of repeats', () => {
    expect(VersionVector.from([[A, 1], [B, 2], [A, 5], [A, 3]]).toJSON()).toEqual({ [A]: 5, [B]: 2 })
    expect(VersionVector.from([{ origin: A, seq: 4 }, { origin: B, seq: 0 }, { origin: A, seq: 2 }]).toJSON()).toEqual({ [A]: 4 })
    expect(VersionVector.from([]).size).toBe(0)
  })

  it('entries and origins list every origin', () => {
    const v = vec({ [A]: 1, [B]: 2, [C]: 3 })
    expect(v.size).toBe(3)
    expect(v.entries().sort((x, y) => x.origin.localeCompare(y.origin))).toEqual([{ origin: A, seq: 1 }, { origin: B, seq: 2 }, { origin: C, seq: 3 }])
    expect([...v.origins()].sort()).toEqual([A, B, C])
    // entries() can rebuild the same vector
    expect(VersionVector.from(v.entries()).toJSON()).toEqual(v.toJSON())
  })

  it('toJSON is a plain object that serialises with JSON.stringify', () => {
    const v = vec({ [A]: 7, [B]: 9 })
    expect(v.toJSON()).toEqual({ [A]: 7, [B]: 9 })
    expect(JSON.parse(JSON.stringify({ vector: v }))).toEqual({ vector: { [A]: 7, [B]: 9 } })
    // the returned object is a snapshot
    const snapshot = v.toJSON()
    snapshot[A] = 1000
    expect(v.get(A)).toBe(7)
  })
})

describe('VersionVector comparisons', () => {
  it('missingFrom lists the ranges the other vector lacks', () => {
    const mine = vec({ [A]: 10, [B]: 5, [C]: 2 })
    const theirs = vec({ [A]: 4, [B]: 5, [C]: 8 })
    expect(mine.missingFrom(theirs)).toEqual([{ origin: A, from: 4, to: 10 }])
    expect(theirs.missingFrom(mine)).toEqual([{ origin: C, from: 2, to: 8 }])
  })

  it('missingFrom counts an origin unknown to the other from 0', () => {
    const mine = vec({ [A]: 3, [B]: 1 })
    const missing = mine.missingFrom(new VersionVector())
    expect(missing.sort((x, y) => x.origin.localeCompare(y.origin))).toEqual([{ origin: A, from: 0, to: 3 }, { origin: B, from: 0, to: 1 }])
    expect(new VersionVector().missingFrom(mine)).toEqual([])
    expect(mine.missingFrom(mine)).toEqual([])
  })

  it('covers: holds at least everything the other holds', () => {
    const big = vec({ [A]: 10, [B]: 5 })
    expect(big.covers(vec({ [A]: 10, [B]: 5 }))).toBe(true)
    expect(big.covers(vec({ [A]: 1 }))).toBe(true)
    expect(big.covers(new VersionVector())).toBe(true)
    expect(new VersionVector().covers(new VersionVector())).toBe(true)
    expect(big.covers(vec({ [A]: 11 }))).toBe(false)
    expect(big.covers(vec({ [C]: 1 }))).toBe(false)
    expect(new VersionVector().covers(big)).toBe(false)
    // covers is exactly "nothing missing"
    const other = vec({ [A]: 3, [B]: 9 })
    expect(big.covers(other)).toBe(other.missingFrom(big).length === 0)
  })

  it('merge takes the pointwise maximum in place and leaves the argument alone', () => {
    const v = vec({ [A]: 10, [B]: 2 })
    const w = vec({ [A]: 4, [B]: 8, [C]: 1 })
    v.merge(w)
    expect(v.toJSON()).toEqual({ [A]: 10, [B]: 8, [C]: 1 })
    expect(w.toJSON()).toEqual({ [A]: 4, [B]: 8, [C]: 1 })
    expect(v.covers(w)).toBe(true)
    // idempotent
    v.merge(w)
    expect(v.toJSON()).toEqual({ [A]: 10, [B]: 8, [C]: 1 })
  })

  it('merge is commutative', () => {
    const x = vec({ [A]: 1, [B]: 9 })
    const y = vec({ [B]: 3, [C]: 4 })
    const xy = x.clone()
    xy.merge(y)
    const yx = y.clone()
    yx.merge(x)
    expect(xy.toJSON()).toEqual(yx.toJSON())
  })

  it('clone is independent of the original in both directions', () => {
    const v = vec({ [A]: 5 })
    const c = v.clone()
    expect(c.toJSON()).toEqual({ [A]: 5 })
    c.advance(A, 9)
    c.advance(B, 1)
    expect(v.toJSON()).toEqual({ [A]: 5 })
    v.set(A, 2)
    v.advance(C, 3)
    expect(c.toJSON()).toEqual({ [A]: 9, [B]: 1 })
    expect(v.toJSON()).toEqual({ [A]: 2, [C]: 3 })
  })
})
