/**
 * 3. Catch-up. Source and target connected with a rule source:catch →
 * target:catch; the target stops (SIGTERM, clean); N records are imported
 * into the source; the target starts again and redials the source (a
 * persisted peer). Timed from the target's ready line (process up,
 * listening) until its status shows the rule applied to all N; the time
 * from spawn to ready is reported apart.
 *
 * Peak RSS of both processes over the catch-up window (spawn of the target
 * to caught up): VmRSS sampled every 100 ms, and VmHWM (the kernel's peak,
 * reset on the source with /proc/PID/clear_refs when the window opens), the
 * larger of the two. Also the peak of the sampled RssAnon: RSS without the
 * file-backed pages, which LevelDB's mmapped tables add as more data is read.
 */
import { ndjsonChunks } from '../data.js'
import { applied, authenticatedPeers, now, ruleActive, until } from '../env.js'
import { cpuSeconds, resetPeak, RssSampler } from '../proc.js'
import type { Context, FigureDef, RunResult, Workload } from '../types.js'
import { fmtN } from './util.js'

export function catchupWorkload (sizes: { catchupN: number[] }): Workload {
  const figures: FigureDef[] = []
  for (const n of sizes.catchupN) {
    const p = `catchup.${n}`
    const w = 'catchup'
    figures.push(
      { id: `${p}.records_per_s`, workload: w, label: `${fmtN(n)} records: catch-up rate`, unit: 'rec/s', digits: 0, target: { op: '>=', value: 50_000, note: 'the bulk target' } },
      { id: `${p}.seconds`, workload: w, label: `${fmtN(n)} records: ready → caught up`, unit: 's', digits: 2 },
      { id: `${p}.restart_s`, workload: w, label: `${fmtN(n)} records: target spawn → ready`, unit: 's', digits: 2 },
      { id: `${p}.target_peak_rss_mb`, workload: w, label: `${fmtN(n)} records: target peak RSS`, unit: 'MB', digits: 0, target: { op: '<=', value: 250 } },
      { id: `${p}.source_peak_rss_mb`, workload: w, label: `${fmtN(n)} records: source peak RSS`, unit: 'MB', digits: 0, target: { op: '<=', value: 250 } },
      { id: `${p}.target_peak_anon_mb`, workload: w, label: `${fmtN(n)} records: target peak RssAnon (RSS less mmapped files)`, unit: 'MB', digits: 0 },
      { id: `${p}.source_peak_anon_mb`, workload: w, label: `${fmtN(n)} records: source peak RssAnon`, unit: 'MB', digits: 0 },
      { id: `${p}.source_cpu_pct`, workload: w, label: `${fmtN(n)} records: source CPU while catching up`, unit: '% core', digits: 0 },
      { id: `${p}.target_cpu_pct`, workload: w, label: `${fmtN(n)} records: target CPU while catching up`, unit: '% core', digits: 0 }
    )
  }
  return {
    name: 'catchup',
    title: 'Catch-up after being offline',
    figures,
    async run (ctx) {
      const out: RunResult = { values: {} }
      for (const n of sizes.catchupN) Object.assign(out.values, (await catchupOnce(ctx, n)).values)
      return out
    }
  }
}

async function catchupOnce (ctx: Context, n: number): Promise<RunResult> {
  const p = `catchup.${n}`
  const cl = await ctx.cluster('catchup')
  const source = await cl.add('source')
  const target = await cl.add('target')
  await Promise.all([cl.start(source), cl.start(target)])
  const ruleId = await cl.addRule(source, { from: { platform: 'source', collection: 'catch' }, to: { platform: 'target', collection: 'catch' } })
  await target.addPeer(source.multiaddr)
  await cl.client(source).put('catch', 'before', { hello: 'world' })
  await until(async () => {
    const s = await cl.status(target)
    return ruleActive(s, ruleId) && authenticatedPeers(s) === 1 && applied(s, ruleId) >= 1 && s.caughtUp
  }, 'the target to connect and apply the rule', 60_000, 100)
  const before = applied(await cl.status(target), ruleId)

  await target.stop()
  const ti = now()
  const imported = await source.importStream('catch', ndjsonChunks(n))
  if (imported !== n) throw new Error(`the source imported ${imported} of ${n} records`)
  ctx.log(`    target offline; imported ${fmtN(n)} records into the source in ${((now() - ti) / 1000).toFixed(1)} s`)

  const sampler = new RssSampler()
  sampler.track('source', () => source.pid)
  sampler.track('target', () => target.pid)
  resetPeak(source.pid)
  sampler.start(100)
  const cpuSource0 = cpuSeconds(source.pid) ?? NaN
  const tSpawn = now()
  // the sampler looks the pid up at every sample: it follows the target from its spawn
  await cl.start(target)
  const tReady = now()
  const tc = cl.client(target)
  await until(async () => applied(await tc.status(), ruleId) >= before + n, `the target to catch up ${n} records`, Math.max(120_000, n * 2), 50)
  const tDone = now()
  const cpuTarget = cpuSeconds(target.pid) ?? NaN
  const cpuSource1 = cpuSeconds(source.pid) ?? NaN
  const { peak, anonPeak } = sampler.stop()
  const seconds = (tDone - tReady) / 1000
  ctx.log(`    caught up ${fmtN(n)} in ${seconds.toFixed(2)} s after ready (${fmtN(n / seconds)} rec/s); peak RSS source ${((peak.get('source') ?? 0) / 1e6).toFixed(0)} MB, target ${((peak.get('target') ?? 0) / 1e6).toFixed(0)} MB`)
  return {
    values: {
      [`${p}.records_per_s`]: n / seconds,
      [`${p}.seconds`]: seconds,
      [`${p}.restart_s`]: (tReady - tSpawn) / 1000,
      [`${p}.target_peak_rss_mb`]: (peak.get('target') ?? NaN) / 1e6,
      [`${p}.source_peak_rss_mb`]: (peak.get('source') ?? NaN) / 1e6,
      [`${p}.target_peak_anon_mb`]: (anonPeak.get('target') ?? NaN) / 1e6,
      [`${p}.source_peak_anon_mb`]: (anonPeak.get('source') ?? NaN) / 1e6,
      [`${p}.source_cpu_pct`]: (cpuSource1 - cpuSource0) / ((tDone - tSpawn) / 1000) * 100,
      // the target's whole life is the window: its CPU from spawn
      [`${p}.target_cpu_pct`]: cpuTarget / ((tDone - tSpawn) / 1000) * 100
    }
  }
}
