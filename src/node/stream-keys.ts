/**
 * The keys of rule streams on one node (protocols/sync/streams.md §6,
 * encryption.md §3–4): the epoch keys of the streams this node is the
 * source of, kept in its database, and the keys of other nodes' streams it
 * is in the audience of, opened from the envelopes their origins sealed to
 * it (`$keys` registry records, id `<origin>/<stream>/<epoch>/<peer id>`,
 * value `{ "box": base64 }`).
 *
 * A stream starts at epoch 1; a new epoch (a new key) starts when a member
 * leaves its audience (rotate), so a removed target gets no key for what is
 * written after its removal. Every current member holds an envelope of
 * every epoch, so a member that joins reads the stream from its start.
 *
 * An own stream's epoch key is derived from the node's identity key, the
 * origin, the stream and the epoch (encryption.md §4, deriveStreamKey), and
 * kept: a source restored from a backup that lacks a key derives it again
 * when entries under it come back (recover). Keys an earlier build made at
 * random are used as they are; those are lost with the backup.
 */
import type { PrivateKey } from '@libp2p/interface'
import { compareHlc } from '../core/hlc.js'
import type { Hlc } from '../core/hlc.js'
import type { LogEntry } from '../log/entry.js'
import { deriveStreamKey, MAX_ENTRIES_PER_KEY, SEAL_OVERHEAD, SealIdentity, STREAM_KEY_BYTES, StreamKey, openStreamKey, sealStreamKey } from '../log/seal.js'
import { openEntry } from '../log/sealed-entry.js'
import { isPeerId, isStreamId, parseLogId, RULE_STREAM_PREFIX } from '../log/log-id.js'
import type { JsonObject } from '../core/types.js'
import type { Store, Txn } from '../store/db.js'
import { keys, keySuffix, prefixRange, SEP } from '../store/keys.js'
import { KEYS_COLLECTION, RULES_COLLECTION } from '../store/names.js'
import { decodeRecord } from '../store/records.js'

/** The epoch every stream starts at. */
export const FIRST_EPOCH = 1

const OWN_KEY_PREFIX = keys.meta(`stream-key${SEP}`)

/** The `$keys` record id of the envelope of `origin`'s stream key (`stream`, `epoch`) sealed to `peer`. */
export function envelopeId (origin: string, stream: string, epoch: number, peer: string): string {
  return `${origin}/${stream}/${epoch}/${peer}`
}

/** Whether `$keys` record `id` may be written by `origin`: only envelopes of its own streams. */
export function isOwnEnvelope (id: string, origin: string): boolean {
  return id.startsWith(`${origin}/`)
}

const EPOCH_PART = /^[1-9][0-9]{0,9}$/
/** Longest `box` of an envelope: twice the base64 of a sealed stream key (room for a later seal version). */
export const MAX_ENVELOPE_BOX_CHARS = 2 * 4 * Math.ceil((SEAL_OVERHEAD + STREAM_KEY_BYTES) / 3)

/**
 * Why `writer` (a peer id) may not write `$keys` record `id` (`op`, its
 * value `value`), or undefined when it may: an envelope of one of its own
 * rule streams, `<writer>/<rule stream>/<epoch>/<peer id>`, whose value is
 * `{ "box": base64 }` of at most MAX_ENVELOPE_BOX_CHARS characters.
 * Anything else in `$keys` is no envelope: it is refused, so that a member
 * cannot store what it likes, as large as it likes, on every node.
 */
export function envelopeRefusal (id: string, writer: string, op: string, value: JsonObject | undefined): string | undefined {
  if (!isOwnEnvelope(id, writer)) return `${writer} wrote the envelope ${id.slice(0, 200)} of another node's stream key`
  const parts = id.split('/')
  const epoch = Number(parts[2])
  if (parts.length !== 4 || !isStreamId(parts[1]) || !parts[1].startsWith(RULE_STREAM_PREFIX) || !EPOCH_PART.test(parts[2]) || epoch > 0xffffffff || !isPeerId(parts[3])) {
    return `${writer} wrote ${id.slice(0, 200)} in ${KEYS_COLLECTION}, which is not an envelope id (<origin>/<rule stream>/<epoch>/<peer id>)`
  }
  if (op !== 'put') return undefined
  const box = value?.box
  if (value === undefined || Object.keys(value).length !== 1 || typeof box !== 'string' || box.length > MAX_ENVELOPE_BOX_CHARS) {
    return `${writer} wrote the envelope ${id.slice(0, 200)} with a value that is not { "box": base64 } of at most ${MAX_ENVELOPE_BOX_CHARS} characters`
  }
  return undefined
}

/**
 * An own stream's epoch: its key, and how many entries the stream held when
 * it began (`start`); `recovered` when the key was derived again for entries
 * that came back from a peer (recover), not made here.
 */
interface OwnEpoch {
  epoch: number
  key: StreamKey
  start: number
  recovered?: true
}

/** The byte after a stored key's `start` that marks it recovered (its value is then 41 bytes). */
const RECOVERED = 1

/** An own stream's key as stored: its 32 bytes, u64be(start), and RECOVERED for a recovered one. */
function storedKey (key: StreamKey, start: number, recovered = false): Uint8Array {
  const value = Buffer.alloc(STREAM_KEY_BYTES + 8 + (recovered ? 1 : 0))
  value.set(key.bytes, 0)
  value.writeBigUInt64BE(BigInt(start), STREAM_KEY_BYTES)
  if (recovered) value[STREAM_KEY_BYTES + 8] = RECOVERED
  return value
}

/** Whether `key` opens stream entry `entry` (an entry its origin signed: one that opens is under that key). */
function opens (key: StreamKey, entry: LogEntry): boolean {
  try {
    openEntry(key, entry)
    return true
  } catch {
    return false
  }
}

/**
 * The envelopes an own stream lacks, given its epochs' keys (`epochs`), its
 * audience now (`targets`, peer ids) and the envelopes held (`held`): every
 * epoch's key for every target that holds no envelope of it (a member reads
 * the stream from its start). A recovered key (derived again after a
 * restore) goes to no peer that holds an envelope of an earlier epoch but
 * none of this one: that peer was out of the audience when the epoch began,
 * and the registry a restored node holds may still list it as a target; unless
 * the epoch is among `decidedAfter` (StreamKeys.decidedAfter): the targets
 * were decided after it began, and such a peer joined again since.
 */
export function missingEnvelopes<K> (epochs: ReadonlyArray<{ epoch: number, key: K, recovered?: true }>, targets: readonly string[], held: ReadonlyArray<{ epoch: number, peer: string }>, decidedAfter: ReadonlySet<number> = new Set()): Array<{ epoch: number, key: K, peer: string }> {
  const out: Array<{ epoch: number, key: K, peer: string }> = []
  for (const { epoch, key, recovered } of epochs) {
    for (const peer of targets) {
      if (held.some(e => e.epoch === epoch && e.peer === peer)) continue
      if (recovered === true && !decidedAfter.has(epoch) && held.some(e => e.epoch < epoch && e.peer === peer)) continue
      out.push({ epoch, key, peer })
    }
  }
  return out
}

export class StreamKeys {
  private readonly identity: SealIdentity
  /** The node's identity key: own epoch keys are derived from it. */
  readonly #privateKey: PrivateKey
  /** Own streams: `stream\0epoch` of the epochs whose key recover derived and found wrong (made at random by an earlier build). */
  private readonly unrecoverable = new Set<string>()
  /** Own streams: stream → its current epoch and key. */
  private readonly own = new Map<string, OwnEpoch>()
  /** Own streams: stream → every epoch's key, the current one first (read for every record a stream sends). */
  private readonly epochsOf = new Map<string, OwnEpoch[]>()
  /** Others' streams: `log id\0epoch` → the key opened from its envelope. */
  private readonly opened = new Map<string, StreamKey>()
  /** The entries an epoch key encrypts at most (encryption.md §5). */
  private readonly maxEntriesPerKey: number
  /** How many entries own stream `stream` holds (its log's held seq). */
  private readonly heldOf: (stream: string) => number

  constructor (private readonly store: Store, private readonly self: string, privateKey: PrivateKey, options: { heldOf?: (stream: string) => number, maxEntriesPerKey?: number } = {}) {
    this.identity = SealIdentity.fromPrivateKey(privateKey)
    this.#privateKey = privateKey
    this.heldOf = options.heldOf ?? (() => 0)
    this.maxEntriesPerKey = options.maxEntriesPerKey ?? MAX_ENTRIES_PER_KEY
    if (!Number.isSafeInteger(this.maxEntriesPerKey) || this.maxEntriesPerKey < 1 || this.maxEntriesPerKey > MAX_ENTRIES_PER_KEY) throw new RangeError(`maxEntriesPerKey must be an integer 1 … ${MAX_ENTRIES_PER_KEY}, got ${this.maxEntriesPerKey}`)
  }

  /**
   * Load the keys of this node's own streams. A key's value is its 32 bytes
   * and u64be(start), then RECOVERED for a recovered one; a key stored
   * without `start` began at 0 (its count then covers the whole stream: a
   * new epoch comes early, never late).
   */
  async load (): Promise<void> {
    for await (const [key, value] of this.store.db.iterator(prefixRange(OWN_KEY_PREFIX))) {
      const [stream, epoch] = keySuffix(key, OWN_KEY_PREFIX).split(SEP)
      const start = value.byteLength >= STREAM_KEY_BYTES + 8 ? Number(Buffer.from(value.buffer, value.byteOffset, value.byteLength).readBigUInt64BE(STREAM_KEY_BYTES)) : 0
      this.remember(stream, { epoch: Number(epoch), key: new StreamKey(value.subarray(0, STREAM_KEY_BYTES)), start, ...(value[STREAM_KEY_BYTES + 8] === RECOVERED ? { recovered: true } : {}) })
    }
  }

  /** Keep epoch `e` of own stream `stream`: a recovered key never becomes the current one (nothing is encrypted under it). */
  private remember (stream: string, e: OwnEpoch): void {
    const cur = this.own.get(stream)
    if (e.recovered !== true && (cur === undefined || cur.epoch < e.epoch)) this.own.set(stream, e)
    const current = this.own.get(stream)
    const first = (o: OwnEpoch): number => o === current ? 1 : 0
    this.epochsOf.set(stream, [...(this.epochsOf.get(stream) ?? []).filter(o => o.epoch !== e.epoch), e].sort((a, b) => first(b) - first(a) || b.epoch - a.epoch))
  }

  /** The key of epoch `epoch` of own stream `stream`, derived from the node's identity (encryption.md §4). */
  private derive (stream: string, epoch: number): StreamKey {
    return deriveStreamKey(this.#privateKey, { origin: this.self, stream, epoch })
  }

  /**
   * Whether own stream `stream` must start a new epoch before it appends
   * `adding` more entries: its current key would then have encrypted more
   * than the limit per key (encryption.md §5: 2^31).
   */
  epochFull (stream: string, adding: number): boolean {
    const cur = this.own.get(stream)
    return cur !== undefined && this.heldOf(stream) - cur.start + adding > this.maxEntriesPerKey
  }

  /** Keys being made: one per stream however many ask at once. */
  private readonly making = new Map<string, Promise<{ epoch: number, key: StreamKey }>>()

  /**
   * The current key of this node's own stream `stream`: made (and made
   * durable) the first time it is asked for, and made again above a
   * recovered epoch above it (the restore's new epoch had not begun when
   * the node stopped: nothing is encrypted under an epoch below one the lost
   * state reached).
   */
  async current (stream: string): Promise<{ epoch: number, key: StreamKey }> {
    const cur = this.own.get(stream)
    // the current epoch first, then the others from the highest: a second one above it is recovered
    if (cur !== undefined && (this.epochsOf.get(stream)?.[1]?.epoch ?? 0) < cur.epoch) return cur
    return await this.make(stream, cur === undefined ? FIRST_EPOCH : cur.epoch + 1)
  }

  /**
   * Start epoch `after + 1` of own stream `stream` (a member left its
   * audience), or one above every epoch whose envelopes are here when that
   * is higher (make): a new key, durable before it is used. Returns the
   * current epoch when it is past `after` already.
   */
  async rotate (stream: string, after: number): Promise<{ epoch: number, key: StreamKey }> {
    const cur = this.own.get(stream)
    if (cur !== undefined && cur.epoch > after) return cur
    return await this.make(stream, after + 1)
  }

  private async make (stream: string, epoch: number): Promise<{ epoch: number, key: StreamKey }> {
    const inFlight = this.making.get(stream)
    if (inFlight !== undefined) {
      // a key being made for a lower epoch (a rotation that asked for less) does not do: another after it
      const other = await inFlight
      const cur = this.own.get(stream)
      if (other.epoch >= epoch) return other
      if (cur !== undefined && cur.epoch >= epoch) return cur
      return await this.make(stream, epoch)
    }
    const start = this.heldOf(stream)
    const made = (async () => {
      // envelopes of an epoch this node holds no key of: it began that epoch before it was restored from
      // a backup that lacks the key. Its number is not used again: the key derived for it is the lost one
      // only if this build made that (an earlier build's were random: its audience would hold envelopes of
      // a key the new one is not, and ensureEnvelopes would not seal the new one)
      const sealed = (await this.envelopesOf(this.self, stream)).reduce((max, e) => Math.max(max, e.epoch), 0)
      // and above every epoch whose key it holds (a recovered one, above the current epoch, is not made again)
      const at = Math.max(epoch, sealed + 1, ...this.epochs(stream).map(e => e.epoch + 1))
      const key = this.derive(stream, at)
      // durable before anything is encrypted under it: a stream's entries must never outlive their key
      await this.store.db.put(`${OWN_KEY_PREFIX}${stream}${SEP}${at}`, storedKey(key, start))
      this.remember(stream, { epoch: at, key, start })
      return this.own.get(stream) as OwnEpoch
    })().finally(() => this.making.delete(stream))
    this.making.set(stream, made)
    return await made
  }

  /** Every epoch's key of own stream `stream`, the current one first (`recovered`: see recover). */
  epochs (stream: string): Array<{ epoch: number, key: StreamKey, recovered?: true }> {
    return this.epochsOf.get(stream) ?? []
  }

  /**
   * Entries of own stream `stream` came back from a peer (this node was
   * restored from a backup): the key of each epoch among them that this
   * node holds no key of is derived again and stored through `txn` (with the
   * entries: durable before they are), marked recovered, so that the
   * stream finds the records' newest entries under it (a later delete is
   * sent). Only a key that opens one of that epoch's entries is kept: an
   * earlier build made its keys at random, and such an epoch stays without
   * a key (`unrecoverable`, each reported once). A recovered key is never
   * used to encrypt: the stream goes on above every epoch it has seen.
   */
  recover (txn: Txn, stream: string, entries: readonly LogEntry[]): { recovered: number[], unrecoverable: number[] } {
    const out: { recovered: number[], unrecoverable: number[] } = { recovered: [], unrecoverable: [] }
    const held = new Set(this.epochs(stream).map(e => e.epoch))
    const firstOf = new Map<number, LogEntry>()
    for (const e of entries) {
      if (e.epoch !== undefined && !held.has(e.epoch) && !firstOf.has(e.epoch)) firstOf.set(e.epoch, e)
    }
    for (const [epoch, entry] of firstOf) {
      if (this.unrecoverable.has(`${stream}${SEP}${epoch}`)) continue
      const key = this.derive(stream, epoch)
      if (!opens(key, entry)) {
        this.unrecoverable.add(`${stream}${SEP}${epoch}`)
        out.unrecoverable.push(epoch)
        continue
      }
      // start 0: were it ever the current epoch, a new one would come early, never late
      txn.put(`${OWN_KEY_PREFIX}${stream}${SEP}${epoch}`, storedKey(key, 0, true))
      this.remember(stream, { epoch, key, start: 0, recovered: true })
      out.recovered.push(epoch)
    }
    return out
  }

  /**
   * The recovered epochs of own stream `stream` whose audience the record
   * of rule `ruleId` was written after: its version is newer than the
   * earliest envelope of the epoch held here (those came back from the
   * peers, written as the epoch began). A target that record names and that
   * holds an envelope of an earlier epoch but none of such an epoch joined
   * again after the epoch began (missingEnvelopes); under a record older
   * than the epoch (a registry restored with the backup, whose removal has
   * not come back), it may be one that left.
   */
  async decidedAfter (stream: string, ruleId: string): Promise<Set<number>> {
    const out = new Set<number>()
    const recovered = this.epochs(stream).filter(e => e.recovered === true)
    if (recovered.length === 0) return out
    const rule = await this.store.db.get(keys.record(RULES_COLLECTION, ruleId))
    if (rule === undefined) return out
    const decided = decodeRecord(rule).version.hlc
    for (const { epoch } of recovered) {
      const prefix = keys.record(KEYS_COLLECTION, envelopeId(this.self, stream, epoch, ''))
      let began: Hlc | undefined
      for await (const [, value] of this.store.db.iterator({ gte: prefix, lt: prefix + '\uffff' })) {
        const at = decodeRecord(value).version.hlc
        if (began === undefined || compareHlc(at, began) < 0) began = at
      }
      if (began !== undefined && compareHlc(decided, began) > 0) out.add(epoch)
    }
    return out
  }

  /** The current key of an own stream, if it has one already (no key is made). */
  currentIfAny (stream: string): { epoch: number, key: StreamKey } | undefined {
    return this.own.get(stream)
  }

  /** The envelope of own stream `stream`'s key of `epoch` for `peer`, as the `$keys` record's value. */
  envelope (stream: string, epoch: number, key: StreamKey, peer: string): JsonObject {
    return { box: Buffer.from(sealStreamKey(peer, key, { origin: this.self, stream, epoch })).toString('base64') }
  }

  /**
   * Every key of stream log `streamLog` this node holds: an own stream's
   * epochs, or those of another node's stream whose envelopes for this node
   * are here (an envelope that does not open is passed over).
   */
  async keysOf (streamLog: string): Promise<StreamKey[]> {
    const { peer, stream } = parseLogId(streamLog)
    if (stream === undefined) return []
    if (peer === this.self) return this.epochs(stream).map(e => e.key)
    const out: StreamKey[] = []
    for (const e of await this.envelopesOf(peer, stream)) {
      if (e.peer !== this.self) continue
      const k = await this.keyFor(streamLog, e.epoch).catch(() => undefined)
      if (k !== undefined) out.push(k)
    }
    return out
  }

  /** The envelopes of `origin`'s stream `stream` stored here (`$keys` records, durable ones): for which epoch, sealed to which peer. */
  async envelopesOf (origin: string, stream: string): Promise<Array<{ epoch: number, peer: string }>> {
    const prefix = keys.record(KEYS_COLLECTION, `${origin}/${stream}/`)
    const out: Array<{ epoch: number, peer: string }> = []
    for await (const [key] of this.store.db.iterator({ gte: prefix, lt: prefix + '\uffff' })) {
      const [epoch, peer] = key.slice(prefix.length).split('/')
      out.push({ epoch: Number(epoch), peer })
    }
    return out
  }

  /** The key of `epoch` of another node's stream log `streamLog` when this node opened its envelope already: no lookup, no await (read for every entry a target applies). */
  openedKey (streamLog: string, epoch: number): StreamKey | undefined {
    return this.opened.get(`${streamLog}${SEP}${epoch}`)
  }

  /**
   * The key of `epoch` of stream log `streamLog` (`<origin>/<stream>`), or
   * undefined when this node holds none: no envelope for it (not in the
   * audience, or the envelope has not arrived yet). Throws EncryptionError
   * when the envelope the origin wrote does not open.
   */
  async keyFor (streamLog: string, epoch: number, txn?: Txn): Promise<StreamKey | undefined> {
    const { peer, stream } = parseLogId(streamLog)
    if (stream === undefined) return undefined
    if (peer === this.self) return this.epochsOf.get(stream)?.find(e => e.epoch === epoch)?.key
    const cacheKey = `${streamLog}${SEP}${epoch}`
    const cached = this.opened.get(cacheKey)
    if (cached !== undefined) return cached
    const recordKey = keys.record(KEYS_COLLECTION, envelopeId(peer, stream, epoch, this.self))
    let bytes: Uint8Array | undefined
    if (txn !== undefined) {
      await txn.prefetch([recordKey])
      bytes = txn.get(recordKey)
    } else {
      bytes = await this.store.db.get(recordKey)
    }
    if (bytes === undefined) return undefined
    const box = decodeRecord(bytes).value?.box
    if (typeof box !== 'string') return undefined
    const key = openStreamKey(this.identity, Buffer.from(box, 'base64'), { origin: peer, stream, epoch })
    this.opened.set(cacheKey, key)
    return key
  }
}
