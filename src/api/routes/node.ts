/**
 * Routes about the node itself: health, status (and its history for the
 * console's charts), which token the caller holds, token rotation, the
 * collections it holds, its mesh keys, /metrics and the OpenAPI document.
 */
import type { Logger } from 'pino'
import { z } from 'zod'
import { SyncmeshError } from '../../core/errors.js'
import type { SyncNodeApi } from '../../core/types.js'
import { packageVersion } from '../../core/version.js'
import type { App } from '../app.js'
import type { StatusHistory } from '../history.js'
import type { Metrics } from '../metrics.js'
import { doc, openApiDocument } from '../openapi.js'
import type { DocumentedRoute } from '../openapi.js'
import { parseInput } from '../schemas.js'
import type { ApiTokens, TokenCheck, TokenKind } from '../tokens.js'

const rotateSchema = z.object({ kind: z.enum(['full', 'read-only']).default('full') }).strict()

export interface NodeRoutesContext {
  node: SyncNodeApi
  tokens: TokenCheck
  history: StatusHistory
  metrics: Metrics
  log: Logger
  /** Every route served, with its documentation (filled as routes register). */
  routes: readonly DocumentedRoute[]
  rotateToken?: (kind: TokenKind) => Promise<ApiTokens>
}

export function registerNodeRoutes (app: App, ctx: NodeRoutesContext): void {
  const { node, tokens, history, metrics, log } = ctx
  const tag = 'node'

  app.get('/v1/health', doc({ tag, summary: 'Whether the node answers (no token needed)', public: true }), async () => ({ ok: true, peerId: node.peerId, name: node.name }))

  app.get('/v1/status', doc({ tag, summary: 'The node, its peers, every origin\'s progress, rules, stalls and offences' }), async () => await node.status())

  // which token the caller holds (the console hides what a read-only token cannot do)
  app.get('/v1/access', doc({ tag, summary: 'Which token the caller holds: "full" or "read-only"' }), async (request) => ({ access: tokens.grants(request.headers.authorization) }))

  app.get('/v1/status/history', doc({ tag, summary: 'Samples of status over the last hour (the console\'s charts)' }), async () => history.samples())

  app.post<{ Body: unknown }>('/v1/tokens/rotate', doc({ tag, summary: 'Replace the full or the read-only API token; answers the new one', body: rotateSchema }), async (request) => {
    const { kind } = parseInput(rotateSchema, request.body ?? {}, 'body')
    if (ctx.rotateToken === undefined) throw new SyncmeshError('NOT_SUPPORTED', 'this API server cannot rotate its tokens (it was not started by "syncmesh start")', 501)
    const next = await ctx.rotateToken(kind)
    tokens.set(next)
    log.info({ kind }, `rotated the ${kind} API token; clients need the new one`)
    return { kind, token: kind === 'full' ? next.full : next.readOnly }
  })

  app.get('/v1/collections', doc({ tag: 'records', summary: 'The collections this node holds records of' }), async () => {
    if (node.records.collections === undefined) throw new SyncmeshError('NOT_SUPPORTED', 'this node cannot list its collections', 501)
    return { collections: await node.records.collections() }
  })

  app.get('/metrics', doc({ tag, summary: 'Prometheus metrics (text exposition format)', responseMediaType: 'text/plain' }), async (_request, reply) => {
    const text = await metrics.scrape()
    return await reply.type(metrics.contentType).send(text)
  })

  app.get('/v1/openapi.json', doc({ tag, summary: 'This document: the OpenAPI 3.1 description of every route' }), async () => openApiDocument(ctx.routes, packageVersion()))

  // -- mesh keys (fingerprints only) ----------------------------------------

  app.get('/v1/keys', doc({ tag: 'keys', summary: 'The mesh keys this node holds and sends (fingerprints only)' }), async () => {
    if (node.meshKeys == null) throw new SyncmeshError('NOT_SUPPORTED', 'this node does not report its mesh keys', 501)
    return node.meshKeys()
  })

  app.post('/v1/keys/reload', doc({ tag: 'keys', summary: 'Re-read the keyring file (as SIGHUP does)' }), async () => {
    if (node.reloadKeys == null) throw new SyncmeshError('NOT_SUPPORTED', 'this node cannot reload its mesh keys', 501)
    try {
      return await node.reloadKeys()
    } catch (err) {
      // the keyring file is missing or broken: the caller can fix that (the keys stay as they were)
      if (err instanceof SyncmeshError && err.code.startsWith('KEYRING_')) throw new SyncmeshError(err.code, err.message, 409)
      throw err
    }
  })
}
