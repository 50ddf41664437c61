/**
 * The rule stream entry target of the fuzzer: encrypted entries whose
 * payload (src/log/sealed-entry.ts) is built field by field by a hostile
 * origin, which holds the stream's key, so every mutation passes the AEAD
 * and reaches the payload's reader. Each case draws a structure (payload
 * version, collection, id, target id, op, value, declared string lengths,
 * trailing bytes, the blinded id, the position the ciphertext is bound to),
 * encrypts it, and opens it as a target does (openEntry, then the value's
 * bounds: Ingestor.openFor).
 *
 * The oracle is exact: the entry must be accepted if and only if the drawn
 * structure is valid (version 1, or version 2 for a delete naming the write
 * it removes, with a peer id and a clock in range; every length as declared,
 * a collection, id and target id the codec takes in clear, a value only on a
 * put and then a JSON object within bounds, the blinded id of its record,
 * its own position), and an accepted entry must hold exactly what was drawn. A
 * refusal must be an EncryptionError with a stable code; anything else
 * thrown is a failure.
 */
import { newEntry } from '../../src/log/entry.js'
import type { LogEntry } from '../../src/log/entry.js'
import { isPeerId, logId } from '../../src/log/log-id.js'
import { blindedIdHex, openEntry } from '../../src/log/sealed-entry.js'
import { EncryptionError, encryptEntry, StreamKey } from '../../src/log/seal.js'
import { checkPutValue, MAX_ENTRY_VALUE_BYTES } from '../../src/network/sync/codec.js'
import { isValidCollection, isValidId, SEALED_COLLECTION } from '../../src/store/names.js'
import { Rand } from './fuzz.js'
import type { FuzzStats } from './fuzz.js'

const ORIGIN = '12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUgdbCzJzdWKrWV'
const STREAM = 'r.0123456789abcdef0123'
const STREAM_LOG = logId(ORIGIN, STREAM)
const OPS = ['put', 'del', 'unmatch'] as const

/** A string field as drawn: its text, and whether a name or id check should take it. */
interface Drawn { text: string, bytes: Buffer }

const GOOD_NAMES = ['posts', 'a', 'devices-eu', 'x_1', 'z'.repeat(64)]
const GOOD_IDS = ['p1', 'ünïcode-id', '€/with/slashes', 'id with spaces', 'y'.repeat(512), '\u{1F600}']
const BAD_TEXTS = ['', 'a\u0000b', '\u0001', 'x\u007f', 'x\u0085', 'y'.repeat(513), 'p\nq', '$platforms', 'has space', '-lead']

function drawText (rand: Rand, good: readonly string[]): Drawn {
  if (rand.bool(0.1)) {
    // raw bytes: invalid UTF-8 is read with replacement characters (the blinded id covers what is read)
    const bytes = Buffer.from(rand.bytes(1 + rand.int(12)))
    return { text: bytes.toString('utf8'), bytes }
  }
  // what the bytes read as (a lone surrogate is encoded as a replacement character)
  const bytes = Buffer.from(rand.bool(0.7) ? rand.pick(good) : rand.pick(BAD_TEXTS), 'utf8')
  return { text: bytes.toString('utf8'), bytes }
}

/** A put's value: valid JSON objects, and what the bounds refuse. */
function drawValue (rand: Rand): Buffer {
  switch (rand.int(9)) {
    case 0: return Buffer.from('not json')
    case 1: return Buffer.from('[1,2]')
    case 2: return Buffer.concat([Buffer.of(0xef, 0xbb, 0xbf), Buffer.from('{"t":1}')])
    case 3: return Buffer.from('{"a":'.repeat(200) + '1' + '}'.repeat(200))
    case 4: return Buffer.from(JSON.stringify({ t: 'x'.repeat(MAX_ENTRY_VALUE_BYTES) }))
    case 5: return Buffer.from(rand.bytes(rand.int(40)))
    case 6: return Buffer.alloc(0)
    default: return Buffer.from(JSON.stringify({ title: `t${rand.int(1000)}`, n: rand.int(100), nested: { ok: rand.bool() } }))
  }
}

/** The write a version 2 payload names as removed: its origin as drawn, and its clock. */
interface DrawnPrev { origin: Drawn, wall: bigint, logical: number }

const PREV_ORIGINS = [ORIGIN, '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo', 'bafzaajaiaejcbzdibmxyzdjbtnlyzd2lvtkfq3r3xdvgyecljlgm6tkoqpe5yamf']
const BAD_PREV_ORIGINS = ['', 'not a peer', '12D3KooW', `${ORIGIN}/r.1`, 'x'.repeat(200)]

function drawPrev (rand: Rand): DrawnPrev {
  const text = rand.bool(0.75) ? rand.pick(PREV_ORIGINS) : rand.pick(BAD_PREV_ORIGINS)
  const wall = rand.bool(0.9) ? BigInt(1_700_000_000_000 + rand.int(1_000_000)) : rand.pick([0n, BigInt(Number.MAX_SAFE_INTEGER), BigInt(Number.MAX_SAFE_INTEGER) + 1n, 2n ** 64n - 1n])
  return { origin: { text, bytes: Buffer.from(text) }, wall, logical: rand.int(2) === 0 ? rand.int(10) : 0xffffffff }
}

interface Structure {
  version: number
  /** Version 2: the write the delete removes (drawn for version 2 only; a version 2 drawn at random has none). */
  prev?: DrawnPrev
  /** Version 2: the removed write's clock cut short by this many bytes. */
  prevCut: number
  collection: Drawn
  id: Drawn
  targetId: Drawn
  op: typeof OPS[number]
  value: Buffer
  /** Declared length minus the real one, per string field (0: as declared). */
  skew: [number, number, number]
  trailing: Buffer
  /** The blinded id names another record. */
  otherBlinded: boolean
  /** The ciphertext is bound to another position (seq, epoch) than the entry's. */
  moved: boolean
}

function draw (rand: Rand): Structure {
  const op = rand.pick(OPS)
  const collection = drawText(rand, GOOD_NAMES)
  const id = drawText(rand, GOOD_IDS)
  const targetId = rand.bool(0.5) ? { text: '', bytes: Buffer.alloc(0) } : drawText(rand, GOOD_IDS)
  // a declared length off by some bytes, within what two bytes can declare
  const skew = (f: Drawn): number => {
    if (!rand.bool(0.06)) return 0
    const declared = Math.max(0, Math.min(0xffff, f.bytes.length + rand.pick([-3, -1, 1, 2, 200, 65535])))
    return declared - f.bytes.length
  }
  // version 2: mostly deletes, which may name the write they remove; some other ops
  const named = rand.bool(op === 'del' ? 0.4 : 0.04)
  return {
    version: named ? 2 : rand.bool(0.05) ? rand.int(256) : 1,
    ...(named ? { prev: drawPrev(rand) } : {}),
    prevCut: named && rand.bool(0.05) ? 1 + rand.int(12) : 0,
    collection,
    id,
    targetId,
    op,
    value: op === 'put' || rand.bool(0.08) ? drawValue(rand) : Buffer.alloc(0),
    skew: [skew(collection), skew(id), skew(targetId)],
    trailing: rand.bool(0.05) ? Buffer.from(rand.bytes(1 + rand.int(4))) : Buffer.alloc(0),
    otherBlinded: rand.bool(0.04),
    moved: rand.bool(0.04)
  }
}

function payloadOf (s: Structure): Buffer {
  const parts: Buffer[] = [Buffer.of(s.version)]
  const fields = [s.collection, s.id, s.targetId]
  for (let i = 0; i < 3; i++) {
    const len = Buffer.alloc(2)
    len.writeUInt16BE(fields[i].bytes.length + s.skew[i])
    parts.push(len, fields[i].bytes)
  }
  parts.push(s.value)
  if (s.prev !== undefined) {
    const len = Buffer.alloc(2)
    len.writeUInt16BE(s.prev.origin.bytes.length)
    const clock = Buffer.alloc(12)
    clock.writeBigUInt64BE(BigInt.asUintN(64, s.prev.wall), 0)
    clock.writeUInt32BE(s.prev.logical, 8)
    parts.push(len, s.prev.origin.bytes, clock.subarray(0, 12 - s.prevCut))
  }
  parts.push(s.trailing)
  return Buffer.concat(parts)
}

/** Why a version 2 structure is refused, or undefined when its removed write is valid. */
function prevRefusal (s: Structure): string | undefined {
  if (s.op !== 'del') return `a ${s.op} naming a write it removes`
  if (s.prev === undefined || s.prevCut > 0) return 'the removed write cut short'
  if (s.value.length > 0) return 'bytes before the removed write'
  if (!isPeerId(s.prev.origin.text)) return 'the removed write\'s origin'
  if (s.prev.wall > BigInt(Number.MAX_SAFE_INTEGER)) return 'the removed write\'s clock'
  return undefined
}

/** Whether a target must take the entry, and what it must read from it. */
function expected (s: Structure): { accept: boolean, why: string } {
  if (s.version !== 1 && s.version !== 2) return { accept: false, why: 'payload version' }
  if (s.moved) return { accept: false, why: 'bound to another position' }
  const prev = s.version === 2 ? prevRefusal(s) : undefined
  if (prev !== undefined) return { accept: false, why: prev }
  if (!isValidCollection(s.collection.text)) return { accept: false, why: 'collection' }
  if (!isValidId(s.id.text)) return { accept: false, why: 'id' }
  if (s.targetId.text !== '' && !isValidId(s.targetId.text)) return { accept: false, why: 'target id' }
  const tail = Buffer.concat([s.value, s.trailing])
  if (s.op !== 'put' && tail.length > 0) return { accept: false, why: `a ${s.op} with bytes after its strings` }
  if (s.otherBlinded) return { accept: false, why: 'the blinded id' }
  if (s.op === 'put' && 'problem' in checkPutValue(tail)) return { accept: false, why: 'the value' }
  return { accept: true, why: 'valid' }
}

function sealedEntry (key: StreamKey, s: Structure, seq: number): LogEntry {
  const blinded = blindedIdHex(key, s.collection.text, s.otherBlinded ? `${s.id.text}-other` : s.id.text)
  const ciphertext = encryptEntry(key, { origin: ORIGIN, stream: STREAM, epoch: 1, seq: s.moved ? seq + 1 : seq }, payloadOf(s))
  return newEntry(STREAM_LOG, seq, { wall: 1_700_000_000_000 + seq, logical: 0 }, SEALED_COLLECTION, blinded, s.op, ciphertext, ORIGIN, seq, undefined, undefined, 1)
}

/** Open as a target does: the entry, then a put's value within bounds. Returns the problem, or the entry read. */
function openAsTarget (key: StreamKey, entry: LogEntry): { refused: string } | { opened: LogEntry } {
  try {
    const opened = openEntry(key, entry)
    if (opened.value !== undefined) {
      const checked = checkPutValue(opened.value)
      if ('problem' in checked) return { refused: 'VALUE' }
    }
    return { opened }
  } catch (err) {
    if (err instanceof EncryptionError) return { refused: err.code }
    throw err
  }
}

function sameAsDrawn (s: Structure, e: LogEntry): string | undefined {
  if (e.collection !== s.collection.text) return 'the collection read is not the one drawn'
  if (e.id !== s.id.text) return 'the id read is not the one drawn'
  // a target id equal to the id is the id (newEntry)
  if ((e.targetId ?? '') !== (s.targetId.text === s.id.text ? '' : s.targetId.text)) return 'the target id read is not the one drawn'
  if (e.op !== s.op) return 'the op changed'
  if (s.op === 'put' && !Buffer.from(e.value ?? new Uint8Array(0)).equals(Buffer.concat([s.value, s.trailing]))) return 'the value read is not the one drawn'
  if (s.op !== 'put' && e.value !== undefined) return `a ${s.op} read with a value`
  if (s.prev === undefined ? e.prev !== undefined : e.prev?.origin !== s.prev.origin.text || BigInt(e.prev.hlc.wall) !== s.prev.wall || e.prev.hlc.logical !== s.prev.logical) return 'the removed write read is not the one drawn'
  return undefined
}

/** What is wrong with an entry a target took, as it read it (undefined: nothing). */
function invalidAsRead (key: StreamKey, sealed: LogEntry, e: LogEntry): string | undefined {
  if (!isValidCollection(e.collection)) return 'accepted an invalid collection'
  if (!isValidId(e.id) || (e.targetId !== undefined && !isValidId(e.targetId))) return 'accepted an invalid id or target id'
  if (blindedIdHex(key, e.collection, e.id) !== sealed.id) return 'accepted a record its blinded id does not name'
  if (e.op === 'put' && (e.value === undefined || 'problem' in checkPutValue(e.value))) return 'accepted a put without a valid value'
  if (e.op !== 'put' && e.value !== undefined) return `accepted a ${e.op} with a value`
  if (e.prev !== undefined && (e.op !== 'del' || !isPeerId(e.prev.origin) || !Number.isSafeInteger(e.prev.hlc.wall))) return 'accepted a removed write that is not valid'
  return undefined
}

export function fuzzSealed (options: { seed: number, cases: number }): FuzzStats {
  const rand = new Rand(options.seed)
  const key = new StreamKey(Buffer.from(rand.bytes(32)))
  const stats: FuzzStats = { target: 'sealed', cases: 0, ms: 0, outcomes: {}, failures: [], slowestMs: 0 }
  const started = performance.now()
  for (let i = 0; i < options.cases; i++) {
    const t0 = performance.now()
    const s = draw(rand)
    const want = expected(s)
    const entry = sealedEntry(key, s, i + 1)
    let problem: string | undefined
    let outcome: string
    try {
      const got = openAsTarget(key, entry)
      if (s.skew.some(k => k !== 0)) {
        // a length declared longer or shorter reads other strings (trailing bytes may complete them): what
        // is taken must be valid as read
        outcome = 'opened' in got ? 'accepted (shifted)' : `refused (${got.refused})`
        if ('opened' in got) problem = invalidAsRead(key, entry, got.opened)
      } else if ('opened' in got) {
        outcome = 'accepted'
        problem = want.accept ? sameAsDrawn(s, got.opened) : `accepted an entry whose ${want.why} is invalid`
      } else {
        outcome = `refused (${got.refused})`
        if (want.accept) problem = `refused a valid entry: ${got.refused}`
      }
    } catch (err) {
      outcome = 'threw'
      problem = `threw ${(err as Error)?.name}: ${(err as Error)?.message}`
    }
    stats.outcomes[outcome] = (stats.outcomes[outcome] ?? 0) + 1
    if (problem !== undefined) {
      stats.failures.push({ target: 'sealed', seed: options.seed, case: i, problem, input: JSON.stringify({ ...s, prev: s.prev === undefined ? undefined : { origin: s.prev.origin.text.slice(0, 80), wall: String(s.prev.wall), logical: s.prev.logical }, collection: s.collection.text, id: s.id.text.slice(0, 80), targetId: s.targetId.text.slice(0, 80), value: s.value.toString('latin1').slice(0, 80), trailing: s.trailing.toString('hex') }) })
    }
    stats.cases++
    stats.slowestMs = Math.max(stats.slowestMs, performance.now() - t0)
  }
  stats.ms = performance.now() - started
  return stats
}
