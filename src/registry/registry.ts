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
import type { Platform, Rule, RuleSpec } from '../node/types.js'
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
  tags: z.array(z.string().regex(NAME_PATTERN)).max(32).optional()
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
  return out
}

const endpointSchema = z.object({
  platform: z.string().regex(NAME_PATTERN, 'a platform name'),
  collection: z.string()
}).strict()

const jsonObject = z.record(z.string(), z.unknown())

export const ruleSpecSchema = z.object({
  from: endpointSchema,
  to: endpointSchema,
  mode: z.enum(['merge', 'mirror', 'insert-only']).optional(),
  where: jsonObject.optional(),
  include: z.array(z.string().min(1)).max(256).optional(),
  exclude: z.array(z.string().min(1)).max(256).optional(),
  rename: z.record(z.string().min(1), z.string().min(1)).optional(),
  key: z.string().min(1).max(256).optional()
}).strict()

/** Structural validation of a rule spec (the rule engine compiles filter and transforms). */
export function parseRuleSpec (input: unknown): RuleSpec {
  const parsed = ruleSpecSchema.safeParse(input)
  if (!parsed.success) throw new InvalidInputError(`invalid rule: ${firstIssue(parsed.error)}`, 'INVALID_RULE')
  const spec = parsed.data
  checkCollection(spec.from.collection)
  checkCollection(spec.to.collection)
  if (spec.from.platform === spec.to.platform && spec.from.collection === spec.to.collection) {
    throw new InvalidInputError('invalid rule: source and target are the same collection of the same platform', 'INVALID_RULE')
  }
  return spec as RuleSpec
}

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
      const { id: _id, createdAt, ...spec } = value as { id?: unknown, createdAt?: unknown }
      const parsed = parseRuleSpec(spec)
      this.rulesById.set(id, { ...parsed, id, mode: parsed.mode ?? 'merge', createdAt: typeof createdAt === 'string' ? createdAt : '' })
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
