/**
 * `npm run profile:sync [-- --records N]`: one bulk sync between two real
 * node processes, both under `node --cpu-prof`, then the share of CPU time
 * spent signing (source) and verifying (target) signed runs, from the same
 * run's profiles. `--top` prints the functions with the most self time;
 * `--keep` keeps the .cpuprofile files (open them in Chrome DevTools);
 * `--threads` prints the CPU time of each of the target's threads.
 * `--gc` runs the target with `--trace-gc-nvp` and reports its collections
 * during the sync: young-generation collections (scavenges) count what it
 * allocated, MB promoted what outlived them, mark-compacts the old
 * generation's cost. These counts vary little between runs, unlike times on
 * a shared machine: compare builds by them.
 */
import { readFileSync, statSync } from 'node:fs'
import { mkdir, readdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { NodeProcess, tempDir, waitFor } from './lib/cluster.js'
import { cpuSeconds, dirBytes, threadCpuSeconds } from './bench/proc.js'

interface ProfileNode { id: number, callFrame: { functionName: string, url: string }, children?: number[], hitCount?: number }
interface Profile { nodes: ProfileNode[], samples: number[], timeDeltas: number[], startTime: number, endTime: number }

const args = process.argv.slice(2)
const N = Number(args[args.indexOf('--records') + 1] ?? NaN) || 100_000
const KEY = 'profile-key-0123456789abcdef0123456789'

/** Share of samples whose stack contains one of `names` (inclusive time). */
function inclusiveShare (p: Profile, names: Set<string>, sourceHint: string): number {
  const parent = new Map<number, number>()
  const byId = new Map<number, ProfileNode>()
  for (const n of p.nodes) {
    byId.set(n.id, n)
    for (const c of n.children ?? []) parent.set(c, n.id)
  }
  const memo = new Map<number, boolean>()
  const inside = (id: number): boolean => {
    const m = memo.get(id)
    if (m !== undefined) return m
    const n = byId.get(id)
    let r = n !== undefined && names.has(n.callFrame.functionName) && n.callFrame.url.includes(sourceHint)
    if (!r) {
      const up = parent.get(id)
      r = up !== undefined && inside(up)
    }
    memo.set(id, r)
    return r
  }
  let total = 0
  let hit = 0
  const idle = new Set(['(idle)', '(program)', '(garbage collector)'])
  for (let i = 0; i < p.samples.length; i++) {
    const n = byId.get(p.samples[i])
    const dt = p.timeDeltas[i] ?? 0
    if (n === undefined || n.callFrame.functionName === '(idle)') continue
    if (!idle.has(n.callFrame.functionName) || n.callFrame.functionName === '(garbage collector)') total += dt
    if (inside(p.samples[i])) hit += dt
  }
  return total === 0 ? 0 : hit / total
}

/**
 * The target's collections in `--trace-gc-nvp` output (one line per
 * collection: `gc=s` a scavenge, `gc=mc` a mark-compact), for `--gc`:
 * what scavenges promoted to the old generation, and the pauses of the
 * JavaScript thread for all of them.
 */
function gcDuring (trace: string): { scavenges: number, markCompacts: number, promotedMB: number, pauseMs: number } {
  const out = { scavenges: 0, markCompacts: 0, promotedMB: 0, pauseMs: 0 }
  for (const line of trace.split('\n')) {
    const kind = / gc=(\w+) /.exec(line)?.[1]
    if (kind === undefined) continue
    if (kind === 's') {
      out.scavenges++
      out.promotedMB += Number(/ promoted=(\d+)/.exec(line)?.[1] ?? 0) / 1e6
    } else if (kind === 'mc' || kind === 'mmc') {
      out.markCompacts++
    }
    out.pauseMs += Number(/ pause=([\d.]+)/.exec(line)?.[1] ?? 0)
  }
  out.promotedMB = Math.round(out.promotedMB)
  out.pauseMs = Math.round(out.pauseMs)
  return out
}

/** The functions with the most self time, for `--top`. */
function topSelf (p: Profile, n: number): string[] {
  const byId = new Map(p.nodes.map(x => [x.id, x]))
  const self = new Map<string, number>()
  let total = 0
  for (let i = 0; i < p.samples.length; i++) {
    const node = byId.get(p.samples[i])
    if (node === undefined || node.callFrame.functionName === '(idle)') continue
    const dt = p.timeDeltas[i] ?? 0
    total += dt
    const url = node.callFrame.url.replace(/^.*node_modules\//, '').replace(/^.*\/dist\//, '')
    const key = `${node.callFrame.functionName || '(anonymous)'} ${url}`
    self.set(key, (self.get(key) ?? 0) + dt)
  }
  return [...self].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, v]) => `${(v / total * 100).toFixed(1).padStart(5)}%  ${k}`)
}

const EMPTY_PROFILE: Profile = { nodes: [], samples: [], timeDeltas: [], startTime: 0, endTime: 0 }

async function latestProfile (dir: string): Promise<Profile> {
  const files = (await readdir(dir)).filter(f => f.endsWith('.cpuprofile')).sort()
  return JSON.parse(await readFile(join(dir, files[files.length - 1]), 'utf8')) as Profile
}

function ndjson (n: number, rev = 0): Readable {
  let i = 0
  const filler = 'lorem ipsum dolor sit amet '.repeat(7)
  return new Readable({
    read () {
      const lines: string[] = []
      for (let k = 0; k < 2000 && i < n; k++, i++) lines.push(JSON.stringify({ id: `r${String(i).padStart(8, '0')}`, value: { n: i, rev, title: `record ${i}`, body: filler } }))
      this.push(lines.length > 0 ? lines.join('\n') + '\n' : null)
    }
  })
}

async function main (): Promise<void> {
  const parent = await tempDir('syncmesh-profile-')
  const profDir = join(parent, 'profiles')
  await mkdir(join(profDir, 'source'), { recursive: true })
  await mkdir(join(profDir, 'target'), { recursive: true })
  const source = await NodeProcess.create('source', KEY, { parent })
  const target = await NodeProcess.create('target', KEY, { parent })
  try {
    const env = { SYNCMESH_LOG_LEVEL: 'warn' }
    // --no-prof: the same run without the profiler (its overhead is not small)
    const prof = !args.includes('--no-prof')
    const profArgs = (who: string): string[] => [...(prof ? ['--cpu-prof', `--cpu-prof-dir=${join(profDir, who)}`] : []), ...(process.env.SM_NODEARGS ?? '').split(' ').filter(a => a !== '')]
    await source.start(['--target-peers', '0'], { env, nodeArgs: profArgs('source') })
    const gcLog = args.includes('--gc') ? join(parent, 'target-gc.log') : undefined
    await target.start(['--target-peers', '0'], { env, nodeArgs: [...profArgs('target'), ...(gcLog !== undefined ? ['--trace-gc-nvp'] : [])], stdoutFile: gcLog })
    // default: the rule comes after the data (a new target attached to an existing source: it backfills);
    // --rule-first: the rule exists before the data (the target applies entries as they arrive)
    const ruleFirst = args.includes('--rule-first')
    const addRule = async (): Promise<void> => { await source.addRule({ from: { platform: 'source', collection: 'bulk' }, to: { platform: 'target', collection: 'bulk' } }) }
    if (ruleFirst) await addRule()
    const t0 = performance.now()
    const res = await fetch(`${source.api}/v1/collections/bulk/import`, { method: 'POST', headers: { authorization: `Bearer ${source.token}`, 'content-type': 'application/x-ndjson' }, body: ndjson(N) as unknown as ReadableStream, duplex: 'half' } as RequestInit)
    if (res.status !== 200) throw new Error(`import failed: ${res.status} ${await res.text()}`)
    const importMs = performance.now() - t0
    // --no-rule: only the log travels (store and forward, nothing applied)
    const noRule = args.includes('--no-rule')
    if (!ruleFirst && !noRule) await addRule()
    const t1 = performance.now()
    const cpu0 = [cpuSeconds(source.pid) ?? 0, cpuSeconds(target.pid) ?? 0]
    const gcFrom = gcLog !== undefined ? statSync(gcLog, { throwIfNoEntry: false })?.size ?? 0 : 0
    const threads0 = threadCpuSeconds(target.pid)
    await target.addPeer(source.multiaddr)
    // phases: the log arrives (the rule entry comes last), then the rule's backfill applies it
    let logMs = NaN
    const sourceId = (await source.status()).peerId as string
    const held = (s: Record<string, unknown>): number => (s.origins as Array<{ origin: string, seq: number }>).find(o => o.origin === sourceId)?.seq ?? 0
    const sourceSeq = held(await source.status())
    await waitFor(async () => {
      const s = await target.status()
      if (Number.isNaN(logMs) && held(s) >= sourceSeq) logMs = performance.now() - t1
      if (noRule) return held(s) >= sourceSeq
      return (s.rules as Array<{ applied: number }>)[0]?.applied === N
    }, `the target to apply ${N} records`, 600_000, 50)
    const syncMs = performance.now() - t1
    const gc = gcLog !== undefined ? gcDuring(readFileSync(gcLog).subarray(gcFrom).toString()) : undefined
    // --updates K: then K more revisions of every record, written on the source while connected
    const updates = Number(args[args.indexOf('--updates') + 1] ?? NaN)
    if (args.includes('--updates') && updates > 0) {
      if (args.includes('--restart')) {
        // as the footprint benchmark does: the target stops and starts again before the updates
        await target.stop()
        await target.start(['--target-peers', '0'], { env, nodeArgs: profArgs('target') })
        await target.addPeer(source.multiaddr)
      }
      const tu = performance.now()
      for (let rev = 1; rev <= updates; rev++) {
        const r = await fetch(`${source.api}/v1/collections/bulk/import`, { method: 'POST', headers: { authorization: `Bearer ${source.token}`, 'content-type': 'application/x-ndjson' }, body: ndjson(N, rev) as unknown as ReadableStream, duplex: 'half' } as RequestInit)
        if (r.status !== 200) throw new Error(`update import failed: ${r.status}`)
      }
      const importedMs = performance.now() - tu
      const head = held(await source.status())
      await waitFor(async () => held(await target.status()) >= head, 'the target to receive every update', 600_000, 50)
      // --idle S: then S seconds without writes (the node compacts when idle), and the target's db/ size before and after
      if (args.includes('--idle')) {
        const db = join(target.dir, 'db')
        const before = (await dirBytes(db)).apparent
        await new Promise(resolve => setTimeout(resolve, Number(args[args.indexOf('--idle') + 1] ?? 15) * 1000))
        console.log(JSON.stringify({ targetDbMBAfterUpdates: +(before / 1e6).toFixed(1), targetDbMBAfterIdle: +((await dirBytes(db)).apparent / 1e6).toFixed(1), compacted: target.stderr.includes('compacted the database') }))
      }
      const problems = target.stderr.split('\n').filter(l => /offence|signature|SIGNATURE|ban|gap|stuck/i.test(l)).slice(0, 10)
      if (problems.length > 0) console.log(problems.join('\n'))
      console.log(JSON.stringify({ updates: N * updates, importSeconds: +(importedMs / 1000).toFixed(2), targetDoneSecondsAfterImport: +((performance.now() - tu - importedMs) / 1000).toFixed(2) }))
    }
    if (args.includes('--mem')) {
      // where a process's memory is, after the sync: V8 heap, buffers outside it, resident total
      for (const [name, n] of [['source', source], ['target', target]] as const) {
        const text = await (await fetch(`${n.api}/metrics`, { headers: { authorization: `Bearer ${n.token}` } })).text()
        const pick = (metric: string): string => { const m = new RegExp(`^${metric}(?:\\{[^}]*\\})? (\\S+)`, 'm').exec(text); return m === null ? '?' : `${Math.round(Number(m[1]) / 1e6)}MB` }
        const status = readFileSync(`/proc/${n.pid}/status`, 'utf8')
        const kb = (f: string): string => `${Math.round(Number(new RegExp(`^${f}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN) / 1024)}MB`
        console.log(name, 'RssAnon', kb('RssAnon'), 'RssFile', kb('RssFile'), 'VmHWM', kb('VmHWM'))
        console.log(name, 'rss', pick('process_resident_memory_bytes'), 'heapUsed', pick('nodejs_heap_size_used_bytes'), 'heapTotal', pick('nodejs_heap_size_total_bytes'), 'external', pick('nodejs_external_memory_bytes'))
      }
    }
    const cpu1 = [cpuSeconds(source.pid) ?? 0, cpuSeconds(target.pid) ?? 0]
    const threads1 = threadCpuSeconds(target.pid)
    const byName = new Map<string, number>()
    for (const [tid, t] of threads1) {
      const name = tid === String(target.pid) ? 'main' : t.name
      byName.set(name, (byName.get(name) ?? 0) + t.cpu - (threads0.get(tid)?.cpu ?? 0))
    }
    if (args.includes('--threads')) {
      // every thread of a node process is called "node": the main one is the JavaScript thread; of the others,
      // four are V8's platform workers (concurrent marking, scavenging, JIT compiling: usually the busiest, at
      // ~7 µs per record each in a bulk sync), one is LevelDB's compaction thread, four are libuv's pool
      // (LevelDB writes and reads, ~1 µs each). `perf record -g -p PID` tells them apart by their symbols.
      const rows = [...threads1].map(([tid, t]) => ({ tid, cpu: t.cpu - (threads0.get(tid)?.cpu ?? 0) })).filter(r => r.cpu > 0.01).sort((a, b) => b.cpu - a.cpu)
      console.log('target threads, CPU during sync (µs per record):\n' + rows.map(r => `  ${r.tid === String(target.pid) ? 'main' : r.tid}: ${r.cpu.toFixed(2)} s (${Math.round(r.cpu / N * 1e6)} µs)`).join('\n'))
    }
    const cpuShare = (i: number): string => `${Math.round((cpu1[i] - cpu0[i]) / (syncMs / 1000) * 100)}%`
    await source.stop()
    await target.stop()
    const sourceProfile = prof ? await latestProfile(join(profDir, 'source')) : EMPTY_PROFILE
    const targetProfile = prof ? await latestProfile(join(profDir, 'target')) : EMPTY_PROFILE
    const signShare = inclusiveShare(sourceProfile, new Set(['sign', 'signRuns', 'run', 'live', 'gone']), 'signing.js')
    const verifyShare = inclusiveShare(targetProfile, new Set(['verifyRuns', 'verifyAttestedRuns', 'verifyUpdate']), 'signing.js')
    if (args.includes('--top')) {
      console.log('source, top self time:\n' + topSelf(sourceProfile, 25).join('\n'))
      console.log('target, top self time:\n' + topSelf(targetProfile, 25).join('\n'))
    }
    console.log(JSON.stringify({
      records: N,
      importSeconds: +(importMs / 1000).toFixed(2),
      importRecordsPerSecond: Math.round(N / importMs * 1000),
      syncSeconds: +(syncMs / 1000).toFixed(2),
      targetCpuUsPerRecord: Math.round((cpu1[1] - cpu0[1]) / N * 1e6),
      sourceCpuUsPerRecord: Math.round((cpu1[0] - cpu0[0]) / N * 1e6),
      syncRecordsPerSecond: Math.round(N / syncMs * 1000),
      logReceivedSeconds: +(logMs / 1000).toFixed(2),
      sourceCpuShareSigning: +(signShare * 100).toFixed(1) + '%',
      targetCpuShareVerifying: +(verifyShare * 100).toFixed(1) + '%',
      // CPU time each process used during the sync, as a share of one core (all threads, LevelDB's included)
      sourceCpuDuringSync: cpuShare(0),
      targetCpuDuringSync: cpuShare(1),
      // the main (JavaScript) thread, and the rest: V8's GC and JIT helpers, LevelDB's compaction, libuv's pool (LevelDB reads/writes)
      targetCpuByThread: Object.fromEntries([...byName].filter(([, c]) => c > 0.01).map(([n, c]) => [n, `${Math.round(c / (syncMs / 1000) * 100)}%`])),
      ...(gc !== undefined ? { targetGcDuringSync: gc } : {})
    }, null, 2))
  } finally {
    await source.kill()
    await target.kill()
    if (args.includes('--keep')) console.log(`profiles kept in ${profDir}`)
    else await rm(parent, { recursive: true, force: true })
  }
}

main().catch((err: Error) => {
  console.error(`profile failed: ${err.message}`)
  process.exit(1)
})
