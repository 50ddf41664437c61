/**
 * Peers of another wire version: a real node meets a libp2p node that speaks
 * another version of the sync (or auth) protocol, over real TCP, and says so.
 */
import { Writable } from 'node:stream'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { MeshAuth } from '../../src/network/auth/auth.js'
import { AUTH_PROTOCOL, SYNC_PROTOCOL, SYNC_PROTOCOL_STREAMS } from '../../src/network/constants.js'
import { createHost } from '../../src/network/libp2p.js'
import type { Host } from '../../src/network/libp2p.js'
import { compareVersions, protocolMismatch } from '../../src/network/versions.js'
import { createSyncNode } from '../../src/node/node.js'
import type { SyncNode } from '../../src/node/node.js'
import type { PeerInfo } from '../../src/core/types.js'
import { eventually, KEY, removeDir, tempDir } from '../helpers/nodes.js'

const PEER = '12D3KooWpeer'

describe('protocol versions (pure)', () => {
  it('a peer listing our version, whatever else it lists, is compatible', () => {
    expect(protocolMismatch(PEER, ['/ipfs/id/1.0.0', AUTH_PROTOCOL, SYNC_PROTOCOL])).toBeUndefined()
    expect(protocolMismatch(PEER, [AUTH_PROTOCOL, SYNC_PROTOCOL, '/syncmesh/sync/3.0.0'])).toBeUndefined()
    // nothing of the family: not identified yet, or not a syncmesh node; nothing to say
    expect(protocolMismatch(PEER, ['/ipfs/id/1.0.0', '/ipfs/ping/1.0.0'])).toBeUndefined()
  })

  it('names both versions and which node is older, by the family prefix', () => {
    const newer = protocolMismatch(PEER, [AUTH_PROTOCOL, '/syncmesh/sync/1.10.0', '/syncmesh/sync/1.9.0'], [{ name: 'sync', ours: '/syncmesh/sync/1.2.0', code: 'SYNC_PROTOCOL_MISMATCH' }])
    expect(newer).toMatchObject({ code: 'SYNC_PROTOCOL_MISMATCH', protocol: 'sync', ours: '/syncmesh/sync/1.2.0', theirs: ['/syncmesh/sync/1.10.0', '/syncmesh/sync/1.9.0'] })
    expect(newer?.message).toBe(`peer ${PEER} speaks sync protocol /syncmesh/sync/1.10.0, /syncmesh/sync/1.9.0; this node speaks /syncmesh/sync/1.2.0: they cannot sync until the older node is upgraded (this node is the older one: upgrade it)`)
    const older = protocolMismatch(PEER, ['/syncmesh/auth/0.9.0', '/syncmesh/sync/0.9.0'])
    expect(older).toMatchObject({ code: 'AUTH_PROTOCOL_MISMATCH', protocol: 'auth', ours: AUTH_PROTOCOL })
    expect(older?.message).toContain('the peer is the older node: upgrade it')
    expect(compareVersions('2.0.0', '1.99.9')).toBe(1)
    expect(compareVersions('1.0', '1.0.0')).toBe(0)
    // a pre-release comes before its release (the sync protocol of rule streams, 3.0.0-streams, before 3.0.0)
    expect(compareVersions('3.0.0', '3.0.0-streams')).toBe(1)
    expect(compareVersions('3.0.0-streams', '2.1.0')).toBe(1)
    expect(compareVersions('3.0.0-streams', '3.0.1')).toBe(-1)
    expect(compareVersions('3.0.0-streams', '3.0.0-streams')).toBe(0)
  })
})

describe('a node meeting a peer of another protocol version', () => {
  let node: SyncNode | undefined
  let dir: string | undefined
  const hosts: Host[] = []
  let lines: string[] = []

  afterEach(async () => {
    for (const h of hosts.splice(0)) await h.stop()
    await node?.stop()
    if (dir !== undefined) await removeDir(dir)
    node = undefined
  })

  async function startReal (): Promise<SyncNode> {
    lines = []
    dir = await tempDir()
    const logger = pino({ level: 'info' }, new Writable({ write (chunk: Buffer, _e, cb) { lines.push(...chunk.toString().split('\n').filter(l => l !== '')); cb() } }))
    node = await createSyncNode({ dataDir: dir, key: KEY, name: 'real', listen: ['/ip4/127.0.0.1/tcp/0'], logger, targetConnections: 0 })
    await node.start()
    return node
  }

  /**
   * A libp2p node that proves the mesh key like any syncmesh node (the real
   * auth protocol) when `auth` is ours, and answers the sync protocol only
   * under another id. Like this release, it answers identify only on
   * connections that proved the key; one of another auth version models a
   * release whose identify answers any connection (as releases did before
   * the door), since only such a peer can tell a node its auth version.
   */
  async function otherVersion (ids: { sync: string, auth?: string, identifyAfterKeyOnly?: boolean }, key = KEY): Promise<Host> {
    let auth: MeshAuth | undefined
    const host = await createHost({
      privateKey: await generateKeyPair('Ed25519'),
      listen: ['/ip4/127.0.0.1/tcp/0'],
      isAuthenticated: (c) => (ids.auth !== undefined && ids.identifyAfterKeyOnly !== true) || (auth?.isAuthenticated(c) ?? false)
    })
    hosts.push(host)
    if (ids.auth === undefined) {
      auth = new MeshAuth(host, { keys: [key], logger: pino({ level: 'silent' }), onAuthenticated: () => {} })
      await auth.start()
    } else {
      await host.handle(ids.auth, (stream) => { stream.abort(new Error('not implemented')) })
    }
    await host.handle(ids.sync, (stream) => { stream.abort(new Error('not implemented')) })
    await host.start()
    return host
  }

  const warnings = (code: string): string[] => lines.filter(l => l.includes(`"code":"${code}"`) && l.includes('"level":40'))

  async function peerInfo (n: SyncNode, peer: string): Promise<PeerInfo | undefined> {
    return (await n.peers.list()).find(p => p.peerId === peer)
  }

  it('dialling a newer sync protocol: the peer status and one warning name both versions; no stream is retried', async () => {
    const real = await startReal()
    const newer = await otherVersion({ sync: '/syncmesh/sync/3.0.0' })
    const id = newer.peerId.toString()
    await real.peers.add(newer.getMultiaddrs()[0].toString())
    await eventually(async () => (await peerInfo(real, id))?.incompatible !== undefined && (await peerInfo(real, id))?.authenticated === true, 'the mismatch to show in the peer status')
    const info = await peerInfo(real, id)
    expect(info?.authenticated).toBe(true)
    // the node's own sync protocol: with rule streams 3.0.0-streams, a pre-release of 3.0.0
    const ours = (await real.status()).streams === true ? SYNC_PROTOCOL_STREAMS : SYNC_PROTOCOL
    expect(info?.incompatible).toMatchObject({ code: 'SYNC_PROTOCOL_MISMATCH', protocol: 'sync', ours, theirs: ['/syncmesh/sync/3.0.0'] })
    const message = `peer ${id} speaks sync protocol /syncmesh/sync/3.0.0; this node speaks ${ours}: they cannot sync until the older node is upgraded (this node is the older one: upgrade it)`
    expect(info?.incompatible?.message).toBe(message)
    expect(info?.lastError).toBe(message)
    expect((await real.status()).peers.find(p => p.peerId === id)?.incompatible?.code).toBe('SYNC_PROTOCOL_MISMATCH')
    // the session keeper runs every 2 s: it does not try again, nor warn again
    await new Promise(resolve => setTimeout(resolve, 5_000))
    expect(warnings('SYNC_PROTOCOL_MISMATCH')).toHaveLength(1)
    expect(warnings('SYNC_PROTOCOL_MISMATCH')[0]).toContain(message)
    expect(lines.filter(l => l.includes('could not open a sync stream'))).toEqual([])
  })

  it('dialled by an older sync protocol (a version 1 node): the listener says so too', async () => {
    const real = await startReal()
    const older = await otherVersion({ sync: '/syncmesh/sync/1.0.0' })
    const id = older.peerId.toString()
    await older.dial(multiaddr(real.getMultiaddrs()[0]))
    await eventually(async () => (await peerInfo(real, id))?.incompatible !== undefined, 'the mismatch to show in the peer status')
    expect((await peerInfo(real, id))?.incompatible).toMatchObject({ code: 'SYNC_PROTOCOL_MISMATCH', theirs: ['/syncmesh/sync/1.0.0'] })
    expect((await peerInfo(real, id))?.incompatible?.message).toContain('the peer is the older node: upgrade it')
    expect(warnings('SYNC_PROTOCOL_MISMATCH')).toHaveLength(1)
  })

  it('another auth protocol version: AUTH_PROTOCOL_MISMATCH instead of a bare authentication failure', async () => {
    const real = await startReal()
    const other = await otherVersion({ sync: '/syncmesh/sync/0.9.0', auth: '/syncmesh/auth/0.9.0' })
    const id = other.peerId.toString()
    await real.peers.add(other.getMultiaddrs()[0].toString(), { save: true }) // kept though the key is not proved over it
    await eventually(async () => (await peerInfo(real, id))?.incompatible !== undefined, 'the mismatch to show in the peer status')
    expect((await peerInfo(real, id))?.incompatible).toMatchObject({ code: 'AUTH_PROTOCOL_MISMATCH', protocol: 'auth', ours: AUTH_PROTOCOL, theirs: ['/syncmesh/auth/0.9.0'] })
    expect(warnings('AUTH_PROTOCOL_MISMATCH')).toHaveLength(1)
    expect(warnings('AUTH_PROTOCOL_MISMATCH')[0]).toContain(`peer ${id} speaks auth protocol /syncmesh/auth/0.9.0; this node speaks ${AUTH_PROTOCOL}`)
  })

  it('another auth protocol version from a peer that answers identify only after the key: only the bare failure can be said', async () => {
    const real = await startReal()
    const other = await otherVersion({ sync: '/syncmesh/sync/0.9.0', auth: '/syncmesh/auth/0.9.0', identifyAfterKeyOnly: true })
    const id = other.peerId.toString()
    await real.peers.add(other.getMultiaddrs()[0].toString(), { save: true }) // kept though the key is not proved over it
    await eventually(() => lines.some(l => l.includes('could not open the auth stream') && l.includes(id)), 'the authentication failure')
    await new Promise(resolve => setTimeout(resolve, 1_000))
    expect(warnings('AUTH_PROTOCOL_MISMATCH')).toEqual([])
    expect((await peerInfo(real, id))?.incompatible).toBeUndefined()
  })

  it('a peer without the mesh key cannot make a node report versions: its claimed sync version is not judged', async () => {
    const real = await startReal()
    const outsider = await otherVersion({ sync: '/syncmesh/sync/3.0.0' }, 'w'.repeat(40))
    const id = outsider.peerId.toString()
    await outsider.dial(multiaddr(real.getMultiaddrs()[0])).catch(() => {})
    await eventually(() => lines.some(l => l.includes('mesh-key authentication failed') && l.includes(id)), 'the outsider to be refused')
    await new Promise(resolve => setTimeout(resolve, 1_000))
    expect(warnings('SYNC_PROTOCOL_MISMATCH')).toEqual([])
    expect((await peerInfo(real, id))?.incompatible).toBeUndefined()
  })
})
