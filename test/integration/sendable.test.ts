/**
 * A sender never sends a batch its peer refuses: a batch must end where a
 * signed run ends (the receiver counts anything else as an offence). A run
 * read up to a bound that is not the end of a surviving run (the lazy-push
 * cap is a past `servable` value, whose run newer writes may have compacted
 * away since) is cut at its last certificate, or not sent at all.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { ChangeLog } from '../../src/log/changelog.js'
import type { EntryRun } from '../../src/log/changelog.js'
import { decodeEntry, encodeEntry } from '../../src/log/entry.js'
import type { LogEntry } from '../../src/log/entry.js'
import { decodeCert, RunSigner, SignatureError, verifyRuns } from '../../src/log/signing.js'
import { batchEndCheck, offenceCheckOf, sendableRun } from '../../src/network/sync/checks.js'
import { Store } from '../../src/store/db.js'
import { OriginLog } from '../helpers/ingest-harness.js'
import { removeDir, tempDir } from '../helpers/nodes.js'

let dir: string
let store: Store
let log: ChangeLog
let signer: RunSigner
let origin: string
let o: OriginLog

beforeEach(async () => {
  dir = await tempDir('syncmesh-sendable-')
  store = new Store(join(dir, 'db'))
  await store.open()
  log = new ChangeLog(store)
  await log.load()
  const key = await generateKeyPair('Ed25519')
  origin = peerIdFromPrivateKey(key).toString()
  signer = new RunSigner(key, origin)
  o = new OriginLog(origin)
})

afterEach(async () => {
  await store.close()
  await removeDir(dir)
})

/** One signed run, appended and committed the way the write path does. */
async function run (entries: LogEntry[]): Promise<void> {
  const from = entries[0].seq - 1
  const to = entries[entries.length - 1].seq
  const cert = signer.sign(from, to, entries)
  await store.exclusive(async () => {
    const txn = store.txn()
    await log.append(txn, origin, entries, to, [cert])
    await txn.commit()
    log.committed(origin, to)
  })
}

/** What the receiver does with a batch (session.ts store): throws SignatureError when it refuses it. */
function receive (r: EntryRun): void {
  const certs = r.certs.map(decodeCert)
  const unsigned = batchEndCheck(r.fromSeq, r.toSeq, certs)
  if (unsigned !== undefined) throw new SignatureError(unsigned)
  verifyRuns(origin, r.entries.map(b => ({ ...decodeEntry(origin, b), bytes: b })), certs, { from: r.fromSeq, to: r.toSeq })
}

describe('a batch read up to a bound whose run was compacted away', () => {
  it('is sent as read when it ends at a signed run, and the receiver takes it', async () => {
    await run([o.put('p', 'a', { v: 1 }), o.put('p', 'b', { v: 1 })]) // (0, 2]
    await run([o.put('p', 'c', { v: 1 }), o.put('p', 'd', { v: 1 })]) // (2, 4]
    await run([o.put('p', 'c', { v: 2 }), o.put('p', 'd', { v: 2 })]) // (4, 6]: (2, 4] is compacted away
    // a lazy peer at 0 may be sent what was servable 3 s ago: 4
    const read = await log.readRun(origin, 0, 512, 1 << 20, 4) as EntryRun
    const sent = sendableRun(origin, read) as EntryRun
    expect(sent).toBe(read)
    expect(sent.toSeq).toBe(2)
    expect(() => receive(sent)).not.toThrow()
  })

  it('is cut at its last signed run when it claims more (a read bound ahead of the signed runs)', async () => {
    await run([o.put('p', 'a', { v: 1 }), o.put('p', 'b', { v: 1 })]) // (0, 2]
    await run([o.put('p', 'c', { v: 1 }), o.put('p', 'd', { v: 1 })]) // (2, 4]
    await run([o.put('p', 'c', { v: 2 }), o.put('p', 'd', { v: 2 })]) // (4, 6]: (2, 4] is compacted away
    // what a read that takes its bound for the end returns: (0, 4] with the one surviving run (0, 2]
    const read = { ...await log.readRun(origin, 0, 512, 1 << 20, 2) as EntryRun, toSeq: 4 }
    let refused: Error | undefined
    try { receive(read) } catch (err) { refused = err as Error }
    // as read, the receiver refuses it and counts an offence against this (honest) node
    expect(refused).toBeInstanceOf(SignatureError)
    expect(offenceCheckOf(refused as Error)).toBe('BATCH_END_UNSIGNED')
    const sent = sendableRun(origin, read) as EntryRun
    expect(sent.toSeq).toBe(2)
    expect(() => receive(sent)).not.toThrow()
  })

  it('is not sent when no signed run of it survives, or an entry lies beyond its last run', async () => {
    await run([o.put('p', 'a', { v: 1 }), o.put('p', 'b', { v: 1 })]) // (0, 2]
    await run([o.put('p', 'a', { v: 2 }), o.put('p', 'b', { v: 2 })]) // (2, 4]: (0, 2] is compacted away
    const empty: EntryRun = { fromSeq: 0, toSeq: 2, entries: [], certs: [], bytes: 0 }
    expect(() => receive(empty)).toThrow(SignatureError)
    expect(sendableRun(origin, empty)).toBeUndefined()
    // the whole log goes, and is taken
    const all = sendableRun(origin, await log.readRun(origin, 0, 512, 1 << 20) as EntryRun) as EntryRun
    expect(all.toSeq).toBe(4)
    expect(() => receive(all)).not.toThrow()
    // an entry past the last certificate: cutting would drop it unsigned; not sent
    const extra = o.put('p', 'z', { v: 1 }) // seq 5
    const beyond: EntryRun = { ...all, entries: [...all.entries, encodeEntry(extra)], toSeq: 6 }
    expect(sendableRun(origin, beyond)).toBeUndefined()
  })
})

describe('offence checks', () => {
  it('name each verification failure by a stable code', () => {
    expect(offenceCheckOf(new SignatureError('entry 3 of X is not covered by any signed run'))).toBe('ENTRY_UNSIGNED')
    expect(offenceCheckOf(new SignatureError('run (0, 4] of X is incomplete: an entry is missing or was added'))).toBe('RUN_INCOMPLETE')
    expect(offenceCheckOf(new SignatureError('run (0, 4] of X is not accounted for exactly: leaf 2 is present and pruned'))).toBe('RUN_INCOMPLETE')
    expect(offenceCheckOf(new SignatureError('runs (0, 4] and (2, 6] of X overlap or are out of order'))).toBe('RUN_RANGE_INVALID')
    expect(offenceCheckOf(new SignatureError("run (0, 4] of X does not match its origin's signature: the entries were altered, reordered or forged"))).toBe('RUN_SIGNATURE_MISMATCH')
    expect(offenceCheckOf(new SignatureError('origin Qm is not an Ed25519 peer id: nope'))).toBe('ORIGIN_KEY_INVALID')
    expect(offenceCheckOf(new SignatureError('something else'))).toBe('SIGNATURE_INVALID')
  })

  it('name the version 2 failures (verifyAttestedRuns, verifyUpdate, the stored runs) by stable codes', () => {
    expect(offenceCheckOf(new SignatureError("run (3, 5] of X does not start where the batch's previous certificate ends (0): the certificates must tile (0, 5]"))).toBe('RUN_RANGE_INVALID')
    expect(offenceCheckOf(new SignatureError("run (0, 4] of X does not match its origin's attestation as of 4: an entry it attests live is missing, or entries were altered or forged"))).toBe('RUN_SIGNATURE_MISMATCH')
    expect(offenceCheckOf(new SignatureError('the certificates of batch (0, 9] of X end at 5'))).toBe('BATCH_END_UNSIGNED')
    expect(offenceCheckOf(new SignatureError('run (0, 4] of X is attested gone but the batch holds entry 2 of it'))).toBe('GONE_SPAN_INVALID')
    expect(offenceCheckOf(new SignatureError('run (0, 4] of X is not attested gone by its origin'))).toBe('GONE_SPAN_INVALID')
    expect(offenceCheckOf(new SignatureError('update of run (0, 4] of X as of 9 is not its origin\'s attestation of the run'))).toBe('UPDATE_INVALID')
    expect(offenceCheckOf(new SignatureError('update of run (0, 4] of X as of 9 says entry 2 is live, which the origin attested superseded before'))).toBe('UPDATE_INVALID')
    expect(offenceCheckOf(new SignatureError('gone span (0, 9] of X straddles the stored run (4, 12]'))).toBe('UPDATE_INVALID')
  })
})
