/**
 * No honest peer is ever counted as sending invalid data: two real node
 * processes, one rule, one record updated in a tight loop (each update
 * compacts the run before it away, while the source serves the target from
 * its log). Before, the source sent batches that claimed seqs beyond their
 * signed runs, and within seconds the target refused and then banned it.
 */
import { rm } from 'node:fs/promises'
import { afterAll, describe, expect, it } from 'vitest'
import { NodeProcess, tempDir, waitFor } from '../scripts/lib/cluster.js'

const KEY = '0ddba11c0ffee0ddba11c0ffee0ddba11c0ffe'

describe('one record updated in a tight loop', () => {
  const cleanup: Array<() => Promise<void>> = []
  afterAll(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => {})
  })

  it('reaches the target with no offence and no ban', async () => {
    const parent = await tempDir()
    cleanup.push(async () => await rm(parent, { recursive: true, force: true }))
    const src = await NodeProcess.create('S', KEY, { parent })
    const dst = await NodeProcess.create('T', KEY, { parent })
    cleanup.push(async () => await src.kill(), async () => await dst.kill())
    await src.start(['--target-peers', '0'])
    await dst.start(['--target-peers', '0'])
    await dst.addPeer(src.multiaddr)
    await src.addRule({ from: { platform: 'S', collection: 'events' }, to: { platform: 'T', collection: 'events' } })
    await waitFor(async () => ((await dst.status()).rules as unknown[]).length === 1, 'T to learn the rule', 20_000)

    // four clients updating the same record as fast as the API answers
    const until = Date.now() + 20_000
    let n = 0
    await Promise.all(Array.from({ length: 4 }, async () => {
      while (Date.now() < until) await src.put('events', 'hot', { n: ++n })
    }))
    const last = (await src.get('events', 'hot'))?.n
    await waitFor(async () => (await dst.get('events', 'hot'))?.n === last, 'T to hold the last update', 30_000)

    const offences = (node: NodeProcess, s: Record<string, any>): number => (s.peers as Array<{ offences?: number }>).reduce((sum, p) => sum + (p.offences ?? 0), 0) + node.logCount(/sent invalid data/)
    expect(offences(dst, await dst.status())).toBe(0)
    expect(offences(src, await src.status())).toBe(0)
    expect(dst.logCount(/refusing peer/)).toBe(0)
    expect((await dst.status()).offences).toMatchObject({ total: 0, bans: 0 })
    expect(n).toBeGreaterThan(1000)
  }, 120_000)
})
