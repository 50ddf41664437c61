/**
 * Version 2 batches of another origin through a relay's change log
 * (protocols/sync/completeness.md §5–6), on real LevelDB stores: the relay
 * stores the origin's attestations with the roots it verified, keeps an entry
 * the origin's later write superseded until an attestation of the origin says
 * it is gone (so what it serves always verifies), applies updates (entries
 * deleted, pruned nodes recomputed from its own leaves), and refuses an update
 * that contradicts what it stores.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { decodeEntry } from '../../src/log/entry.js'
import type { LogEntry } from '../../src/log/entry.js'
import { Attester, decodeAttested, SignatureError, verifyAttestedRuns } from '../../src/log/signing.js'
import type { AttestedCert, StoredAttestation } from '../../src/log/signing.js'
import { keys, prefixRange } from '../../src/store/keys.js'
import { Harness } from '../helpers/ingest-harness.js'

const open: Harness[] = []
afterEach(async () => {
  for (const h of open.splice(0)) await h.destroy()
})

async function harness (name: string, signing = false): Promise<Harness> {
  const h = signing ? await Harness.createSigning(name) : await Harness.create(name)
  open.push(h)
  return h
}

const put = (id: string, n: number): { collection: string, id: string, op: 'put', value: { n: number } } => ({ collection: 'posts', id, op: 'put', value: { n } })
const del = (id: string): { collection: string, id: string, op: 'del' } => ({ collection: 'posts', id, op: 'del' })

async function stored (h: Harness, origin: string): Promise<StoredAttestation[]> {
  const out: StoredAttestation[] = []
  for await (const [, v] of h.store.db.iterator(prefixRange(keys.attestPrefix(h.store.logs.of(origin))))) out.push(decodeAttested(v))
  return out
}

async function storedSeqs (h: Harness, origin: string): Promise<number[]> {
  const prefix = keys.entryPrefix(h.store.logs.of(origin))
  const out: number[] = []
  for await (const key of h.store.db.keys(prefixRange(prefix))) out.push(parseInt(key.slice(prefix.length), 16))
  return out
}

/** A version 2 batch verified, then stored and applied by the receiver's ingestor. */
async function store (to: Harness, origin: string, fromSeq: number, toSeq: number, entries: LogEntry[], certs: AttestedCert[], updates: AttestedCert[]): Promise<void> {
  const roots = verifyAttestedRuns(origin, entries, certs, { from: fromSeq, to: toSeq })
  expect(await to.ingestor.ingest(origin, fromSeq, toSeq, entries, [], { certs: certs.map((cert, i) => ({ cert, root: roots[i] })), updates })).toBeDefined()
}

/** One version 2 batch of `origin` from `from` to `to` (its next after what `to` holds), with the updates `from` attaches unless told not to. */
async function ship (from: Harness, to: Harness, origin: string, withUpdates: boolean): Promise<boolean> {
  const b = await from.log.readAttested(origin, to.log.vector.get(origin), 1000, 1 << 20)
  if (b === undefined) return false
  const entries = b.entries.map(raw => Object.assign(decodeEntry(origin, raw), { bytes: raw }))
  await store(to, origin, b.fromSeq, b.toSeq, entries, b.certs, withUpdates ? b.updates : [])
  return true
}

describe('version 2 batches of another origin at a relay', () => {
  it('keep superseded entries until the origin attests them gone, serve what verifies all along, and apply and pass on updates', async () => {
    const O = await harness('O', true)
    const R = await harness('R') // gets the origin's batches without their updates
    const R2 = await harness('R2') // gets them with their updates
    const W = await harness('W') // gets them from R2
    await O.ingestor.writeLocal([put('a', 1), put('b', 1), put('c', 1)]) // (0, 3]
    await O.ingestor.writeLocal([put('d', 1)]) // (3, 4]
    expect(await ship(O, R, O.self, true)).toBe(true)
    expect(await ship(O, R2, O.self, true)).toBe(true)
    expect(await ship(R2, W, O.self, true)).toBe(true)
    await O.ingestor.writeLocal([put('a', 2)]) // (4, 5]: a@1 superseded, (0, 3] re-attested as of 5
    await O.ingestor.writeLocal([del('d')]) // (5, 6]: (3, 4] gone as of 6
    const next = await O.log.readAttested(O.self, 4, 1000, 1 << 20)
    expect(next?.updates.map(u => [u.from, u.to, u.asOf, u.gone])).toEqual([[0, 3, 5, false], [3, 4, 6, true]])

    // without the updates: the relay keeps a@1 and d@4 (their runs are attested live as it stores them)
    expect(await ship(O, R, O.self, false)).toBe(true)
    expect(await storedSeqs(R, O.self)).toEqual([1, 2, 3, 4, 5, 6])
    // a rule's backfill reading the log in log order passes over them: only each record's newest
    expect((await R.log.readLogChunk(O.self, 'posts', 0, 100)).entries.map(e => `${e.id}@${e.seq}`)).toEqual(['b@2', 'c@3', 'a@5', 'd@6'])
    // and what it serves verifies
    const T = await harness('T')
    while (await ship(R, T, O.self, true));
    expect(T.log.vector.get(O.self)).toBe(6)
    expect(await storedSeqs(T, O.self)).toEqual([1, 2, 3, 4, 5, 6])

    // with them: a@1 and d@4 are deleted, the runs re-pruned, the attestations stored as the origin's
    expect(await ship(O, R2, O.self, true)).toBe(true)
    expect(await storedSeqs(R2, O.self)).toEqual([2, 3, 5, 6])
    expect((await stored(R2, O.self)).map(a => [a.from, a.to, a.gone, a.asOf])).toEqual((await stored(O, O.self)).map(a => [a.from, a.to, a.gone, a.asOf]))
    // and the relay passes them on with the batch it serves
    expect(await ship(R2, W, O.self, true)).toBe(true)
    expect(await storedSeqs(W, O.self)).toEqual([2, 3, 5, 6])
    // a fresh node gets exactly the newest writes from it, verified
    const U = await harness('U')
    while (await ship(R2, U, O.self, true));
    expect(await storedSeqs(U, O.self)).toEqual([2, 3, 5, 6])
    // a purge (a revoked origin) leaves none of its attestations
    await R2.log.purge(O.self)
    expect(await stored(R2, O.self)).toEqual([])
    expect(await R2.store.db.keys(prefixRange(keys.attestAsOfPrefix(R2.store.logs.of(O.self)))).all()).toEqual([])
  })

  it('an update that contradicts what is stored, or a gone span straddling a stored run, is refused and changes nothing', async () => {
    const O = await harness('O', true)
    const R = await harness('R')
    await O.ingestor.writeLocal([put('a', 1), put('b', 1), put('c', 1)]) // (0, 3]
    await O.ingestor.writeLocal([put('a', 2)]) // (3, 4]
    expect(await ship(O, R, O.self, true)).toBe(true)
    expect(await storedSeqs(R, O.self)).toEqual([2, 3, 4])
    const [run] = await stored(R, O.self)
    expect(run).toMatchObject({ from: 0, to: 3, asOf: 4 })
    // signed with the origin's key (only the origin can sign): position 0 live again, as of later
    const attester = new Attester(O.key as NonNullable<Harness['key']>, O.self)
    const again = attester.live(0, 3, 9, run.root as Uint8Array, [0, 1, 2], [])
    const straddling = attester.gone(2, 4, 9)
    await O.ingestor.writeLocal([put('z', 1)]) // (4, 5]
    const next = await O.log.readAttested(O.self, 4, 100, 1 << 20)
    if (next === undefined) throw new Error('nothing to send')
    const entries = (): LogEntry[] => next.entries.map(raw => Object.assign(decodeEntry(O.self, raw), { bytes: raw }))
    const before = await stored(R, O.self)
    await expect(store(R, O.self, 4, 5, entries(), next.certs, [again])).rejects.toThrow(SignatureError)
    await expect(store(R, O.self, 4, 5, entries(), next.certs, [straddling])).rejects.toThrow(/straddles/)
    expect(await stored(R, O.self)).toEqual(before)
    expect(R.log.vector.get(O.self)).toBe(4)
    // the genuine batch still goes through
    await store(R, O.self, 4, 5, entries(), next.certs, [])
    expect(R.log.vector.get(O.self)).toBe(5)
  })

  it('an older gone span that a newer stored one covers (the origin merged them since) is ignored, not refused', async () => {
    const O = await harness('O', true)
    const R = await harness('R')
    await O.ingestor.writeLocal([put('a', 1)]) // (0, 1]
    await O.ingestor.writeLocal([put('b', 1)]) // (1, 2]
    expect(await ship(O, R, O.self, true)).toBe(true)
    await O.ingestor.writeLocal([put('a', 2)]) // (2, 3]: (0, 1] gone as of 3
    const first = await O.log.readAttested(O.self, 2, 100, 1 << 20)
    const older = first?.updates.find(u => u.gone)
    expect(older).toMatchObject({ from: 0, to: 1, asOf: 3, gone: true })
    await O.ingestor.writeLocal([put('b', 2)]) // (3, 4]: (1, 2] gone, merged with (0, 1]: (0, 2] gone as of 4
    expect(await ship(O, R, O.self, true)).toBe(true)
    expect((await stored(R, O.self)).map(a => [a.from, a.to, a.gone, a.asOf])).toEqual([[0, 2, true, 4], [2, 3, false, 3], [3, 4, false, 4]])
    // a relay that took (0, 1] gone before the merge passes it on with a later batch
    await O.ingestor.writeLocal([put('c', 1)]) // (4, 5]
    const next = await O.log.readAttested(O.self, 4, 100, 1 << 20)
    if (next === undefined || older === undefined) throw new Error('nothing to send')
    const before = await stored(R, O.self)
    await store(R, O.self, 4, 5, next.entries.map(raw => Object.assign(decodeEntry(O.self, raw), { bytes: raw })), next.certs, [older])
    expect(R.log.vector.get(O.self)).toBe(5)
    expect((await stored(R, O.self)).slice(0, 3)).toEqual(before)
  })
})
