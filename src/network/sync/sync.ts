/**
 * `/syncmesh/sync/2.1.0`: one session per authenticated peer. The dialer of
 * an authenticated connection opens the stream; if two connections to the
 * same peer both produce a session, both sides keep the one opened by the
 * smaller peer id, so they agree without talking about it.
 */
import type { Connection, Libp2p, Stream } from '@libp2p/interface'
import type { Logger } from 'pino'
import { AuthenticationError } from '../../core/errors.js'
import { VersionVector } from '../../log/vector.js'
import { isLogOf } from '../../log/log-id.js'
import { MAX_SYNC_STREAMS, SESSION_MAINTAIN_MS, SYNC_OPEN_TIMEOUT_MS, SYNC_PROTOCOL } from '../constants.js'
import type { Offence, Refusal } from './checks.js'
import { SyncSession } from './session.js'
import type { PeerCounters, SessionDeps } from './session.js'

export interface SyncServiceInit {
  logger: Logger
  /** The protocol id this node speaks: SYNC_PROTOCOL unless it carries rules by streams (SYNC_PROTOCOL_STREAMS). */
  protocol?: string
  isAuthenticated: (connection: Connection) => boolean
  /** Counters for a peer (created on demand by the peer manager). */
  counters: (peer: string) => PeerCounters
  deps: Omit<SessionDeps, 'counters' | 'logger' | 'onOffence' | 'onRefused'>
  /** A peer sent forged or tampered data: which check failed, on what. */
  onOffence?: (peer: string, offence: Offence) => void
  /** A batch of a peer's was refused (an offence or not). */
  onRefused?: (peer: string, refusal: Refusal) => void
  onSessionChange?: (peer: string, open: boolean) => void
  /** A peer known to speak another version of the protocol (src/network/versions.ts): no session is opened to it. */
  isIncompatible?: (peer: string) => boolean
  /**
   * The peer does not speak this node's sync protocol: find out why (another
   * version?) and report it; returns whether it was explained.
   */
  onUnsupported?: (connection: Connection) => Promise<boolean>
}

export class SyncService {
  private readonly libp2p: Libp2p
  private readonly init: SyncServiceInit
  private readonly log: Logger
  readonly sessions = new Map<string, SyncSession>()
  private running = false

  private readonly protocol: string

  constructor (libp2p: Libp2p, init: SyncServiceInit) {
    this.protocol = init.protocol ?? SYNC_PROTOCOL
    this.libp2p = libp2p
    this.init = init
    this.log = init.logger
  }

  async start (): Promise<void> {
    this.running = true
    await this.libp2p.handle(this.protocol, (stream, connection) => {
      if (!this.init.isAuthenticated(connection)) {
        // an honest dialer opens sync only once the key is proved: one line, and the connection goes
        // (a peer could otherwise open streams, each logged, for as long as its connection lasts)
        this.log.warn({ peer: connection.remotePeer.toString() }, 'refused a sync stream from a peer that has not proved the mesh key; closing its connection')
        stream.abort(new AuthenticationError('prove the mesh key first'))
        connection.abort(new AuthenticationError('opened a sync stream before proving the mesh key'))
        return
      }
      this.attach(stream, connection, connection.remotePeer.toString())
    }, { maxInboundStreams: MAX_SYNC_STREAMS, runOnLimitedConnection: false })
    this.maintainTimer = setInterval(() => this.maintain(), SESSION_MAINTAIN_MS)
    this.maintainTimer.unref()
  }

  async stop (): Promise<void> {
    this.running = false
    if (this.maintainTimer !== undefined) clearInterval(this.maintainTimer)
    await this.libp2p.unhandle(this.protocol)
    for (const s of this.sessions.values()) s.close()
    this.sessions.clear()
  }

  /** Called once a connection has passed authentication. */
  async connected (connection: Connection): Promise<void> {
    if (!this.running || connection.direction !== 'outbound') return
    const peer = connection.remotePeer.toString()
    if (this.init.isIncompatible?.(peer) === true) return
    try {
      const stream = await connection.newStream(this.protocol, { signal: AbortSignal.timeout(SYNC_OPEN_TIMEOUT_MS) })
      this.attach(stream, connection, this.libp2p.peerId.toString())
    } catch (err) {
      if ((err as Error).name === 'UnsupportedProtocolError' && await this.init.onUnsupported?.(connection).catch(() => false) === true) return
      this.log.warn({ peer, err: (err as Error).message }, `could not open a sync stream to ${peer}`)
      // no answer at all: the connection is dead (libp2p's ping does not close it, see createHost)
      if ((err as Error).name === 'TimeoutError') connection.abort(err as Error)
    }
  }

  /**
   * Per origin, the end of the runs handed to the ingestor in order, each
   * continuing the last (see SessionDeps.accepted): a copy of one of them
   * from another peer is a duplicate even before the first is stored (in a
   * 30-node mesh, most duplicates arrived while the first copy was still
   * being stored, and were verified and stored again).
   */
  private readonly accepted = new VersionVector()

  /**
   * Announcements waiting for the next turn of the event loop: origin →
   * newest seq stored or accepted, and the peers that supplied the runs
   * accepted this turn (see SyncSession.announce).
   */
  private readonly unannounced = new Map<string, { seq: number, suppliers: Set<string> }>()

  /**
   * New entries are stored: wake every session's sender, and announce them
   * (except our own, which the next batch carries anyway) on the next turn of
   * the event loop. By then a sender that forwards them has sent the run, so
   * only the peers that will not get it from us are told we hold it (a Have to
   * a peer right before the batch that carries the same entries costs a
   * frame and, on an idle node, ~0.3 ms of a change's latency per hop).
   */
  stored (origins: Iterable<{ origin: string, seq: number }>): void {
    for (const s of this.sessions.values()) s.notify()
    this.announce(origins)
  }

  /**
   * Tell every peer that does not know yet that this node holds (or is
   * storing) these runs, on the next turn; `supplier` sent them (it is not
   * told: see SyncSession.announce).
   */
  private announce (origins: Iterable<{ origin: string, seq: number }>, supplier?: string): void {
    const self = this.libp2p.peerId.toString()
    const first = this.unannounced.size === 0
    for (const { origin, seq } of origins) {
      if (isLogOf(origin, self)) continue
      let pending = this.unannounced.get(origin)
      if (pending === undefined) this.unannounced.set(origin, pending = { seq, suppliers: new Set() })
      pending.seq = Math.max(pending.seq, seq)
      if (supplier !== undefined) pending.suppliers.add(supplier)
    }
    if (!first || this.unannounced.size === 0) return
    setImmediate(() => {
      const pending = [...this.unannounced]
      this.unannounced.clear()
      for (const s of this.sessions.values()) {
        for (const [origin, { seq, suppliers }] of pending) s.announce(origin, seq, suppliers.size > 0 && !suppliers.has(s.peer))
      }
    })
  }

  /**
   * Reopen a session on any authenticated connection we dialled that has
   * none (after a reset, a protocol error, or a lost duplicate tie-break).
   */
  maintain (): void {
    if (!this.running) return
    for (const c of this.libp2p.getConnections()) {
      if (c.direction !== 'outbound' || c.status !== 'open' || !this.init.isAuthenticated(c)) continue
      const peer = c.remotePeer.toString()
      const s = this.sessions.get(peer)
      if (s !== undefined && !s.isClosed) continue
      if (this.opening.has(peer) || this.init.isIncompatible?.(peer) === true) continue
      this.opening.add(peer)
      this.connected(c).finally(() => this.opening.delete(peer)).catch(() => {})
    }
  }

  /**
   * End the session with `peer` normally, so that a new one starts (the
   * dialling side reopens it within SESSION_MAINTAIN_MS): the peer learns
   * again, from this node's Hello, exactly what this node holds, re-reads
   * from there and pushes every origin at once (lazy push starts over).
   * Returns false when there is no session.
   */
  restart (peer: string): boolean {
    const s = this.sessions.get(peer)
    if (s === undefined || s.isClosed) return false
    s.close()
    return true
  }

  /**
   * Forget how far `origin`'s runs were accepted beyond what is held: a run
   * accepted but never stored (its ingest failed) would otherwise make every
   * later copy of it look like a duplicate.
   */
  resetAccepted (origin: string, held: number): void {
    if (this.accepted.get(origin) > held) this.accepted.set(origin, held)
  }

  private readonly opening = new Set<string>()
  private maintainTimer?: ReturnType<typeof setInterval>

  private attach (stream: Stream, connection: Connection, initiator: string): void {
    const peer = connection.remotePeer.toString()
    if (!this.running) {
      stream.abort(new Error('node is stopping'))
      return
    }
    const existing = this.sessions.get(peer)
    if (existing !== undefined && !existing.isClosed) {
      if (existing.initiator <= initiator) {
        stream.abort(new Error('duplicate sync session'))
        return
      }
      existing.close()
    }
    const session = new SyncSession(stream, peer, initiator, {
      ...this.init.deps,
      logger: this.log,
      counters: this.init.counters(peer),
      onOffence: (offence) => this.init.onOffence?.(peer, offence),
      onRefused: (refusal) => this.init.onRefused?.(peer, refusal),
      accepted: (origin) => this.accepted.get(origin),
      onAccepted: (origin, seq) => {
        this.accepted.advance(origin, seq)
        this.announce([{ origin, seq }], peer)
      }
    })
    this.sessions.set(peer, session)
    this.init.onSessionChange?.(peer, true)
    session.run().catch((err: Error) => {
      const level = err.name === 'ProtocolError' ? 'warn' : 'debug'
      this.log[level]({ peer, err: err.message }, `sync session with ${peer} ended: ${err.message}`)
      session.close(err)
      // the peer went silent: the link is dead, drop it so that it is redialled
      if ((err as { code?: string }).code === 'PEER_SILENT') connection.abort(err)
    }).finally(() => {
      if (this.sessions.get(peer) === session) {
        this.sessions.delete(peer)
        this.init.onSessionChange?.(peer, false)
      }
    })
  }
}
