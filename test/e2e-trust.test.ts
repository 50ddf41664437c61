/**
 * Admin control of the registry and revocation, with real node processes.
 */
import { rm } from 'node:fs/promises'
import { afterAll, describe, expect, it } from 'vitest'
import { NodeProcess, tempDir, waitFor } from '../scripts/lib/cluster.js'

const KEY = 'feedface00feedface00feedface00feedface'
const ALONE = ['--target-peers', '0']

describe('trust', () => {
  const procs: NodeProcess[] = []
  let parent = ''
  afterAll(async () => {
    for (const p of procs) await p.kill()
    if (parent !== '') await rm(parent, { recursive: true, force: true })
  })

  it('refuses non-admin registry changes everywhere, and a revoked node reaches no one', async () => {
    parent = await tempDir()
    const [a, b, c, d] = await Promise.all(['A', 'B', 'C', 'D'].map(async n => await NodeProcess.create(n, KEY, { parent })))
    procs.push(a, b, c, d)
    // learn A's peer id, then run A, B and C with A as the only admin; D is configured without admins
    await a.start(ALONE)
    const admin = a.peerId
    await a.stop()
    const adminFlags = [...ALONE, '--admin', admin]
    await a.start(adminFlags)
    await b.start(adminFlags)
    await c.start(adminFlags)
    await d.start(ALONE)
    for (const n of [b, c, d]) await n.addPeer(a.multiaddr)
    await waitFor(async () => (await c.request<unknown[]>('GET', '/v1/platforms')).body.length === 4, 'C to see 4 platforms (self-registration is always allowed)')

    // a non-admin node refuses a local registry change up front
    const denied = await b.request<{ error: { code: string } }>('POST', '/v1/rules', { from: { platform: 'B', collection: 'x' }, to: { platform: 'C', collection: 'x' } })
    expect(denied.status).toBe(403)
    expect(denied.body.error.code).toBe('NOT_ADMIN')

    // the admin's rule applies everywhere
    const rule = await a.addRule({ from: { platform: 'D', collection: 'notes' }, to: { platform: 'C', collection: 'notes' } })
    for (let i = 1; i <= 5; i++) await d.put('notes', `n${i}`, { i })
    await waitFor(async () => await c.count('notes') === 5, 'D\'s notes to reach C')

    // D (no admin list of its own) writes a rule: it travels in D's log but every admin-configured node refuses it
    const rogue = await d.addRule({ from: { platform: 'C', collection: 'notes' }, to: { platform: 'D', collection: 'stolen' } })
    await waitFor(async () => ((await c.status()).registry?.refused ?? 0) >= 1 && ((await a.status()).registry?.refused ?? 0) >= 1, 'A and C to refuse the rogue rule')
    for (const n of [a, b, c]) {
      const rules = (await n.request<Array<{ id: string }>>('GET', '/v1/rules')).body.map(r => r.id)
      expect(rules).toEqual([rule.id])
      expect(rules).not.toContain(rogue.id)
    }
    const refusal = (await c.status()).registry.refusals[0]
    expect(refusal).toMatchObject({ origin: d.peerId, collection: '$rules', id: rogue.id })

    // revoke D: it is disconnected and refused; what it wrote before stays
    const revoked = await a.request<{ revoked: boolean, revokedAfter: number }>('POST', '/v1/platforms/D/revoke', {})
    expect(revoked.status).toBe(200)
    expect(revoked.body.revoked).toBe(true)
    await waitFor(async () => ((await d.status()).peers as Array<{ connected: boolean }>).every(p => !p.connected), 'D to be disconnected')
    await d.put('notes', 'n6', { i: 6 })
    await d.request('POST', '/v1/peers', { multiaddr: a.multiaddr })
    await new Promise(resolve => setTimeout(resolve, 2000))
    expect(((await d.status()).peers as Array<{ connected: boolean }>).every(p => !p.connected)).toBe(true)
    expect(await c.count('notes')).toBe(5)
    expect(await c.get('notes', 'n6')).toBeUndefined()
    expect(await c.get('notes', 'n1')).toEqual({ i: 1 })
    const platforms = (await b.request<Array<{ name: string, revoked?: boolean }>>('GET', '/v1/platforms')).body
    expect(platforms.find(p => p.name === 'D')?.revoked).toBe(true)
  }, 120_000)
})
