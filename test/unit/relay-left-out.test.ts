/**
 * Which relayed puts a node leaves out of its own log (RuleSet
 * relayedPutsLeftOut) and with whom it shares a collection's records
 * (RuleSet.sendsTo), from the registry alone: two-way sync with plain rules
 * leaves out every other node's puts; a filter, a group source, a mirror, a
 * mode that differs, a target the write's own rule does not reach or a
 * revoked source keeps them logged.
 */
import { describe, expect, it } from 'vitest'
import { Registry } from '../../src/registry/registry.js'
import { RuleSet } from '../../src/rules/ruleset.js'
import { ruleStreamId } from '../../src/rules/stream-plan.js'
import { PLATFORMS_COLLECTION, RULES_COLLECTION } from '../../src/store/names.js'
import type { JsonObject } from '../../src/core/types.js'
import { newPeerId, ruleValue } from '../helpers/ingest-harness.js'
import type { RuleInput } from '../helpers/ingest-harness.js'

async function mesh (names: string[], extra: Record<string, JsonObject> = {}): Promise<{ registry: Registry, peer: Record<string, string> }> {
  const registry = new Registry()
  const peer: Record<string, string> = {}
  let wall = 1000
  for (const name of names) {
    peer[name] = await newPeerId()
    registry.apply(PLATFORMS_COLLECTION, name, { name, peerId: peer[name], addrs: [], ...extra[name] }, { origin: peer[name], seq: 1, hlc: { wall: wall++, logical: 0 } })
  }
  return { registry, peer }
}

function addRules (registry: Registry, rules: RuleInput[]): void {
  for (const r of rules) registry.apply(RULES_COLLECTION, r.id, ruleValue(r))
}

const twoWay = (names: string[]): RuleInput[] => names.map(n => ({ id: `r-${n}`, from: { platform: n, collection: 'events' }, to: { platform: '*', collection: 'events' } }))

function leftOutOn (registry: Registry, name: string): string[] {
  const rules = new RuleSet()
  rules.rebuild(registry, name)
  return [...(rules.leftOut().get('events') ?? [])].sort()
}

describe('relayed puts left out of a relay\'s log', () => {
  it('two-way sync with plain rules: each node leaves out the puts of every other node\'s rule, and shares its records with every node', async () => {
    const { registry, peer } = await mesh(['a', 'b', 'c'])
    addRules(registry, twoWay(['a', 'b', 'c']))
    expect(leftOutOn(registry, 'b')).toEqual(['r-a', 'r-c'])
    const rules = new RuleSet()
    rules.rebuild(registry, 'b')
    expect(rules.leavesOut('r-a', 'events')).toBe(true)
    expect(rules.leavesOut('r-b', 'events')).toBe(false)
    expect([rules.sendsTo('events', peer.a), rules.sendsTo('events', peer.c), rules.sendsTo('events', peer.b), rules.sendsTo('other', peer.a)]).toEqual([true, true, false, false])
  })

  it('a reading rule with a filter keeps every put logged, and shares nothing', async () => {
    const { registry, peer } = await mesh(['a', 'b', 'c'])
    addRules(registry, [...twoWay(['a', 'c']), { id: 'r-b', from: { platform: 'b', collection: 'events' }, to: { platform: '*', collection: 'events' }, where: { public: true } }])
    expect(leftOutOn(registry, 'b')).toEqual([])
    const rules = new RuleSet()
    rules.rebuild(registry, 'b')
    expect(rules.sendsTo('events', peer.a)).toBe(false)
  })

  it('the write\'s own rule with a filter, or another mode than the reader\'s, keeps its puts logged', async () => {
    const { registry } = await mesh(['a', 'b', 'c'])
    addRules(registry, [...twoWay(['b', 'c']), { id: 'r-a', from: { platform: 'a', collection: 'events' }, to: { platform: '*', collection: 'events' }, where: { public: true } }])
    expect(leftOutOn(registry, 'b')).toEqual(['r-c'])
    const other = await mesh(['a', 'b', 'c'])
    addRules(other.registry, [...twoWay(['b', 'c']), { id: 'r-a', from: { platform: 'a', collection: 'events' }, to: { platform: '*', collection: 'events' }, mode: 'insert-only' }])
    expect(leftOutOn(other.registry, 'b')).toEqual(['r-c'])
  })

  it('a reader that reaches a node the write\'s own rule does not keeps that rule\'s puts logged', async () => {
    const { registry } = await mesh(['a', 'b', 'c', 'd'], { b: { region: 'eu' }, c: { region: 'eu' }, d: { region: 'ap' } })
    addRules(registry, [
      { id: 'r-a', from: { platform: 'a', collection: 'events' }, to: { region: 'eu', collection: 'events' } },
      { id: 'r-b', from: { platform: 'b', collection: 'events' }, to: { platform: '*', collection: 'events' } }
    ])
    // b's rule reaches a (the source: fine), c (r-a reaches it) and d (r-a does not)
    expect(leftOutOn(registry, 'b')).toEqual([])
  })

  it('a group source reading the relay, or a mirror target, keeps every put logged', async () => {
    const { registry } = await mesh(['a', 'b', 'c'], { b: { tags: ['edge'] } })
    addRules(registry, [...twoWay(['a', 'b', 'c']), { id: 'r-hub', from: { tag: 'edge', collection: 'events' } as unknown as RuleInput['from'], to: { platform: 'c', collection: 'events' } }])
    expect(leftOutOn(registry, 'b')).toEqual([])
    const mirrored = await mesh(['a', 'b', 'c'])
    addRules(mirrored.registry, [...twoWay(['a', 'c']), { id: 'r-b', from: { platform: 'b', collection: 'events' }, to: { platform: '*', collection: 'events' }, mode: 'mirror' }])
    expect(leftOutOn(mirrored.registry, 'b')).toEqual([])
  })

  it('a revoked source\'s puts are logged again: its log is no longer served', async () => {
    const { registry, peer } = await mesh(['a', 'b', 'c'])
    addRules(registry, twoWay(['a', 'b', 'c']))
    expect(leftOutOn(registry, 'b')).toEqual(['r-a', 'r-c'])
    registry.apply(PLATFORMS_COLLECTION, 'a', { name: 'a', peerId: peer.a, addrs: [], revoked: true, revokedAfter: 0 }, { origin: peer.b, seq: 2, hlc: { wall: 5000, logical: 0 } })
    expect(registry.platform('a')?.revoked).toBe(true)
    expect(leftOutOn(registry, 'b')).toEqual(['r-c'])
  })
})

/** With rule streams: own stream of rule `ruleId` on `name` → the rules whose relayed puts it leaves out. */
function streamLeftOutOn (registry: Registry, name: string, ruleId: string, writers: string[]): string[] {
  const rules = new RuleSet({ streams: true })
  rules.rebuild(registry, name)
  const rule = registry.rules().find(r => r.id === ruleId)!
  expect(rules.allOutbound().map(o => o.stream)).toContain(ruleStreamId(rule))
  return writers.filter(w => rules.streamLeavesOut(ruleStreamId(rule), w)).sort()
}

describe('relayed puts left out of a relay\'s rule streams (the same condition, per stream)', () => {
  it('two-way sync with plain rules: each node\'s stream leaves out the puts of every other node\'s rule', async () => {
    const { registry } = await mesh(['a', 'b', 'c'])
    addRules(registry, twoWay(['a', 'b', 'c']))
    expect(streamLeftOutOn(registry, 'b', 'r-b', ['r-a', 'r-b', 'r-c'])).toEqual(['r-a', 'r-c'])
    const rules = new RuleSet({ streams: true })
    rules.rebuild(registry, 'b')
    expect(rules.streamLeavesOut('r.unknown', 'r-a')).toBe(false)
  })

  it('per stream: a second rule with a filter reading the relay sends what it sends in its own stream, and the plain rule\'s stream still leaves out', async () => {
    const { registry } = await mesh(['a', 'b', 'c', 'd'])
    addRules(registry, [...twoWay(['a', 'b', 'c']).map(r => ({ ...r, to: { platform: r.id === 'r-b' ? 'a' : '*', collection: 'events' } })),
      { id: 'r-b2', from: { platform: 'b', collection: 'events' }, to: { platform: 'c', collection: 'events' } },
      { id: 'r-bd', from: { platform: 'b', collection: 'events' }, to: { platform: 'd', collection: 'events' }, where: { public: true } }])
    // without streams one filtered reader keeps every put logged
    const whole = new RuleSet()
    whole.rebuild(registry, 'b')
    expect(whole.leftOut().get('events')).toBeUndefined()
    expect(streamLeftOutOn(registry, 'b', 'r-b', ['r-a', 'r-c'])).toEqual(['r-a', 'r-c'])
    expect(streamLeftOutOn(registry, 'b', 'r-b2', ['r-a', 'r-c'])).toEqual(['r-a', 'r-c'])
    expect(streamLeftOutOn(registry, 'b', 'r-bd', ['r-a', 'r-c'])).toEqual([])
  })

  it('a target the write\'s own rule does not reach, another mode, a targets field or a group source: nothing is left out', async () => {
    const { registry } = await mesh(['a', 'b', 'c', 'd'], { b: { region: 'eu', tags: ['edge'] }, c: { region: 'eu' }, d: { region: 'ap' } })
    addRules(registry, [
      { id: 'r-a', from: { platform: 'a', collection: 'events' }, to: { region: 'eu', collection: 'events' } },
      { id: 'r-c', from: { platform: 'c', collection: 'events' }, to: { platform: '*', collection: 'events' } },
      { id: 'r-b', from: { platform: 'b', collection: 'events' }, to: { platform: '*', collection: 'events' } },
      { id: 'r-bc', from: { platform: 'b', collection: 'events' }, to: { platform: 'c', collection: 'events' }, mode: 'insert-only' },
      { id: 'r-bf', from: { platform: 'b', collection: 'events' }, to: { platform: '*', collection: 'events' }, targetsField: 'to' },
      { id: 'r-hub', from: { tag: 'edge', collection: 'events' } as unknown as RuleInput['from'], to: { platform: 'c', collection: 'events' } }
    ])
    // b's rule reaches d, which r-a does not: r-a's puts go on; r-c reaches d itself
    expect(streamLeftOutOn(registry, 'b', 'r-b', ['r-a', 'r-c'])).toEqual(['r-c'])
    expect(streamLeftOutOn(registry, 'b', 'r-bc', ['r-a', 'r-c'])).toEqual([])
    expect(streamLeftOutOn(registry, 'b', 'r-hub', ['r-a', 'r-c'])).toEqual([])
    const rules = new RuleSet({ streams: true })
    rules.rebuild(registry, 'b')
    const withField = rules.allOutbound().filter(o => o.compiled.rule.id === 'r-bf')
    expect(withField.length).toBeGreaterThan(0)
    for (const o of withField) expect(rules.streamLeavesOut(o.stream, 'r-c')).toBe(false)
  })
})
