/**
 * Smoke test of `npm run bench`: the footprint workload at --quick sizes runs
 * end to end against real node processes and writes a well-formed JSON
 * result. No timing or performance assertions: figures are measured by
 * `npm run bench`, never asserted in tests.
 */
import { spawn } from 'node:child_process'
import { readdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ROOT, tempDir } from '../../scripts/lib/cluster.js'

const BENCH = join(ROOT, 'dist', 'scripts', 'bench.js')

async function run (args: string[]): Promise<{ code: number | null, stdout: string, stderr: string }> {
  return await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BENCH, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    const timer = setTimeout(() => child.kill('SIGINT'), 100_000)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

describe('npm run bench', () => {
  it('--quick --only footprint runs and writes its JSON result', async () => {
    const out = await tempDir('syncmesh-bench-smoke-')
    try {
      const res = await run(['--quick', '--only', 'footprint', '--out', out])
      expect(res.code, res.stderr).toBe(0)
      expect(res.stdout).toContain('idle RSS, fresh node')
      const files = await readdir(out)
      expect(files).toHaveLength(1)
      const json = JSON.parse(await readFile(join(out, files[0]), 'utf8')) as {
        machine: { cpus: { count: number, model: string }, memoryBytes: number, node: string }
        errors: unknown[]
        figures: Array<{ id: string, unit: string, median: number, min: number, max: number, runs: number[] }>
      }
      expect(json.errors).toEqual([])
      expect(json.machine.cpus.count).toBeGreaterThan(0)
      expect(json.machine.node).toBe(process.version)
      const ids = json.figures.map(f => f.id)
      expect(ids).toEqual(expect.arrayContaining(['footprint.idle_rss_mb', 'footprint.disk_vs_json', 'footprint.update_growth']))
      for (const f of json.figures) {
        expect(f.runs, f.id).toHaveLength(1)
        expect(Number.isFinite(f.median), f.id).toBe(true)
        expect(f.min).toBeLessThanOrEqual(f.max)
      }
    } finally {
      await rm(out, { recursive: true, force: true })
    }
  }, 120_000)
})
