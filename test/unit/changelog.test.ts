import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { ChangeLog } from '../../src/log/changelog.js'
import { decodeCert, RunSigner, verifyRuns } from '../../src/log/signing.js'
import { decodeEntry, encodeEntry } from '../../src/log/entry.js'
import type { LogEntry } from '../../src/log/entry.js'
import { Store, utf8 } from '../../src/store/db.js'
import { keys, prefixRange, seqKeyPart } from '../../src/store/keys.js'
import { newPeerId, OriginLog } from '../helpers/ingest-harness.js'
import { removeDir, tempDir } from '../helpers/nodes.js'

let dir: string
let store: Store
let log: ChangeLog
let A: string
let B: string

async function open (): Promise<void> {
  store = new Store(join(dir, 'db'))
  await store.open()
  log = new ChangeLog(store)
  await log.load()
}

async function reopen (): Promise<void> {
  await store.close()
  await open()
}

/** Append a run the way the ingestor does: one transaction under the write lock, then `committed`. */
async function appendRun (origin: string, entries: LogEntry[], toSeq = Math.max(log.vector.get(origin), ...entries.map(e => e.seq))): Promise<void> {
  await store.exclusive(async () => {
    const txn = store.txn()
    await log.append(txn, origin, entries, toSeq)
    await txn.commit()
    log.committed(origin, toSeq)
  })
}

/** The seqs of the `e` keys of an origin, straight from the database. */
async function storedSeqs (origin: string): Promise<number[]> {
  const prefix = keys.entryPrefix(store.logs.of(origin))
  const out: number[] = []
  for await (const key of store.db.keys(prefixRange(prefix))) out.push(parseInt(key.slice(prefix.length), 16))
  return out
}

async function latestSeq (origin: string, collection: string, id: string): Promise<number | undefined> {
  const v = await store.db.get(keys.latest(store.logs.of(origin), collection, id))
  return v === undefined ? undefined : Number(utf8.decode(v))
}

/** An entry with its value as text, for deep comparisons (stored values come back as Buffers). */
function view (e: LogEntry): Omit<LogEntry, 'value' | 'bytes' | 'leaf'> & { value?: string } {
  // bytes and leaf are caches filled in by append/signing, not part of the entry
  const { value, bytes: _bytes, leaf: _leaf, ...rest } = e
  return value === undefined ? rest : { ...rest, value: Buffer.from(value).toString('utf8') }
}

function seqsOf (raw: Uint8Array[], origin: string): number[] {
  return raw.map(r => decodeEntry(origin, r).seq)
}

beforeEach(async () => {
  dir = await tempDir('syncmesh-changelog-')
  await open()
  A ??= await newPeerId()
  B ??= await newPeerId()
})

afterEach(async () => {
  await store.close().catch(() => {})
  await removeDir(dir)
})

describe('append', () => {
  it('stores entries, the latest index and the vector in one transaction', async () => {
    const a = new OriginLog(A)
    const entries = [a.put('posts', '1', { t: 1 }), a.put('posts', '2', { t: 2 }), a.del('posts', '3')]
    await store.exclusive(async () => {
      const txn = store.txn()
      await log.append(txn, A, entries, 3)
      // nothing is visible before the commit
      expect(await store.db.get(keys.entry(store.logs.of(A), 1))).toBeUndefined()
      expect(log.vector.get(A)).toBe(0)
      await txn.commit()
      // the in-memory vector moves only on `committed`
      expect(log.vector.get(A)).toBe(0)
      log.committed(A, 3)
    })
    expect(log.vector.get(A)).toBe(3)
    expect(await storedSeqs(A)).toEqual([1, 2, 3])
    for (const e of entries) {
      const raw = await store.db.get(keys.entry(store.logs.of(A), e.seq))
      expect(raw).toBeDefined()
      expect(view(decodeEntry(A, raw as Uint8Array))).toEqual(view(e))
      expect(await latestSeq(A, 'posts', e.id)).toBe(e.seq)
    }
    expect(utf8.decode(await store.db.get(keys.vector(store.logs.of(A))) as Uint8Array)).toBe('3')
  })

  it('entry keys sort by seq (fixed-width hex)', async () => {
    const a = new OriginLog(A)
    const entries = Array.from({ length: 300 }, (_, i) => a.put('posts', `r${i}`, { i }))
    await appendRun(A, entries)
    expect(await storedSeqs(A)).toEqual(entries.map(e => e.seq))
  })

  it('seq key parts have one width up to Number.MAX_SAFE_INTEGER, so keys sort by seq', () => {
    const samples = [0, 1, 15, 16, 2 ** 32, 2 ** 48 - 1, 2 ** 48, 2 ** 52 - 1, 2 ** 52, 2 ** 52 + 1, Number.MAX_SAFE_INTEGER - 1, Number.MAX_SAFE_INTEGER]
    for (const n of samples) expect(seqKeyPart(n)).toHaveLength(seqKeyPart(0).length)
    const sorted = samples.map(seqKeyPart).sort()
    expect(sorted).toEqual(samples.map(seqKeyPart))
    for (const n of samples) expect(parseInt(seqKeyPart(n), 16)).toBe(n)
  })

  it('keeps seq order near 2^52 and 2^53 (the protocol allows seqs up to 2^53 - 1)', async () => {
    const a = new OriginLog(A)
    const seqs = [2 ** 48 + 1, 2 ** 52 - 1, 2 ** 52, 2 ** 52 + 1, Number.MAX_SAFE_INTEGER - 1, Number.MAX_SAFE_INTEGER]
    const entries = seqs.map((seq, i) => { a.seq = seq - 1; return a.put('posts', `r${i}`, { i }) })
    await appendRun(A, entries, Number.MAX_SAFE_INTEGER)
    expect(await storedSeqs(A)).toEqual(seqs)
    const run = await log.readRun(A, 2 ** 48, 100, 1_000_000)
    expect(run && seqsOf(run.entries, A)).toEqual(seqs)
    expect(run?.toSeq).toBe(Number.MAX_SAFE_INTEGER)
    const after = await log.readRun(A, 2 ** 52 - 1, 2, 1_000_000)
    expect(after && seqsOf(after.entries, A)).toEqual([2 ** 52, 2 ** 52 + 1])
  })

  it('successive runs extend the log and the vector', async () => {
    const a = new OriginLog(A)
    await appendRun(A, [a.put('posts', '1', {}), a.put('posts', '2', {})])
    await appendRun(A, [a.put('posts', '3', {})])
    expect(log.vector.get(A)).toBe(3)
    expect(await storedSeqs(A)).toEqual([1, 2, 3])
  })

  it('a run with no entries still advances the vector (a fully compacted range)', async () => {
    await appendRun(A, [], 9)
    expect(log.vector.get(A)).toBe(9)
    expect(await storedSeqs(A)).toEqual([])
  })

  it('keeps origins apart', async () => {
    const a = new OriginLog(A)
    const b = new OriginLog(B)
    await appendRun(A, [a.put('posts', '1', { from: 'a' })])
    await appendRun(B, [b.put('posts', '1', { from: 'b' }), b.put('posts', '1', { from: 'b2' })])
    expect(await storedSeqs(A)).toEqual([1])
    expect(await storedSeqs(B)).toEqual([2])
    expect(log.vector.toJSON()).toEqual({ [A]: 1, [B]: 2 })
  })
})

describe('the vector persists', () => {
  it('across close and reopen', async () => {
    const a = new OriginLog(A)
    const b = new OriginLog(B)
    await appendRun(A, [a.put('posts', '1', {}), a.put('posts', '2', {}), a.put('posts', '3', {})])
    await appendRun(B, [b.put('c', 'x', {})])
    await appendRun(A, [], 10)
    const before = log.vector.toJSON()
    expect(before).toEqual({ [A]: 10, [B]: 1 })
    await reopen()
    expect(log.vector.toJSON()).toEqual(before)
    // and the log goes on from there
    a.seq = 10
    await appendRun(A, [a.put('posts', '1', { v: 2 })])
    await reopen()
    expect(log.vector.get(A)).toBe(11)
    expect(await storedSeqs(A)).toEqual([2, 3, 11])
  })

  it('a transaction that is never committed leaves nothing behind', async () => {
    const a = new OriginLog(A)
    await store.exclusive(async () => {
      const txn = store.txn()
      await log.append(txn, A, [a.put('posts', '1', {})], 1)
      // dropped without commit, e.g. a crash
    })
    await reopen()
    expect(log.vector.get(A)).toBe(0)
    expect(await storedSeqs(A)).toEqual([])
    expect(await latestSeq(A, 'posts', '1')).toBeUndefined()
  })
})

describe('compaction', () => {
  it('keeps only the newest entry per (collection, id) within one run', async () => {
    const a = new OriginLog(A)
    await appendRun(A, [
      a.put('posts', 'a', { v: 1 }), // 1
      a.put('posts', 'b', { v: 1 }), // 2
      a.put('posts', 'a', { v: 2 }), // 3
      a.put('pages', 'a', { v: 1 }), // 4: same id, other collection
      a.del('posts', 'b'), // 5
      a.put('posts', 'a', { v: 3 }), // 6
      a.put('posts', 'c', { v: 1 }) // 7
    ])
    expect(await storedSeqs(A)).toEqual([4, 5, 6, 7])
    expect(await latestSeq(A, 'posts', 'a')).toBe(6)
    expect(await latestSeq(A, 'posts', 'b')).toBe(5)
    expect(await latestSeq(A, 'pages', 'a')).toBe(4)
    expect(await latestSeq(A, 'posts', 'c')).toBe(7)
    expect(log.vector.get(A)).toBe(7)
    const newest = decodeEntry(A, await store.db.get(keys.entry(store.logs.of(A), 6)) as Uint8Array)
    expect(utf8.decode(newest.value as Uint8Array)).toBe('{"v":3}')
  })

  it('across runs, and after reopening', async () => {
    const a = new OriginLog(A)
    await appendRun(A, [a.put('posts', 'a', { v: 1 }), a.put('posts', 'b', { v: 1 })])
    await reopen()
    await appendRun(A, [a.put('posts', 'a', { v: 2 })])
    await appendRun(A, [a.del('posts', 'b'), a.put('posts', 'b', { v: 3 })])
    expect(await storedSeqs(A)).toEqual([3, 5])
    // every `e` key in the whole database
    const all: string[] = []
    for await (const key of store.db.keys(prefixRange('e\x00'))) all.push(key)
    expect(all).toEqual([keys.entry(store.logs.of(A), 3), keys.entry(store.logs.of(A), 5)])
    // every `k` key points at a stored entry
    for await (const [key, value] of store.db.iterator(prefixRange('k\x00'))) {
      const seq = Number(utf8.decode(value))
      const log = key.split('\x00')[1]
      expect(await store.db.get(keys.entry(log, seq)), key).toBeDefined()
    }
  })

  it('the log size tracks the data, not the history', async () => {
    const a = new OriginLog(A)
    for (let round = 0; round < 20; round++) {
      await appendRun(A, Array.from({ length: 10 }, (_, i) => a.put('posts', `r${i}`, { round })))
    }
    expect(log.vector.get(A)).toBe(200)
    expect(await storedSeqs(A)).toEqual(Array.from({ length: 10 }, (_, i) => 191 + i))
  })

  it('does not compact one origin with another', async () => {
    const a = new OriginLog(A)
    const b = new OriginLog(B)
    await appendRun(A, [a.put('posts', 'x', { v: 'a' })])
    await appendRun(B, [b.put('posts', 'x', { v: 'b' })])
    expect(await storedSeqs(A)).toEqual([1])
    expect(await storedSeqs(B)).toEqual([1])
  })

  it('an entry older than the one held for its record is not stored', async () => {
    const a = new OriginLog(A)
    const e1 = a.put('posts', 'x', { v: 1 })
    const e2 = a.put('posts', 'x', { v: 2 })
    await appendRun(A, [e2], 2)
    await appendRun(A, [e1], 2)
    expect(await storedSeqs(A)).toEqual([2])
    expect(await latestSeq(A, 'posts', 'x')).toBe(2)
  })
})

describe('forwardEarly', () => {
  /** Append a signed run of `origin` and issue its write; forwardEarly as the ingestor calls it, with `self` as this node. */
  async function issueSigned (self: string): Promise<{ origin: string, forwarded: Array<{ origin: string, seq: number }>, servedBeforeDurable: number | undefined, durable: Promise<void>, rest: number }> {
    const key = await generateKeyPair('Ed25519')
    const origin = peerIdFromPrivateKey(key).toString()
    const o = new OriginLog(origin)
    const entries = [o.put('posts', '1', { a: 1 }), o.put('posts', '2', { b: 2 }), o.del('posts', '3')]
    const cert = new RunSigner(key, origin).sign(0, 3, entries)
    return await store.exclusive(async () => {
      const txn = store.txn()
      await log.append(txn, origin, entries, 3, [cert])
      const { durable } = await txn.issue()
      log.issued(origin, 3)
      const { rest, forwarded } = log.forwardEarly(log.takeTails(txn), self === 'origin' ? origin : self)
      // nothing of it is durable yet (vector 0): anything readRun serves now comes from memory
      expect(log.vector.get(origin)).toBe(0)
      const run = await log.readRun(origin, 0, 10, 1_000_000)
      return { origin, forwarded, servedBeforeDurable: run?.toSeq, durable, rest: rest.length }
    }, { pipelined: true })
  }

  it("serves another origin's run from memory as soon as its write is issued", async () => {
    const r = await issueSigned(B)
    expect(r.forwarded).toEqual([{ origin: r.origin, seq: 3 }])
    expect(r.rest).toBe(0)
    expect(log.servable.get(r.origin)).toBe(3)
    expect(r.servedBeforeDurable).toBe(3)
    await r.durable
  })

  it("keeps the node's own run until it is durable (a crash could reuse its seqs)", async () => {
    const r = await issueSigned('origin')
    expect(r.forwarded).toEqual([])
    expect(r.rest).toBe(1)
    expect(log.servable.get(r.origin)).toBe(0)
    expect(r.servedBeforeDurable).toBeUndefined()
    await r.durable
    log.committed(r.origin, 3)
    expect((await log.readRun(r.origin, 0, 10, 1_000_000))?.toSeq).toBe(3)
  })
})

describe('servableAsOf', () => {
  it('tells how far an origin was servable a moment ago (what a lazy sender may send)', async () => {
    const a = new OriginLog(A)
    await appendRun(A, [a.put('posts', '1', {}), a.put('posts', '2', {})])
    const t = Date.now()
    expect(log.servableAsOf(A, t + 1)).toBe(2)
    expect(log.servableAsOf(A, t - 5000)).toBe(0) // the advance to 2 came later than that
    expect(log.servableAsOf(B, t - 5000)).toBe(0)
    // readRun stops where it is told to
    await appendRun(A, [a.put('posts', '3', {})])
    expect((await log.readRun(A, 0, 10, 1_000_000, 2))?.toSeq).toBe(2)
    expect((await log.readRun(A, 0, 10, 1_000_000))?.toSeq).toBe(3)
    expect(await log.readRun(A, 2, 10, 1_000_000, 2)).toBeUndefined()
  })
})

describe('readRun', () => {
  it('returns undefined when nothing after afterSeq is held', async () => {
    expect(await log.readRun(A, 0, 10, 1_000_000)).toBeUndefined()
    const a = new OriginLog(A)
    await appendRun(A, [a.put('posts', '1', {}), a.put('posts', '2', {})])
    expect(await log.readRun(A, 2, 10, 1_000_000)).toBeUndefined()
    expect(await log.readRun(A, 5, 10, 1_000_000)).toBeUndefined()
    expect(await log.readRun(B, 0, 10, 1_000_000)).toBeUndefined()
  })

  it('returns the raw entries in seq order, through held', async () => {
    const a = new OriginLog(A)
    const entries = [a.put('posts', '1', { a: 1 }), a.del('posts', '2'), a.put('posts', '3', { c: 'ü' })]
    await appendRun(A, entries)
    const run = await log.readRun(A, 0, 10, 1_000_000)
    expect(run).toBeDefined()
    expect(run?.toSeq).toBe(3)
    expect(run?.entries.map(r => view(decodeEntry(A, r)))).toEqual(entries.map(view))
    expect(run?.entries.map(r => Buffer.from(r).toString('hex'))).toEqual(entries.map(e => Buffer.from(encodeEntry(e)).toString('hex')))
    expect(run?.bytes).toBe(entries.reduce((n, e) => n + encodeEntry(e).byteLength, 0))
    // from the middle
    const rest = await log.readRun(A, 1, 10, 1_000_000)
    expect(rest && seqsOf(rest.entries, A)).toEqual([2, 3])
    expect(rest?.toSeq).toBe(3)
  })

  it('respects maxEntries and continues where it stopped', async () => {
    const a = new OriginLog(A)
    await appendRun(A, Array.from({ length: 10 }, (_, i) => a.put('posts', `r${i}`, { i })))
    const seen: number[] = []
    let after = 0
    const runs: Array<{ seqs: number[], toSeq: number }> = []
    for (;;) {
      const run = await log.readRun(A, after, 3, 1_000_000)
      if (run === undefined) break
      runs.push({ seqs: seqsOf(run.entries, A), toSeq: run.toSeq })
      seen.push(...seqsOf(run.entries, A))
      expect(run.toSeq).toBeGreaterThan(after)
      after = run.toSeq
    }
    expect(seen).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    expect(runs).toEqual([
      { seqs: [1, 2, 3], toSeq: 3 },
      { seqs: [4, 5, 6], toSeq: 6 },
      { seqs: [7, 8, 9], toSeq: 9 },
      { seqs: [10], toSeq: 10 }
    ])
  })

  it('respects maxBytes but always returns at least one entry', async () => {
    const a = new OriginLog(A)
    const entries = Array.from({ length: 6 }, (_, i) => a.put('posts', `r${i}`, { pad: 'x'.repeat(100) }))
    await appendRun(A, entries)
    const size = encodeEntry(entries[0]).byteLength
    const two = await log.readRun(A, 0, 100, size * 2)
    expect(two && seqsOf(two.entries, A)).toEqual([1, 2])
    expect(two?.toSeq).toBe(2)
    expect(two?.bytes).toBe(size * 2)
    const oneAndABit = await log.readRun(A, 2, 100, size + 1)
    expect(oneAndABit && seqsOf(oneAndABit.entries, A)).toEqual([3, 4])
    const tiny = await log.readRun(A, 4, 100, 1)
    expect(tiny && seqsOf(tiny.entries, A)).toEqual([5])
    expect(tiny?.toSeq).toBe(5)
    const last = await log.readRun(A, 5, 100, size * 10)
    expect(last && seqsOf(last.entries, A)).toEqual([6])
    expect(last?.toSeq).toBe(6)
  })

  it('skips compacted seqs and covers them in toSeq', async () => {
    const a = new OriginLog(A)
    await appendRun(A, [
      a.put('posts', 'a', {}), // 1 (compacted)
      a.put('posts', 'b', {}), // 2
      a.put('posts', 'a', {}), // 3 (compacted)
      a.put('posts', 'c', {}), // 4
      a.put('posts', 'a', {}) // 5
    ])
    const all = await log.readRun(A, 0, 100, 1_000_000)
    expect(all && seqsOf(all.entries, A)).toEqual([2, 4, 5])
    expect(all?.toSeq).toBe(5)
    const first = await log.readRun(A, 0, 1, 1_000_000)
    expect(first && seqsOf(first.entries, A)).toEqual([2])
    expect(first?.toSeq).toBe(2)
    const fromGap = await log.readRun(A, 2, 1, 1_000_000)
    expect(fromGap && seqsOf(fromGap.entries, A)).toEqual([4])
    expect(fromGap?.toSeq).toBe(4)
  })

  it('returns toSeq = held when the end is reached, even when the newest seqs were compacted', async () => {
    const a = new OriginLog(A)
    // a run (0, 8] whose seqs 6..8 were compacted away at the sender
    const entries = [a.put('posts', '1', {}), a.put('posts', '2', {}), a.put('posts', '3', {}), a.put('posts', '4', {}), a.put('posts', '5', {})]
    await appendRun(A, entries, 8)
    expect(log.vector.get(A)).toBe(8)
    const all = await log.readRun(A, 0, 100, 1_000_000)
    expect(all && seqsOf(all.entries, A)).toEqual([1, 2, 3, 4, 5])
    expect(all?.toSeq).toBe(8)
    // cut by maxEntries exactly at the last entry: covers at least that entry, at most held
    const part = await log.readRun(A, 0, 5, 1_000_000)
    expect(part && seqsOf(part.entries, A)).toEqual([1, 2, 3, 4, 5])
    expect([5, 8]).toContain(part?.toSeq)
    // cut before the end
    const first = await log.readRun(A, 0, 2, 1_000_000)
    expect(first?.toSeq).toBe(2)
    // what is left is an empty run that still covers (5, 8]
    const tail = await log.readRun(A, 5, 100, 1_000_000)
    expect(tail).toEqual({ fromSeq: 5, entries: [], certs: [], toSeq: 8, bytes: 0 })
    const tail2 = await log.readRun(A, 6, 100, 1_000_000)
    expect(tail2).toMatchObject({ entries: [], certs: [], toSeq: 8, bytes: 0 })
    expect(await log.readRun(A, 8, 100, 1_000_000)).toBeUndefined()
  })

  it('never reads beyond the held seq (entries written but not yet committed to the vector)', async () => {
    const a = new OriginLog(A)
    await appendRun(A, [a.put('posts', '1', {}), a.put('posts', '2', {})])
    // entries 3..4 are in the database, but the in-memory vector has not moved yet
    await store.exclusive(async () => {
      const txn = store.txn()
      await log.append(txn, A, [a.put('posts', '3', {}), a.put('posts', '4', {})], 4)
      await txn.commit()
    })
    const run = await log.readRun(A, 0, 100, 1_000_000)
    expect(run && seqsOf(run.entries, A)).toEqual([1, 2])
    expect(run?.toSeq).toBe(2)
    log.committed(A, 4)
    const next = await log.readRun(A, 2, 100, 1_000_000)
    expect(next && seqsOf(next.entries, A)).toEqual([3, 4])
    expect(next?.toSeq).toBe(4)
  })

  describe('never claims more than the snapshot it reads proves', () => {
    /** A signed origin whose runs are appended the way the ingestor does; `commit: false` leaves the in-memory vector behind. */
    async function signedOrigin (): Promise<{ origin: string, run: (entries: LogEntry[], commit?: boolean) => Promise<void> }> {
      const key = await generateKeyPair('Ed25519')
      const origin = peerIdFromPrivateKey(key).toString()
      const signer = new RunSigner(key, origin)
      let signed = 0
      return {
        origin,
        run: async (entries, commit = true) => {
          const to = entries[entries.length - 1].seq
          const cert = signer.sign(signed, to, entries)
          signed = to
          await store.exclusive(async () => {
            const txn = store.txn()
            await log.append(txn, origin, entries, to, [cert])
            await txn.commit()
            // the batch is in LevelDB (and in every snapshot) before the commit's promise advances the vector
            if (commit) log.committed(origin, to)
          })
        }
      }
    }

    /** What a receiver does with a batch: every entry signed, and the range ends where a signed run ends. */
    function receive (origin: string, run: { fromSeq: number, toSeq: number, entries: Uint8Array[], certs: Uint8Array[] }): void {
      verifyRuns(origin, run.entries.map(b => decodeEntry(origin, b)), run.certs.map(c => decodeCert(c)), { from: run.fromSeq, to: run.toSeq })
    }

    it('when a newer run in the snapshot compacted every run up to the vector', async () => {
      const { origin, run } = await signedOrigin()
      const o = new OriginLog(origin)
      await run([o.put('posts', 'a', { v: 1 }), o.put('posts', 'b', { v: 1 })]) // (0, 2]
      await run([o.put('posts', 'a', { v: 2 }), o.put('posts', 'b', { v: 2 })], false) // (2, 4] supersedes both
      expect(log.vector.get(origin)).toBe(2)
      const batch = await log.readRun(origin, 0, 100, 1_000_000)
      expect(batch).toBeDefined()
      receive(origin, batch!)
      expect(seqsOf(batch!.entries, origin)).toEqual([3, 4])
      expect(batch!.toSeq).toBe(4)
    })

    it('when a newer run in the snapshot compacted only the newest run up to the vector', async () => {
      const { origin, run } = await signedOrigin()
      const o = new OriginLog(origin)
      await run([o.put('posts', 'a', {}), o.put('posts', 'b', {})]) // (0, 2]
      await run([o.put('posts', 'c', { v: 1 })]) // (2, 3]
      await run([o.put('posts', 'c', { v: 2 }), o.put('posts', 'd', {})], false) // (3, 5] supersedes 3
      expect(log.vector.get(origin)).toBe(3)
      const first = await log.readRun(origin, 0, 100, 1_000_000)
      receive(origin, first!)
      expect(seqsOf(first!.entries, origin)).toEqual([1, 2])
      expect(first!.toSeq).toBe(2)
      const next = await log.readRun(origin, 2, 100, 1_000_000)
      receive(origin, next!)
      expect(seqsOf(next!.entries, origin)).toEqual([4, 5])
      expect(next!.toSeq).toBe(5)
    })

    it('and through a lazy cap that ends inside a compacted range', async () => {
      const { origin, run } = await signedOrigin()
      const o = new OriginLog(origin)
      await run([o.put('posts', 'a', {})]) // (0, 1]
      await run([o.put('posts', 'a', {}), o.put('posts', 'b', {})]) // (1, 3] supersedes 1
      // seq 1's run was compacted away: serving "through 1" would claim a run nobody can verify
      const capped = await log.readRun(origin, 0, 100, 1_000_000, 1)
      receive(origin, capped!)
      expect(capped!.toSeq).toBe(3)
      const whole = await log.readRun(origin, 0, 100, 1_000_000)
      receive(origin, whole!)
      expect(whole!.toSeq).toBe(3)
    })
  })

  it('does not mix origins whose ids share a prefix', async () => {
    const short = 'QmShortOrigin'
    const long = 'QmShortOriginLonger'
    const s = new OriginLog(short)
    const l = new OriginLog(long)
    await appendRun(short, [s.put('posts', '1', {})])
    await appendRun(long, [l.put('posts', '1', {}), l.put('posts', '2', {}), l.put('posts', '3', {})])
    const run = await log.readRun(short, 0, 100, 1_000_000)
    expect(run?.entries).toHaveLength(1)
    expect(run?.toSeq).toBe(1)
    const other = await log.readRun(long, 0, 100, 1_000_000)
    expect(other?.entries).toHaveLength(3)
  })
})

describe('readCollection', () => {
  it('pages through the newest entry of every record, in id order', async () => {
    const a = new OriginLog(A)
    const ids = ['a', 'b', 'c', 'd', 'e', 'f', 'g']
    // written out of id order, with updates and a delete
    await appendRun(A, [
      a.put('posts', 'd', { v: 1 }), a.put('posts', 'a', { v: 1 }), a.put('posts', 'g', { v: 1 }),
      a.put('posts', 'b', { v: 1 }), a.put('posts', 'f', { v: 1 }), a.put('posts', 'c', { v: 1 }),
      a.put('posts', 'e', { v: 1 }), a.put('posts', 'a', { v: 2 }), a.del('posts', 'f'),
      a.put('other', 'zz', { v: 1 })
    ])
    const pages: string[][] = []
    let after: string | undefined
    const got: LogEntry[] = []
    for (;;) {
      const page = await log.readCollection(A, 'posts', after, 3)
      if (page.length === 0) break
      pages.push(page.map(e => e.id))
      got.push(...page)
      after = page[page.length - 1].id
      if (page.length < 3) break
    }
    expect(pages).toEqual([['a', 'b', 'c'], ['d', 'e', 'f'], ['g']])
    expect(got.map(e => e.id)).toEqual(ids)
    const a2 = got.find(e => e.id === 'a') as LogEntry
    expect(a2.seq).toBe(8)
    expect(utf8.decode(a2.value as Uint8Array)).toBe('{"v":2}')
    const f = got.find(e => e.id === 'f') as LogEntry
    expect(f.op).toBe('del')
    expect(f.seq).toBe(9)
    for (const e of got) expect(e.origin).toBe(A)
  })

  it('a chunk passes over records whose newest entry is above upTo, unread, and still reports where it stopped', async () => {
    const a = new OriginLog(A)
    // seqs: a=1, b=2, c=3, d=4, then b=5 and d=6 supersede b and d
    await appendRun(A, [
      a.put('posts', 'a', { v: 1 }), a.put('posts', 'b', { v: 1 }), a.put('posts', 'c', { v: 1 }), a.put('posts', 'd', { v: 1 }),
      a.put('posts', 'b', { v: 2 }), a.put('posts', 'd', { v: 2 })
    ])
    const first = await log.readCollectionChunk(A, 'posts', undefined, 2, 4)
    expect(first.entries.map(e => `${e.id}@${e.seq}`)).toEqual(['a@1'])
    expect(first).toMatchObject({ lastId: 'b', scanned: 2 })
    const second = await log.readCollectionChunk(A, 'posts', first.lastId, 2, 4)
    expect(second.entries.map(e => `${e.id}@${e.seq}`)).toEqual(['c@3'])
    expect(second).toMatchObject({ lastId: 'd', scanned: 2 })
    const end = await log.readCollectionChunk(A, 'posts', second.lastId, 2, 4)
    expect(end).toEqual({ entries: [], scanned: 0 })
    // without upTo, every record's newest entry
    expect((await log.readCollectionChunk(A, 'posts', undefined, 10)).entries.map(e => `${e.id}@${e.seq}`)).toEqual(['a@1', 'b@5', 'c@3', 'd@6'])
  })

  it('afterId need not be an existing id, and past the end gives an empty page', async () => {
    const a = new OriginLog(A)
    await appendRun(A, ['b', 'd', 'f'].map(id => a.put('posts', id, {})))
    expect((await log.readCollection(A, 'posts', 'c', 10)).map(e => e.id)).toEqual(['d', 'f'])
    expect((await log.readCollection(A, 'posts', 'a', 1)).map(e => e.id)).toEqual(['b'])
    expect(await log.readCollection(A, 'posts', 'f', 10)).toEqual([])
    expect(await log.readCollection(A, 'posts', 'zzz', 10)).toEqual([])
    expect(await log.readCollection(A, 'nothing', undefined, 10)).toEqual([])
    expect(await log.readCollection(B, 'posts', undefined, 10)).toEqual([])
  })

  it('keeps collections and origins apart, also when names share a prefix', async () => {
    const a = new OriginLog(A)
    const b = new OriginLog(B)
    await appendRun(A, [a.put('post', '1', {}), a.put('posts', '2', {}), a.put('posts2', '3', {}), a.put('posts', '4', {})])
    await appendRun(B, [b.put('posts', '9', {})])
    expect((await log.readCollection(A, 'posts', undefined, 10)).map(e => e.id)).toEqual(['2', '4'])
    expect((await log.readCollection(A, 'post', undefined, 10)).map(e => e.id)).toEqual(['1'])
    expect((await log.readCollection(A, 'posts2', undefined, 10)).map(e => e.id)).toEqual(['3'])
    expect((await log.readCollection(B, 'posts', undefined, 10)).map(e => e.id)).toEqual(['9'])
  })

  it('reads many records in bounded pages', async () => {
    const a = new OriginLog(A)
    const ids = Array.from({ length: 1234 }, (_, i) => `id-${String(i).padStart(5, '0')}`)
    await appendRun(A, ids.map(id => a.put('posts', id, { id })))
    let after: string | undefined
    const seen: string[] = []
    for (;;) {
      const page = await log.readCollection(A, 'posts', after, 500)
      expect(page.length).toBeLessThanOrEqual(500)
      seen.push(...page.map(e => e.id))
      if (page.length < 500) break
      after = page[page.length - 1].id
    }
    expect(seen).toEqual(ids)
  })
})
