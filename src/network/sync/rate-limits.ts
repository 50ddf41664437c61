/**
 * The rate limits of one sync session: what the peer may make this node do
 * per second (control frames, bytes to ingest), how long it may stay silent,
 * and how many Have frames this node sends it while it says nothing.
 */
import { ProtocolError } from '../../core/errors.js'
import { MAX_CONTROL_FRAMES_PER_SECOND, MAX_PEER_BYTES_PER_SECOND, SILENT_PEER_MS } from '../constants.js'
import type { FramedStream } from '../frames.js'
import { encodeHave } from './codec.js'

/** Have frames a session sends in a row while the peer says nothing (see HaveLimit.queue). */
export const HAVE_BURST = 256
/** Have frames each frame heard from the peer allows on top, up to HAVE_BURST. */
const HAVES_PER_FRAME_HEARD = 2

/** Control frames (vector, have, credit, hello) are cheap to send: their rate is capped. */
export class ControlFrameLimit {
  /** When the current one-second window began. */
  private windowStart = Date.now()
  /** Control frames received in the current window. */
  private frames = 0

  /** The peer sent a control frame: throws PEER_FLOOD beyond MAX_CONTROL_FRAMES_PER_SECOND in a second. */
  count (): void {
    const now = Date.now()
    if (now - this.windowStart >= 1000) {
      this.windowStart = now
      this.frames = 0
    }
    if (++this.frames > MAX_CONTROL_FRAMES_PER_SECOND) {
      throw new ProtocolError(`peer sent more than ${MAX_CONTROL_FRAMES_PER_SECOND} control frames in a second`, 'PEER_FLOOD')
    }
  }
}

/**
 * Caps what one peer can make this node ingest per second: a token bucket of
 * MAX_PEER_BYTES_PER_SECOND; when it runs dry, the next credit is granted
 * late, which slows the sender down (it cannot send without credit).
 */
export class ByteRateLimit {
  /** Bytes the peer may still have ingested now (below zero: owed). */
  private tokens = MAX_PEER_BYTES_PER_SECOND
  /** When tokens were last refilled. */
  private lastRefill = Date.now()

  /** `bytes` of the peer's were ingested: resolves once the bucket allows it. */
  async throttle (bytes: number): Promise<void> {
    const now = Date.now()
    this.tokens = Math.min(MAX_PEER_BYTES_PER_SECOND, this.tokens + (now - this.lastRefill) * MAX_PEER_BYTES_PER_SECOND / 1000)
    this.lastRefill = now
    this.tokens -= bytes
    if (this.tokens < 0) {
      await new Promise(resolve => setTimeout(resolve, Math.ceil(-this.tokens * 1000 / MAX_PEER_BYTES_PER_SECOND)))
    }
  }
}

/** Every peer restates its vector each ANTI_ENTROPY_INTERVAL_MS: one that sends nothing for SILENT_PEER_MS went silent. */
export class SilentPeer {
  /** When the peer last sent a frame. */
  private lastFrameAt = Date.now()

  /** The peer sent a frame. */
  heard (): void {
    this.lastFrameAt = Date.now()
  }

  /** Whether the peer has sent nothing for more than SILENT_PEER_MS. */
  get silent (): boolean {
    return Date.now() - this.lastFrameAt > SILENT_PEER_MS
  }
}

/**
 * The Have frames sent to a peer: at most HAVE_BURST in a row while it says
 * nothing. A peer that is not reading (stopped, its event loop or its ingest
 * busy, a slow link) gets the Haves of every run this node stores in the
 * meantime, and reads them all at once when it resumes (a busy relay sends one
 * per stored run: thousands, which its peer took for a flood of control frames
 * and ended the session). Held Haves keep only the newest seq per origin (a
 * Have only ever raises what the peer believes), and go out as the peer is
 * heard from again, HAVES_PER_FRAME_HEARD per frame it sends. So what a peer
 * reads in a row from an honest node is at most HAVE_BURST Haves plus one per
 * origin, however long it stalled.
 */
export class HaveLimit {
  /** Haves this session may send before it hears from the peer again. */
  private tokens = HAVE_BURST
  /** Haves held back: origin → the newest seq to announce. */
  private readonly held = new Map<string, number>()
  /** Where Have frames go. */
  private readonly framed: FramedStream

  constructor (framed: FramedStream) {
    this.framed = framed
  }

  /** Send a Have of `origin` up to `seq`, or hold it while the peer has said nothing for HAVE_BURST of them. */
  queue (origin: string, seq: number): void {
    const held = this.held.get(origin)
    if (held === undefined || seq > held) this.held.set(origin, seq)
    this.flush()
  }

  /** The peer sent a frame: it is running, and may be told more. */
  heard (): void {
    this.tokens = Math.min(HAVE_BURST, this.tokens + HAVES_PER_FRAME_HEARD)
    if (this.held.size > 0) this.flush()
  }

  private flush (): void {
    for (const [origin, seq] of this.held) {
      if (this.tokens < 1) return
      this.tokens--
      this.held.delete(origin)
      this.framed.sendNow(encodeHave(origin, seq))
    }
  }
}
