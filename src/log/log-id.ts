/**
 * Log ids: what names one log of the log layer (entries, vectors, run
 * certificates, attestations). A log id is either
 *
 *   <peer id>            the whole log of a peer (every log of the earlier formats)
 *   <peer id>/<stream>   one stream of that peer (protocols/sync/streams.md §2)
 *
 * A stream id is ASCII `[a-z0-9.]{1,64}` (`reg`, `r.<ruleId>.<gen>`, ...). The
 * peer id part is the origin: its key signs the log's runs (signing.ts), and
 * everything that asks about a peer (revocation, the registry's platforms,
 * who sent what) asks about it. The whole log id is part of what the origin
 * signs, so one log's runs never pass for another's.
 *
 * Neither part can hold the other's separator: peer ids are base58btc or
 * base32 (no `/`), stream ids have none, and storage keys separate parts
 * with "\0".
 */
import { SyncmeshError } from '../core/errors.js'

/** Between the peer id and the stream id of a stream log's id. */
export const STREAM_SEPARATOR = '/'
/** Longest stream id, in bytes (ASCII). */
export const MAX_STREAM_ID_LENGTH = 64

// base58btc peer ids (Ed25519 "12D3KooW…", RSA "Qm…") or CIDv1 base32 ("bafz…")
const PEER_ID_PATTERN = /^(?:[1-9A-HJ-NP-Za-km-z]{40,128}|b[a-z2-7]{40,128})$/
const STREAM_ID_PATTERN = /^[a-z0-9.]{1,64}$/

/** A log id that does not parse. */
export class LogIdError extends SyncmeshError {
  constructor (message: string) {
    super('LOG_ID_INVALID', message, 400)
    this.name = 'LogIdError'
  }
}

/** Whether `s` is shaped like a peer id (the whole log's id). */
export function isPeerId (s: string): boolean {
  return PEER_ID_PATTERN.test(s)
}

/** Whether `s` is a stream id: ASCII `[a-z0-9.]{1,64}`. */
export function isStreamId (s: string): boolean {
  return STREAM_ID_PATTERN.test(s)
}

/** Whether `s` is a log id: a peer id, or a peer id, `/` and a stream id. */
export function isLogId (s: string): boolean {
  const i = s.indexOf(STREAM_SEPARATOR)
  if (i === -1) return PEER_ID_PATTERN.test(s)
  return STREAM_ID_PATTERN.test(s.slice(i + 1)) && PEER_ID_PATTERN.test(s.slice(0, i))
}

/** The id of `peer`'s whole log (no stream), or of its stream `stream`. Throws LogIdError on parts that are not valid. */
export function logId (peer: string, stream?: string): string {
  if (!PEER_ID_PATTERN.test(peer)) throw new LogIdError(`"${peer.slice(0, 80)}" is not a peer id`)
  if (stream === undefined) return peer
  if (!STREAM_ID_PATTERN.test(stream)) throw new LogIdError(`"${stream.slice(0, 80)}" is not a stream id (1 to ${MAX_STREAM_ID_LENGTH} of a-z, 0-9 and ".")`)
  return `${peer}${STREAM_SEPARATOR}${stream}`
}

/** The parts of a log id; throws LogIdError when it does not parse. */
export function parseLogId (id: string): { peer: string, stream?: string } {
  const i = id.indexOf(STREAM_SEPARATOR)
  if (i === -1) {
    if (!PEER_ID_PATTERN.test(id)) throw new LogIdError(`log id "${id.slice(0, 80)}" is not a peer id, nor a peer id and a stream`)
    return { peer: id }
  }
  const peer = id.slice(0, i)
  const stream = id.slice(i + 1)
  if (!PEER_ID_PATTERN.test(peer)) throw new LogIdError(`log id "${id.slice(0, 80)}" does not start with a peer id`)
  if (!STREAM_ID_PATTERN.test(stream)) throw new LogIdError(`log id "${id.slice(0, 80)}" names a stream that is not a stream id (1 to ${MAX_STREAM_ID_LENGTH} of a-z, 0-9 and ".")`)
  return { peer, stream }
}

/**
 * The peer id part of a log id (the origin, whose key signs the log), as
 * is, without validating it: for ids that were validated where they came in
 * (codec.ts) or built here. Cheap: called per batch and per lookup.
 */
export function peerOf (id: string): string {
  const i = id.indexOf(STREAM_SEPARATOR)
  return i === -1 ? id : id.slice(0, i)
}

/** The stream id part of a log id, undefined for a whole log (no validation, see peerOf). */
export function streamOf (id: string): string | undefined {
  const i = id.indexOf(STREAM_SEPARATOR)
  return i === -1 ? undefined : id.slice(i + 1)
}

/** Whether log id `id` is one of `peer`'s logs (its whole log or a stream of it). */
export function isLogOf (id: string, peer: string): boolean {
  return id.length === peer.length ? id === peer : id.length > peer.length && id.charCodeAt(peer.length) === 0x2f && id.startsWith(peer)
}

/** The prefix of a rule stream's id (protocols/sync/streams.md §2): `r.<hash>`. */
export const RULE_STREAM_PREFIX = 'r.'

/** Whether log id `id` is a rule stream (no validation, see peerOf): the only logs whose entries may be `unmatch` or name a target id. */
export function isRuleStreamLog (id: string): boolean {
  return streamOf(id)?.startsWith(RULE_STREAM_PREFIX) === true
}
