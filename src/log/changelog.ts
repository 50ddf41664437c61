/**
 * The logs of every origin this node has heard of, kept compacted: for each
 * (origin, collection, id) only the newest entry survives, so the disk tracks
 * the data rather than its history. The version vector says how far each
 * origin's log is held. Each run of entries keeps its origin's signed
 * certificate (signing.ts), pruned as its entries are compacted away, so that
 * what is served to peers stays verifiable.
 */
import { ConfigError } from '../core/errors.js'
import type { Store, Txn } from '../store/db.js'
import { rows, utf8 } from '../store/db.js'
import { keys, keySuffix, prefixRange, rangeAfter, SEP } from '../store/keys.js'
import { decodeEntry, encodeEntry } from './entry.js'
import type { LogEntry } from './entry.js'
import { decodeAttested, decodeCert, encodeAttested, encodeCert, leafHash, liveBitmap, pruneLeaf, SignatureError, unprunedPositions, verifyUpdate } from './signing.js'
import type { AttestedCert, Attester, Cert, PrunedNode, StoredAttestation } from './signing.js'
import { VersionVector } from './vector.js'
import { isLogOf } from './log-id.js'

export interface EntryRun {
  /** Start of the range covered (normally the `afterSeq` asked for). */
  fromSeq: number
  /** Raw protobuf entries, in seq order. */
  entries: Uint8Array[]
  /** Raw protobuf RunCerts covering the entries, in seq order. */
  certs: Uint8Array[]
  /** Highest seq covered: entries up to here (or compacted away) are in the run. */
  toSeq: number
  bytes: number
}

/**
 * A version 2 batch of another origin, verified (completeness.md §5): its
 * attestations with the root verifyAttestedRuns gave each live run, and the
 * origin's newer attestations of earlier runs (at most MAX_UPDATES).
 */
export interface AttestedBatch {
  certs: Array<{ cert: AttestedCert, root?: Uint8Array }>
  updates: AttestedCert[]
}

/** An entry of a log superseded by an append though indexed under another record key (ChangeLog.append `supersedes`). */
export interface Superseded {
  collection: string
  id: string
  seq: number
}

const NO_VALUE = new Uint8Array(0)

/** Updates a batch may carry: each costs a signature check and the deletes it causes. */
export const MAX_UPDATES = 1024

/** Certificate keys read per trip when walking an origin's certificates. */
const CERT_WALK_SLICE = 128
/** How many batches' worth of seqs readRun's certificates may span (see readRunAt). */
const CERT_SPAN_BATCHES = 8
/** Certificates read per trip by readRun: a batch's entries are usually in the first one or two runs. */
const CERT_TRIP_ENTRIES = 8

/** How long ChangeLog remembers when `servable` advanced (more than LAZY_PUSH_MS, see SyncSession). */
const SERVABLE_HISTORY_MS = 10_000

/** A run kept in memory: what readRun(origin, fromSeq) returns while nothing of it is compacted. */
export interface TailRun {
  origin: string
  fromSeq: number
  toSeq: number
  entries: Uint8Array[]
  certs: Uint8Array[]
  generation: number
}

/** Runs kept per origin, and in all (a live change is the newest run: it is all that is needed). */
const TAIL_RUNS_PER_ORIGIN = 8
const TAIL_MAX_BYTES = 8 * 1024 * 1024

/**
 * The newest runs of each origin's log, exactly as stored, so that a live
 * change is sent on to every peer without reading it back from LevelDB (two
 * iterators per peer and hop). Only runs appended whole (every seq present,
 * nothing compacted by them) are kept; compaction of an origin drops its
 * runs. A run is served once its transaction is durable, or, for another
 * origin's run, as soon as the transaction is issued (ChangeLog.forwardEarly).
 */
class TailCache {
  private readonly byOrigin = new Map<string, Array<TailRun & { bytes: number }>>()
  private readonly proposed = new WeakMap<Txn, TailRun[]>()
  /** Bumped when an origin is compacted: a run proposed before that is not installed (it may have lost entries since). */
  private readonly generation = new Map<string, number>()
  private bytes = 0

  propose (txn: Txn, origin: string, run: Omit<TailRun, 'origin' | 'generation'>): void {
    let list = this.proposed.get(txn)
    if (list === undefined) {
      list = []
      this.proposed.set(txn, list)
    }
    list.push({ origin, ...run, generation: this.generation.get(origin) ?? 0 })
  }

  take (txn: Txn): TailRun[] {
    const list = this.proposed.get(txn) ?? []
    this.proposed.delete(txn)
    return list
  }

  /** Compaction touched `origin`: what is cached of it (and proposed in `txn`) may have lost entries. */
  forget (origin: string, txn?: Txn): void {
    this.generation.set(origin, (this.generation.get(origin) ?? 0) + 1)
    this.drop(origin)
    if (txn !== undefined) {
      const list = this.proposed.get(txn)
      if (list !== undefined) this.proposed.set(txn, list.filter(r => r.origin !== origin))
    }
  }

  /** Stop keeping `origin`'s runs (memory, or a run that does not follow them). */
  private drop (origin: string): void {
    const runs = this.byOrigin.get(origin)
    if (runs === undefined) return
    for (const r of runs) this.bytes -= r.bytes
    this.byOrigin.delete(origin)
  }

  /** Keep `run` (false: not kept, it is stale or too big). */
  install (run: TailRun): boolean {
    if (run.generation !== (this.generation.get(run.origin) ?? 0)) return false
    let bytes = 0
    for (const e of run.entries) bytes += e.byteLength
    for (const c of run.certs) bytes += c.byteLength
    if (bytes > TAIL_MAX_BYTES / 4) return false
    let runs = this.byOrigin.get(run.origin)
    if (runs === undefined) {
      runs = []
      this.byOrigin.set(run.origin, runs)
    }
    // contiguous from the oldest kept run: a run that does not follow the last one starts over
    if (runs.length > 0 && runs[runs.length - 1].toSeq !== run.fromSeq) this.drop(run.origin)
    runs = this.byOrigin.get(run.origin) ?? []
    this.byOrigin.set(run.origin, runs)
    runs.push({ ...run, bytes })
    this.bytes += bytes
    if (runs.length > TAIL_RUNS_PER_ORIGIN) this.bytes -= (runs.shift() as { bytes: number }).bytes
    if (this.bytes > TAIL_MAX_BYTES) {
      for (const origin of [...this.byOrigin.keys()]) {
        if (this.bytes <= TAIL_MAX_BYTES / 2) break
        if (origin !== run.origin) this.drop(origin)
      }
    }
    return true
  }

  /** Consecutive cached runs from `afterSeq` (a run boundary), within the limits; undefined when the first is not cached. */
  read (origin: string, afterSeq: number, held: number, maxEntries: number, maxBytes: number): EntryRun | undefined {
    const runs = this.byOrigin.get(origin)
    if (runs === undefined) return undefined
    let i = runs.findIndex(r => r.fromSeq === afterSeq)
    if (i === -1) return undefined
    const out: EntryRun = { fromSeq: afterSeq, entries: [], certs: [], toSeq: afterSeq, bytes: 0 }
    for (; i < runs.length; i++) {
      const r = runs[i]
      if (r.toSeq > held) break
      if (out.entries.length > 0 && (out.entries.length + r.entries.length > maxEntries || out.bytes + r.bytes > maxBytes)) break
      out.entries.push(...r.entries)
      out.certs.push(...r.certs)
      for (const e of r.entries) out.bytes += e.byteLength
      out.toSeq = r.toSeq
    }
    return out.toSeq > afterSeq ? out : undefined
  }
}

/**
 * The batch a signed log may send of what readRunAt read (entries with their seqs, the certificates
 * of runs ending after `afterSeq`, in order): up to `limit`, ending where the last certificate it
 * carries ends, since that is all its certificates prove (runs between them whose entries were all
 * compacted need none, see verifyRuns). `held` (how far the log is stored) alone proves nothing: the
 * run ending there may hold no entry of this snapshot (compacted by what lies beyond, or never
 * stored), and a batch claiming it would be refused. Undefined when no run after `afterSeq` is proven.
 */
function prove (afterSeq: number, fromSeq: number, entries: Uint8Array[], seqs: number[], certs: Cert[], rawCerts: Uint8Array[], limit: number): EntryRun | undefined {
  let k = 0
  while (k < certs.length && certs[k].to <= limit) k++
  if (k === 0 || certs[k - 1].to <= afterSeq) return undefined
  const toSeq = certs[k - 1].to
  let n = seqs.length
  while (n > 0 && seqs[n - 1] > toSeq) n--
  const kept = n === entries.length ? entries : entries.slice(0, n)
  let bytes = 0
  for (const e of kept) bytes += e.byteLength
  return { fromSeq, entries: kept, certs: k === rawCerts.length ? rawCerts : rawCerts.slice(0, k), toSeq, bytes }
}

export class ChangeLog {
  private readonly store: Store
  /** The newest runs of each origin, as readRun serves them (see TailCache). */
  private readonly tails = new TailCache()
  /** Certificates written by each open transaction (not yet visible in the db). */
  private readonly txnCerts = new WeakMap<Txn, Map<string, Cert>>()
  /** What is durably stored; updated only after a commit. Readers (status, the vector told to peers) use this. */
  readonly vector = new VersionVector()
  /**
   * What may be sent to peers: `vector`, and beyond it the runs of other
   * origins that a transaction still being written holds, kept in memory
   * (see forwardEarly).
   */
  readonly servable = new VersionVector()
  /** Recent advances of `servable` per origin (value before, when), for servableAsOf; pruned by age. */
  private readonly servableHistory = new Map<string, Array<{ before: number, at: number }>>()
  /** What the write path has issued (pipelined commits may not be durable yet): see held(). */
  private readonly issuedVector = new VersionVector()
  /**
   * Origins whose stored log is proven by its certificates only up to a point short of `vector`, and
   * that point: a relay keeps no entry (nor run) of a revoked origin past its revocation, yet holds
   * its log as far as the batches it got reached (so they are not sent again), and a purge keeps only
   * the vector. `servable` stops there: nothing beyond can be sent (see readRun), so no peer is
   * counted as lacking it (a sender would read it again and again).
   */
  private readonly provenTo = new Map<string, number>()

  /** This node's own origin and its signer of version 2 attestations (attestOwnLog). */
  private own?: { origin: string, attester: Attester }

  constructor (store: Store) {
    this.store = store
  }

  /**
   * Sign version 2 attestations of `origin`'s log (this node's own) as it is
   * written (protocols/sync/completeness.md §3): each run appended is attested
   * as of its end, every entry live; an append that supersedes entries of
   * earlier runs re-attests them as of its end, or signs a gone span (merged
   * with neighbouring ones) for a run of which nothing is left; all in the
   * append's transaction. Stored under keys.attest, which tile the log.
   */
  attestOwnLog (origin: string, attester: Attester): void {
    this.own = { origin, attester }
    this.ownAttesters.clear()
  }

  /** The attesters of this node's own stream logs (log-id.ts), made from its own one as each is first written. */
  private readonly ownAttesters = new Map<string, Attester>()

  /** Whether `origin` is a log of this node's own (its whole log, or one of its streams, log-id.ts). */
  private isOwn (origin: string): boolean {
    return this.own !== undefined && isLogOf(origin, this.own.origin)
  }

  /** The attester of this node's own log `origin` (see isOwn). */
  private attesterOf (origin: string): Attester | undefined {
    if (this.own === undefined || !this.isOwn(origin)) return undefined
    if (origin === this.own.origin) return this.own.attester
    let a = this.ownAttesters.get(origin)
    if (a === undefined) this.ownAttesters.set(origin, a = this.own.attester.forLog(origin))
    return a
  }

  /** The alias of log `origin` in its keys (log-aliases.ts; one that matches no key when this node holds none of it). */
  private alias (origin: string): string {
    return this.store.logs.of(origin)
  }

  async load (): Promise<void> {
    await this.store.logs.load()
    const prefix = keys.vectorPrefix()
    const stored: Array<{ origin: string, seq: number }> = []
    for await (const [key, value] of this.store.db.iterator(prefixRange(prefix))) {
      const origin = this.store.logs.logOf(keySuffix(key, prefix))
      if (origin === undefined) throw new ConfigError(`the database holds a version vector under the log alias "${keySuffix(key, prefix).slice(0, 40)}", which names no log: it is damaged; restore a backup`, 'DATA_FORMAT_INVALID')
      const seq = Number(utf8.decode(value))
      this.vector.set(origin, seq)
      this.servable.set(origin, seq)
      stored.push({ origin, seq })
    }
    for (const { origin, seq } of stored) {
      const proven = seq > 0 ? await this.storedProof(origin) : undefined
      if (proven !== undefined && proven < seq) this.stopServingAfter(origin, proven)
      // entries stored beyond the held seq: a log stored from version 1 batches, its held seq lowered
      // by the upgrade to data format 4 so that it is fetched again with its origin's attestations
      const entries = keys.entryPrefix(this.alias(origin))
      const [beyond] = await this.store.db.keys({ ...prefixRange(entries), reverse: true, limit: 1 }).all()
      const last = beyond === undefined ? 0 : parseInt(keySuffix(beyond, entries), 16)
      if (last > seq) this.refetching.set(origin, last)
    }
  }

  /**
   * Per origin whose log is fetched again with attestations (see load): the
   * highest seq stored from before. Version 2 batches up to there drop the
   * stored entries their attestations do not list (dropUnlisted).
   */
  private readonly refetching = new Map<string, number>()

  /** Every origin of which entries are stored: those held, and those being fetched again from seq 0 (see refetching). */
  storedOrigins (): string[] {
    const out = [...this.vector.origins()]
    for (const origin of this.refetching.keys()) if (this.vector.get(origin) === 0) out.push(origin)
    return out
  }

  /** How far `origin`'s stored log is proven: where its last certificate ends (0: no log kept), undefined for a log stored before runs were signed. */
  private async storedProof (origin: string): Promise<number | undefined> {
    const log = this.alias(origin)
    const [last] = await this.store.db.keys({ ...prefixRange(keys.certPrefix(log)), reverse: true, limit: 1 }).all()
    // a log stored from version 1 batches, then version 2 ones: proven as far as its attestations reach
    const [attested] = await this.store.db.keys({ ...prefixRange(keys.attestPrefix(log)), reverse: true, limit: 1 }).all()
    const lastAttested = attested === undefined ? 0 : parseInt(keySuffix(attested, keys.attestPrefix(log)), 16)
    if (last !== undefined) return Math.max(lastAttested, parseInt(keySuffix(last, keys.certPrefix(log)), 16))
    if (attested !== undefined) return lastAttested
    const [entry] = await this.store.db.keys({ ...prefixRange(keys.entryPrefix(log)), limit: 1 }).all()
    return entry === undefined ? 0 : undefined
  }

  /** `origin`'s log is stored beyond `seq` without the runs that prove it (see provenTo). */
  stopServingAfter (origin: string, seq: number): void {
    const at = Math.min(seq, this.provenTo.get(origin) ?? Infinity)
    this.provenTo.set(origin, at)
    if (this.servable.get(origin) > at) {
      this.servable.set(origin, at)
      this.servableHistory.delete(origin)
    }
  }

  /**
   * Add a contiguous run of one origin's log to `txn`: entries with seq in
   * (vector, toSeq], their run certificates, dropping the entries they
   * supersede (and pruning those from their certificates). The caller has
   * checked that the run starts at or before the held seq (and verified the
   * certificates), commits `txn`, then calls `committed`.
   *
   * `supersedes` (this node's own writes only): entries of the log that the
   * new ones supersede though the record index names them under another
   * (collection, id): a rule stream's entry names its record by a blinded
   * id, which differs per epoch (protocols/sync/streams.md §14). They are
   * dropped, with their index, as an entry of the same record is, and
   * attested gone the same way.
   */
  async append (txn: Txn, origin: string, entries: LogEntry[], toSeq: number, certs: Cert[] = [], options: { written?: boolean, attested?: AttestedBatch, supersedes?: Superseded[] } = {}): Promise<void> {
    // the log's alias is written before any key that uses it (log-aliases.ts)
    const log = await this.store.logs.ensure(origin)
    const held = this.held(origin)
    if (options.attested !== undefined && !this.isOwn(origin)) {
      await this.appendAttested(txn, origin, entries, toSeq, held, options.attested)
      return
    }
    // Only writes this node makes (options.written) are attested: its own entries received back from
    // peers (a node restored from an older backup) may come with entries a relay compacted as of a
    // point this node does not know, so nothing true can be signed of their live sets. A stretch of
    // attested runs they compact loses its attestations instead (readAttested stops before it).
    const attesting = this.isOwn(origin) ? (options.written === true ? 'sign' : 'drop') : undefined
    if (options.supersedes !== undefined && attesting !== 'sign') throw new Error(`entries superseded under another record key are dropped only from this node's own writes (log ${origin})`)
    // certificates of new runs go in first: compaction below may prune them.
    // They are remembered per transaction: a later append in the same
    // transaction (e.g. rule-written entries after local ones) may prune them too.
    let fresh = this.txnCerts.get(txn)
    if (fresh === undefined) {
      fresh = new Map<string, Cert>()
      this.txnCerts.set(txn, fresh)
    }
    const attester = attesting === 'sign' ? this.attesterOf(origin) : undefined
    let e0 = 0
    for (const c of certs) {
      if (c.to <= held) continue
      fresh.set(keys.cert(log, c.to), c)
      txn.put(keys.cert(log, c.to), encodeCert(c))
      if (attester !== undefined) {
        // this node's own run: attested as of its end, every entry live (completeness.md §3)
        while (e0 < entries.length && entries[e0].seq <= c.from) e0++
        let e1 = e0
        while (e1 < entries.length && entries[e1].seq <= c.to) e1++
        const { cert, root } = attester.run(c.from, c.to, entries.slice(e0, e1))
        this.putAttestation(txn, origin, cert, root)
        e0 = e1
      }
    }
    // each key built once: prefetched, then read and written through the same string
    const latestKeys = entries.map(e => keys.latest(log, e.collection, e.id))
    await txn.prefetch(latestKeys)
    const superseded = await this.unindex(txn, origin, options.supersedes ?? [])
    let skipped = 0
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]
      const latestKey = latestKeys[i]
      const prev = txn.get(latestKey)
      if (prev !== undefined) {
        const prevSeq = Number(utf8.decode(prev))
        if (prevSeq >= e.seq) { // already hold something newer for this record
          skipped++
          continue
        }
        superseded.push(prevSeq)
      }
      e.bytes ??= encodeEntry(e)
      txn.put(keys.entry(log, e.seq), e.bytes)
      txn.put(latestKey, utf8.encode(String(e.seq)))
    }
    if (superseded.length > 0) {
      await this.compact(txn, origin, superseded, fresh, toSeq, held, attesting)
      this.tails.forget(origin, txn)
    } else if (skipped === 0 && entries.length === toSeq - held && certs.length > 0 && certs[0].from === held && certs[certs.length - 1].to === toSeq) {
      // exactly the run a peer at `held` is served next: keep it in memory once durable
      this.tails.propose(txn, origin, { fromSeq: held, toSeq, entries: entries.map(e => e.bytes as Uint8Array), certs: certs.map(c => encodeCert(c)) })
    }
    txn.put(keys.vector(log), utf8.encode(String(toSeq)))
  }

  /**
   * The seqs of `supersedes` (see append) whose record index still names
   * them: each index is removed in `txn`, for compact to drop the entry.
   */
  private async unindex (txn: Txn, origin: string, supersedes: Superseded[]): Promise<number[]> {
    const log = this.alias(origin)
    if (supersedes.length === 0) return []
    const latestKeys = supersedes.map(s => keys.latest(log, s.collection, s.id))
    await txn.prefetch(latestKeys)
    const seqs: number[] = []
    supersedes.forEach((s, i) => {
      const at = txn.get(latestKeys[i])
      if (at === undefined || Number(utf8.decode(at)) !== s.seq) return
      txn.del(latestKeys[i])
      seqs.push(s.seq)
    })
    return seqs
  }

  /**
   * A version 2 batch of another origin (completeness.md §5–6), verified by
   * the caller (verifyAttestedRuns, which gives each live run's root): its
   * updates are applied first (§5.4–5.6), its attestations stored (keys.attest,
   * with their roots), its entries appended. An entry it supersedes is not
   * deleted: it stays stored, and served with its run, until an attestation
   * of the origin says it is no longer live (§6), so that the entries stored
   * of a run are always exactly the live set of the attestation stored for
   * it. Throws SignatureError when an update contradicts what is stored.
   */
  private async appendAttested (txn: Txn, origin: string, entries: LogEntry[], toSeq: number, held: number, batch: AttestedBatch): Promise<void> {
    const log = this.alias(origin)
    if (batch.updates.length > MAX_UPDATES) throw new SignatureError(`a batch of ${origin} carries ${batch.updates.length} updates (limit ${MAX_UPDATES})`)
    // whether the stored log may already hold superseded entries (learnt once per origin, then kept below)
    const retains = await this.keepsSuperseded(origin)
    for (const u of batch.updates) if (u.to <= held) await this.applyUpdate(txn, origin, u)
    for (const { cert, root } of batch.certs) {
      if (cert.to <= held) continue
      this.putAttestation(txn, origin, { ...cert, live: undefined }, root)
    }
    const refetched = this.refetching.get(origin)
    if (refetched !== undefined) {
      await this.dropUnlisted(txn, origin, held, toSeq, entries)
      if (toSeq >= refetched) this.refetching.delete(origin)
    }
    const latestKeys = entries.map(e => keys.latest(log, e.collection, e.id))
    await txn.prefetch(latestKeys)
    let superseded = false
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]
      if (e.seq <= held) continue
      // stored whether or not its record's index already points further: the origin attests it live
      e.bytes ??= encodeEntry(e)
      txn.put(keys.entry(log, e.seq), e.bytes)
      const prev = txn.get(latestKeys[i])
      // an entry the record's index does not end at (this one, or the one it supersedes) is kept: readLogChunk must filter
      if (prev !== undefined) superseded = true
      if (prev === undefined || Number(utf8.decode(prev)) < e.seq) txn.put(latestKeys[i], utf8.encode(String(e.seq)))
    }
    if (superseded && !retains) this.retaining.set(origin, true)
    this.tails.forget(origin, txn)
    txn.put(keys.vector(log), utf8.encode(String(toSeq)))
  }

  /**
   * A log fetched again with attestations (see refetching): the entries
   * stored in (held, toSeq] from version 1 batches that the batch does not
   * carry are not live as its origin attests them (a verified batch carries
   * exactly the live entries of its runs): deleted, with their record's index
   * when it still points to them (the newer write is stored, or arrives
   * later). Records are left as they are.
   */
  private async dropUnlisted (txn: Txn, origin: string, held: number, toSeq: number, entries: LogEntry[]): Promise<void> {
    const log = this.alias(origin)
    if (this.store.hasPending()) await this.store.flushed()
    const listed = new Set(entries.map(e => e.seq))
    const prefix = keys.entryPrefix(log)
    const drop: Array<{ key: string, seq: number, bytes: Uint8Array }> = []
    for await (const [key, bytes] of this.store.db.iterator({ gt: keys.entry(log, held), lte: keys.entry(log, toSeq) })) {
      const seq = parseInt(keySuffix(key, prefix), 16)
      if (!listed.has(seq)) drop.push({ key, seq, bytes })
    }
    if (drop.length === 0) return
    const decoded = drop.map(d => decodeEntry(origin, d.bytes))
    const latestKeys = decoded.map(e => keys.latest(log, e.collection, e.id))
    await txn.prefetch(latestKeys)
    drop.forEach((d, i) => {
      txn.del(d.key)
      const latest = txn.get(latestKeys[i])
      if (latest !== undefined && Number(utf8.decode(latest)) === d.seq) txn.del(latestKeys[i])
    })
  }

  /**
   * Apply the origin's newer attestation `u` of a run this node stores
   * (completeness.md §5.4–5.6): checked against the root this node stored
   * (never one from the sender); not newer: ignored; a run not stored as
   * such: ignored. The entries it no longer attests live are deleted (and
   * their record's index with them when it still points to them: the newer
   * write arrives later), the run's pruned nodes recomputed here, and `u`
   * stored as the run's attestation. A gone span replaces every stored
   * attestation inside it.
   */
  private async applyUpdate (txn: Txn, origin: string, u: AttestedCert): Promise<void> {
    const log = this.alias(origin)
    const inside = u.gone ? await this.attestationsIn(txn, origin, u.from, u.to, u.asOf) : []
    if (inside === 'stale') return
    if (!u.gone) {
      const raw = txn.get(keys.attest(log, u.to))
      if (raw !== undefined) inside.push({ key: keys.attest(log, u.to), stored: decodeAttested(raw) })
    }
    if (inside.length === 0) return
    // a stored attestation as new as the update, or newer: the update tells nothing (live sets only shrink)
    if (inside.some(x => x.stored.asOf >= u.asOf)) return
    // a gone span's signature, checked once for every run it replaces
    if (u.gone) verifyUpdate(origin, { from: u.from, to: u.to, asOf: 0, root: new Uint8Array(32), live: [] }, u)
    if (!u.gone && inside[0].stored.gone) return // the run is stored gone already
    if (inside.some(x => !x.stored.gone && (x.stored.root === undefined || (!u.gone && x.stored.from !== u.from)))) return
    for (const { key, stored } of inside) {
      if (stored.gone || stored.root === undefined) {
        this.delAttestation(txn, origin, stored)
        continue
      }
      const n = stored.to - stored.from
      const was = unprunedPositions(n, stored.pruned)
      const live = u.gone ? [] : verifyUpdate(origin, { from: stored.from, to: stored.to, asOf: stored.asOf, root: stored.root, live: was }, u)
      if (live === 'stale') return
      const keep = new Set(live)
      let pruned = stored.pruned
      for (const i of was) {
        if (keep.has(i)) continue
        const seq = stored.from + i + 1
        const entryKey = keys.entry(log, seq)
        const bytes = txn.get(entryKey)
        if (bytes === undefined) continue
        txn.del(entryKey)
        const e = decodeEntry(origin, bytes)
        const latestKey = keys.latest(log, e.collection, e.id)
        const latest = txn.get(latestKey)
        if (latest !== undefined && Number(utf8.decode(latest)) === seq) txn.del(latestKey)
        if (!u.gone) pruned = pruneLeaf(n, pruned, i, leafHash(bytes)).pruned
      }
      if (u.gone) this.delAttestation(txn, origin, stored)
      else this.putAttestation(txn, origin, { ...u, pruned }, stored.root, stored)
    }
    if (u.gone) this.putAttestation(txn, origin, { ...u, live: undefined, pruned: [] })
  }

  /**
   * The stored attestations of `origin` inside (from, to], as `txn` sees the
   * durable ones, for a gone span as of `asOf`. One that straddles an edge
   * and is as new as the span or newer: 'stale' (the origin merged the span
   * into a larger one since, and a relay passes on the older one); one that
   * straddles and is older: SignatureError (a gone span of the origin covers
   * whole runs).
   */
  private async attestationsIn (txn: Txn, origin: string, from: number, to: number, asOf: number): Promise<Array<{ key: string, stored: StoredAttestation }> | 'stale'> {
    const log = this.alias(origin)
    if (this.store.hasPending()) await this.store.flushed()
    const out: Array<{ key: string, stored: StoredAttestation }> = []
    const range = prefixRange(keys.attestPrefix(log))
    for await (const batch of rows(this.store.db, { gt: keys.attest(log, from), lt: range.lt }, { entries: CERT_TRIP_ENTRIES })) {
      for (const [key] of batch) {
        const raw = txn.get(key)
        if (raw === undefined) continue
        const stored = decodeAttested(raw)
        if (stored.from >= to) return out
        if ((stored.from < from || stored.to > to) && stored.asOf >= asOf) return 'stale'
        if (stored.from < from || stored.to > to) throw new SignatureError(`gone span (${from}, ${to}] of ${origin} straddles the stored run (${stored.from}, ${stored.to}]`)
        out.push({ key, stored })
      }
    }
    return out
  }

  /** The runs this transaction appended that readRun may serve from memory once it is durable (see Ingestor). */
  takeTails (txn: Txn): TailRun[] {
    return this.tails.take(txn)
  }

  /** The transaction those runs came from is durable. */
  installTails (runs: TailRun[]): void {
    for (const r of runs) if (r.toSeq <= this.vector.get(r.origin)) this.tails.install(r)
  }

  /**
   * Serve the runs of other origins that a transaction just issued appended,
   * before it is durable: a relay sends a live change on while its own copy
   * is still being written (on an idle node that write is ~0.2-0.3 ms, and
   * now and then several ms, per hop). This is safe for other origins'
   * entries: they are signed and never change, so a peer that gets them
   * first holds exactly what this node will hold, and if this node dies
   * before its copy is durable it fetches them again like any other missing
   * entries. Its own entries (any log of `self`'s, log-id.ts) wait for durability: after a crash it
   * would issue their seqs again for other writes. Returns the runs left for
   * installTails, and how far each origin it served early is now servable.
   */
  forwardEarly (runs: TailRun[], self: string): { rest: TailRun[], forwarded: Array<{ origin: string, seq: number }> } {
    const rest: TailRun[] = []
    const forwarded: Array<{ origin: string, seq: number }> = []
    for (const r of runs) {
      // only a run that continues what is servable: what lies between would be neither in memory nor durable
      if (isLogOf(r.origin, self) || r.fromSeq > this.servable.get(r.origin)) {
        rest.push(r)
        continue
      }
      if (!this.tails.install(r)) {
        rest.push(r)
        continue
      }
      this.advanceServable(r.origin, r.toSeq)
      forwarded.push({ origin: r.origin, seq: r.toSeq })
    }
    return { rest, forwarded }
  }

  /**
   * Drop superseded entries and prune them from their run certificates; for
   * this node's own log, re-attest the runs touched as of `asOf` (see
   * attestOwnLog; `attesting`: see append); `held` is how far the log was
   * held before this append.
   */
  private async compact (txn: Txn, origin: string, seqs: number[], fresh: Map<string, Cert>, asOf: number, held: number, attesting?: 'sign' | 'drop'): Promise<void> {
    const log = this.alias(origin)
    const entryKeys = seqs.map(s => keys.entry(log, s))
    await txn.prefetch(entryKeys)
    const certKeys = await this.certKeysFor(origin, seqs, fresh)
    /** Runs whose certificates this compaction changed, as they end up. */
    const touched = new Map<string, { from: number, to: number, pruned: PrunedNode[], empty: boolean }>()
    for (let i = 0; i < seqs.length; i++) {
      const seq = seqs[i]
      const bytes = txn.get(entryKeys[i])
      txn.del(entryKeys[i])
      if (bytes === undefined) continue
      const certKey = certKeys.get(seq)
      if (certKey === undefined) continue // an unsigned (legacy) entry
      const certBytes = txn.get(certKey)
      if (certBytes === undefined) continue
      const cert = decodeCert(certBytes)
      if (seq <= cert.from || seq > cert.to) continue
      const { pruned, empty } = pruneLeaf(cert.to - cert.from, cert.pruned, seq - cert.from - 1, leafHash(bytes))
      touched.set(certKey, { from: cert.from, to: cert.to, pruned, empty })
      if (empty) {
        txn.del(certKey)
        fresh.delete(certKey)
      } else {
        const next = { ...cert, pruned }
        txn.put(certKey, encodeCert(next))
        if (fresh.has(certKey)) fresh.set(certKey, next)
      }
    }
    const attester = this.attesterOf(origin)
    if (attester === undefined || touched.size === 0) return
    if (attesting === 'sign') await this.reattest(txn, origin, [...touched.values()].sort((a, b) => a.to - b.to), asOf, held, attester)
    else if (attesting === 'drop') {
      for (const run of touched.values()) {
        const raw = txn.get(keys.attest(log, run.to))
        if (raw !== undefined) this.delAttestation(txn, origin, decodeAttested(raw))
      }
    }
  }

  /**
   * The write ending at `asOf` shrank the live sets of `runs` (in seq
   * order): sign each one's attestation as of `asOf`, or, for a run of
   * which nothing is live any more, a gone span merged with the gone spans
   * next to it (completeness.md §3; `held`: how far the log was held before
   * this append). A run without a stored attestation (a
   * stretch left unattested by the upgrade to version 2) is left as it is.
   */
  private async reattest (txn: Txn, origin: string, runs: Array<{ from: number, to: number, pruned: PrunedNode[], empty: boolean }>, asOf: number, held: number, attester: Attester): Promise<void> {
    const log = this.alias(origin)
    for (const run of runs) {
      const key = keys.attest(log, run.to)
      const raw = txn.get(key)
      if (raw === undefined) continue
      const stored = decodeAttested(raw)
      if (stored.gone || stored.from !== run.from || stored.root === undefined) continue
      if (!run.empty) {
        const live = unprunedPositions(run.to - run.from, run.pruned)
        this.putAttestation(txn, origin, attester.live(run.from, run.to, asOf, stored.root, live, run.pruned), stored.root, stored)
        continue
      }
      this.delAttestation(txn, origin, stored)
      let from = run.from
      let to = run.to
      const before = from > 0 ? txn.get(keys.attest(log, from)) : undefined
      const prev = before === undefined ? undefined : decodeAttested(before)
      if (prev?.gone === true) {
        this.delAttestation(txn, origin, prev)
        from = prev.from
      }
      // what follows the run held before this append is this append's own runs: live (a hot record's
      // write empties the run before it, and needs no look-up)
      const next = to < held ? await this.nextAttestation(txn, origin, to) : undefined
      if (next?.gone === true && next.from === to) {
        this.delAttestation(txn, origin, next)
        to = next.to
      }
      this.putAttestation(txn, origin, attester.gone(from, to, asOf))
    }
  }

  /**
   * Store `cert` (with `root`, for a live run) as the attestation of its
   * range, in place of `was` when given (the one stored at the same key);
   * keeps the index by as_of (keys.attestAsOf) of those later than their
   * run's end, which batches attach as updates.
   */
  private putAttestation (txn: Txn, origin: string, cert: AttestedCert, root?: Uint8Array, was?: { asOf: number, to: number }): void {
    const log = this.alias(origin)
    if (was !== undefined) txn.del(keys.attestAsOf(log, was.asOf, was.to))
    txn.put(keys.attest(log, cert.to), encodeAttested(cert, root))
    if (cert.asOf > cert.to) txn.put(keys.attestAsOf(log, cert.asOf, cert.to), NO_VALUE)
  }

  private delAttestation (txn: Txn, origin: string, was: { asOf: number, to: number }): void {
    const log = this.alias(origin)
    txn.del(keys.attest(log, was.to))
    txn.del(keys.attestAsOf(log, was.asOf, was.to))
  }

  /** The stored attestation following the one ending at `to` (durable keys, as `txn` sees them), if any. */
  private async nextAttestation (txn: Txn, origin: string, to: number): Promise<AttestedCert | undefined> {
    const log = this.alias(origin)
    // an iterator sees only durable keys: let pipelined writes land first
    if (this.store.hasPending()) await this.store.flushed()
    const [key] = await this.store.db.keys({ gt: keys.attest(log, to), lt: prefixRange(keys.attestPrefix(log)).lt, limit: 1 }).all()
    if (key === undefined) return undefined
    const raw = txn.get(key)
    return raw === undefined ? undefined : decodeAttested(raw)
  }

  /**
   * Key of the certificate whose run contains each seq: the first one ending
   * at or after it. One forward walk over the origin's certificates for all
   * of them (not one seek per seq: updates supersede hundreds per batch).
   */
  private async certKeysFor (origin: string, seqs: number[], fresh: Map<string, Cert>): Promise<Map<number, string>> {
    const log = this.alias(origin)
    const prefix = keys.certPrefix(log)
    const out = new Map<number, string>()
    const rest: number[] = []
    for (const seq of seqs) {
      let found: string | undefined
      for (const [k, c] of fresh) {
        if (seq > c.from && seq <= c.to && k.startsWith(prefix)) {
          found = k
          break
        }
      }
      if (found !== undefined) out.set(seq, found)
      else rest.push(seq)
    }
    if (rest.length === 0) return out
    rest.sort((a, b) => a - b)
    // an iterator sees only durable keys: let pipelined writes (which may hold certificates) land first
    if (this.store.hasPending()) await this.store.flushed()
    let i = 0
    // in slices (one trip to LevelDB per slice, not per key)
    const it = this.store.db.keys({ gte: keys.cert(log, rest[0]), lt: prefixRange(prefix).lt })
    try {
      while (i < rest.length) {
        const slice = await it.nextv(CERT_WALK_SLICE)
        if (slice.length === 0) break
        for (const key of slice) {
          const to = parseInt(keySuffix(key, prefix), 16)
          while (i < rest.length && rest[i] <= to) out.set(rest[i++], key)
          if (i >= rest.length) break
        }
      }
    } finally {
      await it.close()
    }
    return out
  }

  /**
   * Delete an origin's stored log (entries, certificates, index) in chunks,
   * keeping its vector so peers do not send it again. For revoked platforms
   * whose operator asked for a purge. Returns the number of entries removed.
   */
  async purge (origin: string, chunk = 1000): Promise<number> {
    const log = this.alias(origin)
    this.tails.forget(origin)
    this.stopServingAfter(origin, 0)
    let removed = 0
    for (const prefix of [keys.entryPrefix(log), keys.certPrefix(log), keys.attestPrefix(log), keys.attestAsOfPrefix(log), `k${SEP}${log}${SEP}`]) {
      for (;;) {
        const batch: string[] = []
        for await (const key of this.store.db.keys({ ...prefixRange(prefix), limit: chunk })) batch.push(key)
        if (batch.length === 0) break
        await this.store.exclusive(async () => {
          await this.store.db.batch(batch.map(key => ({ type: 'del' as const, key })))
        })
        if (prefix === keys.entryPrefix(log)) removed += batch.length
      }
    }
    return removed
  }

  /** How far the write path has `origin`'s log: durable, or issued in a commit still being written. For the write path only. */
  held (origin: string): number {
    return Math.max(this.vector.get(origin), this.issuedVector.get(origin))
  }

  /** A commit holding `origin` up to `toSeq` was issued (not durable yet): the next transaction builds on it. */
  issued (origin: string, toSeq: number): void {
    this.issuedVector.advance(origin, toSeq)
  }

  /** A commit holding `origin` up to `toSeq` is durable: readers may serve it. */
  committed (origin: string, toSeq: number): void {
    this.vector.advance(origin, toSeq)
    this.advanceServable(origin, Math.min(toSeq, this.provenTo.get(origin) ?? Infinity))
  }

  private advanceServable (origin: string, toSeq: number): void {
    const before = this.servable.get(origin)
    if (toSeq <= before) return
    this.servable.set(origin, toSeq)
    const now = Date.now()
    let h = this.servableHistory.get(origin)
    if (h === undefined) {
      h = []
      this.servableHistory.set(origin, h)
    }
    h.push({ before, at: now })
    let drop = 0
    while (drop < h.length && h[drop].at < now - SERVABLE_HISTORY_MS) drop++
    if (drop > 0) h.splice(0, drop)
  }

  /**
   * How far `origin` was servable at time `t` (Date.now() ms, at most
   * SERVABLE_HISTORY_MS ago): what may be sent lazily (see SyncSession).
   */
  servableAsOf (origin: string, t: number): number {
    const h = this.servableHistory.get(origin)
    if (h !== undefined) for (const e of h) if (e.at > t) return e.before
    return this.servable.get(origin)
  }

  /**
   * Read the next stretch of an origin's log after `afterSeq`, up to the
   * limits, cut at run boundaries so that every certificate comes with all
   * its surviving entries. Returns undefined when nothing after `afterSeq` is
   * held.
   */
  async readRun (origin: string, afterSeq: number, maxEntries: number, maxBytes: number, upTo = Infinity): Promise<EntryRun | undefined> {
    const top = Math.min(this.servable.get(origin), upTo)
    if (top <= afterSeq) return undefined
    // a live change: the run just written, from memory (no database reads on the way out)
    const cached = this.tails.read(origin, afterSeq, top, maxEntries, maxBytes)
    if (cached !== undefined) return cached
    // the rest from the database, as far as it is durable (what lies beyond is served once it is)
    const held = Math.min(this.vector.get(origin), top)
    if (held <= afterSeq) return undefined
    // certificates and entries from ONE snapshot: a write landing between two separate reads could
    // compact an entry after its certificate was read unpruned, and the run would not verify
    const snapshot = this.store.db.snapshot()
    try {
      // The snapshot may already hold a batch whose commit has not yet advanced `vector` on this
      // thread (LevelDB makes a write visible before its promise resolves). If that batch superseded
      // every entry of the runs ending at `held`, their certificates are gone from the snapshot, and a
      // batch claiming seqs up to `held` would end past its last signed run, which a receiver rightly
      // refuses. So a batch claims only what the snapshot proves: the stored vector read from the same
      // snapshot, and never a range whose signed end was compacted away.
      const proven = await this.storedSeq(snapshot, origin)
      const run = await this.readRunAt(snapshot, origin, afterSeq, held, maxEntries, maxBytes, proven)
      if (run !== undefined || proven <= held) return run
      // everything in (afterSeq, held] was compacted by a newer run in the snapshot: serve through it
      return await this.readRunAt(snapshot, origin, afterSeq, proven, maxEntries, maxBytes, proven)
    } finally {
      await snapshot.close()
    }
  }

  /**
   * A version 2 batch of `origin`'s log after `afterSeq` (this node's own,
   * see attestOwnLog, or another origin's stored from version 2 batches, see
   * appendAttested), read from one snapshot: the attestations that tile the
   * range from the first one ending after `afterSeq` (a position inside a run
   * gets the whole run), each live run with exactly its live entries, up to
   * the limits (cut at run ends; at most `maxEntries` attestations).
   * verifyAttestedRuns accepts what it returns. `updates` are the stored
   * attestations of runs ending at or before the batch's start made by the
   * writes it carries (as of a seq inside it; at most MAX_UPDATES), each with
   * its bitmap and without pruned nodes, as a receiver applies them
   * (completeness.md §4, §6). One made later is attached to the batch that
   * carries the write it is as of; a receiver that gets a batch without its
   * updates keeps the entries they would have deleted (appendAttested). Undefined when nothing after
   * `afterSeq` is attested (a stretch the upgrade to version 2 could not
   * attest, see format.ts, ends the range).
   */
  async readAttested (origin: string, afterSeq: number, maxEntries: number, maxBytes: number): Promise<{ fromSeq: number, toSeq: number, entries: Uint8Array[], certs: AttestedCert[], updates: AttestedCert[] } | undefined> {
    const log = this.alias(origin)
    if (this.vector.get(origin) <= afterSeq) return undefined
    const snapshot = this.store.db.snapshot()
    try {
      // the attestations first, then their entries in one range read, which a live log (a run of a
      // write or two each) needs: an iterator per run cost a thread-pool trip per entry
      const attested = await this.attestedRuns(snapshot, origin, afterSeq, maxEntries)
      if (attested === undefined) return undefined
      const { runs, liveCount, fromSeq } = attested
      // the entries of (fromSeq, last run's end], run by run: a run is served only whole, with exactly
      // the entries its attestation says are live (stored entries otherwise: serve the runs before it);
      // once the limits are reached the runs after the current one are left for the next batch
      const entries: Uint8Array[] = []
      let bytes = 0
      let served = 0 // runs complete so far
      let r = 0
      let k = 0 // entries of run r matched
      let runEntries: Uint8Array[] = []
      let runBytes = 0
      const complete = (): boolean => {
        // run r has all its entries: take it, unless the limits were reached before it
        if (served > 0 && (entries.length >= maxEntries || bytes >= maxBytes)) return false
        for (const e of runEntries) entries.push(e)
        bytes += runBytes
        served++
        r++
        k = 0
        runEntries = []
        runBytes = 0
        return true
      }
      const advance = (): boolean => {
        // take the runs that are complete before the next entry (gone runs and finished live runs)
        while (r < runs.length && k === runs[r].live.length) if (!complete()) return false
        return true
      }
      const entryPrefix = keys.entryPrefix(log)
      const last = runs[runs.length - 1].cert.to
      if (advance()) {
        entries: for await (const batch of rows(this.store.db, { gt: keys.entry(log, fromSeq), lte: keys.entry(log, last), snapshot }, { entries: Math.min(liveCount + 1, maxEntries + 1), bytes: maxBytes })) {
          for (const [key, raw] of batch) {
            const seq = parseInt(keySuffix(key, entryPrefix), 16)
            // run r is live and unfinished (advance takes finished and gone runs): an entry that is not
            // its next live one means the stored entries are not what the attestation says
            if (r >= runs.length || runs[r].live[k] !== seq - runs[r].cert.from - 1) break entries
            runEntries.push(raw)
            runBytes += raw.byteLength
            k++
            if (!advance()) break entries
          }
        }
      }
      if (served === 0) return undefined
      const certs = runs.slice(0, served).map(x => x.cert)
      const toSeq = certs[certs.length - 1].to
      return { fromSeq, toSeq, entries, certs, updates: await this.updatesAt(snapshot, origin, fromSeq, toSeq) }
    } finally {
      await snapshot.close()
    }
  }

  /** The attestations of `origin` after `afterSeq` (tiled: each starts where the one before ends), as many as `maxEntries` allows, with their live positions. */
  private async attestedRuns (snapshot: ReturnType<Store['db']['snapshot']>, origin: string, afterSeq: number, maxEntries: number): Promise<{ runs: Array<{ cert: AttestedCert, live: number[] }>, liveCount: number, fromSeq: number } | undefined> {
    const log = this.alias(origin)
    const runs: Array<{ cert: AttestedCert, live: number[] }> = []
    let liveCount = 0
    let fromSeq = afterSeq
    const range = prefixRange(keys.attestPrefix(log))
    walk: for await (const batch of rows(this.store.db, { gt: keys.attest(log, afterSeq), lt: range.lt, limit: maxEntries, snapshot }, { entries: CERT_TRIP_ENTRIES })) {
      for (const [, value] of batch) {
        const c = decodeAttested(value)
        if (runs.length === 0) {
          if (c.from > afterSeq) return undefined // an unattested stretch first
          fromSeq = c.from
        } else if (c.from !== runs[runs.length - 1].cert.to) break walk
        if (runs.length > 0 && liveCount >= maxEntries) break walk
        const live = c.gone ? [] : unprunedPositions(c.to - c.from, c.pruned)
        runs.push({ cert: { from: c.from, to: c.to, asOf: c.asOf, sig: c.sig, pruned: c.pruned, gone: c.gone }, live })
        liveCount += live.length
      }
    }
    return runs.length === 0 ? undefined : { runs, liveCount, fromSeq }
  }

  /** The updates a batch of `origin`'s (fromSeq, toSeq] carries, from the index by as_of (see readAttested). */
  private async updatesAt (snapshot: ReturnType<Store['db']['snapshot']>, origin: string, fromSeq: number, toSeq: number): Promise<AttestedCert[]> {
    const log = this.alias(origin)
    const out: AttestedCert[] = []
    const prefix = keys.attestAsOfPrefix(log)
    for await (const key of this.store.db.keys({ gte: keys.attestAsOf(log, fromSeq + 1, 0), lt: keys.attestAsOf(log, toSeq + 1, 0), snapshot })) {
      const [asOfPart, toPart] = keySuffix(key, prefix).split(SEP)
      const to = parseInt(toPart, 16)
      if (to > fromSeq) continue
      const raw = await this.store.db.get(keys.attest(log, to), { snapshot })
      if (raw === undefined) continue
      const a = decodeAttested(raw)
      if (a.asOf !== parseInt(asOfPart, 16)) continue
      const n = a.to - a.from
      out.push({ from: a.from, to: a.to, asOf: a.asOf, sig: a.sig, pruned: [], gone: a.gone, ...(a.gone ? {} : { live: a.live ?? liveBitmap(n, unprunedPositions(n, a.pruned)) }) })
      if (out.length >= MAX_UPDATES) break
    }
    return out
  }

  /** How far `origin`'s log is stored, as `snapshot` sees it (the vector written with each run). */
  private async storedSeq (snapshot: ReturnType<Store['db']['snapshot']>, origin: string): Promise<number> {
    const log = this.alias(origin)
    const value = await this.store.db.get(keys.vector(log), { snapshot })
    return value === undefined ? 0 : Number(utf8.decode(value))
  }

  /**
   * Read (afterSeq, held] from `snapshot`, which stores the origin up to `proven` (≥ held). A signed
   * range ends where its last certificate in the snapshot ends (see prove): runs after it up to
   * `held` may have been compacted by entries beyond `held`, which this batch does not carry, or
   * never stored (a relay keeps no entry of a revoked origin past its revocation, yet holds its log
   * as far as the batches it got reached). Returns undefined when nothing provable lies in the range.
   */
  private async readRunAt (snapshot: ReturnType<Store['db']['snapshot']>, origin: string, afterSeq: number, held: number, maxEntries: number, maxBytes: number, proven: number): Promise<EntryRun | undefined> {
    const log = this.alias(origin)
    const { certs, rawCerts, truncated: certsTruncated } = await this.certsAfter(snapshot, origin, afterSeq, held, maxEntries)
    // a peer whose position is inside a run gets that whole run again
    const fromSeq = certs.length > 0 ? Math.min(afterSeq, certs[0].from) : afterSeq
    // A receiver takes a batch only if it ends where its last certificate ends and every entry lies in
    // one of its runs (verifyRuns). A signed log's batch is held to the same rule here: it claims no
    // seq its certificates do not prove (see prove). Logs stored before runs were signed have none.
    const kind = certs.length > 0 ? 'signed' : await this.logKind(snapshot, origin)
    // a log with neither (purged: only its vector is kept) proves nothing
    if (kind === 'empty') return undefined
    const signed = kind === 'signed'
    const entries: Uint8Array[] = []
    const seqs: number[] = []
    let bytes = 0
    let ci = 0
    let lastSeq = fromSeq
    let cut: number | undefined
    const prefix = keys.entryPrefix(log)
    const range = prefixRange(prefix)
    // one trip usually brings the whole batch (a run is cut into batches at run ends, so a little more may be read)
    entries: for await (const batch of rows(this.store.db, { gt: keys.entry(log, fromSeq), lt: range.lt, snapshot }, { entries: maxEntries + 1, bytes: maxBytes })) {
      for (let b = 0; b < batch.length; b++) {
        const [key, value] = batch[b]
        const seq = parseInt(keySuffix(key, prefix), 16)
        if (seq > held) break entries
        // finishing a run: stop here if the limits are reached
        while (ci < certs.length && seq > certs[ci].to) {
          if (entries.length >= maxEntries || bytes >= maxBytes) {
            cut = certs[ci].to
            break
          }
          ci++
        }
        if (cut !== undefined) break entries
        if (ci >= certs.length && certsTruncated) {
          cut = certs[certs.length - 1].to // the next certificates are for the next call
          break entries
        }
        if (signed && (ci >= certs.length || seq <= certs[ci].from)) {
          // an entry in no run of the snapshot: nothing from here on can be proven to a receiver
          cut = ci > 0 ? certs[ci - 1].to : afterSeq
          break entries
        }
        if (ci >= certs.length && (entries.length >= maxEntries || bytes >= maxBytes)) {
          cut = lastSeq // unsigned entries (legacy): cut anywhere
          break entries
        }
        entries.push(value)
        seqs.push(seq)
        bytes += value.byteLength
        lastSeq = seq
      }
    }
    if (signed) return prove(afterSeq, fromSeq, entries, seqs, certs, rawCerts, cut ?? held)
    if (cut === undefined) {
      if (held < proven) {
        // the end of the range may have been compacted by what lies beyond it (unsigned: nothing tells)
        return entries.length > 0 ? { fromSeq, entries, certs: rawCerts, toSeq: held, bytes } : undefined
      }
      // everything up to `held` is in (remaining runs hold no entries: compacted away)
      return { fromSeq, entries, certs: rawCerts, toSeq: held, bytes }
    }
    return { fromSeq, entries, certs: rawCerts, toSeq: cut, bytes }
  }

  /**
   * The certificates of runs ending after afterSeq, up to what is held, as far as a batch can reach:
   * CERT_SPAN_BATCHES × maxEntries seqs (a run whose entries were mostly compacted away covers more
   * seqs than entries; in a log compacted further than that a batch carries fewer entries).
   */
  private async certsAfter (snapshot: ReturnType<Store['db']['snapshot']>, origin: string, afterSeq: number, held: number, maxEntries: number): Promise<{ certs: Cert[], rawCerts: Uint8Array[], truncated: boolean }> {
    const log = this.alias(origin)
    const out = { certs: [] as Cert[], rawCerts: [] as Uint8Array[], truncated: false }
    const certRange = prefixRange(keys.certPrefix(log))
    for await (const batch of rows(this.store.db, { gt: keys.cert(log, afterSeq), lt: certRange.lt, limit: maxEntries, snapshot }, { entries: CERT_TRIP_ENTRIES })) {
      for (const [, value] of batch) {
        const c = decodeCert(value)
        if (c.to > held) return out
        out.certs.push(c)
        out.rawCerts.push(value)
        if (out.certs.length >= maxEntries || c.to - Math.min(afterSeq, out.certs[0].from) >= maxEntries * CERT_SPAN_BATCHES) {
          out.truncated = true
          return out
        }
      }
    }
    return out
  }

  /** Whether `origin`'s log in `snapshot` holds run certificates, only entries (stored before runs were signed), or neither. */
  private async logKind (snapshot: ReturnType<Store['db']['snapshot']>, origin: string): Promise<'signed' | 'unsigned' | 'empty'> {
    const log = this.alias(origin)
    for (const [prefix, kind] of [[keys.certPrefix(log), 'signed'], [keys.entryPrefix(log), 'unsigned']] as const) {
      const found = await this.store.db.keys({ ...prefixRange(prefix), limit: 1, snapshot }).all()
      if (found.length > 0) return kind
    }
    return 'empty'
  }

  /**
   * Whether `entry` is still its record's newest entry in its origin's log,
   * as `txn` sees it (writes in flight included): a newer one replaces it
   * once stored. Prefetch the `latest` keys of a batch of entries first.
   */
  isNewest (txn: Txn, entry: LogEntry): boolean {
    const seq = txn.get(keys.latest(this.alias(entry.origin), entry.collection, entry.id))
    return seq !== undefined && Number(utf8.decode(seq)) === entry.seq
  }

  /**
   * The newest entry of every record of one origin's collection, in id order,
   * after `afterId`: what a rule needs to backfill.
   */
  async readCollection (origin: string, collection: string, afterId: string | undefined, limit: number): Promise<LogEntry[]> {
    return (await this.readCollectionChunk(origin, collection, afterId, limit)).entries
  }

  /**
   * One chunk of an origin's log in log order: the entries after `afterSeq`
   * and at or below `upTo` (up to `limit` of them, `scanned`), of which those
   * of `collection` are returned. The log holds only the newest entry of each
   * record (older ones are deleted as newer ones are stored), so this is the
   * newest entry of each record too, read with one range read instead of an
   * index scan and a lookup per record. `lastSeq` is the last seq passed;
   * `more` is false once the range ends.
   */
  async readLogChunk (origin: string, collection: string, afterSeq: number, limit: number, upTo = Infinity): Promise<{ entries: LogEntry[], lastSeq: number, scanned: number, more: boolean }> {
    const log = this.alias(origin)
    const prefix = keys.entryPrefix(log)
    const end = upTo === Infinity ? { lt: prefixRange(prefix).lt } : { lte: keys.entry(log, upTo) }
    const out = { entries: [] as LogEntry[], lastSeq: afterSeq, scanned: 0, more: false }
    for await (const batch of rows(this.store.db, { gt: keys.entry(log, afterSeq), ...end, limit })) {
      for (let b = 0; b < batch.length; b++) {
        const [key, value] = batch[b]
        out.scanned++
        out.lastSeq = parseInt(keySuffix(key, prefix), 16)
        const entry = decodeEntry(origin, value)
        if (entry.collection === collection) out.entries.push(entry)
      }
    }
    out.more = out.scanned === limit
    if (out.entries.length > 0 && await this.keepsSuperseded(origin)) {
      // entries kept until their origin attests them gone (appendAttested): only each record's newest
      const latest = await this.store.db.getMany(out.entries.map(e => keys.latest(log, e.collection, e.id)))
      out.entries = out.entries.filter((e, i) => latest[i] !== undefined && Number(utf8.decode(latest[i] as Uint8Array)) === e.seq)
    }
    return out
  }

  /**
   * Origins whose stored log may hold superseded entries (another origin's,
   * stored from version 2 batches, see appendAttested): learnt from the store
   * the first time (any attestation stored: maybe), then set when a batch
   * stores an entry of a record that already had one. A bulk sync of new
   * records never sets it, and its backfill reads no record index.
   */
  private readonly retaining = new Map<string, boolean>()

  private async keepsSuperseded (origin: string): Promise<boolean> {
    const log = this.alias(origin)
    if (this.isOwn(origin)) return false
    let known = this.retaining.get(origin)
    if (known === undefined) {
      known = (await this.store.db.keys({ ...prefixRange(keys.attestPrefix(log)), limit: 1 }).all()).length > 0
      this.retaining.set(origin, known)
    }
    return known
  }

  /**
   * One chunk of `readCollection`: the next `limit` records of the collection
   * after `afterId`, and of those the entries at or below `upTo` (records
   * whose newest entry is later are passed over unread: a backfill applied
   * them as they arrived). `lastId` is the last record passed (read or not),
   * `scanned` how many were: fewer than `limit` means the collection ends.
   */
  async readCollectionChunk (origin: string, collection: string, afterId: string | undefined, limit: number, upTo = Infinity): Promise<{ entries: LogEntry[], lastId?: string, scanned: number }> {
    const log = this.alias(origin)
    const prefix = keys.latestPrefix(log, collection)
    const seqs: number[] = []
    let lastKey: string | undefined
    let scanned = 0
    for await (const batch of rows(this.store.db, { ...rangeAfter(prefix, afterId), limit })) {
      for (const [key, value] of batch) {
        scanned++
        lastKey = key
        const seq = Number(utf8.decode(value))
        if (seq <= upTo) seqs.push(seq)
      }
    }
    const out: { entries: LogEntry[], lastId?: string, scanned: number } = { entries: [], scanned }
    if (lastKey !== undefined) out.lastId = keySuffix(lastKey, prefix)
    if (seqs.length === 0) return out
    const values = await this.store.db.getMany(seqs.map(s => keys.entry(log, s)))
    for (const v of values) if (v !== undefined) out.entries.push(decodeEntry(origin, v))
    return out
  }
}
