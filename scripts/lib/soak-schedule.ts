/**
 * The soak's seeded fault schedule: the same seed, duration and node count
 * always give the same list of faults, whatever the machine or the network
 * mode (a fault the mode cannot inject, e.g. a slow link without `tc`, is
 * kept in the schedule and reported as skipped).
 */

/** mulberry32: a small, fast, seedable PRNG; returns floats in [0, 1). */
export function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export type FaultKind = 'kill' | 'kill-import' | 'split' | 'isolate' | 'pause' | 'slow'

export interface Fault {
  /** Seconds after writes begin. */
  at: number
  kind: FaultKind
  /** How long the fault lasts (s): until the restart, the heal, the SIGCONT. */
  dur: number
  /** The node (index) a kill, import, isolation, pause or slow link hits. */
  node?: number
  /** split: the nodes (indexes) cut off from the rest. */
  side?: number[]
  /** kill-import: ms after the import starts that the node is killed. */
  killAfterMs?: number
}

export interface Schedule {
  seed: number
  duration: number
  nodes: number
  faults: Fault[]
}

const KINDS: FaultKind[] = ['kill', 'kill-import', 'split', 'isolate', 'pause', 'slow']

function int (rand: () => number, lo: number, hi: number): number {
  return lo + Math.floor(rand() * (hi - lo + 1))
}

/**
 * Faults one after another (each heals before the next starts), from 5 s
 * after writes begin until 3 s before the end. Every kind appears once
 * before any repeats (in a seeded order), so a short run still sees each.
 */
export function makeSchedule (seed: number, duration: number, nodes: number): Schedule {
  const rand = prng(seed)
  const faults: Fault[] = []
  let t = 5
  const end = duration - 3
  let deck: FaultKind[] = []
  while (t < end - 4) {
    if (deck.length === 0) {
      deck = [...KINDS]
      for (let i = deck.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [deck[i], deck[j]] = [deck[j], deck[i]]
      }
    }
    const kind = deck.shift() as FaultKind
    const room = end - t
    let dur: number
    const f: Fault = { at: t, kind, dur: 0 }
    switch (kind) {
      case 'kill':
        dur = int(rand, 1, 5)
        f.node = int(rand, 0, nodes - 1)
        break
      case 'kill-import':
        dur = int(rand, 1, 5)
        f.node = int(rand, 0, nodes - 1)
        f.killAfterMs = int(rand, 150, 1500)
        break
      case 'split': {
        dur = int(rand, 10, 30)
        const size = int(rand, 1, Math.floor(nodes / 2))
        const all = Array.from({ length: nodes }, (_, i) => i)
        const side: number[] = []
        while (side.length < size) side.push(all.splice(Math.floor(rand() * all.length), 1)[0])
        f.side = side.sort((a, b) => a - b)
        break
      }
      case 'isolate':
        dur = int(rand, 10, 30)
        f.node = int(rand, 0, nodes - 1)
        break
      case 'pause':
        dur = int(rand, 5, 20)
        f.node = int(rand, 0, nodes - 1)
        break
      case 'slow':
        dur = int(rand, 10, 30)
        f.node = int(rand, 0, nodes - 1)
        break
    }
    f.dur = Math.max(1, Math.min(dur, Math.floor(room)))
    faults.push(f)
    t += f.dur + int(rand, 2, 8)
  }
  return { seed, duration, nodes, faults }
}

/** One line per fault, e.g. "12s split [1,3] 17s". */
export function describeFault (f: Fault): string {
  const who = f.side !== undefined ? `[${f.side.join(',')}]` : `n${String(f.node)}`
  return `${f.at}s ${f.kind} ${who} ${f.dur}s${f.killAfterMs !== undefined ? ` (kill ${f.killAfterMs} ms into an import)` : ''}`
}
