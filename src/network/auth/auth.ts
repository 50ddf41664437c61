/**
 * Mesh-key authentication, `/syncmesh/auth/1.0.0` (spec: protocols/auth/).
 *
 * After Noise has authenticated both peer ids, the dialer of a connection
 * runs a mutual HMAC challenge-response over one stream; both sides prove they
 * hold a mesh key without revealing it. Until a connection has passed, the
 * sync protocol refuses it; a connection that has not passed within
 * AUTH_TIMEOUT_MS, or fails, is closed and the peer is refused for a while.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import type { Connection, Libp2p, PeerId, Stream } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import type { Logger } from 'pino'
import { AuthenticationError } from '../../core/errors.js'
import { AUTH_BAN_MS, AUTH_MAX_BANNED, AUTH_MAX_MESSAGE, AUTH_PROTOCOL, AUTH_TIMEOUT_MS, AUTH_WARNINGS_PER_MINUTE, DOOR_MAX_ADDRESSES } from '../constants.js'
import { addressOf } from './door.js'
import type { Door } from './door.js'
import { AuthMessage } from '../../wire/pb/auth.js'

const LABEL_LISTENER = 'syncmesh/auth/1 listener'
const LABEL_DIALER = 'syncmesh/auth/1 dialer'
const NONCE_BYTES = 32
/** Same floor as src/node/constants.ts MIN_MESH_KEY_LENGTH. */
const MIN_KEY_LENGTH = 32
/** Expired refusals are swept this often (and the peer ids forgotten: see MeshAuthInit.onForget). */
const BAN_SWEEP_MS = 5_000

export function authProof (key: string, label: string, dialerNonce: Uint8Array, listenerNonce: Uint8Array, prover: string, verifier: string): Uint8Array<ArrayBuffer> {
  return createHmac('sha256', key)
    .update(label).update('\0')
    .update(dialerNonce).update(listenerNonce)
    .update(prover).update('\0')
    .update(verifier)
    .digest() as Uint8Array<ArrayBuffer>
}

/** The key whose proof equals `proof`, if any. */
function matchingKey (keys: string[], proof: Uint8Array, compute: (key: string) => Uint8Array): string | undefined {
  let match: string | undefined
  for (const key of keys) {
    const expected = compute(key)
    // no early exit: the time taken does not depend on which key matched
    if (expected.byteLength === proof.byteLength && timingSafeEqual(expected, proof) && match === undefined) match = key
  }
  return match
}

/** Validate a key list for MeshAuth: at least one key, trimmed, none shorter than MIN_KEY_LENGTH. */
function checkKeys (keys: string[]): string[] {
  if (!Array.isArray(keys) || keys.length === 0) throw new TypeError('MeshAuth needs at least one mesh key')
  const out = keys.map(k => k.trim())
  if (out.some(k => k.length < MIN_KEY_LENGTH)) throw new TypeError(`every mesh key must be at least ${MIN_KEY_LENGTH} characters`)
  return [...new Set(out)]
}

export interface MeshAuthEvents {
  authenticated: (connection: Connection) => void
  rejected: (peer: PeerId, reason: string) => void
}

export interface MeshAuthInit {
  /** Keys this node accepts; the first is the one it proves. */
  keys: string[]
  logger: Logger
  timeoutMs?: number
  banMs?: number
  onAuthenticated: (connection: Connection) => void
  onRejected?: (peer: PeerId, reason: string) => void
  /**
   * The peer of an outbound connection does not speak this auth protocol
   * (another version, or not a syncmesh node): awaited, with the connection
   * still open, before the failure is reported and the connection closed.
   */
  onAuthUnsupported?: (connection: Connection) => Promise<void>
  /**
   * Admission of inbound connections: told when one proves the key, and
   * which addresses to refuse with a banned peer id.
   */
  door?: Door
  /**
   * Nothing here needs `peer` any more: its refusal has ended, or its last
   * connection closed while it was not refused. What is kept about it may
   * go, unless the node knows it for other reasons.
   */
  onForget?: (peer: string) => void
}

export class MeshAuth {
  private readonly libp2p: Libp2p
  /** Replaced as a whole by setKeys(); each exchange reads it as it goes. */
  private keys: string[]
  private readonly log: Logger
  private readonly timeoutMs: number
  private readonly banMs: number
  private readonly onAuthenticated: MeshAuthInit['onAuthenticated']
  private readonly onRejected?: MeshAuthInit['onRejected']
  private readonly onAuthUnsupported?: MeshAuthInit['onAuthUnsupported']
  private readonly passed = new Set<string>()
  /** Connection id → the key the peer proved on it. */
  private readonly provedWith = new Map<string, string>()
  private readonly timers = new Map<string, ReturnType<typeof setTimeout>>()
  /** Peer id → until when it is refused, oldest refusal first. */
  private readonly banned = new Map<string, number>()
  private readonly door?: Door
  private readonly onForget?: (peer: string) => void
  private sweeper?: ReturnType<typeof setInterval>
  /** Per remote address: auth-failure warnings in the current minute. */
  private readonly warnings = new Map<string, { minute: number, count: number }>()

  constructor (libp2p: Libp2p, init: MeshAuthInit) {
    this.libp2p = libp2p
    this.keys = checkKeys(init.keys)
    this.log = init.logger
    this.timeoutMs = init.timeoutMs ?? AUTH_TIMEOUT_MS
    this.banMs = init.banMs ?? AUTH_BAN_MS
    this.onAuthenticated = init.onAuthenticated
    this.onRejected = init.onRejected
    this.onAuthUnsupported = init.onAuthUnsupported
    this.door = init.door
    this.onForget = init.onForget
  }

  async start (): Promise<void> {
    await this.libp2p.handle(AUTH_PROTOCOL, (stream, connection) => {
      this.respond(stream, connection).catch(() => {})
    }, { maxInboundStreams: 1, runOnLimitedConnection: false })
    this.libp2p.addEventListener('connection:open', this.onOpen)
    this.libp2p.addEventListener('connection:close', this.onClose)
    this.sweeper = setInterval(() => this.sweepBans(), BAN_SWEEP_MS)
    this.sweeper.unref()
  }

  async stop (): Promise<void> {
    this.libp2p.removeEventListener('connection:open', this.onOpen)
    this.libp2p.removeEventListener('connection:close', this.onClose)
    if (this.sweeper !== undefined) clearInterval(this.sweeper)
    for (const t of this.timers.values()) clearTimeout(t)
    this.timers.clear()
    await this.libp2p.unhandle(AUTH_PROTOCOL)
  }

  isAuthenticated (connection: Connection): boolean {
    return this.passed.has(connection.id)
  }

  /**
   * Replace the keys (key rotation): the first is proved from now on, all are
   * accepted. Applies to exchanges that start afterwards; connections that
   * have passed stay up. Returns how many of them were authenticated by a
   * peer proving a key that is no longer accepted.
   */
  setKeys (keys: string[]): { staleConnections: number } {
    const next = checkKeys(keys)
    this.keys = next
    let staleConnections = 0
    for (const [id, key] of this.provedWith) if (this.passed.has(id) && !next.includes(key)) staleConnections++
    return { staleConnections }
  }

  /**
   * Refuse a peer for `ms` (e.g. after repeated forged data) and close its
   * connections; the addresses it connected from are refused as long, so a
   * fresh peer id from there is refused too.
   */
  ban (peer: string, ms: number): void {
    this.refusePeer(peer, Date.now() + ms)
    for (const c of this.libp2p.getConnections()) {
      if (c.remotePeer.toString() !== peer) continue
      this.door?.refuse(addressOf(c.remoteAddr), ms)
      c.close().catch((err: Error) => c.abort(err))
    }
  }

  /** How many peer ids are refused now. */
  get bannedCount (): number {
    return this.banned.size
  }

  private refusePeer (peer: string, until: number): void {
    this.banned.delete(peer)
    this.banned.set(peer, until)
    // bounded: the oldest refusal goes first (its peer is forgotten as if it had ended)
    while (this.banned.size > AUTH_MAX_BANNED) {
      const oldest = this.banned.keys().next().value as string
      this.banned.delete(oldest)
      this.forget(oldest)
    }
  }

  /** End expired refusals and forget their peers, so peer ids that fail once and never return do not pile up. */
  private sweepBans (): void {
    const now = Date.now()
    for (const [peer, until] of this.banned) {
      if (now < until) continue
      this.banned.delete(peer)
      this.forget(peer)
    }
    const minute = Math.floor(now / 60_000)
    for (const [addr, w] of this.warnings) if (w.minute !== minute) this.warnings.delete(addr)
  }

  /** Forget a peer unless it is refused or still connected. */
  private forget (peer: string): void {
    if (this.banned.has(peer)) return
    for (const c of this.libp2p.getConnections()) if (c.status === 'open' && c.remotePeer.toString() === peer) return
    this.onForget?.(peer)
  }

  /** For the connection gater: refuse peers that recently failed. */
  isBanned (peer: string): boolean {
    const until = this.banned.get(peer)
    if (until === undefined) return false
    if (Date.now() >= until) {
      this.banned.delete(peer)
      this.forget(peer)
      return false
    }
    return true
  }

  private readonly onOpen = (evt: CustomEvent<Connection>): void => {
    const connection = evt.detail
    const timer = setTimeout(() => {
      this.timers.delete(connection.id)
      if (!this.passed.has(connection.id)) {
        // not banned: a slow but honest peer may simply be overloaded
        this.fail(connection, `did not prove the mesh key within ${this.timeoutMs} ms`, false)
      }
    }, this.timeoutMs)
    timer.unref()
    this.timers.set(connection.id, timer)
    if (connection.direction === 'outbound') {
      this.initiate(connection).catch(() => {})
    }
  }

  private readonly onClose = (evt: CustomEvent<Connection>): void => {
    const id = evt.detail.id
    // a peer that is not refused is forgotten with its last connection (unless the node knows it: onForget)
    this.forget(evt.detail.remotePeer.toString())
    this.passed.delete(id)
    this.provedWith.delete(id)
    const t = this.timers.get(id)
    if (t !== undefined) clearTimeout(t)
    this.timers.delete(id)
  }

  private succeed (connection: Connection, peerKey: string): void {
    const t = this.timers.get(connection.id)
    if (t !== undefined) clearTimeout(t)
    this.timers.delete(connection.id)
    if (connection.status !== 'open') return // closed meanwhile: onClose has run, do not leak the entry
    this.passed.add(connection.id)
    this.provedWith.set(connection.id, peerKey)
    this.door?.proven(connection)
    this.log.debug({ peer: connection.remotePeer.toString() }, 'peer proved the mesh key')
    this.onAuthenticated(connection)
  }

  private fail (connection: Connection, reason: string, ban = true): void {
    const peer = connection.remotePeer
    this.warn(connection, reason)
    if (ban && this.banMs > 0) this.refusePeer(peer.toString(), Date.now() + this.banMs)
    this.onRejected?.(peer, reason)
    connection.close().catch(() => connection.abort(new AuthenticationError(reason)))
  }

  /**
   * Log a failed authentication: at most AUTH_WARNINGS_PER_MINUTE lines per
   * remote address and minute, then one line saying the rest are not logged.
   */
  private warn (connection: Connection, reason: string): void {
    const peer = connection.remotePeer.toString()
    const addr = addressOf(connection.remoteAddr)
    const minute = Math.floor(Date.now() / 60_000)
    let w = this.warnings.get(addr)
    if (w === undefined || w.minute !== minute) {
      if (this.warnings.size >= DOOR_MAX_ADDRESSES) this.warnings.clear()
      w = { minute, count: 0 }
      this.warnings.set(addr, w)
    }
    w.count++
    if (w.count <= AUTH_WARNINGS_PER_MINUTE) {
      this.log.warn({ peer, addr: connection.remoteAddr.toString(), reason }, `disconnecting peer ${peer}: mesh-key authentication failed: ${reason}`)
    } else if (w.count === AUTH_WARNINGS_PER_MINUTE + 1) {
      this.log.warn({ addr }, `more connections from ${addr} failed mesh-key authentication; not logging them again this minute`)
    } else {
      this.log.debug({ peer, addr: connection.remoteAddr.toString(), reason }, `disconnecting peer ${peer}: mesh-key authentication failed: ${reason}`)
    }
  }

  /** Dialer side. */
  private async initiate (connection: Connection): Promise<void> {
    const signal = AbortSignal.timeout(this.timeoutMs)
    let stream: Stream
    try {
      stream = await connection.newStream(AUTH_PROTOCOL, { signal })
    } catch (err) {
      if ((err as Error).name === 'UnsupportedProtocolError' && connection.status === 'open') await this.onAuthUnsupported?.(connection).catch(() => {})
      if (connection.status === 'open') this.fail(connection, `could not open the auth stream (${(err as Error).message}); is the peer a syncmesh node?`, false)
      return
    }
    const lp = lpStream(stream, { maxDataLength: AUTH_MAX_MESSAGE })
    const self = this.libp2p.peerId.toString()
    const peer = connection.remotePeer.toString()
    try {
      const nd = randomBytes(NONCE_BYTES)
      await lp.write(AuthMessage.encode({ nonce: nd, proof: new Uint8Array(0), error: '', ok: false }), { signal })
      const reply = AuthMessage.decode(await lp.read({ signal }))
      if (reply.error !== '') {
        this.fail(connection, `the peer refused us: ${reply.error}`)
        return
      }
      const keys = this.keys
      const peerKey = reply.nonce.byteLength === NONCE_BYTES ? matchingKey(keys, reply.proof, k => authProof(k, LABEL_LISTENER, nd, reply.nonce, peer, self)) : undefined
      if (peerKey === undefined) {
        await lp.write(AuthMessage.encode({ nonce: new Uint8Array(0), proof: new Uint8Array(0), error: 'your proof matches none of my mesh keys', ok: false }), { signal }).catch(() => {})
        this.fail(connection, 'its proof matches none of our mesh keys (wrong mesh key?)')
        return
      }
      await lp.write(AuthMessage.encode({ nonce: new Uint8Array(0), proof: authProof(keys[0], LABEL_DIALER, nd, reply.nonce, self, peer), error: '', ok: false }), { signal })
      const verdict = AuthMessage.decode(await lp.read({ signal }))
      if (!verdict.ok) {
        this.fail(connection, `the peer refused us: ${verdict.error !== '' ? verdict.error : 'no reason given'} (wrong mesh key?)`)
        return
      }
      await stream.close().catch(() => {})
      this.succeed(connection, peerKey)
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)))
      if (!this.passed.has(connection.id) && connection.status === 'open') this.fail(connection, `auth exchange broke off: ${(err as Error).message ?? String(err)}`, false)
    }
  }

  /** Listener side. */
  private async respond (stream: Stream, connection: Connection): Promise<void> {
    const signal = AbortSignal.timeout(this.timeoutMs)
    const lp = lpStream(stream, { maxDataLength: AUTH_MAX_MESSAGE })
    const self = this.libp2p.peerId.toString()
    const peer = connection.remotePeer.toString()
    // a peer whose first message is malformed, or never comes, is refused (spec §6)
    let helloOk = false
    try {
      const hello = AuthMessage.decode(await lp.read({ signal }))
      if (hello.nonce.byteLength !== NONCE_BYTES) throw new AuthenticationError('malformed auth hello')
      helloOk = true
      const nl = randomBytes(NONCE_BYTES)
      await lp.write(AuthMessage.encode({ nonce: nl, proof: authProof(this.keys[0], LABEL_LISTENER, hello.nonce, nl, self, peer), error: '', ok: false }), { signal })
      const answer = AuthMessage.decode(await lp.read({ signal }))
      if (answer.error !== '') {
        this.fail(connection, `the peer refused us: ${answer.error} (wrong mesh key?)`)
        return
      }
      const peerKey = matchingKey(this.keys, answer.proof, k => authProof(k, LABEL_DIALER, hello.nonce, nl, peer, self))
      if (peerKey === undefined) {
        await lp.write(AuthMessage.encode({ nonce: new Uint8Array(0), proof: new Uint8Array(0), error: 'your proof matches none of my mesh keys', ok: false }), { signal }).catch(() => {})
        this.fail(connection, 'its proof matches none of our mesh keys (wrong mesh key?)')
        return
      }
      this.succeed(connection, peerKey)
      await lp.write(AuthMessage.encode({ nonce: new Uint8Array(0), proof: new Uint8Array(0), error: '', ok: true }), { signal })
      await stream.close().catch(() => {})
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)))
      if (!this.passed.has(connection.id) && connection.status === 'open') this.fail(connection, `auth exchange broke off: ${(err as Error).message ?? String(err)}`, !helloOk)
    }
  }
}
