/**
 * HTTP routes of the rule engine: rules (create, dry run, update, remove),
 * their conflict and transform-error logs, and the changes feed.
 *
 *   GET    /v1/rules                        the rules (webhook secrets redacted)
 *   GET    /v1/rules/:id
 *   POST   /v1/rules            {…}          201 the rule; with "dryRun": true, 200 a DryRunReport
 *   PATCH  /v1/rules/:id        {…}          200 the changed rule (null removes a field); "dryRun" as above
 *          A rule naming (as source, or as target by name) a platform the registry does not have
 *          is refused with 400 UNKNOWN_PLATFORM, unless the body has "force": true
 *   POST   /v1/rules/:id/pause               200 the rule, paused: its targets apply nothing from it
 *   POST   /v1/rules/:id/resume              200 the rule, running: its targets catch up from where they stopped
 *   DELETE /v1/rules/:id
 *   GET    /v1/rules/:id/conflicts?limit=N  {"total","conflicts":[newest first]}
 *   GET    /v1/rules/:id/errors?limit=N     {"total","errors":[newest first]}
 *   GET    /v1/changes?since=CURSOR&collection=C&limit=N&follow=true&heartbeat=S
 *          NDJSON, one {"type":"change","cursor",…} per line; with follow, the
 *          stream stays open and sends {"type":"heartbeat","cursor"} every S seconds (default 15)
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import { NotFoundError, SyncmeshError } from '../core/errors.js'
import type { JsonObject, RulePatch, RuleSpec, SyncNodeApi } from '../core/types.js'
import { redactRule } from '../registry/registry.js'
import { doc } from './openapi.js'
import { changesQuerySchema, logQuerySchema, parseInput, ruleBodySchema, rulePatchSchema } from './schemas.js'

export type App = FastifyInstance<Server, IncomingMessage, ServerResponse, Logger>

function unsupported (what: string): SyncmeshError {
  return new SyncmeshError('NOT_SUPPORTED', `this node does not support ${what}`, 501)
}

const tag = 'rules'

export function registerRuleRoutes (app: App, node: SyncNodeApi): void {
  app.get('/v1/rules', doc({ tag, summary: 'The rules (webhook secrets redacted)' }), async () => node.registry.rules().map(redactRule))

  app.get<{ Params: { id: string } }>('/v1/rules/:id', doc({ tag, summary: 'One rule' }), async (request) => {
    if (node.registry.rule == null) throw unsupported('reading one rule')
    const rule = node.registry.rule(request.params.id)
    if (rule === undefined) throw new NotFoundError(`no rule with id "${request.params.id}"; list them with GET /v1/rules`)
    return redactRule(rule)
  })

  app.post<{ Body: unknown }>('/v1/rules', doc({ tag, summary: 'Create a rule (201), or with "dryRun": true report what it would do (200)', body: ruleBodySchema, status: 201 }), async (request, reply) => {
    const { dryRun, force, ...body } = parseInput(ruleBodySchema, request.body, 'body')
    const spec: RuleSpec = {
      from: body.from,
      to: body.to,
      ...(body.mode != null ? { mode: body.mode } : {}),
      ...(body.where != null ? { where: body.where as JsonObject } : {}),
      ...(body.include != null ? { include: body.include } : {}),
      ...(body.exclude != null ? { exclude: body.exclude } : {}),
      ...(body.rename != null ? { rename: body.rename } : {}),
      ...(body.key != null ? { key: body.key } : {}),
      ...(body.transform != null ? { transform: body.transform } : {}),
      ...(body.targetsField != null ? { targetsField: body.targetsField } : {}),
      ...(body.webhook != null ? { webhook: body.webhook } : {})
    }
    if (dryRun === true) {
      if (node.registry.dryRunRule == null) throw new SyncmeshError('NOT_SUPPORTED', 'dry runs of rules are not supported by this node; create the rule without "dryRun" (it can be removed again with DELETE /v1/rules/:id)', 501)
      const report = await node.registry.dryRunRule(spec)
      return { ...report, rule: redactRule(report.rule) }
    }
    const rule = await node.registry.addRule(spec, { checkPlatforms: force !== true })
    return await reply.code(201).send(redactRule(rule))
  })

  app.patch<{ Params: { id: string }, Body: unknown }>('/v1/rules/:id', doc({ tag, summary: 'Change fields of a rule (null removes one); "dryRun" as for POST', body: rulePatchSchema }), async (request) => {
    const { dryRun, force, ...body } = parseInput(rulePatchSchema, request.body ?? {}, 'body')
    const patch = body as RulePatch
    if (Object.keys(patch).length === 0) {
      throw new SyncmeshError('INVALID_INPUT', 'nothing to change: send the fields to change, e.g. {"where": {"status": "published"}} (null removes a field)', 400)
    }
    if (dryRun === true) {
      if (node.registry.dryRunUpdate == null) throw unsupported('dry runs of rule updates')
      const report = await node.registry.dryRunUpdate(request.params.id, patch)
      return { ...report, rule: redactRule(report.rule) }
    }
    if (node.registry.updateRule == null) throw unsupported('rule updates')
    return redactRule(await node.registry.updateRule(request.params.id, patch, { checkPlatforms: force !== true }))
  })

  for (const action of ['pause', 'resume'] as const) {
    app.post<{ Params: { id: string } }>(`/v1/rules/:id/${action}`, doc({ tag, summary: action === 'pause' ? 'Pause a rule on all its targets (replicated): they apply nothing from it until it is resumed' : 'Resume a paused rule: its targets catch up from where they stopped, without a new backfill' }), async (request) => {
      const registry = node.registry
      const run = action === 'pause' ? registry.pauseRule : registry.resumeRule
      if (run == null) throw unsupported(`${action === 'pause' ? 'pausing' : 'resuming'} rules`)
      return redactRule(await run.call(registry, request.params.id))
    })
  }

  app.delete<{ Params: { id: string } }>('/v1/rules/:id', doc({ tag, summary: 'Remove a rule' }), async (request) => {
    const removed = await node.registry.removeRule(request.params.id)
    if (!removed) throw new NotFoundError(`no rule with id "${request.params.id}"; list them with GET /v1/rules`)
    return { removed: true }
  })

  app.get<{ Params: { id: string }, Querystring: unknown }>('/v1/rules/:id/conflicts', doc({ tag, summary: 'The rule\'s conflict log, newest first', query: logQuerySchema }), async (request) => {
    const { limit } = parseInput(logQuerySchema, request.query ?? {}, 'query')
    if (node.registry.conflicts == null) throw unsupported('conflict logs')
    return await node.registry.conflicts(request.params.id, limit)
  })

  app.get<{ Params: { id: string }, Querystring: unknown }>('/v1/rules/:id/errors', doc({ tag, summary: 'The rule\'s transform errors, newest first', query: logQuerySchema }), async (request) => {
    const { limit } = parseInput(logQuerySchema, request.query ?? {}, 'query')
    if (node.registry.transformErrors == null) throw unsupported('transform error logs')
    return await node.registry.transformErrors(request.params.id, limit)
  })
}

export function registerChangesRoute (app: App, node: SyncNodeApi): void {
  app.get<{ Querystring: unknown }>('/v1/changes', doc({ tag: 'changes', summary: 'The changes feed as NDJSON; with follow=true it stays open', query: changesQuerySchema, responseMediaType: 'application/x-ndjson' }), async (request, reply) => {
    const q = parseInput(changesQuerySchema, request.query ?? {}, 'query')
    if (node.changes == null) throw unsupported('the changes feed')
    const abort = new AbortController()
    const follow = q.follow === 'true' || q.follow === '1'
    // validated here, before the first byte: errors are still JSON with a 4xx
    const lines = node.changes({
      ...(q.since !== undefined ? { since: q.since } : {}),
      ...(q.collection !== undefined ? { collection: q.collection } : {}),
      ...(q.limit !== undefined ? { limit: q.limit } : {}),
      ...(q.heartbeat !== undefined ? { heartbeatMs: q.heartbeat * 1000 } : {}),
      follow,
      signal: abort.signal
    })
    request.raw.on('close', () => abort.abort())
    async function * ndjson (): AsyncGenerator<string> {
      for await (const line of lines) yield JSON.stringify(line) + '\n'
    }
    const stream = Readable.from(ndjson(), { objectMode: false })
    stream.on('close', () => abort.abort())
    reply.header('cache-control', 'no-store')
    if (follow) reply.header('x-accel-buffering', 'no')
    return await reply.type('application/x-ndjson; charset=utf-8').send(stream)
  })
}
