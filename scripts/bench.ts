/**
 * `npm run bench`: the syncmesh benchmark suite. Starts real node
 * processes (`syncmesh start`) on 127.0.0.1 in temp dirs, runs each workload
 * several times, prints a table and writes bench-results/<timestamp>.json.
 *
 *   npm run bench                       all workloads, 3 runs each
 *   npm run bench -- --only latency     one workload (repeatable, or a,b)
 *   npm run bench -- --runs 5
 *   npm run bench -- --large            also bulk and catch-up with 1,000,000 records
 *   npm run bench -- --quick            CI-sized smoke run: small sizes, 1 run
 *   npm run bench -- --out DIR          where the JSON goes (default bench-results/)
 *   npm run bench -- --seed N           seed of the fan-out's random graphs (run k uses N + k)
 *   npm run bench -- --streams          every node carries rules by encrypted rule streams (experimental,
 *                                       protocols/sync/streams.md; compare with a run without)
 *   npm run bench -- --profile DIR      run every node with --cpu-prof; profiles in DIR/<cluster>-<node>/
 *                                       (figures measured this way are slower: profiling costs CPU)
 *   SYNCMESH_NODE_LOG_DIR=DIR SYNCMESH_LOG_LEVEL=debug npm run bench -- …
 *                                       every node's log (stderr) appended to DIR/<node>.log
 *
 * Workloads (details and methodology at the top of each file in scripts/bench/workloads/):
 *   bulk       N records on a source, a rule, then the target connects: time to hold all N
 *   latency    single PUTs 20 ms apart: PUT returned on the source → readable on the target (seen on its
 *              changes feed; GET polling as a cross-check); 1 hop and a 4-hop chain
 *   catchup    target offline while N records are written, then restarts: time to catch up, peak RSS
 *   fanout     30 nodes, 3 random links each, 10,000 writes on one: time until all hold them, receptions per entry
 *   footprint  idle RSS; disk per record on a target, and after 5 updates of every record
 *   connectors rows/s from the commit in application table A (SQLite; PostgreSQL) to the commit in
 *              SQLite table B on another node, against the same records through the API
 *              (--connector-rows N: rows in the one transaction, default 100,000)
 *
 * Nodes run from a copy of dist/src taken when the bench starts (see
 * bench/snapshot.ts), so a rebuild during the run cannot change them.
 * Node logs go to memory at level warn (SYNCMESH_LOG_LEVEL overrides) and are
 * printed when a run fails. MB = 10^6 bytes. Targets are checked on the median.
 */
import '../src/polyfill.js'
import { mkdir, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { loadavg } from 'node:os'
import { ROOT, useCli } from './lib/cluster.js'
import { BenchCluster, disposeAll, installCleanup, now } from './bench/env.js'
import { machineCpu, ownCpu } from './bench/proc.js'
import { removeSnapshot, snapshotBuild } from './bench/snapshot.js'
import { gitState, machine, summarise, table } from './bench/report.js'
import type { FigureResult } from './bench/report.js'
import type { BenchOptions, Context, FigureDef, Sizes, Workload } from './bench/types.js'
import { bulkWorkload } from './bench/workloads/bulk.js'
import { catchupWorkload } from './bench/workloads/catchup.js'
import { connectorsWorkload } from './bench/workloads/connectors.js'
import { fanoutWorkload } from './bench/workloads/fanout.js'
import { footprintWorkload } from './bench/workloads/footprint.js'
import { latencyWorkload } from './bench/workloads/latency.js'

const WORKLOADS = ['bulk', 'latency', 'catchup', 'fanout', 'footprint', 'connectors']

const USAGE = `usage: npm run bench -- [--runs N] [--only NAME[,NAME]] [--large] [--quick] [--out DIR] [--seed N] [--profile DIR] [--connector-rows N]
workloads: ${WORKLOADS.join(', ')}`

function parseArgs (argv: string[]): BenchOptions {
  const opts: BenchOptions = { runs: 3, large: false, quick: false, out: join(ROOT, 'bench-results'), seed: 1 }
  let runsGiven = false
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const value = (): string => {
      const v = argv[++i]
      if (v === undefined) throw new Error(`${a} needs a value\n${USAGE}`)
      return v
    }
    const int = (v: string, min: number): number => {
      const n = Number(v)
      if (!Number.isInteger(n) || n < min) throw new Error(`${a} must be an integer ≥ ${min}, got "${v}"`)
      return n
    }
    switch (a) {
      case '--runs': opts.runs = int(value(), 1); runsGiven = true; break
      case '--only':
        opts.only ??= new Set()
        for (const name of value().split(',')) {
          if (!WORKLOADS.includes(name)) throw new Error(`unknown workload "${name}"; choose from ${WORKLOADS.join(', ')}`)
          opts.only.add(name)
        }
        break
      case '--large': opts.large = true; break
      case '--quick': opts.quick = true; break
      case '--out': opts.out = resolve(value()); break
      case '--seed': opts.seed = int(value(), 0); break
      case '--profile': opts.profileDir = resolve(value()); break
      case '--streams': opts.streams = true; break
      case '--connector-rows': opts.connectorRows = int(value(), 1); break
      case '-h': case '--help': process.stdout.write(USAGE + '\n'); process.exit(0); break
      default: throw new Error(`unknown argument "${a}"\n${USAGE}`)
    }
  }
  if (opts.quick && !runsGiven) opts.runs = 1
  return opts
}

function sizesFor (opts: BenchOptions): Sizes {
  if (opts.quick) {
    return { bulkN: [2000], catchupN: [2000], latencySamples: 50, latencyIntervalMs: 20, chainHops: 4, fanoutNodes: 6, fanoutDegree: 2, fanoutWrites: 500, footprintN: 1000, footprintUpdates: 5, idleSettleMs: 1500, connectorRows: opts.connectorRows ?? 2000 }
  }
  return {
    bulkN: opts.large ? [100_000, 1_000_000] : [100_000],
    catchupN: opts.large ? [100_000, 1_000_000] : [100_000],
    latencySamples: 500,
    latencyIntervalMs: 20,
    chainHops: 4,
    fanoutNodes: 30,
    fanoutDegree: 3,
    fanoutWrites: 10_000,
    footprintN: 100_000,
    footprintUpdates: 5,
    idleSettleMs: 5000,
    connectorRows: opts.connectorRows ?? 100_000
  }
}

/** Figures computed from other figures' medians (single value). */
function derivedFigures (sizes: Sizes, results: Map<string, FigureResult>): Array<{ def: FigureDef, value: number }> {
  const out: Array<{ def: FigureDef, value: number }> = []
  const m = (id: string): number => results.get(id)?.median ?? NaN
  const [small, big] = sizes.bulkN
  const c0 = sizes.catchupN[0]
  if (results.has(`catchup.${c0}.records_per_s`) && results.has(`bulk.${small}.records_per_s`)) {
    out.push({ def: { id: 'derived.catchup_vs_bulk', workload: 'catchup', label: `catch-up rate / bulk rate (${c0.toLocaleString('en-US')})`, unit: 'x', digits: 2, target: { op: '>=', value: 0.8, note: '"at the bulk rate", ±20% as for N=1M' } }, value: m(`catchup.${c0}.records_per_s`) / m(`bulk.${small}.records_per_s`) })
  }
  if (big !== undefined && results.has(`bulk.${big}.records_per_s`)) {
    out.push({ def: { id: 'derived.bulk_large_vs_small', workload: 'bulk', label: `rate at ${big.toLocaleString('en-US')} / rate at ${small.toLocaleString('en-US')}`, unit: 'x', digits: 2, target: { op: '>=', value: 0.8, note: 'same rate ±20%' } }, value: m(`bulk.${big}.records_per_s`) / m(`bulk.${small}.records_per_s`) })
  }
  const c1 = sizes.catchupN[1]
  if (c1 !== undefined && results.has(`catchup.${c1}.target_peak_rss_mb`)) {
    out.push({ def: { id: 'derived.catchup_rss_growth', workload: 'catchup', label: `target peak RSS at ${c1.toLocaleString('en-US')} / at ${c0.toLocaleString('en-US')}`, unit: 'x', digits: 2, target: { op: '<=', value: 1.2, note: '"does not grow with N", ±20%' } }, value: m(`catchup.${c1}.target_peak_rss_mb`) / m(`catchup.${c0}.target_peak_rss_mb`) })
    if (results.has(`catchup.${c1}.target_peak_anon_mb`)) out.push({ def: { id: 'derived.catchup_anon_growth', workload: 'catchup', label: `target peak RssAnon at ${c1.toLocaleString('en-US')} / at ${c0.toLocaleString('en-US')}`, unit: 'x', digits: 2 }, value: m(`catchup.${c1}.target_peak_anon_mb`) / m(`catchup.${c0}.target_peak_anon_mb`) })
  }
  return out
}

async function main (): Promise<number> {
  const opts = parseArgs(process.argv.slice(2))
  const sizes = sizesFor(opts)
  const log = (msg: string): void => { process.stderr.write(msg + '\n') }
  installCleanup(log)

  // every node of this bench runs the build as it is now, whatever rebuilds dist/ meanwhile
  const build = await snapshotBuild()
  useCli(build.cli)

  const all: Workload[] = [bulkWorkload(sizes), latencyWorkload(sizes), catchupWorkload(sizes), fanoutWorkload(sizes, opts.seed), footprintWorkload(sizes), connectorsWorkload(sizes)]
  const selected = all.filter(w => opts.only === undefined || opts.only.has(w.name))
  const startedAt = new Date()
  const t0 = now()
  const env = machine()
  const git = gitState()
  log(`syncmesh bench: ${selected.map(w => w.name).join(', ')}; ${opts.runs} run(s) each${opts.quick ? ' (quick sizes)' : ''}${opts.large ? ' (large)' : ''}`)
  log(`machine: ${(env.cpus as { count: number, model: string }).count} × ${(env.cpus as { model: string }).model}, node ${process.version}; load ${loadavg().map(l => l.toFixed(2)).join(' ')}`)

  const defs = new Map<string, FigureDef>()
  const values = new Map<string, number[]>()
  const infos: Record<string, unknown[]> = {}
  const errors: Array<{ workload: string, run: number, error: string }> = []
  const durations: Record<string, number> = {}
  const foreign: Record<string, number[]> = {}

  for (const w of selected) {
    for (const f of w.figures) { defs.set(f.id, f); values.set(f.id, []) }
    infos[w.name] = []
    const tw = now()
    for (let run = 1; run <= opts.runs; run++) {
      log(`\n[${w.name}] run ${run}/${opts.runs}: ${w.title}`)
      const clusters: BenchCluster[] = []
      const ctx: Context = {
        options: opts,
        sizes,
        log,
        cluster: async (label) => {
          const c = await BenchCluster.create(label, { ...(opts.profileDir !== undefined ? { profileDir: join(opts.profileDir, `${w.name}-run${run}`) } : {}), streams: opts.streams === true })
          clusters.push(c)
          return c
        }
      }
      const tr = now()
      const m0 = machineCpu()
      const own0 = ownCpu()
      try {
        const r = await w.run(ctx, run)
        for (const [id, v] of Object.entries(r.values)) values.get(id)?.push(v)
        infos[w.name].push(r.info ?? {})
        log(`  run done in ${((now() - tr) / 1000).toFixed(1)} s`)
      } catch (err) {
        const msg = (err as Error).stack ?? String(err)
        errors.push({ workload: w.name, run, error: (err as Error).message ?? String(err) })
        log(`  FAILED: ${msg}`)
        for (const c of clusters) {
          const tails = c.stderrTails()
          if (tails !== '') log(tails)
        }
      } finally {
        await Promise.all(clusters.map(async c => await c.dispose()))
      }
      // CPU the rest of the machine used meanwhile (everything but this process and its children)
      const m1 = machineCpu()
      const own1 = ownCpu()
      if (m0 !== undefined && m1 !== undefined && own0 !== undefined && own1 !== undefined && m1.total > m0.total) {
        const other = Math.max(0, (m1.busy - m0.busy) - (own1 - own0)) / (m1.total - m0.total)
        ;(foreign[w.name] ??= []).push(other)
        if (other > 0.05) log(`  note: other processes used ${(other * 100).toFixed(0)}% of the machine's CPU during this run; figures may be off`)
      }
    }
    durations[w.name] = (now() - tw) / 1000
  }

  const results: FigureResult[] = []
  const byId = new Map<string, FigureResult>()
  for (const [id, def] of defs) {
    const r = summarise(def, values.get(id) ?? [])
    results.push(r)
    byId.set(id, r)
  }
  for (const { def, value } of derivedFigures(sizes, byId)) {
    defs.set(def.id, def)
    const r = summarise(def, [value], true)
    // place a derived figure after the last figure of its workload
    const at = results.map(x => x.workload).lastIndexOf(def.workload)
    results.splice(at + 1, 0, r)
  }

  const totalS = (now() - t0) / 1000
  const out = {
    startedAt: startedAt.toISOString(),
    durationSeconds: totalS,
    command: `npm run bench${process.argv.length > 2 ? ' -- ' + process.argv.slice(2).join(' ') : ''}`,
    options: { runs: opts.runs, only: opts.only !== undefined ? [...opts.only] : undefined, large: opts.large, quick: opts.quick, seed: opts.seed, profileDir: opts.profileDir, connectorRows: opts.connectorRows, streams: opts.streams === true },
    sizes,
    machine: { ...env, loadavgAtEnd: loadavg() },
    git,
    /** SHA-256 (first 16 hex) of the dist/src .js files the nodes ran. */
    buildHash: build.hash,
    workloadSeconds: durations,
    /** Per workload and run: share of the machine's CPU used by processes other than the bench and its nodes. */
    otherCpuShare: foreign,
    figures: results,
    info: infos,
    errors
  }
  await mkdir(opts.out, { recursive: true })
  const file = join(opts.out, `${startedAt.toISOString().replace(/[:.]/g, '-')}.json`)
  await writeFile(file, JSON.stringify(out, null, 2) + '\n')

  process.stdout.write(`\nsyncmesh bench — ${(env.cpus as { count: number }).count} × ${(env.cpus as { model: string }).model}, ${(Number(env.memoryBytes) / 2 ** 30).toFixed(0)} GiB, node ${process.version}; ${opts.runs} run(s); ${totalS.toFixed(0)} s\n\n`)
  process.stdout.write(table(defs, results) + '\n')
  const busy = Object.entries(foreign).filter(([, xs]) => Math.max(...xs) > 0.05)
  if (busy.length > 0) {
    process.stdout.write(`\nthe machine was not idle: other processes used ${busy.map(([w, xs]) => `${xs.map(x => `${(x * 100).toFixed(0)}%`).join('/')} of the CPU during ${w}`).join(', ')} (per run)\n`)
  }
  if (errors.length > 0) {
    process.stdout.write(`\n${errors.length} run(s) failed:\n${errors.map(e => `  ${e.workload} run ${e.run}: ${e.error}`).join('\n')}\n`)
  }
  process.stdout.write(`\nresults: ${file}\n`)
  return errors.length > 0 ? 1 : 0
}

main()
  .then(async (code) => { await disposeAll(); removeSnapshot(); process.exit(code) })
  .catch(async (err) => {
    process.stderr.write(`${(err as Error).message ?? String(err)}\n`)
    await disposeAll()
    removeSnapshot()
    process.exit(2)
  })
