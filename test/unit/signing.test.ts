/**
 * Signed runs: Merkle roots, pruning under compaction, verification of what
 * the change log serves, and rejection of tampering.
 */
import { createHash } from 'node:crypto'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { ChangeLog } from '../../src/log/changelog.js'
import { decodeEntry, encodeEntry } from '../../src/log/entry.js'
import type { LogEntry } from '../../src/log/entry.js'
import { Attester, decodeCert, encodeCert, leafHash, levelWidths, livePositions, merkleRoot, pruneLeaf, prunedProblem, RunSigner, SignatureError, verifyAttestedRuns, verifyRuns, verifyUpdate } from '../../src/log/signing.js'
import type { AttestedCert } from '../../src/log/signing.js'
import { decodeFrame, encodeBatchFrame } from '../../src/network/sync/codec.js'
import type { Cert } from '../../src/log/signing.js'
import { Store } from '../../src/store/db.js'
import { keys, prefixRange } from '../../src/store/keys.js'
import { OriginLog } from '../helpers/ingest-harness.js'
import { removeDir, tempDir } from '../helpers/nodes.js'

async function signer (): Promise<RunSigner> {
  const key = await generateKeyPair('Ed25519')
  return new RunSigner(key, peerIdFromPrivateKey(key).toString())
}

function seqsOfRun (origin: string, raw: Uint8Array[]): number[] {
  return raw.map(b => decodeEntry(origin, b).seq)
}

function rand (seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0
    return s / 2 ** 32
  }
}

/** Fresh copies, as a receiver decodes them (no cached bytes/leaf). */
function received (origin: string, entries: LogEntry[]): LogEntry[] {
  return entries.map(e => decodeEntry(origin, encodeEntry(e)))
}

describe('Merkle runs', () => {
  it('hashes leaves and nodes as protocols/sync specifies, for entries of any size and in any order', () => {
    const sha = (...parts: Uint8Array[]): Buffer => createHash('sha256').update(Buffer.concat(parts)).digest()
    const prefix = Buffer.from('syncmesh/leaf/1\0')
    // small, growing past the kept input buffer, past its limit, and small again (nothing of a longer one left behind)
    const inputs = [new Uint8Array([1, 2, 3]), new Uint8Array(5000).fill(7), new Uint8Array(100_000).fill(9), new Uint8Array([4])]
    const leaves = inputs.map(b => leafHash(b))
    inputs.forEach((b, i) => expect(Buffer.from(leaves[i]).equals(sha(prefix, b))).toBe(true))
    // three leaves: node(node(l0, l1), l2), the odd one promoted
    const root = merkleRoot(3, new Map(leaves.slice(0, 3).map((l, i) => [i, l])), []) as Uint8Array
    const expected = sha(Buffer.from([1]), sha(Buffer.from([1]), leaves[0], leaves[1]), leaves[2])
    expect(Buffer.from(root).equals(expected)).toBe(true)
  })

  it('pruning any subset keeps the root reproducible from the survivors', () => {
    const r = rand(7)
    for (let trial = 0; trial < 200; trial++) {
      const n = 1 + Math.floor(r() * 40)
      const leaves = Array.from({ length: n }, (_, i) => leafHash(new Uint8Array([i, trial, n])))
      const full = new Map(leaves.map((h, i) => [i, h]))
      const root = merkleRoot(n, full, [])
      let pruned: Cert['pruned'] = []
      const survivors = new Map(full)
      const order = [...full.keys()].sort(() => r() - 0.5)
      for (const [k, idx] of order.entries()) {
        const res = pruneLeaf(n, pruned, idx, leaves[idx])
        pruned = res.pruned
        survivors.delete(idx)
        expect(res.empty).toBe(k === n - 1)
        if (!res.empty) {
          expect(Buffer.from(merkleRoot(n, survivors, pruned) as Uint8Array).equals(Buffer.from(root as Uint8Array))).toBe(true)
          // the pruned set stays small: never more nodes than survivors × levels + levels
          expect(pruned.length).toBeLessThanOrEqual((survivors.size + 1) * Math.ceil(Math.log2(n + 1)) + 1)
        }
      }
    }
  })

  it('a missing leaf makes the root undefined', () => {
    const leaves = new Map([[0, leafHash(new Uint8Array([1]))], [2, leafHash(new Uint8Array([3]))]])
    expect(merkleRoot(3, leaves, [])).toBeUndefined()
  })
})

describe('signing and verification', () => {
  it('verifies a signed run and rejects tampering, reordering, omission, addition and a foreign signature', async () => {
    const s = await signer()
    const o = new OriginLog(s.origin)
    const entries = [o.put('posts', 'a', { v: 1 }), o.put('posts', 'b', { v: 2 }), o.del('posts', 'c'), o.put('posts', 'd', { v: 4 })]
    const cert = s.sign(0, 4, entries)
    expect(() => verifyRuns(s.origin, received(s.origin, entries), [cert])).not.toThrow()

    const altered = received(s.origin, entries)
    altered[1].value = Buffer.from('{"v":666}')
    expect(() => verifyRuns(s.origin, altered, [cert])).toThrow(SignatureError)

    const swapped = received(s.origin, entries)
    ;[swapped[0].seq, swapped[1].seq] = [swapped[1].seq, swapped[0].seq]
    swapped.sort((x, y) => x.seq - y.seq)
    expect(() => verifyRuns(s.origin, swapped, [cert])).toThrow(SignatureError)

    expect(() => verifyRuns(s.origin, received(s.origin, entries).slice(0, 3), [cert])).toThrow(SignatureError)
    expect(() => verifyRuns(s.origin, received(s.origin, entries), [])).toThrow(SignatureError)

    const other = await signer()
    const forged = other.sign(0, 4, received(s.origin, entries))
    expect(() => verifyRuns(s.origin, received(s.origin, entries), [forged])).toThrow(SignatureError)

    const wrongRange = { ...cert, to: 5 }
    expect(() => verifyRuns(s.origin, received(s.origin, entries), [wrongRange])).toThrow(SignatureError)
  })

  it('entries received as bytes are hashed as received; an oddly ordered encoding falls back to the canonical one', async () => {
    const s = await signer()
    const o = new OriginLog(s.origin)
    const entries = [o.put('posts', 'a', { v: 1 }), o.put('posts', 'b', { v: 2 })]
    const cert = s.sign(0, 2, entries)
    const canonical = entries.map(e => encodeEntry(e))
    // the same fields, last field (value, 7) first: valid protobuf, other bytes
    const reordered = entries.map(e => {
      const value = e.value as Uint8Array
      return Buffer.concat([Buffer.from([0x3a, value.byteLength]), value, encodeEntry({ ...e, value: undefined, bytes: undefined })])
    })
    expect(reordered.map(b => Buffer.from(b))).not.toEqual(canonical.map(b => Buffer.from(b)))
    const wire = reordered.map(b => ({ ...decodeEntry(s.origin, b), bytes: b }))
    expect(wire.map(e => Buffer.from(e.value as Uint8Array))).toEqual(entries.map(e => Buffer.from(e.value as Uint8Array)))
    expect(() => verifyRuns(s.origin, wire, [cert])).not.toThrow()
    // what gets stored and forwarded is the canonical encoding the origin signed
    expect(wire.map(e => Buffer.from(e.bytes as Uint8Array))).toEqual(canonical.map(b => Buffer.from(b)))

    // a tampered value is not rescued by the fallback
    const tampered = received(s.origin, entries).map(e => ({ ...e, bytes: encodeEntry(e) }))
    tampered[0].value = Buffer.from('{"v":9}')
    tampered[0].bytes = encodeEntry(tampered[0])
    expect(() => verifyRuns(s.origin, tampered, [cert])).toThrow(SignatureError)
  })
})

/**
 * What a relay holding the mesh key can build from an origin's genuine run
 * certificate: the same signature, its own pruned list, entries of its own.
 * Each batch goes through the real frame codec, then verification.
 */
describe('pruned nodes stand only for entries that are absent', () => {
  const te = new TextEncoder()
  async function genuine (n: number): Promise<{ s: RunSigner, entries: LogEntry[], cert: Cert, leaves: Uint8Array[], root: Uint8Array }> {
    const s = await signer()
    const o = new OriginLog(s.origin)
    const entries = Array.from({ length: n }, (_, i) => o.put('posts', `p${i}`, { v: i }))
    const cert = s.sign(0, n, entries)
    const leaves = entries.map(e => leafHash(encodeEntry(e)))
    const root = merkleRoot(n, new Map(leaves.map((l, i) => [i, l])), []) as Uint8Array
    return { s, entries, cert, leaves, root }
  }
  /** A batch as the wire carries it, decoded by the real codec and verified. */
  function deliver (origin: string, from: number, to: number, entries: LogEntry[], certs: Cert[]): void {
    const framed = encodeBatchFrame(origin, from, to, entries.map(e => encodeEntry(e)), certs.map(c => encodeCert(c)))
    let i = 0
    while ((framed[i] & 0x80) !== 0) i++
    const msg = decodeFrame(framed.subarray(i + 1))
    if (msg.type !== 'batch') throw new Error('not a batch')
    verifyRuns(origin, msg.entries, msg.certs, { from: msg.fromSeq, to: msg.toSeq })
  }
  const forge = (e: LogEntry, value: object): LogEntry => ({ ...e, value: te.encode(JSON.stringify(value)), bytes: undefined, leaf: undefined, parsed: undefined })

  it('the honest batch verifies (the baseline)', async () => {
    const g = await genuine(8)
    expect(() => deliver(g.s.origin, 0, 8, g.entries, [g.cert])).not.toThrow()
  })

  it('refuses the root as a pruned node, with forged entries under it or none', async () => {
    const g = await genuine(8)
    const top = levelWidths(8).length - 1
    const rootPruned = { ...g.cert, pruned: [{ level: top, index: 0, hash: g.root }] }
    const forged = g.entries.map(e => forge(e, { forged: true }))
    expect(() => deliver(g.s.origin, 0, 8, forged, [rootPruned])).toThrow(SignatureError)
    expect(() => deliver(g.s.origin, 0, 8, [forged[7]], [rootPruned])).toThrow(SignatureError)
    expect(() => deliver(g.s.origin, 0, 8, [], [rootPruned])).toThrow(SignatureError)
    // a run of one entry: its only leaf is its root
    const one = await genuine(1)
    const onePruned = { ...one.cert, pruned: [{ level: 0, index: 0, hash: one.root }] }
    expect(() => deliver(one.s.origin, 0, 1, [forge(one.entries[0], { x: 1 })], [onePruned])).toThrow(SignatureError)
    expect(() => deliver(one.s.origin, 0, 1, [], [onePruned])).toThrow(SignatureError)
  })

  it('refuses entries under a pruned inner node, and a present entry whose own leaf is also pruned', async () => {
    const g = await genuine(8)
    // leaves 0-3 pruned as one node (their true hash), forged entries at seqs 1 and 2 under it, the rest genuine
    const left = merkleRoot(4, new Map(g.leaves.slice(0, 4).map((l, i) => [i, l])), []) as Uint8Array
    const inner = { ...g.cert, pruned: [{ level: 2, index: 0, hash: left }] }
    expect(() => deliver(g.s.origin, 0, 8, g.entries.slice(4), [inner])).not.toThrow() // honest: leaves 0-3 absent
    expect(() => deliver(g.s.origin, 0, 8, [forge(g.entries[0], { a: 1 }), forge(g.entries[1], { b: 2 }), ...g.entries.slice(4)], [inner])).toThrow(SignatureError)
    // leaf 2 pruned with its genuine hash, and a forged entry sent for seq 3 as well
    const leaf = { ...g.cert, pruned: [{ level: 0, index: 2, hash: g.leaves[2] }] }
    const present = [...g.entries.slice(0, 2), forge(g.entries[2], { c: 3 }), ...g.entries.slice(3)]
    expect(() => deliver(g.s.origin, 0, 8, present, [leaf])).toThrow(SignatureError)
    expect(() => deliver(g.s.origin, 0, 8, [...g.entries.slice(0, 2), ...g.entries.slice(3)], [leaf])).not.toThrow()
  })

  it('refuses overlapping, duplicate, out-of-tree and odd-sized pruned nodes, even where the root would still match', async () => {
    const g = await genuine(5)
    const ok = { ...g.cert, pruned: [{ level: 0, index: 1, hash: g.leaves[1] }] }
    const rest = [g.entries[0], ...g.entries.slice(2)]
    expect(() => deliver(g.s.origin, 0, 5, rest, [ok])).not.toThrow()
    const variants: Array<Cert['pruned']> = [
      [...ok.pruned, ...ok.pruned], // duplicate
      [...ok.pruned, { level: 0, index: 7, hash: g.leaves[1] }], // beyond level 0's 5 nodes
      [...ok.pruned, { level: 9, index: 0, hash: g.leaves[1] }], // above the tree
      [...ok.pruned, { level: 1, index: 0, hash: merkleRoot(2, new Map([[0, g.leaves[0]], [1, g.leaves[1]]]), []) as Uint8Array }], // overlaps and covers entry 1
      [{ level: 0, index: 1, hash: g.leaves[1].subarray(0, 31) }] // not a digest
    ]
    for (const pruned of variants) {
      expect(() => verifyRuns(g.s.origin, received(g.s.origin, rest), [{ ...g.cert, pruned }], { from: 0, to: 5 })).toThrow(SignatureError)
    }
    // an odd last node promoted: pruned once at level 0 or once at level 1 is the same subtree; both at once overlap
    const last0 = { level: 0, index: 4, hash: g.leaves[4] }
    const last1 = { level: 1, index: 2, hash: g.leaves[4] }
    expect(() => verifyRuns(g.s.origin, received(g.s.origin, g.entries.slice(0, 4)), [{ ...g.cert, pruned: [last0] }])).not.toThrow()
    expect(() => verifyRuns(g.s.origin, received(g.s.origin, g.entries.slice(0, 4)), [{ ...g.cert, pruned: [last1] }])).not.toThrow()
    expect(() => verifyRuns(g.s.origin, received(g.s.origin, g.entries.slice(0, 4)), [{ ...g.cert, pruned: [last0, last1] }])).toThrow(SignatureError)
  })

  it('prunedProblem accepts exactly the partitions of the leaves into present leaves and disjoint subtrees below the root', () => {
    const r = rand(3)
    for (let trial = 0; trial < 2000; trial++) {
      const n = 1 + Math.floor(r() * 20)
      const widths = levelWidths(n)
      const present = [...Array(n).keys()].filter(() => r() < 0.5)
      const pruned = Array.from({ length: Math.floor(r() * 4) }, () => {
        const level = Math.floor(r() * widths.length)
        return { level, index: Math.floor(r() * (widths[level] + 1)), hash: new Uint8Array(32) }
      })
      // the model: every leaf exactly once, no root, inside the tree
      const count = new Array<number>(n).fill(0)
      for (const i of present) count[i]++
      let valid = true
      for (const p of pruned) {
        if (p.level >= widths.length - 1 || p.index >= widths[p.level]) { valid = false; continue }
        for (let i = p.index * 2 ** p.level; i < Math.min((p.index + 1) * 2 ** p.level, n); i++) count[i]++
      }
      valid &&= count.every(c => c === 1)
      expect(prunedProblem(n, present, pruned) === undefined, JSON.stringify({ n, present, pruned: pruned.map(p => [p.level, p.index]) })).toBe(valid)
    }
  })
})

/**
 * Version 2 (protocols/sync/completeness.md): the origin attests which
 * entries of each run are live as of a seq of its log. One origin's log:
 *   run A (0, 4]: a b c d      run B (4, 6]: e b'      run C (6, 8]: a' c'      run D (8, 9]: d'
 * so as of 9, A is gone, B holds e and b', C and D hold everything.
 */
describe('attested runs (version 2 verification)', () => {
  async function attestedLog (): Promise<{
    origin: string
    att: Attester
    runs: Array<{ from: number, to: number, entries: LogEntry[], root: Uint8Array, fresh: AttestedCert }>
    /** The run as of 9, as an honest relay holds and serves it. */
    asOf9: (k: number) => { cert: AttestedCert, entries: LogEntry[] }
  }> {
    const key = await generateKeyPair('Ed25519')
    const origin = peerIdFromPrivateKey(key).toString()
    const att = new Attester(key, origin)
    const o = new OriginLog(origin)
    const ids = [['a', 'b', 'c', 'd'], ['e', 'b'], ['a', 'c'], ['d']]
    const runs = []
    let from = 0
    for (const group of ids) {
      const entries = group.map(id => o.put('posts', id, { id, seq: o.seq + 1 }))
      const { cert, root } = att.run(from, from + entries.length, entries)
      runs.push({ from, to: from + entries.length, entries, root, fresh: cert })
      from += entries.length
    }
    const all = runs.flatMap(r => r.entries)
    const newest = new Map<string, number>()
    for (const e of all) newest.set(e.id, e.seq)
    const asOf9 = (k: number): { cert: AttestedCert, entries: LogEntry[] } => {
      const r = runs[k]
      const live = r.entries.filter(e => newest.get(e.id) === e.seq)
      if (live.length === 0) return { cert: att.gone(r.from, r.to, 9), entries: [] }
      let pruned: Cert['pruned'] = []
      for (const e of r.entries) if (!live.includes(e)) pruned = pruneLeaf(r.to - r.from, pruned, e.seq - r.from - 1, leafHash(encodeEntry(e))).pruned
      const cert = att.live(r.from, r.to, 9, r.root, live.map(e => e.seq - r.from - 1), pruned)
      return { cert: { ...cert, live: undefined }, entries: live }
    }
    return { origin, att, runs, asOf9 }
  }
  const copy = (entries: LogEntry[]): LogEntry[] => entries.map(e => decodeEntry(e.origin, encodeEntry(e)))
  const verify = (origin: string, entries: LogEntry[], certs: AttestedCert[], from: number, to: number): Array<Uint8Array | undefined> => verifyAttestedRuns(origin, copy(entries), certs, { from, to })

  it('verifies fresh runs and compacted runs as the origin attested them, and returns each run\'s root', async () => {
    const l = await attestedLog()
    expect(verify(l.origin, l.runs.flatMap(r => r.entries), l.runs.map(r => r.fresh), 0, 9).map(r => Buffer.from(r as Uint8Array))).toEqual(l.runs.map(r => Buffer.from(r.root)))
    const compacted = [0, 1, 2, 3].map(l.asOf9)
    expect(compacted[0].cert.gone).toBe(true)
    expect(compacted[1].entries.map(e => e.id)).toEqual(['e', 'b'])
    expect(verify(l.origin, compacted.flatMap(c => c.entries), compacted.map(c => c.cert), 0, 9)[0]).toBeUndefined()
    // a relay holding an older attestation sends what was live then: also complete
    expect(() => verify(l.origin, l.runs[0].entries, [l.runs[0].fresh], 0, 4)).not.toThrow()
  })

  it('refuses one live entry withheld behind its leaf hash, and accepts leaving out what the origin attested superseded', async () => {
    const l = await attestedLog()
    const c = l.asOf9(2) // a' and c', both live
    const withheld = { ...c.cert, pruned: [{ level: 0, index: 1, hash: leafHash(encodeEntry(c.entries[1])) }] }
    expect(() => verify(l.origin, [c.entries[0]], [withheld], 6, 8)).toThrow(/attestation/)
    // the same with the run's fresh certificate
    expect(() => verify(l.origin, [l.runs[2].entries[0]], [{ ...l.runs[2].fresh, pruned: withheld.pruned }], 6, 8)).toThrow(SignatureError)
    // b (seq 2) was superseded by b' (seq 6) as the origin attests: leaving it out is allowed
    const b = l.asOf9(1)
    expect(() => verify(l.origin, b.entries, [b.cert], 4, 6)).not.toThrow()
  })

  it('refuses the last run withheld: a pruned root, a gone span the origin did not sign, or no certificate', async () => {
    const l = await attestedLog()
    const d = l.runs[3]
    expect(() => verify(l.origin, [], [{ ...d.fresh, pruned: [{ level: 0, index: 0, hash: d.root }] }], 8, 9)).toThrow(SignatureError)
    const other = new Attester(await generateKeyPair('Ed25519'), l.origin)
    expect(() => verify(l.origin, [], [other.gone(8, 9, 9)], 8, 9)).toThrow(/not attested gone/)
    expect(() => verify(l.origin, [], [], 8, 9)).toThrow(SignatureError)
    // a genuine gone span does not cover entries sent with it
    expect(() => verify(l.origin, d.entries, [l.att.gone(8, 9, 9)], 8, 9)).toThrow(/attested gone but the batch holds/)
    expect(() => verify(l.origin, [], [l.asOf9(0).cert], 0, 4)).not.toThrow()
  })

  it('refuses whole runs skipped between certificates (the certificates must tile the batch)', async () => {
    const l = await attestedLog()
    const [a, b, c, d] = [0, 1, 2, 3].map(l.asOf9)
    // runs B and C left out, the range still (0, 9]
    expect(() => verify(l.origin, [...a.entries, ...d.entries], [a.cert, d.cert], 0, 9)).toThrow(/tile/)
    // the last run alone, its range stretched back over the ones before it
    expect(() => verify(l.origin, d.entries, [d.cert], 4, 9)).toThrow(/tile/)
    // a gap closed with a gone span of the origin's for runs that are not gone: no such signature exists
    const impostor = new Attester(await generateKeyPair('Ed25519'), l.origin)
    expect(() => verify(l.origin, [...a.entries, ...d.entries], [a.cert, impostor.gone(4, 8, 9), d.cert], 0, 9)).toThrow(SignatureError)
    expect(() => verify(l.origin, [...a.entries, ...b.entries, ...c.entries, ...d.entries], [a.cert, b.cert, c.cert, d.cert], 0, 9)).not.toThrow()
  })

  it('refuses forgery under a live attestation exactly as in version 1', async () => {
    const l = await attestedLog()
    const r = l.runs[0]
    const forged = r.entries.map(e => ({ ...e, value: new TextEncoder().encode('{"forged":1}'), bytes: undefined, leaf: undefined }))
    expect(() => verify(l.origin, forged, [{ ...r.fresh, pruned: [{ level: 2, index: 0, hash: r.root }] }], 0, 4)).toThrow(SignatureError)
    expect(() => verify(l.origin, [forged[0], ...r.entries.slice(1)], [r.fresh], 0, 4)).toThrow(SignatureError)
  })

  it('an update shrinks a stored run\'s live set only as the origin attests, checked against the root the receiver stored', async () => {
    const l = await attestedLog()
    const r = l.runs[1] // e b', fresh as of 6
    const stored = { from: r.from, to: r.to, asOf: 6, root: r.root, live: [0, 1] }
    const shrink = l.att.live(r.from, r.to, 9, r.root, [0], [])
    expect(verifyUpdate(l.origin, stored, shrink)).toEqual([0])
    expect(verifyUpdate(l.origin, { ...stored, asOf: 9 }, shrink)).toBe('stale')
    expect(() => verifyUpdate(l.origin, { ...stored, root: l.runs[0].root.subarray(0) }, shrink)).toThrow(SignatureError) // another run's root
    expect(() => verifyUpdate(l.origin, { ...stored, live: [1] }, shrink)).toThrow(/superseded before/)
    expect(() => verifyUpdate(l.origin, stored, { ...shrink, live: new Uint8Array([3]) })).toThrow(SignatureError) // bitmap not the signed one
    expect(() => verifyUpdate(l.origin, stored, { ...shrink, live: new Uint8Array([0x80]) })).toThrow(/bitmap/) // a bit beyond the run
    expect(verifyUpdate(l.origin, stored, l.att.gone(0, 6, 9))).toEqual([])
    expect(() => verifyUpdate(l.origin, stored, l.att.gone(5, 6, 9))).toThrow(/does not cover/)
    expect(livePositions(10, new Uint8Array([0x81, 0x02]))).toEqual([0, 7, 9])
  })
})

describe('signed runs in the change log', () => {
  let dir: string
  let store: Store
  let log: ChangeLog
  beforeEach(async () => {
    dir = await tempDir()
    store = new Store(dir)
    await store.open()
    log = new ChangeLog(store)
    await log.load()
  })
  afterEach(async () => {
    await store.close()
    await removeDir(dir)
  })

  async function append (origin: string, entries: LogEntry[], certs: Cert[], toSeq: number): Promise<void> {
    await store.exclusive(async () => {
      const txn = store.txn()
      await log.append(txn, origin, entries, toSeq, certs)
      await txn.commit()
      log.committed(origin, toSeq)
    })
  }

  async function certCount (origin: string): Promise<number> {
    let n = 0
    for await (const _ of store.db.keys(prefixRange(keys.certPrefix(store.logs.of(origin))))) n++
    return n
  }

  it('serves the newest runs from memory exactly as the database holds them, and drops them on compaction', async () => {
    const s = await signer()
    const o = new OriginLog(s.origin)
    const appendCached = async (entries: LogEntry[], from: number, to: number): Promise<void> => {
      await store.exclusive(async () => {
        const txn = store.txn()
        await log.append(txn, s.origin, entries, to, [s.sign(from, to, entries)])
        await txn.commit()
        log.committed(s.origin, to)
        log.installTails(log.takeTails(txn))
      })
    }
    const plain = (r: Awaited<ReturnType<ChangeLog['readRun']>>): unknown => r === undefined ? r : { ...r, entries: r.entries.map(b => Buffer.from(b)), certs: r.certs.map(b => Buffer.from(b)) }
    const fromDb = async (after: number): Promise<unknown> => {
      const cold = new ChangeLog(store) // no cache: reads LevelDB
      await cold.load()
      return plain(await cold.readRun(s.origin, after, 512, 1 << 20))
    }
    const getMany = vi.spyOn(store.db, 'iterator')
    await appendCached([o.put('c', 'a', { v: 1 }), o.put('c', 'b', { v: 1 })], 0, 2)
    await appendCached([o.put('c', 'c', { v: 1 })], 2, 3)
    getMany.mockClear()
    const hot = await log.readRun(s.origin, 0, 512, 1 << 20)
    const hotNext = await log.readRun(s.origin, 2, 512, 1 << 20)
    expect(getMany).not.toHaveBeenCalled() // served from memory
    getMany.mockRestore()
    expect(plain(hot)).toEqual(await fromDb(0))
    expect(plain(hotNext)).toEqual(await fromDb(2))
    expect(hot?.toSeq).toBe(3)
    // an update compacts an earlier run: the cache is dropped, what is served matches the database
    await appendCached([o.put('c', 'a', { v: 2 })], 3, 4)
    const afterUpdate = await log.readRun(s.origin, 0, 512, 1 << 20)
    expect(plain(afterUpdate)).toEqual(await fromDb(0))
    expect(seqsOfRun(s.origin, afterUpdate?.entries ?? [])).toEqual([2, 3, 4])
    const run = afterUpdate as NonNullable<typeof afterUpdate>
    expect(() => verifyRuns(s.origin, run.entries.map(b => decodeEntry(s.origin, b)), run.certs.map(c => decodeCert(c)), { from: run.fromSeq, to: run.toSeq })).not.toThrow()
  })

  it('serves verifiable batches after compaction, and drops certificates whose entries are all gone', async () => {
    const s = await signer()
    const o = new OriginLog(s.origin)
    const r = rand(11)
    let seq = 0
    // 30 runs of 1-20 writes over 40 ids: lots of superseding, inside and across runs
    for (let run = 0; run < 30; run++) {
      const n = 1 + Math.floor(r() * 20)
      const entries = Array.from({ length: n }, () => r() < 0.1 ? o.del('c', `id${Math.floor(r() * 40)}`) : o.put('c', `id${Math.floor(r() * 40)}`, { run, x: r() }))
      const cert = s.sign(seq, seq + n, entries)
      await append(s.origin, entries, [cert], seq + n)
      seq += n
    }
    // read everything back in small batches, as a peer would receive it, and verify each batch
    let after = 0
    let batches = 0
    const seen = new Set<string>()
    for (;;) {
      const run = await log.readRun(s.origin, after, 16, 1_000_000)
      if (run === undefined) break
      const entries = run.entries.map(b => decodeEntry(s.origin, b))
      const certs = run.certs.map(decodeCert)
      expect(() => verifyRuns(s.origin, entries, certs)).not.toThrow()
      for (const e of entries) seen.add(`${e.collection}/${e.id}`)
      after = run.toSeq
      batches++
    }
    expect(after).toBe(seq)
    expect(batches).toBeGreaterThan(1)
    // exactly one surviving entry per record
    let stored = 0
    for await (const _ of store.db.keys(prefixRange(keys.entryPrefix(store.logs.of(s.origin))))) stored++
    expect(stored).toBe(seen.size)
    // certificates only for runs that still hold an entry
    expect(await certCount(s.origin)).toBeLessThanOrEqual(stored)
  })

  it('prunes a certificate written earlier in the same transaction (two appends, one batch)', async () => {
    const s = await signer()
    const o = new OriginLog(s.origin)
    const first = [o.put('c', 'x', { v: 1 }), o.put('c', 'y', { v: 1 })]
    const second = [o.put('c', 'x', { v: 2 })]
    await store.exclusive(async () => {
      const txn = store.txn()
      await log.append(txn, s.origin, first, 2, [s.sign(0, 2, first)])
      await log.append(txn, s.origin, second, 3, [s.sign(2, 3, second)])
      await txn.commit()
      log.committed(s.origin, 3)
    })
    const run = await log.readRun(s.origin, 0, 100, 1_000_000)
    const entries = (run?.entries ?? []).map(b => decodeEntry(s.origin, b))
    expect(entries.map(e => e.seq)).toEqual([2, 3])
    expect(() => verifyRuns(s.origin, entries, (run?.certs ?? []).map(decodeCert), { from: 0, to: 3 })).not.toThrow()
  })

  it('a run overwritten entirely by a later one leaves no certificate behind', async () => {
    const s = await signer()
    const o = new OriginLog(s.origin)
    const first = [o.put('c', 'x', { v: 1 }), o.put('c', 'y', { v: 1 })]
    await append(s.origin, first, [s.sign(0, 2, first)], 2)
    const second = [o.put('c', 'x', { v: 2 }), o.put('c', 'y', { v: 2 })]
    await append(s.origin, second, [s.sign(2, 4, second)], 4)
    expect(await certCount(s.origin)).toBe(1)
    const run = await log.readRun(s.origin, 0, 100, 1_000_000)
    expect(run?.fromSeq).toBe(0)
    expect(() => verifyRuns(s.origin, (run?.entries ?? []).map(b => decodeEntry(s.origin, b)), (run?.certs ?? []).map(decodeCert))).not.toThrow()
  })
})
