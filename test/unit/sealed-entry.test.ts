/**
 * Encrypted rule stream entries (src/log/sealed-entry.ts): what a relay sees
 * of one, that it opens only with its stream's key and only where it was
 * written (origin, stream, epoch, seq), and that the wire refuses encrypted
 * entries, unmatch ops and target ids outside rule streams.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { beforeAll, describe, expect, it } from 'vitest'
import { ProtocolError } from '../../src/core/errors.js'
import { decodeEntry, encodeEntry, newEntry, toPbEntry } from '../../src/log/entry.js'
import type { LogEntry } from '../../src/log/entry.js'
import { logId } from '../../src/log/log-id.js'
import { decryptEntry, encryptEntry, EncryptionError, StreamKey } from '../../src/log/seal.js'
import { blindedIdHex, openEntry, sealEntry } from '../../src/log/sealed-entry.js'
import { decodeFrame } from '../../src/network/sync/codec.js'
import { Frame } from '../../src/wire/pb/sync.js'

let PEER: string
let PEER_B: string
let STREAM: string
const enc = new TextEncoder()

beforeAll(async () => {
  PEER = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
  PEER_B = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
  STREAM = logId(PEER, 'r.0123456789abcdef0123')
})

function plain (over: Partial<LogEntry> = {}): LogEntry {
  const op = over.op ?? 'put'
  return newEntry(over.origin ?? STREAM, over.seq ?? 7, { wall: 1_700_000_000_000, logical: 3 }, over.collection ?? 'posts', over.id ?? 'p1', op,
    op === 'put' ? over.value ?? enc.encode('{"title":"SECRET TITLE"}') : undefined, over.writer ?? PEER, 4, undefined, over.targetId)
}

function expectCode (fn: () => unknown, code: string): void {
  let caught: unknown
  try { fn() } catch (err) { caught = err }
  expect(caught).toBeInstanceOf(EncryptionError)
  expect((caught as EncryptionError).code).toBe(code)
}

describe('sealed stream entries', () => {
  it('a relay sees the place, clock, op and writer, and a blinded id; the record and its value only open with the key', () => {
    const key = StreamKey.generate()
    // names long enough that random ciphertext bytes never spell them by chance
    const p = plain({ id: 'record-id-1', targetId: 'slug-target-1' })
    const s = sealEntry(key, 1, p)
    expect(s).toMatchObject({ origin: STREAM, seq: 7, hlc: p.hlc, op: 'put', writer: PEER, epoch: 1, collection: '$sealed' })
    expect(s.id).toMatch(/^01[0-9a-f]{32}$/)
    expect(s.id).toBe(blindedIdHex(key, 'posts', 'record-id-1'))
    expect(s.targetId).toBeUndefined()
    const bytes = encodeEntry(s)
    expect(Buffer.from(bytes).toString('latin1')).not.toMatch(/SECRET|posts|record-id|slug-target/)
    // stored and sent as bytes, decoded by a relay or a target, then opened by the target
    const opened = openEntry(key, decodeEntry(STREAM, bytes))
    expect({ ...opened, bytes: undefined }).toEqual({ ...p, bytes: undefined })
  })

  it('deletes and unmatches carry the record they name, encrypted', () => {
    const key = StreamKey.generate()
    for (const op of ['del', 'unmatch'] as const) {
      const s = sealEntry(key, 2, plain({ op, id: 'gone' }))
      expect(s.value?.byteLength).toBeGreaterThan(0)
      const back = decodeEntry(STREAM, encodeEntry(s))
      expect(back.value).toBeDefined()
      const opened = openEntry(key, back)
      expect(opened).toMatchObject({ op, collection: 'posts', id: 'gone', value: undefined })
    }
  })

  it('the same record has the same blinded id within an epoch key and another one under another key', () => {
    const a = StreamKey.generate()
    const b = StreamKey.generate()
    expect(sealEntry(a, 1, plain({ seq: 1 })).id).toBe(sealEntry(a, 1, plain({ seq: 2 })).id)
    expect(sealEntry(a, 1, plain({ id: 'p2' })).id).not.toBe(sealEntry(a, 1, plain()).id)
    expect(sealEntry(b, 1, plain()).id).not.toBe(sealEntry(a, 1, plain()).id)
  })

  it('another key, another seq, epoch or stream, or altered bytes do not open (CIPHERTEXT_INVALID)', () => {
    const key = StreamKey.generate()
    const s = sealEntry(key, 1, plain())
    expectCode(() => openEntry(StreamKey.generate(), s), 'CIPHERTEXT_INVALID')
    expectCode(() => openEntry(key, { ...s, seq: 8 }), 'CIPHERTEXT_INVALID')
    expectCode(() => openEntry(key, { ...s, epoch: 2 }), 'CIPHERTEXT_INVALID')
    expectCode(() => openEntry(key, { ...s, origin: logId(PEER, 'r.ffffffffffffffffffff') }), 'CIPHERTEXT_INVALID')
    const altered = new Uint8Array(s.value as Uint8Array)
    altered[altered.length - 1] ^= 1
    expectCode(() => openEntry(key, { ...s, value: altered }), 'CIPHERTEXT_INVALID')
  })

  it('a blinded id that is not the payload\'s record\'s is refused: a relay cannot make one record pass for another in compaction', () => {
    const key = StreamKey.generate()
    const s = sealEntry(key, 1, plain())
    expectCode(() => openEntry(key, { ...s, id: blindedIdHex(key, 'posts', 'other') }), 'CIPHERTEXT_INVALID')
  })

  it('a delete naming the write it removes carries it in the ciphertext (payload version 2); every other entry stays version 1', () => {
    const key = StreamKey.generate()
    const prev = { origin: PEER_B, hlc: { wall: 1_699_999_999_999, logical: 2 } }
    const del = newEntry(STREAM, 9, { wall: 1_700_000_000_000, logical: 3 }, 'events', 'e1', 'del', undefined, PEER, 0, prev)
    const s = sealEntry(key, 1, del)
    // a relay sees no removed write: not in clear, not in the bytes
    expect(s.prev).toBeUndefined()
    const back = decodeEntry(STREAM, encodeEntry(s))
    expect(back.prev).toBeUndefined()
    expect(Buffer.from(encodeEntry(s)).toString('latin1')).not.toContain(PEER_B)
    expect(openEntry(key, back)).toMatchObject({ op: 'del', collection: 'events', id: 'e1', prev })
    const payloadVersion = (e: LogEntry): number => decryptEntry(key, { origin: PEER, stream: 'r.0123456789abcdef0123', epoch: 1, seq: e.seq }, e.value as Uint8Array)[0]
    expect(payloadVersion(s)).toBe(2)
    expect(payloadVersion(sealEntry(key, 1, plain({ op: 'del' })))).toBe(1)
    expect(payloadVersion(sealEntry(key, 1, plain()))).toBe(1)
  })

  it('a version 2 payload that is not a delete, names no peer, or is cut short is refused (CIPHERTEXT_INVALID); an unknown version is CIPHERTEXT_VERSION_UNSUPPORTED', () => {
    const key = StreamKey.generate()
    const str = (s: string): Buffer => Buffer.concat([Buffer.from([0, Buffer.byteLength(s)]), Buffer.from(s)])
    const clock = Buffer.alloc(12)
    clock.writeBigUInt64BE(1_700_000_000_000n, 0)
    const body = (origin: string, tail = clock): Buffer => Buffer.concat([Buffer.from([2]), str('events'), str('e1'), str(''), str(origin), tail])
    const sealed = (op: 'put' | 'del', payload: Buffer): LogEntry => {
      const ciphertext = encryptEntry(key, { origin: PEER, stream: 'r.0123456789abcdef0123', epoch: 1, seq: 9 }, payload)
      return newEntry(STREAM, 9, { wall: 1_700_000_000_000, logical: 3 }, '$sealed', blindedIdHex(key, 'events', 'e1'), op, ciphertext, PEER, 0, undefined, undefined, 1)
    }
    expect(openEntry(key, sealed('del', body(PEER_B))).prev?.origin).toBe(PEER_B)
    expectCode(() => openEntry(key, sealed('del', body('not a peer'))), 'CIPHERTEXT_INVALID')
    expectCode(() => openEntry(key, sealed('del', body(PEER_B, clock.subarray(0, 11)))), 'CIPHERTEXT_INVALID')
    expectCode(() => openEntry(key, sealed('del', body(PEER_B, Buffer.concat([clock, Buffer.from([0])])))), 'CIPHERTEXT_INVALID')
    const huge = Buffer.alloc(12, 0xff)
    expectCode(() => openEntry(key, sealed('del', body(PEER_B, huge))), 'CIPHERTEXT_INVALID')
    expectCode(() => openEntry(key, sealed('put', body(PEER_B))), 'CIPHERTEXT_INVALID')
    const v3 = body(PEER_B)
    v3[0] = 3
    expectCode(() => openEntry(key, sealed('del', v3)), 'CIPHERTEXT_VERSION_UNSUPPORTED')
  })

  it('only a stream\'s entries are encrypted', () => {
    expectCode(() => sealEntry(StreamKey.generate(), 1, plain({ origin: PEER })), 'ENCRYPTION_CONTEXT_INVALID')
  })
})

describe('the wire: rule stream entries', () => {
  function frame (origin: string, entries: LogEntry[]): Uint8Array {
    return Frame.encode({ batch: { origin, fromSeq: 0, toSeq: entries[entries.length - 1].seq, entries: entries.map(toPbEntry) } })
  }
  function invalid (payload: Uint8Array, pattern: RegExp): void {
    let caught: unknown
    try { decodeFrame(payload) } catch (err) { caught = err }
    expect(caught).toBeInstanceOf(ProtocolError)
    expect((caught as ProtocolError).code).toBe('FRAME_INVALID')
    expect((caught as ProtocolError).message).toMatch(pattern)
  }

  it('an encrypted entry, an unmatch and a target id pass in a rule stream', () => {
    const key = StreamKey.generate()
    const m = decodeFrame(frame(STREAM, [sealEntry(key, 1, plain({ seq: 1 })), plain({ seq: 2, op: 'unmatch' }), plain({ seq: 3, targetId: 't' })]))
    expect(m.type).toBe('batch')
  })

  it('is refused outside a rule stream: in a whole log, or in a stream that is not a rule\'s', () => {
    const key = StreamKey.generate()
    for (const origin of [PEER, logId(PEER, 'reg')]) {
      invalid(frame(origin, [sealEntry(key, 1, plain({ seq: 1, origin: STREAM }))]), /encrypted outside a rule stream/)
      invalid(frame(origin, [plain({ seq: 1, origin, op: 'unmatch' })]), /only a rule stream's entries do/)
      invalid(frame(origin, [plain({ seq: 1, origin, targetId: 't' })]), /only a rule stream's entries do/)
    }
  })

  it('an encrypted entry naming a record in clear, a malformed blinded id, or a payload out of bounds is refused', () => {
    const key = StreamKey.generate()
    const s = sealEntry(key, 1, plain({ seq: 1 }))
    invalid(frame(STREAM, [{ ...s, collection: 'posts' }]), /names a collection, id or target id in clear/)
    invalid(frame(STREAM, [{ ...s, id: 'p1' }]), /names a collection, id or target id in clear/)
    invalid(frame(STREAM, [{ ...s, targetId: 'x' }]), /names a collection, id or target id in clear/)
    invalid(frame(STREAM, [{ ...s, value: new Uint8Array(10) }]), /encrypted payload of 10 bytes/)
    invalid(frame(STREAM, [{ ...s, value: new Uint8Array(2 * 1024 * 1024) }]), /encrypted payload of/)
    invalid(frame(STREAM, [{ ...s, epoch: undefined }]), /without an epoch/)
  })
})
