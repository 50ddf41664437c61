/**
 * The keys of rule streams (src/node/stream-keys.ts) on a real LevelDB: an
 * own stream's epochs are kept and found again after a restart, one key per
 * epoch however many ask at once; an envelope opens only for the peer it
 * was sealed to; and who may write an envelope (TrustPolicy).
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { newEntry } from '../../src/log/entry.js'
import { logId } from '../../src/log/log-id.js'
import { deriveStreamKey, EncryptionError, StreamKey } from '../../src/log/seal.js'
import { sealEntry } from '../../src/log/sealed-entry.js'
import { envelopeId, FIRST_EPOCH, isOwnEnvelope, missingEnvelopes, StreamKeys } from '../../src/node/stream-keys.js'
import { TrustPolicy } from '../../src/node/trust.js'
import { Registry } from '../../src/registry/registry.js'
import { encodeJson, Store } from '../../src/store/db.js'
import { keys } from '../../src/store/keys.js'
import { KEYS_COLLECTION, RULES_COLLECTION } from '../../src/store/names.js'
import { encodeRecord } from '../../src/store/records.js'
import { removeDir, tempDir } from '../helpers/nodes.js'

async function identity (): Promise<{ key: Awaited<ReturnType<typeof generateKeyPair>>, peer: string }> {
  const key = await generateKeyPair('Ed25519')
  return { key, peer: peerIdFromPrivateKey(key).toString() }
}

async function withStore<T> (fn: (store: Store, dir: string) => Promise<T>): Promise<T> {
  const dir = await tempDir()
  const store = new Store(dir)
  await store.open()
  try {
    return await fn(store, dir)
  } finally {
    await store.close()
    await removeDir(dir)
  }
}

/** Write the envelope as the `$keys` record a target holds once it arrived. */
async function putEnvelope (store: Store, id: string, value: object): Promise<void> {
  await store.db.put(keys.record(KEYS_COLLECTION, id), encodeRecord({ value: value as never, version: { hlc: { wall: 1, logical: 0 }, origin: 'x', seq: 1 } }))
}

describe('stream keys', () => {
  it('a rotation above an epoch asked while a lower one is being made starts an epoch above it, not the lower one', async () => {
    const { key, peer } = await identity()
    await withStore(async (store) => {
      const a = new StreamKeys(store, peer, key)
      await a.load()
      await a.current('r.s')
      // a member left (after epoch 1) while entries of epochs up to 5 came back (a restore)
      const [left, restored] = await Promise.all([a.rotate('r.s', 1), a.rotate('r.s', 5)])
      expect(left.epoch).toBe(2)
      expect(restored.epoch).toBe(6)
      expect(a.currentIfAny('r.s')?.epoch).toBe(6)
    })
  })

  it('an own stream\'s key is made once however many ask at once, rotates to a new epoch, and every epoch is found again after a restart', async () => {
    const { key, peer } = await identity()
    const dir = await tempDir()
    try {
      let store = new Store(dir)
      await store.open()
      const a = new StreamKeys(store, peer, key)
      await a.load()
      const [k1, k2, k3] = await Promise.all([a.current('r.s'), a.current('r.s'), a.current('r.s')])
      expect(k1.epoch).toBe(FIRST_EPOCH)
      expect(Buffer.from(k2.key.bytes)).toEqual(Buffer.from(k1.key.bytes))
      expect(Buffer.from(k3.key.bytes)).toEqual(Buffer.from(k1.key.bytes))
      const [r1, r2] = await Promise.all([a.rotate('r.s', 1), a.rotate('r.s', 1)])
      expect(r1.epoch).toBe(2)
      expect(Buffer.from(r2.key.bytes)).toEqual(Buffer.from(r1.key.bytes))
      expect(Buffer.from(r1.key.bytes)).not.toEqual(Buffer.from(k1.key.bytes))
      // a rotation asked for after one that already happened does not start a third epoch
      expect((await a.rotate('r.s', 1)).epoch).toBe(2)
      await store.close()
      store = new Store(dir)
      await store.open()
      const b = new StreamKeys(store, peer, key)
      await b.load()
      expect((await b.current('r.s')).epoch).toBe(2)
      expect(b.epochs('r.s').map(e => e.epoch)).toEqual([2, 1])
      expect(Buffer.from((await b.keyFor(logId(peer, 'r.s'), 1))?.bytes ?? [])).toEqual(Buffer.from(k1.key.bytes))
      await store.close()
    } finally {
      await removeDir(dir)
    }
  })

  it('an own stream\'s keys are derived from the identity: a database without them makes the same key for the same epoch, another identity another key', async () => {
    const { key, peer } = await identity()
    const other = await identity()
    const made = await withStore(async (store) => {
      const a = new StreamKeys(store, peer, key)
      await a.load()
      await a.current('r.s')
      await a.rotate('r.s', 1)
      return a.epochs('r.s').map(e => Buffer.from(e.key.bytes).toString('hex'))
    })
    await withStore(async (store) => {
      const b = new StreamKeys(store, peer, key)
      await b.load()
      await b.current('r.s')
      await b.rotate('r.s', 1)
      expect(b.epochs('r.s').map(e => Buffer.from(e.key.bytes).toString('hex'))).toEqual(made)
    })
    await withStore(async (store) => {
      const c = new StreamKeys(store, peer, other.key)
      expect(Buffer.from((await c.current('r.s')).key.bytes).toString('hex')).not.toBe(made[1])
    })
  })

  it('recover: the key of an epoch whose entries came back is derived again, stored marked recovered, never made current; a key an earlier build made at random is not', async () => {
    const { key, peer } = await identity()
    const stream = 'r.0123456789abcdef0123'
    const log = logId(peer, stream)
    const plain = (seq: number): ReturnType<typeof newEntry> => newEntry(log, seq, { wall: seq, logical: 0 }, 'posts', `p${seq}`, 'put', encodeJson({ n: seq }))
    // what the stream held before the restore: epoch 1, then epoch 2 (derived), and epoch 3 under a random key
    const before = await withStore(async (store) => {
      const a = new StreamKeys(store, peer, key)
      await a.current(stream)
      return (await a.rotate(stream, 1)).key
    })
    const came = [sealEntry(before, 2, plain(5)), sealEntry(before, 2, plain(6)), sealEntry(StreamKey.generate(), 3, plain(7))]
    const dir = await tempDir()
    try {
      let store = new Store(dir)
      await store.open()
      const b = new StreamKeys(store, peer, key)
      await b.load()
      expect((await b.current(stream)).epoch).toBe(1)
      const txn = store.txn()
      expect(b.recover(txn, stream, came)).toEqual({ recovered: [2], unrecoverable: [3] })
      await txn.commit()
      // reported once; a held epoch is not derived again
      expect(b.recover(store.txn(), stream, came)).toEqual({ recovered: [], unrecoverable: [] })
      expect(b.currentIfAny(stream)?.epoch).toBe(1)
      expect(b.epochs(stream).map(e => [e.epoch, e.recovered === true])).toEqual([[1, false], [2, true]])
      expect(Buffer.from((await b.keyFor(log, 2))?.bytes ?? [])).toEqual(Buffer.from(before.bytes))
      await store.close()
      store = new Store(dir)
      await store.open()
      const c = new StreamKeys(store, peer, key)
      await c.load()
      expect(c.currentIfAny(stream)?.epoch).toBe(1)
      expect(c.epochs(stream).map(e => [e.epoch, e.recovered === true])).toEqual([[1, false], [2, true]])
      // the stream goes on above every epoch it holds a key of, also when the node stopped before it began a new one
      expect((await c.current(stream)).epoch).toBe(3)
      expect((await c.rotate(stream, 1)).epoch).toBe(3)
      expect(c.epochs(stream).map(e => e.epoch)).toEqual([3, 2, 1])
      await store.close()
    } finally {
      await removeDir(dir)
    }
  })

  it('the envelopes a stream lacks: every epoch for every target without one, but a recovered epoch for no target that held an earlier epoch and not it', () => {
    // epoch 2 began when beta left (gamma holds it); a restored source recovered it, and its registry still lists beta
    const held = [{ epoch: 1, peer: 'beta' }, { epoch: 1, peer: 'gamma' }, { epoch: 2, peer: 'gamma' }]
    const epochs = [{ epoch: 3, key: 'k3' }, { epoch: 2, key: 'k2', recovered: true as const }, { epoch: 1, key: 'k1' }]
    expect(missingEnvelopes(epochs, ['beta', 'gamma', 'delta'], held)).toEqual([
      { epoch: 3, key: 'k3', peer: 'beta' }, { epoch: 3, key: 'k3', peer: 'gamma' }, { epoch: 3, key: 'k3', peer: 'delta' },
      // delta never held a key of the stream: it joins, and reads it from its start
      { epoch: 2, key: 'k2', peer: 'delta' },
      { epoch: 1, key: 'k1', peer: 'delta' }
    ])
    // the same epoch made here (not recovered): a member that comes back gets every epoch it lacks
    expect(missingEnvelopes([{ epoch: 2, key: 'k2' }], ['beta'], held)).toEqual([{ epoch: 2, key: 'k2', peer: 'beta' }])
    // the targets were decided after epoch 2 began (decidedAfter): beta was added again since, and reads it
    expect(missingEnvelopes(epochs, ['beta', 'gamma'], held, new Set([2]))).toEqual([
      { epoch: 3, key: 'k3', peer: 'beta' }, { epoch: 3, key: 'k3', peer: 'gamma' },
      { epoch: 2, key: 'k2', peer: 'beta' }
    ])
  })

  it('decidedAfter: a recovered epoch whose earliest envelope is older than the rule\'s registry record, and only such an epoch', async () => {
    const { key, peer } = await identity()
    const stream = 'r.0123456789abcdef0123'
    await withStore(async (store) => {
      const at = (wall: number): { hlc: { wall: number, logical: number }, origin: string, seq: number } => ({ hlc: { wall, logical: 0 }, origin: peer, seq: wall })
      const put = async (k: string, value: Record<string, unknown>, wall: number): Promise<void> => await store.db.put(k, encodeRecord({ value: value as never, version: at(wall) }))
      // epoch 1 made here; epochs 2 and 3 recovered after a restore (their keys derived again), sealed at 200 (and 250) and 400
      const a = new StreamKeys(store, peer, key)
      const first = await a.current(stream)
      for (const epoch of [2, 3]) {
        const bytes = Buffer.alloc(41)
        bytes.set(deriveStreamKey(key, { origin: peer, stream, epoch }).bytes, 0)
        bytes[40] = 1
        await store.db.put(`m\x00stream-key\x00${stream}\x00${epoch}`, bytes)
      }
      await put(keys.record(KEYS_COLLECTION, envelopeId(peer, stream, 2, 'gamma')), { box: 'x' }, 250)
      await put(keys.record(KEYS_COLLECTION, envelopeId(peer, stream, 2, 'delta')), { box: 'x' }, 200)
      await put(keys.record(KEYS_COLLECTION, envelopeId(peer, stream, 3, 'gamma')), { box: 'x' }, 400)
      const b = new StreamKeys(store, peer, key)
      await b.load()
      expect(b.epochs(stream).map(e => [e.epoch, e.recovered === true])).toEqual([[1, false], [3, true], [2, true]])
      expect(first.epoch).toBe(1)
      // no record of the rule: nothing decided after
      expect([...await b.decidedAfter(stream, 'r-1')]).toEqual([])
      await put(keys.record(RULES_COLLECTION, 'r-1'), { id: 'r-1' }, 100)
      expect([...await b.decidedAfter(stream, 'r-1')]).toEqual([])
      // between the epochs' first envelopes: after epoch 2 began (its earliest envelope at 200), before epoch 3
      await put(keys.record(RULES_COLLECTION, 'r-1'), { id: 'r-1' }, 300)
      expect([...await b.decidedAfter(stream, 'r-1')]).toEqual([2])
      await put(keys.record(RULES_COLLECTION, 'r-1'), { id: 'r-1' }, 500)
      expect([...await b.decidedAfter(stream, 'r-1')].sort()).toEqual([2, 3])
      // an epoch made here is never among them
      expect((await b.current(stream)).epoch).toBe(4)
      expect([...await b.decidedAfter(stream, 'r-1')].sort()).toEqual([2, 3])
    })
  })

  it('an envelope opens for the peer it was sealed to only; a node without one holds no key', async () => {
    const source = await identity()
    const target = await identity()
    const other = await identity()
    const stream = 'r.0123456789abcdef0123'
    await withStore(async (sourceStore) => {
      const keysOfSource = new StreamKeys(sourceStore, source.peer, source.key)
      const { epoch, key } = await keysOfSource.current(stream)
      const envelope = keysOfSource.envelope(stream, epoch, key, target.peer)
      await withStore(async (store) => {
        const t = new StreamKeys(store, target.peer, target.key)
        expect(await t.keyFor(logId(source.peer, stream), epoch)).toBeUndefined()
        await putEnvelope(store, envelopeId(source.peer, stream, epoch, target.peer), envelope)
        expect(Buffer.from((await t.keyFor(logId(source.peer, stream), epoch))?.bytes ?? [])).toEqual(Buffer.from(key.bytes))
      })
      await withStore(async (store) => {
        // the same box stored as if it were sealed to another peer does not open there
        const o = new StreamKeys(store, other.peer, other.key)
        await putEnvelope(store, envelopeId(source.peer, stream, epoch, other.peer), envelope)
        await expect(o.keyFor(logId(source.peer, stream), epoch)).rejects.toBeInstanceOf(EncryptionError)
      })
    })
  })

  it('an envelope is applied only from the stream\'s origin, and only on a node that carries rules by streams', async () => {
    const origin = await identity()
    const member = await identity()
    const entry = (writer: string, id: string): ReturnType<typeof newEntry> => newEntry(writer, 1, { wall: 1, logical: 0 }, KEYS_COLLECTION, id, 'put', encodeJson({ box: 'AA==' }))
    const streams = new TrustPolicy({ registry: new Registry(), logger: pino({ level: 'silent' }), self: member.peer, streams: true })
    const own = envelopeId(origin.peer, 'r.s', 1, member.peer)
    expect(isOwnEnvelope(own, origin.peer)).toBe(true)
    expect(streams.registry(entry(origin.peer, own), { box: 'AA==' })).toBeUndefined()
    expect(streams.registry(entry(member.peer, own), { box: 'AA==' })).toMatch(/of another node's stream key/)
    // a peer id that is a prefix of another's does not pass for it
    expect(isOwnEnvelope(`${origin.peer}x/r.s/1/${member.peer}`, origin.peer)).toBe(false)
    const plain = new TrustPolicy({ registry: new Registry(), logger: pino({ level: 'silent' }), self: member.peer })
    expect(plain.registry(entry(origin.peer, own), { box: 'AA==' })).toMatch(/does not carry rules by streams/)
  })
})
