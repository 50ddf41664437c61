/**
 * Lazy push of one sync session (after Plumtree): which origins go to the
 * peer at once and which only once it has gone without them for a while, and
 * when the peer is told we progress on an origin it holds more of.
 */
import { isLogOf } from '../../log/log-id.js'
import type { ChangeLog } from '../../log/changelog.js'
import type { VersionVector } from '../../log/vector.js'

/** Age at which entries of an origin pushed lazily to a peer are sent to it (see LazyPush.cap). */
export const LAZY_PUSH_MS = 3000
/** How often at most a peer that holds more of an origin is told we progress on it (see LazyPush.shouldAnnounce). */
const PROGRESS_HAVE_MS = LAZY_PUSH_MS / 4

export class LazyPush {
  /** Origins pushed to this peer lazily (see cap). */
  private readonly lazy = new Set<string>()
  /** Per origin, the end of what this session has sent the peer. */
  private readonly sent = new Map<string, number>()
  /** Per origin pushed lazily: when we first sent it entries it still lacked after it had shown no progress (see cap). */
  private readonly lazyPushedAt = new Map<string, number>()
  /** Per origin, when the peer last said it holds more of it (Have, or a batch it sent). */
  private readonly progressAt = new Map<string, number>()
  /** Per origin, when we last sent the peer a Have. */
  private readonly haveSentAt = new Map<string, number>()
  /** Wakes the sender once lazily held entries may be due (see wakeLater). */
  private timer?: ReturnType<typeof setTimeout>
  /** The session ended: the sender is not woken again. */
  private closed = false
  /** The peer's id. */
  private readonly peer: string
  /** This node's peer id: its own entries are always pushed at once. */
  private readonly self: string | undefined
  /** This node's log (what it can serve, and since when). */
  private readonly log: ChangeLog
  /** What we believe the peer holds (the session's). */
  private readonly theirs: VersionVector
  /** The highest seq per origin the peer has told us it holds (the session's). */
  private readonly announced: VersionVector
  /** Wakes the session's sender. */
  private readonly wake: { notify: () => void }

  constructor (peer: string, self: string | undefined, log: ChangeLog, theirs: VersionVector, announced: VersionVector, wake: { notify: () => void }) {
    this.peer = peer
    this.self = self
    this.log = log
    this.theirs = theirs
    this.announced = announced
    this.wake = wake
  }

  /**
   * Whether to tell the peer we now hold `origin` up to `seq` (see
   * SyncSession.announce): not when it already knows, unless `progress` (we
   * accepted a run of `origin` from another peer) and it is not the origin
   * itself, at most every PROGRESS_HAVE_MS per origin. True records the Have
   * as sent now.
   */
  shouldAnnounce (origin: string, seq: number, progress: boolean): boolean {
    const now = Date.now()
    if (this.theirs.get(origin) >= seq) {
      if (!progress || isLogOf(origin, this.peer) || now - (this.haveSentAt.get(origin) ?? 0) < PROGRESS_HAVE_MS) return false
    }
    this.haveSentAt.set(origin, now)
    return true
  }

  /** The peer sent a Have of `origin` up to `seq`: one of entries we had already sent it makes the origin lazy. */
  have (origin: string, seq: number): void {
    if (seq <= (this.sent.get(origin) ?? 0) && (this.self === undefined || !isLogOf(origin, this.self))) this.lazy.add(origin)
  }

  /** The peer said it holds `origin` up to `seq` (Have, or a batch it sent). */
  heard (origin: string, seq: number): void {
    if (this.announced.advance(origin, seq)) this.progressAt.set(origin, Date.now())
  }

  /** A batch of `origin` read under `cap` is about to go: sent lazily and still wanted, the path that served the peer may have failed (see cap). */
  pushing (origin: string, cap: number): void {
    if (cap !== Infinity && !this.lazyPushedAt.has(origin)) this.lazyPushedAt.set(origin, Date.now())
  }

  /** A batch of `origin` up to `toSeq` goes to the peer. */
  sending (origin: string, toSeq: number): void {
    this.sent.set(origin, Math.max(this.sent.get(origin) ?? 0, toSeq))
  }

  /**
   * How far `origin` may be sent to the peer now. Every origin's new entries
   * go to the peer at once, until the peer announces (Have) entries of that
   * origin that we had already sent it: it got them from someone else first,
   * so our copies are duplicates (a node answers every duplicate batch with
   * such a Have, and announces what it accepted before our copy arrived).
   * From then on it is sent that origin's entries only once they are
   * LAZY_PUSH_MS old, it has still not said it holds them, and it has not said
   * it holds more of that origin for LAZY_PUSH_MS either (`progressAt`; nodes
   * tell peers ahead of them, see SyncSession.announce): a peer that
   * progresses is fed by another path, only later than we could (under load,
   * seconds later). Such a send may mean that path failed it: if the peer
   * still reports no progress from elsewhere LAZY_PUSH_MS later, the origin is
   * pushed at once again; if it does, the link stays lazy (a loaded peer
   * pauses for seconds at a time: turning eager on every pause sent it
   * thousands of duplicates). A node's own entries always go at once. In a
   * 30-node mesh (`npm run bench -- --only fanout`) pushing everything to
   * every peer made each node receive each entry ~3.8 times; lazy push on age
   * alone 2.3–2.6 (the loaded nodes ran more than LAZY_PUSH_MS behind, so most
   * lazy sends were duplicates, and each turned the link eager again); with
   * the progress rule 1.2–1.8; with lazy sends that keep the link lazy unless
   * the peer stays without progress, 1.00–1.02.
   */
  cap (origin: string): number {
    if (!this.lazy.has(origin)) return Infinity
    const now = Date.now()
    const progress = this.progressAt.get(origin) ?? 0
    const pushed = this.lazyPushedAt.get(origin)
    if (pushed !== undefined) {
      if (progress > pushed) {
        // the peer got more from elsewhere since: our push bridged a pause, stay lazy
        this.lazyPushedAt.delete(origin)
      } else if (now - pushed >= LAZY_PUSH_MS) {
        // nothing from elsewhere since our push: the path that fed the peer failed, push at once again
        this.lazy.delete(origin)
        this.lazyPushedAt.delete(origin)
        return Infinity
      }
    }
    if (now - progress < LAZY_PUSH_MS) {
      this.wakeLater()
      return this.theirs.get(origin)
    }
    const cap = this.log.servableAsOf(origin, now - LAZY_PUSH_MS)
    if (cap < this.log.servable.get(origin)) this.wakeLater()
    return cap
  }

  /** Wake the sender a little later (once, until it fires): entries held back may be due by then. */
  wakeLater (): void {
    if (this.timer !== undefined || this.closed) return
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.wake.notify()
    }, LAZY_PUSH_MS / 4)
    this.timer.unref()
  }

  /** The session ended. */
  close (): void {
    this.closed = true
    if (this.timer !== undefined) clearTimeout(this.timer)
  }
}
