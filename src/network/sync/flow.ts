/**
 * Credit flow control of one sync session (protocols/sync): a side sends a
 * Batch only while the peer has granted it credit, and grants one more credit
 * for each batch of the peer's it has stored.
 */
import { ProtocolError } from '../../core/errors.js'
import { INITIAL_CREDIT } from '../constants.js'
import type { FramedStream } from '../frames.js'
import { encodeCredit } from './codec.js'

/** A batch sent and not yet credited. */
export interface InFlight {
  origin: string
  fromSeq: number
  toSeq: number
}

export class CreditFlow {
  /** Batches the peer may send us (granted and not yet used). */
  granted = INITIAL_CREDIT
  /** Batches we may send the peer. */
  credit = 0
  /** Credits owed to the peer, sent together on the next turn of the event loop (see grant). */
  private owed = 0
  /**
   * Batches sent and not yet credited, oldest first (the peer processes and
   * credits them in order; at most the credit it granted).
   */
  private readonly unacked: InFlight[] = []
  /** Where Credit frames go. */
  private readonly framed: FramedStream
  /** Whether the session has ended (no credit is granted then). */
  private readonly isClosed: () => boolean

  constructor (framed: FramedStream, isClosed: () => boolean) {
    this.framed = framed
    this.isClosed = isClosed
  }

  /** The peer's Hello granted us `credit` batches. */
  hello (credit: number): void {
    this.credit += credit
  }

  /** The peer credited `batches` of ours: it processed the oldest of those in flight. */
  credited (batches: number): void {
    this.credit += batches
    this.unacked.splice(0, batches)
    if (this.credit > INITIAL_CREDIT * 4 + 1024) throw new ProtocolError('peer granted more credit than it could owe', 'PROTOCOL_VIOLATION')
  }

  /** The peer sent a batch: it uses one credit we granted (none left: a protocol violation). */
  batchReceived (): void {
    if (--this.granted < 0) throw new ProtocolError('peer sent a batch beyond the credit it was granted', 'PROTOCOL_VIOLATION')
  }

  /** We send the peer a batch of `origin` from `fromSeq` to `toSeq`: it uses one credit. */
  sent (origin: string, fromSeq: number, toSeq: number): void {
    this.unacked.push({ origin, fromSeq, toSeq })
    this.credit--
  }

  /** This origin's batches sent and not yet credited, oldest first. */
  inFlight (origin: string): InFlight[] {
    return this.unacked.filter(b => b.origin === origin)
  }

  /**
   * Grant the peer one more batch. The Credit frame goes out on the next turn
   * of the event loop, together with any other grants of this turn: the work a
   * commit triggers first (feed lines to followers, forwarding the entries to
   * the next peer) is what a change's latency waits for; a credit is not.
   */
  grant (): void {
    if (this.isClosed()) return
    if (this.owed++ > 0) return
    setImmediate(() => {
      const n = this.owed
      this.owed = 0
      if (this.isClosed()) return
      this.granted += n
      this.framed.sendNow(encodeCredit(n))
    })
  }
}
