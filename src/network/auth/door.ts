/**
 * The door: admission of inbound connections that have not proved the mesh
 * key yet (see docs/door.md).
 *
 * An inbound connection is at the door from the moment its socket is
 * accepted (the connection gater's first check) until MeshAuth has seen it
 * prove the key, or it closes. Connections at the door have their own
 * budget, per remote IP address and overall, apart from the connections that
 * have proved the key, so that sockets which never speak, or Noise
 * connections that never authenticate, cannot keep a key holder out:
 *
 *  - an address with `maxPerAddress` connections at the door gets no more;
 *  - when `maxPending` are at the door, a newcomer from an address with fewer
 *    of them there evicts the oldest connection of the address with the most
 *    (so a newcomer always gets in unless its address is itself the busiest);
 *  - a connection that leaves the door without proving the key (handshake or
 *    auth failed or timed out, evicted, refused for its budget) is a failure
 *    of its address; `failureLimit` failures within `failureWindowMs` refuse
 *    the address for `refuseMs`, whatever peer ids it uses. Refusals of a
 *    peer id (a ban, a revocation) are not counted: they are handled per id.
 *
 * Everything remembered per address is bounded (`maxAddresses`, oldest
 * forgotten first).
 */
import type { Connection, MultiaddrConnection } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Logger } from 'pino'
import { DOOR_FAILURE_LIMIT, DOOR_FAILURE_WINDOW_MS, DOOR_MAX_ADDRESSES, DOOR_MAX_PENDING, DOOR_MAX_PER_ADDRESS, DOOR_REFUSE_MS } from '../constants.js'

export interface DoorInit {
  maxPending?: number
  maxPerAddress?: number
  failureLimit?: number
  failureWindowMs?: number
  refuseMs?: number
  maxAddresses?: number
  logger?: Logger
}

export interface DoorStats {
  /** Inbound connections at the door now (accepted, key not proved yet). */
  pending: number
  /** Remote addresses refused now after repeated failures or a ban. */
  refusedAddresses: number
  /** Connections turned away at the door since start (refused address, budget, eviction). */
  turnedAway: number
}

interface Entry {
  addr: string
  since: number
  close: (reason: string) => void
  /** Left the door by proving the key. */
  proven: boolean
  /** Refused for its peer id (ban, revocation), or a peer id the node knows: not the address's failure. */
  identityRefused: boolean
}

/** The IP address of a multiaddr (its string form when it has none). */
export function addressOf (ma: Multiaddr): string {
  for (const c of ma.getComponents()) {
    if ((c.name === 'ip4' || c.name === 'ip6') && c.value !== undefined) return c.value
  }
  return ma.toString()
}

export class Door {
  private readonly maxPending: number
  private readonly maxPerAddress: number
  private readonly failureLimit: number
  private readonly failureWindowMs: number
  private readonly refuseMs: number
  private readonly maxAddresses: number
  private readonly log?: Logger
  /** Connections at the door, oldest first, keyed by their timeline (shared by a MultiaddrConnection and its Connection). */
  private readonly pending = new Map<object, Entry>()
  private readonly perAddress = new Map<string, number>()
  private readonly failures = new Map<string, { count: number, since: number }>()
  private readonly refused = new Map<string, number>()
  private turnedAway = 0

  constructor (init: DoorInit = {}) {
    this.maxPending = init.maxPending ?? DOOR_MAX_PENDING
    this.maxPerAddress = init.maxPerAddress ?? DOOR_MAX_PER_ADDRESS
    this.failureLimit = init.failureLimit ?? DOOR_FAILURE_LIMIT
    this.failureWindowMs = init.failureWindowMs ?? DOOR_FAILURE_WINDOW_MS
    this.refuseMs = init.refuseMs ?? DOOR_REFUSE_MS
    this.maxAddresses = init.maxAddresses ?? DOOR_MAX_ADDRESSES
    this.log = init.logger
  }

  /** Most connections at the door at once (libp2p's own limits are set above it). */
  get capacity (): number {
    return this.maxPending
  }

  stats (): DoorStats {
    const now = Date.now()
    let refusedAddresses = 0
    for (const until of this.refused.values()) if (until > now) refusedAddresses++
    return { pending: this.pending.size, refusedAddresses, turnedAway: this.turnedAway }
  }

  /**
   * A socket was accepted (connection gater, before Noise). Returns whether
   * it may go on; if it may, it is at the door until it proves the key or closes.
   */
  admit (maConn: MultiaddrConnection): boolean {
    const addr = addressOf(maConn.remoteAddr)
    if (this.isRefused(addr)) {
      this.turnedAway++
      return false
    }
    const here = this.perAddress.get(addr) ?? 0
    if (here >= this.maxPerAddress) {
      this.turnedAway++
      this.failure(addr)
      return false
    }
    if (this.pending.size >= this.maxPending && !this.evictFor(here)) {
      this.turnedAway++
      return false
    }
    const entry: Entry = {
      addr,
      since: Date.now(),
      close: (reason) => maConn.abort(new Error(reason)),
      proven: false,
      identityRefused: false
    }
    const key = maConn.timeline
    this.pending.set(key, entry)
    this.perAddress.set(addr, here + 1)
    maConn.addEventListener('close', () => this.leave(key, entry), { once: true })
    return true
  }

  /** The connection was refused for its peer id (ban, revocation): it leaves without counting against its address. */
  identityRefused (maConn: MultiaddrConnection): void {
    const entry = this.pending.get(maConn.timeline)
    if (entry !== undefined) entry.identityRefused = true
  }

  /**
   * Noise showed the connection comes from a peer id the node knows (an
   * operator-added peer, a registry platform): if it fails, that is not held
   * against its address (members behind one address must not lock each
   * other out when an overloaded node times out).
   */
  knownPeer (maConn: MultiaddrConnection): void {
    this.identityRefused(maConn)
  }

  /** The connection proved the mesh key: it leaves the door. */
  proven (connection: Connection): void {
    const entry = this.pending.get(connection.timeline)
    if (entry === undefined) return
    entry.proven = true
    this.leave(connection.timeline, entry)
  }

  /** Refuse an address for `ms` (e.g. with a peer id banned for invalid data). */
  refuse (addr: string, ms: number): void {
    const until = Date.now() + ms
    if ((this.refused.get(addr) ?? 0) >= until) return
    this.refused.delete(addr)
    this.refused.set(addr, until)
    this.trim(this.refused)
    // its connections still at the door go now
    for (const e of [...this.pending.values()]) if (e.addr === addr) e.close('address refused')
  }

  isRefused (addr: string): boolean {
    const until = this.refused.get(addr)
    if (until === undefined) return false
    if (Date.now() < until) return true
    this.refused.delete(addr)
    return false
  }

  /** Count a failure of `addr`; refuse it once it has failed too often. */
  failure (addr: string): void {
    const now = Date.now()
    let f = this.failures.get(addr)
    if (f === undefined || now - f.since > this.failureWindowMs) {
      this.failures.delete(addr)
      f = { count: 0, since: now }
      this.failures.set(addr, f)
      this.trim(this.failures)
    }
    if (++f.count < this.failureLimit) return
    this.failures.delete(addr)
    if (!this.isRefused(addr)) {
      this.log?.warn({ addr, failures: f.count, refuseMs: this.refuseMs }, `refusing connections from ${addr} for ${Math.round(this.refuseMs / 1000)} s: ${f.count} connections from it failed to prove the mesh key within ${Math.round(this.failureWindowMs / 1000)} s`)
    }
    this.refuse(addr, this.refuseMs)
  }

  /**
   * Close a connection of the address with the most at the door, if it has
   * more than `here`: among such addresses, the oldest connection (so a
   * newcomer is never the one evicted by the next arrival while it is being
   * let in).
   */
  private evictFor (here: number): boolean {
    let most = here
    for (const n of this.perAddress.values()) if (n > most) most = n
    if (most === here) return false
    for (const [key, e] of this.pending) {
      if (this.perAddress.get(e.addr) !== most) continue
      // account for it now: its close event may come later
      this.leave(key, e)
      e.close('evicted: too many connections at the door')
      return true
    }
    return false
  }

  private leave (key: object, entry: Entry): void {
    if (this.pending.get(key) !== entry) return
    this.pending.delete(key)
    const n = (this.perAddress.get(entry.addr) ?? 1) - 1
    if (n <= 0) this.perAddress.delete(entry.addr)
    else this.perAddress.set(entry.addr, n)
    if (!entry.proven && !entry.identityRefused) this.failure(entry.addr)
  }

  /** Keep at most maxAddresses entries: expired ones go first, then the oldest. */
  private trim (map: Map<string, unknown>): void {
    if (map.size <= this.maxAddresses) return
    const now = Date.now()
    if (map === this.refused) for (const [a, until] of this.refused) if (until <= now) this.refused.delete(a)
    if (map === this.failures) for (const [a, f] of this.failures) if (now - f.since > this.failureWindowMs) this.failures.delete(a)
    for (const a of map.keys()) {
      if (map.size <= this.maxAddresses) break
      map.delete(a)
    }
  }
}
