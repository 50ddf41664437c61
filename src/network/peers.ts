/**
 * Known peers and the connection policy.
 *
 * - Peers an operator added are persisted and redialled (at start and after
 *   every disconnect, with exponential backoff) up to the connection cap,
 *   whatever other connections the node has; so are bootstrap addresses.
 * - A healed link comes back within a few seconds: the backoff of a peer that
 *   went away less than FAST_REDIAL_FOR_MS ago is capped at
 *   FAST_REDIAL_MAX_MS (with jitter), and starts over on any sign of life (a
 *   connection from it, its log advancing through another peer). The
 *   accepting side redials too: a platform it shares a rule with, once linked,
 *   is redialled like an operator-added peer (at its registry addresses).
 *   A link the other side keeps closing soon after it opens backs off.
 * - Platforms in the replicated registry publish their addresses; the node
 *   dials them until it has `targetConnections`, preferring the platforms its
 *   rules involve, then regions it is not yet connected to.
 * - libp2p refuses inbound connections beyond `maxConnections` and prunes the
 *   least valuable ones; operator-added and rule-involved peers are tagged so
 *   that they are kept.
 */
import type { Connection } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Logger } from 'pino'
import { InvalidInputError, SyncmeshError } from '../core/errors.js'
import type { PeerInfo } from '../core/types.js'
import type { Store } from '../store/db.js'
import { decodeJson, encodeJson } from '../store/db.js'
import { keys, prefixRange } from '../store/keys.js'
import { OFFENCE_LIMIT, OFFENCE_WINDOW_MS, DEFAULT_MAX_CONNECTIONS, DEFAULT_TARGET_CONNECTIONS, SHUFFLE_INTERVAL_MS, DIAL_TIMEOUT_MS, AUTH_TIMEOUT_MS, REDIAL_MAX_MS, REDIAL_MIN_MS } from './constants.js'
import type { Host } from './libp2p.js'
import type { Offence } from './sync/checks.js'
import type { PeerCounters } from './sync/session.js'

interface PersistedPeer {
  peerId: string
  addrs: string[]
  addedAt: string
  lastSeen?: string
}

/** A platform from the registry this node could connect to. */
export interface Candidate {
  peerId: string
  addrs: string[]
  region?: string
  /** Involved in a rule with this node: dialled first and kept. */
  preferred: boolean
}

interface PeerState extends PeerCounters {
  peerId: string
  addrs: string[]
  persisted: boolean
  lastSeen?: string
  /** When the last frame came from the peer (ms; in memory only, see counters). */
  lastTrafficAt?: number
  lastError?: string
  nextDial: number
  backoff: number
  dialing: boolean
  /** Had an authenticated connection since this node started (the accepting side redials it, see tick). */
  linked?: boolean
  /** When its last connection opened / closed, and how many links in a row lasted under FLAP_MS. */
  openedAt?: number
  downSince?: number
  flaps?: number
  /** Last sign of life acted on (see signOfLife). */
  lifeAt?: number
  /** The last dial failed (a sign of life may end the wait; a close on purpose is not such a wait). */
  dialFailed?: boolean
  offences?: number[]
  offenceCount?: number
  /** Offences per check code (see src/network/sync/checks.ts). */
  offencesByCheck?: Map<string, number>
  lastOffence?: OffenceRecord
  bannedUntil?: number
}

/** The last offence of a peer: which check failed, on which origin and range, and when. */
export interface OffenceRecord {
  check: string
  origin: string
  fromSeq: number
  toSeq: number
  reason: string
  at: string
}

/** Offences and bans on this node since it started, per check. */
export interface OffenceTotals {
  total: number
  byCheck: Record<string, number>
  bans: number
  bansByCheck: Record<string, number>
}

/** Backoff cap of a peer that went away less than FAST_REDIAL_FOR_MS ago (before: REDIAL_MAX_MS). */
export const FAST_REDIAL_MAX_MS = 5_000
export const FAST_REDIAL_FOR_MS = 10 * 60_000
/** A link that closes sooner than this after it opened counts as a flap: the next redial waits longer. */
const FLAP_MS = 10_000

/** `ms` ± 25 %: peers that lost each other at the same moment do not dial at the same moment. */
function jitter (ms: number): number {
  return Math.round(ms * (0.75 + Math.random() * 0.5))
}

/** Longer than any address a peer has (a DNS name is at most 253 characters): refused, never dialled or kept. */
export const MAX_MULTIADDR_LENGTH = 1024

export function parseMultiaddr (text: string): Multiaddr {
  if (text.length > MAX_MULTIADDR_LENGTH) {
    throw new InvalidInputError(`"${text.slice(0, 64)}…" is not a multiaddr: ${text.length} characters, at most ${MAX_MULTIADDR_LENGTH}; expected e.g. /ip4/10.0.0.5/tcp/4001/p2p/12D3KooW…`, 'INVALID_MULTIADDR')
  }
  try {
    return multiaddr(text)
  } catch (err) {
    throw new InvalidInputError(`"${text}" is not a multiaddr (${(err as Error).message.slice(0, 200)}); expected e.g. /ip4/10.0.0.5/tcp/4001/p2p/12D3KooW…`, 'INVALID_MULTIADDR')
  }
}

function peerIdOf (ma: Multiaddr): string | undefined {
  const p2p = ma.getComponents().findLast(c => c.name === 'p2p')
  return p2p?.value
}

export class PeerManager {
  private readonly host: Host
  private readonly store: Store
  private readonly log: Logger
  private readonly peers = new Map<string, PeerState>()
  private readonly bootstrap: Array<{ addr: string, nextDial: number, backoff: number, dialing: boolean }>
  private timer?: ReturnType<typeof setInterval>
  private readonly isAuthenticated: (c: Connection) => boolean
  private readonly candidates: () => Candidate[]
  private readonly targetConnections: number
  private readonly maxConnections: number
  private readonly tagged = new Set<string>()

  constructor (host: Host, store: Store, init: {
    logger: Logger
    bootstrap?: string[]
    isAuthenticated: (c: Connection) => boolean
    candidates?: () => Candidate[]
    targetConnections?: number
    maxConnections?: number
  }) {
    this.host = host
    this.store = store
    this.log = init.logger
    this.isAuthenticated = init.isAuthenticated
    this.candidates = init.candidates ?? (() => [])
    this.targetConnections = init.targetConnections ?? DEFAULT_TARGET_CONNECTIONS
    this.maxConnections = init.maxConnections ?? DEFAULT_MAX_CONNECTIONS
    this.bootstrap = (init.bootstrap ?? []).map(addr => {
      parseMultiaddr(addr)
      return { addr, nextDial: 0, backoff: REDIAL_MIN_MS, dialing: false }
    })
  }

  async load (): Promise<void> {
    for await (const value of this.store.db.values(prefixRange(keys.peerPrefix()))) {
      const p = decodeJson<PersistedPeer>(value)
      const s = this.state(p.peerId)
      s.addrs = p.addrs
      s.persisted = true
      if (p.lastSeen !== undefined) s.lastSeen = p.lastSeen
    }
  }

  start (): void {
    this.timer = setInterval(() => this.tick(), 250)
    this.timer.unref()
    this.host.addEventListener('connection:open', this.onOpen)
    this.host.addEventListener('connection:close', this.onClose)
    this.tick()
  }

  stop (): void {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.host.removeEventListener('connection:open', this.onOpen)
    this.host.removeEventListener('connection:close', this.onClose)
  }

  private readonly onOpen = (): void => {
    this.enforceCap()
  }

  /** The last connection to a peer closed: when to dial it again. */
  private readonly onClose = (evt: CustomEvent<Connection>): void => {
    const peer = evt.detail.remotePeer.toString()
    const s = this.peers.get(peer)
    if (s === undefined || this.host.getConnections().some(c => c.remotePeer.toString() === peer && c.status === 'open')) return
    const now = Date.now()
    if (s.openedAt !== undefined) this.log.info({ peer, lastError: s.lastError }, `peer ${peer} disconnected${s.lastError !== undefined ? ` (${s.lastError})` : ''}`)
    s.downSince ??= now
    if (s.openedAt !== undefined) {
      s.flaps = now - s.openedAt < FLAP_MS ? (s.flaps ?? 0) + 1 : 0
      s.openedAt = undefined
    }
    // this node closed it on purpose (connection cap, shuffle) and chose when to dial it again
    if (s.nextDial > now) return
    // a link the other side keeps closing right after it opens (it is full, or refuses us) is not redialled at once
    s.backoff = (s.flaps ?? 0) > 0 ? Math.min(FAST_REDIAL_MAX_MS * 2 ** ((s.flaps ?? 1) - 1), REDIAL_MAX_MS) : REDIAL_MIN_MS
    s.nextDial = now + jitter(s.backoff)
  }

  /** Backoff cap for `s` now: a few seconds for a peer that went away recently, REDIAL_MAX_MS after that. */
  private redialCap (s: PeerState, now: number): number {
    return now - (s.downSince ?? now) < FAST_REDIAL_FOR_MS ? FAST_REDIAL_MAX_MS : REDIAL_MAX_MS
  }

  /**
   * `peer` is alive (its log advanced here through another peer, or it
   * published new addresses): if it is not connected, dial it soon, with the
   * backoff started over. At most once per FAST_REDIAL_MAX_MS per peer, so a
   * peer alive but unreachable from here is not dialled more often than that.
   */
  signOfLife (peer: string): void {
    const s = this.peers.get(peer)
    if (s === undefined || s.dialing || s.dialFailed !== true) return
    const now = Date.now()
    if (now - (s.lifeAt ?? 0) < FAST_REDIAL_MAX_MS) return
    if (this.host.getConnections().some(c => c.remotePeer.toString() === peer)) return
    s.lifeAt = now
    s.backoff = REDIAL_MIN_MS
    s.flaps = 0
    s.downSince = now
    s.nextDial = Math.min(s.nextDial, now + jitter(REDIAL_MIN_MS))
  }

  /**
   * Close connections beyond maxConnections, least valuable first: libp2p's
   * own pruning never closes a connection that carries a sync stream.
   * Value: operator-added and rule-involved peers first, then older connections.
   */
  private enforceCap (): void {
    // only connections that proved the key take places: those at the door have their own budget
    const conns = this.host.getConnections().filter(c => c.status === 'open' && this.isAuthenticated(c))
    const peers = new Set(conns.map(c => c.remotePeer.toString()))
    let excess = peers.size - this.maxConnections
    if (excess <= 0) return
    const preferred = new Set(this.candidates().filter(c => c.preferred).map(c => c.peerId))
    const value = (peer: string): number => (this.peers.get(peer)?.persisted === true ? 2 : 0) + (preferred.has(peer) ? 1 : 0)
    const newest = new Map<string, number>()
    for (const c of conns) {
      const peer = c.remotePeer.toString()
      newest.set(peer, Math.max(newest.get(peer) ?? 0, c.timeline.open))
    }
    const order = [...peers].sort((a, b) => value(a) - value(b) || (newest.get(b) ?? 0) - (newest.get(a) ?? 0))
    for (const peer of order) {
      if (excess <= 0) break
      excess--
      const s = this.state(peer)
      // do not dial it straight back
      s.nextDial = Date.now() + (s.backoff = Math.min(Math.max(s.backoff * 2, 5_000), REDIAL_MAX_MS))
      s.linked = false
      this.log.debug({ peer, max: this.maxConnections }, 'closing a connection above the connection cap')
      for (const c of conns) if (c.remotePeer.toString() === peer) c.close().catch((err: Error) => c.abort(err))
    }
  }

  /**
   * The counters a sync session moves. A session adds to `bytesReceived` for
   * every frame it reads from the peer: that also stamps the peer's last
   * traffic (a clock read in memory, no write to disk per frame).
   */
  counters (peer: string): PeerCounters {
    const s = this.state(peer)
    return {
      get entriesSent () { return s.entriesSent },
      set entriesSent (n: number) { s.entriesSent = n },
      get entriesReceived () { return s.entriesReceived },
      set entriesReceived (n: number) { s.entriesReceived = n },
      get bytesSent () { return s.bytesSent },
      set bytesSent (n: number) { s.bytesSent = n },
      get bytesReceived () { return s.bytesReceived },
      set bytesReceived (n: number) {
        s.bytesReceived = n
        s.lastTrafficAt = Date.now()
      }
    }
  }

  private state (peer: string): PeerState {
    let s = this.peers.get(peer)
    if (s === undefined) {
      s = this.fresh(peer)
      this.peers.set(peer, s)
    }
    return s
  }

  /** A new state, not kept. */
  private fresh (peer: string): PeerState {
    return { peerId: peer, addrs: [], persisted: false, nextDial: 0, backoff: REDIAL_MIN_MS, dialing: false, entriesSent: 0, entriesReceived: 0, bytesSent: 0, bytesReceived: 0 }
  }

  /** A connection to `peer` passed authentication. */
  authenticated (connection: Connection): void {
    const s = this.state(connection.remotePeer.toString())
    s.lastSeen = new Date().toISOString()
    s.backoff = REDIAL_MIN_MS
    s.lastError = undefined
    s.linked = true
    if (s.openedAt === undefined) this.log.info({ peer: s.peerId, addr: connection.remoteAddr.toString(), direction: connection.direction }, `peer ${s.peerId} connected and proved the mesh key (${connection.direction}, ${connection.remoteAddr.toString()})`)
    s.openedAt ??= Date.now()
    s.downSince = undefined
    const addr = connection.remoteAddr.toString()
    if (connection.direction === 'outbound' && s.addrs.length === 0) s.addrs = [addr]
    if (s.persisted) this.persist(s).catch(() => {})
    // the cap counts connections that proved the key: this one may be beyond it
    this.enforceCap()
  }

  private readonly offencesSeen = new Map<string, number>()
  private readonly bansSeen = new Map<string, number>()

  /**
   * The peer sent forged or tampered data. Returns true when it has offended
   * OFFENCE_LIMIT times within OFFENCE_WINDOW_MS, i.e. should be refused for a while.
   */
  offence (peer: string, o: Offence): boolean {
    const s = this.state(peer)
    const now = Date.now()
    s.offences = (s.offences ?? []).filter(t => now - t < OFFENCE_WINDOW_MS)
    s.offences.push(now)
    s.offenceCount = (s.offenceCount ?? 0) + 1
    s.offencesByCheck ??= new Map()
    s.offencesByCheck.set(o.check, (s.offencesByCheck.get(o.check) ?? 0) + 1)
    this.offencesSeen.set(o.check, (this.offencesSeen.get(o.check) ?? 0) + 1)
    s.lastOffence = { check: o.check, origin: o.origin, fromSeq: o.fromSeq, toSeq: o.toSeq, reason: o.reason, at: new Date(now).toISOString() }
    s.lastError = `sent invalid data [${o.check}] of origin ${o.origin}, batch (${o.fromSeq}, ${o.toSeq}]: ${o.reason}`
    this.log.warn({ peer, check: o.check, origin: o.origin, fromSeq: o.fromSeq, toSeq: o.toSeq, reason: o.reason, offences: s.offences.length }, `peer ${peer} sent invalid data [${o.check}] in batch (${o.fromSeq}, ${o.toSeq}] of origin ${o.origin} (${o.reason}); nothing of it was stored (${s.offences.length} of ${OFFENCE_LIMIT} offences before it is refused)`)
    return s.offences.length >= OFFENCE_LIMIT
  }

  /** The peer is refused for `ms` after repeated offences, the last one `o`. */
  banned (peer: string, ms: number, o: Offence): void {
    const s = this.state(peer)
    s.bannedUntil = Date.now() + ms
    this.bansSeen.set(o.check, (this.bansSeen.get(o.check) ?? 0) + 1)
    s.lastError = `refused until ${new Date(s.bannedUntil).toISOString()} after ${OFFENCE_LIMIT} offences; last: [${o.check}] of origin ${o.origin}, batch (${o.fromSeq}, ${o.toSeq}]: ${o.reason}`
    this.log.warn({ peer, check: o.check, origin: o.origin, fromSeq: o.fromSeq, toSeq: o.toSeq, banMinutes: ms / 60_000 }, `refusing peer ${peer} for ${ms / 60_000} minutes after ${OFFENCE_LIMIT} offences within ${OFFENCE_WINDOW_MS / 60_000} minutes; the last: [${o.check}] in batch (${o.fromSeq}, ${o.toSeq}] of origin ${o.origin}`)
  }

  /** Offences and bans since the node started, per check (status, /metrics). */
  offenceTotals (): OffenceTotals {
    const byCheck = Object.fromEntries([...this.offencesSeen].sort())
    const bansByCheck = Object.fromEntries([...this.bansSeen].sort())
    const sum = (m: Map<string, number>): number => [...m.values()].reduce((a, b) => a + b, 0)
    return { total: sum(this.offencesSeen), byCheck, bans: sum(this.bansSeen), bansByCheck }
  }

  /** Close every connection to `peer` (it may reconnect; see offence()). */
  disconnect (peer: string): void {
    const s = this.peers.get(peer)
    if (s !== undefined) s.linked = false
    for (const c of this.host.getConnections()) {
      if (c.remotePeer.toString() === peer) c.close().catch((err: Error) => c.abort(err))
    }
  }

  rejected (peer: string, reason: string): void {
    const probe = this.probes.get(peer)
    if (probe !== undefined) probe.reason = reason
    // a peer id this node does not know gets no state: throwaway identities would pile up
    const s = this.peers.get(peer)
    if (s === undefined) return
    s.lastError = reason
    s.linked = false
    s.nextDial = Date.now() + (s.backoff = Math.min(s.backoff * 4, REDIAL_MAX_MS))
  }

  /** Whether `peer` was added by the operator or is a registry platform. */
  knows (peer: string): boolean {
    return this.peers.get(peer)?.persisted === true || this.candidates().some(c => c.peerId === peer)
  }

  /** Peers this node keeps state for. */
  get size (): number {
    return this.peers.size
  }

  /**
   * Drop the state of a peer that is neither added by the operator, nor a
   * registry platform, nor connected, nor being dialled, nor a recent
   * offender (it left, or its refusal ended): what a peer that comes and
   * goes leaves behind is bounded. Returns whether nothing is kept about it.
   */
  forget (peer: string): boolean {
    const s = this.peers.get(peer)
    if (s !== undefined && (s.persisted || s.dialing)) return false
    // recent offences count towards a refusal: kept for their window
    const now = Date.now()
    if (s?.offences?.some(t => now - t < OFFENCE_WINDOW_MS) === true) return false
    if (this.candidates().some(c => c.peerId === peer)) return false
    for (const c of this.host.getConnections()) if (c.status === 'open' && c.remotePeer.toString() === peer) return false
    this.peers.delete(peer)
    this.tagged.delete(peer)
    return true
  }

  private async persist (s: PeerState): Promise<void> {
    const p: PersistedPeer = { peerId: s.peerId, addrs: s.addrs, addedAt: new Date().toISOString() }
    if (s.lastSeen !== undefined) p.lastSeen = s.lastSeen
    await this.store.db.put(keys.peer(s.peerId), encodeJson(p))
  }

  /**
   * Dial the address given, over that very address (a connection the peer
   * has by another way does not count), and wait for the peer to prove the
   * mesh key on the new connection; keep the peer with this address only
   * then. With `save`, the address is kept even when that fails (the result
   * says `proved: false` and why, in `lastError`), and it is redialled.
   */
  async add (text: string, options: { save?: boolean } = {}): Promise<PeerInfo> {
    const ma = parseMultiaddr(text)
    const named = peerIdOf(ma)
    if (named === this.host.peerId.toString()) throw new InvalidInputError('that multiaddr is this node itself', 'INVALID_MULTIADDR')
    const proof = await this.prove(ma, text)
    const peer = proof.peer ?? named
    if (peer === undefined) {
      throw new SyncmeshError('PEER_UNREACHABLE', `cannot reach ${text} (${proof.error ?? 'no connection'}); check the address, or add it with its /p2p/PEER_ID suffix and --save to keep retrying in the background`, 502)
    }
    if (peer === this.host.peerId.toString()) throw new InvalidInputError('that multiaddr is this node itself', 'INVALID_MULTIADDR')
    if (proof.error !== undefined && options.save !== true) {
      if (proof.connected) {
        throw new SyncmeshError('PEER_KEY_NOT_PROVED', `reached ${peer} at ${text}, but the mesh key was not proved over that connection (${proof.error}); check that both nodes use the same mesh key. Nothing was saved (--save keeps the address anyway)`, 502)
      }
      throw new SyncmeshError('PEER_UNREACHABLE', `cannot reach ${text} (${proof.error}); check the address and port (GET /v1/status on the peer lists its multiaddrs). Nothing was saved (--save keeps the address anyway and redials it)`, 502)
    }
    const s = this.state(peer)
    const withP2p = named === undefined ? ma.encapsulate(`/p2p/${peer}`).toString() : ma.toString()
    s.addrs = [withP2p, ...s.addrs.filter(a => a !== withP2p)].slice(0, 8)
    s.persisted = true
    if (proof.error !== undefined) s.lastError = proof.error
    await this.persist(s)
    return { ...this.info(s), proved: proof.error === undefined }
  }

  /** Peer ids being proved by `add`, and why their connection was refused, if it was. */
  private readonly probes = new Map<string, { reason?: string }>()

  /**
   * Open a new connection over `ma` (even when the peer is connected another
   * way) and wait until the mesh key is proved on it or it fails. `error`
   * is undefined on success; `connected` tells whether the address answered.
   */
  private async prove (ma: Multiaddr, text: string): Promise<{ peer?: string, connected: boolean, error?: string }> {
    const named = peerIdOf(ma)
    const probe: { reason?: string } = {}
    if (named !== undefined) this.probes.set(named, probe)
    let conn: Connection
    try {
      conn = await this.host.dial(ma, { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS), force: true })
    } catch (err) {
      return { ...(named !== undefined ? { peer: named } : {}), connected: false, error: (err as Error).message }
    } finally {
      if (named !== undefined) this.probes.delete(named)
    }
    const peer = conn.remotePeer.toString()
    const before = this.host.getConnections().filter(c => c.id !== conn.id && c.remotePeer.toString() === peer && c.status === 'open' && this.isAuthenticated(c))
    // the dial may have joined another one in flight to the same peer: only this address counts
    const asked = ma.toString().replace(/\/p2p\/[^/]+$/, '')
    const reached = conn.remoteAddr.toString().replace(/\/p2p\/[^/]+$/, '')
    if (/^\/ip[46]\//.test(asked) && asked !== reached) {
      return { peer, connected: false, error: `the connection came over ${reached}, not over ${text}` }
    }
    // the refusal's reason is noted under the peer id while the key is proved (set again: the dial's finally removed it)
    this.probes.set(peer, probe)
    const deadline = Date.now() + AUTH_TIMEOUT_MS + 1000
    try {
      while (!this.isAuthenticated(conn)) {
        if (conn.status !== 'open') return { peer, connected: true, error: probe.reason ?? 'the connection closed before the mesh key was proved' }
        if (Date.now() > deadline) return { peer, connected: true, error: `the mesh key was not proved within ${AUTH_TIMEOUT_MS} ms` }
        await new Promise(resolve => setTimeout(resolve, 25))
      }
    } finally {
      this.probes.delete(peer)
    }
    // proved: a second connection to a peer already linked is not kept
    if (before.length > 0) conn.close().catch((err: Error) => conn.abort(err))
    return { peer, connected: true }
  }

  async remove (peer: string): Promise<boolean> {
    const s = this.peers.get(peer)
    const known = s?.persisted === true
    if (s !== undefined) {
      s.persisted = false
      s.linked = false
    }
    await this.store.db.del(keys.peer(peer))
    await this.host.hangUp(this.peerIdObject(peer)).catch(() => {})
    return known
  }

  private peerIdObject (peer: string): Parameters<Host['hangUp']>[0] {
    for (const c of this.host.getConnections()) if (c.remotePeer.toString() === peer) return c.remotePeer
    return multiaddr(`/p2p/${peer}`)
  }

  list (): PeerInfo[] {
    const seen = new Set<string>()
    const out: PeerInfo[] = []
    for (const c of this.host.getConnections()) seen.add(c.remotePeer.toString())
    for (const s of this.peers.values()) {
      // also peers that proved the key before (while their state is kept) and peers that misbehaved
      // recently: who went away, when and why stays visible
      if (s.persisted || s.linked === true || seen.has(s.peerId) || (s.offenceCount ?? 0) > 0) out.push(this.info(s))
    }
    for (const peer of seen) if (!this.peers.has(peer)) out.push(this.info(this.fresh(peer)))
    return out.sort((a, b) => a.peerId.localeCompare(b.peerId))
  }

  private info (s: PeerState): PeerInfo {
    const conns = this.host.getConnections().filter(c => c.remotePeer.toString() === s.peerId)
    const info: PeerInfo = {
      peerId: s.peerId,
      addrs: s.addrs.length > 0 ? s.addrs : conns.map(c => c.remoteAddr.toString()),
      connected: conns.length > 0,
      // as the cap counts them (enforceCap): a connection being closed no longer holds a place
      authenticated: conns.some(c => c.status === 'open' && this.isAuthenticated(c)),
      persisted: s.persisted,
      entriesSent: s.entriesSent,
      entriesReceived: s.entriesReceived,
      bytesSent: s.bytesSent,
      bytesReceived: s.bytesReceived
    }
    if (s.lastSeen !== undefined) info.lastSeen = s.lastSeen
    if (s.lastTrafficAt !== undefined) info.lastTraffic = new Date(s.lastTrafficAt).toISOString()
    if (s.downSince !== undefined && conns.length === 0) info.disconnectedSince = new Date(s.downSince).toISOString()
    if (s.lastError !== undefined) info.lastError = s.lastError
    if (s.offenceCount !== undefined) info.offences = s.offenceCount
    if (s.offencesByCheck !== undefined) info.offencesByCheck = Object.fromEntries([...s.offencesByCheck].sort())
    if (s.lastOffence !== undefined) info.lastOffence = s.lastOffence
    if (s.bannedUntil !== undefined && s.bannedUntil > Date.now()) info.bannedUntil = new Date(s.bannedUntil).toISOString()
    return info
  }

  private connectedPeers (): Set<string> {
    const out = new Set<string>()
    for (const c of this.host.getConnections()) out.add(c.remotePeer.toString())
    return out
  }

  private dialState (s: PeerState, addrs: string[]): void {
    s.dialing = true
    this.host.dial(addrs.map(a => multiaddr(a)), { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) })
      .then(() => {
        s.lastError = undefined
        s.dialFailed = false
      })
      .catch((err: Error) => {
        const now = Date.now()
        // this node's own refusal of the peer (still in force) says less than what caused it: keep that
        if (s.lastError === undefined || !err.message.includes('gater')) s.lastError = err.message
        s.dialFailed = true
        s.downSince ??= now
        // doubling up to the cap (a longer wait chosen for a flapping link stays until it connects)
        s.backoff = Math.min(s.backoff * 2, Math.max(this.redialCap(s, now), s.backoff))
        this.log.debug({ peer: s.peerId, err: err.message, retryInMs: s.backoff }, 'dial failed')
      })
      .finally(() => {
        s.dialing = false
        s.nextDial = Math.max(s.nextDial, Date.now() + jitter(s.backoff))
      })
  }

  /** Keep operator-chosen and rule-involved peers through libp2p's pruning. */
  private tag (peer: string): void {
    if (this.tagged.has(peer)) return
    this.tagged.add(peer)
    let id
    for (const c of this.host.getConnections()) if (c.remotePeer.toString() === peer) id = c.remotePeer
    if (id === undefined) {
      this.tagged.delete(peer)
      return
    }
    this.host.peerStore.merge(id, { tags: { 'syncmesh-keep': { value: 100 } } }).catch(() => { this.tagged.delete(peer) })
  }

  /**
   * A node that is full (at maxConnections) while it knows peers it is not
   * connected to drops one random connection of the lowest value now and
   * then, so that full groups of nodes cannot close themselves off from the
   * rest of the mesh.
   */
  private shuffle (connected: Set<string>): void {
    const now = Date.now()
    if (now < this.nextShuffle) return
    this.nextShuffle = now + SHUFFLE_INTERVAL_MS * (0.5 + Math.random())
    if (connected.size < this.maxConnections) return
    const known = [...this.peers.values()].filter(s => s.persisted).map(s => s.peerId).concat(this.candidates().map(c => c.peerId))
    if (!known.some(p => !connected.has(p) && p !== this.host.peerId.toString())) return
    const preferred = new Set(this.candidates().filter(c => c.preferred).map(c => c.peerId))
    const pool = [...connected].filter(p => !preferred.has(p))
    if (pool.length === 0) return
    const victim = pool[Math.floor(Math.random() * pool.length)]
    const s = this.state(victim)
    s.nextDial = now + (s.backoff = Math.min(Math.max(s.backoff * 2, 5_000), REDIAL_MAX_MS))
    s.linked = false
    this.log.debug({ peer: victim }, 'full: dropping a random connection so the mesh stays connected')
    for (const c of this.host.getConnections()) if (c.remotePeer.toString() === victim) c.close().catch((err: Error) => c.abort(err))
  }

  private nextShuffle = Date.now() + SHUFFLE_INTERVAL_MS

  private tick (): void {
    this.enforceCap()
    const now = Date.now()
    const connected = this.connectedPeers()
    const self = this.host.peerId.toString()
    let dialing = 0
    for (const s of this.peers.values()) if (s.dialing) dialing++
    // 1. operator-added peers: wanted up to the connection cap (not only up to the target degree, which
    // is for platforms found in the registry: a node with a few links left would never get its others back,
    // and a group of nodes at the target degree among themselves would stay cut off from the rest)
    for (const s of this.peers.values()) {
      if (!s.persisted) continue
      if (connected.has(s.peerId)) {
        this.tag(s.peerId)
        continue
      }
      if (s.dialing || now < s.nextDial || s.addrs.length === 0) continue
      if (connected.size + dialing >= this.maxConnections) break
      this.dialState(s, s.addrs)
      dialing++
    }
    // 1b. the accepting side of a link to a platform it shares a rule with redials it too (at the
    // platform's registry addresses): a healed link then comes back from whichever side sees it first
    for (const c of this.candidates()) {
      if (!c.preferred || c.peerId === self || c.addrs.length === 0 || connected.has(c.peerId)) continue
      const s = this.peers.get(c.peerId)
      if (s === undefined || s.persisted || s.linked !== true || s.dialing || now < s.nextDial) continue
      if (connected.size + dialing >= this.maxConnections) break
      this.dialState(s, c.addrs.map(a => peerIdOf(multiaddr(a)) === undefined ? `${a}/p2p/${c.peerId}` : a))
      dialing++
    }
    // 2. bootstrap addresses
    for (const b of this.bootstrap) {
      if (b.dialing || now < b.nextDial) continue
      const peer = peerIdOf(multiaddr(b.addr))
      if (peer !== undefined && connected.has(peer)) continue
      b.dialing = true
      this.host.dial(multiaddr(b.addr), { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) })
        .then(() => { b.backoff = REDIAL_MIN_MS })
        .catch(() => { b.backoff = Math.min(b.backoff * 2, REDIAL_MAX_MS) })
        .finally(() => {
          b.dialing = false
          // bootstrap addresses without /p2p/ cannot be checked for an open connection: re-check slowly
          b.nextDial = Date.now() + (peer === undefined ? Math.max(b.backoff, 30_000) : b.backoff)
        })
    }
    this.shuffle(connected)
    // 3. platforms from the registry, up to the target degree
    const candidates = this.candidates().filter(c => c.peerId !== self && c.addrs.length > 0)
    for (const c of candidates) if (c.preferred && connected.has(c.peerId)) this.tag(c.peerId)
    let room = Math.min(this.targetConnections, this.maxConnections) - connected.size - dialing
    if (room <= 0) return
    const regionCount = new Map<string, number>()
    for (const c of candidates) {
      if (connected.has(c.peerId) && c.region !== undefined) regionCount.set(c.region, (regionCount.get(c.region) ?? 0) + 1)
    }
    const eligible = candidates.filter(c => {
      if (connected.has(c.peerId)) return false
      const s = this.peers.get(c.peerId)
      return s === undefined || (!s.dialing && now >= s.nextDial)
    })
    // preferred first, then regions with the fewest connections, then a random spread
    const shuffled = eligible.map(c => ({ c, r: Math.random() }))
    shuffled.sort((x, y) => {
      if (x.c.preferred !== y.c.preferred) return x.c.preferred ? -1 : 1
      const rx = regionCount.get(x.c.region ?? '') ?? 0
      const ry = regionCount.get(y.c.region ?? '') ?? 0
      if (rx !== ry) return rx - ry
      return x.r - y.r
    })
    for (const { c } of shuffled) {
      if (room <= 0) break
      const s = this.state(c.peerId)
      const addrs = c.addrs.map(a => peerIdOf(multiaddr(a)) === undefined ? `${a}/p2p/${c.peerId}` : a)
      this.dialState(s, addrs)
      if (c.region !== undefined) regionCount.set(c.region, (regionCount.get(c.region) ?? 0) + 1)
      room--
    }
  }
}
