/**
 * 5. Footprint.
 *  - Idle RSS: a fresh node (no data, no peers) started alone; VmRSS read
 *    after it idled for a few seconds (median of 5 readings 200 ms apart).
 *  - Disk: source → target with a rule (footprint → footprint), N records
 *    imported on the source and applied on the target; the target is then
 *    stopped cleanly (SIGTERM) and the bytes under its data dir's db/ are
 *    counted (sum of file sizes, like `du -sb`; `du -s` blocks are kept in
 *    the JSON). Bytes per record, and the ratio to the records' JSON bytes
 *    (the values as JSON, ~250 bytes each). The target is started again,
 *    every record is updated `updates` times on the source (same size,
 *    new content, one import per round), and once the target has applied
 *    them all its db/ is measured right away (informational: LevelDB still
 *    holds the replaced versions, and the write-ahead log), then again once
 *    the node compacted itself when idle and was stopped: growth = after /
 *    before. The target's RSS when idle holding N records is reported too.
 */
import type { NodeProcess } from '../../lib/cluster.js'
import { IDLE_COMPACTION_MIN_DELETES, IDLE_COMPACTION_SMALL_BYTES, IDLE_COMPACTION_SMALL_MIN_DELETES } from '../../../src/store/db.js'
import { ndjsonChunks, newTally, recordId, recordValue } from '../data.js'
import type { BenchCluster } from '../env.js'
import { applied, authenticatedPeers, now, logsOf, ruleActive, sleep, until } from '../env.js'
import { dirBytes, readMem } from '../proc.js'
import { median } from '../stats.js'
import type { FigureDef, Workload } from '../types.js'
import { join } from 'node:path'
import { fmtN } from './util.js'

export function footprintWorkload (sizes: { footprintN: number, footprintUpdates: number, idleSettleMs: number }): Workload {
  const w = 'footprint'
  const n = sizes.footprintN
  const u = sizes.footprintUpdates
  const figures: FigureDef[] = [
    { id: 'footprint.idle_rss_mb', workload: w, label: 'idle RSS, fresh node', unit: 'MB', digits: 0, target: { op: '<=', value: 120 } },
    { id: 'footprint.loaded_idle_rss_mb', workload: w, label: `idle RSS, target holding ${fmtN(n)} records`, unit: 'MB', digits: 0 },
    { id: 'footprint.disk_bytes_per_record', workload: w, label: `target disk after ${fmtN(n)} records`, unit: 'B/rec', digits: 0 },
    { id: 'footprint.disk_vs_json', workload: w, label: `target disk / records' JSON bytes after ${fmtN(n)}`, unit: 'x', digits: 2, target: { op: '<=', value: 2 } },
    { id: 'footprint.updated_disk_bytes_per_record', workload: w, label: `target disk after ${u} updates of each record`, unit: 'B/rec', digits: 0 },
    { id: 'footprint.update_growth_before_compaction', workload: w, label: `disk growth after ${u} updates of each record, right after`, unit: 'x', digits: 2 },
    { id: 'footprint.idle_compaction_s', workload: w, label: 'idle compaction done, after the sync finished', unit: 's', digits: 1 },
    { id: 'footprint.update_growth', workload: w, label: `disk growth after ${u} updates of each record, after the idle compaction`, unit: 'x', digits: 2, target: { op: '<=', value: 1.05, note: '"no growth", with 5% for LevelDB file granularity' } },
    { id: 'footprint.updates_sync_records_per_s', workload: w, label: 'updates: source import + sync to the target, end to end', unit: 'rec/s', digits: 0 },
    { id: 'footprint.updates_import_records_per_s', workload: w, label: 'updates: import on the source (target connected)', unit: 'rec/s', digits: 0 },
    { id: 'footprint.updates_target_lag_s', workload: w, label: 'updates: target done after the last import', unit: 's', digits: 1 }
  ]
  return {
    name: 'footprint',
    title: 'Footprint: memory and disk',
    figures,
    async run (ctx) {
      const values: Record<string, number> = {}
      const info: Record<string, unknown> = {}

      {
        const cl = await ctx.cluster('idle')
        const idle = await cl.add('idle')
        await cl.start(idle)
        values['footprint.idle_rss_mb'] = await idleRss(idle, sizes.idleSettleMs) / 1e6
        ctx.log(`    idle RSS of a fresh node: ${values['footprint.idle_rss_mb'].toFixed(0)} MB`)
        await cl.dispose()
      }

      const cl = await ctx.cluster('footprint')
      const source = await cl.add('source')
      const target = await cl.add('target')
      await Promise.all([cl.start(source), cl.start(target)])
      const ruleId = await cl.addRule(source, { from: { platform: 'source', collection: 'footprint' }, to: { platform: 'target', collection: 'footprint' } })
      await target.addPeer(source.multiaddr)
      await waitLinked(cl, target, ruleId, 0)

      const tally = newTally()
      if (await source.importStream('footprint', ndjsonChunks(n, { tally })) !== n) throw new Error('import incomplete')
      await waitApplied(cl, target, ruleId, n)
      values['footprint.loaded_idle_rss_mb'] = await idleRss(target, Math.min(3000, sizes.idleSettleMs)) / 1e6
      await target.stop()
      const first = await dirBytes(join(target.dir, 'db'))
      values['footprint.disk_bytes_per_record'] = first.apparent / n
      values['footprint.disk_vs_json'] = first.apparent / tally.valueBytes
      ctx.log(`    target db/ after ${fmtN(n)} records: ${(first.apparent / 1e6).toFixed(1)} MB, ${(first.apparent / n).toFixed(0)} B/record, ${(first.apparent / tally.valueBytes).toFixed(2)}× the JSON`)

      await cl.start(target)
      await waitLinked(cl, target, ruleId, n)
      const t0 = now()
      for (let rev = 1; rev <= u; rev++) {
        if (await source.importStream('footprint', ndjsonChunks(n, { rev })) !== n) throw new Error('update import incomplete')
      }
      const tImported = now()
      // the source's log is compacted as it is written: a lagging target may
      // receive only the newest revision, so wait on the log position, not on `applied`
      // (with --streams, of the rule's stream: records go nowhere else)
      const head = logsOf(await cl.status(source), source.peerId)
      await until(async () => {
        const held = logsOf(await cl.status(target), source.peerId)
        return [...head].every(([log, seq]) => (held.get(log) ?? 0) >= seq)
      }, 'the target to receive every update', Math.max(120_000, n * u * 2), 100)
      const tDone = now()
      const check = await target.get('footprint', recordId('r', n - 1))
      if (JSON.stringify(check) !== JSON.stringify(recordValue(n - 1, u))) throw new Error(`the target's last record is ${JSON.stringify(check)}, expected revision ${u}`)
      values['footprint.updates_import_records_per_s'] = n * u / ((tImported - t0) / 1000)
      values['footprint.updates_target_lag_s'] = (tDone - tImported) / 1000
      values['footprint.updates_sync_records_per_s'] = n * u / ((tDone - t0) / 1000)
      ctx.log(`    ${u} × ${fmtN(n)} updates: imported on the source at ${fmtN(values['footprint.updates_import_records_per_s'])} rec/s (target connected); the target was done ${values['footprint.updates_target_lag_s'].toFixed(1)} s after the last import`)
      // right away, LevelDB still holds the replaced versions (and the write-ahead log); the node
      // compacts once idle (Store.startCompacting: 10 s without writes after ≥ 50,000 deletions, or ≥ 1,000 in a
      // database of at most 64 MiB)
      const busy = await dirBytes(join(target.dir, 'db'))
      values['footprint.update_growth_before_compaction'] = busy.apparent / first.apparent
      const tIdle = now()
      // every update deletes at least the log entry it replaces; the node compacts after
      // IDLE_COMPACTION_MIN_DELETES deletions, or after IDLE_COMPACTION_SMALL_MIN_DELETES in a small database
      // (a --quick run's); fewer get no compaction
      if (n * u >= IDLE_COMPACTION_MIN_DELETES || (n * u >= IDLE_COMPACTION_SMALL_MIN_DELETES && busy.apparent <= IDLE_COMPACTION_SMALL_BYTES)) {
        await until(async () => ((await cl.status(target)).database?.compactions ?? 0) >= 1, 'the target to compact its database when idle', 90_000, 500)
      }
      values['footprint.idle_compaction_s'] = (now() - tIdle) / 1000
      await target.stop()
      const second = await dirBytes(join(target.dir, 'db'))
      values['footprint.updated_disk_bytes_per_record'] = second.apparent / n
      values['footprint.update_growth'] = second.apparent / first.apparent
      ctx.log(`    target db/ after ${u} updates of each: ${(busy.apparent / 1e6).toFixed(1)} MB right after (${values['footprint.update_growth_before_compaction'].toFixed(2)}×), ${(second.apparent / 1e6).toFixed(1)} MB after the idle compaction ${values['footprint.idle_compaction_s'].toFixed(1)} s later (${(second.apparent / first.apparent).toFixed(2)}×)`)
      info.valueBytes = tally.valueBytes
      info.diskFirst = first
      info.diskAfterUpdates = second
      return { values, info }
    }
  }
}

async function idleRss (node: NodeProcess, settleMs: number): Promise<number> {
  await sleep(settleMs)
  const readings: number[] = []
  for (let i = 0; i < 5; i++) {
    const m = readMem(node.pid)
    if (m !== undefined) readings.push(m.rss)
    await sleep(200)
  }
  return median(readings)
}

async function waitLinked (cl: BenchCluster, target: NodeProcess, ruleId: string, appliedAtLeast: number): Promise<void> {
  await until(async () => {
    const s = await cl.status(target)
    return ruleActive(s, ruleId) && authenticatedPeers(s) === 1 && s.caughtUp && applied(s, ruleId) >= appliedAtLeast
  }, 'the target to connect and know the rule', 60_000, 100)
}

async function waitApplied (cl: BenchCluster, target: NodeProcess, ruleId: string, count: number): Promise<void> {
  await until(async () => applied(await cl.status(target), ruleId) >= count, `the target to apply ${count} changes`, Math.max(120_000, count * 2), 100)
}
