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
import { keys, keySuffix, prefixRange } from '../store/keys.js'
import { decodeEntry } from './entry.js'
import type { LogEntry } from './entry.js'
import { decodeCert, encodeAttested, leafHash, merkleRoot, SignatureError, verifyRuns } from './signing.js'
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
  const out: OwnLogUpgrade = { runs: 0, gone: 0, unattested: 0 }
  const heldRaw = await db.get(keys.vector(origin))
  const held = heldRaw === undefined ? 0 : Number(utf8.decode(heldRaw))
  if (held === 0) return out
  let ops: Array<{ type: 'put', key: string, value: Uint8Array }> = []
  const flush = async (): Promise<void> => {
    if (ops.length > 0) await db.batch(ops)
    ops = []
  }
  const put = async (key: string, value: Uint8Array): Promise<void> => {
    ops.push({ type: 'put', key, value })
    if (ops.length >= CHUNK) await flush()
  }

  // the stored entries, read in seq order alongside the certificates
  const entryPrefix = keys.entryPrefix(origin)
  const entries = db.iterator(prefixRange(entryPrefix))
  let buffer: Array<[string, Uint8Array]> = []
  let bi = 0
  let exhausted = false
  const peek = async (): Promise<{ seq: number, raw: Uint8Array } | undefined> => {
    if (bi >= buffer.length && !exhausted) {
      buffer = await entries.nextv(CHUNK)
      bi = 0
      if (buffer.length === 0) exhausted = true
    }
    if (bi >= buffer.length) return undefined
    return { seq: parseInt(keySuffix(buffer[bi][0], entryPrefix), 16), raw: buffer[bi][1] }
  }

  /** A gone span being extended, not yet signed. */
  let gone: { from: number, to: number } | undefined
  const signGone = async (): Promise<void> => {
    if (gone === undefined) return
    await put(keys.attest(origin, gone.to), encodeAttested(attester.gone(gone.from, gone.to, held)))
    if (held > gone.to) await put(keys.attestAsOf(origin, held, gone.to), new Uint8Array(0))
    out.gone++
    gone = undefined
  }
  /** (from, to] holds no certificate: gone when it holds no entry either, unattested otherwise. */
  const stretch = async (from: number, to: number): Promise<void> => {
    if (to <= from) return
    let any = false
    for (let e = await peek(); e !== undefined && e.seq <= to; e = await peek()) {
      any = true
      bi++
    }
    if (any) {
      await signGone()
      out.unattested++
      log?.warn({ origin, from, to }, `own log (${from}, ${to}] holds entries no run certificate covers: left without a version 2 attestation`)
      return
    }
    if (gone !== undefined && gone.to === from) gone.to = to
    else {
      await signGone()
      gone = { from, to }
    }
  }

  let at = 0
  try {
    for await (const [, value] of db.iterator(prefixRange(keys.certPrefix(origin)))) {
      const cert = decodeCert(value)
      if (cert.to > held) break
      await stretch(at, cert.from)
      const run: LogEntry[] = []
      for (let e = await peek(); e !== undefined && e.seq <= cert.to; e = await peek()) {
        bi++
        if (e.seq > cert.from) run.push(Object.assign(decodeEntry(origin, e.raw), { bytes: e.raw }))
      }
      at = cert.to
      try {
        verifyRuns(origin, run, [cert])
      } catch (err) {
        if (!(err instanceof SignatureError)) throw err
        await signGone()
        out.unattested++
        log?.warn({ origin, from: cert.from, to: cert.to, err: err.message }, `own run (${cert.from}, ${cert.to}] does not verify as stored: left without a version 2 attestation`)
        continue
      }
      const n = cert.to - cert.from
      const live = run.map(e => e.seq - cert.from - 1)
      const root = merkleRoot(n, new Map(run.map(e => [e.seq - cert.from - 1, leafHash(e.bytes as Uint8Array)])), cert.pruned) as Uint8Array
      await signGone()
      await put(keys.attest(origin, cert.to), encodeAttested(attester.live(cert.from, cert.to, held, root, live, cert.pruned), root))
      if (held > cert.to) await put(keys.attestAsOf(origin, held, cert.to), new Uint8Array(0))
      out.runs++
    }
    await stretch(at, held)
    await signGone()
    await flush()
  } finally {
    await entries.close()
  }
  return out
}
