/**
 * The operator surface against real node processes, through the CLI and the
 * HTTP API: peer add proves the key over the address it was given; peers
 * show their last traffic besides their last authentication; rules naming
 * unknown platforms are refused unless forced; rules pause and resume.
 */
import { createServer } from 'node:net'
import { afterAll, describe, expect, it } from 'vitest'
import { NodeProcess, runCli, tempDir, waitFor } from '../../scripts/lib/cluster.js'

const KEY = '0a1b2c3d4e5f60718293a4b5c6d7e8f9'

async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer()
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port
      srv.close(() => resolve(port))
    })
    srv.on('error', reject)
  })
}

interface Peer { peerId: string, addrs: string[], connected: boolean, authenticated: boolean, persisted: boolean, lastSeen?: string, lastTraffic?: string, proved?: boolean }

async function peersOf (n: NodeProcess): Promise<Peer[]> {
  const r = await runCli(['peer', 'ls', '--data', n.dir, '--json'])
  expect(r.code, r.stderr).toBe(0)
  return JSON.parse(r.stdout) as Peer[]
}

describe('the operator surface', () => {
  const procs: NodeProcess[] = []
  afterAll(async () => {
    for (const p of procs) await p.cleanup()
  })

  it('peer add proves the mesh key over the address given: a wrong port fails and is not kept, even with the peer linked another way', async () => {
    const parent = await tempDir()
    const a = await NodeProcess.create('A', KEY, { parent })
    const b = await NodeProcess.create('B', KEY, { parent })
    procs.push(a, b)
    await a.start()
    await b.start()
    const ok = await runCli(['peer', 'add', a.multiaddr, '--data', b.dir])
    expect(ok.code, ok.stderr).toBe(0)
    expect(ok.stdout).toContain(`added peer ${a.peerId}: connected over ${a.multiaddr} and proved the mesh key`)

    // A is linked to B; an address of A with a port nobody listens on
    const port = await freePort()
    const wrong = `/ip4/127.0.0.1/tcp/${port}/p2p/${a.peerId}`
    const bad = await runCli(['peer', 'add', wrong, '--data', b.dir])
    expect(bad.code).toBe(1)
    expect(bad.stdout).not.toContain('connected')
    expect(bad.stderr).toContain('PEER_UNREACHABLE')
    expect(bad.stderr).toContain('Nothing was saved')
    const json = await runCli(['peer', 'add', wrong, '--data', b.dir, '--json'])
    expect(json.code).toBe(1)
    expect(json.stdout).toBe('')
    expect(json.stderr).toContain('error [PEER_UNREACHABLE]')
    let peers = await peersOf(b)
    expect(peers.find(p => p.peerId === a.peerId)?.addrs).toEqual([a.multiaddr])
    // over HTTP too
    const http = await b.request<{ error: { code: string } }>('POST', '/v1/peers', { multiaddr: wrong })
    expect(http.status).toBe(502)
    expect(http.body.error.code).toBe('PEER_UNREACHABLE')

    // --save keeps it, and says it is not connected over it
    const saved = await runCli(['peer', 'add', wrong, '--data', b.dir, '--save', '--json'])
    expect(saved.code, saved.stderr).toBe(0)
    expect(JSON.parse(saved.stdout)).toMatchObject({ peerId: a.peerId, proved: false, persisted: true })
    peers = await peersOf(b)
    expect(peers.find(p => p.peerId === a.peerId)?.addrs).toEqual([wrong, a.multiaddr])
    const text = await runCli(['peer', 'add', wrong, '--data', b.dir, '--save'])
    expect(text.stdout).toContain('not connected over that address')
  })

  it('peers show their last traffic besides their last authentication', async () => {
    const parent = await tempDir()
    const a = await NodeProcess.create('A', KEY, { parent })
    const b = await NodeProcess.create('B', KEY, { parent })
    procs.push(a, b)
    await a.start()
    await b.start()
    expect((await runCli(['peer', 'add', a.multiaddr, '--data', b.dir])).code).toBe(0)
    let first: Peer | undefined
    await waitFor(async () => {
      first = (await b.request<Peer[]>('GET', '/v1/peers')).body.find(p => p.peerId === a.peerId)
      return first?.lastSeen !== undefined && first.lastTraffic !== undefined
    }, 'B to list A with lastSeen and lastTraffic', 20_000)
    const seen = first?.lastSeen as string
    await new Promise(resolve => setTimeout(resolve, 1_100))
    // A writes: its entries reach B over the link authenticated before
    for (let i = 0; i < 5; i++) await a.put('notes', `n${i}`, { i })
    let peer: Peer | undefined
    await waitFor(async () => {
      peer = (await b.request<Peer[]>('GET', '/v1/peers')).body.find(p => p.peerId === a.peerId)
      return Date.parse(peer?.lastTraffic ?? '') > Date.parse(seen) + 1_000
    }, 'B to see traffic from A after its authentication', 20_000)
    expect(peer?.lastSeen).toBe(seen)
    const status = JSON.parse((await runCli(['status', '--data', b.dir, '--json'])).stdout) as { peers: Peer[] }
    expect(status.peers.find(p => p.peerId === a.peerId)?.lastTraffic).toBeDefined()
    const table = await runCli(['status', '--data', b.dir])
    expect(table.stdout).toMatch(/LAST SEEN\s+LAST TRAFFIC/)
  })
})
