/**
 * Which origins' sync is stuck: behind what a peer announced, and the log
 * held has not advanced for a while. Progress is what counts, not the lag:
 * a target keeping up with a source that writes all the time holds more and
 * more while its lag hovers at the same size.
 */
import type { OriginStatus } from '../core/types.js'

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

/** A refused batch seen this often from the same peer (same origin, same range) is a stall. */
export const STALL_REFUSALS = 2
/** Refusals older than this are forgotten (a stall needs its refusals within this window). */
const STALL_WINDOW_MS = 10 * 60_000
/** Batches tracked at most (refusals and stalls; the oldest are forgotten first). */
const STALL_MAX_TRACKED = 1000
/** Stalls listed in status at most, newest first. */
const STALL_MAX_LISTED = 20

export interface RefusedBatch {
  origin: string
  fromSeq: number
  toSeq: number
  code: string
  reason: string
  offence: boolean
}

export interface Stall extends RefusedBatch {
  peer: string
  refusals: number
  /** When the batch was first refused (Date.now() ms). */
  first: number
  /** When it became a stall, and when it was last refused. */
  since?: number
  lastAt: number
  asked: string[]
  recovered?: number
}

/**
 * Batches a peer keeps sending and this node keeps refusing: a session ends
 * on the batch, the peer reconnects (or its session is reopened) and sends
 * the same batch again, and the origin does not advance. The second refusal
 * of the same batch (peer, origin, range) within STALL_WINDOW_MS makes it a
 * stall, reported once (see SyncNode.onRefused); it is recovered once the
 * node holds the range (from another peer, or a re-read).
 */
export class StallTracker {
  private readonly batches = new Map<string, Stall>()
  private readonly counts = new Map<string, number>()
  total = 0

  /** A batch of `peer`'s was refused; returns the stall when this refusal makes it one (once). */
  refused (peer: string, r: RefusedBatch, now: number): Stall | undefined {
    const key = `${peer}\0${r.origin}\0${r.fromSeq}\0${r.toSeq}`
    let b = this.batches.get(key)
    if (b !== undefined && b.since === undefined && now - b.first > STALL_WINDOW_MS) {
      this.batches.delete(key)
      b = undefined
    }
    if (b === undefined) {
      b = { ...r, peer, refusals: 0, first: now, lastAt: now, asked: [] }
      this.batches.set(key, b)
      this.prune()
    } else {
      // newest last (pruning drops the oldest)
      this.batches.delete(key)
      this.batches.set(key, b)
    }
    b.refusals++
    b.lastAt = now
    b.code = r.code
    b.reason = r.reason
    if (b.since !== undefined || b.refusals < STALL_REFUSALS) return undefined
    b.since = now
    this.total++
    this.counts.set(b.code, (this.counts.get(b.code) ?? 0) + 1)
    return b
  }

  /** Stalls whose range the node now holds (`held`) are recovered; returns those newly recovered. */
  progress (held: (origin: string) => number, now: number): Stall[] {
    const out: Stall[] = []
    for (const [key, b] of this.batches) {
      if (b.recovered !== undefined || held(b.origin) < b.toSeq) continue
      if (b.since === undefined) {
        this.batches.delete(key) // refused once, then held after all: not a stall
        continue
      }
      b.recovered = now
      out.push(b)
    }
    return out
  }

  /** Stalls not yet recovered. */
  active (): Stall[] {
    return [...this.batches.values()].filter(b => b.since !== undefined && b.recovered === undefined)
  }

  /** Stalls, newest first. */
  recent (): Stall[] {
    return [...this.batches.values()].filter(b => b.since !== undefined).reverse().slice(0, STALL_MAX_LISTED)
  }

  byCode (): Record<string, number> {
    return Object.fromEntries([...this.counts].sort())
  }

  private prune (): void {
    if (this.batches.size <= STALL_MAX_TRACKED) return
    // recovered stalls and single refusals go first, active stalls last
    for (const pass of [(b: Stall) => b.since === undefined || b.recovered !== undefined, () => true]) {
      for (const [key, b] of this.batches) {
        if (this.batches.size <= STALL_MAX_TRACKED) return
        if (pass(b)) this.batches.delete(key)
      }
    }
  }
}
