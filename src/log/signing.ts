/**
 * Signed runs: every entry is covered by its origin's Ed25519 signature, one
 * signature per run of entries (not per entry: a verification costs
 * ~0.15 ms here).
 *
 * A run is a contiguous seq range (from, to] of one origin's log, written
 * together. Its leaves are the SHA-256 hashes of the entries' canonical
 * protobuf encodings, in seq order; the origin signs the Merkle root:
 *
 *   leaf(e)      = SHA-256("syncmesh/leaf/1\0" ‖ Entry bytes)
 *   node(l, r)   = SHA-256(0x01 ‖ l ‖ r); an odd last node is promoted as is
 *   signed bytes = "syncmesh/run/1\0" ‖ origin ‖ "\0" ‖ u64be(from) ‖ u64be(to) ‖ root
 *
 * `origin` is the log's id (log-id.ts): a peer id for a peer's whole log,
 * `<peer id>/<stream>` for one of its streams. The key that signs is the
 * peer id's; the whole log id is in the signed bytes (here and in the
 * version 2 attestations below), so a run of one stream cannot be presented
 * as another stream's, nor as the whole log's.
 *
 * Compaction drops superseded entries; their run certificate then keeps
 * ("prunes to") the hashes of the largest subtrees without surviving entries,
 * so the survivors stay verifiable with O(survivors × log run) hashes, and a
 * run whose entries are all gone is deleted with them.
 */
import * as crypto from 'node:crypto'
import { createHash, createPrivateKey, createPublicKey, sign as edSign, verify as edVerify } from 'node:crypto'
import type { KeyObject } from 'node:crypto'
import { peerIdFromString } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { SyncmeshError } from '../core/errors.js'
import { RunCert } from '../wire/pb/sync.js'
import type { LogEntry } from './entry.js'
import { encodeEntry } from './entry.js'
import { LogIdError, parseLogId, peerOf } from './log-id.js'

export interface PrunedNode {
  level: number
  index: number
  hash: Uint8Array
}

export interface Cert {
  from: number
  to: number
  sig: Uint8Array
  pruned: PrunedNode[]
}

/** A signature or proof that does not check out. */
export class SignatureError extends SyncmeshError {
  constructor (message: string) {
    super('SIGNATURE_INVALID', message, 400)
    this.name = 'SignatureError'
  }
}

/** Longest run a certificate may cover. */
export const MAX_RUN_LENGTH = 1 << 20
/** Local writes are cut into runs of at most this many entries / bytes. */
export const RUN_MAX_ENTRIES = 512
export const RUN_MAX_BYTES = 512 * 1024

const LEAF_PREFIX = Buffer.from('syncmesh/leaf/1\0')
const RUN_PREFIX = Buffer.from('syncmesh/run/1\0')

// One-shot SHA-256 (Node >= 20.12) skips a Hash object per call: leaves and
// nodes are hashed for every entry sent or received.
const oneShot = (crypto as { hash?: (algorithm: string, data: Uint8Array, encoding: 'binary') => string }).hash

/**
 * Hashes inside the tree are digests held as 32-character latin1 strings:
 * a one-shot SHA-256 that returns a Buffer costs ~1.0 µs here, one that
 * returns a string ~0.4 (the Buffer's own ArrayBuffer is most of it), and
 * every entry sent or received takes two. Only roots and pruned nodes cross
 * into bytes.
 */
type Digest = string
const DIGEST_LENGTH = 32

function digestOf (data: Uint8Array): Digest {
  // 'binary' is Node's other name for latin1: one character per byte
  if (oneShot !== undefined) return oneShot('sha256', data, 'binary')
  return createHash('sha256').update(data).digest('binary')
}

const fromDigest = (d: Digest): Buffer => Buffer.from(d, 'latin1')
const toDigest = (b: Uint8Array): Digest => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1')

/**
 * What is hashed is assembled in buffers kept for the purpose (hashing is
 * synchronous, so one of each suffices): a node's 65 bytes, a leaf's prefix
 * and entry.
 */
const NODE_INPUT = Buffer.alloc(1 + 2 * DIGEST_LENGTH)
NODE_INPUT[0] = 1
let leafInput = Buffer.alloc(4096)
LEAF_PREFIX.copy(leafInput)

/** Entries up to this size are hashed in the kept buffer (which grows to it); larger ones in their own. */
const LEAF_INPUT_MAX = 64 * 1024

function leafDigest (entryBytes: Uint8Array): Digest {
  const length = LEAF_PREFIX.byteLength + entryBytes.byteLength
  if (length > LEAF_INPUT_MAX) return digestOf(Buffer.concat([LEAF_PREFIX, entryBytes]))
  if (length > leafInput.byteLength) {
    leafInput = Buffer.alloc(Math.min(LEAF_INPUT_MAX, Math.max(length, 2 * leafInput.byteLength)))
    LEAF_PREFIX.copy(leafInput)
  }
  leafInput.set(entryBytes, LEAF_PREFIX.byteLength)
  return digestOf(leafInput.subarray(0, length))
}

export function leafHash (entryBytes: Uint8Array): Uint8Array {
  return fromDigest(leafDigest(entryBytes))
}

/** Digests are 32 bytes (certificates' pruned hashes are checked on receipt); anything else is hashed as given. */
function nodeDigest (left: Digest, right: Digest): Digest {
  if (left.length !== DIGEST_LENGTH || right.length !== DIGEST_LENGTH) return digestOf(Buffer.concat([NODE_INPUT.subarray(0, 1), fromDigest(left), fromDigest(right)]))
  NODE_INPUT.write(left, 1, 'latin1')
  NODE_INPUT.write(right, 1 + DIGEST_LENGTH, 'latin1')
  return digestOf(NODE_INPUT)
}

function nodeHash (left: Uint8Array, right: Uint8Array): Uint8Array {
  return fromDigest(nodeDigest(toDigest(left), toDigest(right)))
}

/** Width of each level of the tree over n leaves, bottom (n) to top (1). */
export function levelWidths (n: number): number[] {
  const widths = [n]
  while (widths[widths.length - 1] > 1) widths.push(Math.ceil(widths[widths.length - 1] / 2))
  return widths
}

const nodeKey = (level: number, index: number): number => level * 2 ** 32 + index

/**
 * Root of a run of n leaves from the leaves present and the pruned subtrees;
 * undefined unless they account for every leaf position exactly once (see
 * exactRootDigest).
 */
export function merkleRoot (n: number, leaves: Map<number, Uint8Array>, pruned: PrunedNode[]): Uint8Array | undefined {
  const digests = new Map<number, Digest>()
  for (const [i, leaf] of [...leaves].sort((a, b) => a[0] - b[0])) digests.set(i, toDigest(leaf))
  const root = exactRootDigest(n, digests, pruned)
  return root === undefined ? undefined : fromDigest(root)
}

/** Root over all n leaves, every one present (signing). */
function fullRootDigest (n: number, leaves: Map<number, Digest>): Digest | undefined {
  return walkRoot(n, leaves, new Map())
}

function walkRoot (n: number, leaves: Map<number, Digest>, prunedMap: Map<number, Digest>): Digest | undefined {
  const widths = levelWidths(n)
  const node = (level: number, index: number): Digest | undefined => {
    const p = prunedMap.size === 0 ? undefined : prunedMap.get(nodeKey(level, index))
    if (p !== undefined) return p
    if (level === 0) return leaves.get(index)
    const left = node(level - 1, 2 * index)
    if (2 * index + 1 >= widths[level - 1] || left === undefined) return left // a missing leaf: stop walking
    const right = node(level - 1, 2 * index + 1)
    if (right === undefined) return undefined
    return nodeDigest(left, right)
  }
  return node(widths.length - 1, 0)
}

/**
 * Why the present leaves (indices, in increasing order: the keys of
 * `leaves` in insertion order) and the pruned nodes of a run of n leaves do
 * not describe the run exactly, or undefined when they do: every pruned node
 * lies inside the tree below the root (a pruned root would stand for the whole
 * run, entries included), its hash is 32 bytes, no two pruned nodes are the
 * same or overlap, no pruned node covers a present leaf, and every leaf
 * position is either present or under exactly one pruned node. A node
 * (level l, index i) covers leaves [i·2^l, min((i+1)·2^l, n)) (an odd last
 * node is promoted with its index halved, so this holds at every level).
 * O(pruned × log pruned + present).
 */
export function prunedProblem (n: number, leaves: Iterable<number>, pruned: PrunedNode[]): string | undefined {
  if (!Number.isSafeInteger(n) || n < 1) return `a run of ${n} entries`
  const widths = levelWidths(n)
  const top = widths.length - 1
  const spans: Array<[number, number]> = new Array(pruned.length)
  for (let k = 0; k < pruned.length; k++) {
    const p = pruned[k]
    if (!Number.isInteger(p.level) || p.level < 0 || p.level >= top) return `pruned node at level ${p.level} (the tree's root is level ${top}; the root may not be pruned)`
    if (!Number.isInteger(p.index) || p.index < 0 || p.index >= widths[p.level]) return `pruned node (${p.level}, ${p.index}) outside the tree (level ${p.level} has ${widths[p.level]} nodes)`
    if (p.hash.byteLength !== DIGEST_LENGTH) return `pruned node (${p.level}, ${p.index}) has a ${p.hash.byteLength}-byte hash`
    const lo = p.index * 2 ** p.level
    spans[k] = [lo, Math.min(lo + 2 ** p.level, n)]
  }
  if (spans.length > 1) spans.sort((a, b) => a[0] - b[0])
  let pos = 0
  let s = 0
  for (const leaf of leaves) {
    while (s < spans.length && spans[s][0] === pos) pos = spans[s++][1]
    if (s < spans.length && spans[s][0] < pos) return `pruned nodes overlap at leaf ${spans[s][0]}`
    if (leaf < pos) return `leaf ${leaf} is present and also pruned, or out of order`
    if (leaf > pos) return `leaf ${pos} is neither present nor pruned`
    pos = leaf + 1
  }
  while (s < spans.length && spans[s][0] === pos) pos = spans[s++][1]
  if (s < spans.length) return spans[s][0] < pos ? `pruned nodes overlap at leaf ${spans[s][0]}` : `leaf ${pos} is neither present nor pruned`
  if (pos !== n) return `leaf ${pos} is neither present nor pruned`
  return undefined
}

/**
 * The root of a run from its present leaves and pruned nodes, only when
 * they account for the run exactly (prunedProblem): a pruned hash stands for
 * leaves that are not present, never for one that is, never for the root.
 */
function exactRootDigest (n: number, leaves: Map<number, Digest>, pruned: PrunedNode[]): Digest | undefined {
  if (pruned.length === 0) return leaves.size === n ? walkRoot(n, leaves, new Map()) : undefined
  if (prunedProblem(n, leaves.keys(), pruned) !== undefined) return undefined
  const prunedMap = new Map<number, Digest>()
  for (const p of pruned) prunedMap.set(nodeKey(p.level, p.index), toDigest(p.hash))
  return walkRoot(n, leaves, prunedMap)
}

/**
 * Record that the leaf at `index` (hash `leaf`) is gone, merging pruned
 * siblings upwards. Returns the new pruned set and whether the whole run is
 * now pruned (no entry of it survives).
 */
export function pruneLeaf (n: number, pruned: PrunedNode[], index: number, leaf: Uint8Array): { pruned: PrunedNode[], empty: boolean } {
  const widths = levelWidths(n)
  const top = widths.length - 1
  const map = new Map<number, PrunedNode>()
  for (const p of pruned) map.set(nodeKey(p.level, p.index), p)
  let level = 0
  let idx = index
  let hash = leaf
  map.set(nodeKey(level, idx), { level, index: idx, hash })
  while (level < top) {
    const sib = idx ^ 1
    let parent: Uint8Array
    if (sib < widths[level]) {
      const s = map.get(nodeKey(level, sib))
      if (s === undefined) break
      parent = (idx & 1) === 0 ? nodeHash(hash, s.hash) : nodeHash(s.hash, hash)
      map.delete(nodeKey(level, sib))
    } else {
      parent = hash // promoted odd node
    }
    map.delete(nodeKey(level, idx))
    level++
    idx >>= 1
    hash = parent
    map.set(nodeKey(level, idx), { level, index: idx, hash })
  }
  return { pruned: [...map.values()], empty: map.has(nodeKey(top, 0)) }
}

function u64 (n: number): Buffer {
  const b = Buffer.alloc(8)
  b.writeBigUInt64BE(BigInt(n))
  return b
}

function signedBytes (origin: string, from: number, to: number, root: Uint8Array): Buffer {
  return Buffer.concat([RUN_PREFIX, Buffer.from(origin), Buffer.from([0]), u64(from), u64(to), root])
}

function signingKey (privateKey: PrivateKey | KeyObject): KeyObject {
  if (!('raw' in privateKey)) return privateKey
  if (privateKey.type !== 'Ed25519') throw new SyncmeshError('KEY_UNSUPPORTED', 'the node identity must be an Ed25519 key', 500)
  const raw = privateKey.raw
  return createPrivateKey({
    key: { kty: 'OKP', crv: 'Ed25519', d: Buffer.from(raw.subarray(0, 32)).toString('base64url'), x: Buffer.from(raw.subarray(32, 64)).toString('base64url') },
    format: 'jwk'
  })
}

/** `origin`, a log of `peer` (log-id.ts): a signer signs only logs of the peer it signs for. Throws LogIdError. */
function ownLog (peer: string, origin: string): string {
  if (parseLogId(origin).peer !== peer) throw new LogIdError(`log ${origin.slice(0, 140)} is not a log of ${peer}: a signer signs only logs of its own peer`)
  return origin
}

/** Signs runs of this node's own log (`origin`: its peer id, or one of its stream logs' ids). */
export class RunSigner {
  private readonly key: KeyObject
  readonly origin: string

  constructor (privateKey: PrivateKey | KeyObject, origin: string) {
    this.key = signingKey(privateKey)
    this.origin = ownLog(peerOf(origin), origin)
  }

  /** The signer of another log of the same peer (a stream log, log-id.ts): same key, that log's id in what is signed. */
  forLog (origin: string): RunSigner {
    return new RunSigner(this.key, ownLog(peerOf(this.origin), origin))
  }

  /** Sign entries (seq from+1 … to, contiguous) as one run; fills `bytes` and `leaf` on each entry. */
  sign (from: number, to: number, entries: LogEntry[]): Cert {
    const leaves = new Map<number, Digest>()
    for (const e of entries) {
      e.bytes ??= encodeEntry(e)
      e.leaf ??= leafDigest(e.bytes)
      leaves.set(e.seq - from - 1, e.leaf)
    }
    const root = fullRootDigest(to - from, leaves)
    if (root === undefined || leaves.size !== to - from) throw new Error('a run must contain every seq of its range')
    return { from, to, sig: edSign(null, signedBytes(this.origin, from, to, fromDigest(root)), this.key), pruned: [] }
  }
}

const publicKeys = new Map<string, KeyObject>()
const MAX_CACHED_KEYS = 100_000

/** The key that verifies log `origin`'s runs: its peer id part's (log-id.ts). */
export function publicKeyOf (origin: string): KeyObject {
  const peer = peerOf(origin)
  let key = publicKeys.get(peer)
  if (key !== undefined) {
    if (peer !== origin) checkLogId(origin)
    return key
  }
  let raw: Uint8Array
  try {
    parseLogId(origin)
    const id = peerIdFromString(peer)
    if (id.type !== 'Ed25519' || id.publicKey === undefined) throw new Error('not an Ed25519 peer id')
    raw = id.publicKey.raw
  } catch (err) {
    throw new SignatureError(`origin ${origin.slice(0, 60)} is not an Ed25519 peer id: ${(err as Error).message}`)
  }
  key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(raw).toString('base64url') }, format: 'jwk' })
  if (publicKeys.size >= MAX_CACHED_KEYS) publicKeys.clear()
  publicKeys.set(peer, key)
  return key
}

function checkLogId (origin: string): void {
  try {
    parseLogId(origin)
  } catch (err) {
    throw new SignatureError(`origin ${origin.slice(0, 140)} is not an Ed25519 peer id: ${(err as Error).message}`)
  }
}

/**
 * Verify a batch of one origin's entries against the run certificates sent
 * with it: every entry must lie in a certificate, and every certificate's
 * surviving entries must all be present and reproduce the signed root.
 * Fills `bytes` and `leaf` on each entry. Throws SignatureError.
 */
export function verifyRuns (origin: string, entries: LogEntry[], certs: Cert[], range?: { from: number, to: number }): void {
  const key = publicKeyOf(origin)
  if (range !== undefined) {
    // The newest run of a log always keeps an entry (nothing supersedes the
    // newest write), so an honest batch ends where a signed run ends. Runs
    // inside the range whose entries were all compacted need no certificate.
    const end = certs.length > 0 ? certs[certs.length - 1].to : range.from
    if (end !== range.to) throw new SignatureError(`batch (${range.from}, ${range.to}] of ${origin} claims seqs beyond its signed runs (which end at ${end})`)
  }
  let ci = 0
  let i = 0
  while (i < entries.length || ci < certs.length) {
    const cert = certs[ci]
    if (cert === undefined) throw new SignatureError(`entry ${entries[i].seq} of ${origin} is not covered by any signed run`)
    if (!(Number.isSafeInteger(cert.from) && Number.isSafeInteger(cert.to) && cert.from >= 0 && cert.to > cert.from && cert.to - cert.from <= MAX_RUN_LENGTH)) throw new SignatureError(`run (${cert.from}, ${cert.to}] of ${origin} is not a valid range`)
    if (ci > 0 && cert.from < certs[ci - 1].to) throw new SignatureError(`runs (${certs[ci - 1].from}, ${certs[ci - 1].to}] and (${cert.from}, ${cert.to}] of ${origin} overlap or are out of order`)
    if (range !== undefined && (cert.from < range.from || cert.to > range.to)) throw new SignatureError(`run (${cert.from}, ${cert.to}] of ${origin} lies outside the batch (${range.from}, ${range.to}]`)
    if (i < entries.length && entries[i].seq <= cert.from) throw new SignatureError(`entry ${entries[i].seq} of ${origin} is not covered by any signed run`)
    const leaves = new Map<number, Digest>()
    const first = i
    while (i < entries.length && entries[i].seq <= cert.to) {
      const e = entries[i++]
      e.bytes ??= encodeEntry(e)
      e.leaf ??= leafDigest(e.bytes)
      leaves.set(e.seq - cert.from - 1, e.leaf)
    }
    const root = exactRootDigest(cert.to - cert.from, leaves, cert.pruned)
    if (root === undefined) {
      const why = prunedProblem(cert.to - cert.from, leaves.keys(), cert.pruned) ?? 'an entry is missing or was added'
      throw new SignatureError(`run (${cert.from}, ${cert.to}] of ${origin} is not accounted for exactly: ${why}`)
    }
    if (!edVerify(null, signedBytes(origin, cert.from, cert.to, fromDigest(root)), key, cert.sig) && !verifyCanonical(origin, key, cert, entries.slice(first, i))) {
      throw new SignatureError(`run (${cert.from}, ${cert.to}] of ${origin} does not match its origin's signature: the entries were altered, reordered or forged`)
    }
    ci++
  }
}

/**
 * Entries are hashed as received; a peer whose protobuf encoder orders or
 * pads fields differently sends the same entries in other bytes. Retry with
 * the canonical encoding (which is what the origin signed) and keep it.
 */
function verifyCanonical (origin: string, key: KeyObject, cert: Cert, run: LogEntry[]): boolean {
  const leaves = new Map<number, Digest>()
  const canonical = run.map(e => encodeEntry(e))
  if (canonical.every((b, k) => Buffer.compare(b, run[k].bytes ?? b) === 0)) return false // already canonical: really forged
  canonical.forEach((b, k) => leaves.set(run[k].seq - cert.from - 1, leafDigest(b)))
  const root = exactRootDigest(cert.to - cert.from, leaves, cert.pruned)
  if (root === undefined || !edVerify(null, signedBytes(origin, cert.from, cert.to, fromDigest(root)), key, cert.sig)) return false
  run.forEach((e, k) => {
    e.bytes = canonical[k]
    e.leaf = leaves.get(e.seq - cert.from - 1)
  })
  return true
}

export function encodeCert (c: Cert): Uint8Array {
  return RunCert.encode({ fromSeq: c.from, toSeq: c.to, sig: c.sig as Uint8Array<ArrayBuffer>, pruned: c.pruned.map(p => ({ level: p.level, index: p.index, hash: p.hash as Uint8Array<ArrayBuffer> })) })
}

export function decodeCert (bytes: Uint8Array): Cert {
  const c = RunCert.decode(bytes)
  return { from: c.fromSeq, to: c.toSeq, sig: c.sig, pruned: c.pruned.map(p => ({ level: p.level, index: p.index, hash: p.hash })) }
}

// ---- version 2: attested runs (protocols/sync/completeness.md) -------------------
//
// The verification core of sync protocol version 2: the origin attests which
// entries of a run are still live as of a seq of its log (a bitmap under the
// run's root), or that nothing of a span is; a batch's certificates tile its
// range, and the receiver recomputes the bitmap from the entries it got. Not
// yet on the wire: version 1 (above) is what sessions speak.

const RUN2_PREFIX = Buffer.from('syncmesh/run/2\0')
const GONE2_PREFIX = Buffer.from('syncmesh/gone/2\0')

/** An origin's attestation of run (from, to] as of `asOf`: its live entries (a live run), or none (a gone span). */
export interface AttestedCert {
  from: number
  to: number
  /** The seq of the origin's log the attestation speaks of (≥ to). */
  asOf: number
  sig: Uint8Array
  /** As in version 1: subtrees of the run without live entries (live runs only). */
  pruned: PrunedNode[]
  /** A span of which nothing is live as of `asOf` (no root, no entries). */
  gone: boolean
  /** The live positions as a bitmap: carried by updates, which come without entries. */
  live?: Uint8Array
}

/** bitmap(R, c): bit i (byte i >> 3, bit i & 7) set iff position i is live; ⌈n/8⌉ bytes. */
export function liveBitmap (n: number, live: Iterable<number>): Uint8Array {
  const bits = new Uint8Array(Math.ceil(n / 8))
  for (const i of live) bits[i >> 3] |= 1 << (i & 7)
  return bits
}

/** The live positions of a bitmap of a run of n leaves; undefined when it is not one (length, bits beyond n). */
export function livePositions (n: number, bitmap: Uint8Array): number[] | undefined {
  if (bitmap.byteLength !== Math.ceil(n / 8)) return undefined
  const out: number[] = []
  for (let i = 0; i < bitmap.byteLength * 8; i++) {
    if ((bitmap[i >> 3] & (1 << (i & 7))) === 0) continue
    if (i >= n) return undefined
    out.push(i)
  }
  return out
}

function sha256 (data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest()
}

function attestedBytes (origin: string, from: number, to: number, asOf: number, root: Uint8Array, bitmap: Uint8Array): Buffer {
  return Buffer.concat([RUN2_PREFIX, Buffer.from(origin), Buffer.from([0]), u64(from), u64(to), u64(asOf), root, sha256(bitmap)])
}

function goneBytes (origin: string, from: number, to: number, asOf: number): Buffer {
  return Buffer.concat([GONE2_PREFIX, Buffer.from(origin), Buffer.from([0]), u64(from), u64(to), u64(asOf)])
}

/** What the origin signs in version 2 (a RunSigner's key; `origin` as there). */
export class Attester {
  private readonly key: KeyObject
  readonly origin: string

  constructor (privateKey: PrivateKey | KeyObject, origin: string) {
    this.key = signingKey(privateKey)
    this.origin = ownLog(peerOf(origin), origin)
  }

  /** The attester of another log of the same peer (see RunSigner.forLog). */
  forLog (origin: string): Attester {
    return new Attester(this.key, ownLog(peerOf(this.origin), origin))
  }

  /** A freshly written run: attested as of its end, every entry live. Fills `bytes` and `leaf`; returns the run's root too. */
  run (from: number, to: number, entries: LogEntry[]): { cert: AttestedCert, root: Uint8Array } {
    const leaves = new Map<number, Digest>()
    for (const e of entries) {
      e.bytes ??= encodeEntry(e)
      e.leaf ??= leafDigest(e.bytes)
      leaves.set(e.seq - from - 1, e.leaf)
    }
    const root = fullRootDigest(to - from, leaves)
    if (root === undefined || leaves.size !== to - from) throw new Error('a run must contain every seq of its range')
    const rootBytes = fromDigest(root)
    const all = Array.from({ length: to - from }, (_, i) => i)
    return { cert: this.live(from, to, to, rootBytes, all, []), root: rootBytes }
  }

  /** Run (from, to] (root `root`) as of `asOf`: `live` are the positions still live, `pruned` the subtrees without them. */
  live (from: number, to: number, asOf: number, root: Uint8Array, live: Iterable<number>, pruned: PrunedNode[]): AttestedCert {
    const bitmap = liveBitmap(to - from, live)
    return { from, to, asOf, sig: edSign(null, attestedBytes(this.origin, from, to, asOf, root, bitmap), this.key), pruned, gone: false, live: bitmap }
  }

  /** Nothing of (from, to] is live as of `asOf`. */
  gone (from: number, to: number, asOf: number): AttestedCert {
    return { from, to, asOf, sig: edSign(null, goneBytes(this.origin, from, to, asOf), this.key), pruned: [], gone: true }
  }
}

/**
 * Verify a version 2 batch of one origin (protocols/sync/completeness.md
 * §5): the certificates tile (range.from, range.to]; a gone span holds no
 * entry and carries the origin's gone signature; a live run's present
 * entries and pruned nodes account for it exactly, and the origin signed
 * the bitmap of exactly the positions present. So every entry the origin
 * attested live is in the batch, and only those. Fills `bytes` and `leaf`
 * on each entry; returns each certificate's run root (undefined for a gone
 * span), which the receiver keeps to check later updates. Throws
 * SignatureError.
 */
export function verifyAttestedRuns (origin: string, entries: LogEntry[], certs: AttestedCert[], range: { from: number, to: number }): Array<Uint8Array | undefined> {
  const key = publicKeyOf(origin)
  const roots: Array<Uint8Array | undefined> = []
  let at = range.from
  let i = 0
  if (certs.length === 0) throw new SignatureError(`batch (${range.from}, ${range.to}] of ${origin} has no certificates`)
  for (const cert of certs) {
    const where = `run (${cert.from}, ${cert.to}] of ${origin}`
    if (cert.from !== at) throw new SignatureError(`${where} does not start where the batch's previous certificate ends (${at}): the certificates must tile (${range.from}, ${range.to}]`)
    if (!(Number.isSafeInteger(cert.to) && cert.to > cert.from && Number.isSafeInteger(cert.asOf) && cert.asOf >= cert.to)) throw new SignatureError(`${where} as of ${cert.asOf} is not a valid attestation`)
    if (!cert.gone && cert.to - cert.from > MAX_RUN_LENGTH) throw new SignatureError(`${where} is longer than ${MAX_RUN_LENGTH}`)
    at = cert.to
    if (cert.gone) {
      if (i < entries.length && entries[i].seq <= cert.to) throw new SignatureError(`${where} is attested gone but the batch holds entry ${entries[i].seq} of it`)
      if (cert.pruned.length > 0) throw new SignatureError(`${where} is attested gone and has pruned nodes`)
      if (!edVerify(null, goneBytes(origin, cert.from, cert.to, cert.asOf), key, cert.sig)) throw new SignatureError(`${where} is not attested gone by its origin`)
      roots.push(undefined)
      continue
    }
    const run: LogEntry[] = []
    const leaves = new Map<number, Digest>()
    while (i < entries.length && entries[i].seq <= cert.to) {
      const e = entries[i++]
      if (e.seq <= cert.from) throw new SignatureError(`entry ${e.seq} of ${origin} lies before ${where}`)
      e.bytes ??= encodeEntry(e)
      e.leaf ??= leafDigest(e.bytes)
      leaves.set(e.seq - cert.from - 1, e.leaf)
      run.push(e)
    }
    const n = cert.to - cert.from
    const check = (digests: Map<number, Digest>): Uint8Array | undefined => {
      const root = exactRootDigest(n, digests, cert.pruned)
      if (root === undefined) return undefined
      const rootBytes = fromDigest(root)
      return edVerify(null, attestedBytes(origin, cert.from, cert.to, cert.asOf, rootBytes, liveBitmap(n, digests.keys())), key, cert.sig) ? rootBytes : undefined
    }
    const problem = prunedProblem(n, leaves.keys(), cert.pruned)
    if (problem !== undefined) throw new SignatureError(`${where} is not accounted for exactly: ${problem}`)
    let root = check(leaves)
    if (root === undefined) {
      // entries re-encoded by another protobuf encoder: what the origin signed is the canonical encoding
      const canonical = run.map(e => encodeEntry(e))
      if (!canonical.every((b, k) => Buffer.compare(b, run[k].bytes ?? b) === 0)) {
        const again = new Map<number, Digest>()
        canonical.forEach((b, k) => again.set(run[k].seq - cert.from - 1, leafDigest(b)))
        root = check(again)
        if (root !== undefined) run.forEach((e, k) => { e.bytes = canonical[k]; e.leaf = again.get(e.seq - cert.from - 1) })
      }
    }
    if (root === undefined) throw new SignatureError(`${where} does not match its origin's attestation as of ${cert.asOf}: an entry it attests live is missing, or entries were altered or forged`)
    roots.push(root)
  }
  if (i < entries.length) throw new SignatureError(`entry ${entries[i].seq} of ${origin} is not covered by any certificate`)
  if (at !== range.to) throw new SignatureError(`the certificates of batch (${range.from}, ${range.to}] of ${origin} end at ${at}`)
  return roots
}

/**
 * Check an update (completeness.md §5, 4–5) against what the receiver
 * stores of that run: its root (as the receiver verified it, never from the
 * relay), as of when, and its live positions. Returns the positions the
 * update keeps live (a subset of the stored ones), or 'stale' when it is not
 * newer. Throws SignatureError when it is not the origin's, or contradicts
 * the stored attestation (a position live again).
 */
export function verifyUpdate (origin: string, stored: { from: number, to: number, asOf: number, root: Uint8Array, live: number[] }, update: AttestedCert): number[] | 'stale' {
  const key = publicKeyOf(origin)
  const where = `update of run (${update.from}, ${update.to}] of ${origin} as of ${update.asOf}`
  if (update.gone ? update.from > stored.from || update.to < stored.to : update.from !== stored.from || update.to !== stored.to) throw new SignatureError(`${where} does not cover the stored run (${stored.from}, ${stored.to}]`)
  if (!Number.isSafeInteger(update.asOf) || update.asOf < update.to) throw new SignatureError(`${where} is not a valid attestation`)
  if (update.asOf <= stored.asOf) return 'stale'
  let live: number[] | undefined = []
  if (update.gone) {
    if (!edVerify(null, goneBytes(origin, update.from, update.to, update.asOf), key, update.sig)) throw new SignatureError(`${where} is not attested gone by its origin`)
  } else {
    const n = stored.to - stored.from
    live = update.live === undefined ? undefined : livePositions(n, update.live)
    if (live === undefined || update.live === undefined) throw new SignatureError(`${where} has no valid bitmap of live entries`)
    if (!edVerify(null, attestedBytes(origin, update.from, update.to, update.asOf, stored.root, update.live), key, update.sig)) throw new SignatureError(`${where} is not its origin's attestation of the run`)
  }
  const was = new Set(stored.live)
  for (const i of live) if (!was.has(i)) throw new SignatureError(`${where} says entry ${stored.from + i + 1} is live, which the origin attested superseded before`)
  return live
}

/**
 * The positions of a run of n leaves that no pruned node covers: the live
 * set of a certificate pruned exactly (every gone entry's leaf folded into
 * the pruned nodes by pruneLeaf, see prunedProblem).
 */
export function unprunedPositions (n: number, pruned: PrunedNode[]): number[] {
  const spans = pruned.map(p => [p.index * 2 ** p.level, Math.min((p.index + 1) * 2 ** p.level, n)] as [number, number]).sort((a, b) => a[0] - b[0])
  const out: number[] = []
  let pos = 0
  for (const [lo, hi] of spans) {
    for (; pos < lo; pos++) out.push(pos)
    pos = Math.max(pos, hi)
  }
  for (; pos < n; pos++) out.push(pos)
  return out
}

/** An attestation as a node stores its own (with the run's root, which it needs to sign the run's updates). */
export interface StoredAttestation extends AttestedCert {
  /** root(R) of a live run; absent for a gone span. */
  root?: Uint8Array
}

/** RunCert bytes of an attestation (`root` only when given: what a node stores of its own runs). */
export function encodeAttested (c: AttestedCert, root?: Uint8Array): Uint8Array {
  return RunCert.encode({
    fromSeq: c.from,
    toSeq: c.to,
    sig: c.sig as Uint8Array<ArrayBuffer>,
    pruned: c.pruned.map(p => ({ level: p.level, index: p.index, hash: p.hash as Uint8Array<ArrayBuffer> })),
    asOf: c.asOf,
    gone: c.gone,
    live: (c.live ?? new Uint8Array()) as Uint8Array<ArrayBuffer>,
    root: (root ?? new Uint8Array()) as Uint8Array<ArrayBuffer>
  })
}

export function decodeAttested (bytes: Uint8Array): StoredAttestation {
  const c = RunCert.decode(bytes)
  const out: StoredAttestation = { from: c.fromSeq, to: c.toSeq, asOf: c.asOf, sig: c.sig, pruned: c.pruned.map(p => ({ level: p.level, index: p.index, hash: p.hash })), gone: c.gone }
  if (c.live.byteLength > 0) out.live = c.live
  if (c.root.byteLength > 0) out.root = c.root
  return out
}
