/**
 * Log ids (src/log/log-id.ts): a peer's whole log `<peer id>` or one of its
 * streams `<peer id>/<stream>`. Parsing and validation, the key that verifies
 * a stream log (its peer's), and the signature binding the whole log id: a
 * stream's runs do not pass for another stream's or for the whole log's.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { describe, expect, it } from 'vitest'
import { ChangeLog } from '../../src/log/changelog.js'
import { decodeEntry, encodeEntry } from '../../src/log/entry.js'
import type { LogEntry } from '../../src/log/entry.js'
import { isLogId, isLogOf, isStreamId, logId, LogIdError, parseLogId, peerOf, streamOf } from '../../src/log/log-id.js'
import { Attester, RunSigner, SignatureError, verifyAttestedRuns, verifyRuns } from '../../src/log/signing.js'
import { offenceCheckOf, OFFENCE_CHECKS } from '../../src/network/sync/checks.js'
import { decodeFrame, encodeBatchFrame, encodeHave, encodeVector } from '../../src/network/sync/codec.js'
import { ProtocolError } from '../../src/core/errors.js'
import { VersionVector } from '../../src/log/vector.js'
import { Store } from '../../src/store/db.js'
import { OriginLog } from '../helpers/ingest-harness.js'
import { Registry } from '../../src/registry/registry.js'
import { PLATFORMS_COLLECTION } from '../../src/store/names.js'
import { TrustPolicy } from '../../src/node/trust.js'
import { pino } from 'pino'
import { removeDir, tempDir } from '../helpers/nodes.js'

const PEER = '12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf'

async function identity (): Promise<{ key: PrivateKey, peer: string }> {
  const key = await generateKeyPair('Ed25519')
  return { key, peer: peerIdFromPrivateKey(key).toString() }
}

/** Entries of log `origin` as a receiver decodes them (no cached bytes or leaf). */
function received (origin: string, entries: LogEntry[]): LogEntry[] {
  return entries.map(e => decodeEntry(origin, encodeEntry(e)))
}

/** A frame's payload without its varint length prefix. */
function unframe (bytes: Uint8Array): Uint8Array {
  let i = 0
  while ((bytes[i++] & 0x80) !== 0);
  return bytes.subarray(i)
}

function thrown (f: () => unknown): Error {
  try {
    f()
  } catch (err) {
    return err as Error
  }
  throw new Error('expected a throw')
}

describe('log ids', () => {
  it('parse: a peer id is a whole log, a peer id, "/" and a stream id a stream log', () => {
    expect(parseLogId(PEER)).toEqual({ peer: PEER })
    expect(parseLogId(`${PEER}/reg`)).toEqual({ peer: PEER, stream: 'reg' })
    expect(parseLogId(`${PEER}/r.rule1.12`)).toEqual({ peer: PEER, stream: 'r.rule1.12' })
    expect(logId(PEER)).toBe(PEER)
    expect(logId(PEER, 'r.x.1')).toBe(`${PEER}/r.x.1`)
    expect(peerOf(`${PEER}/r.x.1`)).toBe(PEER)
    expect(peerOf(PEER)).toBe(PEER)
    expect(streamOf(`${PEER}/r.x.1`)).toBe('r.x.1')
    expect(streamOf(PEER)).toBeUndefined()
    expect(isLogId(`${PEER}/${'a'.repeat(64)}`)).toBe(true)
  })

  it('refuse anything else with LOG_ID_INVALID', () => {
    const bad = [
      '', 'not-a-peer', `${PEER}/`, `${PEER}/Reg`, `${PEER}/r_1`, `${PEER}/a/b`, `${PEER}//reg`,
      `${PEER}/${'a'.repeat(65)}`, `${PEER}/r\u00e9g`, `${PEER}/r g`, `${PEER}/reg\x00`, `/reg`, `x/reg`,
      `${PEER}\x00/reg`, `${PEER.slice(0, 20)}/reg`
    ]
    for (const id of bad) {
      expect(isLogId(id), id).toBe(false)
      const err = thrown(() => parseLogId(id))
      expect(err, id).toBeInstanceOf(LogIdError)
      expect((err as LogIdError).code).toBe('LOG_ID_INVALID')
    }
    expect(isStreamId('')).toBe(false)
    expect(isStreamId('a'.repeat(65))).toBe(false)
    expect((thrown(() => logId(PEER, 'UPPER')) as LogIdError).code).toBe('LOG_ID_INVALID')
    expect((thrown(() => logId('nope', 'reg')) as LogIdError).code).toBe('LOG_ID_INVALID')
  })

  it('tell the logs of a peer from those of a peer whose id it prefixes', () => {
    expect(isLogOf(PEER, PEER)).toBe(true)
    expect(isLogOf(`${PEER}/reg`, PEER)).toBe(true)
    expect(isLogOf(`${PEER}x/reg`, PEER)).toBe(false)
    expect(isLogOf(`${PEER}x`, PEER)).toBe(false)
    expect(isLogOf(PEER.slice(0, -1), PEER)).toBe(false)
  })
})

describe('stream logs are signed by their peer and bound to their log id', () => {
  it('a stream log\'s runs signed by its peer verify; under another stream or the whole log id they are refused', async () => {
    const { key, peer } = await identity()
    const stream = logId(peer, 'r.test.1')
    const o = new OriginLog(stream)
    const entries = [o.put('posts', 'a', { n: 1 }), o.put('posts', 'b', { n: 2 }), o.del('posts', 'a')]
    const signer = new RunSigner(key, peer).forLog(stream)
    expect(signer.origin).toBe(stream)
    const cert = signer.sign(0, 3, entries.map(e => ({ ...e })))
    verifyRuns(stream, received(stream, entries), [cert], { from: 0, to: 3 })
    for (const elsewhere of [logId(peer, 'r.test.2'), peer, logId(peer, 'reg')]) {
      const err = thrown(() => verifyRuns(elsewhere, received(elsewhere, entries), [cert], { from: 0, to: 3 }))
      expect(err, elsewhere).toBeInstanceOf(SignatureError)
      expect(offenceCheckOf(err)).toBe(OFFENCE_CHECKS.RUN_SIGNATURE_MISMATCH)
    }
    // and the whole log's runs do not pass for a stream's
    const whole = new RunSigner(key, peer).sign(0, 3, received(peer, entries))
    expect(() => verifyRuns(stream, received(stream, entries), [whole], { from: 0, to: 3 })).toThrow(SignatureError)
    // another peer's key signing a log of this peer: refused (the key is the peer id part's)
    const impostor = new RunSigner(await generateKeyPair('Ed25519'), stream)
    expect(() => verifyRuns(stream, received(stream, entries), [impostor.sign(0, 3, received(stream, entries))], { from: 0, to: 3 })).toThrow(SignatureError)
  })

  it('version 2 attestations and gone spans bind the stream too', async () => {
    const { key, peer } = await identity()
    const stream = logId(peer, 'r.test.1')
    const o = new OriginLog(stream)
    const entries = [o.put('posts', 'a', { n: 1 }), o.put('posts', 'b', { n: 2 })]
    const att = new Attester(key, peer).forLog(stream)
    const { cert } = att.run(0, 2, entries.map(e => ({ ...e })))
    expect(verifyAttestedRuns(stream, received(stream, entries), [cert], { from: 0, to: 2 })).toHaveLength(1)
    const other = logId(peer, 'r.test.2')
    const err = thrown(() => verifyAttestedRuns(other, received(other, entries), [cert], { from: 0, to: 2 }))
    expect(offenceCheckOf(err)).toBe(OFFENCE_CHECKS.RUN_SIGNATURE_MISMATCH)
    expect(() => verifyAttestedRuns(peer, received(peer, entries), [cert], { from: 0, to: 2 })).toThrow(SignatureError)
    const gone = att.gone(0, 2, 4)
    expect(verifyAttestedRuns(stream, [], [gone], { from: 0, to: 2 })).toEqual([undefined])
    expect(offenceCheckOf(thrown(() => verifyAttestedRuns(other, [], [gone], { from: 0, to: 2 })))).toBe(OFFENCE_CHECKS.GONE_SPAN_INVALID)
  })

  it('a signer signs only logs of its own peer', async () => {
    const { key, peer } = await identity()
    const { peer: stranger } = await identity()
    expect((thrown(() => new RunSigner(key, peer).forLog(logId(stranger, 'reg'))) as LogIdError).code).toBe('LOG_ID_INVALID')
    expect((thrown(() => new Attester(key, peer).forLog(`${peer}/NOPE`)) as LogIdError).code).toBe('LOG_ID_INVALID')
  })

  it('a log id whose stream does not parse verifies nothing (ORIGIN_KEY_INVALID)', async () => {
    const { key, peer } = await identity()
    const o = new OriginLog(peer)
    const entries = [o.put('posts', 'a', { n: 1 })]
    const cert = new RunSigner(key, peer).sign(0, 1, entries.map(e => ({ ...e })))
    const err = thrown(() => verifyRuns(`${peer}/BAD`, received(`${peer}/BAD`, entries), [cert], { from: 0, to: 1 }))
    expect(offenceCheckOf(err)).toBe(OFFENCE_CHECKS.ORIGIN_KEY_INVALID)
  })

  it('the change log keeps a stream log apart from its peer\'s whole log and signs own stream logs with attestations', async () => {
    const dir = await tempDir()
    const store = new Store(dir)
    await store.open()
    try {
      const { key, peer } = await identity()
      const log = new ChangeLog(store)
      log.attestOwnLog(peer, new Attester(key, peer))
      await log.load()
      const stream = logId(peer, 'r.test.1')
      const o = new OriginLog(stream)
      const entries = [o.put('posts', 'a', { n: 1 }), o.put('posts', 'a', { n: 2 }), o.put('posts', 'b', { n: 3 })]
      const txn = store.txn()
      const cert = new RunSigner(key, peer).forLog(stream).sign(0, 3, entries)
      await log.append(txn, stream, entries, 3, [cert], { written: true })
      await txn.commit()
      log.committed(stream, 3)
      expect(log.vector.get(stream)).toBe(3)
      expect(log.vector.get(peer)).toBe(0)
      // served as its peer attested it (the first entry of "a" superseded): what a receiver verifies
      const read = await log.readAttested(stream, 0, 100, 1 << 20)
      expect(read?.toSeq).toBe(3)
      const served = (read?.entries ?? []).map(b => decodeEntry(stream, b))
      expect(served.map(e => e.seq)).toEqual([2, 3])
      verifyAttestedRuns(stream, served, read?.certs ?? [], { from: 0, to: 3 })
      expect(() => verifyAttestedRuns(peer, served.map(e => ({ ...e, origin: peer, bytes: undefined, leaf: undefined })), read?.certs ?? [], { from: 0, to: 3 })).toThrow(SignatureError)
      expect(await log.readAttested(peer, 0, 100, 1 << 20)).toBeUndefined()
    } finally {
      await store.close()
      await removeDir(dir)
    }
  })
})

describe('log ids on the wire', () => {
  it('a batch, a vector and a Have may name a stream log', () => {
    const stream = `${PEER}/r.test.1`
    const o = new OriginLog(stream)
    const e = o.put('posts', 'a', { n: 1 })
    const msg = decodeFrame(unframe(encodeBatchFrame(stream, 0, 1, [encodeEntry(e)])))
    expect(msg.type === 'batch' && msg.origin).toBe(stream)
    const v = decodeFrame(unframe(encodeVector(VersionVector.from([[stream, 4], [PEER, 2]]))))
    expect(v.type === 'vector' && v.vector.get(stream)).toBe(4)
    const h = decodeFrame(unframe(encodeHave(stream, 3)))
    expect(h.type === 'have' && h.origin).toBe(stream)
  })

  it('a log id that does not parse is FRAME_INVALID, in a batch, a vector and a Have', () => {
    for (const bad of [`${PEER}/UP`, `${PEER}/`, `${PEER}/a/b`, `${PEER}/${'a'.repeat(65)}`]) {
      const o = new OriginLog(bad)
      for (const frame of [encodeBatchFrame(bad, 0, 1, [encodeEntry(o.put('posts', 'a', { n: 1 }))]), encodeVector(VersionVector.from([[bad, 1]])), encodeHave(bad, 1)]) {
        const err = thrown(() => decodeFrame(unframe(frame)))
        expect(err, bad).toBeInstanceOf(ProtocolError)
        expect((err as ProtocolError).code).toBe('FRAME_INVALID')
      }
    }
  })
})

describe('what asks about a peer asks about a log id\'s peer', () => {
  it('a revocation refuses the revoked peer\'s stream logs, past its whole log\'s position and before it', async () => {
    const { peer: admin } = await identity()
    const { peer: m } = await identity()
    const { peer: other } = await identity()
    const registry = new Registry()
    registry.apply(PLATFORMS_COLLECTION, 'm', { name: 'm', peerId: m, addrs: [], revoked: true, revokedAfter: 5 }, { origin: admin, seq: 1, hlc: { wall: 1, logical: 0 } })
    const trust = new TrustPolicy({ registry, logger: pino({ level: 'silent' }), self: admin })
    expect(trust.acceptsEntry(m, 5)).toBe(true)
    expect(trust.acceptsEntry(m, 6)).toBe(false)
    // a revocation names a position in the whole log only: none of a stream log is taken
    expect(trust.acceptsEntry(logId(m, 'reg'), 1)).toBe(false)
    expect(trust.acceptsEntry(logId(m, 'r.x.1'), 6)).toBe(false)
    expect(trust.acceptsEntry(logId(other, 'r.x.1'), 1_000)).toBe(true)
    // a peer id that another one extends is not the revoked one
    expect(trust.acceptsEntry(`${m}x`, 1_000)).toBe(true)
  })

  it('entries stamped ahead are the sender\'s offence when it is the stream log\'s peer', async () => {
    const { peer: self } = await identity()
    const { peer: sender } = await identity()
    const { peer: relay } = await identity()
    const now = 1_000_000_000
    const trust = new TrustPolicy({ registry: new Registry(), logger: pino({ level: 'silent' }), self, maxClockAheadMs: 1000, now: () => now })
    const o = new OriginLog(logId(sender, 'r.x.1'), now + 1500)
    const ahead = [o.put('posts', 'a', { n: 1 })]
    // from the stream log's own peer: it stamped them
    expect(trust.clockAhead(sender, logId(sender, 'r.x.1'), ahead)?.offence).toBe(true)
    // from a relay, less than twice the bound ahead: maybe an honest relay's clock
    expect(trust.clockAhead(relay, logId(sender, 'r.x.1'), ahead)?.offence).toBe(false)
  })
})
