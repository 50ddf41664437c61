/**
 * Stream encryption primitives: what a source needs to replicate a stream
 * whose entries only its audience can read, through relays that store and
 * forward ciphertext. protocols/sync/encryption.md is the byte-level spec;
 * this file implements it.
 *
 * - Sealed box: `seal(peer, plaintext, ctx)` encrypts to a peer's identity
 *   key (the Ed25519 key its peer id embeds, mapped to X25519), anonymously
 *   (ephemeral X25519 + HKDF-SHA256 + AES-256-GCM). `ctx` (origin, stream,
 *   epoch) is bound as associated data. Used to hand a stream's epoch key to
 *   each audience member.
 * - Entry encryption under an epoch key: `encryptEntry(key, aad, plaintext)`,
 *   AES-256-GCM with a random 96-bit nonce, AAD binding origin, stream,
 *   epoch and seq.
 * - Blinded record ids: `blindId(key, collection, id)`, HMAC-SHA256 under a
 *   key derived from the epoch key, truncated, so a relay can keep the newest
 *   entry per record without learning the record's id.
 *
 * Choices. X25519, HKDF and the AEAD are Node's (OpenSSL): native,
 * constant-time, and AES-256-GCM is what WebCrypto offers too, so a browser
 * implementation needs no extra library. AES-256-GCM over ChaCha20-Poly1305:
 * measured faster here (scripts/seal-bench.ts). Only the Ed25519→X25519 map
 * is not in Node's crypto; it comes from @noble/curves.
 *
 * Errors: every refusal is an EncryptionError with a stable code:
 *   CIPHERTEXT_TRUNCATED            shorter than the format's fixed part
 *   CIPHERTEXT_VERSION_UNSUPPORTED  unknown first (version) byte
 *   CIPHERTEXT_INVALID              authentication failed: wrong key or
 *                                   recipient, tampered bytes, or another
 *                                   origin / stream / epoch / seq
 *   ENCRYPTION_KEY_INVALID          not an Ed25519 peer id / key, a
 *                                   small-order key, a stream key that is not
 *                                   32 bytes
 *   ENCRYPTION_CONTEXT_INVALID      origin / stream / epoch / seq / collection
 *                                   / id out of range for the encodings
 */
import {
  createCipheriv, createDecipheriv, createHmac, createPrivateKey, createPublicKey,
  diffieHellman, generateKeyPairSync, hkdfSync, randomBytes, randomFillSync
} from 'node:crypto'
import type { KeyObject } from 'node:crypto'
import { ed25519 } from '@noble/curves/ed25519.js'
import { peerIdFromString } from '@libp2p/peer-id'
import type { PeerId, PrivateKey, PublicKey } from '@libp2p/interface'
import { SyncmeshError } from '../core/errors.js'

/** A sealed envelope or an encrypted entry that cannot be used, or an argument that cannot be encrypted. */
export class EncryptionError extends SyncmeshError {
  constructor (code: string, message: string) {
    super(code, message, 400)
    this.name = 'EncryptionError'
  }
}

export const SEAL_VERSION = 1
export const ENTRY_VERSION = 1
export const BLIND_VERSION = 1

const KEY_BYTES = 32
const NONCE_BYTES = 12
const TAG_BYTES = 16
/** version ‖ ephemeral public key ‖ tag */
export const SEAL_OVERHEAD = 1 + KEY_BYTES + TAG_BYTES
/** version ‖ nonce ‖ tag */
export const ENTRY_OVERHEAD = 1 + NONCE_BYTES + TAG_BYTES
/** version ‖ 16 bytes of HMAC */
export const BLIND_ID_BYTES = 17
/** Length of a stream (epoch) key. */
export const STREAM_KEY_BYTES = KEY_BYTES
/**
 * Entries one epoch key may encrypt. Nonces are random 96-bit values; after
 * q encryptions under one key the chance that two share a nonce is about
 * q² / 2^97: 2^-35 at this limit (NIST SP 800-38D allows 2^32 random-nonce
 * invocations per key). The source starts a new epoch key before.
 */
export const MAX_ENTRIES_PER_KEY = 2 ** 31

const SEAL_LABEL = Buffer.from('syncmesh/seal/1\0')
const ENTRY_KEY_LABEL = Buffer.from('syncmesh/stream-entry/1\0')
const BLIND_KEY_LABEL = Buffer.from('syncmesh/stream-blind/1\0')
const EPOCH_KEY_LABEL = Buffer.from('syncmesh/stream-epoch-key/1\0')
const EMPTY = Buffer.alloc(0)
const ZERO_NONCE = Buffer.alloc(NONCE_BYTES)
const MAX_FIELD_BYTES = 0xffff
const MAX_EPOCH = 0xffffffff
const AEAD = 'aes-256-gcm'

// DER prefixes of a raw 32-byte X25519 key (RFC 8410): PKCS#8 private, SPKI public.
const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex')
const X25519_SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex')

/** What a sealed envelope is bound to: the stream and epoch whose key it carries. */
export interface StreamContext {
  /** The stream's source (a peer id string). */
  origin: string
  /** The stream's id within its origin. */
  stream: string
  /** The epoch, 0 … 2^32-1. */
  epoch: number
}

/** What an encrypted entry is bound to. */
export interface EntryContext extends StreamContext {
  /** The entry's seq in the origin's stream, 0 … 2^53-1 (a bigint up to 2^64-1). */
  seq: number | bigint
}

/** Who to seal to: a peer id (string or object) or its Ed25519 public key. */
export type SealRecipient = string | PeerId | PublicKey

// ---------------------------------------------------------------------------
// X25519 keys from Ed25519 identities

function keyError (message: string): EncryptionError {
  return new EncryptionError('ENCRYPTION_KEY_INVALID', message)
}

function ed25519PublicOf (recipient: SealRecipient): Uint8Array {
  let key: PublicKey | undefined
  if (typeof recipient === 'string') {
    let id: PeerId
    try {
      id = peerIdFromString(recipient)
    } catch (err) {
      throw keyError(`"${recipient.slice(0, 80)}" is not a peer id: ${(err as Error).message}`)
    }
    key = id.publicKey
  } else if ('raw' in recipient) {
    key = recipient
  } else {
    key = recipient.publicKey
  }
  if (key?.type !== 'Ed25519') throw keyError(`only Ed25519 identities can receive sealed keys (got ${key?.type ?? 'a peer id without a public key'})`)
  return key.raw
}

/**
 * The X25519 public key (u-coordinate, 32 bytes little-endian) of an Ed25519
 * public key: u = (1 + y) / (1 − y) mod 2^255 − 19. Refuses encodings that
 * are not points and points of small order (whose X25519 shared secret
 * would not depend on the sender's key).
 */
export function x25519PublicFromEd25519 (edPublic: Uint8Array): Uint8Array {
  if (edPublic.length !== KEY_BYTES) throw keyError(`an Ed25519 public key is ${KEY_BYTES} bytes, got ${edPublic.length}`)
  let point
  try {
    point = ed25519.Point.fromBytes(edPublic)
  } catch {
    throw keyError('the Ed25519 public key is not a point of the curve')
  }
  if (point.isSmallOrder()) throw keyError('the Ed25519 public key has small order')
  const { Fp } = ed25519.Point
  return Fp.toBytes(Fp.div(Fp.add(Fp.ONE, point.y), Fp.sub(Fp.ONE, point.y)))
}

/** The X25519 public key a sealed box to `recipient` is computed with. */
export function sealPublicKey (recipient: SealRecipient): Uint8Array {
  return x25519PublicFromEd25519(ed25519PublicOf(recipient))
}

/**
 * The X25519 private scalar of an Ed25519 identity, as libsodium's
 * crypto_sign_ed25519_sk_to_curve25519: the first 32 bytes of
 * SHA-512(seed), clamped.
 */
export function x25519SecretFromEd25519Seed (seed: Uint8Array): Uint8Array {
  if (seed.length !== KEY_BYTES) throw keyError(`an Ed25519 seed is ${KEY_BYTES} bytes, got ${seed.length}`)
  return ed25519.utils.toMontgomerySecret(seed)
}

function x25519PrivateKeyObject (scalar: Uint8Array): KeyObject {
  if (scalar.length !== KEY_BYTES) throw keyError(`an X25519 private key is ${KEY_BYTES} bytes, got ${scalar.length}`)
  return createPrivateKey({ key: Buffer.concat([X25519_PKCS8_PREFIX, scalar]), format: 'der', type: 'pkcs8' })
}

function x25519PublicKeyObject (u: Uint8Array): KeyObject {
  if (u.length !== KEY_BYTES) throw keyError(`an X25519 public key is ${KEY_BYTES} bytes, got ${u.length}`)
  return createPublicKey({ key: Buffer.concat([X25519_SPKI_PREFIX, u]), format: 'der', type: 'spki' })
}

function rawPublic (key: KeyObject): Uint8Array {
  const der = key.export({ format: 'der', type: 'spki' })
  return new Uint8Array(der.subarray(der.length - KEY_BYTES))
}

function isZero (bytes: Uint8Array): boolean {
  let acc = 0
  for (const b of bytes) acc |= b
  return acc === 0
}

function ecdh (privateKey: KeyObject, publicKey: KeyObject): Buffer {
  let shared: Buffer
  try {
    shared = diffieHellman({ privateKey, publicKey })
  } catch {
    throw keyError('X25519 failed: the public key has small order')
  }
  if (isZero(shared)) throw keyError('X25519 gave the all-zero secret: the public key has small order')
  return shared
}

/** X25519(scalar, u) of RFC 7748 (scalar clamped, result never all zero). */
export function x25519 (scalar: Uint8Array, u: Uint8Array): Uint8Array {
  return new Uint8Array(ecdh(x25519PrivateKeyObject(scalar), x25519PublicKeyObject(u)))
}

/** X25519(scalar, 9): the public key of a scalar. */
export function x25519Base (scalar: Uint8Array): Uint8Array {
  return rawPublic(createPublicKey(x25519PrivateKeyObject(scalar)))
}

/**
 * A node's key for opening sealed boxes, derived once from its Ed25519
 * identity (`SealIdentity.fromPrivateKey(node's libp2p private key)`).
 */
export class SealIdentity {
  /** The X25519 public key senders seal to (equals `sealPublicKey(peer id)`). */
  readonly publicKey: Uint8Array
  readonly #privateKey: KeyObject

  private constructor (scalar: Uint8Array) {
    this.#privateKey = x25519PrivateKeyObject(scalar)
    this.publicKey = rawPublic(createPublicKey(this.#privateKey))
  }

  /** From a libp2p Ed25519 private key (`raw` is seed ‖ public key). */
  static fromPrivateKey (key: PrivateKey): SealIdentity {
    if (key.type !== 'Ed25519') throw keyError(`only Ed25519 identities can open sealed keys (got ${key.type})`)
    return new SealIdentity(x25519SecretFromEd25519Seed(key.raw.subarray(0, KEY_BYTES)))
  }

  /** From a 32-byte Ed25519 seed. */
  static fromSeed (seed: Uint8Array): SealIdentity {
    return new SealIdentity(x25519SecretFromEd25519Seed(seed))
  }

  open (envelope: Uint8Array, context: StreamContext): Uint8Array {
    if (envelope.length < 1) throw new EncryptionError('CIPHERTEXT_TRUNCATED', 'the sealed envelope is empty')
    if (envelope[0] !== SEAL_VERSION) throw new EncryptionError('CIPHERTEXT_VERSION_UNSUPPORTED', `sealed envelope version ${envelope[0]} is not supported (this node reads version ${SEAL_VERSION})`)
    if (envelope.length < SEAL_OVERHEAD) throw new EncryptionError('CIPHERTEXT_TRUNCATED', `a sealed envelope is at least ${SEAL_OVERHEAD} bytes, got ${envelope.length}`)
    const ad = streamAad(SEAL_VERSION, context)
    const ephemeral = envelope.subarray(1, 1 + KEY_BYTES)
    let shared: Buffer
    try {
      shared = ecdh(this.#privateKey, x25519PublicKeyObject(ephemeral))
    } catch {
      throw new EncryptionError('CIPHERTEXT_INVALID', 'the sealed envelope does not open: its ephemeral key is invalid')
    }
    const key = sealKey(shared, ephemeral, this.publicKey)
    const body = envelope.subarray(1 + KEY_BYTES)
    const plain = aeadOpen(key, ZERO_NONCE, ad, body)
    if (plain === undefined) throw new EncryptionError('CIPHERTEXT_INVALID', `the sealed envelope does not open: not sealed to this node, altered, or not for stream "${context.stream.slice(0, 80)}" epoch ${context.epoch} of ${context.origin.slice(0, 80)}`)
    return plain
  }
}

// ---------------------------------------------------------------------------
// encodings

function contextError (message: string): EncryptionError {
  return new EncryptionError('ENCRYPTION_CONTEXT_INVALID', message)
}

function utf8Field (name: string, value: unknown): Buffer {
  if (typeof value !== 'string') throw contextError(`${name} must be a string`)
  const bytes = Buffer.from(value, 'utf8')
  if (bytes.length > MAX_FIELD_BYTES) throw contextError(`${name} is ${bytes.length} bytes of UTF-8, at most ${MAX_FIELD_BYTES}`)
  return bytes
}

function checkEpoch (epoch: unknown): number {
  if (typeof epoch !== 'number' || !Number.isInteger(epoch) || epoch < 0 || epoch > MAX_EPOCH) throw contextError(`epoch must be an integer 0 … ${MAX_EPOCH}, got ${String(epoch)}`)
  return epoch
}

function checkSeq (seq: unknown): number | bigint {
  if (typeof seq === 'number' && Number.isSafeInteger(seq) && seq >= 0) return seq
  if (typeof seq === 'bigint' && seq >= 0n && seq <= 0xffffffffffffffffn) return seq
  throw contextError(`seq must be an integer 0 … 2^64-1, got ${String(seq)}`)
}

/** version ‖ u16be(len) ‖ origin ‖ u16be(len) ‖ stream ‖ u32be(epoch), then room for `extra` bytes */
function streamAad (version: number, ctx: StreamContext, extra = 0): Buffer {
  if (ctx === null || typeof ctx !== 'object') throw contextError('the context must be an object { origin, stream, epoch }')
  const origin = utf8Field('origin', ctx.origin)
  const stream = utf8Field('stream', ctx.stream)
  const epoch = checkEpoch(ctx.epoch)
  const out = Buffer.allocUnsafe(1 + 2 + origin.length + 2 + stream.length + 4 + extra)
  let o = out.writeUInt8(version, 0)
  o = out.writeUInt16BE(origin.length, o)
  o += origin.copy(out, o)
  o = out.writeUInt16BE(stream.length, o)
  o += stream.copy(out, o)
  out.writeUInt32BE(epoch, o)
  return out
}

// ---------------------------------------------------------------------------
// AEAD

function aeadSeal (key: Uint8Array, nonce: Uint8Array, ad: Uint8Array, plaintext: Uint8Array, out: Buffer, offset: number): void {
  const cipher = createCipheriv(AEAD, key, nonce, { authTagLength: TAG_BYTES })
  cipher.setAAD(ad)
  const a = cipher.update(plaintext)
  const b = cipher.final()
  offset += a.copy(out, offset)
  offset += b.copy(out, offset)
  cipher.getAuthTag().copy(out, offset)
}

/** undefined when authentication fails. `body` is ciphertext ‖ tag. */
function aeadOpen (key: Uint8Array, nonce: Uint8Array, ad: Uint8Array, body: Uint8Array): Uint8Array | undefined {
  const split = body.length - TAG_BYTES
  const decipher = createDecipheriv(AEAD, key, nonce, { authTagLength: TAG_BYTES })
  decipher.setAAD(ad)
  decipher.setAuthTag(body.subarray(split))
  const a = decipher.update(body.subarray(0, split))
  try {
    const b = decipher.final()
    return b.length === 0 ? new Uint8Array(a.buffer, a.byteOffset, a.length) : new Uint8Array(Buffer.concat([a, b]))
  } catch {
    a.fill(0)
    return undefined
  }
}

// ---------------------------------------------------------------------------
// sealed box

/** HKDF-SHA256(ikm = shared, salt = "", info = label ‖ E ‖ R, 32) */
function sealKey (shared: Uint8Array, ephemeral: Uint8Array, recipient: Uint8Array): Buffer {
  return Buffer.from(hkdfSync('sha256', shared, EMPTY, Buffer.concat([SEAL_LABEL, ephemeral, recipient]), KEY_BYTES))
}

/**
 * Seals `plaintext` (e.g. an epoch key) to `recipient` so that only the
 * holder of its identity key can open it, bound to `context`.
 *
 * Anonymous: the envelope does not say or prove who sealed it. Whoever
 * accepts it must know the sender from elsewhere (the envelope travels in an
 * entry the stream's origin signed).
 */
export function seal (recipient: SealRecipient, plaintext: Uint8Array, context: StreamContext): Uint8Array {
  const ephemeral = generateKeyPairSync('x25519')
  return sealWith(recipient, plaintext, context, ephemeral.privateKey, rawPublic(ephemeral.publicKey))
}

/**
 * `seal` with a given ephemeral X25519 scalar: for test vectors only. An
 * ephemeral scalar must never be used twice.
 */
export function sealWithEphemeral (recipient: SealRecipient, plaintext: Uint8Array, context: StreamContext, ephemeralScalar: Uint8Array): Uint8Array {
  const ePriv = x25519PrivateKeyObject(ephemeralScalar)
  return sealWith(recipient, plaintext, context, ePriv, rawPublic(createPublicKey(ePriv)))
}

function sealWith (recipient: SealRecipient, plaintext: Uint8Array, context: StreamContext, ePriv: KeyObject, e: Uint8Array): Uint8Array {
  const ad = streamAad(SEAL_VERSION, context)
  const r = sealPublicKey(recipient)
  const shared = ecdh(ePriv, x25519PublicKeyObject(r))
  const key = sealKey(shared, e, r)
  const out = Buffer.allocUnsafe(SEAL_OVERHEAD + plaintext.length)
  out[0] = SEAL_VERSION
  out.set(e, 1)
  aeadSeal(key, ZERO_NONCE, ad, plaintext, out, 1 + KEY_BYTES)
  return new Uint8Array(out.buffer, out.byteOffset, out.length)
}

/** Opens an envelope sealed to `identity` for `context` (the SealIdentity's own `open`). */
export function open (identity: SealIdentity | PrivateKey, envelope: Uint8Array, context: StreamContext): Uint8Array {
  const id = identity instanceof SealIdentity ? identity : SealIdentity.fromPrivateKey(identity)
  return id.open(envelope, context)
}

// ---------------------------------------------------------------------------
// stream (epoch) keys, entries, blinded ids

/**
 * One epoch key of one stream, with the keys derived from it:
 *   entry key = HKDF-SHA256(ikm = epoch key, salt = "", info = "syncmesh/stream-entry/1\0", 32)
 *   blind key = HKDF-SHA256(ikm = epoch key, salt = "", info = "syncmesh/stream-blind/1\0", 32)
 * Derive once per epoch and reuse for every entry.
 */
export class StreamKey {
  /** The 32 bytes sealed to the audience. */
  readonly bytes: Uint8Array
  readonly entryKey: Buffer
  readonly blindKey: Buffer
  // the entry AAD of the last (origin, stream, epoch), with 8 bytes for the seq:
  // a key serves one stream epoch, so encoding the strings once saves most of the AAD's cost
  #aadFor: StreamContext | undefined
  #aad: Buffer | undefined

  constructor (bytes: Uint8Array) {
    if (!(bytes instanceof Uint8Array) || bytes.length !== STREAM_KEY_BYTES) throw keyError(`a stream key is ${STREAM_KEY_BYTES} bytes, got ${bytes instanceof Uint8Array ? bytes.length : typeof bytes}`)
    this.bytes = new Uint8Array(bytes)
    this.entryKey = Buffer.from(hkdfSync('sha256', this.bytes, EMPTY, ENTRY_KEY_LABEL, KEY_BYTES))
    this.blindKey = Buffer.from(hkdfSync('sha256', this.bytes, EMPTY, BLIND_KEY_LABEL, KEY_BYTES))
  }

  /** A fresh random epoch key. */
  static generate (): StreamKey {
    return new StreamKey(randomBytes(STREAM_KEY_BYTES))
  }

  /** entry_aad = 0x01 ‖ str(origin) ‖ str(stream) ‖ u32be(epoch) ‖ u64be(seq); valid until the next call. */
  entryAad (ctx: EntryContext): Buffer {
    if (ctx === null || typeof ctx !== 'object') throw contextError('the entry context must be an object { origin, stream, epoch, seq }')
    const seq = checkSeq(ctx.seq)
    const last = this.#aadFor
    if (last === undefined || this.#aad === undefined || last.origin !== ctx.origin || last.stream !== ctx.stream || last.epoch !== ctx.epoch) {
      this.#aad = streamAad(ENTRY_VERSION, ctx, 8)
      this.#aadFor = { origin: ctx.origin, stream: ctx.stream, epoch: ctx.epoch }
    }
    const aad = this.#aad
    if (typeof seq === 'bigint') {
      aad.writeBigUInt64BE(seq, aad.length - 8)
    } else {
      aad.writeUInt32BE(Math.floor(seq / 0x100000000), aad.length - 8)
      aad.writeUInt32BE(seq >>> 0, aad.length - 4)
    }
    return aad
  }
}

/**
 * The epoch key of (origin, stream, epoch) derived from the origin's
 * identity (`identity`: its libp2p Ed25519 private key, or the 32-byte seed):
 *   HKDF-SHA256(ikm = seed, salt = "", info = "syncmesh/stream-epoch-key/1\0" ‖ context_aad, 32)
 * with context_aad the sealed box's (0x01 ‖ str(origin) ‖ str(stream) ‖ u32be(epoch)).
 * The same identity and context give the same key, so a source restored
 * from a backup that lacks a key finds it again; nobody without the
 * identity's private key can compute it, whatever epoch keys it holds.
 */
export function deriveStreamKey (identity: PrivateKey | Uint8Array, context: StreamContext): StreamKey {
  let seed: Uint8Array
  if (identity instanceof Uint8Array) {
    seed = identity
  } else {
    if (identity.type !== 'Ed25519') throw keyError(`only Ed25519 identities derive stream keys (got ${identity.type})`)
    seed = identity.raw.subarray(0, KEY_BYTES)
  }
  if (seed.length !== KEY_BYTES) throw keyError(`an Ed25519 seed is ${KEY_BYTES} bytes, got ${seed.length}`)
  const info = Buffer.concat([EPOCH_KEY_LABEL, streamAad(SEAL_VERSION, context)])
  const bytes = new Uint8Array(hkdfSync('sha256', seed, EMPTY, info, STREAM_KEY_BYTES))
  const key = new StreamKey(bytes)
  bytes.fill(0)
  return key
}

/** Seals an epoch key to one audience member: `seal` of its 32 bytes. */
export function sealStreamKey (recipient: SealRecipient, key: StreamKey, context: StreamContext): Uint8Array {
  return seal(recipient, key.bytes, context)
}

/** Opens what sealStreamKey produced; an envelope holding anything but 32 bytes is refused (CIPHERTEXT_INVALID). */
export function openStreamKey (identity: SealIdentity, envelope: Uint8Array, context: StreamContext): StreamKey {
  const bytes = identity.open(envelope, context)
  if (bytes.length !== STREAM_KEY_BYTES) throw new EncryptionError('CIPHERTEXT_INVALID', `the sealed envelope holds ${bytes.length} bytes, not a ${STREAM_KEY_BYTES}-byte stream key`)
  return new StreamKey(bytes)
}

// Nonces come from a pool filled 4 KiB at a time: one randomBytes call per
// entry costs more than the encryption itself.
const NONCE_POOL = Buffer.alloc(NONCE_BYTES * 341)
let noncePos = NONCE_POOL.length

function freshNonce (out: Buffer, offset: number): void {
  if (noncePos === NONCE_POOL.length) {
    randomFillSync(NONCE_POOL)
    noncePos = 0
  }
  NONCE_POOL.copy(out, offset, noncePos, noncePos + NONCE_BYTES)
  NONCE_POOL.fill(0, noncePos, noncePos + NONCE_BYTES)
  noncePos += NONCE_BYTES
}

/**
 * Encrypts one entry's payload: version ‖ nonce ‖ ciphertext ‖ tag, the
 * nonce random, the AAD binding origin, stream, epoch and seq. A seq reused
 * (an origin restored from a backup) gets a fresh nonce all the same.
 */
export function encryptEntry (key: StreamKey, aad: EntryContext, plaintext: Uint8Array): Uint8Array {
  const ad = key.entryAad(aad)
  const out = Buffer.allocUnsafe(ENTRY_OVERHEAD + plaintext.length)
  out[0] = ENTRY_VERSION
  freshNonce(out, 1)
  aeadSeal(key.entryKey, out.subarray(1, 1 + NONCE_BYTES), ad, plaintext, out, 1 + NONCE_BYTES)
  return new Uint8Array(out.buffer, out.byteOffset, out.length)
}

/**
 * `encryptEntry` with a given nonce: for test vectors only. A nonce must
 * never be used twice under one key.
 */
export function encryptEntryWithNonce (key: StreamKey, aad: EntryContext, plaintext: Uint8Array, nonce: Uint8Array): Uint8Array {
  if (nonce.length !== NONCE_BYTES) throw contextError(`a nonce is ${NONCE_BYTES} bytes`)
  const ad = key.entryAad(aad)
  const out = Buffer.allocUnsafe(ENTRY_OVERHEAD + plaintext.length)
  out[0] = ENTRY_VERSION
  out.set(nonce, 1)
  aeadSeal(key.entryKey, nonce, ad, plaintext, out, 1 + NONCE_BYTES)
  return new Uint8Array(out.buffer, out.byteOffset, out.length)
}

/** Decrypts what encryptEntry produced for the same key and AAD. */
export function decryptEntry (key: StreamKey, aad: EntryContext, ciphertext: Uint8Array): Uint8Array {
  if (ciphertext.length < 1) throw new EncryptionError('CIPHERTEXT_TRUNCATED', 'the encrypted entry is empty')
  if (ciphertext[0] !== ENTRY_VERSION) throw new EncryptionError('CIPHERTEXT_VERSION_UNSUPPORTED', `encrypted entry version ${ciphertext[0]} is not supported (this node reads version ${ENTRY_VERSION})`)
  if (ciphertext.length < ENTRY_OVERHEAD) throw new EncryptionError('CIPHERTEXT_TRUNCATED', `an encrypted entry is at least ${ENTRY_OVERHEAD} bytes, got ${ciphertext.length}`)
  const ad = key.entryAad(aad)
  const plain = aeadOpen(key.entryKey, ciphertext.subarray(1, 1 + NONCE_BYTES), ad, ciphertext.subarray(1 + NONCE_BYTES))
  if (plain === undefined) throw new EncryptionError('CIPHERTEXT_INVALID', `entry ${aad.seq} of stream "${aad.stream.slice(0, 80)}" epoch ${aad.epoch} of ${aad.origin.slice(0, 80)} does not decrypt: another epoch key, altered, or moved from another stream, epoch or seq`)
  return plain
}

/**
 * The blinded id of a record in one epoch of one stream:
 * version ‖ HMAC-SHA256(blind key, u16be(len) ‖ collection ‖ u16be(len) ‖ id)[0..16).
 * Equal for the same record within an epoch, unlinkable without the key,
 * and different across epochs (a new epoch key gives new blinded ids).
 */
export function blindId (key: StreamKey, collection: string, id: string): Uint8Array {
  const c = utf8Field('collection', collection)
  const i = utf8Field('id', id)
  const msg = Buffer.allocUnsafe(4 + c.length + i.length)
  let o = msg.writeUInt16BE(c.length, 0)
  o += c.copy(msg, o)
  o = msg.writeUInt16BE(i.length, o)
  i.copy(msg, o)
  const mac = createHmac('sha256', key.blindKey).update(msg).digest()
  const out = new Uint8Array(BLIND_ID_BYTES)
  out[0] = BLIND_VERSION
  out.set(mac.subarray(0, BLIND_ID_BYTES - 1), 1)
  return out
}

/** What a relay checks on a blinded id a peer sent before storing it. */
export function checkBlindId (bytes: Uint8Array): Uint8Array {
  if (bytes.length >= 1 && bytes[0] !== BLIND_VERSION) throw new EncryptionError('CIPHERTEXT_VERSION_UNSUPPORTED', `blinded id version ${bytes[0]} is not supported (this node reads version ${BLIND_VERSION})`)
  if (bytes.length < BLIND_ID_BYTES) throw new EncryptionError('CIPHERTEXT_TRUNCATED', `a blinded id is ${BLIND_ID_BYTES} bytes, got ${bytes.length}`)
  if (bytes.length > BLIND_ID_BYTES) throw new EncryptionError('CIPHERTEXT_INVALID', `a blinded id is ${BLIND_ID_BYTES} bytes, got ${bytes.length}`)
  return bytes
}
