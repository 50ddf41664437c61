/**
 * Hybrid logical clock: wall-clock milliseconds plus a logical counter, so
 * timestamps are monotonic per node, close to real time, and totally ordered
 * across nodes once ties are broken by origin.
 */
export interface Hlc {
  wall: number
  logical: number
}

export const ZERO_HLC: Hlc = Object.freeze({ wall: 0, logical: 0 })

/** Largest tolerated clock skew of a remote timestamp ahead of our wall clock. */
export const MAX_DRIFT_MS = 60_000
/** Default bound on how far ahead of a node's clock a received entry may be stamped (node option maxClockAheadMs). */
export const DEFAULT_MAX_CLOCK_AHEAD_MS = MAX_DRIFT_MS

/** The logical counter is a uint32 (protocols/sync: Entry.hlc_logical). */
const MAX_LOGICAL = 0xffffffff

export function compareHlc (a: Hlc, b: Hlc): number {
  if (a.wall !== b.wall) return a.wall < b.wall ? -1 : 1
  if (a.logical !== b.logical) return a.logical < b.logical ? -1 : 1
  return 0
}

export function formatHlc (h: Hlc): string {
  return `${h.wall}.${h.logical}`
}

export function parseHlc (text: string): Hlc | undefined {
  const m = /^(\d{1,16})\.(\d{1,10})$/.exec(text)
  if (m == null) return undefined
  const wall = Number(m[1])
  const logical = Number(m[2])
  if (!Number.isSafeInteger(wall) || logical > 0xffffffff) return undefined
  return { wall, logical }
}

export class HybridClock {
  private last: Hlc
  private readonly now: () => number
  private readonly maxDriftMs: number

  constructor (last: Hlc = ZERO_HLC, now: () => number = Date.now, maxDriftMs = MAX_DRIFT_MS) {
    this.last = { ...last }
    this.now = now
    this.maxDriftMs = maxDriftMs
  }

  /** Timestamp for a local event; strictly greater than every timestamp issued or observed. */
  tick (): Hlc {
    const wall = this.now()
    if (wall > this.last.wall) {
      this.last = { wall, logical: 0 }
    } else if (this.last.logical < MAX_LOGICAL) {
      this.last = { wall: this.last.wall, logical: this.last.logical + 1 }
    } else {
      // the logical counter is a uint32 on the wire and on disk: carry into the wall clock
      this.last = { wall: this.last.wall + 1, logical: 0 }
    }
    return { ...this.last }
  }

  /**
   * Merge a timestamp received from elsewhere so later local events order after it.
   * Timestamps implausibly far in the future (beyond the drift bound) are not adopted,
   * so one peer with a broken clock cannot drag every node's clock forward.
   */
  observe (remote: Hlc): void {
    if (remote.wall > this.now() + this.maxDriftMs) return
    if (compareHlc(remote, this.last) > 0) this.last = { ...remote }
  }

  current (): Hlc {
    return { ...this.last }
  }
}
