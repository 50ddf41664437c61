/**
 * What the benchmark reads about the node processes from Linux procfs:
 * resident memory (VmRSS, and VmHWM, the kernel's own peak), CPU time, and
 * the size of a directory tree. Off Linux these return undefined.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { lstat, readdir } from 'node:fs/promises'
import { join } from 'node:path'

/** Clock ticks per second of /proc/PID/stat times (USER_HZ; 100 on every mainstream Linux). */
const CLK_TCK = 100

export interface Mem {
  /** Resident set size now, bytes. */
  rss: number
  /** Peak resident set size since start or since resetPeak, bytes. */
  hwm: number
  /**
   * Anonymous resident memory now (heap, malloc), bytes: VmRSS less the
   * file-backed pages (the node binary, and LevelDB's tables, which it
   * reads through mmap; those pages belong to the page cache and grow with
   * the data read, and the kernel reclaims them under pressure).
   */
  anon: number
}

export function readMem (pid: number | undefined): Mem | undefined {
  if (pid === undefined) return undefined
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8')
    const rss = /^VmRSS:\s+(\d+) kB/m.exec(text)
    const hwm = /^VmHWM:\s+(\d+) kB/m.exec(text)
    const anon = /^RssAnon:\s+(\d+) kB/m.exec(text)
    if (rss === null || hwm === null) return undefined
    return { rss: Number(rss[1]) * 1024, hwm: Number(hwm[1]) * 1024, anon: anon !== null ? Number(anon[1]) * 1024 : NaN }
  } catch {
    return undefined
  }
}

/** Reset VmHWM to the current RSS (writes 5 to /proc/PID/clear_refs); false if not possible. */
export function resetPeak (pid: number | undefined): boolean {
  if (pid === undefined) return false
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5')
    return true
  } catch {
    return false
  }
}

/** User + system CPU seconds in a /proc stat line (of a process or of one of its threads). */
function statCpuSeconds (text: string): number {
  // the command name (field 2) may contain spaces: split after its closing parenthesis
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ')
  // fields[0] is field 3 (state); utime and stime are fields 14 and 15
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK
}

/** User + system CPU seconds the process has used so far. */
export function cpuSeconds (pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined
  try {
    return statCpuSeconds(readFileSync(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    return undefined
  }
}

/** CPU seconds used so far by each thread of a process (by thread id), with the thread names. */
export function threadCpuSeconds (pid: number | undefined): Map<string, { name: string, cpu: number }> {
  const out = new Map<string, { name: string, cpu: number }>()
  if (pid === undefined) return out
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      out.set(tid, { name: readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim(), cpu: statCpuSeconds(readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')) })
    }
  } catch {}
  return out
}

/**
 * Samples the RSS of some processes every `intervalMs` and keeps each one's
 * peak: the larger of the sampled VmRSS values and the kernel's VmHWM (which
 * also catches spikes between samples; reset it with resetPeak before the
 * window of interest). Pids are looked up at each sample, so a process that
 * is (re)started during the window is followed.
 */
export class RssSampler {
  private readonly tracked = new Map<string, () => number | undefined>()
  private readonly peaks = new Map<string, number>()
  private readonly sampled = new Map<string, number>()
  private readonly anon = new Map<string, number>()
  private timer?: ReturnType<typeof setInterval>

  track (label: string, pid: () => number | undefined): void {
    this.tracked.set(label, pid)
  }

  start (intervalMs = 100): void {
    this.sample()
    this.timer = setInterval(() => this.sample(), intervalMs)
  }

  /**
   * Stops sampling; returns label → peak bytes (sampled VmRSS and VmHWM),
   * label → peak of the samples alone, and label → peak sampled RssAnon.
   */
  stop (): { peak: Map<string, number>, sampledPeak: Map<string, number>, anonPeak: Map<string, number> } {
    this.sample()
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
    return { peak: new Map(this.peaks), sampledPeak: new Map(this.sampled), anonPeak: new Map(this.anon) }
  }

  private sample (): void {
    for (const [label, pid] of this.tracked) {
      const m = readMem(pid())
      if (m === undefined) continue
      this.sampled.set(label, Math.max(this.sampled.get(label) ?? 0, m.rss))
      this.peaks.set(label, Math.max(this.peaks.get(label) ?? 0, m.rss, m.hwm))
      if (!Number.isNaN(m.anon)) this.anon.set(label, Math.max(this.anon.get(label) ?? 0, m.anon))
    }
  }
}

/** Bytes under `dir`: apparent (sum of file sizes, like `du -sb`) and allocated (blocks, like `du -s`). */
export async function dirBytes (dir: string): Promise<{ apparent: number, allocated: number }> {
  let apparent = 0
  let allocated = 0
  const walk = async (d: string): Promise<void> => {
    for (const entry of await readdir(d, { withFileTypes: true })) {
      const p = join(d, entry.name)
      if (entry.isDirectory()) {
        await walk(p)
      } else {
        const st = await lstat(p)
        apparent += st.size
        allocated += st.blocks * 512
      }
    }
  }
  await walk(dir)
  return { apparent, allocated }
}

/** The whole machine's CPU time so far (all cores), seconds: busy and total (busy + idle + iowait). */
export function machineCpu (): { busy: number, total: number } | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]
    const f = line.trim().split(/\s+/).slice(1).map(Number)
    const [user, nice, system, idle, iowait, irq, softirq, steal] = f
    const busy = user + nice + system + irq + softirq + (steal ?? 0)
    return { busy: busy / CLK_TCK, total: (busy + idle + iowait) / CLK_TCK }
  } catch {
    return undefined
  }
}

/** CPU seconds of this process and of its children that have exited (and been reaped). */
export function ownCpu (): number | undefined {
  try {
    const text = readFileSync('/proc/self/stat', 'utf8')
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ')
    // utime, stime, cutime, cstime are fields 14–17
    return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / CLK_TCK
  } catch {
    return undefined
  }
}
