/**
 * Append frontiers: for a key prefix, a key F such that the prefix has no
 * key > F, neither in the database nor in a write issued since. Most of a
 * node's bulk work appends: a log's next seqs, a new record's id after the
 * last one, its mapping, its feed cursor. A batch of such keys is looked up
 * before it is written (is the record new? did the rule place it before?),
 * and every lookup finds nothing. Beyond a prefix's frontier the answer is
 * known without a trip to LevelDB's threads: `npm run profile:ingest -- --mode
 * backfill` spent a quarter of its time in two range reads per chunk that
 * found nothing (the target's records and the rule's mappings).
 *
 * A frontier is learnt from a range read of the prefix whose keys end at
 * `last` (Txn.prefetch) together with a probe of what lies after `last`:
 * when the probe finds nothing, F = last, raised to every key of the prefix
 * in writes still in flight when the probe started and issued while it ran.
 * From then on every key written (Store.write, when issued) raises it.
 * Deletes leave it: a frontier says only that nothing lies beyond.
 *
 * Only the key families written through Store.write alone take part (the
 * others are also written with direct puts, see keys.ts). Every write keeps
 * the frontiers and every transaction's prefetch uses them.
 */
import { prefixOf, SEP } from './keys.js'

/** Key tags (keys.ts) written only through Store.write: log entries, index, certificates, records, mappings, feed. */
const APPEND_TAGS = new Set(['e', 'k', 's', 'r', 'x', 'h'])
/** Range reads of a prefix that found keys after the batch's last one wait this many reads before probing again. */
const PROBE_BACKOFF = 64

export class Frontiers {
  /** prefix → F: no key of the prefix > F exists or is being written. */
  private readonly known = new Map<string, { max: string }>()
  /** prefix → the greatest key of it written since its probe started. */
  private readonly probing = new Map<string, { max: string }>()
  /** prefix → range reads left before it is probed again (its last probe found keys). */
  private readonly backoff = new Map<string, number>()

  /** Whether `key` lies beyond its prefix's frontier: certainly absent. */
  beyond (key: string): boolean {
    if (this.known.size === 0) return false
    const f = this.known.get(prefixOf(key))
    return f !== undefined && key > f.max
  }

  /** Keys being written (a write issued): every frontier they pass moves past them. */
  wrote (writes: Map<string, Uint8Array | undefined>): void {
    if (this.known.size === 0 && this.probing.size === 0) return
    // forEach, not for…of: no iterator result and no [key, value] array per key (until V8 optimises the loop, each is garbage)
    writes.forEach((value, key) => {
      if (value === undefined) return
      const prefix = prefixOf(key)
      const f = this.known.get(prefix)
      if (f !== undefined && key > f.max) f.max = key
      const p = this.probing.size === 0 ? undefined : this.probing.get(prefix)
      if (p !== undefined && key > p.max) p.max = key
    })
  }

  /**
   * Whether to probe `prefix` after a range read now: not when its frontier
   * is known, a probe of it is under way, or a recent probe found keys. When
   * it is, `inFlight` (the writes issued and not yet durable, which the probe
   * may not see) is taken into account; the caller must call `probed`.
   */
  startProbe (prefix: string, inFlight: ReadonlyArray<Map<string, Uint8Array | undefined>>): boolean {
    if (!APPEND_TAGS.has(prefix.slice(0, prefix.indexOf(SEP))) || this.known.has(prefix) || this.probing.has(prefix)) return false
    const wait = this.backoff.get(prefix)
    if (wait !== undefined) {
      if (wait > 1) this.backoff.set(prefix, wait - 1)
      else this.backoff.delete(prefix)
      return false
    }
    let max = ''
    for (const w of inFlight) {
      for (const [key, value] of w) if (value !== undefined && key > max && key.startsWith(prefix)) max = key
    }
    this.probing.set(prefix, { max })
    return true
  }

  /**
   * A probe of what lies after `last` ended: `empty` when it found no key (a
   * failed read passes false). Sets the frontier past `last` and past every
   * key written meanwhile.
   */
  probed (prefix: string, last: string, empty: boolean): void {
    const p = this.probing.get(prefix)
    this.probing.delete(prefix)
    if (p === undefined) return
    if (!empty) {
      this.backoff.set(prefix, PROBE_BACKOFF)
      return
    }
    this.known.set(prefix, { max: p.max > last ? p.max : last })
  }
}
