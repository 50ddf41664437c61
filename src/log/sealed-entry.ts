/**
 * Encrypted rule stream entries (protocols/sync/streams.md §3,
 * encryption.md §5–6). What a node outside a stream's audience stores and
 * forwards: the entry's place (origin, stream, seq), its clock, its op and
 * the write it carries (writer) are in clear, so the log layer signs,
 * verifies, compacts and serves it as any entry; the record's collection,
 * id, target id and value are in the ciphertext, and the entry names
 * collection `$sealed` and, as its id, its blinded id in hex (the same for
 * the same record within an epoch, so a relay keeps the newest entry per
 * record without learning which record it is).
 *
 * Payload (plaintext of the ciphertext), version 1:
 *   0x01 ‖ str(collection) ‖ str(id) ‖ str(target id, "" when none) ‖ value (a put's JSON text; empty otherwise)
 * where str(s) = u16be(byte length) ‖ UTF-8 bytes.
 *
 * Version 2, a delete naming the write it removes (LogEntry.prev), written
 * only for such a delete (every other entry is version 1):
 *   0x02 ‖ str(collection) ‖ str(id) ‖ str(target id) ‖ str(prev origin) ‖ u64be(prev HLC wall) ‖ u32be(prev HLC logical)
 * The removed write's identity is in the ciphertext: a relay does not learn
 * which entry of another stream the delete answers.
 */
import { EncryptionError, blindId, decryptEntry, encryptEntry } from './seal.js'
import type { StreamKey } from './seal.js'
import { newEntry } from './entry.js'
import type { LogEntry, WriteId } from './entry.js'
import { isPeerId, parseLogId } from './log-id.js'
import { isValidCollection, isValidId, SEALED_COLLECTION } from '../store/names.js'

const PAYLOAD_VERSION = 1
/** The payload of a delete naming the write it removes. */
const PAYLOAD_VERSION_PREV = 2
/** The removed write's clock in a version 2 payload: u64be wall, u32be logical. */
const PREV_CLOCK_BYTES = 12

/** The hex of a record's blinded id in one epoch of a stream: an encrypted entry's id. */
export function blindedIdHex (key: StreamKey, collection: string, id: string): string {
  return Buffer.from(blindId(key, collection, id)).toString('hex')
}

/** Writes str(s) at `at` of `out`; returns the position after it. */
function putStr (out: Buffer, at: number, s: string, length: number): number {
  out.writeUInt16BE(length, at)
  out.write(s, at + 2, length, 'utf8')
  return at + 2 + length
}

/**
 * `plain` (an entry of stream log `plain.origin`, in clear) encrypted under
 * `key`, the stream's key of `epoch`: the entry its origin signs and sends.
 * `blinded`: the record's blinded id under `key`, when the caller has it.
 */
export function sealEntry (key: StreamKey, epoch: number, plain: LogEntry, blinded = blindedIdHex(key, plain.collection, plain.id)): LogEntry {
  const { peer, stream } = parseLogId(plain.origin)
  if (stream === undefined) throw new EncryptionError('ENCRYPTION_CONTEXT_INVALID', `only a stream's entries are encrypted, not ${plain.origin}'s whole log`)
  const targetId = plain.targetId ?? ''
  const value = plain.op === 'put' ? plain.value : undefined
  const prev = plain.op === 'del' ? plain.prev : undefined
  // the payload in one buffer (sealed once per entry a stream sends)
  const c = Buffer.byteLength(plain.collection)
  const i = Buffer.byteLength(plain.id)
  const t = Buffer.byteLength(targetId)
  const p = prev !== undefined ? Buffer.byteLength(prev.origin) : 0
  const payload = Buffer.allocUnsafe(1 + 2 + c + 2 + i + 2 + t + (value?.byteLength ?? 0) + (prev !== undefined ? 2 + p + PREV_CLOCK_BYTES : 0))
  payload[0] = prev !== undefined ? PAYLOAD_VERSION_PREV : PAYLOAD_VERSION
  let at = putStr(payload, 1, plain.collection, c)
  at = putStr(payload, at, plain.id, i)
  at = putStr(payload, at, targetId, t)
  if (value !== undefined) payload.set(value, at)
  if (prev !== undefined) {
    at = putStr(payload, at, prev.origin, p)
    payload.writeBigUInt64BE(BigInt(prev.hlc.wall), at)
    payload.writeUInt32BE(prev.hlc.logical, at + 8)
  }
  const ciphertext = encryptEntry(key, { origin: peer, stream, epoch, seq: plain.seq }, payload)
  return newEntry(plain.origin, plain.seq, plain.hlc, SEALED_COLLECTION, blinded, plain.op, ciphertext, plain.writer, plain.writerSeq, undefined, undefined, epoch)
}

/**
 * The entry in clear: collection, id, target id and value from the
 * ciphertext, everything else as it is. Throws EncryptionError when the
 * ciphertext does not open under `key` or the payload is malformed (then the
 * entry's origin signed something no target can read: an offence of the
 * origin, not of the relay that passed it on), or when the blinded id is not
 * the payload's record's.
 */
export function openEntry (key: StreamKey, sealed: LogEntry): LogEntry {
  const { peer, stream } = parseLogId(sealed.origin)
  if (stream === undefined || sealed.epoch === undefined || sealed.value === undefined) throw new EncryptionError('CIPHERTEXT_INVALID', `entry ${sealed.seq} of ${sealed.origin} is not an encrypted stream entry`)
  const plain = decryptEntry(key, { origin: peer, stream, epoch: sealed.epoch, seq: sealed.seq }, sealed.value)
  const payload = Buffer.from(plain.buffer, plain.byteOffset, plain.byteLength)
  let pos = 1
  const read = (): string => {
    if (pos + 2 > payload.length) throw new EncryptionError('CIPHERTEXT_INVALID', `entry ${sealed.seq} of ${sealed.origin}: the payload is truncated`)
    const n = payload.readUInt16BE(pos)
    if (pos + 2 + n > payload.length) throw new EncryptionError('CIPHERTEXT_INVALID', `entry ${sealed.seq} of ${sealed.origin}: the payload is truncated`)
    const s = payload.toString('utf8', pos + 2, pos + 2 + n)
    pos += 2 + n
    return s
  }
  const version = payload.length < 1 ? undefined : payload[0]
  if (version !== PAYLOAD_VERSION && version !== PAYLOAD_VERSION_PREV) throw new EncryptionError('CIPHERTEXT_VERSION_UNSUPPORTED', `entry ${sealed.seq} of ${sealed.origin}: payload version ${version ?? 'none'} is not supported (this node reads versions ${PAYLOAD_VERSION} and ${PAYLOAD_VERSION_PREV})`)
  const collection = read()
  const id = read()
  const targetId = read()
  const value = sealed.op === 'put' ? new Uint8Array(payload.subarray(pos)) : undefined
  let prev: WriteId | undefined
  if (version === PAYLOAD_VERSION_PREV) {
    if (sealed.op !== 'del') throw new EncryptionError('CIPHERTEXT_INVALID', `entry ${sealed.seq} of ${sealed.origin}: a ${sealed.op} naming a write it removes`)
    prev = readPrev(sealed, payload, read(), pos)
    pos += PREV_CLOCK_BYTES
  }
  if (sealed.op !== 'put' && pos !== payload.length) throw new EncryptionError('CIPHERTEXT_INVALID', `entry ${sealed.seq} of ${sealed.origin}: a ${sealed.op} with a value`)
  // what the codec checks of an entry in clear: names and ids go into the store's keys, where "\0" separates parts
  if (!isValidCollection(collection)) throw new EncryptionError('CIPHERTEXT_INVALID', `entry ${sealed.seq} of ${sealed.origin}: the payload names an invalid collection`)
  if (!isValidId(id)) throw new EncryptionError('CIPHERTEXT_INVALID', `entry ${sealed.seq} of ${sealed.origin}: the payload names an invalid record id`)
  if (targetId !== '' && !isValidId(targetId)) throw new EncryptionError('CIPHERTEXT_INVALID', `entry ${sealed.seq} of ${sealed.origin}: the payload names an invalid target id`)
  if (blindedIdHex(key, collection, id) !== sealed.id) throw new EncryptionError('CIPHERTEXT_INVALID', `entry ${sealed.seq} of ${sealed.origin}: its blinded id is not its record's`)
  return newEntry(sealed.origin, sealed.seq, sealed.hlc, collection, id, sealed.op, value, sealed.writer, sealed.writerSeq, prev, targetId === '' ? undefined : targetId)
}

/** The removed write a delete's version 2 payload names: its origin (read before), then its clock at `at`. Its origin is a peer id. */
function readPrev (sealed: LogEntry, payload: Buffer, origin: string, at: number): WriteId {
  if (!isPeerId(origin) || at + PREV_CLOCK_BYTES > payload.length) throw new EncryptionError('CIPHERTEXT_INVALID', `entry ${sealed.seq} of ${sealed.origin}: the write it removes is malformed`)
  const wall = payload.readBigUInt64BE(at)
  if (wall > BigInt(Number.MAX_SAFE_INTEGER)) throw new EncryptionError('CIPHERTEXT_INVALID', `entry ${sealed.seq} of ${sealed.origin}: the clock of the write it removes is out of range`)
  return { origin, hlc: { wall: Number(wall), logical: payload.readUInt32BE(at + 8) } }
}
