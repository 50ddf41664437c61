/** The README's quick start: `npm run demo` must show a change travelling through a real three-node mesh. */
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ROOT } from '../../scripts/lib/cluster.js'

describe('npm run demo', () => {
  it('starts three nodes, syncs by rule across two hops, and cleans up (--once)', async () => {
    const { code, out } = await new Promise<{ code: number | null, out: string }>((resolve) => {
      const child = spawn(process.execPath, [join(ROOT, 'dist', 'scripts', 'demo.js'), '--once'], { stdio: ['ignore', 'pipe', 'pipe'] })
      let out = ''
      child.stdout.on('data', (d: Buffer) => { out += d.toString() })
      child.stderr.on('data', (d: Buffer) => { out += d.toString() })
      const timer = setTimeout(() => child.kill('SIGKILL'), 90_000)
      child.on('close', (c) => { clearTimeout(timer); resolve({ code: c, out }) })
    })
    expect(code, out).toBe(0)
    expect(out).toContain('edge:headlines/welcome = {"title":"Welcome"}')
    expect(out).toContain('an update and a delete on staging reached edge through production')
    expect(out).toContain('demo finished')
  }, 120_000)
})
