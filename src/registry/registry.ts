/**
 * The platform registry: platforms and rules, replicated through the logs as
 * entries of the reserved collections `$platforms` (id = name) and `$rules`
 * (id = rule id). Every node applies registry entries from every origin, so
 * all nodes converge on the same registry. This class is the in-memory view,
 * rebuilt from the store at start and updated after commits.
 *
 * Rules are last-writer-wins records (only admins write them, when admins are
 * configured). Platforms are not: who a name belongs to is a security
 * decision, and no clock decides it (docs/trust.md):
 *
 * - every `$platforms` entry is a claim of its writer (the entry's origin);
 *   the writer's newest one per name counts (by its own log order; a delete
 *   withdraws it);
 * - a revocation is permanent and bound to the peer id: every name of that
 *   peer id is revoked, its claims bind nothing, and no later write (of any
 *   clock) registers it again; of several revocations the lowest
 *   `revokedAfter` holds;
 * - with admins configured, a name belongs to the peer id of the newest admin
 *   claim (admins are trusted to rebind); without one (never bound, or the
 *   binding deleted), to the one peer id self-registered under it;
 * - without admins, to the one peer id that all live claims name;
 * - claims naming two live peer ids and no admin binding: the name is
 *   contested and belongs to no one until an admin binds it or one claimant
 *   is revoked. No timestamp breaks the tie: a claimant chooses its own, and
 *   while the clock bound refuses one stamped ahead, nothing can refuse one
 *   stamped behind.
 */
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { z } from 'zod'
import { InvalidInputError } from '../core/errors.js'
import { NAME_PATTERN } from '../store/names.js'
import type { Platform, Rule, RulePatch, RuleSpec, SourceEndpoint, TargetEndpoint } from '../core/types.js'
import type { ChangeLog } from '../log/changelog.js'
import { streamOf } from '../log/log-id.js'
import { compareHlc } from '../core/hlc.js'
import type { Hlc } from '../core/hlc.js'
import { decodeJson, encodeJson } from '../store/db.js'
import type { Store } from '../store/db.js'
import { keys, keySuffix, prefixRange, SEP } from '../store/keys.js'
import { checkCollection, PLATFORMS_COLLECTION, RULES_COLLECTION } from '../store/names.js'
import { decodeRecord } from '../store/records.js'
import type { JsonObject } from '../core/types.js'
import { DEFAULT_RULE_MODE, RULE_MODE_NAMES } from '../core/modes.js'

const MAX_ADDRS = 16
/** `$platforms` entries read per origin and trip at start. */
const LOAD_CHUNK = 500

function parseJsonObject (bytes: Uint8Array): JsonObject | undefined {
  try {
    const v: unknown = JSON.parse(new TextDecoder().decode(bytes))
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? v as JsonObject : undefined
  } catch {
    return undefined
  }
}

export function encodeRevocation (r: Revocation): Uint8Array {
  return encodeJson(r.purge === true ? { revokedAfter: r.revokedAfter, purge: true } : { revokedAfter: r.revokedAfter })
}

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

const jsonObject = z.record(z.string(), z.unknown())

/** The platform name that targets every platform (but the source). */
export const ALL_PLATFORMS = '*'

const targetSchema = z.object({
  platform: z.union([z.literal(ALL_PLATFORMS), z.string().regex(NAME_PATTERN, 'a platform name, or "*" for every platform')]).optional(),
  region: z.string().regex(NAME_PATTERN, 'a region name').optional(),
  tag: z.string().regex(NAME_PATTERN, 'a tag').optional(),
  collection: z.string()
}).strict()

/** A rule's source: the same selectors as a target (one platform, a region, a tag, or "*"). */
const sourceSchema = targetSchema

const webhookSchema = z.object({
  url: z.string().max(2048),
  secretRef: z.string().regex(NAME_PATTERN, 'the name of a secret in the target nodes\' config.json "webhooks.secrets" (letters, digits, "_", "." or "-")').optional(),
  /** Deprecated: readable in rules that carry it, refused in new ones (parseRuleSpec). */
  secret: z.string().min(16, 'at least 16 characters (e.g. the output of "openssl rand -hex 32")').max(256).optional()
}).strict()

export interface ParseRuleOptions {
  /**
   * Accept a webhook's inline `secret` (replicated in clear to every node):
   * only for rules already in the registry, never for new or changed webhooks.
   */
  inlineSecret?: boolean
}

export const ruleSpecSchema = z.object({
  from: sourceSchema,
  to: targetSchema,
  mode: z.enum(RULE_MODE_NAMES).optional(),
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
export function parseRuleSpec (input: unknown, options: ParseRuleOptions = {}): RuleSpec {
  const parsed = ruleSpecSchema.safeParse(input)
  if (!parsed.success) throw new InvalidInputError(`invalid rule: ${firstIssue(parsed.error)}`, 'INVALID_RULE')
  const spec = parsed.data
  checkCollection(spec.from.collection)
  checkCollection(spec.to.collection)
  const sources = [spec.from.platform, spec.from.region, spec.from.tag].filter(s => s !== undefined)
  if (sources.length !== 1) {
    throw new InvalidInputError('invalid rule: the source names exactly one of "platform" (a name, or "*" for every platform), "region" or "tag", e.g. {"region": "eu", "collection": "devices"}', 'INVALID_RULE')
  }
  const selectors = [spec.to.platform, spec.to.region, spec.to.tag].filter(s => s !== undefined)
  if (selectors.length !== 1) {
    throw new InvalidInputError('invalid rule: the target names exactly one of "platform" (a name, or "*" for every platform), "region" or "tag", e.g. {"region": "eu", "collection": "posts"}', 'INVALID_RULE')
  }
  if (spec.from.platform !== undefined && spec.from.platform !== ALL_PLATFORMS && spec.from.platform === spec.to.platform && spec.from.collection === spec.to.collection) {
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
    const hook = spec.webhook
    if ((hook.secretRef === undefined) === (hook.secret === undefined)) {
      throw new InvalidInputError('invalid rule: a webhook names its signing secret with "secretRef": the name of a secret in "webhooks.secrets" of each target node\'s config.json, e.g. {"url": "https://hooks.example.com/syncmesh", "secretRef": "orders"}', 'INVALID_RULE')
    }
    if (options.inlineSecret !== true) {
      if (hook.secret !== undefined) {
        throw new InvalidInputError('invalid rule: a webhook "secret" in the rule would be replicated in clear to every node; put it in "webhooks.secrets" of each target node\'s config.json and name it with "secretRef", e.g. {"url": "https://hooks.example.com/syncmesh", "secretRef": "orders"}', 'INVALID_RULE')
      }
      if (url.username !== '' || url.password !== '') {
        throw new InvalidInputError('invalid rule: credentials in a webhook url would be replicated in clear to every node; authenticate the receiver by the signature header (X-Syncmesh-Signature-256) instead', 'INVALID_RULE')
      }
    }
  }
  return spec as RuleSpec
}

/** A selector's platforms as written: "B", "region=eu", "tag=edge", "*". */
export function formatPlatforms (sel: TargetEndpoint | SourceEndpoint): string {
  if (sel.region !== undefined) return `region=${sel.region}`
  if (sel.tag !== undefined) return `tag=${sel.tag}`
  return sel.platform ?? '?'
}

/** "B:articles", "region=eu:articles", "tag=edge:articles", "*:articles" (a source is written the same way: formatSource) */
export function formatTarget (to: TargetEndpoint | SourceEndpoint): string {
  return `${formatPlatforms(to)}:${to.collection}`
}

/** A rule's source as written: "A:articles", "region=eu:articles", "tag=edge:articles", "*:articles". */
export function formatSource (from: SourceEndpoint): string {
  return formatTarget(from)
}

/** The rule's spec with a patch applied: given fields replace, null removes. Validated like a new rule. */
export function applyRulePatch (rule: Rule, patch: RulePatch): RuleSpec {
  const { id: _id, createdAt: _c, updatedAt: _u, paused: _p, mode, ...rest } = rule
  const next: Record<string, unknown> = { ...rest, mode }
  for (const [field, value] of Object.entries(patch)) {
    if (value === undefined) continue
    if (value === null) delete next[field]
    else next[field] = value
  }
  // a webhook sent back as the API showed it keeps its secret
  const hook = patch.webhook
  if (hook != null && hook.secret === REDACTED && rule.webhook?.secret !== undefined) next.webhook = { ...hook, secret: rule.webhook.secret }
  // an inline secret (deprecated) may stay on a rule that has it, unchanged; it is never added
  const old = rule.webhook
  const kept = next.webhook as typeof old
  const unchanged = old !== undefined && kept !== undefined && kept.url === old.url && kept.secret === old.secret && kept.secretRef === old.secretRef
  return parseRuleSpec(next, { inlineSecret: unchanged })
}

/** A rule as the API shows it: the webhook secret is never returned. */
export function redactRule (rule: Rule): Rule {
  if (rule.webhook?.secret === undefined) return rule
  return { ...rule, webhook: { url: rule.webhook.url, secret: REDACTED } }
}

export const REDACTED = '(redacted)'

/** A claim's source: the registry entry that made it. */
export interface ClaimSource {
  origin: string
  seq: number
  hlc: Hlc
}

/** The newest `$platforms` entry of one writer for one name (`value` undefined: withdrawn). */
interface PlatformClaim extends ClaimSource {
  value?: Platform
}

export interface Revocation {
  peerId: string
  revokedAfter: number
  purge?: boolean
}

/** A name claimed for several peer ids and bound by no admin: it belongs to no one. */
export interface ContestedName {
  name: string
  peerIds: string[]
}

const REVOKED_PREFIX = keys.meta(`revoked${SEP}`)
/** Where a revocation is kept: it must outlive the log entry that made it (superseded entries are compacted). */
export function revocationKey (peerId: string): string {
  return `${REVOKED_PREFIX}${peerId}`
}

function newer (a: ClaimSource, b: ClaimSource): boolean {
  const c = compareHlc(a.hlc, b.hlc)
  return c !== 0 ? c > 0 : a.origin > b.origin
}

/**
 * Why `entry` (a `$platforms` entry) may not be applied, or undefined.
 * Without admins anyone may write a claim; with admins a non-admin may only
 * register itself (its own peer id, under the entry's name, not revoked) or
 * withdraw its own claim.
 */
export function platformWriteRefusal (admins: ReadonlySet<string>, entry: { origin: string, id: string, op: string }, value: JsonObject | undefined): string | undefined {
  if (admins.size === 0 || admins.has(entry.origin) || entry.op === 'del') return undefined
  if (value !== undefined && value.peerId === entry.origin && value.name === entry.id && value.revoked !== true) return undefined
  return `${entry.origin} is not a registry admin`
}

/** The platform of a claim entry's value, or undefined when it is malformed or not under the entry's name. */
function claimValue (name: string, value: JsonObject | undefined): Platform | undefined {
  if (value === undefined) return undefined
  try {
    const p = validatePlatform(value)
    return p.name === name ? p : undefined
  } catch {
    return undefined // a malformed registry entry (from a buggy or newer peer) is not applied
  }
}

export class Registry {
  private readonly admins: ReadonlySet<string>
  /** name → writer → its newest claim */
  private readonly claims = new Map<string, Map<string, PlatformClaim>>()
  private readonly revoked = new Map<string, Revocation>()
  /** What the claims and revocations resolve to: bound (or revoked) names. */
  private readonly platformsByName = new Map<string, Platform>()
  private readonly contestedNames = new Map<string, string[]>()
  private readonly rulesById = new Map<string, Rule>()
  /** Claims applied without a source (callers that predate claims): one anonymous writer, in arrival order. */
  private anonymousSeq = 0

  constructor (init: { admins?: Iterable<string> } = {}) {
    this.admins = new Set(init.admins ?? [])
  }

  /**
   * Rebuild from the store: rules from their records; platform claims from
   * every origin's log (its newest `$platforms` entry per name) and from the
   * platform records earlier releases kept; revocations from where they are
   * kept, and from those claims (kept from now on).
   */
  async load (store: Store, changelog?: ChangeLog): Promise<void> {
    const rules = keys.recordPrefix(RULES_COLLECTION)
    for await (const [key, value] of store.db.iterator(prefixRange(rules))) this.setRule(keySuffix(key, rules), decodeRecord(value).value)
    for await (const [key, value] of store.db.iterator(prefixRange(REVOKED_PREFIX))) {
      const r = decodeJson<{ revokedAfter?: number, purge?: boolean }>(value)
      this.addRevocation(keySuffix(key, REVOKED_PREFIX), r.revokedAfter ?? 0, r.purge === true)
    }
    const persisted = new Set(this.revoked.keys())
    // records of earlier releases: each was the last writer's entry
    const legacy = keys.recordPrefix(PLATFORMS_COLLECTION)
    for await (const [key, bytes] of store.db.iterator(prefixRange(legacy))) {
      const state = decodeRecord(bytes)
      const name = keySuffix(key, legacy)
      const { origin, seq, hlc } = state.version
      if (platformWriteRefusal(this.admins, { origin, id: name, op: state.value === undefined ? 'del' : 'put' }, state.value) !== undefined) continue
      this.addClaim(name, { origin, seq, hlc }, state.value)
    }
    if (changelog !== undefined) {
      for (const origin of changelog.storedOrigins()) {
        // claims are entries of a peer's whole log: a stream log's are no claims (not applied when received either)
        if (streamOf(origin) !== undefined) continue
        let after: string | undefined
        for (;;) {
          const chunk = await changelog.readCollectionChunk(origin, PLATFORMS_COLLECTION, after, LOAD_CHUNK)
          for (const e of chunk.entries) {
            const value = e.op === 'put' && e.value !== undefined ? parseJsonObject(e.value) : undefined
            if (e.op === 'put' && value === undefined) continue
            if (platformWriteRefusal(this.admins, e, value) !== undefined) continue
            this.addClaim(e.id, e, value)
          }
          if (chunk.scanned < LOAD_CHUNK || chunk.lastId === undefined) break
          after = chunk.lastId
        }
      }
    }
    const found = [...this.revoked.values()].filter(r => !persisted.has(r.peerId))
    if (found.length > 0) await store.db.batch(found.map(r => ({ type: 'put' as const, key: revocationKey(r.peerId), value: encodeRevocation(r) })))
    this.resolveAll()
  }

  /**
   * Apply a committed registry change (value undefined = removed or
   * withdrawn). `from` is the entry that made it; without it, platform
   * changes count as one anonymous writer's, in the order applied.
   */
  apply (collection: string, id: string, value: JsonObject | undefined, from?: ClaimSource): void {
    if (collection === RULES_COLLECTION) {
      this.setRule(id, value)
      return
    }
    if (collection !== PLATFORMS_COLLECTION) return
    const source = from ?? { origin: '', seq: ++this.anonymousSeq, hlc: { wall: this.anonymousSeq, logical: 0 } }
    if (this.addClaim(id, source, value)) this.resolveAll()
    else this.resolve(id)
  }

  /** Record a claim (the writer's newer entry replaces its older one); true when it revoked a peer id anew. */
  private addClaim (name: string, from: ClaimSource, value: JsonObject | undefined): boolean {
    const platform = claimValue(name, value)
    if (value !== undefined && platform === undefined) return false
    let byWriter = this.claims.get(name)
    if (byWriter === undefined) this.claims.set(name, byWriter = new Map())
    const current = byWriter.get(from.origin)
    if (current === undefined || from.seq > current.seq) {
      const claim: PlatformClaim = { origin: from.origin, seq: from.seq, hlc: from.hlc }
      if (platform !== undefined) claim.value = platform
      byWriter.set(from.origin, claim)
    }
    if (platform?.revoked === true) return this.addRevocation(platform.peerId, platform.revokedAfter ?? 0, platform.purge === true)
    return false
  }

  /** Revoke a peer id for good (the lowest `revokedAfter` holds); true when this changed anything. */
  private addRevocation (peerId: string, revokedAfter: number, purge: boolean): boolean {
    const current = this.revoked.get(peerId)
    const next: Revocation = { peerId, revokedAfter: Math.min(revokedAfter, current?.revokedAfter ?? revokedAfter) }
    if (purge || current?.purge === true) next.purge = true
    if (current !== undefined && current.revokedAfter === next.revokedAfter && current.purge === next.purge) return false
    this.revoked.set(peerId, next)
    return true
  }

  private resolveAll (): void {
    for (const name of this.claims.keys()) this.resolve(name)
  }

  private resolve (name: string): void {
    const { platform, contested } = this.resolveClaims(name, this.claims.get(name))
    if (platform !== undefined) this.platformsByName.set(name, platform)
    else this.platformsByName.delete(name)
    if (contested !== undefined) this.contestedNames.set(name, contested)
    else this.contestedNames.delete(name)
  }

  /** What a name's claims resolve to (see the top of this file). */
  private resolveClaims (name: string, claims: Map<string, PlatformClaim> | undefined): { platform?: Platform, contested?: string[] } {
    if (claims === undefined) return {}
    const usable = [...claims.values()].filter(c => !this.revoked.has(c.origin))
    const withAdmins = this.admins.size > 0
    if (withAdmins) {
      let latest: PlatformClaim | undefined
      for (const c of usable) if (this.admins.has(c.origin) && (latest === undefined || newer(c, latest))) latest = c
      if (latest?.value !== undefined) {
        const peerId = latest.value.peerId
        // the bound node's own newer registration updates its addresses and region; tags are the admin's
        const own = claims.get(peerId)
        const base = own?.value !== undefined && own.value.peerId === peerId && newer(own, latest) && !this.revoked.has(peerId) ? own.value : latest.value
        return { platform: this.decorate(name, base, peerId, latest.value.tags) }
      }
    }
    const byPeer = new Map<string, PlatformClaim>()
    let revokedClaim: PlatformClaim | undefined
    for (const c of usable) {
      if (c.value === undefined || (withAdmins && this.admins.has(c.origin))) continue
      const peerId = c.value.peerId
      if (this.revoked.has(peerId)) {
        if (revokedClaim === undefined || newer(c, revokedClaim)) revokedClaim = c
        continue
      }
      const cur = byPeer.get(peerId)
      if (cur === undefined || newer(c, cur)) byPeer.set(peerId, c)
    }
    if (byPeer.size > 1) return { contested: [...byPeer.keys()].sort() }
    const [claim] = byPeer.size === 1 ? byPeer.values() : [revokedClaim]
    if (claim?.value === undefined) return {}
    // with admins, tags (which rules may target) are set by admins only
    return { platform: this.decorate(name, claim.value, claim.value.peerId, withAdmins ? undefined : claim.value.tags) }
  }

  private decorate (name: string, value: Platform, peerId: string, tags: string[] | undefined): Platform {
    const out: Platform = { name, peerId, addrs: value.addrs }
    if (value.region !== undefined) out.region = value.region
    if (tags !== undefined) out.tags = tags
    const r = this.revoked.get(peerId)
    if (r !== undefined) {
      out.revoked = true
      out.revokedAfter = r.revokedAfter
      if (r.purge === true) out.purge = true
    }
    return out
  }

  /**
   * What the registry would hold for `p.name` if `writer` wrote `p` (or,
   * with `p` undefined, deleted its claim): the API refuses a change that
   * would not take effect as asked.
   */
  preview (name: string, writer: string, p: Platform | undefined): { platform?: Platform, contested?: string[] } {
    const claims = new Map(this.claims.get(name) ?? [])
    const current = claims.get(writer)
    const claim: PlatformClaim = { origin: writer, seq: (current?.seq ?? 0) + 1, hlc: { wall: Number.MAX_SAFE_INTEGER, logical: 0 } }
    if (p !== undefined) claim.value = p
    claims.set(writer, claim)
    return this.resolveClaims(name, claims)
  }

  private setRule (id: string, value: JsonObject | undefined): void {
    if (value === undefined) {
      this.rulesById.delete(id)
      return
    }
    try {
      const { id: _id, createdAt, updatedAt, paused, ...spec } = value as { id?: unknown, createdAt?: unknown, updatedAt?: unknown, paused?: unknown }
      const parsed = parseRuleSpec(spec, { inlineSecret: true }) // rules from before secret references
      const rule: Rule = { ...parsed, id, mode: parsed.mode ?? DEFAULT_RULE_MODE, createdAt: typeof createdAt === 'string' ? createdAt : '' }
      if (typeof updatedAt === 'string') rule.updatedAt = updatedAt
      // a state of the rule, not part of its spec: last writer wins with the rest of the record
      if (paused === true) rule.paused = true
      this.rulesById.set(id, rule)
    } catch {
      // a malformed registry record (from a buggy or newer peer) is not applied
    }
  }

  /** Bound and revoked platforms (contested names are not listed: see contested()). */
  platforms (): Platform[] {
    return [...this.platformsByName.values()].sort((a, b) => a.name.localeCompare(b.name))
  }

  platform (name: string): Platform | undefined {
    return this.platformsByName.get(name)
  }

  /** A platform of the peer id (the first by name when it has several). */
  platformByPeer (peerId: string): Platform | undefined {
    let found: Platform | undefined
    for (const p of this.platformsByName.values()) if (p.peerId === peerId && (found === undefined || p.name < found.name)) found = p
    return found
  }

  /** Names claimed for several peer ids that no admin has bound. */
  contested (): ContestedName[] {
    return [...this.contestedNames].map(([name, peerIds]) => ({ name, peerIds })).sort((a, b) => a.name.localeCompare(b.name))
  }

  /** The revocation of a peer id, whatever name it was revoked under. */
  revocation (peerId: string): Revocation | undefined {
    return this.revoked.get(peerId)
  }

  isRevoked (peerId: string): boolean {
    return this.revoked.has(peerId)
  }

  /** Admin configuration the registry resolves with. */
  get adminSet (): ReadonlySet<string> {
    return this.admins
  }

  rules (): Rule[] {
    return [...this.rulesById.values()].sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id))
  }

  rule (id: string): Rule | undefined {
    return this.rulesById.get(id)
  }
}
