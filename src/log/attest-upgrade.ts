/**
 * The upgrade of a node's own log to version 2 attestations
 * (protocols/sync/completeness.md §10, data format 3 in src/store/format.ts):
 * every run the node holds of its own log is attested as of its held seq,
 * with the live positions the entries it stores (the root from those entries
 * and the run's pruned nodes, checked against the version 1 signature first),
 * and every stretch whose certificates version 1 deleted with their last
 * entries gets a gone span (consecutive ones merged). A stretch holding
 * entries that no certificate covers (a log stored before runs were signed),
 * or a run whose stored entries do not reproduce its signature, is left
 * unattested: nothing false is signed; such a stretch is not served under
 * version 2 (ChangeLog.readAttested stops before it).
 */
import type { Logger } from 'pino'
import type { Db } from '../store/db.js'
import { utf8 } from '../store/db.js'
import { legacyLogKeys as keys, keySuffix, prefixRange } from '../store/keys.js'
import { decodeEntry } from './entry.js'
import type { LogEntry } from './entry.js'
import { decodeAttested, decodeCert, encodeAttested, leafHash, merkleRoot, SignatureError, verifyRuns } from './signing.js'
import type { Attester } from './signing.js'

/** Keys written per batch (each write is idempotent: signatures are deterministic, as of the same held seq). */
const CHUNK = 1000

export interface OwnLogUpgrade {
  /** Live runs attested. */
  runs: number
  /** Gone spans signed. */
  gone: number
  /** Stretches left unattested (legacy unsigned entries, or a run that does not verify). */
  unattested: number
}

/** Attest `origin`'s stored log (this node's own) as of its held seq; writes the attestations in chunks. */
export async function attestStoredOwnLog (db: Db, origin: string, attester: Attester, log?: Logger): Promise<OwnLogUpgrade> {
  const heldRaw = await db.get(keys.vector(origin))
  const held = heldRaw === undefined ? 0 : Number(utf8.decode(heldRaw))
  if (held === 0) return { runs: 0, gone: 0, unattested: 0 }
  return await new OwnLogPass(db, origin, attester, held, log).run()
}

function openEntries (db: Db, prefix: string) {
  return db.iterator(prefixRange(prefix))
}

/** One pass over the own log: its certificates in order, its stored entries read alongside. */
class OwnLogPass {
  readonly out: OwnLogUpgrade = { runs: 0, gone: 0, unattested: 0 }
  private ops: Array<{ type: 'put', key: string, value: Uint8Array }> = []
  private readonly entryPrefix: string
  private readonly entries: ReturnType<typeof openEntries>
  private buffer: Array<[string, Uint8Array]> = []
  private bi = 0
  private exhausted = false
  /** A gone span being extended, not yet signed. */
  private gone: { from: number, to: number } | undefined

  constructor (private readonly db: Db, private readonly origin: string, private readonly attester: Attester, private readonly held: number, private readonly log?: Logger) {
    this.entryPrefix = keys.entryPrefix(origin)
    this.entries = openEntries(db, this.entryPrefix)
  }

  async run (): Promise<OwnLogUpgrade> {
    let at = 0
    try {
      for await (const [, value] of this.db.iterator(prefixRange(keys.certPrefix(this.origin)))) {
        const cert = decodeCert(value)
        if (cert.to > this.held) break
        await this.stretch(at, cert.from)
        at = cert.to
        await this.attestRun(cert)
      }
      await this.stretch(at, this.held)
      await this.signGone()
      await this.flush()
    } finally {
      await this.entries.close()
    }
    return this.out
  }

  /** The run of `cert`: attested live as stored, when its stored entries reproduce its signature. */
  private async attestRun (cert: ReturnType<typeof decodeCert>): Promise<void> {
    const { origin, held } = this
    const run: LogEntry[] = []
    for (let e = await this.peek(); e !== undefined && e.seq <= cert.to; e = await this.peek()) {
      this.bi++
      if (e.seq > cert.from) run.push(Object.assign(decodeEntry(origin, e.raw), { bytes: e.raw }))
    }
    try {
      verifyRuns(origin, run, [cert])
    } catch (err) {
      if (!(err instanceof SignatureError)) throw err
      await this.signGone()
      this.out.unattested++
      this.log?.warn({ origin, from: cert.from, to: cert.to, err: err.message }, `own run (${cert.from}, ${cert.to}] does not verify as stored: left without a version 2 attestation`)
      return
    }
    const n = cert.to - cert.from
    const live = run.map(e => e.seq - cert.from - 1)
    const root = merkleRoot(n, new Map(run.map(e => [e.seq - cert.from - 1, leafHash(e.bytes as Uint8Array)])), cert.pruned) as Uint8Array
    await this.signGone()
    await this.put(keys.attest(origin, cert.to), encodeAttested(this.attester.live(cert.from, cert.to, held, root, live, cert.pruned), root))
    if (held > cert.to) await this.put(keys.attestAsOf(origin, held, cert.to), new Uint8Array(0))
    this.out.runs++
  }

  /** (from, to] holds no certificate: gone when it holds no entry either, unattested otherwise. */
  private async stretch (from: number, to: number): Promise<void> {
    if (to <= from) return
    let any = false
    for (let e = await this.peek(); e !== undefined && e.seq <= to; e = await this.peek()) {
      any = true
      this.bi++
    }
    if (any) {
      await this.signGone()
      this.out.unattested++
      this.log?.warn({ origin: this.origin, from, to }, `own log (${from}, ${to}] holds entries no run certificate covers: left without a version 2 attestation`)
      return
    }
    if (this.gone !== undefined && this.gone.to === from) this.gone.to = to
    else {
      await this.signGone()
      this.gone = { from, to }
    }
  }

  private async signGone (): Promise<void> {
    const gone = this.gone
    if (gone === undefined) return
    await this.put(keys.attest(this.origin, gone.to), encodeAttested(this.attester.gone(gone.from, gone.to, this.held)))
    if (this.held > gone.to) await this.put(keys.attestAsOf(this.origin, this.held, gone.to), new Uint8Array(0))
    this.out.gone++
    this.gone = undefined
  }

  /** The next stored entry (not consumed: `bi++` takes it). */
  private async peek (): Promise<{ seq: number, raw: Uint8Array } | undefined> {
    if (this.bi >= this.buffer.length && !this.exhausted) {
      this.buffer = await this.entries.nextv(CHUNK)
      this.bi = 0
      if (this.buffer.length === 0) this.exhausted = true
    }
    if (this.bi >= this.buffer.length) return undefined
    return { seq: parseInt(keySuffix(this.buffer[this.bi][0], this.entryPrefix), 16), raw: this.buffer[this.bi][1] }
  }

  private async put (key: string, value: Uint8Array): Promise<void> {
    this.ops.push({ type: 'put', key, value })
    if (this.ops.length >= CHUNK) await this.flush()
  }

  private async flush (): Promise<void> {
    if (this.ops.length > 0) await this.db.batch(this.ops)
    this.ops = []
  }
}

/**
 * The upgrade to data format 4 (completeness.md §10, other origins): the
 * writes that lower the held seq of every origin other than `self` to the end
 * of its stored version 2 attestations that tile its log from seq 0 (0 for a
 * log stored from version 1 batches only), so the rest is fetched again with
 * its origin's attestations. Version 1 certificates are not taken as
 * attestations: what a version 1 relay compacted cannot be shown complete.
 * Entries and records stay.
 */
export async function lowerToAttested (db: Db, self: string, log?: Logger): Promise<Array<{ type: 'put', key: string, value: Uint8Array }>> {
  const ops: Array<{ type: 'put', key: string, value: Uint8Array }> = []
  const prefix = keys.vectorPrefix()
  let lowered = 0
  for await (const [key, value] of db.iterator(prefixRange(prefix))) {
    const origin = keySuffix(key, prefix)
    if (origin === self) continue
    const held = Number(utf8.decode(value))
    let end = 0
    for await (const [, raw] of db.iterator(prefixRange(keys.attestPrefix(origin)))) {
      const a = decodeAttested(raw)
      if (a.from !== end || a.to > held) break
      end = a.to
    }
    if (end >= held) continue
    ops.push({ type: 'put', key, value: utf8.encode(String(end)) })
    lowered++
  }
  if (lowered > 0) log?.warn({ origins: lowered }, `the logs of ${lowered} other origins will be fetched again with their origins' version 2 attestations (entries and records stay)`)
  return ops
}
