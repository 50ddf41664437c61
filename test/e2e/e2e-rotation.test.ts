/**
 * Mesh key rotation without downtime (README "Rotating the mesh key") with
 * three real node processes that keep syncing throughout: every node gets
 * KEY_B as an accepted key, then switches to proving KEY_B one by one, then drops
 * KEY_A — each step through `syncmesh key …` and SIGHUP (once `syncmesh key
 * reload`, through the API). Writes go on the whole
 * time and all arrive everywhere; the links that are up stay up (no
 * re-authentication), a link re-made at each step (also mid-step, with the
 * nodes proving different keys) authenticates; a node restarted with the
 * retired key is refused to start; a node that still holds only the old key
 * is refused by the mesh.
 */
import { rm } from 'node:fs/promises'
import { afterAll, describe, expect, it } from 'vitest'
import { NodeProcess, runCli, tempDir, waitFor } from '../../scripts/lib/cluster.js'
import { fingerprint } from '../../src/node/keyring.js'

const KEY_A = 'f1'.repeat(32)
const KEY_B = 'e2'.repeat(32)
const NO_DISCOVERY = ['--target-peers', '0']
const DEBUG = { env: { SYNCMESH_LOG_LEVEL: 'debug' } }

let procs: NodeProcess[] = []
let parent = ''

afterAll(async () => {
  await Promise.all(procs.map(async p => await p.kill()))
  if (parent !== '') await rm(parent, { recursive: true, force: true })
})

/** Lines "peer proved the mesh key" about `peer` in `node`'s log: one per authenticated connection. */
function authCount (node: NodeProcess, peer: string): number {
  return node.logCount(new RegExp(`"peer":"${peer}".*"msg":"peer proved the mesh key"|"msg":"peer proved the mesh key".*"peer":"${peer}"`))
}

describe('mesh key rotation', () => {
  it('three nodes rotate one key to another while writing, lose nothing, keep their links, and refuse the old key', async () => {
    parent = await tempDir()
    const [a, b, c] = await Promise.all(['A', 'B', 'C'].map(async n => await NodeProcess.create(n, KEY_A, { parent })))
    procs.push(a, b, c)
    const nodes = [a, b, c]
    for (const n of nodes) await n.start(NO_DISCOVERY, DEBUG)
    await a.addPeer(b.multiaddr)
    await b.addPeer(c.multiaddr)
    await c.addPeer(a.multiaddr)
    for (const from of nodes) {
      for (const to of nodes) {
        if (from !== to) await a.addRule({ from: { platform: from.name, collection: 'notes' }, to: { platform: to.name, collection: 'inbox' } })
      }
    }
    const linked = async (n: NodeProcess): Promise<boolean> =>
      ((await n.status()).peers as Array<{ connected: boolean, authenticated: boolean }>).filter(p => p.connected && p.authenticated).length === 2
    for (const n of nodes) await waitFor(async () => await linked(n), `${n.name} to be linked to both others`)

    // writes go on during the whole rotation, round robin over the nodes that are up
    const written = new Map<string, Set<string>>(nodes.map(n => [n.name, new Set<string>()]))
    const down = new Set<string>()
    let writing = true
    let step = 'before'
    let failures = 0
    const writer = (async () => {
      for (let i = 0; writing; i++) {
        const n = nodes[i % 3]
        if (down.has(n.name)) continue
        const id = `${n.name}-${i}`
        try {
          await n.put('notes', id, { i, step })
          written.get(n.name)?.add(id)
        } catch {
          failures++
        }
        await new Promise(resolve => setTimeout(resolve, 15))
      }
    })()

    /** Every note acknowledged so far is in the inbox of both other nodes. */
    const converged = async (): Promise<void> => {
      const snapshot = new Map([...written].map(([k, v]) => [k, new Set(v)]))
      for (const target of nodes) {
        if (down.has(target.name)) continue
        await waitFor(async () => {
          const inbox = await target.all('inbox')
          for (const [origin, ids] of snapshot) {
            if (origin === target.name) continue
            for (const id of ids) if (!inbox.has(id)) return false
          }
          return true
        }, `${target.name} to hold every note written so far (${step})`, 30_000, 200)
      }
    }

    const hup = async (n: NodeProcess, current: string, accepted: string[]): Promise<void> => {
      const before = n.logCount(/reloaded the mesh keys on SIGHUP/)
      n.hup()
      await waitFor(() => n.logCount(/reloaded the mesh keys on SIGHUP/) > before, `${n.name} to reload its keys`, 10_000, 50)
      const keys = await n.request<{ current: string, accepted: string[] }>('GET', '/v1/keys')
      expect(keys.body).toEqual({ source: 'keyring', current: fingerprint(current), accepted: accepted.map(fingerprint) })
    }

    const key = async (n: NodeProcess, ...args: string[]): Promise<void> => {
      const r = await runCli(['key', ...args, '--data', n.dir], { env: { SYNCMESH_KEY: '' } })
      expect(r.code, r.stderr).toBe(0)
      expect(r.stdout).not.toContain(KEY_A)
      expect(r.stdout).not.toContain(KEY_B)
    }

    /** Re-make the A→B link: a new connection that must authenticate with the keys of the moment. */
    const relink = async (): Promise<void> => {
      const authA = authCount(a, b.peerId)
      const del = await a.request('DELETE', `/v1/peers/${b.peerId}`)
      expect(del.status).toBe(200)
      await a.addPeer(b.multiaddr)
      await waitFor(() => authCount(a, b.peerId) > authA, 'A to authenticate a new connection to B', 10_000, 50)
      await waitFor(async () => await linked(a) && await linked(b), 'A and B to be linked again')
    }

    await new Promise(resolve => setTimeout(resolve, 500))
    await converged()
    // the links B–C and C–A must never re-authenticate during the rotation
    const steady = (): number[] => [authCount(b, c.peerId), authCount(c, b.peerId), authCount(c, a.peerId), authCount(a, c.peerId)]
    const steadyBefore = steady()
    expect(Math.min(...steadyBefore)).toBeGreaterThan(0)

    // step 1: every node accepts KEY_B as well (still proving KEY_A)
    step = 'step 1'
    for (const n of nodes) {
      await key(n, 'add', KEY_B, '--key', KEY_A)
      await hup(n, KEY_A, [KEY_A, KEY_B])
      await new Promise(resolve => setTimeout(resolve, 150))
    }
    await relink()
    await converged()

    // step 2: one node at a time proves KEY_B; mid-step, a new link between a KEY_B prover and a KEY_A prover
    step = 'step 2'
    await key(a, 'use', KEY_B)
    await hup(a, KEY_B, [KEY_B, KEY_A])
    await relink()
    await converged()
    for (const n of [b, c]) {
      await key(n, 'use', fingerprint(KEY_B)) // by fingerprint: the key is already in the keyring
      await hup(n, KEY_B, [KEY_B, KEY_A])
      await new Promise(resolve => setTimeout(resolve, 150))
    }
    await relink()
    await converged()

    // step 3: KEY_A is retired everywhere
    step = 'step 3'
    for (const n of nodes) {
      await key(n, 'rm', fingerprint(KEY_A))
      if (n === c) {
        // the other way to reload: through the API
        const r = await runCli(['key', 'reload', '--data', n.dir, '--json'])
        expect(r.code, r.stderr).toBe(0)
        expect(JSON.parse(r.stdout)).toEqual({ source: 'keyring', current: fingerprint(KEY_B), accepted: [fingerprint(KEY_B)] })
      } else {
        await hup(n, KEY_B, [KEY_B])
      }
      await new Promise(resolve => setTimeout(resolve, 150))
    }
    await relink()
    await converged()
    expect(steady()).toEqual(steadyBefore)
    for (const n of nodes) expect(n.logCount(/mesh-key authentication failed/), n.name).toBe(0)

    // a restart with the retired key in its flags is refused; with the new key C rejoins
    step = 'restart'
    down.add('C')
    await new Promise(resolve => setTimeout(resolve, 200)) // let a write in flight to C finish
    await c.stop()
    await expect(c.start(NO_DISCOVERY, DEBUG)).rejects.toThrow(/KEY_NOT_IN_KEYRING/)
    c.key = KEY_B
    await c.start(NO_DISCOVERY, DEBUG)
    await c.addPeer(b.multiaddr) // it listens on a new port: B's stored address for it is stale
    down.delete('C')
    await waitFor(async () => await linked(c), 'C to be linked to A and B again')

    step = 'after'
    await new Promise(resolve => setTimeout(resolve, 500))
    writing = false
    await writer
    expect(failures).toBe(0)
    await converged()
    const total = [...written.values()].reduce((s, ids) => s + ids.size, 0)
    expect(total).toBeGreaterThan(100)

    // a node that still holds only KEY_A is refused
    const old = await NodeProcess.create('old', KEY_A, { parent })
    procs.push(old)
    await old.start(NO_DISCOVERY)
    const refusedBefore = a.logCount(new RegExp(`disconnecting peer ${old.peerId}: mesh-key authentication failed`))
    await old.addPeer(a.multiaddr).catch(() => {})
    await waitFor(() => a.logCount(new RegExp(`disconnecting peer ${old.peerId}: mesh-key authentication failed`)) > refusedBefore ||
      old.logCount(new RegExp(`disconnecting peer ${a.peerId}: mesh-key authentication failed`)) > 0, 'the old-key node to be refused', 10_000)
    await new Promise(resolve => setTimeout(resolve, 1500))
    expect(await old.count('inbox')).toBe(0)
    const oldPeers = (await old.status()).peers as Array<{ authenticated: boolean }>
    expect(oldPeers.every(p => !p.authenticated)).toBe(true)
    expect(((await a.status()).peers as Array<{ peerId: string, authenticated: boolean }>).some(p => p.peerId === old.peerId && p.authenticated)).toBe(false)
  }, 180_000)
})
