/**
 * The platform registry: platforms and rules, replicated through the logs as
 * records of the reserved collections `$platforms` (id = name) and `$rules`
 * (id = rule id). Every node applies registry entries from every origin, last
 * writer wins, so all nodes converge on the same registry. This class is the
 * in-memory view, rebuilt from the store at start and updated after commits.
 */
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { z } from 'zod'
import { InvalidInputError } from '../errors.js'
import { NAME_PATTERN } from '../node/config.js'
import type { Platform, Rule, RulePatch, RuleSpec, TargetEndpoint } from '../node/types.js'
import type { Store } from '../store/db.js'
import { keys, keySuffix, prefixRange } from '../store/keys.js'
import { checkCollection, PLATFORMS_COLLECTION, RULES_COLLECTION } from '../store/names.js'
import { decodeRecord } from '../store/records.js'
import type { JsonObject } from '../node/types.js'

const MAX_ADDRS = 16

function firstIssue (err: z.ZodError): string {
  const i = err.issues[0]
  const path = i?.path.join('.') ?? ''
  return `${path !== '' ? path + ': ' : ''}${i?.message ?? 'invalid'}`
}

const platformSchema = z.object({
  name: z.string().regex(NAME_PATTERN, 'letters, digits, "_", "." or "-", at most 64 characters'),
  peerId: z.string().min(1),
  region: z.string().regex(NAME_PATTERN).optional(),
  addrs: z.array(z.string()).max(MAX_ADDRS).default([]),
  tags: z.array(z.string().regex(NAME_PATTERN)).max(32).optional(),
  revoked: z.boolean().optional(),
  revokedAfter: z.number().int().min(0).optional(),
  purge: z.boolean().optional()
}).strict()

/** Validate an operator-supplied platform; throws InvalidInputError. */
export function validatePlatform (input: unknown): Platform {
  const parsed = platformSchema.safeParse(input)
  if (!parsed.success) throw new InvalidInputError(`invalid platform: ${firstIssue(parsed.error)}`, 'INVALID_PLATFORM')
  const p = parsed.data
  try {
    peerIdFromString(p.peerId)
  } catch {
    throw new InvalidInputError(`invalid platform: "${p.peerId}" is not a peer id (it is printed by "syncmesh init" and in "syncmesh status")`, 'INVALID_PLATFORM')
  }
  for (const a of p.addrs) {
    try {
      multiaddr(a)
    } catch {
      throw new InvalidInputError(`invalid platform: "${a}" is not a multiaddr (e.g. /ip4/10.0.0.5/tcp/4001)`, 'INVALID_PLATFORM')
    }
  }
  const out: Platform = { name: p.name, peerId: p.peerId, addrs: p.addrs }
  if (p.region !== undefined) out.region = p.region
  if (p.tags !== undefined) out.tags = p.tags
  if (p.revoked === true) {
    out.revoked = true
    out.revokedAfter = p.revokedAfter ?? 0
    if (p.purge === true) out.purge = true
  }
  return out
}

const endpointSchema = z.object({
  platform: z.string().regex(NAME_PATTERN, 'a platform name'),
  collection: z.string()
}).strict()

const jsonObject = z.record(z.string(), z.unknown())

/** The platform name that targets every platform (but the source). */
export const ALL_PLATFORMS = '*'

const targetSchema = z.object({
  platform: z.union([z.literal(ALL_PLATFORMS), z.string().regex(NAME_PATTERN, 'a platform name, or "*" for every platform')]).optional(),
  region: z.string().regex(NAME_PATTERN, 'a region name').optional(),
  tag: z.string().regex(NAME_PATTERN, 'a tag').optional(),
  collection: z.string()
}).strict()

const webhookSchema = z.object({
  url: z.string().max(2048),
  secret: z.string().min(16, 'at least 16 characters (e.g. the output of "openssl rand -hex 32")').max(256)
}).strict()

export const ruleSpecSchema = z.object({
  from: endpointSchema,
  to: targetSchema,
  mode: z.enum(['merge', 'mirror', 'insert-only']).optional(),
  where: jsonObject.optional(),
  include: z.array(z.string().min(1)).max(256).optional(),
  exclude: z.array(z.string().min(1)).max(256).optional(),
  rename: z.record(z.string().min(1), z.string().min(1)).optional(),
  key: z.string().min(1).max(256).optional(),
  transform: z.string().min(1).max(512).optional(),
  targetsField: z.string().min(1).max(256).optional(),
  webhook: webhookSchema.optional()
}).strict()

/** Structural validation of a rule spec (the rule engine compiles filter and transforms). */
export function parseRuleSpec (input: unknown): RuleSpec {
  const parsed = ruleSpecSchema.safeParse(input)
  if (!parsed.success) throw new InvalidInputError(`invalid rule: ${firstIssue(parsed.error)}`, 'INVALID_RULE')
  const spec = parsed.data
  checkCollection(spec.from.collection)
  checkCollection(spec.to.collection)
  const selectors = [spec.to.platform, spec.to.region, spec.to.tag].filter(s => s !== undefined)
  if (selectors.length !== 1) {
    throw new InvalidInputError('invalid rule: the target names exactly one of "platform" (a name, or "*" for every platform), "region" or "tag", e.g. {"region": "eu", "collection": "posts"}', 'INVALID_RULE')
  }
  if (spec.from.platform === spec.to.platform && spec.from.collection === spec.to.collection) {
    throw new InvalidInputError('invalid rule: source and target are the same collection of the same platform', 'INVALID_RULE')
  }
  if (spec.transform !== undefined && (/[\u0000-\u001f]/.test(spec.transform) || spec.transform.split(/[\\/]/).includes('..'))) {
    throw new InvalidInputError(`invalid rule: transform "${spec.transform.slice(0, 80)}" must be a module path inside the transforms directory of the target nodes (e.g. "slugify.js"), without ".." segments`, 'INVALID_RULE')
  }
  if (spec.webhook !== undefined) {
    let url: URL | undefined
    try {
      url = new URL(spec.webhook.url)
    } catch {}
    if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
      throw new InvalidInputError(`invalid rule: webhook url "${spec.webhook.url.slice(0, 80)}" is not an http(s) URL, e.g. https://example.com/hooks/syncmesh`, 'INVALID_RULE')
    }
  }
  return spec as RuleSpec
}

/** "B:articles", "region=eu:articles", "tag=edge:articles", "*:articles" */
export function formatTarget (to: TargetEndpoint): string {
  if (to.region !== undefined) return `region=${to.region}:${to.collection}`
  if (to.tag !== undefined) return `tag=${to.tag}:${to.collection}`
  return `${to.platform ?? '?'}:${to.collection}`
}

/** The rule's spec with a patch applied: given fields replace, null removes. Validated like a new rule. */
export function applyRulePatch (rule: Rule, patch: RulePatch): RuleSpec {
  const { id: _id, createdAt: _c, updatedAt: _u, mode, ...rest } = rule
  const next: Record<string, unknown> = { ...rest, mode }
  for (const [field, value] of Object.entries(patch)) {
    if (value === undefined) continue
    if (value === null) delete next[field]
    else next[field] = value
  }
  // a webhook sent back as the API showed it keeps its secret
  const hook = patch.webhook
  if (hook != null && hook.secret === REDACTED && rule.webhook !== undefined) next.webhook = { ...hook, secret: rule.webhook.secret }
  return parseRuleSpec(next)
}

/** A rule as the API shows it: the webhook secret is never returned. */
export function redactRule (rule: Rule): Rule {
  if (rule.webhook === undefined) return rule
  return { ...rule, webhook: { url: rule.webhook.url, secret: REDACTED } }
}

export const REDACTED = '(redacted)'

export class Registry {
  private readonly platformsByName = new Map<string, Platform>()
  private readonly rulesById = new Map<string, Rule>()

  async load (store: Store): Promise<void> {
    for (const [collection, apply] of [[PLATFORMS_COLLECTION, this.setPlatform.bind(this)], [RULES_COLLECTION, this.setRule.bind(this)]] as const) {
      const prefix = keys.recordPrefix(collection)
      for await (const [key, value] of store.db.iterator(prefixRange(prefix))) {
        apply(keySuffix(key, prefix), decodeRecord(value).value)
      }
    }
  }

  /** Apply a committed registry record (value undefined = removed). Invalid records are ignored. */
  apply (collection: string, id: string, value: JsonObject | undefined): void {
    if (collection === PLATFORMS_COLLECTION) this.setPlatform(id, value)
    else if (collection === RULES_COLLECTION) this.setRule(id, value)
  }

  private setPlatform (name: string, value: JsonObject | undefined): void {
    if (value === undefined) {
      this.platformsByName.delete(name)
      return
    }
    try {
      const p = validatePlatform(value)
      if (p.name === name) this.platformsByName.set(name, p)
    } catch {
      // a malformed registry record (from a buggy or newer peer) is not applied
    }
  }

  private setRule (id: string, value: JsonObject | undefined): void {
    if (value === undefined) {
      this.rulesById.delete(id)
      return
    }
    try {
      const { id: _id, createdAt, updatedAt, ...spec } = value as { id?: unknown, createdAt?: unknown, updatedAt?: unknown }
      const parsed = parseRuleSpec(spec)
      const rule: Rule = { ...parsed, id, mode: parsed.mode ?? 'merge', createdAt: typeof createdAt === 'string' ? createdAt : '' }
      if (typeof updatedAt === 'string') rule.updatedAt = updatedAt
      this.rulesById.set(id, rule)
    } catch {
      // ignored, as above
    }
  }

  platforms (): Platform[] {
    return [...this.platformsByName.values()].sort((a, b) => a.name.localeCompare(b.name))
  }

  platform (name: string): Platform | undefined {
    return this.platformsByName.get(name)
  }

  platformByPeer (peerId: string): Platform | undefined {
    for (const p of this.platformsByName.values()) if (p.peerId === peerId) return p
    return undefined
  }

  rules (): Rule[] {
    return [...this.rulesById.values()].sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id))
  }

  rule (id: string): Rule | undefined {
    return this.rulesById.get(id)
  }
}
