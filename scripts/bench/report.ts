/** The results table (stdout) and the JSON file. */
import { execFileSync } from 'node:child_process'
import { cpus, loadavg, platform, release, totalmem, type, arch } from 'node:os'
import { ROOT } from '../lib/cluster.js'
import { max, median, min } from './stats.js'
import type { FigureDef } from './types.js'

export interface FigureResult {
  id: string
  workload: string
  label: string
  unit: string
  median: number
  min: number
  max: number
  runs: number[]
  target?: string
  /** Whether the median meets the target; absent when there is none or no value. */
  pass?: boolean
  derived?: boolean
}

export function machine (): Record<string, unknown> {
  const c = cpus()
  return {
    cpus: { model: c[0]?.model ?? 'unknown', count: c.length },
    memoryBytes: totalmem(),
    node: process.version,
    os: { type: type(), platform: platform(), release: release(), arch: arch() },
    loadavgAtStart: loadavg()
  }
}

export function gitState (): { commit?: string, dirtyFiles?: number } {
  try {
    const commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\n').filter(l => l.trim() !== '').length
    return { commit, dirtyFiles: dirty }
  } catch {
    return {}
  }
}

export function targetText (def: FigureDef): string | undefined {
  if (def.target === undefined) return undefined
  return `${def.target.op === '>=' ? '≥' : '≤'} ${fmt(def.target.value, def.target.value % 1 === 0 ? 0 : 2)}`
}

export function summarise (def: FigureDef, runs: number[], derived = false): FigureResult {
  const ok = runs.filter(v => Number.isFinite(v))
  const r: FigureResult = { id: def.id, workload: def.workload, label: def.label, unit: def.unit, median: median(ok), min: min(ok), max: max(ok), runs }
  const t = targetText(def)
  if (t !== undefined && def.target !== undefined) {
    r.target = def.target.note !== undefined ? `${t} (${def.target.note})` : t
    if (ok.length > 0) r.pass = def.target.op === '>=' ? r.median >= def.target.value : r.median <= def.target.value
  }
  if (derived) r.derived = true
  return r
}

export function fmt (v: number, digits: number): string {
  if (!Number.isFinite(v)) return '–'
  return v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

export function table (defs: Map<string, FigureDef>, results: FigureResult[]): string {
  const rows: string[][] = [['workload', 'figure', 'median', 'min', 'max', 'unit', 'target', '']]
  for (const r of results) {
    const d = defs.get(r.id)?.digits ?? 2
    const t = defs.get(r.id) !== undefined ? targetText(defs.get(r.id) as FigureDef) ?? '' : ''
    rows.push([r.workload, r.label, fmt(r.median, d), fmt(r.min, d), fmt(r.max, d), r.unit, t, r.pass === undefined ? '' : r.pass ? 'ok' : 'MISS'])
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map(row => [...row[c]].length)))
  const right = new Set([2, 3, 4])
  const line = (row: string[]): string => row.map((cell, c) => right.has(c) ? cell.padStart(widths[c]) : cell.padEnd(widths[c])).join('  ').trimEnd()
  const out = [line(rows[0]), widths.map(w => '-'.repeat(w)).join('  ')]
  let last = ''
  for (const row of rows.slice(1)) {
    if (row[0] !== last && last !== '') out.push('')
    last = row[0]
    out.push(line(row))
  }
  return out.join('\n')
}
