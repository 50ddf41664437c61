/**
 * The operator surface against real node processes, through the CLI and the
 * HTTP API: peer add proves the key over the address it was given; peers
 * show their last traffic besides their last authentication; rules naming
 * unknown platforms are refused unless forced; rules pause and resume.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { freePort, makeNdjson, NodeProcess, runCli, tempDir, waitFor } from '../../scripts/lib/cluster.js'

const KEY = '0a1b2c3d4e5f60718293a4b5c6d7e8f9'


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
    expect(ok.stdout).toContain(`added peer ${a.peerId}`)

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
    expect(ok.stdout).toContain(`added peer ${a.peerId}: connected over ${a.multiaddr} and proved the mesh key`)
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

  it('refuses a rule naming a platform the registry does not have, unless forced; a forced one is a problem in status', async () => {
    const parent = await tempDir()
    const a = await NodeProcess.create('A', KEY, { parent })
    procs.push(a)
    await a.start()
    for (const [from, to] of [['A:posts', 'nosuch:posts'], ['nosuch:posts', 'A:copies']]) {
      const refused = await runCli(['rule', 'add', '--from', from, '--to', to, '--data', a.dir, '--json'])
      expect(refused.code).toBe(1)
      expect(refused.stdout).toBe('')
      expect(refused.stderr).toContain('error [UNKNOWN_PLATFORM]')
      expect(refused.stderr).toContain('platform "nosuch" is not in the registry')
      expect(refused.stderr).toContain('--force')
    }
    const http = await a.request<{ error: { code: string } }>('POST', '/v1/rules', { from: { platform: 'A', collection: 'posts' }, to: { platform: 'nosuch', collection: 'posts' } })
    expect(http.status).toBe(400)
    expect(http.body.error.code).toBe('UNKNOWN_PLATFORM')
    expect((await a.request<unknown[]>('GET', '/v1/rules')).body).toEqual([])

    const forced = await runCli(['rule', 'add', '--from', 'A:posts', '--to', 'nosuch:posts', '--force', '--data', a.dir, '--json'])
    expect(forced.code, forced.stderr).toBe(0)
    const id = (JSON.parse(forced.stdout) as { id: string }).id
    const viaHttp = await a.request<{ id: string }>('POST', '/v1/rules', { from: { platform: 'nosuch', collection: 'posts' }, to: { platform: 'A', collection: 'copies' }, force: true })
    expect(viaHttp.status).toBe(201)
    const status = JSON.parse((await runCli(['status', '--data', a.dir, '--json'])).stdout) as { rules: Array<{ id: string, problem?: string }> }
    expect(status.rules.find(r => r.id === id)?.problem).toContain('target platform "nosuch" is not in the registry')
    expect(status.rules.find(r => r.id === viaHttp.body.id)?.problem).toContain('source platform "nosuch"')
    const text = await runCli(['status', '--data', a.dir])
    expect(text.stdout).toContain('target platform "nosuch" is not in the registry')
    // changing a rule to name an unknown platform is refused the same way
    const update = await runCli(['rule', 'update', id, '--to', 'other:posts', '--data', a.dir])
    expect(update.code).toBe(1)
    expect(update.stderr).toContain('error [UNKNOWN_PLATFORM]')
  })

  it('pauses a rule everywhere and resumes it: the target applies nothing while paused, then catches up from where it stopped', async () => {
    const parent = await tempDir()
    const a = await NodeProcess.create('A', KEY, { parent })
    const b = await NodeProcess.create('B', KEY, { parent })
    procs.push(a, b)
    await a.start()
    await b.start()
    expect((await runCli(['peer', 'add', a.multiaddr, '--data', b.dir])).code).toBe(0)
    await a.knows(['B'])
    const added = await runCli(['rule', 'add', '--from', 'A:posts', '--to', 'B:posts', '--data', a.dir, '--json'])
    expect(added.code, added.stderr).toBe(0)
    const id = (JSON.parse(added.stdout) as { id: string }).id
    expect(await a.importNdjson('posts', makeNdjson(500, 'p'))).toBe(500)
    await waitFor(async () => await b.count('posts') === 500, 'B to hold the 500 posts')

    const paused = await runCli(['rule', 'pause', id, '--data', a.dir, '--json'])
    expect(paused.code, paused.stderr).toBe(0)
    expect(JSON.parse(paused.stdout)).toMatchObject({ id, paused: true })
    await waitFor(async () => (await b.request<{ paused?: boolean }>('GET', `/v1/rules/${id}`)).body.paused === true, 'the pause to reach B')
    // written while paused: they reach B's log, and are not applied
    await a.put('posts', 'new1', { title: 'while paused' })
    await a.put('posts', 'p00000001', { title: 'changed while paused' })
    await a.del('posts', 'p00000002')
    const head = async (n: NodeProcess): Promise<number> => ((await n.status()).origins as Array<{ origin: string, seq: number }>).find(o => o.origin === a.peerId)?.seq ?? 0
    const aHead = await head(a)
    await waitFor(async () => await head(b) >= aHead, 'B to hold A\'s log')
    await new Promise(resolve => setTimeout(resolve, 1_500))
    expect(await b.get('posts', 'new1')).toBeUndefined()
    expect(await b.get('posts', 'p00000002')).toBeDefined()
    expect(await b.count('posts')).toBe(500)
    const bStatus = JSON.parse((await runCli(['status', '--data', b.dir, '--json'])).stdout) as { rules: Array<{ id: string, paused?: boolean }> }
    expect(bStatus.rules.find(r => r.id === id)?.paused).toBe(true)
    expect((await runCli(['status', '--data', b.dir])).stdout).toContain('yes (paused)')
    expect((await runCli(['rule', 'ls', '--data', a.dir])).stdout).toMatch(new RegExp(`${id}.*paused`))

    // the place where B stopped outlives a restart of B, during which A writes more
    expect(await b.stop()).toBe(0)
    await a.put('posts', 'new2', { title: 'while B was down' })
    await b.start()
    const aHead2 = await head(a)
    await waitFor(async () => await head(b) >= aHead2, 'B to hold A\'s log again')
    await new Promise(resolve => setTimeout(resolve, 1_000))
    expect(await b.get('posts', 'new2')).toBeUndefined()
    expect(await b.count('posts')).toBe(500)

    // resuming takes the full token; the read-only one gets the usual refusal
    const ro = (await runCli(['api', 'token', 'show', '--read-only', '--data', a.dir])).stdout.trim()
    const refused = await fetch(`${a.api}/v1/rules/${id}/resume`, { method: 'POST', headers: { authorization: `Bearer ${ro}` } })
    expect(refused.status).toBe(403)
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('READ_ONLY_TOKEN')
    expect((await a.request<{ paused?: boolean }>('GET', `/v1/rules/${id}`)).body.paused).toBe(true)
    const resumed = await a.request<{ paused?: boolean }>('POST', `/v1/rules/${id}/resume`)
    expect(resumed.status).toBe(200)
    expect(resumed.body.paused).toBeUndefined()
    await waitFor(async () => (await b.get('posts', 'new1'))?.title === 'while paused' && (await b.get('posts', 'new2'))?.title === 'while B was down' && await b.get('posts', 'p00000002') === undefined, 'B to catch up with what was written while paused')
    expect(await b.get('posts', 'p00000001')).toEqual({ title: 'changed while paused' })
    expect(await b.count('posts')).toBe(501)
    // from where it stopped, not from the start of A's log: a catch-up, not a new backfill
    const line = b.stderr.split('\n').find(l => l.includes(`rule ${id} resumed here`))
    expect(line, b.stderr.slice(-2000)).toBeDefined()
    const from = Number(/catching up from entry (\d+)/.exec(line as string)?.[1])
    expect(from).toBeGreaterThanOrEqual(500)
    const after = JSON.parse((await runCli(['status', '--data', b.dir, '--json'])).stdout) as { rules: Array<{ id: string, paused?: boolean, backfilled: boolean }> }
    expect(after.rules.find(r => r.id === id)).toMatchObject({ paused: false, backfilled: true })
  })
})
