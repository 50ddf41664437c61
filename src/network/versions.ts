/**
 * Wire versions of peers: a node that meets a peer speaking another version
 * of the sync or auth protocol says so, naming both, rather than failing
 * obscurely (libp2p's multistream-select only reports that the protocol
 * could not be negotiated).
 *
 * The peer's protocol list comes from libp2p's identify, which a node runs
 * itself (it does not run on connection open, and is answered only once the
 * key is proved: see docs/door.md): right after a peer proved the key, when
 * opening the sync stream fails, and as the dialer when the peer does not
 * speak this node's auth protocol (the peer store otherwise). A peer
 * that lists a protocol of a family (`/syncmesh/sync/…`, `/syncmesh/auth/…`)
 * but not this node's version of it is incompatible; a peer that lists ours
 * (whatever else it lists) is not, nor is one that lists none of the family
 * (not identified yet, or not a syncmesh node).
 *
 * What a peer lists is its own claim: the sync family is judged only for
 * peers that proved the mesh key, the auth family for peers whose
 * authentication failed, so that no outsider can make a node warn about
 * versions beyond what a failed authentication logs anyway.
 */
import { AUTH_PROTOCOL, PROTOCOL_PREFIX, SYNC_PROTOCOL, SYNC_PROTOCOL_STREAMS } from './constants.js'

export interface ProtocolFamily {
  /** e.g. "sync" */
  name: string
  /** This node's protocol id, e.g. /syncmesh/sync/1.0.0 */
  ours: string
  /** Stable error code reported for a peer of another version. */
  code: string
}

export const AUTH_FAMILY: ProtocolFamily = { name: 'auth', ours: AUTH_PROTOCOL, code: 'AUTH_PROTOCOL_MISMATCH' }
export const SYNC_FAMILY: ProtocolFamily = { name: 'sync', ours: SYNC_PROTOCOL, code: 'SYNC_PROTOCOL_MISMATCH' }
export const PROTOCOL_FAMILIES: readonly ProtocolFamily[] = [AUTH_FAMILY, SYNC_FAMILY]
/** The sync family of a node with rule streams (SYNC_PROTOCOL_STREAMS). */
export const SYNC_FAMILY_STREAMS: ProtocolFamily = { name: 'sync', ours: SYNC_PROTOCOL_STREAMS, code: 'SYNC_PROTOCOL_MISMATCH' }
export const PROTOCOL_FAMILIES_STREAMS: readonly ProtocolFamily[] = [AUTH_FAMILY, SYNC_FAMILY_STREAMS]

export interface VersionMismatch {
  code: string
  /** e.g. "sync" */
  protocol: string
  ours: string
  /** The peer's protocol ids of that family. */
  theirs: string[]
  message: string
}

/** `/syncmesh/sync/` for `/syncmesh/sync/1.0.0`. */
export function familyPrefix (id: string): string {
  return id.slice(0, id.lastIndexOf('/') + 1)
}

/**
 * Compare two dotted versions numerically (1.10.0 > 1.9.0); non-numeric parts
 * compare as text. A pre-release (`-` and a tag after the numbers, as in
 * semver) comes before its release: 3.0.0-streams < 3.0.0 < 3.0.1.
 */
export function compareVersions (a: string, b: string): number {
  const [coreA, preA] = splitPreRelease(a)
  const [coreB, preB] = splitPreRelease(b)
  const pa = coreA.split('.')
  const pb = coreB.split('.')
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? '0'
    const y = pb[i] ?? '0'
    const nx = Number(x)
    const ny = Number(y)
    const c = Number.isInteger(nx) && Number.isInteger(ny) ? nx - ny : x.localeCompare(y)
    if (c !== 0) return Math.sign(c)
  }
  if (preA === preB) return 0
  if (preA === undefined) return 1
  if (preB === undefined) return -1
  return preA < preB ? -1 : 1
}

/** `3.0.0-streams` → ['3.0.0', 'streams']; `3.0.0` → ['3.0.0', undefined]. */
function splitPreRelease (version: string): [string, string | undefined] {
  const dash = version.indexOf('-')
  return dash < 0 ? [version, undefined] : [version.slice(0, dash), version.slice(dash + 1)]
}

/** This release's two sync protocols, one on each side: the nodes differ only in their rule streams setting. */
function differsInStreamsOnly (ours: string, theirs: readonly string[]): boolean {
  return (ours === SYNC_PROTOCOL && theirs.includes(SYNC_PROTOCOL_STREAMS)) || (ours === SYNC_PROTOCOL_STREAMS && theirs.includes(SYNC_PROTOCOL))
}

function versionOf (id: string): string {
  return id.slice(id.lastIndexOf('/') + 1)
}

/** The first protocol family in which `theirs` differs from this node, or undefined. */
export function protocolMismatch (peer: string, theirs: readonly string[], families: readonly ProtocolFamily[] = PROTOCOL_FAMILIES): VersionMismatch | undefined {
  for (const f of families) {
    const prefix = familyPrefix(f.ours)
    const same = theirs.filter(p => p.startsWith(prefix))
    if (same.length === 0 || same.includes(f.ours)) continue
    same.sort((a, b) => compareVersions(versionOf(b), versionOf(a)))
    const newest = same[0]
    const base = { code: f.code, protocol: f.name, ours: f.ours, theirs: same }
    if (differsInStreamsOnly(f.ours, same)) {
      // the same release on both sides, one with rule streams: upgrading would change nothing
      const which = f.ours === SYNC_PROTOCOL_STREAMS ? 'this node carries rules by rule streams and the peer does not' : 'the peer carries rules by rule streams and this node does not'
      return { ...base, message: `peer ${peer} speaks ${f.name} protocol ${same.join(', ')}; this node speaks ${f.ours}: ${which}, so they cannot sync; give every node of the mesh the same setting (syncmesh start --streams, config "streams", or SYNCMESH_STREAMS)` }
    }
    const older = compareVersions(versionOf(newest), versionOf(f.ours)) > 0 ? 'this node is the older one: upgrade it' : 'the peer is the older node: upgrade it'
    return { ...base, message: `peer ${peer} speaks ${f.name} protocol ${same.join(', ')}; this node speaks ${f.ours}: they cannot sync until the older node is upgraded (${older})` }
  }
  return undefined
}

/** Peers remembered as incompatible (oldest forgotten first beyond this). */
const MAX_TRACKED = 1024
/** A peer's mismatch is logged again after this long. */
const WARN_AGAIN_MS = 10 * 60_000

/**
 * What this node knows of its peers' wire versions: the incompatible ones,
 * each warned about once (again after WARN_AGAIN_MS), bounded in number.
 */
export class PeerVersions {
  private readonly mismatches = new Map<string, VersionMismatch & { since: string, warnedAt: number }>()
  private readonly warn: (m: VersionMismatch, peer: string) => void

  constructor (warn: (m: VersionMismatch, peer: string) => void) {
    this.warn = warn
  }

  /** Judge `peer` by the protocols it lists (in `families` only); returns its mismatch, if any. */
  check (peer: string, protocols: readonly string[], families: readonly ProtocolFamily[] = PROTOCOL_FAMILIES): VersionMismatch | undefined {
    if (!protocols.some(p => p.startsWith(`/${PROTOCOL_PREFIX}/`))) return this.get(peer)
    const m = protocolMismatch(peer, protocols, families)
    if (m === undefined) {
      this.mismatches.delete(peer)
      return undefined
    }
    const known = this.mismatches.get(peer)
    const now = Date.now()
    if (known !== undefined && known.message === m.message && now - known.warnedAt < WARN_AGAIN_MS) return known
    this.mismatches.delete(peer)
    if (this.mismatches.size >= MAX_TRACKED) this.mismatches.delete(this.mismatches.keys().next().value as string)
    const entry = { ...m, since: known?.message === m.message ? known.since : new Date(now).toISOString(), warnedAt: now }
    this.mismatches.set(peer, entry)
    this.warn(m, peer)
    return entry
  }

  get (peer: string): (VersionMismatch & { since: string }) | undefined {
    return this.mismatches.get(peer)
  }

  isIncompatible (peer: string): boolean {
    return this.mismatches.has(peer)
  }

  get size (): number {
    return this.mismatches.size
  }
}
