/**
 * What a relay serves of another origin's log must verify at a receiver:
 * the batch ends where its last certificate ends (verifyRuns), whatever the
 * relay holds. Real LevelDB stores, ChangeLog and Ingestor (the node's write
 * path, pipelined), and an origin that signs its runs like a node does.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { ChangeLog } from '../../src/log/changelog.js'
import type { EntryRun } from '../../src/log/changelog.js'
import { decodeEntry } from '../../src/log/entry.js'
import { decodeCert, RunSigner, verifyRuns } from '../../src/log/signing.js'
import { Ingestor } from '../../src/node/ingest.js'
import type { IngestPolicy } from '../../src/node/ingest.js'
import { RuleSet } from '../../src/rules/ruleset.js'
import { Store } from '../../src/store/db.js'
import { removeDir, tempDir } from '../helpers/nodes.js'

interface Node { dir: string, store: Store, log: ChangeLog, ingestor: Ingestor, self: string }

const opened: Node[] = []

async function open (dir: string, self: string, options: { signer?: RunSigner, policy?: IngestPolicy } = {}): Promise<Node> {
  const store = new Store(join(dir, 'db'))
  await store.open()
  const log = new ChangeLog(store)
  await log.load()
  const ingestor = new Ingestor({ store, log, rules: new RuleSet(), self, ...options })
  await ingestor.load()
  const node = { dir, store, log, ingestor, self }
  opened.push(node)
  return node
}

async function node (options: { signer?: RunSigner, policy?: IngestPolicy, self?: string } = {}): Promise<Node> {
  return await open(await tempDir('syncmesh-relay-'), options.self ?? peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString(), options)
}

/** An origin that signs its runs, as a node does. */
async function signingOrigin (): Promise<Node> {
  const key = await generateKeyPair('Ed25519')
  const self = peerIdFromPrivateKey(key).toString()
  return await node({ self, signer: new RunSigner(key, self) })
}

afterEach(async () => {
  for (const n of opened.splice(0)) {
    await n.store.close().catch(() => {})
    await removeDir(n.dir)
  }
})

/** What a receiver checks before it stores a batch (SyncSession.store); throws what it would count as an offence. */
function receive (origin: string, run: EntryRun): void {
  verifyRuns(origin, run.entries.map(b => decodeEntry(origin, b)), run.certs.map(c => decodeCert(c)), { from: run.fromSeq, to: run.toSeq })
}

/** Hand `run` to `to`'s ingestor the way a sync session does (decoded entries keep their bytes). */
async function deliver (to: Node, origin: string, run: EntryRun): Promise<void> {
  const entries = run.entries.map(b => {
    const e = decodeEntry(origin, b)
    e.bytes = b
    return e
  })
  await to.ingestor.ingest(origin, run.fromSeq, run.toSeq, entries, run.certs.map(c => decodeCert(c)))
}

async function put (origin: Node, ...ids: string[]): Promise<void> {
  await origin.ingestor.writeLocal(ids.map(id => ({ collection: 'events', id, op: 'put' as const, value: { id, at: Date.now() } })))
}

describe('a relay that stored an origin only up to its revocation', () => {
  it('serves batches that end at its last stored run, and nothing past it', async () => {
    const o = await signingOrigin()
    let revokedAfter = Infinity
    const relay = await node({ policy: { acceptsEntry: (origin, seq) => origin !== o.self || seq <= revokedAfter } })
    await put(o, 'a', 'b') // (0, 2]
    await put(o, 'c') // (2, 3]
    await deliver(relay, o.self, (await o.log.readRun(o.self, 0, 512, 1 << 20))!)
    expect(relay.log.vector.get(o.self)).toBe(3)
    // the origin is revoked after seq 3; its later runs reach the relay, which keeps none of them
    revokedAfter = 3
    await put(o, 'a', 'd') // (3, 5]
    await put(o, 'e') // (5, 6]
    await deliver(relay, o.self, (await o.log.readRun(o.self, 3, 512, 1 << 20))!)
    // the relay holds the origin's log as far as the origin's batch went (so it is not sent again) ...
    expect(relay.log.vector.get(o.self)).toBe(6)

    // ... but its runs end at 3: a peer below the revocation point (which verifies what it gets) is
    // served through 3, not "up to 6" with nothing to prove it
    const low = await relay.log.readRun(o.self, 0, 512, 1 << 20)
    expect(low).toBeDefined()
    receive(o.self, low!)
    expect(low!.toSeq).toBe(3)
    const mid = await relay.log.readRun(o.self, 2, 512, 1 << 20)
    receive(o.self, mid!)
    expect(mid!.toSeq).toBe(3)
    // from 3 the relay proves nothing: it sends nothing (a peer that does not know of the revocation
    // yet verifies, and would count "(3, 6] … claims seqs beyond its signed runs" as an offence)
    expect(await relay.log.readRun(o.self, 3, 512, 1 << 20)).toBeUndefined()
    expect(await relay.log.readRun(o.self, 3, 512, 1 << 20, 6)).toBeUndefined()
    // and no peer at 3 is counted as lacking the origin (a sender would read it again and again),
    // also once the relay restarts
    expect(relay.log.servable.get(o.self)).toBe(3)
    await relay.store.close()
    opened.splice(opened.indexOf(relay), 1)
    const again = await open(relay.dir, relay.self)
    expect(again.log.vector.get(o.self)).toBe(6)
    expect(again.log.servable.get(o.self)).toBe(3)
    receive(o.self, (await again.log.readRun(o.self, 2, 512, 1 << 20))!)
    expect(await again.log.readRun(o.self, 3, 512, 1 << 20)).toBeUndefined()
  })

  it('and after it purged that log, serves none of it', async () => {
    const o = await signingOrigin()
    const relay = await node()
    await put(o, 'a', 'b')
    await put(o, 'a')
    await deliver(relay, o.self, (await o.log.readRun(o.self, 0, 512, 1 << 20))!)
    expect(relay.log.vector.get(o.self)).toBe(3)
    expect(await relay.log.purge(o.self)).toBeGreaterThan(0)
    // the vector is kept (peers do not send the log again), the log and its certificates are gone
    expect(relay.log.vector.get(o.self)).toBe(3)
    for (const after of [0, 2]) expect(await relay.log.readRun(o.self, after, 512, 1 << 20)).toBeUndefined()
    expect(relay.log.servable.get(o.self)).toBe(0)
    await relay.store.close()
    opened.splice(opened.indexOf(relay), 1)
    const again = await open(relay.dir, relay.self)
    expect(again.log.vector.get(o.self)).toBe(3)
    expect(again.log.servable.get(o.self)).toBe(0)
  })
})

describe('relays of a hot log', () => {
  /** Seeded PRNG (mulberry32): the same schedule on every run. */
  function prng (seed: number): () => number {
    let s = seed >>> 0
    return () => {
      s = (s + 0x6D2B79F5) >>> 0
      let t = s
      t = Math.imul(t ^ (t >>> 15), t | 1)
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296
    }
  }

  // An origin updating a handful of records (every run compacts older ones) and three relays that
  // pull from it and from each other: pipelined ingests (several in flight, from several sources),
  // re-deliveries from stale positions, batches cut by entry and byte limits, lazy caps at earlier
  // servable points, restarts. Every batch any of them serves must verify.
  for (const seed of [1, 2, 3]) {
    it(`serve only batches that verify (schedule ${seed})`, async () => {
      const rnd = prng(seed)
      const o = await signingOrigin()
      const relays = [await node(), await node(), await node()]
      const all = [o, ...relays]
      const history = new Map<Node, number[]>(all.map(n => [n, [0]]))
      const inFlight = new Map<Node, Array<Promise<void>>>(relays.map(n => [n, []]))
      const ids = ['a', 'b', 'c', 'd', 'e']
      let served = 0
      for (let step = 0; step < 700; step++) {
        for (const n of all) {
          const h = history.get(n)!
          const s = n.log.servable.get(o.self)
          if (s !== h[h.length - 1]) h.push(s)
        }
        const r = rnd()
        if (r < 0.25) {
          const count = 1 + Math.floor(rnd() * (rnd() < 0.1 ? 40 : 4))
          await put(o, ...Array.from({ length: count }, () => ids[Math.floor(rnd() * ids.length)]))
          continue
        }
        if (r < 0.27) {
          // a restart: what was issued lands, the node reopens from disk
          const i = Math.floor(rnd() * relays.length)
          const old = relays[i]
          await Promise.all(inFlight.get(old)!.splice(0))
          await old.store.close()
          opened.splice(opened.indexOf(old), 1)
          const next = await open(old.dir, old.self)
          relays[i] = next
          all[i + 1] = next
          history.set(next, [next.log.servable.get(o.self)])
          inFlight.set(next, [])
          continue
        }
        const from = rnd() < 0.3 ? o : all[Math.floor(rnd() * all.length)]
        const to = relays[Math.floor(rnd() * relays.length)]
        if (from === to) continue
        const past = history.get(to)!
        const pick = rnd()
        const after = pick < 0.5 ? to.log.vector.get(o.self) : pick < 0.8 ? to.log.held(o.self) : past[Math.floor(rnd() * past.length)]
        const caps = history.get(from)!
        const cap = rnd() < 0.3 ? caps[Math.floor(rnd() * caps.length)] : Infinity
        const run = await from.log.readRun(o.self, after, rnd() < 0.5 ? 1 + Math.floor(rnd() * 4) : 512, rnd() < 0.3 ? 1 + Math.floor(rnd() * 200) : 1 << 20, cap)
        if (run === undefined) continue
        receive(o.self, run)
        served++
        const pending = inFlight.get(to)!
        pending.push(deliver(to, o.self, run))
        if (rnd() < 0.1 || pending.length > 8) await Promise.all(pending.splice(0))
      }
      for (const n of relays) await Promise.all(inFlight.get(n)!.splice(0))
      expect(served).toBeGreaterThan(100)
      // and in the end every relay holds the origin's whole log, served from any point
      for (const n of relays) {
        let at = n.log.vector.get(o.self)
        while (at < o.log.vector.get(o.self)) {
          const run = await o.log.readRun(o.self, at, 512, 1 << 20)
          receive(o.self, run!)
          await deliver(n, o.self, run!)
          at = n.log.vector.get(o.self)
        }
        const whole = await n.log.readRun(o.self, 0, 100_000, 1 << 30)
        receive(o.self, whole!)
        expect(whole!.toSeq).toBe(o.log.vector.get(o.self))
      }
    }, 120_000)
  }
})
