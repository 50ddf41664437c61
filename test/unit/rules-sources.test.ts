/**
 * Group sources of rules: which platforms a source selector names, which feed
 * a given target (never the target itself), which targets such a rule has,
 * the validation of malformed selectors (stable codes), and the CLI's
 * parsing of `--from`.
 */
import { describe, expect, it } from 'vitest'
import { parseRuleSpec, formatSource } from '../../src/registry/registry.js'
import { assertKnownPlatforms, isGroupSource, ruleSources, selects, targetsPlatform, unknownPlatforms } from '../../src/rules/targets.js'
import type { PlatformIdentity } from '../../src/rules/targets.js'
import { compileRule, stateIdOf } from '../../src/rules/engine.js'
import { parseTarget } from '../../src/cli/commands/rules.js'
import type { Rule, SourceEndpoint } from '../../src/core/types.js'
import { SyncmeshError } from '../../src/core/errors.js'

const platforms: PlatformIdentity[] = [
  { name: 'hub', region: 'core' },
  { name: 'eu1', region: 'eu', tags: ['edge'] },
  { name: 'eu2', region: 'eu' },
  { name: 'us1', region: 'us', tags: ['edge'] }
]
const names = (list: PlatformIdentity[]): string[] => list.map(p => p.name)

function codeOf (fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (err) {
    return err instanceof SyncmeshError ? err.code : 'not a SyncmeshError'
  }
  return undefined
}

describe('source selectors', () => {
  it('select one platform, a region, a tag or every platform', () => {
    expect(names(platforms.filter(p => selects({ platform: 'eu2', collection: 'd' }, p)))).toEqual(['eu2'])
    expect(names(platforms.filter(p => selects({ region: 'eu', collection: 'd' }, p)))).toEqual(['eu1', 'eu2'])
    expect(names(platforms.filter(p => selects({ tag: 'edge', collection: 'd' }, p)))).toEqual(['eu1', 'us1'])
    expect(names(platforms.filter(p => selects({ platform: '*', collection: 'd' }, p)))).toEqual(['hub', 'eu1', 'eu2', 'us1'])
    expect(isGroupSource({ platform: 'eu1', collection: 'd' })).toBe(false)
    for (const from of [{ platform: '*', collection: 'd' }, { region: 'eu', collection: 'd' }, { tag: 'edge', collection: 'd' }]) expect(isGroupSource(from)).toBe(true)
  })

  it('a group source feeds each target from the group but the target itself', () => {
    expect(names(ruleSources({ platform: '*', collection: 'd' }, platforms, 'hub'))).toEqual(['eu1', 'eu2', 'us1'])
    expect(names(ruleSources({ region: 'eu', collection: 'd' }, platforms, 'hub'))).toEqual(['eu1', 'eu2'])
    // group source and group target: each eu node reads the other eu nodes, never itself
    expect(names(ruleSources({ region: 'eu', collection: 'd' }, platforms, 'eu1'))).toEqual(['eu2'])
    expect(names(ruleSources({ tag: 'nosuch', collection: 'd' }, platforms, 'hub'))).toEqual([])
    // one named source: that platform, whatever the target
    expect(names(ruleSources({ platform: 'eu1', collection: 'd' }, platforms, 'eu1'))).toEqual(['eu1'])
    expect(names(ruleSources({ platform: 'gone', collection: 'd' }, platforms, 'hub'))).toEqual([])
  })

  it('targets: a group target leaves out the one named source; with a group source it takes its group as written', () => {
    const targets = (from: SourceEndpoint, to: { platform?: string, region?: string, tag?: string, collection: string }): string[] =>
      names(platforms.filter(p => targetsPlatform(to, from, p)))
    expect(targets({ platform: 'eu1', collection: 'd' }, { region: 'eu', collection: 'd' })).toEqual(['eu2'])
    expect(targets({ platform: 'eu1', collection: 'd' }, { platform: '*', collection: 'd' })).toEqual(['hub', 'eu2', 'us1'])
    expect(targets({ region: 'eu', collection: 'd' }, { platform: 'hub', collection: 'd' })).toEqual(['hub'])
    expect(targets({ region: 'eu', collection: 'd' }, { region: 'eu', collection: 'd' })).toEqual(['eu1', 'eu2'])
    expect(targets({ platform: '*', collection: 'd' }, { platform: '*', collection: 'd' })).toEqual(['hub', 'eu1', 'eu2', 'us1'])
  })

  it('a group source is never an unknown platform, even with an empty group; a named one still is', () => {
    const known = (n: string): boolean => platforms.some(p => p.name === n)
    expect(unknownPlatforms({ from: { region: 'nowhere', collection: 'd' }, to: { platform: 'hub', collection: 'd' } }, known)).toEqual([])
    expect(unknownPlatforms({ from: { platform: '*', collection: 'd' }, to: { platform: 'hub', collection: 'd' } }, known)).toEqual([])
    expect(unknownPlatforms({ from: { tag: 'edge', collection: 'd' }, to: { platform: 'nosuch', collection: 'd' } }, known)).toEqual([{ role: 'target', name: 'nosuch' }])
    expect(unknownPlatforms({ from: { platform: 'nosuch', collection: 'd' }, to: { platform: 'hub', collection: 'd' } }, known)).toEqual([{ role: 'source', name: 'nosuch' }])
    expect(() => assertKnownPlatforms({ from: { tag: 'none-yet', collection: 'd' }, to: { platform: 'hub', collection: 'd' } }, platforms)).not.toThrow()
    expect(codeOf(() => assertKnownPlatforms({ from: { platform: 'nosuch', collection: 'd' }, to: { platform: 'hub', collection: 'd' } }, platforms))).toBe('UNKNOWN_PLATFORM')
  })

  it('each source of a group rule keeps its own state; a rule reading one platform keeps its id as before', () => {
    const rule: Rule = { id: 'r-1', from: { region: 'eu', collection: 'd' }, to: { platform: 'hub', collection: 'd' }, mode: 'merge', createdAt: '2026-01-01T00:00:00Z' }
    expect(stateIdOf(rule, 'eu1')).not.toBe(stateIdOf(rule, 'eu2'))
    expect(stateIdOf(rule, 'eu1').startsWith('r-1')).toBe(true)
    const compiled = compileRule(rule, 'peer-eu1', { sourcePlatform: 'eu1', localName: 'hub' })
    expect(compiled.group).toBe(true)
    expect(compiled.sourcePlatform).toBe('eu1')
    expect(compiled.stateId).toBe(stateIdOf(rule, 'eu1'))
    const one: Rule = { ...rule, from: { platform: 'eu1', collection: 'd' } }
    expect(stateIdOf(one, 'eu1')).toBe('r-1')
    expect(compileRule(one, 'peer-eu1').stateId).toBe('r-1')
    expect(compileRule(one, 'peer-eu1').group).toBe(false)
  })
})

describe('rule validation of the source selector', () => {
  const to = { platform: 'hub', collection: 'devices' }
  it('accepts one platform, "*", a region or a tag', () => {
    expect(parseRuleSpec({ from: { platform: 'eu1', collection: 'devices' }, to }).from).toEqual({ platform: 'eu1', collection: 'devices' })
    expect(parseRuleSpec({ from: { platform: '*', collection: 'devices' }, to }).from).toEqual({ platform: '*', collection: 'devices' })
    expect(parseRuleSpec({ from: { region: 'eu', collection: 'devices' }, to }).from).toEqual({ region: 'eu', collection: 'devices' })
    expect(parseRuleSpec({ from: { tag: 'edge', collection: 'devices' }, to }).from).toEqual({ tag: 'edge', collection: 'devices' })
    // a group source may write to the same collection of the target: the target is not read
    expect(parseRuleSpec({ from: { platform: '*', collection: 'devices' }, to }).to).toEqual(to)
  })

  it('refuses a malformed selector with INVALID_RULE', () => {
    const bad: unknown[] = [
      { from: { collection: 'devices' }, to },
      { from: { region: 'eu', tag: 'edge', collection: 'devices' }, to },
      { from: { platform: 'eu1', region: 'eu', collection: 'devices' }, to },
      { from: { region: 'e u', collection: 'devices' }, to },
      { from: { tag: '', collection: 'devices' }, to },
      { from: { platform: 'a*', collection: 'devices' }, to },
      { from: { region: 'eu', collection: 'devices', extra: 1 }, to },
      { from: { region: 'eu', collection: '$rules' }, to },
      { from: { platform: 'hub', collection: 'devices' }, to }
    ]
    for (const spec of bad) expect(codeOf(() => parseRuleSpec(spec)), JSON.stringify(spec)).toMatch(/^INVALID_/)
    expect(() => parseRuleSpec(bad[0])).toThrow(/source names exactly one of "platform".*"region" or "tag"/)
    expect(() => parseRuleSpec(bad[1])).toThrow(/source names exactly one/)
  })

  it('formats a source as the command line writes it', () => {
    expect(formatSource({ region: 'eu', collection: 'devices' })).toBe('region=eu:devices')
    expect(formatSource({ tag: 'edge', collection: 'devices' })).toBe('tag=edge:devices')
    expect(formatSource({ platform: '*', collection: 'devices' })).toBe('*:devices')
    expect(formatSource({ platform: 'eu1', collection: 'devices' })).toBe('eu1:devices')
  })

  it('the CLI parses --from like --to', () => {
    expect(parseTarget('region=eu:devices', '--from')).toEqual({ region: 'eu', collection: 'devices' })
    expect(parseTarget('tag=edge:devices', '--from')).toEqual({ tag: 'edge', collection: 'devices' })
    expect(parseTarget('*:devices', '--from')).toEqual({ platform: '*', collection: 'devices' })
    expect(parseTarget('staging:posts', '--from')).toEqual({ platform: 'staging', collection: 'posts' })
    expect(codeOf(() => parseTarget('devices', '--from'))).toBe('USAGE')
    expect(() => parseTarget('zone=eu:devices', '--from')).toThrow(/--from expects PLATFORM:COLLECTION, region=REGION:COLLECTION/)
  })
})
