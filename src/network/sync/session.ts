/**
 * One sync session: a long-lived bidirectional stream with one authenticated
 * peer. Both sides run the same code:
 *
 *  - send Hello (our version vector and the credit we grant), then
 *  - a sender loop: while the peer lacks entries of some origin (our vector
 *    ahead of what we believe it holds) and it has granted credit, read the
 *    next run from the log and send it as a Batch. Live changes take the same
 *    path: a local write or a stored batch wakes every session's sender.
 *  - a receiver loop: store each Batch through the ingestor (one atomic
 *    write), then grant one more credit. A Batch that starts beyond what we
 *    hold is dropped and answered with our Vector so the sender rewinds.
 *
 * What the peer holds is tracked per origin, so nothing is echoed back to the
 * peer it came from, and each entry crosses each link once in the normal case.
 */
import type { Stream } from '@libp2p/interface'
import type { Logger } from 'pino'
import { ProtocolError } from '../../core/errors.js'
import type { AttestedBatch, ChangeLog, EntryRun } from '../../log/changelog.js'
import type { LogEntry } from '../../log/entry.js'
import { isLogOf, isPeerId, isRuleStreamLog } from '../../log/log-id.js'
import { SignatureError, encodeAttested, verifyAttestedRuns, verifyRuns } from '../../log/signing.js'
import type { Cert } from '../../log/signing.js'
import { VersionVector } from '../../log/vector.js'
import { MAX_READ_BUFFER_BYTES, SILENT_PEER_MS, ANTI_ENTROPY_INTERVAL_MS, BATCH_MAX_BYTES, BATCH_MAX_ENTRIES, INITIAL_CREDIT, MAX_FRAME_BYTES, SESSION_MAX_UNKNOWN_ORIGINS, SYNC_PROTOCOL_VERSION } from '../constants.js'
import { FramedStream } from '../frames.js'
import { CreditFlow } from './flow.js'
import { LazyPush } from './lazy-push.js'
import { ByteRateLimit, ControlFrameLimit, HaveLimit, SilentPeer } from './rate-limits.js'
import { batchEndCheck, offenceCheckOf, OFFENCE_CHECKS, sendableRun } from './checks.js'
import type { Offence, Refusal } from './checks.js'
import { batchRangeOf, decodeFrame, encodeBatchFrame, encodeHello, encodeVector, logsNamed } from './codec.js'
import type { SyncMessage } from './codec.js'

export { LAZY_PUSH_MS } from './lazy-push.js'
export { HAVE_BURST } from './rate-limits.js'

/** Received batches being stored at once per session (see storeLoop). */
const MAX_INGESTING = 4
/** Version 2: how soon an origin with nothing attested to send is read again (see SyncSession.sendAttested). */
const ATTESTED_RETRY_MS = 250
/** Decoded batches waiting for storeLoop before the reader pauses (memory: see SyncSession.received). */
const MAX_RECEIVED_WAITING = 2

export interface PeerCounters {
  entriesSent: number
  entriesReceived: number
  bytesSent: number
  bytesReceived: number
  /** Entries received that this node already held (not stored again). */
  duplicates?: (n: number) => void
  /** A frame of this type was received. */
  frame?: (type: string) => void
}

export interface SessionDeps {
  log: ChangeLog
  /** This node's peer id: its own entries are always pushed at once. */
  self?: string
  localName: string
  logger: Logger
  /** Store a received, verified run; undefined means a gap (nothing stored). */
  ingest: (origin: string, fromSeq: number, toSeq: number, entries: LogEntry[], certs: Cert[], attested?: AttestedBatch) => Promise<{ stored: number } | undefined>
  /**
   * The sync protocol version this session speaks (1 or 2, default
   * SYNC_PROTOCOL_VERSION): version 2 batches carry the origin's attestations
   * and updates (protocols/sync/completeness.md), verified with
   * verifyAttestedRuns and stored through the ingestor's attested path.
   */
  protocolVersion?: number
  /**
   * Whether this node knows log `origin` (a registry platform's whole log, or
   * a log it holds; a stream log, src/log/log-id.ts, only once held): a
   * session tracks what its peer holds of logs it does not know for
   * SESSION_MAX_UNKNOWN_ORIGINS of them at most, the streams it names
   * included. Absent: all are known.
   */
  knowsOrigin?: (origin: string) => boolean
  /** This node carries rules by streams (SYNC_PROTOCOL_STREAMS): stream logs (`<peer id>/<stream>`) may be exchanged. Otherwise a message naming one is FRAME_INVALID. */
  streams?: boolean
  /** With streams: this node stores and forwards only the rule streams it is in the audience of (relay policy `audience`; its hello says so). */
  relayAudience?: boolean
  /** Whether peer `peer` is in the audience of rule stream `streamLog` (its source, or a target of its rule): a peer whose hello says it relays only those is sent no other. */
  inAudience?: (streamLog: string, peer: string) => boolean
  /** Whether entries of `origin` at `seq` are accepted at all (false: revoked). */
  accepts?: (origin: string, seq: number) => boolean
  /** The peer sent something forged or tampered with (it is disconnected): which check failed, on what. */
  onOffence?: (offence: Offence) => void
  /** A batch of the peer's was refused (an offence or not): the session ends (see StallTracker). */
  onRefused?: (refusal: Refusal) => void
  /**
   * Why entries of `origin` received from `peer` are stamped too far ahead
   * of this node's clock to be accepted (see TrustPolicy.clockAhead), and
   * whether that is the sender's offence; undefined: accepted.
   */
  clockAhead?: (peer: string, origin: string, entries: LogEntry[]) => { reason: string, offence: boolean } | undefined
  /**
   * How far runs of `origin` were accepted for storing: verified and handed
   * to the ingestor in order, each continuing the last (the session counts
   * what is held on top). Shared by all sessions (see SyncService.accepted).
   */
  accepted?: (origin: string) => number
  /** A verified run that continues what is accepted goes to the ingestor: it is accepted up to `seq`, and other peers are told. */
  onAccepted?: (origin: string, seq: number) => void
  counters: PeerCounters
}

/**
 * What to believe a peer holds of one origin after it stated `stated` in a
 * Vector, when we believed `believed` (see SyncSession.restateTheirs and
 * protocols/sync §6.5): no lower than what it will hold once it has
 * processed `inFlight` (this origin's batches sent and not yet credited,
 * oldest first) from `stated`, nor than what it claimed to hold
 * (`announced`); never higher than `believed` unless `stated` is.
 */
export function restatedSeq (stated: number, believed: number, announced: number, inFlight: Array<{ fromSeq: number, toSeq: number }>): number {
  if (stated >= believed) return stated
  let end = stated
  for (const b of inFlight) if (b.fromSeq <= end) end = Math.max(end, b.toSeq)
  return Math.max(stated, Math.min(believed, Math.max(end, announced)))
}

/** Wakes one waiting loop; a notify with none waiting is kept for the next wait. */
class Wakeup {
  /** Resolves the loop waiting now. */
  private waiter?: () => void
  /** Notified with no loop waiting. */
  private pending = false

  notify (): void {
    this.pending = true
    const w = this.waiter
    this.waiter = undefined
    w?.()
  }

  async wait (): Promise<void> {
    if (this.pending) {
      this.pending = false
      return
    }
    await new Promise<void>(resolve => { this.waiter = resolve })
    this.pending = false
  }
}

export class SyncSession {
  /** The peer's id. */
  readonly peer: string
  /** Peer id of the side that opened the stream (decides which of two duplicate sessions survives). */
  readonly initiator: string
  /** What we believe the peer holds. */
  readonly theirs = new VersionVector()
  /** The highest seq per origin the peer has told us it holds. */
  readonly announced = new VersionVector()
  /** The name the peer gave in its Hello. */
  remoteName = ''
  /** The peer stores and forwards only the rule streams it is in the audience of (its hello): it is sent no other. */
  private remoteAudienceOnly = false
  /** The stream, as frames. */
  private readonly framed: FramedStream
  /** What the session works with: the log, the ingestor, policy hooks, counters. */
  private readonly deps: SessionDeps
  /** Wakes the sender: something changed that it may have work for. */
  private readonly wake = new Wakeup()
  /** Credit flow control: what each side may send the other. */
  private readonly flow: CreditFlow
  /** Lazy push: how far each origin may be sent to the peer now. */
  private readonly lazyPush: LazyPush
  /** Have frames sent to the peer, at most HAVE_BURST in a row while it says nothing. */
  private readonly haves: HaveLimit
  /** Control frames the peer may send per second. */
  private readonly controlFrames = new ControlFrameLimit()
  /** Bytes the peer may make this node ingest per second. */
  private readonly ingestRate = new ByteRateLimit()
  /** When the peer last sent anything. */
  private readonly silence = new SilentPeer()
  /** The peer's Hello came: it may send anything else, and is sent batches. */
  private helloReceived = false
  /** The session ended (see close). */
  private closed = false
  /** Per origin, the seq we held when a gap in the peer's batches was last answered with our Vector (once per held seq). */
  private readonly gapReported = new Map<string, number>()
  /** Origins whose relayed entries were last refused as stamped ahead of our clock (warned once until accepted). */
  private readonly clockRefused = new Set<string>()
  /** Origins this node does not know that this session tracks anyway (at most SESSION_MAX_UNKNOWN_ORIGINS). */
  private readonly unknownOrigins = new Set<string>()
  /** Restates our vector each ANTI_ENTROPY_INTERVAL_MS and ends the session once the peer went silent. */
  private timer?: ReturnType<typeof setInterval>
  /**
   * Batches read and not yet taken by storeLoop, oldest first. Reading on
   * while they are stored lets the peer's Have, Vector and Credit frames act
   * sooner: behind a busy ingest they waited, and meanwhile this node sent
   * the peer what it already had, and could not use credit already granted.
   * Decoded batches take more memory than their bytes, so only
   * MAX_RECEIVED_WAITING wait here; beyond that the reader pauses and the
   * rest wait in the stream (at most the credit granted: a batch beyond it
   * ends the session).
   */
  private readonly received: Array<{ msg: Extract<SyncMessage, { type: 'batch' }>, bytes: number, tracked: boolean }> = []
  /** A batch was read for storeLoop, or the reader ended. */
  private readonly batchWake = new Wakeup()
  /** storeLoop took a batch: the reader may go on. */
  private readonly readWake = new Wakeup()
  /** The stream ended: storeLoop stores what is left and ends. */
  private readerDone = false
  /** Why storeLoop ended the session (the stream's abort error is only its echo). */
  private failure?: Error
  /** Batches handed to the ingestor and not yet durable, oldest first (at most MAX_INGESTING). */
  private readonly ingesting: Array<Promise<void>> = []
  /** The origin last sent (nextOrigin goes round-robin from it). */
  private lastOrigin?: string
  /**
   * Per origin, the state of this node's copy (and the cap) at which the next
   * batch read for the peer would not pass its checks: not read again until
   * that changes (see sendable).
   */
  private readonly unsendable = new Map<string, string>()

  constructor (stream: Stream, peer: string, initiator: string, deps: SessionDeps) {
    this.framed = new FramedStream(stream, MAX_FRAME_BYTES)
    this.peer = peer
    this.initiator = initiator
    this.deps = deps
    this.flow = new CreditFlow(this.framed, () => this.closed)
    this.lazyPush = new LazyPush(peer, deps.self, deps.log, this.theirs, this.announced, this.wake)
    this.haves = new HaveLimit(this.framed)
  }

  /** The sync protocol version spoken (see SessionDeps.protocolVersion). */
  get version (): number {
    return this.deps.protocolVersion ?? SYNC_PROTOCOL_VERSION
  }

  get stream (): Stream {
    return this.framed.stream
  }

  get isClosed (): boolean {
    return this.closed
  }

  /** Something changed locally: the sender may have work. */
  notify (): void {
    this.wake.notify()
  }

  /**
   * Tell the peer we now hold `origin` up to `seq`, unless it is the one that
   * sent it or already knows: it then will not send us the same entries.
   * With `progress` (we accepted a run of `origin` from another peer), a
   * peer that holds more is told too, at most every PROGRESS_HAVE_MS per
   * origin: it may be holding runs back for us (lazy push, see LazyPush.cap)
   * and this shows the path that feeds us works, only behind it.
   */
  announce (origin: string, seq: number, progress = false): void {
    if (this.closed || !this.helloReceived) return
    if (!this.lazyPush.shouldAnnounce(origin, seq, progress)) return
    this.haves.queue(origin, seq)
  }

  /**
   * Whether to track what the peer holds of `origin`: always for origins this
   * node knows, for the first SESSION_MAX_UNKNOWN_ORIGINS others only. What
   * a peer can make a session remember does not grow with what it names; an
   * origin not tracked is still received (the peer sends what our vector
   * lacks), and tracked once it is in our log.
   */
  private tracks (origin: string): boolean {
    const knows = this.deps.knowsOrigin
    if (knows === undefined || this.unknownOrigins.has(origin) || knows(origin)) return true
    if (this.unknownOrigins.size >= SESSION_MAX_UNKNOWN_ORIGINS) return false
    this.unknownOrigins.add(origin)
    return true
  }

  /** Runs until the stream ends; rejects with the reason it ended abnormally. */
  async run (): Promise<void> {
    this.framed.sendNow(encodeHello(this.deps.localName, this.deps.log.vector, INITIAL_CREDIT, this.version, this.deps.relayAudience === true))
    this.timer = setInterval(() => {
      if (this.closed) return
      if (this.silence.silent) {
        // every peer restates its vector each ANTI_ENTROPY_INTERVAL_MS: this one went silent
        this.failure ??= new ProtocolError(`peer sent nothing for ${SILENT_PEER_MS / 1000} s`, 'PEER_SILENT')
        this.close(this.failure)
        return
      }
      this.framed.sendNow(encodeVector(this.deps.log.vector))
    }, ANTI_ENTROPY_INTERVAL_MS)
    this.timer.unref()
    const sender = this.sendLoop()
    const storer = this.storeLoop()
    // either may fail while the reader is still running: handled now (an unhandled rejection would
    // end the process), awaited below
    sender.catch(() => {})
    storer.catch(() => {})
    try {
      await this.receiveLoop()
      // the stream ended: store what was read before ending the session
      this.readerDone = true
      this.batchWake.notify()
      await storer
      if (this.failure !== undefined) throw this.failure
    } catch (err) {
      throw this.failure ?? err
    } finally {
      this.close()
      await sender.catch(() => {})
      await storer.catch(() => {})
    }
  }

  close (err?: Error): void {
    if (this.closed) return
    this.closed = true
    if (this.timer !== undefined) clearInterval(this.timer)
    this.lazyPush.close()
    this.wake.notify()
    this.batchWake.notify()
    this.readWake.notify()
    if (err !== undefined) this.stream.abort(err)
    else this.stream.close().catch(() => this.stream.abort(new Error('sync session closed')))
  }

  private async receiveLoop (): Promise<void> {
    for await (const bytes of this.framed.frames()) {
      if (this.closed) return
      this.deps.counters.bytesReceived += bytes.byteLength
      this.silence.heard()
      // the peer is running: it may be told more (see HaveLimit)
      this.haves.heard()
      if (this.stream.readBufferLength > MAX_READ_BUFFER_BYTES) {
        throw new ProtocolError(`peer sent ${this.stream.readBufferLength} bytes beyond what it was granted`, 'PEER_FLOOD')
      }
      const msg = this.decode(bytes)
      this.deps.counters.frame?.(msg.type)
      if (msg.type !== 'batch') this.controlFrames.count()
      if (!this.helloReceived && msg.type !== 'hello') throw new ProtocolError(`expected hello, got ${msg.type}`, 'PROTOCOL_VIOLATION')
      switch (msg.type) {
        case 'hello':
          if (this.helloReceived) throw new ProtocolError('second hello', 'PROTOCOL_VIOLATION')
          if (msg.protocolVersion !== this.version) throw new ProtocolError(`peer speaks sync protocol version ${msg.protocolVersion}, this node speaks ${this.version}; upgrade the older node`, 'PROTOCOL_VERSION')
          this.helloReceived = true
          this.remoteName = msg.name
          this.remoteAudienceOnly = msg.relayAudience === true
          this.replaceTheirs(msg.vector)
          this.flow.hello(msg.credit)
          this.wake.notify()
          break
        case 'vector':
          this.restateTheirs(msg.vector)
          this.wake.notify()
          break
        case 'have':
          // the peer got entries we had already sent it from someone else first: push lazily (see LazyPush.cap)
          if (!this.tracks(msg.origin)) break
          this.lazyPush.have(msg.origin, msg.seq)
          this.theirs.advance(msg.origin, msg.seq)
          this.lazyPush.heard(msg.origin, msg.seq)
          break
        case 'credit':
          this.flow.credited(msg.batches)
          this.wake.notify()
          break
        case 'batch':
          this.flow.batchReceived()
          // whatever happens to it here, the peer holds this run: never send it back
          const tracked = this.tracks(msg.origin)
          if (tracked) {
            this.theirs.advance(msg.origin, msg.toSeq)
            this.lazyPush.heard(msg.origin, msg.toSeq)
          }
          this.received.push({ msg, bytes: bytes.byteLength, tracked })
          this.batchWake.notify()
          // a few decoded batches wait here at most; beyond that the stream holds them, as raw bytes
          while (this.received.length > MAX_RECEIVED_WAITING && !this.closed) await this.readWake.wait()
          break
      }
    }
  }

  /** decodeFrame, telling onRefused which batch did not decode. */
  private decode (bytes: Uint8Array): SyncMessage {
    try {
      const msg = decodeFrame(bytes, { version: this.version })
      // stream logs travel only between nodes that carry rules by streams (SYNC_PROTOCOL_STREAMS): a node
      // of the whole-log protocol refuses them as its earlier releases do, so it never holds one to pass on
      if (this.deps.streams !== true) for (const origin of logsNamed(msg)) if (!isPeerId(origin)) throw new ProtocolError(`${msg.type} names the stream log ${origin.slice(0, 160)}, which only nodes with rule streams exchange`, 'FRAME_INVALID')
      return msg
    } catch (err) {
      const range = batchRangeOf(bytes)
      if (range !== undefined) this.refused({ ...range, code: (err as { code?: string }).code ?? 'FRAME_INVALID', reason: (err as Error).message, offence: false })
      throw err
    }
  }

  private refused (refusal: Refusal): void {
    try {
      this.deps.onRefused?.(refusal)
    } catch {}
  }

  /** Verify and store received batches in order; pipelined, at most MAX_INGESTING being written. */
  private async storeLoop (): Promise<void> {
    try {
      for (;;) {
        if (this.closed) return
        const next = this.received.shift()
        this.readWake.notify()
        if (next === undefined) {
          if (this.readerDone) return
          await this.batchWake.wait()
          continue
        }
        await this.store(next.msg, next.bytes, next.tracked)
      }
    } catch (err) {
      this.failure ??= err as Error
      this.close(err as Error)
      throw err
    } finally {
      for (const p of this.ingesting.splice(0)) await p.catch(() => {})
    }
  }

  private async store (msg: Extract<SyncMessage, { type: 'batch' }>, bytes: number, tracked = true): Promise<void> {
    // a stream this node does not carry is not stored (a peer that does not know its rule yet may send it: no offence)
    if (!this.carries(msg.origin)) return this.flow.grant()
    const accepted = Math.max(this.deps.log.vector.get(msg.origin), this.deps.accepted?.(msg.origin) ?? 0)
    if (msg.toSeq <= accepted) {
      // nothing new (a duplicate delivery, maybe of a run still being stored): skip verification and
      // storage, and tell the peer (the Have names this run's end: at most what it sent us, which is
      // how it knows its copy was a duplicate), which then pushes this origin to us lazily (see LazyPush.cap)
      if (!isLogOf(msg.origin, this.peer)) this.haves.queue(msg.origin, msg.toSeq)
      this.deps.counters.duplicates?.(msg.entries.length)
      this.flow.grant()
      return
    }
    // a revoked origin's entries beyond its revocation are dropped unverified by ingest
    const accepts = this.deps.accepts?.(msg.origin, msg.fromSeq + 1) !== false
    let attested: AttestedBatch | undefined
    try {
      attested = this.verify(msg, accepts)
    } catch (err) {
      if (err instanceof SignatureError) this.offence(msg, err)
      throw err
    }
    // every received entry: none stamped further ahead of this node's clock than the bound
    const ahead = accepts ? this.deps.clockAhead?.(this.peer, msg.origin, msg.entries) : undefined
    if (ahead !== undefined) {
      if (ahead.offence) {
        this.refused({ origin: msg.origin, fromSeq: msg.fromSeq, toSeq: msg.toSeq, code: OFFENCE_CHECKS.CLOCK_AHEAD, reason: ahead.reason, offence: true })
        this.deps.onOffence?.({ check: OFFENCE_CHECKS.CLOCK_AHEAD, origin: msg.origin, fromSeq: msg.fromSeq, toSeq: msg.toSeq, reason: ahead.reason })
        throw new ProtocolError(ahead.reason, 'CLOCK_AHEAD')
      }
      // relayed, and possibly by an honest relay whose clock is ahead of ours: not stored now; the
      // peer sends the run again after our next Vector (anti-entropy), by when our clock has moved on
      if (!this.clockRefused.has(msg.origin)) {
        if (this.clockRefused.size >= 1000) this.clockRefused.clear()
        this.clockRefused.add(msg.origin)
        this.deps.logger.warn({ peer: this.peer, origin: msg.origin }, `not storing entries of ${msg.origin} from ${this.peer} yet: ${ahead.reason}`)
      }
      this.flow.grant()
      return
    }
    this.clockRefused.delete(msg.origin)
    if (!tracked) {
      // an origin not tracked when the batch came (see tracks): its run is genuine and about to be
      // stored, so track it now, or this run would be sent back to the peer that sent it
      this.theirs.advance(msg.origin, msg.toSeq)
      this.lazyPush.heard(msg.origin, msg.toSeq)
    }
    // a run that continues what is accepted will be stored (batches reach the ingestor in the order
    // they are accepted): later copies are duplicates, and the other peers are told now, not once it is
    // stored, since under load it may wait here a while and meanwhile they would send it too (a run
    // that does not continue it may be a gap, which is not stored: that one is not announced)
    if (msg.fromSeq <= Math.max(accepted, this.deps.log.held(msg.origin))) this.deps.onAccepted?.(msg.origin, msg.toSeq)
    // Pipelined: the next batch is verified (and applied, while this one is written) before this
    // one is durable; batches are stored in the order they came, and each is credited once it is
    // durable. At most MAX_INGESTING in flight.
    const ingested = this.deps.ingest(msg.origin, msg.fromSeq, msg.toSeq, msg.entries, msg.certs, attested).catch((err: Error) => {
      // version 2: an update checked against the root this node stores is an offence (nothing of the batch is stored)
      if (err instanceof SignatureError) this.offence(msg, err)
      else this.refused({ origin: msg.origin, fromSeq: msg.fromSeq, toSeq: msg.toSeq, code: (err as { code?: string }).code ?? 'INGEST_FAILED', reason: err.message, offence: false })
      throw err
    }).then(async (result) => {
      if (result === undefined) {
        // gap: tell the peer what we really hold, once per held seq
        const held = this.deps.log.vector.get(msg.origin)
        if (this.gapReported.get(msg.origin) !== held && this.tracks(msg.origin)) {
          this.gapReported.set(msg.origin, held)
          this.framed.sendNow(encodeVector(this.deps.log.vector))
        }
      } else {
        this.gapReported.delete(msg.origin)
        this.deps.counters.entriesReceived += result.stored
        this.deps.counters.duplicates?.(msg.entries.length - result.stored)
      }
      await this.ingestRate.throttle(bytes)
      this.flow.grant()
    })
    this.ingesting.push(ingested)
    ingested.catch(() => {}) // awaited below, in order
    while (this.ingesting.length >= MAX_INGESTING) await this.ingesting.shift()
  }

  /** The batch failed a check (see checks.ts): refused, and an offence of the peer's. */
  private offence (msg: Extract<SyncMessage, { type: 'batch' }>, err: SignatureError): void {
    const check = offenceCheckOf(err)
    this.refused({ origin: msg.origin, fromSeq: msg.fromSeq, toSeq: msg.toSeq, code: check, reason: err.message, offence: true })
    this.deps.onOffence?.({ check, origin: msg.origin, fromSeq: msg.fromSeq, toSeq: msg.toSeq, reason: err.message })
  }

  /**
   * Verify a received batch (throws SignatureError naming its check, see
   * checks.ts): its end first, then its runs. Version 2: returns the origin's
   * attestations, each with the root verified here (never the relay's), and
   * the batch's updates, for the ingestor; a revoked origin's runs past its
   * revocation (`accepts` false) are dropped unverified by the ingestor.
   */
  private verify (msg: Extract<SyncMessage, { type: 'batch' }>, accepts: boolean): AttestedBatch | undefined {
    const endCheck = (certs: Array<{ to: number }>): void => {
      const unsigned = batchEndCheck(msg.fromSeq, msg.toSeq, certs)
      if (unsigned !== undefined) throw Object.assign(new SignatureError(`${unsigned.replace(/^batch/, `batch of ${msg.origin}`)}`), { check: OFFENCE_CHECKS.BATCH_END_UNSIGNED })
    }
    if (this.version !== 2) {
      if (!accepts) return undefined
      endCheck(msg.certs)
      verifyRuns(msg.origin, msg.entries, msg.certs, { from: msg.fromSeq, to: msg.toSeq })
      return undefined
    }
    const fields = msg.attested
    if (fields === undefined) throw new ProtocolError(`batch of ${msg.origin} carries no version 2 attestations`, 'FRAME_INVALID')
    if (!accepts) return { certs: fields.certs.map(cert => ({ cert })), updates: [] }
    endCheck(fields.certs)
    const roots = verifyAttestedRuns(msg.origin, msg.entries, fields.certs, { from: msg.fromSeq, to: msg.toSeq })
    return { certs: fields.certs.map((cert, i) => ({ cert, root: roots[i] })), updates: fields.updates }
  }

  /**
   * The peer restated its vector (every 15 s, or after a gap). Where it is
   * behind what we believe, it may only not have processed the batches still
   * on their way to it: under load that is up to credit × 512 entries per
   * link, and rewinding over them resent all of them (in a 30-node mesh half
   * of all entries received were such resends). So `theirs` is lowered only
   * as far as the peer will not hold once it has processed the batches in
   * flight that continue its vector, and never below what it said it holds
   * (Have, or a batch it sent us). A gap leaves a batch that does not
   * continue the vector: the sender rewinds to the vector and resends.
   */
  private restateTheirs (vector: VersionVector): void {
    for (const origin of [...this.theirs.origins()]) {
      this.theirs.set(origin, restatedSeq(vector.get(origin), this.theirs.get(origin), this.announced.get(origin), this.flow.inFlight(origin)))
    }
    for (const { origin, seq } of vector.entries()) {
      if (!this.tracks(origin)) continue
      if (seq > this.theirs.get(origin)) this.theirs.set(origin, seq)
      this.announced.advance(origin, seq)
    }
  }

  private replaceTheirs (vector: VersionVector): void {
    for (const origin of [...this.theirs.origins()]) this.theirs.set(origin, vector.get(origin))
    for (const { origin, seq } of vector.entries()) {
      if (!this.tracks(origin)) continue
      this.theirs.set(origin, seq)
      this.announced.advance(origin, seq)
    }
  }

  /** The origin to send next, and how far it may be sent now (LazyPush.cap). */
  private nextOrigin (): { origin: string, cap: number } | undefined {
    // round-robin over origins the peer lacks, so one big origin cannot starve the others
    const missing = this.deps.log.servable.missingFrom(this.theirs)
      .map(m => ({ origin: m.origin, cap: this.lazyPush.cap(m.origin) }))
      .filter(m => m.cap > this.theirs.get(m.origin) && !this.isUnsendable(m.origin, m.cap) && this.takes(m.origin))
    if (missing.length === 0) return undefined
    // whole logs before stream logs: with rule streams a whole log carries the registry, whose rules and
    // keys a stream's targets need before its entries (else they pass over them and read them again)
    const whole = missing.filter(m => isPeerId(m.origin))
    const pool = whole.length > 0 ? whole : missing
    pool.sort((a, b) => (a.origin < b.origin ? -1 : 1))
    const i = pool.findIndex(m => m.origin > (this.lastOrigin ?? ''))
    const pick = pool[i === -1 ? 0 : i]
    this.lastOrigin = pick.origin
    return pick
  }

  /** Whether this node stores `origin`: with relay policy audience, no rule stream it is not in the audience of. */
  private carries (origin: string): boolean {
    return this.deps.relayAudience !== true || !isRuleStreamLog(origin) || (this.deps.self !== undefined && this.deps.inAudience?.(origin, this.deps.self) === true)
  }

  /** Whether the peer takes `origin`: a peer that relays only the rule streams it can read takes no other rule stream. */
  private takes (origin: string): boolean {
    return !this.remoteAudienceOnly || !isRuleStreamLog(origin) || this.deps.inAudience?.(origin, this.peer) === true
  }

  private isUnsendable (origin: string, cap: number): boolean {
    const at = this.unsendable.get(origin)
    if (at === undefined) return false
    if (at === this.copyState(origin, cap)) return true
    this.unsendable.delete(origin)
    return false
  }

  private copyState (origin: string, cap: number): string {
    // version 2 reads what is durable (readAttested), which may lag what is servable from memory:
    // read again a little later even when nothing else changed (see sendAttested)
    const later = this.version === 2 ? `/${Math.floor(Date.now() / ATTESTED_RETRY_MS)}` : ''
    return `${this.deps.log.vector.get(origin)}/${this.deps.log.servable.get(origin)}/${cap}${later}`
  }

  /**
   * `run` as the peer will take it, or undefined (the origin is then passed
   * over until this node's copy of it or the cap changes): it ends at a
   * signed run (checks.ts sendableRun), and reaches no further than this node
   * accepts a revoked origin's entries (beyond that it stored neither the
   * entries nor their certificates). A batch the peer refuses would end the
   * session and count against this node as an offence.
   */
  private sendable (origin: string, read: EntryRun, cap: number): EntryRun | undefined {
    let run = sendableRun(origin, read)
    // a run straddling a revocation lacks the entries after it: a peer that verifies it would refuse it
    if (run !== undefined && this.deps.accepts?.(origin, run.toSeq) === false && this.deps.accepts(origin, run.fromSeq + 1)) run = undefined
    if (run === undefined) {
      this.unsendable.set(origin, this.copyState(origin, cap))
      this.deps.logger.debug({ peer: this.peer, origin, fromSeq: read.fromSeq, toSeq: read.toSeq }, 'not sending a batch the peer would refuse (it does not end at a signed run); read again once this node holds more')
    }
    return run
  }

  /**
   * Version 2: send the peer the next batch of `origin` after `from` as the
   * origin attested it (ChangeLog.readAttested: tiled attestations, exactly
   * the live entries, with the updates of earlier runs the batch's writes
   * made), which is what the peer's verifyAttestedRuns accepts. Nothing
   * attested after `from` (a log stored from version 1 batches, a stretch the
   * upgrade could not attest, or entries not durable yet): the origin is
   * passed over and read again after ATTESTED_RETRY_MS or once this node's
   * copy changes. False when the stream failed.
   */
  private async sendAttested (origin: string, from: number, cap: number): Promise<boolean> {
    const read = await this.deps.log.readAttested(origin, from, BATCH_MAX_ENTRIES, BATCH_MAX_BYTES)
    if (this.closed) return true
    if (this.theirs.get(origin) !== from) return true // the peer's position moved while we read
    // a run straddling a revocation lacks the entries after it: a peer that verifies it would refuse it
    const straddles = read !== undefined && this.deps.accepts?.(origin, read.toSeq) === false && this.deps.accepts(origin, read.fromSeq + 1)
    if (read === undefined || straddles) {
      this.unsendable.set(origin, this.copyState(origin, cap))
      this.lazyPush.wakeLater()
      return true
    }
    const bytes = encodeBatchFrame(origin, read.fromSeq, read.toSeq, read.entries, read.certs.map(c => encodeAttested(c)), read.updates.map(c => encodeAttested(c)))
    return await this.sendBatch(origin, read.fromSeq, read.toSeq, read.entries.length, bytes, cap)
  }

  /** Send an encoded batch of `origin` (fromSeq, toSeq]: the peer's position, lazy push, credit and counters move with it. False when the stream failed. */
  private async sendBatch (origin: string, fromSeq: number, toSeq: number, entries: number, bytes: Uint8Array, cap: number): Promise<boolean> {
    // sent lazily and still wanted: the path that served the peer may have failed (see LazyPush.cap)
    this.lazyPush.pushing(origin, cap)
    this.theirs.advance(origin, toSeq)
    this.lazyPush.sending(origin, toSeq)
    this.flow.sent(origin, fromSeq, toSeq)
    this.deps.counters.entriesSent += entries
    this.deps.counters.bytesSent += bytes.byteLength
    try {
      await this.framed.write(bytes)
    } catch {
      return false
    }
    return true
  }

  private async sendLoop (): Promise<void> {
    while (!this.closed) {
      if (!this.helloReceived || this.flow.credit <= 0) {
        await this.wake.wait()
        continue
      }
      const next = this.nextOrigin()
      if (next === undefined) {
        await this.wake.wait()
        continue
      }
      const { origin, cap } = next
      const from = this.theirs.get(origin)
      if (this.version === 2) {
        if (!await this.sendAttested(origin, from, cap)) return
        continue
      }
      const read = await this.deps.log.readRun(origin, from, BATCH_MAX_ENTRIES, BATCH_MAX_BYTES, cap)
      if (this.closed) continue
      if (read === undefined) {
        // what the peer lacks next is still being written here (it was servable from memory and is no
        // longer): the commit wakes this loop once it is durable
        if (this.deps.log.vector.get(origin) <= from && this.theirs.get(origin) === from) await this.wake.wait()
        continue
      }
      if (this.theirs.get(origin) !== from) continue // the peer's position moved while we read
      const run = this.sendable(origin, read, cap)
      if (run === undefined) continue
      const bytes = encodeBatchFrame(origin, run.fromSeq, run.toSeq, run.entries, run.certs)
      if (!await this.sendBatch(origin, run.fromSeq, run.toSeq, run.entries.length, bytes, cap)) return
    }
  }
}
