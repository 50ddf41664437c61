/**
 * The version 2 fields of a Batch frame (protocols/sync/completeness.md §4):
 * certificates read as attestations and updates, each field checked before
 * any signature is, with FRAME_INVALID for what is malformed; version 1
 * decoding of the same frame is unchanged. Frames are made from what a real
 * change log serves of a signed log.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { ProtocolError } from '../../src/core/errors.js'
import { decodeEntry } from '../../src/log/entry.js'
import { encodeAttested, liveBitmap, unprunedPositions, verifyAttestedRuns, verifyUpdate } from '../../src/log/signing.js'
import type { AttestedCert } from '../../src/log/signing.js'
import { MAX_UPDATES } from '../../src/log/changelog.js'
import { decodeFrame, encodeBatchFrame } from '../../src/network/sync/codec.js'
import { Harness } from '../helpers/ingest-harness.js'

let h: Harness | undefined
afterEach(async () => {
  await h?.destroy()
  h = undefined
})

function unframe (bytes: Uint8Array): Uint8Array {
  let i = 0
  while (bytes[i++] >= 0x80);
  return bytes.subarray(i)
}

const wire = (c: AttestedCert): Uint8Array => encodeAttested(c)

function invalid (payload: Uint8Array, message: RegExp): void {
  let err: unknown
  try { decodeFrame(payload, { version: 2 }) } catch (e) { err = e }
  expect(err).toBeInstanceOf(ProtocolError)
  expect((err as ProtocolError).code).toBe('FRAME_INVALID')
  expect((err as Error).message).toMatch(message)
}

describe('version 2 batch frames', () => {
  it('carry attestations and updates that decode, verify, and are refused field by field when malformed', async () => {
    h = await Harness.createSigning()
    const put = (id: string, n: number): { collection: string, id: string, op: 'put', value: { n: number } } => ({ collection: 'posts', id, op: 'put', value: { n } })
    await h.ingestor.writeLocal([put('a', 1), put('b', 1), put('c', 1)]) // (0, 3]
    const first = await h.log.readAttested(h.self, 0, 100, 1 << 20)
    if (first === undefined) throw new Error('nothing served')
    const firstEntries = first.entries.map(raw => Object.assign(decodeEntry(h!.self, raw), { bytes: raw }))
    const [root] = verifyAttestedRuns(h.self, firstEntries, first.certs, { from: 0, to: 3 }) as [Uint8Array]
    await h.ingestor.writeLocal([put('a', 2)]) // (3, 4]: re-attests (0, 3]
    await h.ingestor.writeLocal([put('b', 2), put('c', 2)]) // (4, 6]: (0, 3] gone
    const b = await h.log.readAttested(h.self, 3, 100, 1 << 20)
    if (b === undefined) throw new Error('nothing served')
    const whole = await h.log.readAttested(h.self, 0, 100, 1 << 20)
    if (whole === undefined) throw new Error('nothing served')
    const gone = whole.certs[0]
    expect(gone).toMatchObject({ from: 0, to: 3, gone: true })
    // the run's first attestation as a live update, with its bitmap (for the malformed cases below)
    const liveUpdate: AttestedCert = { ...first.certs[0], live: liveBitmap(3, unprunedPositions(3, first.certs[0].pruned)) }

    const frame = encodeBatchFrame(h.self, b.fromSeq, b.toSeq, b.entries, b.certs.map(wire), [wire(gone)])
    const msg = decodeFrame(unframe(frame), { version: 2 })
    if (msg.type !== 'batch' || msg.attested === undefined) throw new Error('not a version 2 batch')
    expect(msg.attested.certs.map(c => [c.from, c.to, c.asOf, c.gone])).toEqual(b.certs.map(c => [c.from, c.to, c.asOf, c.gone]))
    expect(() => verifyAttestedRuns(h!.self, msg.entries, msg.attested!.certs, { from: msg.fromSeq, to: msg.toSeq })).not.toThrow()
    expect(msg.attested.updates).toHaveLength(1)
    expect(verifyUpdate(h.self, { from: 0, to: 3, asOf: 3, root, live: [0, 1, 2] }, msg.attested.updates[0])).toEqual([])
    // version 1 reads the same frame as before: certificates as run certificates, updates skipped
    const v1 = decodeFrame(unframe(frame))
    expect(v1.type === 'batch' && v1.attested === undefined && v1.certs.length === b.certs.length).toBe(true)

    const at = (certs: AttestedCert[], updates: AttestedCert[] = [], from = b.fromSeq, to = b.toSeq): Uint8Array => unframe(encodeBatchFrame(h!.self, from, to, b.entries, certs.map(wire), updates.map(wire)))
    const c0 = b.certs[0]
    invalid(at([{ ...c0, asOf: c0.to - 1 }]), /not a valid attestation/)
    invalid(at([{ ...c0, sig: new Uint8Array(63) }]), /63-byte signature/)
    invalid(at([{ ...c0, gone: true, pruned: [{ level: 0, index: 0, hash: new Uint8Array(32) }] }]), /gone span .* carries pruned nodes/)
    invalid(at([{ ...c0, live: new Uint8Array(1) }]), /carries a bitmap/)
    invalid(at([{ ...c0, from: 0, to: 2 ** 21, asOf: 2 ** 21 }], [], 0, 2 ** 21), /longer than/)
    invalid(at(b.certs, [{ ...liveUpdate, live: new Uint8Array(2) }]), /needs a bitmap of its run's length/)
    invalid(at(b.certs, [{ ...liveUpdate, live: Uint8Array.of(0xff) }]), /needs a bitmap of its run's length/)
    invalid(at(b.certs, [{ ...liveUpdate, live: undefined }]), /needs a bitmap/)
    invalid(at(b.certs, [{ ...gone, from: 3, to: 4, asOf: 6 }]), /does not end at or before the batch's start/)
    invalid(at(b.certs, Array.from({ length: MAX_UPDATES + 1 }, () => gone)), new RegExp(`more than ${MAX_UPDATES} updates`))
    // a gone span may be longer than a run
    expect(() => decodeFrame(at([{ ...gone, from: 0, to: 2 ** 21, asOf: 2 ** 21 }], [], 0, 2 ** 21), { version: 2 })).not.toThrow()
  })
})
