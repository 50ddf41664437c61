/**
 * Control frames between honest nodes stay far below the flood limit
 * (MAX_CONTROL_FRAMES_PER_SECOND), also when a peer stops reading for a
 * while and then reads everything that waited for it at once: a relay that
 * stores run after run of a busy origin tells a silent peer at most
 * HAVE_BURST Haves, then holds the newest one per origin until the peer is
 * heard from again. Real nodes, real libp2p over loopback TCP; the silent
 * peer is played by hand, and then is a real node whose ingest stalls
 * behind a slow transform module.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { encodeHave } from '../../src/network/sync/codec.js'
import { HAVE_BURST } from '../../src/network/sync/session.js'
import type { SyncNode } from '../../src/node/node.js'
import { createSyncNode } from '../../src/node/node.js'
import { eventually, KEY, removeDir, startNode, tempDir } from '../helpers/nodes.js'
import type { TestNode } from '../helpers/nodes.js'
import { EITHER_SYNC_PROTOCOL, RawPeer } from '../helpers/raw-peer.js'
import type { RawSession } from '../helpers/raw-peer.js'

async function held (node: SyncNode, origin: string): Promise<number> {
  return (await node.status()).origins.find(o => o.origin === origin)?.seq ?? 0
}

function havesOf (s: RawSession, origin: string): Array<{ at: number, seq: number }> {
  const out: Array<{ at: number, seq: number }> = []
  for (const { at, msg } of s.received) if (msg.type === 'have' && msg.origin === origin) out.push({ at, seq: msg.seq })
  return out
}

describe('control frames to a peer that says nothing', () => {
  const nodes: TestNode[] = []
  const peers: RawPeer[] = []
  afterEach(async () => {
    for (const p of peers.splice(0)) await p.stop().catch(() => {})
    for (const n of nodes.splice(0)) {
      await n.node.stop().catch(() => {})
      await removeDir(n.dir)
    }
  })

  it('a relay storing one small run after another sends a silent peer at most HAVE_BURST Haves, and the newest one once it speaks', async () => {
    const origin = await startNode('O')
    const relay = await startNode('U')
    nodes.push(origin, relay)
    await relay.node.peers.add(origin.node.getMultiaddrs()[0])
    // the origin's writes go into its whole log, or with rule streams into the stream of the rule that reads them
    await eventually(() => [origin, relay].every(n => n.node.registry.platforms().length === 2), 'two platforms everywhere')
    await origin.node.registry.addRule({ from: { platform: 'O', collection: 'events' }, to: { platform: 'U', collection: 'events' } })
    await origin.node.records.put('events', 'e0', { i: -1 })
    const streams = (await origin.node.status()).streams === true
    const O = streams ? (await origin.node.status()).origins.find(o => o.origin.startsWith(`${origin.node.peerId}/r.`))?.origin : origin.node.peerId
    if (O === undefined) throw new Error('no rule stream of the origin')
    await eventually(async () => await held(relay.node, O) > 0 && await held(relay.node, O) === await held(origin.node, O), 'the relay to hold what the origin wrote so far')
    // the peer holds nothing, grants one batch and then says nothing: it neither reads on (no credit)
    // nor tells the relay anything, like a node that is stopped or whose ingest is stuck
    const peer = new RawPeer(KEY)
    peers.push(peer)
    await peer.start()
    const s = await peer.session(relay.node.getMultiaddrs()[0], { credit: 1, protocol: EITHER_SYNC_PROTOCOL })
    // churn: one write, one commit, one run after another on the origin; the relay stores each as it comes
    const writes = 3 * HAVE_BURST
    for (let i = 0; i < writes; i++) await origin.node.records.put('events', `e${i % 20}`, { i })
    const last = await held(origin.node, O)
    await eventually(async () => await held(relay.node, O) === last, 'the relay to hold every write', 60_000)
    await new Promise(resolve => setTimeout(resolve, 500))
    const haves = s.received.filter(r => r.msg.type === 'have').length
    const origins = new Set(s.received.filter(r => r.msg.type === 'have').map(r => (r.msg as { origin: string }).origin)).size
    // without holding them back, the relay sent one Have per run it stored (~writes)
    expect(haves, `Haves sent to a silent peer while the relay stored ${writes} runs`).toBeLessThanOrEqual(HAVE_BURST + origins)
    expect(havesOf(s, O).some(h => h.seq === last)).toBe(false)
    // the peer speaks (any frame): what was held goes out, the newest seq of each origin
    s.framed.sendNow(encodeHave(relay.node.peerId, 1))
    await eventually(() => havesOf(s, O).some(h => h.seq === last), 'the held Have naming the origin\'s newest seq')
  }, 120_000)

  it('a node whose ingest stalls behind a slow transform, under churn relayed to it, never takes its honest peer for a flood', async () => {
    const root = await tempDir()
    const log: string[] = []
    const started: SyncNode[] = []
    try {
      const transforms = join(root, 'transforms')
      await mkdir(transforms)
      // 150 ms per record: the node's ingest falls behind, its reader pauses, and the relay's frames wait for it
      await writeFile(join(transforms, 'slow.mjs'), 'export default async function (record) { await new Promise(r => setTimeout(r, 150)); return record.value }\n')
      for (const name of ['zeta', 'ypsilon', 'xi']) {
        const logger = pino({ level: 'warn' }, new Writable({ write (chunk, _e, cb) { log.push(`${name} ${String(chunk)}`); cb() } }))
        const node = await createSyncNode({ dataDir: join(root, name), key: KEY, name, listen: ['/ip4/127.0.0.1/tcp/0'], logger, ...(name === 'xi' ? { transformsDir: transforms } : {}) })
        await node.start()
        started.push(node)
      }
      const [z, y, x] = started
      // a line: zeta — ypsilon — xi, so xi gets zeta's writes through the relay only
      await y.peers.add(z.getMultiaddrs()[0])
      await x.peers.add(y.getMultiaddrs()[0])
      await eventually(() => started.every(n => n.registry.platforms().length === 3), 'every registry to hold three platforms', 30_000)
      await z.registry.addRule({ from: { platform: 'zeta', collection: 'events' }, to: { platform: 'xi', collection: 'events' }, transform: 'slow.mjs' })
      await z.registry.addRule({ from: { platform: 'zeta', collection: 'events' }, to: { platform: 'ypsilon', collection: 'events' } })
      await eventually(async () => (await x.status()).rules.some(r => r.local && r.backfilled && r.problem === undefined), 'the rule on xi', 30_000)
      // churn on zeta for a while: one write per commit, 12 records updated over and over
      let stop = false
      const values = new Map<string, number>()
      const loops = Array.from({ length: 4 }, async (_, c) => {
        for (let i = 0; !stop; i++) {
          const id = `e${c}-${i % 3}`
          await z.records.put('events', id, { i })
          values.set(id, i)
        }
      })
      await new Promise(resolve => setTimeout(resolve, 12_000))
      stop = true
      await Promise.all(loops)
      await eventually(async () => {
        for (const [id, i] of values) if ((await x.records.get('events', id))?.value.i !== i) return false
        return true
      }, 'xi to hold zeta\'s last writes', 90_000)
      const problems = log.filter(l => /control frames|invalid data|sync session .* ended/.test(l))
      expect(problems, 'sessions ended or offences between honest nodes').toEqual([])
      for (const n of started) for (const p of (await n.status()).peers) expect(p.offences ?? 0, `${n.name}'s offences of ${p.peerId}`).toBe(0)
    } finally {
      for (const n of started) await n.stop().catch(() => {})
      await removeDir(root)
    }
  }, 180_000)
})
