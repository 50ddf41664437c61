/** `npm run demo -- --connectors`: a row written into one site's SQLite table shows up in the other's, both ways. */
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ROOT } from '../../scripts/lib/cluster.js'

describe('npm run demo -- --connectors', () => {
  it('syncs a SQLite table between two nodes both ways and cleans up (--once)', async () => {
    const { code, out } = await new Promise<{ code: number | null, out: string }>((resolve) => {
      const child = spawn(process.execPath, [join(ROOT, 'dist', 'scripts', 'demo.js'), '--connectors', '--once'], { stdio: ['ignore', 'pipe', 'pipe'] })
      let out = ''
      child.stdout.on('data', (d: Buffer) => { out += d.toString() })
      child.stderr.on('data', (d: Buffer) => { out += d.toString() })
      const timer = setTimeout(() => child.kill('SIGKILL'), 120_000)
      child.on('close', (c) => { clearTimeout(timer); resolve({ code: c, out }) })
    })
    expect(code, out).toBe(0)
    expect(out).toMatch(/site-us's table has it after \d+ ms: \{"id":"router-1","name":"edge router","ip":"10.0.0.1","online":1,"seen_at":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d.000Z"\}/)
    expect(out).toContain('{"id":"camera-7","name":"lobby camera","ip":"10.1.0.7","online":1,"seen_at":null}')
    expect(out).toContain('{"id":"router-1","name":"edge router (down)","ip":"10.0.0.1","online":0,')
    expect(out).toContain('demo finished')
  }, 150_000)
})
