/** Shapes shared by the benchmark runner and its workloads. */
import type { BenchCluster } from './env.js'

export interface Target {
  op: '>=' | '<='
  value: number
  /** Where the target comes from, when it is not stated as such in the issue. */
  note?: string
}

export interface FigureDef {
  /** Stable key in the JSON, e.g. "bulk.100000.records_per_s". */
  id: string
  workload: string
  label: string
  unit: string
  /** Decimals to print. */
  digits: number
  target?: Target
}

export interface RunResult {
  /** figure id → value of this run */
  values: Record<string, number>
  /** Anything else worth keeping in the JSON (seeds, graph shape, sample counts…). */
  info?: Record<string, unknown>
}

export interface Sizes {
  /** Records of the bulk sync, one pass per entry. */
  bulkN: number[]
  catchupN: number[]
  latencySamples: number
  latencyIntervalMs: number
  chainHops: number
  fanoutNodes: number
  fanoutDegree: number
  fanoutWrites: number
  footprintN: number
  footprintUpdates: number
  /** How long a fresh node idles before its RSS is read. */
  idleSettleMs: number
  /** Rows the application commits in one transaction in the connectors workload. */
  connectorRows: number
}

export interface BenchOptions {
  runs: number
  only?: Set<string>
  large: boolean
  quick: boolean
  /** Directory of the JSON results. */
  out: string
  seed: number
  /** Run every node with --cpu-prof, profiles under this dir. */
  profileDir?: string
  /** --connector-rows: rows of the connectors workload's transaction. */
  connectorRows?: number
  /** --streams: every node carries rules by rule streams (`syncmesh start --streams`). */
  streams?: boolean
}

export interface Context {
  options: BenchOptions
  sizes: Sizes
  /** A progress line on stderr. */
  log: (msg: string) => void
  /** A new set of node processes in a temp dir; killed and deleted after the run, whatever happens. */
  cluster: (label: string) => Promise<BenchCluster>
}

export interface Workload {
  name: string
  title: string
  figures: FigureDef[]
  run: (ctx: Context, run: number) => Promise<RunResult>
}
