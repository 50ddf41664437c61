/**
 * Version vector: for each origin, the highest seq held contiguously.
 * "Contiguously" counts entries removed by compaction as held: a node at
 * seq N for an origin holds that origin's state as of its Nth write.
 */
export class VersionVector {
  private readonly seqs = new Map<string, number>()

  static from (entries: Iterable<readonly [string, number]> | Iterable<{ origin: string, seq: number }>): VersionVector {
    const v = new VersionVector()
    for (const e of entries as Iterable<unknown>) {
      if (Array.isArray(e)) v.advance(e[0] as string, e[1] as number)
      else {
        const o = e as { origin: string, seq: number }
        v.advance(o.origin, o.seq)
      }
    }
    return v
  }

  get (origin: string): number {
    return this.seqs.get(origin) ?? 0
  }

  /** Raise origin to seq; never lowers it. Returns true when it changed. */
  advance (origin: string, seq: number): boolean {
    if (seq > this.get(origin)) {
      this.seqs.set(origin, seq)
      return true
    }
    return false
  }

  /** Set origin to exactly seq (used when a peer restates its whole vector). */
  set (origin: string, seq: number): void {
    if (seq <= 0) this.seqs.delete(origin)
    else this.seqs.set(origin, seq)
  }

  origins (): IterableIterator<string> {
    return this.seqs.keys()
  }

  entries (): Array<{ origin: string, seq: number }> {
    return [...this.seqs].map(([origin, seq]) => ({ origin, seq }))
  }

  get size (): number {
    return this.seqs.size
  }

  /** Origins where this vector is ahead of `other`, with the range `other` lacks. */
  missingFrom (other: VersionVector): Array<{ origin: string, from: number, to: number }> {
    const out: Array<{ origin: string, from: number, to: number }> = []
    for (const [origin, seq] of this.seqs) {
      const theirs = other.get(origin)
      if (seq > theirs) out.push({ origin, from: theirs, to: seq })
    }
    return out
  }

  /** True when this vector holds at least everything `other` holds. */
  covers (other: VersionVector): boolean {
    for (const [origin, seq] of other.seqs) {
      if (this.get(origin) < seq) return false
    }
    return true
  }

  /** Pointwise maximum, in place. */
  merge (other: VersionVector): void {
    for (const [origin, seq] of other.seqs) this.advance(origin, seq)
  }

  clone (): VersionVector {
    const v = new VersionVector()
    for (const [o, s] of this.seqs) v.seqs.set(o, s)
    return v
  }

  toJSON (): Record<string, number> {
    return Object.fromEntries(this.seqs)
  }
}
