/**
 * Stream encryption primitives (src/log/seal.ts): sealed boxes to a peer's
 * identity key, entries under an epoch key, blinded ids. Known-answer tests
 * against RFC 7748 and libsodium, the spec's vectors
 * (protocols/sync/encryption.md §7) recomputed both with the module and from
 * the spec with plain primitives, and every refusal with its code.
 */
import { createDecipheriv, createHmac, createPrivateKey, createPublicKey, hkdfSync, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { generateKeyPair, generateKeyPairFromSeed, publicKeyFromRaw } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey, peerIdFromPublicKey, peerIdFromString } from '@libp2p/peer-id'
import { ED25519_TORSION_SUBGROUP } from '@noble/curves/ed25519.js'
import { describe, expect, it } from 'vitest'
import { SyncmeshError } from '../../src/core/errors.js'
import {
  BLIND_ID_BYTES, ENTRY_OVERHEAD, EncryptionError, SEAL_OVERHEAD, SealIdentity, StreamKey,
  blindId, checkBlindId, decryptEntry, deriveStreamKey, encryptEntry, encryptEntryWithNonce, open, openStreamKey, seal, sealStreamKey,
  sealPublicKey, sealWithEphemeral, x25519, x25519Base, x25519PublicFromEd25519, x25519SecretFromEd25519Seed
} from '../../src/log/seal.js'
import type { EntryContext, StreamContext } from '../../src/log/seal.js'

const SPEC = join(import.meta.dirname, '..', '..', 'protocols', 'sync', 'encryption.md')
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')
const unhex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'))
const CODES = ['CIPHERTEXT_TRUNCATED', 'CIPHERTEXT_VERSION_UNSUPPORTED', 'CIPHERTEXT_INVALID', 'ENCRYPTION_KEY_INVALID', 'ENCRYPTION_CONTEXT_INVALID']

function codeOf (fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(EncryptionError)
    expect(err).toBeInstanceOf(SyncmeshError)
    expect((err as SyncmeshError).status).toBe(400)
    return (err as SyncmeshError).code
  }
  throw new Error('expected a refusal, got none')
}

function flip (bytes: Uint8Array, at: number, mask = 0x01): Uint8Array {
  const copy = new Uint8Array(bytes)
  copy[at] ^= mask
  return copy
}

// --- independent arithmetic for the Ed25519 → X25519 map (no library) ---

const P = 2n ** 255n - 19n
function modPow (b: bigint, e: bigint): bigint {
  let r = 1n
  b %= P
  while (e > 0n) {
    if ((e & 1n) === 1n) r = r * b % P
    b = b * b % P
    e >>= 1n
  }
  return r
}
function leToBig (bytes: Uint8Array): bigint {
  let n = 0n
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i])
  return n
}
function bigToLe32 (n: bigint): Uint8Array {
  const out = new Uint8Array(32)
  for (let i = 0; i < 32; i++) { out[i] = Number(n & 0xffn); n >>= 8n }
  return out
}
/** u = (1 + y) / (1 − y) mod p, y the Ed25519 point's y (sign bit cleared). */
function montgomeryU (edPublic: Uint8Array): Uint8Array {
  const y = leToBig(edPublic) & ((1n << 255n) - 1n)
  return bigToLe32((1n + y) * modPow((1n - y + P) % P, P - 2n) % P)
}
/** Ed25519 public key of a seed, by Node's crypto (not by the module under test). */
function edPublicOfSeed (seed: Uint8Array): Uint8Array {
  const key = createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]), format: 'der', type: 'pkcs8' })
  const der = createPublicKey(key).export({ format: 'der', type: 'spki' })
  return new Uint8Array(der.subarray(der.length - 32))
}

// --- the spec's vectors ---

type Vector = Record<string, string>
function specVectors (): Map<string, Vector> {
  const text = readFileSync(SPEC, 'utf8')
  const out = new Map<string, Vector>()
  for (const m of text.matchAll(/```text\nvector (\S+)\n([\s\S]*?)```/g)) {
    const fields: Vector = {}
    for (const line of m[2].split('\n')) {
      const f = /^(.+?) = (.*)$/.exec(line)
      if (f !== null) fields[f[1]] = f[2].startsWith('"') ? f[2].slice(1, -1) : f[2]
    }
    out.set(m[1], fields)
  }
  return out
}

const ctx: StreamContext = { origin: '12D3KooWPcv49Vv6DvkaUueyFqz2aid1oH77FLj4wXEd4xqUNQvu', stream: 'orders', epoch: 3 }
const ectx: EntryContext = { ...ctx, seq: 42 }

describe('X25519 and the Ed25519 → X25519 map', () => {
  it('RFC 7748 known answers (§5.2 scalar multiplication, §6.1 Diffie-Hellman)', () => {
    expect(hex(x25519(unhex('a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4'), unhex('e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c'))))
      .toBe('c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552')
    const v = specVectors().get('x25519')!
    expect(v['alice secret']).toBe('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a')
    expect(hex(x25519Base(unhex(v['alice secret'])))).toBe(v['alice public'])
    expect(hex(x25519Base(unhex(v['bob secret'])))).toBe(v['bob public'])
    expect(hex(x25519(unhex(v['alice secret']), unhex(v['bob public'])))).toBe(v.shared)
    expect(hex(x25519(unhex(v['bob secret']), unhex(v['alice public'])))).toBe(v.shared)
    expect(v.shared).toBe('4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742')
  })

  it('libsodium\'s ed25519_convert vector, and the same public key by BigInt arithmetic', () => {
    const v = specVectors().get('ed25519-to-x25519')!
    expect(v['x25519 public']).toBe('f1814f0e8ff1043d8a44d25babff3cedcae6c22c3edaa48f857ae70de2baae50')
    expect(v['x25519 secret']).toBe('8052030376d47112be7f73ed7a019293dd12ad910b654455798b4667d73de166')
    const seed = unhex(v['ed25519 seed'])
    const edPub = edPublicOfSeed(seed)
    expect(hex(edPub)).toBe(v['ed25519 public'])
    expect(hex(x25519PublicFromEd25519(edPub))).toBe(v['x25519 public'])
    expect(hex(montgomeryU(edPub))).toBe(v['x25519 public'])
    expect(hex(x25519SecretFromEd25519Seed(seed))).toBe(v['x25519 secret'])
    expect(hex(SealIdentity.fromSeed(seed).publicKey)).toBe(v['x25519 public'])
  })

  it('for real libp2p keys, the X25519 key from the peer id alone equals the one from the private key', async () => {
    for (let i = 0; i < 6; i++) {
      const key = await generateKeyPair('Ed25519')
      const id = peerIdFromPrivateKey(key)
      const fromId = sealPublicKey(id.toString())
      expect(hex(fromId)).toBe(hex(SealIdentity.fromPrivateKey(key).publicKey))
      expect(hex(fromId)).toBe(hex(montgomeryU(key.publicKey.raw)))
      expect(hex(sealPublicKey(id))).toBe(hex(fromId))
      expect(hex(sealPublicKey(key.publicKey))).toBe(hex(fromId))
    }
  })
})

describe('sealed boxes', () => {
  it('round trip to a peer id, a PeerId and a public key; each seal is fresh', async () => {
    const key = await generateKeyPair('Ed25519')
    const id = peerIdFromPrivateKey(key)
    const me = SealIdentity.fromPrivateKey(key)
    const secret = randomBytes(32)
    for (const to of [id.toString(), id, key.publicKey]) {
      const env = seal(to, secret, ctx)
      expect(env.length).toBe(SEAL_OVERHEAD + 32)
      expect(hex(me.open(env, ctx))).toBe(hex(secret))
      expect(hex(open(key, env, ctx))).toBe(hex(secret))
    }
    expect(hex(seal(id, secret, ctx))).not.toBe(hex(seal(id, secret, ctx)))
    expect(me.open(seal(id, new Uint8Array(0), ctx), ctx).length).toBe(0)
    const big = randomBytes(100_000)
    expect(hex(me.open(seal(id, big, ctx), ctx))).toBe(hex(big))
  })

  it('refuses another recipient, another context, altered and truncated envelopes, and other versions', async () => {
    const key = await generateKeyPair('Ed25519')
    const other = SealIdentity.fromPrivateKey(await generateKeyPair('Ed25519'))
    const me = SealIdentity.fromPrivateKey(key)
    const env = seal(peerIdFromPrivateKey(key), randomBytes(32), ctx)
    expect(codeOf(() => other.open(env, ctx))).toBe('CIPHERTEXT_INVALID')
    expect(codeOf(() => me.open(env, { ...ctx, origin: ctx.origin.slice(0, -1) + 'v' }))).toBe('CIPHERTEXT_INVALID')
    expect(codeOf(() => me.open(env, { ...ctx, stream: 'orders2' }))).toBe('CIPHERTEXT_INVALID')
    expect(codeOf(() => me.open(env, { ...ctx, epoch: 4 }))).toBe('CIPHERTEXT_INVALID')
    // origin/stream boundaries are length-prefixed: moving a character across them changes the AAD
    const split = seal(peerIdFromPrivateKey(key), randomBytes(32), { origin: 'ab', stream: 'c', epoch: 0 })
    expect(codeOf(() => me.open(split, { origin: 'a', stream: 'bc', epoch: 0 }))).toBe('CIPHERTEXT_INVALID')
    for (let at = 1; at < env.length; at++) {
      expect(codeOf(() => me.open(flip(env, at), ctx)), `byte ${at}`).toBe('CIPHERTEXT_INVALID')
    }
    expect(codeOf(() => me.open(flip(env, 0, 0x03), ctx))).toBe('CIPHERTEXT_VERSION_UNSUPPORTED')
    expect(codeOf(() => me.open(new Uint8Array(0), ctx))).toBe('CIPHERTEXT_TRUNCATED')
    for (const len of [1, 33, SEAL_OVERHEAD - 1]) {
      expect(codeOf(() => me.open(env.subarray(0, len), ctx)), `${len} bytes`).toBe('CIPHERTEXT_TRUNCATED')
    }
    for (const len of [SEAL_OVERHEAD, env.length - 1]) {
      expect(codeOf(() => me.open(env.subarray(0, len), ctx)), `${len} bytes`).toBe('CIPHERTEXT_INVALID')
    }
    // an ephemeral key of small order (u = 0, u = 1) is refused as an invalid envelope, not a crash
    for (const u of ['00'.repeat(32), '01' + '00'.repeat(31)]) {
      const forged = new Uint8Array(env)
      forged.set(unhex(u), 1)
      expect(codeOf(() => me.open(forged, ctx))).toBe('CIPHERTEXT_INVALID')
    }
  })

  it('hands an epoch key to a member: sealStreamKey / openStreamKey, and refuses an envelope that holds no key', async () => {
    const key = await generateKeyPair('Ed25519')
    const me = SealIdentity.fromPrivateKey(key)
    const streamKey = StreamKey.generate()
    const got = openStreamKey(me, sealStreamKey(peerIdFromPrivateKey(key), streamKey, ctx), ctx)
    expect(hex(got.bytes)).toBe(hex(streamKey.bytes))
    expect(hex(decryptEntry(got, ectx, encryptEntry(streamKey, ectx, Buffer.from('x'))))).toBe(hex(Buffer.from('x')))
    expect(codeOf(() => openStreamKey(me, seal(peerIdFromPrivateKey(key), randomBytes(31), ctx), ctx))).toBe('CIPHERTEXT_INVALID')
  })

  it('refuses recipients that are not usable Ed25519 identities', async () => {
    const secpKey = await generateKeyPair('secp256k1')
    const secp = peerIdFromPrivateKey(secpKey)
    expect(codeOf(() => seal(secp.toString(), randomBytes(32), ctx))).toBe('ENCRYPTION_KEY_INVALID')
    expect(codeOf(() => seal('not-a-peer-id', randomBytes(32), ctx))).toBe('ENCRYPTION_KEY_INVALID')
    expect(codeOf(() => SealIdentity.fromPrivateKey(secpKey))).toBe('ENCRYPTION_KEY_INVALID')
    // peer ids whose embedded key has small order (every shared secret would be fixed) or is not a point
    const bad = [...ED25519_TORSION_SUBGROUP, 'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f']
    for (const raw of bad) {
      const id = peerIdFromPublicKey(publicKeyFromRaw(unhex(raw)))
      expect(peerIdFromString(id.toString()).type).toBe('Ed25519')
      expect(codeOf(() => seal(id.toString(), randomBytes(32), ctx)), raw).toBe('ENCRYPTION_KEY_INVALID')
    }
  })

  it('refuses contexts the encoding cannot carry', async () => {
    const id = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    for (const bad of [{ ...ctx, epoch: -1 }, { ...ctx, epoch: 2 ** 32 }, { ...ctx, epoch: 1.5 }, { ...ctx, stream: 'x'.repeat(65_536) }, { ...ctx, origin: 7 as unknown as string }]) {
      expect(codeOf(() => seal(id, randomBytes(32), bad))).toBe('ENCRYPTION_CONTEXT_INVALID')
    }
    expect(hex(SealIdentity.fromSeed(randomBytes(32)).publicKey)).toHaveLength(64)
  })
})

describe('entries under an epoch key', () => {
  it('round trip; a reused seq gets a fresh nonce; seq as number or bigint is the same', () => {
    const key = StreamKey.generate()
    const value = randomBytes(200)
    const a = encryptEntry(key, ectx, value)
    const b = encryptEntry(key, ectx, value)
    expect(a.length).toBe(ENTRY_OVERHEAD + 200)
    expect(hex(a.subarray(1, 13))).not.toBe(hex(b.subarray(1, 13)))
    expect(hex(decryptEntry(key, ectx, a))).toBe(hex(value))
    expect(hex(decryptEntry(key, { ...ectx, seq: 42n }, b))).toBe(hex(value))
    expect(decryptEntry(key, ectx, encryptEntry(key, ectx, new Uint8Array(0))).length).toBe(0)
    const top = { ...ectx, seq: 2n ** 64n - 1n }
    expect(hex(decryptEntry(key, top, encryptEntry(key, top, value)))).toBe(hex(value))
    expect(hex(decryptEntry(new StreamKey(key.bytes), ectx, a))).toBe(hex(value))
  })

  it('nonces do not repeat over many entries', () => {
    const key = StreamKey.generate()
    const seen = new Set<string>()
    for (let i = 0; i < 5000; i++) seen.add(hex(encryptEntry(key, ectx, new Uint8Array(1)).subarray(1, 13)))
    expect(seen.size).toBe(5000)
  })

  it('refuses another key, another origin/stream/epoch/seq, altered, truncated and other versions', () => {
    const key = StreamKey.generate()
    const ct = encryptEntry(key, ectx, randomBytes(200))
    expect(codeOf(() => decryptEntry(StreamKey.generate(), ectx, ct))).toBe('CIPHERTEXT_INVALID')
    for (const moved of [{ ...ectx, seq: 43 }, { ...ectx, epoch: 2 }, { ...ectx, stream: 'order' }, { ...ectx, origin: 'someone-else' }]) {
      expect(codeOf(() => decryptEntry(key, moved, ct))).toBe('CIPHERTEXT_INVALID')
    }
    for (let at = 1; at < ct.length; at++) {
      expect(codeOf(() => decryptEntry(key, ectx, flip(ct, at, 0x80))), `byte ${at}`).toBe('CIPHERTEXT_INVALID')
    }
    expect(codeOf(() => decryptEntry(key, ectx, flip(ct, 0, 0x02)))).toBe('CIPHERTEXT_VERSION_UNSUPPORTED')
    expect(codeOf(() => decryptEntry(key, ectx, new Uint8Array(0)))).toBe('CIPHERTEXT_TRUNCATED')
    expect(codeOf(() => decryptEntry(key, ectx, ct.subarray(0, ENTRY_OVERHEAD - 1)))).toBe('CIPHERTEXT_TRUNCATED')
    expect(codeOf(() => decryptEntry(key, ectx, ct.subarray(0, ENTRY_OVERHEAD)))).toBe('CIPHERTEXT_INVALID')
    expect(codeOf(() => decryptEntry(key, ectx, ct.subarray(0, ct.length - 1)))).toBe('CIPHERTEXT_INVALID')
    expect(codeOf(() => decryptEntry(key, ectx, Buffer.concat([ct, Buffer.from([0])])))).toBe('CIPHERTEXT_INVALID')
  })

  it('refuses bad keys and positions', () => {
    expect(codeOf(() => new StreamKey(new Uint8Array(31)))).toBe('ENCRYPTION_KEY_INVALID')
    expect(codeOf(() => new StreamKey(new Uint8Array(33)))).toBe('ENCRYPTION_KEY_INVALID')
    const key = StreamKey.generate()
    for (const seq of [-1, 1.5, 2 ** 53, -1n, 2n ** 64n, '1' as unknown as number]) {
      expect(codeOf(() => encryptEntry(key, { ...ectx, seq }, new Uint8Array(1))), String(seq)).toBe('ENCRYPTION_CONTEXT_INVALID')
    }
    expect(codeOf(() => decryptEntry(key, { ...ectx, seq: -1 }, encryptEntry(key, ectx, new Uint8Array(1))))).toBe('ENCRYPTION_CONTEXT_INVALID')
  })

  it('random bytes and random damage only ever give the stable codes', () => {
    const key = StreamKey.generate()
    const me = SealIdentity.fromSeed(randomBytes(32))
    const ct = encryptEntry(key, ectx, randomBytes(64))
    for (let i = 0; i < 2000; i++) {
      const junk = i % 2 === 0 ? randomBytes(i % 120) : flip(ct, i % ct.length, 1 + (i % 255))
      if (i % 4 === 0 && junk.length > 0) junk[0] = 1 // half the random inputs get past the version check
      expect(CODES).toContain(codeOf(() => decryptEntry(key, ectx, junk)))
      expect(CODES).toContain(codeOf(() => me.open(junk, ctx)))
    }
  })
})

describe('blinded ids', () => {
  it('equal within an epoch, different across records and epochs, unambiguous', () => {
    const key = StreamKey.generate()
    const b = blindId(key, 'orders', 'o-1')
    expect(b.length).toBe(BLIND_ID_BYTES)
    expect(b[0]).toBe(1)
    expect(hex(blindId(new StreamKey(key.bytes), 'orders', 'o-1'))).toBe(hex(b))
    expect(hex(blindId(key, 'orders', 'o-2'))).not.toBe(hex(b))
    expect(hex(blindId(key, 'order', 'so-1'))).not.toBe(hex(b))
    expect(hex(blindId(key, 'a', 'bc'))).not.toBe(hex(blindId(key, 'ab', 'c')))
    expect(hex(blindId(StreamKey.generate(), 'orders', 'o-1'))).not.toBe(hex(b))
    expect(checkBlindId(b)).toBe(b)
    expect(codeOf(() => checkBlindId(b.subarray(0, 16)))).toBe('CIPHERTEXT_TRUNCATED')
    expect(codeOf(() => checkBlindId(new Uint8Array(0)))).toBe('CIPHERTEXT_TRUNCATED')
    expect(codeOf(() => checkBlindId(Buffer.concat([b, Buffer.from([0])])))).toBe('CIPHERTEXT_INVALID')
    expect(codeOf(() => checkBlindId(flip(b, 0, 0x04)))).toBe('CIPHERTEXT_VERSION_UNSUPPORTED')
    expect(codeOf(() => blindId(key, 'orders', 'x'.repeat(70_000)))).toBe('ENCRYPTION_CONTEXT_INVALID')
  })
})

describe('epoch keys derived from the origin\'s identity', () => {
  it('the same identity and context give the same key; another origin, stream, epoch or identity another one, and none is a random key or the seed', async () => {
    const key = await generateKeyPair('Ed25519')
    const other = await generateKeyPair('Ed25519')
    const origin = peerIdFromPrivateKey(key).toString()
    const c: StreamContext = { origin, stream: 'r.0123456789abcdef0123', epoch: 2 }
    const k = hex(deriveStreamKey(key, c).bytes)
    expect(hex(deriveStreamKey(key, { ...c }).bytes)).toBe(k)
    expect(hex(deriveStreamKey(key.raw.subarray(0, 32), c).bytes)).toBe(k)
    const variants = [
      deriveStreamKey(key, { ...c, origin: peerIdFromPrivateKey(other).toString() }),
      deriveStreamKey(key, { ...c, stream: 'r.0123456789abcdef0124' }),
      deriveStreamKey(key, { ...c, epoch: 1 }),
      deriveStreamKey(key, { ...c, epoch: 3 }),
      deriveStreamKey(other, c),
      StreamKey.generate()
    ].map(v => hex(v.bytes))
    expect(new Set([k, ...variants]).size).toBe(variants.length + 1)
    expect(k).not.toBe(hex(key.raw.subarray(0, 32)))
    // the keys derived from it differ too: an entry under one epoch does not open under the next
    const sealed = encryptEntry(deriveStreamKey(key, c), { ...c, seq: 1 }, Buffer.from('x'))
    expect(codeOf(() => decryptEntry(deriveStreamKey(key, { ...c, epoch: 3 }), { ...c, seq: 1 }, sealed))).toBe('CIPHERTEXT_INVALID')
    expect(Buffer.from(decryptEntry(deriveStreamKey(key, c), { ...c, seq: 1 }, sealed)).toString()).toBe('x')
  })

  it('only an Ed25519 identity or a 32-byte seed derives, within the context\'s bounds', async () => {
    const rsa = { type: 'RSA', raw: new Uint8Array(64) } as unknown as Parameters<typeof deriveStreamKey>[0]
    expect(codeOf(() => deriveStreamKey(rsa, ctx))).toBe('ENCRYPTION_KEY_INVALID')
    expect(codeOf(() => deriveStreamKey(new Uint8Array(31), ctx))).toBe('ENCRYPTION_KEY_INVALID')
    expect(codeOf(() => deriveStreamKey(new Uint8Array(32), { ...ctx, epoch: 2 ** 32 }))).toBe('ENCRYPTION_CONTEXT_INVALID')
    expect(codeOf(() => deriveStreamKey(new Uint8Array(32), { ...ctx, stream: 'x'.repeat(70_000) }))).toBe('ENCRYPTION_CONTEXT_INVALID')
  })
})

describe('protocols/sync/encryption.md test vectors', () => {
  const vectors = specVectors()

  it('the spec has every vector', () => {
    expect([...vectors.keys()].sort()).toEqual(['blind/1', 'ed25519-to-x25519', 'entry/1', 'epoch-key/1', 'seal/1', 'x25519'])
  })

  it('epoch-key/1: the module derives the epoch key from the origin\'s identity; the spec\'s HKDF gives the same bytes', async () => {
    const v = vectors.get('epoch-key/1')!
    const seed = unhex(v['origin seed'])
    const key = await generateKeyPairFromSeed('Ed25519', seed)
    expect(peerIdFromPrivateKey(key).toString()).toBe(v.origin)
    const c: StreamContext = { origin: v.origin, stream: v.stream, epoch: Number(v.epoch) }
    expect(hex(deriveStreamKey(key, c).bytes)).toBe(v['epoch key'])
    expect(hex(deriveStreamKey(seed, c).bytes)).toBe(v['epoch key'])
    // from the spec: info = label ‖ 0x01 ‖ str(origin) ‖ str(stream) ‖ u32be(epoch), HKDF-SHA256 with an empty salt
    const str = (x: string): Buffer => Buffer.concat([Buffer.from([0, Buffer.byteLength(x)]), Buffer.from(x)])
    const epoch = Buffer.alloc(4)
    epoch.writeUInt32BE(c.epoch)
    const info = Buffer.concat([Buffer.from('syncmesh/stream-epoch-key/1\0'), Buffer.from([1]), str(v.origin), str(v.stream), epoch])
    expect(info.toString('hex')).toBe(v['hkdf info'])
    expect(hex(new Uint8Array(hkdfSync('sha256', seed, Buffer.alloc(0), info, 32)))).toBe(v['epoch key'])
  })

  it('seal/1: the module produces the envelope and opens it; the spec\'s steps give the same bytes', async () => {
    const v = vectors.get('seal/1')!
    const seed = unhex(v['recipient seed'])
    const key = await generateKeyPairFromSeed('Ed25519', seed)
    expect(hex(key.publicKey.raw)).toBe(v['recipient ed25519 public'])
    expect(peerIdFromPrivateKey(key).toString()).toBe(v['recipient peer id'])
    const c: StreamContext = { origin: v.origin, stream: v.stream, epoch: Number(v.epoch) }
    const env = sealWithEphemeral(v['recipient peer id'], unhex(v.plaintext), c, unhex(v['ephemeral secret']))
    expect(hex(env)).toBe(v.envelope)
    expect(hex(SealIdentity.fromPrivateKey(key).open(env, c))).toBe(v.plaintext)
    // from the spec, step by step
    const R = montgomeryU(unhex(v['recipient ed25519 public']))
    expect(hex(R)).toBe(v['recipient x25519 public'])
    expect(hex(x25519SecretFromEd25519Seed(seed))).toBe(v['recipient x25519 secret'])
    expect(hex(x25519Base(unhex(v['ephemeral secret'])))).toBe(v['ephemeral public'])
    expect(hex(x25519(unhex(v['ephemeral secret']), R))).toBe(v.shared)
    expect(hex(x25519(unhex(v['recipient x25519 secret']), unhex(v['ephemeral public'])))).toBe(v.shared)
    const info = Buffer.concat([Buffer.from('syncmesh/seal/1\0'), unhex(v['ephemeral public']), R])
    expect(hex(info)).toBe(v['hkdf info'])
    const sealKey = Buffer.from(hkdfSync('sha256', unhex(v.shared), Buffer.alloc(0), info, 32))
    expect(hex(sealKey)).toBe(v['seal key'])
    expect(hex(specAad(c))).toBe(v.aad)
    const body = unhex(v.envelope).subarray(33)
    expect(hex(gcmOpen(sealKey, Buffer.alloc(12), unhex(v.aad), body))).toBe(v.plaintext)
  })

  it('entry/1: derived keys, AAD and ciphertext', () => {
    const v = vectors.get('entry/1')!
    const key = new StreamKey(unhex(v['epoch key']))
    expect(hex(key.entryKey)).toBe(v['entry key'])
    expect(hex(key.blindKey)).toBe(v['blind key'])
    expect(hex(Buffer.from(hkdfSync('sha256', unhex(v['epoch key']), Buffer.alloc(0), Buffer.from('syncmesh/stream-entry/1\0'), 32)))).toBe(v['entry key'])
    expect(hex(Buffer.from(hkdfSync('sha256', unhex(v['epoch key']), Buffer.alloc(0), Buffer.from('syncmesh/stream-blind/1\0'), 32)))).toBe(v['blind key'])
    const c: EntryContext = { origin: v.origin, stream: v.stream, epoch: Number(v.epoch), seq: Number(v.seq) }
    const aad = Buffer.concat([specAad(c), Buffer.from(BigInt(c.seq).toString(16).padStart(16, '0'), 'hex')])
    expect(hex(aad)).toBe(v.aad)
    const ct = encryptEntryWithNonce(key, c, Buffer.from(v.plaintext), unhex(v.nonce))
    expect(hex(ct)).toBe(v.encrypted)
    expect(Buffer.from(decryptEntry(key, c, ct)).toString()).toBe(v.plaintext)
    expect(Buffer.from(gcmOpen(unhex(v['entry key']), unhex(v.nonce), aad, ct.subarray(13))).toString()).toBe(v.plaintext)
  })

  it('blind/1: HMAC input and blinded id', () => {
    const v = vectors.get('blind/1')!
    const key = new StreamKey(unhex(v['epoch key']))
    expect(hex(key.blindKey)).toBe(v['blind key'])
    const input = Buffer.concat([u16(v.collection.length), Buffer.from(v.collection), u16(v.id.length), Buffer.from(v.id)])
    expect(hex(input)).toBe(v['hmac input'])
    expect('01' + createHmac('sha256', unhex(v['blind key'])).update(input).digest('hex').slice(0, 32)).toBe(v.blinded)
    expect(hex(blindId(key, v.collection, v.id))).toBe(v.blinded)
  })
})

function u16 (n: number): Buffer {
  const b = Buffer.alloc(2)
  b.writeUInt16BE(n)
  return b
}

/** 0x01 ‖ str(origin) ‖ str(stream) ‖ u32be(epoch), written from the spec (ASCII fields). */
function specAad (c: StreamContext): Buffer {
  const epoch = Buffer.alloc(4)
  epoch.writeUInt32BE(c.epoch)
  return Buffer.concat([Buffer.from([1]), u16(c.origin.length), Buffer.from(c.origin), u16(c.stream.length), Buffer.from(c.stream), epoch])
}

function gcmOpen (key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, body: Uint8Array): Uint8Array {
  const d = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: 16 })
  d.setAAD(aad)
  d.setAuthTag(body.subarray(body.length - 16))
  return Buffer.concat([d.update(body.subarray(0, body.length - 16)), d.final()])
}
