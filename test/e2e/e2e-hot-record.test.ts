/**
 * One record updated in a tight loop on a source node, synced by a rule to a
 * target: every batch the source serves must verify at the target. Real
 * `syncmesh start` processes on 127.0.0.1.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { NodeProcess, runCli, tempDir, waitFor } from '../../scripts/lib/cluster.js'

const KEY = 'c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6'
const UPDATE_MS = 15_000

describe('a record updated in a tight loop', () => {
  const procs: NodeProcess[] = []
  afterAll(async () => {
    for (const p of procs) await p.cleanup()
  })

  it('reaches the target with its last value, and the target never refuses a batch', async () => {
    const parent = await tempDir()
    const a = await NodeProcess.create('A', KEY, { parent })
    const b = await NodeProcess.create('B', KEY, { parent })
    procs.push(a, b)
    await a.start()
    await b.start()
    expect((await runCli(['peer', 'add', a.multiaddr, '--data', b.dir])).code).toBe(0)
    await a.knows(['B'])
    expect((await runCli(['rule', 'add', '--from', 'A:posts', '--to', 'B:posts', '--data', a.dir])).code).toBe(0)
    await a.put('posts', 'hot', { n: 0 })
    await waitFor(async () => (await b.get('posts', 'hot')) !== undefined, 'the rule to deliver the first value')

    // two clients, so a commit is often still resolving when the next batch is served
    let n = 0
    const end = Date.now() + UPDATE_MS
    const client = async (): Promise<void> => {
      while (Date.now() < end) await a.put('posts', 'hot', { n: ++n })
    }
    await Promise.all([client(), client()])
    const last = (await a.get('posts', 'hot')) as { n: number }
    await waitFor(async () => ((await b.get('posts', 'hot')) as { n: number } | undefined)?.n === last.n, 'the last value to reach B', 20_000)
    console.log(`[measure] ${n} updates of one record in ${UPDATE_MS / 1000} s`)
    expect(n).toBeGreaterThan(100)
    expect(b.stderr).not.toMatch(/sent invalid data|banned/)
    expect(a.stderr).not.toMatch(/sent invalid data|banned/)
  })
})
