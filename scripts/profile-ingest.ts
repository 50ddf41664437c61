/**
 * `npm run profile:ingest [-- --records N --mode store|live|backfill]`: the
 * receiving side of a bulk sync in one process, without the network, to see
 * what one received entry costs: a source log of N signed entries is cut
 * into Batch frames exactly as a sender does (encodeBatchFrame), then a
 * fresh node (real LevelDB in a temp dir) decodes, verifies and ingests them.
 *
 *   store     no rule: the log is only stored (store and forward)
 *   live      a rule source:bulk → target:bulk exists first: entries are applied as they arrive
 *   backfill  the log is stored, then the rule arrives and its backfill applies it
 *
 * Prints the rate and the time of each stage. Run with `node --cpu-prof` on
 * dist/scripts/profile-ingest.js for a profile.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import '../src/polyfill.js'
import { ChangeLog } from '../src/log/changelog.js'
import type { LogEntry } from '../src/log/entry.js'
import { encodeEntry } from '../src/log/entry.js'
import { RunSigner, encodeCert, verifyRuns } from '../src/log/signing.js'
import type { Cert } from '../src/log/signing.js'
import { decodeFrame, encodeBatchFrame } from '../src/network/sync/codec.js'
import { Ingestor } from '../src/node/ingest.js'
import type { JsonObject } from '../src/core/types.js'
import { Registry } from '../src/registry/registry.js'
import { RuleSet } from '../src/rules/ruleset.js'
import { encodeJson, Store } from '../src/store/db.js'

const args = process.argv.slice(2)
const arg = (name: string): string | undefined => { const i = args.indexOf(name); return i === -1 ? undefined : args[i + 1] }
const N = Number(arg('--records') ?? 100_000)
const MODE = arg('--mode') ?? 'live'
const RUN = 512
const filler = 'lorem ipsum dolor sit amet '.repeat(7)

async function main (): Promise<void> {
  const sourceKey = await generateKeyPair('Ed25519')
  const source = peerIdFromPrivateKey(sourceKey).toString()
  const self = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
  const signer = new RunSigner(sourceKey, source)
  let seq = 0
  let wall = Date.now() - 3_600_000
  const entry = (collection: string, id: string, value: JsonObject): LogEntry => ({ origin: source, seq: ++seq, hlc: { wall: wall++, logical: 0 }, collection, id, op: 'put', value: encodeJson(value) })
  const frames: Uint8Array[] = []
  const pushRun = (entries: LogEntry[]): void => {
    const from = entries[0].seq - 1
    const cert: Cert = signer.sign(from, entries[entries.length - 1].seq, entries)
    frames.push(encodeBatchFrame(source, from, cert.to, entries.map(e => e.bytes ?? encodeEntry(e)), [encodeCert(cert)]))
  }
  const registry = [
    entry('$platforms', 'source', { name: 'source', peerId: source, addrs: [] }),
    entry('$platforms', 'target', { name: 'target', peerId: self, addrs: [] })
  ]
  const rule = (): LogEntry => entry('$rules', 'r1', { from: { platform: 'source', collection: 'bulk' }, to: { platform: 'target', collection: 'bulk' }, mode: 'merge', createdAt: '2026-01-01T00:00:00.000Z' })
  if (MODE === 'live') registry.push(rule())
  pushRun(registry)
  let pending: LogEntry[] = []
  for (let i = 0; i < N; i++) {
    pending.push(entry('bulk', `r${String(i).padStart(8, '0')}`, { n: i, title: `record ${i}`, body: filler }))
    if (pending.length === RUN) { pushRun(pending); pending = [] }
  }
  if (pending.length > 0) pushRun(pending)
  if (MODE === 'backfill') pushRun([rule()])

  const dir = await mkdtemp(join(tmpdir(), 'syncmesh-profile-ingest-'))
  const store = new Store(join(dir, 'db'))
  await store.open()
  try {
    const log = new ChangeLog(store)
    await log.load()
    const reg = new Registry()
    const rules = new RuleSet()
    const ingestor = new Ingestor({ store, log, rules, self })
    await ingestor.load()
    // as the node does: registry changes take effect under the write lock, before the next batch
    ingestor.onRegistry = (changes) => {
      for (const x of changes) reg.apply(x.collection, x.id, x.value)
      rules.rebuild(reg, 'target')
    }
    const t = { decode: 0, verify: 0, ingest: 0, backfill: 0 }
    const inflight: Array<Promise<void>> = []
    const t0 = performance.now()
    for (const f of frames) {
      let a = performance.now()
      const msg = decodeFrame(f.subarray(f[0] < 0x80 ? 1 : f[1] < 0x80 ? 2 : f[2] < 0x80 ? 3 : 4))
      if (msg.type !== 'batch') throw new Error('not a batch')
      let b = performance.now()
      t.decode += b - a
      a = b
      verifyRuns(msg.origin, msg.entries, msg.certs, { from: msg.fromSeq, to: msg.toSeq })
      b = performance.now()
      t.verify += b - a
      a = b
      // as a sync session does: up to 4 batches in flight (applied while the previous one is written)
      const from = msg.fromSeq
      const to = msg.toSeq
      inflight.push(ingestor.ingest(msg.origin, from, to, msg.entries, msg.certs).then((res) => {
        if (res === undefined || res.advanced === undefined) throw new Error(`batch (${from}, ${to}] was not stored`)
      }))
      while (inflight.length >= 4) await inflight.shift()
      t.ingest += performance.now() - a
    }
    const a = performance.now()
    for (const p of inflight.splice(0)) await p
    t.ingest += performance.now() - a
    if (MODE === 'backfill') {
      const a = performance.now()
      const compiled = rules.get('r1')
      if (compiled === undefined) throw new Error('the rule did not compile')
      await ingestor.backfill(compiled, () => {}, () => true)
      t.backfill = performance.now() - a
    }
    const total = performance.now() - t0
    if (log.vector.get(source) !== seq) throw new Error(`stored up to ${log.vector.get(source)} of ${seq}`)
    if (MODE !== 'store' && ingestor.applied('r1') !== N) throw new Error(`applied ${ingestor.applied('r1')} of ${N}`)
    const us = (ms: number): number => +(ms * 1000 / N).toFixed(2)
    console.log(JSON.stringify({
      mode: MODE,
      records: N,
      recordsPerSecond: Math.round(N / total * 1000),
      microsecondsPerRecord: { total: us(total), decode: us(t.decode), verify: us(t.verify), ingest: us(t.ingest), backfill: us(t.backfill) },
      heapUsedMB: Math.round(process.memoryUsage().heapUsed / 1e6),
      rssMB: Math.round(process.memoryUsage().rss / 1e6)
    }, null, 2))
  } finally {
    await store.close()
    await rm(dir, { recursive: true, force: true })
  }
}

main().catch((err: Error) => {
  console.error(`profile failed: ${err.stack ?? err.message}`)
  process.exit(1)
})
