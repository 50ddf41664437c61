/**
 * The upgrade of other origins' logs to sync protocol version 2
 * (protocols/sync/completeness.md §10, data format 4), on real LevelDB
 * stores: a relay that stored an origin's log from version 1 batches has its
 * held seq for that origin lowered to where its attestations stop (here 0),
 * keeps the entries, and fetching the log again with the
 * origin's attestations drops the entries they do not list, so that what it
 * then serves verifies.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { lowerToAttested } from '../../src/log/attest-upgrade.js'
import { decodeEntry } from '../../src/log/entry.js'
import { decodeCert, verifyAttestedRuns } from '../../src/log/signing.js'
import { keys, legacyLogKeys, prefixRange } from '../../src/store/keys.js'
import { aliasLegacyLogKeys } from '../../src/store/log-aliases.js'
import { Harness } from '../helpers/ingest-harness.js'
import { toLegacyLogKeys } from '../helpers/legacy-keys.js'

const open: Harness[] = []
afterEach(async () => {
  for (const h of open.splice(0)) await h.destroy()
})

const put = (id: string, n: number): { collection: string, id: string, op: 'put', value: { n: number } } => ({ collection: 'posts', id, op: 'put', value: { n } })

async function storedSeqs (h: Harness, origin: string): Promise<number[]> {
  const prefix = keys.entryPrefix(h.store.logs.of(origin))
  const out: number[] = []
  for await (const key of h.store.db.keys(prefixRange(prefix))) out.push(parseInt(key.slice(prefix.length), 16))
  return out
}

describe('another origin\'s log stored from version 1 batches, after the upgrade', () => {
  it('is held from where its attestations stop, keeps its entries, and loses the entries its refetched attestations do not list', async () => {
    const origin = await Harness.createSigning('origin')
    const relay = await Harness.create('relay')
    open.push(origin, relay)
    const o = origin.self
    await origin.writeLocal([put('a', 1), put('b', 1)]) // run (0, 2]
    // the relay stores it as version 1 delivered it: entries with their run certificate
    const v1 = await origin.log.readRun(o, 0, 1000, 1 << 20)
    if (v1 === undefined) throw new Error('nothing to read')
    expect(await relay.ingestor.ingest(o, v1.fromSeq, v1.toSeq, v1.entries.map(raw => Object.assign(decodeEntry(o, raw), { bytes: raw })), v1.certs.map(decodeCert))).toBeDefined()
    expect(relay.log.vector.get(o)).toBe(2)
    await origin.writeLocal([put('a', 2)]) // (2, 3]: a@1 superseded; the relay has not heard of it

    // the upgrade from format 3: nothing of the origin attested at the relay, so it is held from 0 again
    await toLegacyLogKeys(relay.store.db)
    const ops = await lowerToAttested(relay.store.db, relay.self)
    expect(ops.map(op => [op.type, op.key, Buffer.from(op.value).toString()])).toEqual([['put', legacyLogKeys.vector(o), '0']])
    const batch = relay.store.db.batch()
    for (const op of ops) batch.put(op.key, op.value)
    await batch.write()
    await aliasLegacyLogKeys(relay.store.db) // and on to format 5
    await relay.reopen()
    expect(relay.log.vector.get(o)).toBe(0)
    expect(await storedSeqs(relay, o)).toEqual([1, 2])
    expect(await relay.log.readAttested(o, 0, 1000, 1 << 20)).toBeUndefined() // nothing it can show complete

    // fetched again from the origin, with its attestations (a@1 not live as of 3)
    const b = await origin.log.readAttested(o, 0, 1000, 1 << 20)
    if (b === undefined) throw new Error('nothing attested')
    const entries = b.entries.map(raw => Object.assign(decodeEntry(o, raw), { bytes: raw }))
    const roots = verifyAttestedRuns(o, entries, b.certs, { from: b.fromSeq, to: b.toSeq })
    expect(entries.map(e => e.seq)).toEqual([2, 3])
    expect(await relay.ingestor.ingest(o, b.fromSeq, b.toSeq, entries, [], { certs: b.certs.map((cert, i) => ({ cert, root: roots[i] })), updates: b.updates })).toBeDefined()
    expect(relay.log.vector.get(o)).toBe(3)
    expect(await storedSeqs(relay, o)).toEqual([2, 3])
    expect(Buffer.from(await relay.raw(keys.latest(relay.store.logs.of(o), 'posts', 'a')) ?? []).toString()).toBe('3')
    // what the relay serves of it now verifies, and after a restart too
    for (let i = 0; i < 2; i++) {
      const served = await relay.log.readAttested(o, 0, 1000, 1 << 20)
      if (served === undefined) throw new Error('the relay serves nothing')
      expect(served.toSeq).toBe(3)
      verifyAttestedRuns(o, served.entries.map(raw => Object.assign(decodeEntry(o, raw), { bytes: raw })), served.certs, { from: served.fromSeq, to: served.toSeq })
      expect(relay.log.servable.get(o)).toBe(3)
      await relay.reopen()
    }
    // nothing left to lower
    await toLegacyLogKeys(relay.store.db)
    expect(await lowerToAttested(relay.store.db, relay.self)).toEqual([])
  })
})
