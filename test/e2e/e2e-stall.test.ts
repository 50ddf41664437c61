/**
 * A stuck stream is an alarm the node acts on: a peer that keeps sending the
 * same refused batch of an origin is reported once (with the check, the
 * origin and the range), shows in status and /metrics, and the node gets the
 * range from an honest peer that holds the origin. Real node processes; the
 * hostile peer and the origin's own feed are raw peers speaking the sync
 * protocol.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { rm } from 'node:fs/promises'
import { afterAll, describe, expect, it } from 'vitest'
import { encodeJson } from '../../src/store/db.js'
import type { LogEntry } from '../../src/log/entry.js'
import { Attester } from '../../src/log/signing.js'
import { VersionVector } from '../../src/log/vector.js'
import { NodeProcess, tempDir, waitFor } from '../../scripts/lib/cluster.js'
import { attestedBatchFrame } from '../helpers/attested.js'
import { EITHER_SYNC_PROTOCOL, RawPeer } from '../helpers/raw-peer.js'

const KEY = 'ba5eba11ba5eba11ba5eba11ba5eba11ba5eba'

const batch = attestedBatchFrame

describe('a peer that keeps sending a refused batch', () => {
  const cleanup: Array<() => Promise<void>> = []
  afterAll(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => {})
  })

  it('is a stall: logged once, in status and /metrics, and the range comes from an honest peer', async () => {
    const parent = await tempDir()
    cleanup.push(async () => await rm(parent, { recursive: true, force: true }))
    const node = await NodeProcess.create('N', KEY, { parent })
    const honest = await NodeProcess.create('P', KEY, { parent })
    cleanup.push(async () => await node.kill(), async () => await honest.kill())
    await node.start(['--target-peers', '0'])
    await honest.start(['--target-peers', '0'])
    await honest.addPeer(node.multiaddr)

    // origin A exists only as a key; its log reaches P through a raw feed, and N through P
    const aKey = await generateKeyPair('Ed25519')
    const A = peerIdFromPrivateKey(aKey).toString()
    const attester = new Attester(aKey, A)
    const wall = Date.now() - 10_000
    const entries = Array.from({ length: 20 }, (_, i): LogEntry => ({ origin: A, seq: i + 1, hlc: { wall: wall + i, logical: 0 }, collection: 'posts', id: `p${i}`, op: 'put', value: encodeJson({ n: i }) }))
    const run1 = entries.slice(0, 10)
    const run2 = entries.slice(10)
    const cert1 = attester.run(0, 10, run1.map(e => ({ ...e }))).cert
    const cert2 = attester.run(10, 20, run2.map(e => ({ ...e }))).cert
    const feed = new RawPeer(KEY)
    await feed.start()
    cleanup.push(async () => await feed.stop())
    const toP = await feed.session(honest.multiaddr, { protocol: EITHER_SYNC_PROTOCOL })
    toP.framed.sendNow(batch(A, 0, 10, run1, [cert1]))

    type Status = Record<string, any>
    const seqOfA = (s: Status): number => (s.origins as Array<{ origin: string, seq: number }>).find(o => o.origin === A)?.seq ?? 0
    await waitFor(async () => seqOfA(await node.status()) === 10, 'N to hold the first run of A (through P)', 20_000)

    // the hostile peer sends N the next run of A with one value altered, again and again
    const hostile = new RawPeer(KEY)
    await hostile.start()
    cleanup.push(async () => await hostile.stop())
    const altered = run2.map(e => ({ ...e }))
    altered[3] = { ...altered[3], value: encodeJson({ n: 1_000_000 }) }
    const offences = async (): Promise<number> => ((await node.status()).peers as Array<{ peerId: string, offences?: number }>).find(p => p.peerId === hostile.peerId)?.offences ?? 0
    for (let i = 1; i <= 3; i++) {
      const s = await hostile.session(node.multiaddr, { vector: new VersionVector(), protocol: EITHER_SYNC_PROTOCOL })
      s.framed.sendNow(batch(A, 10, 20, altered, [cert2]))
      await waitFor(async () => await offences() === i, `N to refuse the altered batch (${i})`, 20_000)
    }
    // three offences: refused for a while
    await expect(hostile.session(node.multiaddr, { protocol: EITHER_SYNC_PROTOCOL })).rejects.toThrow()

    let status = await node.status()
    expect(seqOfA(status)).toBe(10)
    // the stall: which peer, which origin, which range, which check, how often
    expect(status.stalls).toMatchObject({ total: 1, active: 1, byCode: { RUN_SIGNATURE_MISMATCH: 1 } })
    expect(status.stalls.recent[0]).toMatchObject({ peer: hostile.peerId, origin: A, fromSeq: 10, toSeq: 20, code: 'RUN_SIGNATURE_MISMATCH', offence: true, refusals: 3 })
    expect(status.stalls.recent[0].recovered).toBeUndefined()
    // the offences and the ban name the check, the origin and the range
    const info = (status.peers as Array<Record<string, any>>).find(p => p.peerId === hostile.peerId) as Record<string, any>
    expect(info.offencesByCheck).toEqual({ RUN_SIGNATURE_MISMATCH: 3 })
    expect(info.lastOffence).toMatchObject({ check: 'RUN_SIGNATURE_MISMATCH', origin: A, fromSeq: 10, toSeq: 20 })
    expect(typeof info.bannedUntil).toBe('string')
    expect(status.offences).toMatchObject({ total: 3, byCheck: { RUN_SIGNATURE_MISMATCH: 3 }, bans: 1, bansByCheck: { RUN_SIGNATURE_MISMATCH: 1 } })
    // logged once, however often the batch came
    expect(node.logCount(/sync stall: peer .* sent batch \(10, 20\] of .* 2 times and it was refused each time \[RUN_SIGNATURE_MISMATCH\]/)).toBe(1)
    expect(node.logCount(/sync stall/)).toBe(1)
    expect(node.logCount(/refusing peer .* after 3 offences .*\[RUN_SIGNATURE_MISMATCH\] in batch \(10, 20\]/)).toBe(1)
    let metrics = (await node.request<string>('GET', '/metrics')).body
    expect(metrics).toMatch(/syncmesh_sync_stalls_total\{check="RUN_SIGNATURE_MISMATCH"\} 1\b/)
    expect(metrics).toMatch(/syncmesh_sync_stalled 1\b/)
    expect(metrics).toMatch(/syncmesh_peer_offences_total\{check="RUN_SIGNATURE_MISMATCH"\} 3\b/)
    expect(metrics).toMatch(/syncmesh_peer_bans_total\{check="RUN_SIGNATURE_MISMATCH"\} 1\b/)

    // the honest peer gets the genuine run: N gets the range from it, and the stall is over
    toP.framed.sendNow(batch(A, 10, 20, run2, [cert2]))
    await waitFor(async () => seqOfA(await node.status()) === 20, 'N to get the range from the honest peer', 20_000)
    await waitFor(async () => (await node.status()).stalls.active === 0, 'the stall to be marked recovered', 20_000)
    status = await node.status()
    expect(typeof status.stalls.recent[0].recovered).toBe('string')
    metrics = (await node.request<string>('GET', '/metrics')).body
    expect(metrics).toMatch(/syncmesh_sync_stalled 0\b/)
    expect(metrics).toMatch(/syncmesh_sync_stalls_total\{check="RUN_SIGNATURE_MISMATCH"\} 1\b/)
    // nothing of the altered batch was stored, and the honest peer was never counted against
    const records = (await node.status()).peers as Array<{ peerId: string, offences?: number }>
    expect(records.find(p => p.peerId === honest.peerId)?.offences ?? 0).toBe(0)
  }, 120_000)
})
