/**
 * Request body and query validation (zod). A failed check becomes a 400
 * INVALID_INPUT whose message is the first issue.
 */
import { z } from 'zod'
import { InvalidInputError } from '../core/errors.js'
import { RULE_MODE_NAMES } from '../core/modes.js'

export const MAX_PAGE_LIMIT = 1000
export const DEFAULT_PAGE_LIMIT = 100

const nonEmpty = z.string().min(1, 'must be a non-empty string')
const jsonObject = z.custom<Record<string, unknown>>(
  (v) => typeof v === 'object' && v !== null && !Array.isArray(v),
  { message: 'must be a JSON object' }
)

export const addPeerSchema = z.object({
  multiaddr: nonEmpty,
  /** Keep the address even when the dial or the mesh key proof over it fails. */
  save: z.boolean().optional()
}).strict()

export const platformSchema = z.object({
  name: nonEmpty,
  peerId: nonEmpty,
  region: nonEmpty.optional(),
  addrs: z.array(nonEmpty).default([]),
  tags: z.array(nonEmpty).optional()
}).strict()

const targetSchema = z.object({
  platform: nonEmpty.optional(),
  region: nonEmpty.optional(),
  tag: nonEmpty.optional(),
  collection: nonEmpty
}).strict()

/** A rule's source: one platform, "*", a region or a tag, as a target (exactly one: checked with the rule). */
const sourceSchema = targetSchema

const webhookSchema = z.object({
  url: nonEmpty,
  /** The name of the secret in each target node's config.json "webhooks.secrets". */
  secretRef: nonEmpty.optional(),
  /** Deprecated: refused in new webhooks; "(redacted)" keeps a rule's existing one. */
  secret: nonEmpty.optional()
}).strict()

export const ruleBodySchema = z.object({
  from: sourceSchema,
  to: targetSchema,
  mode: z.enum(RULE_MODE_NAMES).optional(),
  where: jsonObject.optional(),
  include: z.array(nonEmpty).optional(),
  exclude: z.array(nonEmpty).optional(),
  rename: z.record(z.string().min(1), nonEmpty).optional(),
  key: nonEmpty.optional(),
  transform: nonEmpty.optional(),
  targetsField: nonEmpty.optional(),
  webhook: webhookSchema.optional(),
  dryRun: z.boolean().optional(),
  /** Create the rule even when it names a platform the registry does not have. */
  force: z.boolean().optional()
}).strict()

/** PATCH /v1/rules/:id: the fields to change; null removes an optional field. */
export const rulePatchSchema = z.object({
  from: sourceSchema.optional(),
  to: targetSchema.optional(),
  mode: z.enum(RULE_MODE_NAMES).optional(),
  where: jsonObject.nullable().optional(),
  include: z.array(nonEmpty).nullable().optional(),
  exclude: z.array(nonEmpty).nullable().optional(),
  rename: z.record(z.string().min(1), nonEmpty).nullable().optional(),
  key: nonEmpty.nullable().optional(),
  transform: nonEmpty.nullable().optional(),
  targetsField: nonEmpty.nullable().optional(),
  webhook: webhookSchema.nullable().optional(),
  dryRun: z.boolean().optional(),
  /** Change the rule even when it then names a platform the registry does not have. */
  force: z.boolean().optional()
}).strict()

const positiveInt = (max: number): z.ZodType<number | undefined> => z.string()
  .regex(/^\d+$/, `must be an integer between 1 and ${max}`)
  .transform(Number)
  .pipe(z.number().int().min(1, `must be an integer between 1 and ${max}`).max(max, `must be an integer between 1 and ${max}`))
  .optional()

export const logQuerySchema = z.object({
  limit: positiveInt(1000)
}).strict()

export const changesQuerySchema = z.object({
  since: z.string().optional(),
  collection: z.string().optional(),
  limit: positiveInt(1_000_000_000),
  follow: z.enum(['true', 'false', '1', '0']).optional(),
  /** seconds between heartbeat lines while following */
  heartbeat: z.string().regex(/^\d+$/, 'must be a number of seconds from 1 to 300').transform(Number)
    .pipe(z.number().int().min(1, 'must be a number of seconds from 1 to 300').max(300, 'must be a number of seconds from 1 to 300')).optional()
}).strict()

export const listQuerySchema = z.object({
  after: z.string().optional(),
  limit: z.string()
    .regex(/^\d+$/, `must be an integer between 1 and ${MAX_PAGE_LIMIT}`)
    .transform(Number)
    .pipe(z.number().int().min(1, `must be an integer between 1 and ${MAX_PAGE_LIMIT}`).max(MAX_PAGE_LIMIT, `must be an integer between 1 and ${MAX_PAGE_LIMIT}`))
    .optional()
}).strict()

function describeIssue (issue: z.core.$ZodIssue | undefined, what: string): string {
  if (issue == null) return `invalid ${what}`
  const path = issue.path.map(String).join('.')
  const where = path !== '' ? `${what === 'query' ? 'query parameter' : 'field'} "${path}"` : `request ${what}`
  if (issue.code === 'unrecognized_keys' && what === 'query' && path === '') {
    return `unknown query parameter${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`
  }
  if (issue.code === 'unrecognized_keys') {
    return `${where}: unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`
  }
  if (issue.code === 'invalid_type' && / received undefined$/.test(issue.message)) {
    return `${where} is required (${issue.expected})`
  }
  if (issue.code === 'invalid_type' && path === '') return `${where} must be a JSON object`
  return `${where}: ${issue.message}`
}

/** Parse `input` or throw a 400 INVALID_INPUT naming the first problem. */
export function parseInput<S extends z.ZodType> (schema: S, input: unknown, what: 'body' | 'query'): z.output<S> {
  const result = schema.safeParse(input)
  if (!result.success) throw new InvalidInputError(describeIssue(result.error.issues[0], what))
  return result.data
}
