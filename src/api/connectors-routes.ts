/**
 * HTTP routes of the connectors (docs/connectors.md):
 *
 *   GET    /v1/connectors          every connector with its status
 *   POST   /v1/connectors   {…}    201 the new connector's status
 *   GET    /v1/connectors/:id      one connector's status
 *   DELETE /v1/connectors/:id      remove it (its triggers are dropped)
 */
import { z } from 'zod'
import { NotFoundError, SyncmeshError } from '../core/errors.js'
import type { SyncNodeApi } from '../core/types.js'
import { connectorsOf } from '../connectors/manager.js'
import type { ConnectorManager } from '../connectors/manager.js'
import type { App } from './rules-routes.js'
import { doc } from './openapi.js'
import { parseInput } from './schemas.js'

const connectorSchema = z.object({
  kind: z.enum(['sqlite', 'postgres']),
  db: z.string().min(1).max(4096),
  table: z.string().min(1).max(63),
  collection: z.string().min(1).max(256),
  idColumn: z.string().min(1).max(63),
  direction: z.enum(['both', 'out', 'in']).optional(),
  columns: z.array(z.string().min(1).max(63)).max(63).optional()
}).strict()

function manager (node: SyncNodeApi): ConnectorManager {
  const m = connectorsOf(node)
  if (m === undefined) throw new SyncmeshError('NOT_SUPPORTED', 'this node runs no connectors (they start with "syncmesh start")', 501)
  return m
}

const tag = 'connectors'

export function registerConnectorRoutes (app: App, node: SyncNodeApi): void {
  app.get('/v1/connectors', doc({ tag, summary: 'The connectors of this node with their progress' }), async () => manager(node).list())

  app.get<{ Params: { id: string } }>('/v1/connectors/:id', doc({ tag, summary: 'One connector\'s status' }), async (request) => manager(node).status(request.params.id))

  app.post<{ Body: unknown }>('/v1/connectors', doc({ tag, summary: 'Bind a database table to a collection (SQLite or PostgreSQL)', body: connectorSchema, status: 201 }), async (request, reply) => {
    const spec = parseInput(connectorSchema, request.body, 'body')
    const status = await manager(node).add(spec)
    return await reply.code(201).send(status)
  })

  app.delete<{ Params: { id: string } }>('/v1/connectors/:id', doc({ tag, summary: 'Remove a connector: its triggers and outbox rows go; the table and the collection stay' }), async (request) => {
    const removed = await manager(node).remove(request.params.id)
    if (!removed) throw new NotFoundError(`no connector "${request.params.id}"; list them with GET /v1/connectors`, 'CONNECTOR_NOT_FOUND')
    return { removed: true }
  })
}
