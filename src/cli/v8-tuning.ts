/**
 * V8 settings the daemon (`syncmesh start`) gives itself at start. Only the
 * daemon does this: the library leaves its host's V8 alone. A setting the
 * operator gave (node flags, NODE_OPTIONS) is left as given. Both flags
 * below are read by V8 as it goes (at every GC; whenever a function's
 * budget is reset), so setting them at start works, unlike the sizes of the
 * heap's spaces, which are fixed once the process has started.
 */
import v8 from 'node:v8'

/**
 * V8 grows its heap up to 4× what was live after the last full GC when the
 * machine has plenty of memory, so a node syncing a big backlog (a high
 * allocation rate, ~40 MB live) reached ~120 MB of heap and ~300 MB RSS.
 * Growing by 30% keeps the same live data at ~70 MB of heap and ~190 MB RSS
 * for no measured loss of speed (`npm run profile:sync -- --mem`: 14.4k vs
 * 13.6k rec/s, 101 vs 93 µs CPU per record).
 */
export const HEAP_GROWING_PERCENT = 30

/**
 * How much bytecode a function runs before V8 considers optimising it: 4×
 * Node 20's default (67,584). A node's work comes in bursts over many code
 * paths (a batch to verify, store, apply and forward), and with the default
 * V8 compiles each of them with its optimising compiler soon after the burst
 * begins, on the cores the node itself needs. With 4×, hot code is still
 * optimised, a little later, and lukewarm code is not (the measurements are
 * in BENCHMARKS.md and in the commit that chose the factor).
 */
export const INTERRUPT_BUDGET = 4 * 67_584

const SETTINGS: Array<{ given: RegExp, flag: string }> = [
  { given: /heap-growing-percent|heap_growing_percent|max-old-space-size|max_old_space_size/, flag: `--heap-growing-percent=${HEAP_GROWING_PERCENT}` },
  { given: /interrupt-budget|interrupt_budget/, flag: `--interrupt-budget=${INTERRUPT_BUDGET}` }
]

/** The V8 flags the daemon sets, given the node flags and NODE_OPTIONS it was started with. */
export function v8Tuning (given: string): string[] {
  return SETTINGS.filter(s => !s.given.test(given)).map(s => s.flag)
}

/** Apply v8Tuning to this process. */
export function tuneV8 (): void {
  const given = [...process.execArgv, process.env.NODE_OPTIONS ?? ''].join(' ')
  for (const flag of v8Tuning(given)) v8.setFlagsFromString(flag)
}
