/**
 * Mesh-key authentication (src/network/auth/auth.ts, protocols/auth/): the
 * spec's test vector, and key rotation with MeshAuth.setKeys between real
 * libp2p hosts on 127.0.0.1 (TCP, Noise, yamux) — connections that passed stay
 * up, new connections use the new keys — and SyncNode.reloadKeys() with
 * DATA_DIR/keyring.json.
 */
import { generateKeyPair, generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import type { Connection } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { MeshAuth, authProof } from '../../src/network/auth/auth.js'
import { createHost } from '../../src/network/libp2p.js'
import type { Host } from '../../src/network/libp2p.js'
import { fingerprint, writeKeyring } from '../../src/node/keyring.js'
import { countRecords, eventually, removeDir, startNode, tempDir } from '../helpers/nodes.js'
import type { TestNode } from '../helpers/nodes.js'

const KEY_A = '1'.repeat(8) + 'first-mesh-key-of-the-rotation'
const KEY_B = '2'.repeat(8) + 'second-mesh-key-of-the-rotation'
const KEY_C = '3'.repeat(8) + 'a-key-nobody-else-holds-at-all'

describe('auth proof (protocols/auth/README.md §4 test vector)', () => {
  it('matches the published proofs', async () => {
    const dialerKey = await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(1))
    const listenerKey = await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(2))
    const dialer = peerIdFromPrivateKey(dialerKey).toString()
    const listener = peerIdFromPrivateKey(listenerKey).toString()
    expect(dialer).toBe('12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5')
    expect(listener).toBe('12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq')
    const nd = Uint8Array.from({ length: 32 }, (_, i) => i)
    const nl = Uint8Array.from({ length: 32 }, (_, i) => 0x20 + i)
    const key = '0123456789abcdef0123456789abcdef'
    expect(Buffer.from(authProof(key, 'syncmesh/auth/1 listener', nd, nl, listener, dialer)).toString('hex'))
      .toBe('9b84852351cd7a8fb93047fba6e480d543a166119b9208f407b0a246c9f10e49')
    expect(Buffer.from(authProof(key, 'syncmesh/auth/1 dialer', nd, nl, dialer, listener)).toString('hex'))
      .toBe('f56b89724d4c347cc96b9391a5660d92bd924c9027ab2bb0b47bc2966531d750')
  })
})

interface Peer { host: Host, auth: MeshAuth, rejected: string[], peerId: string }

async function peer (keys: string[]): Promise<Peer> {
  const privateKey = await generateKeyPair('Ed25519')
  const rejected: string[] = []
  let auth: MeshAuth | undefined
  const host = await createHost({ privateKey, listen: ['/ip4/127.0.0.1/tcp/0'], isDenied: (p) => auth?.isBanned(p) ?? false })
  auth = new MeshAuth(host, {
    keys,
    logger: pino({ level: 'silent' }),
    banMs: 0, // a failed attempt must not block the next one in these tests
    onAuthenticated: () => {},
    onRejected: (_p, reason) => rejected.push(reason)
  })
  await auth.start()
  await host.start()
  return { host, auth, rejected, peerId: host.peerId.toString() }
}

describe('MeshAuth key rotation between real hosts', () => {
  const peers: Peer[] = []
  afterEach(async () => {
    for (const p of peers.splice(0)) {
      await p.auth.stop().catch(() => {})
      await p.host.stop().catch(() => {})
    }
  })

  function connectionTo (from: Peer, to: Peer): Connection | undefined {
    return from.host.getConnections().find(c => c.remotePeer.toString() === to.peerId && c.status === 'open')
  }

  /** Dial `to` on a new connection; resolves to whether both sides authenticated it. */
  async function fresh (from: Peer, to: Peer): Promise<boolean> {
    for (const c of from.host.getConnections()) {
      // closing a connection whose socket is already gone rejects (EPIPE under load): abort it then
      if (c.remotePeer.toString() === to.peerId) await c.close().catch(() => c.abort(new Error('test: closing')))
    }
    await eventually(() => connectionTo(to, from) === undefined, 'the old connection to be gone on both sides', 5000)
    const conn = await from.host.dial(to.host.getMultiaddrs()[0])
    // a failed exchange closes the connection (either side); a passed one leaves it authenticated
    await eventually(() => from.auth.isAuthenticated(conn) || conn.status !== 'open', 'the exchange to finish', 5000)
    if (!from.auth.isAuthenticated(conn)) return false
    await eventually(() => { const back = connectionTo(to, from); return back !== undefined && to.auth.isAuthenticated(back) }, 'the listener side to pass', 5000)
    return true
  }

  it('rotates KEY_A → KEY_B in three steps; connections stay up; new ones use the new keys', async () => {
    const a = await peer([KEY_A])
    const b = await peer([KEY_A])
    peers.push(a, b)
    expect(await fresh(a, b)).toBe(true)
    const kept = connectionTo(a, b) as Connection

    // step 1 (both): prove KEY_A, accept KEY_B too
    expect(a.auth.setKeys([KEY_A, KEY_B])).toEqual({ staleConnections: 0 })
    expect(b.auth.setKeys([KEY_A, KEY_B])).toEqual({ staleConnections: 0 })
    // step 2, half done: a proves KEY_B, b still KEY_A — both directions still pass
    a.auth.setKeys([KEY_B, KEY_A])
    const c = await peer([KEY_A, KEY_B])
    peers.push(c)
    expect(await fresh(c, a)).toBe(true) // a proves KEY_B to c
    expect(await fresh(a, c)).toBe(true)
    b.auth.setKeys([KEY_B, KEY_A])
    // step 3: KEY_A retired; the connection a-b authenticated with KEY_A stays up
    expect(a.auth.setKeys([KEY_B])).toEqual({ staleConnections: 2 }) // b and c proved KEY_A to a
    expect(b.auth.setKeys([KEY_B]).staleConnections).toBe(1)
    expect(kept.status).toBe('open')
    expect(a.auth.isAuthenticated(kept)).toBe(true)

    // a node that holds only KEY_A is refused from now on, in both directions
    const old = await peer([KEY_A])
    peers.push(old)
    expect(await fresh(old, a)).toBe(false)
    expect(a.rejected.at(-1) ?? old.rejected.at(-1)).toMatch(/mesh key/)
    expect(await fresh(a, old)).toBe(false)
    // and a new connection between rotated nodes passes with KEY_B
    expect(await fresh(b, a)).toBe(true)
  })

  it('a wrong key is refused and the first matching key wins regardless of order', async () => {
    const a = await peer([KEY_A, KEY_B])
    const b = await peer([KEY_B])
    const d = await peer([KEY_C])
    peers.push(a, b, d)
    // a proves KEY_A, which b does not accept
    expect(await fresh(b, a)).toBe(false)
    expect(await fresh(d, a)).toBe(false)
    a.auth.setKeys([KEY_B, KEY_A])
    expect(await fresh(b, a)).toBe(true)
    expect(await fresh(a, b)).toBe(true)
  })

  it('setKeys refuses an empty list and short keys, keeping the old keys', async () => {
    const a = await peer([KEY_A])
    const b = await peer([KEY_A])
    peers.push(a, b)
    expect(() => a.auth.setKeys([])).toThrow(/at least one/)
    expect(() => a.auth.setKeys([KEY_B, 'short'])).toThrow(/32 characters/)
    expect(await fresh(a, b)).toBe(true)
  })
})

describe('SyncNode.reloadKeys with DATA_DIR/keyring.json', () => {
  const nodes: TestNode[] = []
  afterEach(async () => {
    for (const n of nodes.splice(0)) {
      await n.node.stop().catch(() => {})
      await removeDir(n.dir)
    }
  })

  it('a node reloads its keyring and a peer holding only the new key then connects and syncs', async () => {
    const dirA = await tempDir()
    await writeKeyring(dirA, { current: KEY_A, accepted: [KEY_A] })
    const a = await startNode('A', { key: KEY_A, dir: dirA })
    const b = await startNode('B', { key: KEY_B })
    nodes.push(a, b)
    expect(a.node.meshKeys()).toEqual({ source: 'keyring', current: fingerprint(KEY_A), accepted: [fingerprint(KEY_A)] })
    expect(b.node.meshKeys()).toEqual({ source: 'key', current: fingerprint(KEY_B), accepted: [fingerprint(KEY_B)] })
    await a.node.registry.addRule({ from: { platform: 'A', collection: 'posts' }, to: { platform: 'B', collection: 'posts' } })
    await a.node.records.put('posts', 'p1', { n: 1 })

    // A switches to KEY_B (keeping KEY_A accepted) and reloads: the started-with key need not be current
    await writeKeyring(dirA, { current: KEY_B, accepted: [KEY_B, KEY_A] })
    expect(await a.node.reloadKeys()).toEqual({ source: 'keyring', current: fingerprint(KEY_B), accepted: [fingerprint(KEY_B), fingerprint(KEY_A)] })
    await b.node.peers.add(a.node.getMultiaddrs()[0])
    await eventually(async () => await countRecords(b.node, 'posts') === 1, 'B to receive the record after the rotation')

    // a broken keyring leaves the keys as they were
    const { writeFile } = await import('node:fs/promises')
    await writeFile(`${dirA}/keyring.json`, '{"version":1,"current":"short","accepted":[]}')
    await expect(a.node.reloadKeys()).rejects.toMatchObject({ code: 'KEYRING_INVALID' })
    expect(a.node.meshKeys().current).toBe(fingerprint(KEY_B))
  })

  it('refuses to start when the key it is given is not in the keyring', async () => {
    const dir = await tempDir()
    await writeKeyring(dir, { current: KEY_B, accepted: [KEY_B] })
    await expect(startNode('A', { key: KEY_A, dir })).rejects.toMatchObject({ code: 'KEY_NOT_IN_KEYRING' })
    await removeDir(dir)
  })
})
