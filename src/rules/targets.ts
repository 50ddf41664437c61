/**
 * Which platforms a rule writes to, and which it reads.
 *
 *   - `to.platform: "B"`     the platform B
 *   - `to.platform: "*"`     every platform of the registry but the source
 *   - `to.region: "eu"`      every platform whose registry entry has region "eu", but the source
 *   - `to.tag: "edge"`       every platform whose registry entry has the tag "edge", but the source
 *
 * Membership follows the replicated registry: a platform that joins the
 * region (or gets the tag) starts applying the rule, with a backfill; one that
 * leaves stops, keeping what the rule wrote.
 *
 * A rule's source takes the same selectors (`from.platform: "A"`, `"*"`,
 * `from.region`, `from.tag`). A group source is read on each target node
 * from every platform of the group but that node itself (a record is never
 * its own source); membership follows the registry as for targets. With a
 * group source, the target selector is taken as written: a group target
 * includes every platform of its group, each reading the others.
 *
 * Per-record targeting (`targetsField`): a source record whose field lists
 * platform names (a string or an array of strings) is delivered only to the
 * rule's targets named there; a record without the field (or with null) goes
 * to every target.
 */
import { SyncmeshError } from '../core/errors.js'
import type { JsonObject, Platform, Rule, SourceEndpoint, TargetEndpoint } from '../core/types.js'
import { ALL_PLATFORMS } from '../registry/registry.js'
import type { Registry } from '../registry/registry.js'
import { fieldGetter } from './filter.js'

export interface PlatformIdentity {
  name: string
  region?: string
  tags?: string[]
}

/** Whether a selector (a rule's source or target) names `platform`, before any exclusion. */
export function selects (sel: TargetEndpoint | SourceEndpoint, platform: PlatformIdentity): boolean {
  if (sel.platform !== undefined) return sel.platform === ALL_PLATFORMS || sel.platform === platform.name
  if (sel.region !== undefined) return platform.region === sel.region
  if (sel.tag !== undefined) return platform.tags?.includes(sel.tag) === true
  return false
}

/** Whether the target selector `to` of a rule reading `from` includes `platform`. */
export function targetsPlatform (to: TargetEndpoint, from: SourceEndpoint, platform: PlatformIdentity): boolean {
  if (!isGroupTarget(to)) return to.platform === platform.name
  // a group target leaves out the one platform the rule reads; with a group source, each target reads the others
  if (!isGroupSource(from) && platform.name === from.platform) return false
  return selects(to, platform)
}

/** Whether the selector names groups of platforms rather than one. */
export function isGroupTarget (to: TargetEndpoint): boolean {
  return to.platform === undefined || to.platform === ALL_PLATFORMS
}

/** Whether a rule's source is a group of platforms (a region, a tag or "*") rather than one. */
export function isGroupSource (from: SourceEndpoint): boolean {
  return from.platform === undefined || from.platform === ALL_PLATFORMS
}

/**
 * The registry platforms that feed a rule on the target `targetName`: its one
 * source platform (when the registry has it), or every platform of its source
 * group but the target itself.
 */
export function ruleSources<P extends PlatformIdentity> (from: SourceEndpoint, platforms: P[], targetName: string): P[] {
  if (!isGroupSource(from)) return platforms.filter(p => p.name === from.platform)
  return platforms.filter(p => p.name !== targetName && selects(from, p))
}

/** The registry platforms a rule targets now, by name. */
export function ruleTargets (rule: Rule, registry: Registry): Platform[] {
  if (!isGroupTarget(rule.to)) {
    const p = registry.platform(rule.to.platform as string)
    return p !== undefined ? [p] : []
  }
  return registry.platforms().filter(p => targetsPlatform(rule.to, rule.from, p))
}

/** Result of reading a record's targets field: every target, a list of platform names, or unusable. */
export type RecordTargets = { kind: 'all' } | { kind: 'list', names: string[] } | { kind: 'invalid', reason: string }

/** A reader for a rule's targets field (a dotted path, with the filter's path rules). */
export function recordTargetsReader (field: string): (value: JsonObject) => RecordTargets {
  const get = fieldGetter(field)
  return (value) => {
    const v = get(value)
    if (v === undefined || v === null) return { kind: 'all' }
    if (typeof v === 'string') return { kind: 'list', names: [v] }
    if (Array.isArray(v) && v.every(x => typeof x === 'string')) return { kind: 'list', names: v as string[] }
    return { kind: 'invalid', reason: `field "${field}" must name platforms (a string or an array of strings)` }
  }
}

/**
 * The platforms a rule names by name (its source and its target, unless a
 * group or "*") that `known` does not list: such a rule does nothing until a
 * platform of that name joins. A group, even empty today, is not unknown.
 */
export function unknownPlatforms (rule: { from: SourceEndpoint, to: TargetEndpoint }, known: (name: string) => boolean): Array<{ role: 'source' | 'target', name: string }> {
  const out: Array<{ role: 'source' | 'target', name: string }> = []
  const from = rule.from.platform
  if (from !== undefined && from !== ALL_PLATFORMS && !known(from)) out.push({ role: 'source', name: from })
  const to = rule.to.platform
  if (to !== undefined && to !== ALL_PLATFORMS && to !== from && !known(to)) out.push({ role: 'target', name: to })
  return out
}

/** What a rule naming unknown platforms is told, e.g. 'target platform "nosuch" is not in the registry'. */
export function describeUnknown (unknown: Array<{ role: 'source' | 'target', name: string }>): string {
  return unknown.map(u => `${u.role} platform "${u.name}"`).join(' and ') + (unknown.length > 1 ? ' are' : ' is') + ' not in the registry'
}

/**
 * Refuse a rule naming platforms the registry does not have (400
 * UNKNOWN_PLATFORM): what the CLI and the HTTP API do unless forced.
 */
export function assertKnownPlatforms (rule: { from: SourceEndpoint, to: TargetEndpoint }, platforms: Array<{ name: string }>): void {
  const unknown = unknownPlatforms(rule, (name) => platforms.some(p => p.name === name))
  if (unknown.length === 0) return
  const names = platforms.map(p => p.name)
  throw new SyncmeshError('UNKNOWN_PLATFORM', `${describeUnknown(unknown)} (it has: ${names.length > 0 ? names.join(', ') : 'none'}). Check the name ("syncmesh platform ls"), wait until that platform's node has joined the mesh, or register it with "syncmesh platform add NAME --peer PEER_ID"; to save the rule anyway (it does nothing until the platform exists, and status shows it as a problem), repeat with --force (HTTP: "force": true)`, 400)
}
