/** Small statistics helpers for the benchmark. */

/** Linear-interpolated quantile (q in [0, 1]) of unsorted values. */
export function quantile (values: readonly number[], q: number): number {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  const pos = (sorted.length - 1) * q
  const lo = Math.floor(pos)
  const hi = Math.ceil(pos)
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo)
}

export function median (values: readonly number[]): number {
  return quantile(values, 0.5)
}

export function min (values: readonly number[]): number {
  return values.length === 0 ? NaN : Math.min(...values)
}

export function max (values: readonly number[]): number {
  return values.length === 0 ? NaN : Math.max(...values)
}

export function mean (values: readonly number[]): number {
  return values.length === 0 ? NaN : values.reduce((a, b) => a + b, 0) / values.length
}

/** Deterministic PRNG (mulberry32), so a run's random graph can be reproduced from its seed. */
export function rng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
