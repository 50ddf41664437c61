/**
 * Samples of the node's status over the last hour (every 10 s): entries and
 * bytes in and out in all, and the total lag, so that the console can chart
 * throughput and lag without keeping its own history.
 */
import type { SyncNodeApi } from '../core/types.js'

export const HISTORY_INTERVAL_MS = 10_000
export const HISTORY_SAMPLES = 360

export interface StatusSample {
  /** ISO time of the sample. */
  at: string
  entriesIn: number
  entriesOut: number
  bytesIn: number
  bytesOut: number
  /** Sum of every origin's lag. */
  lag: number
  peersConnected: number
}

export class StatusHistory {
  private readonly node: SyncNodeApi
  private readonly ring: StatusSample[] = []
  private timer?: NodeJS.Timeout
  private sampling = false

  constructor (node: SyncNodeApi) {
    this.node = node
  }

  start (): void {
    if (this.timer !== undefined) return
    void this.sample()
    this.timer = setInterval(() => { void this.sample() }, HISTORY_INTERVAL_MS)
    this.timer.unref()
  }

  stop (): void {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
  }

  samples (): { intervalMs: number, samples: StatusSample[] } {
    return { intervalMs: HISTORY_INTERVAL_MS, samples: [...this.ring] }
  }

  private async sample (): Promise<void> {
    if (this.sampling) return
    this.sampling = true
    try {
      const s = await this.node.status()
      const out: StatusSample = { at: new Date().toISOString(), entriesIn: 0, entriesOut: 0, bytesIn: 0, bytesOut: 0, lag: 0, peersConnected: 0 }
      for (const p of s.peers) {
        out.entriesIn += p.entriesReceived
        out.entriesOut += p.entriesSent
        out.bytesIn += p.bytesReceived
        out.bytesOut += p.bytesSent
        if (p.connected) out.peersConnected++
      }
      for (const o of s.origins) out.lag += o.lag
      this.ring.push(out)
      if (this.ring.length > HISTORY_SAMPLES) this.ring.shift()
    } catch {
      // the node is stopping or not started: no sample
    } finally {
      this.sampling = false
    }
  }
}
