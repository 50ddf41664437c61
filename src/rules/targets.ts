/**
 * Which platforms a rule writes to.
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
 * Per-record targeting (`targetsField`): a source record whose field lists
 * platform names (a string or an array of strings) is delivered only to the
 * rule's targets named there; a record without the field (or with null) goes
 * to every target.
 */
import { SyncmeshError } from '../core/errors.js'
import type { JsonObject, Platform, Rule, TargetEndpoint } from '../core/types.js'
import { ALL_PLATFORMS } from '../registry/registry.js'
import type { Registry } from '../registry/registry.js'
import { fieldGetter } from './filter.js'

export interface PlatformIdentity {
  name: string
  region?: string
  tags?: string[]
}

/** Whether the target selector `to` of a rule from `sourcePlatform` includes `platform`. */
export function targetsPlatform (to: TargetEndpoint, sourcePlatform: string, platform: PlatformIdentity): boolean {
  if (to.platform !== undefined && to.platform !== ALL_PLATFORMS) return to.platform === platform.name
  if (platform.name === sourcePlatform) return false
  if (to.platform === ALL_PLATFORMS) return true
  if (to.region !== undefined) return platform.region === to.region
  if (to.tag !== undefined) return platform.tags?.includes(to.tag) === true
  return false
}

/** Whether the selector names groups of platforms rather than one. */
export function isGroupTarget (to: TargetEndpoint): boolean {
  return to.platform === undefined || to.platform === ALL_PLATFORMS
}

/** The registry platforms a rule targets now, by name. */
export function ruleTargets (rule: Rule, registry: Registry): Platform[] {
  if (!isGroupTarget(rule.to)) {
    const p = registry.platform(rule.to.platform as string)
    return p !== undefined ? [p] : []
  }
  return registry.platforms().filter(p => targetsPlatform(rule.to, rule.from.platform, p))
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
 * The platforms a rule names by name (its source, and its target unless the
 * target is a group or "*") that `known` does not list: such a rule does
 * nothing until a platform of that name joins.
 */
export function unknownPlatforms (rule: { from: { platform: string }, to: TargetEndpoint }, known: (name: string) => boolean): Array<{ role: 'source' | 'target', name: string }> {
  const out: Array<{ role: 'source' | 'target', name: string }> = []
  if (!known(rule.from.platform)) out.push({ role: 'source', name: rule.from.platform })
  const to = rule.to.platform
  if (to !== undefined && to !== ALL_PLATFORMS && to !== rule.from.platform && !known(to)) out.push({ role: 'target', name: to })
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
export function assertKnownPlatforms (rule: { from: { platform: string }, to: TargetEndpoint }, platforms: Array<{ name: string }>): void {
  const unknown = unknownPlatforms(rule, (name) => platforms.some(p => p.name === name))
  if (unknown.length === 0) return
  const names = platforms.map(p => p.name)
  throw new SyncmeshError('UNKNOWN_PLATFORM', `${describeUnknown(unknown)} (it has: ${names.length > 0 ? names.join(', ') : 'none'}). Check the name ("syncmesh platform ls"), wait until that platform's node has joined the mesh, or register it with "syncmesh platform add NAME --peer PEER_ID"; to save the rule anyway (it does nothing until the platform exists, and status shows it as a problem), repeat with --force (HTTP: "force": true)`, 400)
}
