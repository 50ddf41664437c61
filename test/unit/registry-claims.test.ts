/**
 * How the registry resolves platform claims (registry.ts, docs/trust.md):
 * no clock decides who a name belongs to, revocations are permanent per peer
 * id, and the view survives a restart (rebuilt from the logs).
 */
import { afterEach, describe, expect, it } from 'vitest'
import type { ClaimSource } from '../../src/registry/registry.js'
import { Registry } from '../../src/registry/registry.js'
import { PLATFORMS_COLLECTION } from '../../src/store/names.js'
import { Harness, newPeerId, OriginLog, platformValue } from '../helpers/ingest-harness.js'

let seq = 0
const from = (origin: string, wall: number): ClaimSource => ({ origin, seq: ++seq, hlc: { wall, logical: 0 } })
const claim = (r: Registry, writer: string, name: string, peerId: string, wall: number, extra: object = {}): void => {
  r.apply(PLATFORMS_COLLECTION, name, { name, peerId, addrs: [], ...extra }, from(writer, wall))
}

describe('registry claims', () => {
  it('without admins: one claimed peer id binds a name; two leave it contested, whatever the clocks', async () => {
    const [x, y] = [await newPeerId(), await newPeerId()]
    const r = new Registry()
    claim(r, x, 'shared', x, 1000)
    expect(r.platform('shared')?.peerId).toBe(x)
    // a claim stamped earlier (or later) does not take it: the name is contested
    claim(r, y, 'shared', y, 1)
    expect(r.platform('shared')).toBeUndefined()
    expect(r.contested()).toEqual([{ name: 'shared', peerIds: [x, y].sort() }])
    // revoking one claimant settles it
    claim(r, x, 'y-node', y, 2000, { revoked: true, revokedAfter: 7 })
    expect(r.platform('shared')?.peerId).toBe(x)
    expect(r.contested()).toEqual([])
    expect(r.platform('y-node')).toMatchObject({ peerId: y, revoked: true, revokedAfter: 7 })
  })

  it('with admins: the newest admin binding wins over any self-registration, and only an admin rebinds', async () => {
    const [admin, real, squatter] = [await newPeerId(), await newPeerId(), await newPeerId()]
    const r = new Registry({ admins: [admin] })
    claim(r, squatter, 'C', squatter, Date.now() + 10 * 365 * 86_400_000)
    expect(r.platform('C')?.peerId).toBe(squatter)
    claim(r, admin, 'C', real, 5, { tags: ['edge'] })
    expect(r.platform('C')).toMatchObject({ peerId: real, tags: ['edge'] })
    claim(r, squatter, 'C', squatter, Number.MAX_SAFE_INTEGER)
    expect(r.platform('C')?.peerId).toBe(real)
    // the bound node's own newer registration updates its addresses, not its tags
    claim(r, real, 'C', real, 10, { addrs: ['/ip4/10.0.0.1/tcp/4001'], tags: ['core'] })
    expect(r.platform('C')).toMatchObject({ peerId: real, addrs: ['/ip4/10.0.0.1/tcp/4001'], tags: ['edge'] })
    // a self-registration sets no tags (rules target them) without an admin
    claim(r, squatter, 'S', squatter, 1, { tags: ['edge'] })
    expect(r.platform('S')?.tags).toBeUndefined()
  })

  it('a revocation covers every name of the peer id, keeps the lowest revokedAfter, and binds the id nowhere again', async () => {
    const [admin, m] = [await newPeerId(), await newPeerId()]
    const r = new Registry({ admins: [admin] })
    claim(r, m, 'zeta', m, 1)
    claim(r, admin, 'alpha', m, 2)
    claim(r, admin, 'zeta', m, 3, { revoked: true, revokedAfter: 9 })
    expect(r.platform('alpha')).toMatchObject({ revoked: true, revokedAfter: 9 })
    expect(r.platformByPeer(m)?.name).toBe('alpha')
    expect(r.platformByPeer(m)?.revoked).toBe(true)
    claim(r, admin, 'alpha', m, 4, { revoked: true, revokedAfter: 4 })
    claim(r, admin, 'zeta', m, 5, { revoked: true, revokedAfter: 20 })
    expect(r.revocation(m)?.revokedAfter).toBe(4)
    // an admin binding a name to it, stamped as late as can be: still revoked
    claim(r, admin, 'zeta', m, Number.MAX_SAFE_INTEGER)
    claim(r, admin, 'gamma', m, Number.MAX_SAFE_INTEGER)
    expect(r.platform('zeta')?.revoked).toBe(true)
    expect(r.platform('gamma')?.revoked).toBe(true)
    // the claims of a revoked writer count for nothing
    claim(r, m, 'fresh', m, Number.MAX_SAFE_INTEGER)
    expect(r.platform('fresh')).toBeUndefined()
  })

  describe('from the store', () => {
    let h: Harness | undefined
    afterEach(async () => { await h?.destroy() })

    it('rebuilds claims and revocations from the logs at start, even after the revoking entry was superseded', async () => {
      h = await Harness.create()
      const w = new OriginLog(await newPeerId())
      const m = await newPeerId()
      const other = await newPeerId()
      await h.ingestRun(w.origin, [
        w.put(PLATFORMS_COLLECTION, 'one', platformValue('one', m)),
        w.put(PLATFORMS_COLLECTION, 'two', platformValue('two', m)),
        w.put(PLATFORMS_COLLECTION, 'one', { ...platformValue('one', m), revoked: true, revokedAfter: 3 })
      ])
      expect(h.registry.platform('two')?.revoked).toBe(true)
      await h.reopen()
      expect(h.registry.platform('one')).toMatchObject({ revoked: true, revokedAfter: 3 })
      expect(h.registry.platform('two')?.revoked).toBe(true)
      // the writer later binds "one" to another peer: its revocation entry is compacted away, the revocation stays
      await h.ingestRun(w.origin, [w.put(PLATFORMS_COLLECTION, 'one', platformValue('one', other))])
      await h.reopen()
      expect(h.registry.platform('one')?.peerId).toBe(other)
      expect(h.registry.platform('two')?.revoked).toBe(true)
      expect(h.registry.isRevoked(m)).toBe(true)
    })
  })
})
