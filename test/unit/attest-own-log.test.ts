/**
 * Version 2 attestations of a node's own log (protocols/sync/completeness.md
 * §3), signed by the change log as the log is written, on a real LevelDB
 * store: every write attests its runs, re-attests the earlier runs whose
 * entries it superseded or signs gone spans for them (merged), and what the
 * log serves of itself (readAttested) is what a version 2 receiver accepts;
 * a batch missing one live entry or a whole run is refused.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { decodeEntry, newEntry } from '../../src/log/entry.js'
import { logId } from '../../src/log/log-id.js'
import type { LogEntry } from '../../src/log/entry.js'
import { decodeAttested, decodeCert, leafHash, pruneLeaf, RunSigner, SignatureError, unprunedPositions, verifyAttestedRuns, verifyUpdate } from '../../src/log/signing.js'
import type { Superseded } from '../../src/log/changelog.js'
import type { AttestedCert, StoredAttestation } from '../../src/log/signing.js'
import { keys, prefixRange } from '../../src/store/keys.js'
import { Harness } from '../helpers/ingest-harness.js'

let h: Harness | undefined
let other: Harness | undefined
afterEach(async () => {
  await h?.destroy()
  await other?.destroy()
  h = undefined
  other = undefined
})

const put = (id: string, n: number): { collection: string, id: string, op: 'put', value: { n: number } } => ({ collection: 'posts', id, op: 'put', value: { n } })
const del = (id: string): { collection: string, id: string, op: 'del' } => ({ collection: 'posts', id, op: 'del' })

/** The stored attestations of the harness's own log, in order. */
async function stored (hh: Harness, log = hh.self): Promise<StoredAttestation[]> {
  const out: StoredAttestation[] = []
  for await (const [, v] of hh.store.db.iterator(prefixRange(keys.attestPrefix(hh.store.logs.of(log))))) out.push(decodeAttested(v))
  return out
}

/** Everything the log serves of itself after `after`, batch by batch, each verified as a receiver does. */
async function serveAll (hh: Harness, after = 0, maxEntries = 1000, log = hh.self): Promise<{ entries: LogEntry[], certs: AttestedCert[] }> {
  const all: { entries: LogEntry[], certs: AttestedCert[] } = { entries: [], certs: [] }
  let at = after
  for (;;) {
    const b = await hh.log.readAttested(log, at, maxEntries, 1 << 20)
    if (b === undefined) break
    const entries = b.entries.map(raw => Object.assign(decodeEntry(log, raw), { bytes: raw }))
    verifyAttestedRuns(log, entries, b.certs, { from: b.fromSeq, to: b.toSeq })
    all.entries.push(...entries)
    all.certs.push(...b.certs)
    at = b.toSeq
  }
  return all
}

describe('version 2 attestations of the own log', () => {
  it('tile the log, verify as a receiver checks them, and carry exactly the newest write of every record', async () => {
    h = await Harness.createSigning()
    await h.ingestor.writeLocal([put('a', 1), put('b', 1), put('c', 1)]) // run (0, 3]
    await h.ingestor.writeLocal([put('d', 1)]) // (3, 4]
    await h.ingestor.writeLocal([put('e', 1)]) // (4, 5]
    await h.ingestor.writeLocal([put('a', 2), put('x', 1)]) // (5, 7]: a of run (0, 3] superseded
    await h.ingestor.writeLocal([del('e')]) // (7, 8]: run (4, 5] gone
    await h.ingestor.writeLocal([put('d', 2)]) // (8, 9]: run (3, 4] gone, merged with (4, 5]
    const att = await stored(h)
    expect(att.map(a => [a.from, a.to, a.gone, a.asOf])).toEqual([
      [0, 3, false, 7], [3, 5, true, 9], [5, 7, false, 7], [7, 8, false, 8], [8, 9, false, 9]
    ])
    expect(unprunedPositions(3, att[0].pruned)).toEqual([1, 2])
    const served = await serveAll(h)
    expect(served.certs.map(c => [c.from, c.to])).toEqual(att.map(a => [a.from, a.to]))
    expect(served.entries.map(e => `${e.id}@${e.seq}`)).toEqual(['b@2', 'c@3', 'a@6', 'x@7', 'e@8', 'd@9'])
    // served in small batches too, cut at run ends, from a position inside a run (the whole run again)
    const small = await serveAll(h, 1, 1)
    expect(small.certs[0]).toMatchObject({ from: 0, to: 3 })
    expect(small.entries.map(e => e.seq)).toEqual([2, 3, 6, 7, 8, 9])

    // (0, 3] gone: merged with the span after it; then (5, 7] gone: merged with the span before it
    await h.ingestor.writeLocal([put('b', 2), put('c', 2)]) // (9, 11]
    await h.ingestor.writeLocal([put('a', 3), put('x', 2)]) // (11, 13]
    expect((await stored(h)).map(a => [a.from, a.to, a.gone, a.asOf])).toEqual([
      [0, 7, true, 13], [7, 8, false, 8], [8, 9, false, 9], [9, 11, false, 11], [11, 13, false, 13]
    ])
    expect((await serveAll(h)).entries.map(e => `${e.id}@${e.seq}`)).toEqual(['e@8', 'd@9', 'b@10', 'c@11', 'a@12', 'x@13'])
  })

  it('a superseding write re-attests the earlier run: its update verifies against the root the receiver stored, and only shrinks', async () => {
    h = await Harness.createSigning()
    await h.ingestor.writeLocal([put('a', 1), put('b', 1), put('c', 1), put('d', 1)]) // (0, 4]
    const first = await h.log.readAttested(h.self, 0, 100, 1 << 20)
    if (first === undefined) throw new Error('nothing served')
    const entries = first.entries.map(raw => Object.assign(decodeEntry(h!.self, raw), { bytes: raw }))
    const [root] = verifyAttestedRuns(h.self, entries, first.certs, { from: 0, to: 4 }) as [Uint8Array]
    const receiver = { from: 0, to: 4, asOf: 4, root, live: [0, 1, 2, 3] }

    await h.ingestor.writeLocal([put('b', 2), del('d')]) // (4, 6]
    const [upd] = await stored(h)
    expect(upd).toMatchObject({ from: 0, to: 4, asOf: 6, gone: false })
    expect(verifyUpdate(h.self, receiver, upd)).toEqual([0, 2])
    // a replayed older attestation is not newer: ignored
    expect(verifyUpdate(h.self, { ...receiver, asOf: 6, live: [0, 2] }, upd)).toBe('stale')
    // the root is the receiver's, never the relay's: another root fails
    expect(() => verifyUpdate(h!.self, { ...receiver, root: Buffer.alloc(32, 1) }, upd)).toThrow(SignatureError)

    await h.ingestor.writeLocal([del('a'), del('c')]) // (6, 8]: nothing of (0, 4] left
    const [gone] = await stored(h)
    expect(gone).toMatchObject({ from: 0, to: 4, asOf: 8, gone: true })
    expect(verifyUpdate(h.self, { ...receiver, asOf: 6, live: [0, 2] }, gone)).toEqual([])
  })

  it('a batch withholding one live entry behind its leaf hash, or skipping a whole run, is refused', async () => {
    h = await Harness.createSigning()
    await h.ingestor.writeLocal([put('a', 1), put('b', 1)]) // (0, 2]
    await h.ingestor.writeLocal([put('c', 1), del('zz')]) // (2, 4]
    await h.ingestor.writeLocal([put('a', 2)]) // (4, 5]
    const b = await h.log.readAttested(h.self, 0, 100, 1 << 20)
    if (b === undefined) throw new Error('nothing served')
    const decoded = (): LogEntry[] => b.entries.map(raw => Object.assign(decodeEntry(h!.self, raw), { bytes: raw }))
    expect(() => verifyAttestedRuns(h!.self, decoded(), b.certs, { from: 0, to: 5 })).not.toThrow()
    // the delete of zz (seq 4, live) withheld: its leaf as a pruned node, the root still matches
    const all = decoded()
    const zz = all.find(e => e.id === 'zz') as LogEntry
    const run = b.certs[1]
    const { pruned } = pruneLeaf(run.to - run.from, run.pruned, zz.seq - run.from - 1, leafHash(zz.bytes as Uint8Array))
    const withheld = b.certs.map(c => c === run ? { ...c, pruned } : c)
    expect(() => verifyAttestedRuns(h!.self, all.filter(e => e !== zz), withheld, { from: 0, to: 5 })).toThrow(/does not match its origin's attestation/)
    // the run (2, 4] left out whole: the certificates no longer tile the batch
    const skipped = decoded().filter(e => e.seq <= 2 || e.seq > 4)
    expect(() => verifyAttestedRuns(h!.self, skipped, [b.certs[0], b.certs[2]], { from: 0, to: 5 })).toThrow(/must tile/)
  })

  it('one write of several runs whose later run supersedes entries of its earlier one; attestations survive a restart', async () => {
    h = await Harness.createSigning()
    const ops = [...Array.from({ length: 600 }, (_, i) => put(`r${i}`, 1)), put('r0', 2), del('r1')]
    await h.ingestor.writeLocal(ops) // runs (0, 512], (512, 602]
    const att = await stored(h)
    expect(att.map(a => [a.from, a.to, a.asOf])).toEqual([[0, 512, 602], [512, 602, 602]])
    expect(unprunedPositions(512, att[0].pruned)).toHaveLength(510)
    await h.reopen()
    await h.ingestor.writeLocal([put('r2', 2)])
    const served = await serveAll(h)
    expect(served.entries).toHaveLength(600)
    expect(served.certs.map(c => [c.from, c.to, c.asOf])).toEqual([[0, 512, 603], [512, 602, 602], [602, 603, 603]])
  })

  it('own entries received back from a peer are not attested, and attested runs they compact lose their attestation', async () => {
    h = await Harness.createSigning('A')
    await h.ingestor.writeLocal([put('a', 1)]) // (0, 1]
    await h.ingestor.writeLocal([put('a', 2), put('b', 1)]) // (1, 3]
    // the same identity in another data directory, which wrote its own seq 1 and then gets seqs 2-3 back
    other = await Harness.createSigning('A', h.key)
    await other.ingestor.writeLocal([put('a', 9)])
    expect((await stored(other)).map(a => [a.from, a.to])).toEqual([[0, 1]])
    const run = await h.log.readRun(h.self, 1, 100, 1 << 20)
    if (run === undefined) throw new Error('nothing to send')
    const entries = run.entries.map(raw => Object.assign(decodeEntry(h!.self, raw), { bytes: raw }))
    expect(await other.ingestor.ingest(other.self, run.fromSeq, run.toSeq, entries, run.certs.map(decodeCert))).toBeDefined()
    expect(other.log.vector.get(other.self)).toBe(3)
    // (1, 3] is not signed anew, and (0, 1], whose entry it superseded, is no longer attested: nothing is served
    expect(await stored(other)).toEqual([])
    expect(await other.log.readAttested(other.self, 0, 100, 1 << 20)).toBeUndefined()
    // the next own write is attested, and served from its start
    await other.ingestor.writeLocal([put('b', 2)])
    expect((await stored(other)).map(a => [a.from, a.to])).toEqual([[3, 4]])
    expect((await serveAll(other, 3)).entries.map(e => e.seq)).toEqual([4])
  })
  it('an append drops the entries it names as superseded under another record key (a stream\'s earlier epoch), with their index, and attests them as any superseded entry', async () => {
    h = await Harness.createSigning()
    const hh = h
    const stream = logId(hh.self, 'r.test')
    const signer = new RunSigner(hh.key!, hh.self).forLog(stream)
    // ids x1, y1 and x2, y2 stand for two records' blinded ids under the keys of two epochs
    const append = async (ids: string[], supersedes?: Superseded[], written = true): Promise<void> => {
      const from = hh.log.held(stream)
      const entries = ids.map((id, i) => newEntry(stream, from + i + 1, { wall: 1_700_000_000_000 + from + i, logical: 0 }, '$sealed', id, 'put', new Uint8Array([i])))
      await hh.store.exclusive(async () => {
        const txn = hh.store.txn()
        await hh.log.append(txn, stream, entries, from + ids.length, [signer.sign(from, from + ids.length, entries)], { written, ...(supersedes !== undefined ? { supersedes } : {}) })
        await txn.commit()
        hh.log.committed(stream, from + ids.length)
      })
    }
    const latest = async (id: string): Promise<string | undefined> => (await hh.store.db.get(keys.latest(hh.store.logs.of(stream), '$sealed', id)))?.toString()
    await append(['x1', 'y1']) // (0, 2]
    await append(['x2'], [{ collection: '$sealed', id: 'x1', seq: 1 }]) // (2, 3]: x1 superseded
    expect(await latest('x1')).toBeUndefined()
    expect(await latest('x2')).toBe('3')
    expect((await stored(hh, stream)).map(a => [a.from, a.to, a.gone, a.asOf])).toEqual([[0, 2, false, 3], [2, 3, false, 3]])
    expect((await serveAll(hh, 0, 1000, stream)).entries.map(e => `${e.id}@${e.seq}`)).toEqual(['y1@2', 'x2@3'])
    // the last live entry of a run: the run is attested gone; an entry the index no longer names is passed over
    await append(['y2'], [{ collection: '$sealed', id: 'y1', seq: 2 }, { collection: '$sealed', id: 'x1', seq: 1 }]) // (3, 4]
    expect((await stored(hh, stream)).map(a => [a.from, a.to, a.gone, a.asOf])).toEqual([[0, 2, true, 4], [2, 3, false, 3], [3, 4, false, 4]])
    expect((await serveAll(hh, 0, 1000, stream)).entries.map(e => `${e.id}@${e.seq}`)).toEqual(['x2@3', 'y2@4'])
    expect(await latest('y1')).toBeUndefined()
    // only the node's own writes: entries received back are not attested, so nothing may be dropped through them
    await expect(append(['z2'], [{ collection: '$sealed', id: 'x2', seq: 3 }], false)).rejects.toThrow(/own writes/)
    expect(await latest('x2')).toBe('3')
  })
})
