/**
 * 1. Bulk: the source holds N records (imported through the streamed NDJSON
 * endpoint before the clock starts), then a rule source:bulk → target:bulk is
 * added, then the target connects (peer add). Timed from the peer add until
 * the target's status shows the rule applied to all N records (polled every
 * 50 ms); the record count is then verified once by listing.
 *
 * The rule is added after the data, as when a new target is attached to an
 * existing source: the target receives the source's log and applies it
 * through the rule's backfill (the rule entry is the last of the log).
 */
import { recordId, recordValue, ndjsonChunks, newTally } from '../data.js'
import { applied, now, until } from '../env.js'
import { cpuSeconds, resetPeak, RssSampler } from '../proc.js'
import type { Context, FigureDef, RunResult, Workload } from '../types.js'
import { fmtN } from './util.js'

export function bulkWorkload (sizes: { bulkN: number[] }): Workload {
  const figures: FigureDef[] = []
  for (const n of sizes.bulkN) {
    const p = `bulk.${n}`
    const w = 'bulk'
    figures.push(
      { id: `${p}.records_per_s`, workload: w, label: `${fmtN(n)} records: sync rate`, unit: 'rec/s', digits: 0, target: { op: '>=', value: 50_000 } },
      { id: `${p}.mb_per_s`, workload: w, label: `${fmtN(n)} records: sync rate (value JSON bytes)`, unit: 'MB/s', digits: 1 },
      { id: `${p}.seconds`, workload: w, label: `${fmtN(n)} records: time to sync`, unit: 's', digits: 2 },
      { id: `${p}.import_records_per_s`, workload: w, label: `${fmtN(n)} records: import into the source (local writes)`, unit: 'rec/s', digits: 0 },
      { id: `${p}.source_cpu_pct`, workload: w, label: `${fmtN(n)} records: source CPU during sync`, unit: '% core', digits: 0 },
      { id: `${p}.target_cpu_pct`, workload: w, label: `${fmtN(n)} records: target CPU during sync`, unit: '% core', digits: 0 },
      { id: `${p}.target_writes_per_record`, workload: w, label: `${fmtN(n)} records: LevelDB keys the target wrote per record (puts and deletes)`, unit: 'keys', digits: 2 },
      { id: `${p}.target_bytes_per_record`, workload: w, label: `${fmtN(n)} records: bytes the target gave LevelDB per record`, unit: 'B', digits: 0 },
      { id: `${p}.target_peak_rss_mb`, workload: w, label: `${fmtN(n)} records: target peak RSS during sync`, unit: 'MB', digits: 0 },
      { id: `${p}.target_peak_anon_mb`, workload: w, label: `${fmtN(n)} records: target peak RssAnon during sync`, unit: 'MB', digits: 0 }
    )
  }
  return {
    name: 'bulk',
    title: 'Bulk sync to a newly connected target',
    figures,
    async run (ctx, _run) {
      const out: RunResult = { values: {}, info: {} }
      for (const n of sizes.bulkN) {
        const r = await bulkOnce(ctx, n)
        Object.assign(out.values, r.values)
        Object.assign(out.info ?? {}, r.info)
      }
      return out
    }
  }
}

async function bulkOnce (ctx: Context, n: number): Promise<RunResult> {
  const p = `bulk.${n}`
  const cl = await ctx.cluster('bulk')
  const source = await cl.add('source')
  const target = await cl.add('target')
  await Promise.all([cl.start(source), cl.start(target)])

  const tally = newTally()
  const ti = now()
  const imported = await source.importStream('bulk', ndjsonChunks(n, { tally }))
  const importS = (now() - ti) / 1000
  if (imported !== n) throw new Error(`the source imported ${imported} of ${n} records`)
  ctx.log(`    imported ${fmtN(n)} records into the source in ${importS.toFixed(1)} s`)

  const ruleId = await cl.addRule(source, { from: { platform: 'source', collection: 'bulk' }, to: { platform: 'target', collection: 'bulk' } })
  const tc = cl.client(target)

  const sampler = new RssSampler()
  sampler.track('target', () => target.pid)
  resetPeak(target.pid)
  const w0 = (await tc.status()).database?.written
  const cpu0 = { s: cpuSeconds(source.pid) ?? NaN, t: cpuSeconds(target.pid) ?? NaN }
  sampler.start(100)
  const t0 = now()
  await target.addPeer(source.multiaddr)
  await until(async () => applied(await tc.status(), ruleId) >= n, `the target to apply ${n} records`, Math.max(120_000, n * 2), 50)
  const seconds = (now() - t0) / 1000
  const cpu1 = { s: cpuSeconds(source.pid) ?? NaN, t: cpuSeconds(target.pid) ?? NaN }
  const { peak, anonPeak } = sampler.stop()
  const w1 = (await tc.status()).database?.written

  // verify once: every record is there, and a sample of values is right
  const count = await target.count('bulk')
  if (count !== n) throw new Error(`the target holds ${count} records, expected ${n}`)
  for (const i of [0, Math.floor(n / 2), n - 1]) {
    const v = await target.get('bulk', recordId('r', i))
    if (JSON.stringify(v) !== JSON.stringify(recordValue(i))) throw new Error(`record ${recordId('r', i)} on the target is ${JSON.stringify(v)}`)
  }
  ctx.log(`    target holds all ${fmtN(n)} after ${seconds.toFixed(2)} s (${fmtN(Math.round(n / seconds))} rec/s)`)

  return {
    values: {
      [`${p}.records_per_s`]: n / seconds,
      [`${p}.mb_per_s`]: tally.valueBytes / 1e6 / seconds,
      [`${p}.seconds`]: seconds,
      [`${p}.import_records_per_s`]: n / importS,
      [`${p}.source_cpu_pct`]: (cpu1.s - cpu0.s) / seconds * 100,
      [`${p}.target_cpu_pct`]: (cpu1.t - cpu0.t) / seconds * 100,
      [`${p}.target_writes_per_record`]: w0 !== undefined && w1 !== undefined ? (w1.puts + w1.deletes - w0.puts - w0.deletes) / n : NaN,
      [`${p}.target_bytes_per_record`]: w0 !== undefined && w1 !== undefined ? (w1.bytes - w0.bytes) / n : NaN,
      [`${p}.target_peak_rss_mb`]: (peak.get('target') ?? NaN) / 1e6,
      [`${p}.target_peak_anon_mb`]: (anonPeak.get('target') ?? NaN) / 1e6
    },
    info: { [`${p}.value_bytes`]: tally.valueBytes, [`${p}.ndjson_bytes`]: tally.bodyBytes }
  }
}
