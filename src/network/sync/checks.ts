/**
 * The checks a received batch must pass, named by stable codes (what an
 * operator sees in the log, in `status` and in /metrics), and the same check
 * on the sending side: a node never sends a batch its peer would refuse.
 */
import { decodeEntry } from '../../log/entry.js'
import type { EntryRun } from '../../log/changelog.js'
import { decodeCert } from '../../log/signing.js'

/**
 * Codes of the checks whose failure counts as an offence (the sender is
 * disconnected; OFFENCE_LIMIT of them within OFFENCE_WINDOW_MS and it is
 * refused for OFFENCE_BAN_MS). See docs/troubleshooting.md.
 */
export const OFFENCE_CHECKS = {
  /** The batch claims seqs beyond the last signed run it carries (protocols/sync §4.5). */
  BATCH_END_UNSIGNED: 'BATCH_END_UNSIGNED',
  /** An entry lies in no run certificate of the batch. */
  ENTRY_UNSIGNED: 'ENTRY_UNSIGNED',
  /** A run's surviving entries and pruned hashes do not cover the run exactly (an entry missing or added). */
  RUN_INCOMPLETE: 'RUN_INCOMPLETE',
  /** A run certificate's range is invalid, overlaps another, or lies outside the batch. */
  RUN_RANGE_INVALID: 'RUN_RANGE_INVALID',
  /** A run's entries do not reproduce its origin's signature (altered, reordered or forged). */
  RUN_SIGNATURE_MISMATCH: 'RUN_SIGNATURE_MISMATCH',
  /** The origin is not an Ed25519 peer id: nothing of it can be verified. */
  ORIGIN_KEY_INVALID: 'ORIGIN_KEY_INVALID',
  /** An entry is stamped further ahead of the receiver's clock than its bound allows (protocols/sync §6.3). */
  CLOCK_AHEAD: 'CLOCK_AHEAD',
  /**
   * Version 2: a gone span holds entries or pruned nodes, or is not its
   * origin's signature (protocols/sync/completeness.md §5).
   */
  GONE_SPAN_INVALID: 'GONE_SPAN_INVALID',
  /**
   * Version 2: an update of an earlier run is not its origin's attestation
   * of the run this node stores, says an entry is live again, or a gone span
   * straddles a stored run (completeness.md §5.4-5.6).
   */
  UPDATE_INVALID: 'UPDATE_INVALID',
  /** Any other verification failure. */
  SIGNATURE_INVALID: 'SIGNATURE_INVALID'
} as const

export type OffenceCheck = typeof OFFENCE_CHECKS[keyof typeof OFFENCE_CHECKS]

/** A batch refused because it failed one of the checks above. */
export interface Offence {
  check: OffenceCheck
  origin: string
  /** The batch's range (fromSeq, toSeq]. */
  fromSeq: number
  toSeq: number
  reason: string
}

/** A batch refused for any reason (an offence, a frame that does not decode, a failed ingest): see StallTracker. */
export interface Refusal {
  origin: string
  fromSeq: number
  toSeq: number
  /** An offence check, or the error's code (FRAME_INVALID, ...). */
  code: string
  reason: string
  offence: boolean
}

/** The last certificate's end must be the batch's end (the receiver's first check, made here with its own code). */
export function batchEndCheck (fromSeq: number, toSeq: number, certs: Array<{ to: number }>): string | undefined {
  const end = certs.length > 0 ? certs[certs.length - 1].to : fromSeq
  if (end === toSeq) return undefined
  return `batch (${fromSeq}, ${toSeq}] claims seqs beyond its signed runs (which end at ${end})`
}

/** Which check a verification error (SignatureError from verifyRuns) stands for. */
export function offenceCheckOf (err: Error): OffenceCheck {
  const named = (err as { check?: unknown }).check
  if (typeof named === 'string' && named in OFFENCE_CHECKS) return named as OffenceCheck
  const m = err.message
  if (/^update of run|straddles the stored run|carries \d+ updates/.test(m)) return OFFENCE_CHECKS.UPDATE_INVALID
  if (/is attested gone|is not attested gone/.test(m)) return OFFENCE_CHECKS.GONE_SPAN_INVALID
  if (/claims seqs beyond its signed runs|has no certificates|the certificates of batch .* end at/.test(m)) return OFFENCE_CHECKS.BATCH_END_UNSIGNED
  if (/is not covered by any (signed run|certificate)/.test(m)) return OFFENCE_CHECKS.ENTRY_UNSIGNED
  if (/is incomplete|is not accounted for exactly/.test(m)) return OFFENCE_CHECKS.RUN_INCOMPLETE
  if (/is not a valid range|overlap|lies outside the batch|must tile|lies before/.test(m)) return OFFENCE_CHECKS.RUN_RANGE_INVALID
  if (/does not match its origin's (signature|attestation)/.test(m)) return OFFENCE_CHECKS.RUN_SIGNATURE_MISMATCH
  if (/is not an Ed25519 peer id/.test(m)) return OFFENCE_CHECKS.ORIGIN_KEY_INVALID
  return OFFENCE_CHECKS.SIGNATURE_INVALID
}

/**
 * A run read to be sent, made to pass the receiver's end check
 * (batchEndCheck), or undefined when it cannot be: it must end where its last
 * certificate ends. A run read up to a bound that is not the end of a
 * surviving signed run (a lazy-push cap whose run was since compacted away,
 * or a read whose bound ran ahead of what its snapshot holds) carries no
 * entry beyond its last certificate (an entry is deleted before its
 * certificate is), so it is cut there; a run with no certificate at all
 * carries nothing the peer can take and is not sent.
 */
export function sendableRun (origin: string, run: EntryRun): EntryRun | undefined {
  if (run.certs.length === 0) return undefined
  const lastTo = decodeCert(run.certs[run.certs.length - 1]).to
  if (lastTo === run.toSeq) return run
  if (lastTo < run.fromSeq || lastTo > run.toSeq) return undefined
  if (run.entries.length > 0 && decodeEntry(origin, run.entries[run.entries.length - 1]).seq > lastTo) return undefined
  return { ...run, toSeq: lastTo }
}
