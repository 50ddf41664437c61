/**
 * Which origins' sync is stuck: behind what a peer announced, and the log
 * held has not advanced for a while. Progress is what counts, not the lag:
 * a target keeping up with a source that writes all the time holds more and
 * more while its lag hovers at the same size.
 */
import type { OriginStatus } from './types.js'

export interface StuckOrigin {
  lag: number
  seq: number
  since: number
  peer: string
  reported: boolean
}

export class StuckDetector {
  private readonly origins = new Map<string, StuckOrigin>()
  private readonly afterMs: number

  /** Origins followed at most: beyond, new origins are not followed until others are caught up. */
  private readonly maxOrigins: number

  constructor (afterMs: number, maxOrigins = 10_000) {
    this.afterMs = afterMs
    this.maxOrigins = maxOrigins
  }

  get (origin: string): StuckOrigin | undefined {
    return this.origins.get(origin)
  }

  /** Take a new reading of every origin's progress; returns the origins newly found stuck. */
  check (progress: OriginStatus[], now: number): Array<{ origin: OriginStatus, forMs: number }> {
    const found: Array<{ origin: OriginStatus, forMs: number }> = []
    const seen = new Set<string>()
    for (const o of progress) {
      if (o.lag === 0 || o.announcedBy === undefined) continue
      seen.add(o.origin)
      const prev = this.origins.get(o.origin)
      if (prev === undefined && this.origins.size >= this.maxOrigins) continue
      if (prev === undefined || o.lag < prev.lag || o.seq > prev.seq) {
        this.origins.set(o.origin, { lag: o.lag, seq: o.seq, since: now, peer: o.announcedBy, reported: false })
        continue
      }
      prev.peer = o.announcedBy
      if (!prev.reported && now - prev.since >= this.afterMs) {
        prev.reported = true
        found.push({ origin: o, forMs: now - prev.since })
      }
    }
    for (const origin of [...this.origins.keys()]) if (!seen.has(origin)) this.origins.delete(origin)
    return found
  }
}
