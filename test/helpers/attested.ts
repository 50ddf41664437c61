/**
 * Sync protocol version 2 batches made by hand (protocols/sync/completeness.md
 * §4): tests that play a peer sign an origin's runs as the origin attests them
 * on write, and send them as a version 2 Batch frame.
 */
import type { LogEntry } from '../../src/log/entry.js'
import { encodeEntry } from '../../src/log/entry.js'
import { encodeAttested } from '../../src/log/signing.js'
import type { AttestedCert } from '../../src/log/signing.js'
import { encodeBatchFrame } from '../../src/network/sync/codec.js'

/**
 * A version 2 Batch frame: `entries` encoded as given (their `bytes` are not
 * reused), `certs` as certificates (without the bitmap an Attester puts on
 * every attestation: a certificate carries none, the receiver computes it),
 * `updates` with their bitmaps.
 */
export function attestedBatchFrame (origin: string, from: number, to: number, entries: LogEntry[], certs: AttestedCert[], updates: AttestedCert[] = []): Uint8Array {
  return encodeBatchFrame(origin, from, to, entries.map(e => encodeEntry({ ...e, bytes: undefined })), certs.map(c => encodeAttested({ ...c, live: undefined })), updates.map(u => encodeAttested(u)))
}
