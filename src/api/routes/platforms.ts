/** The registry's platforms: list, add (register a node under a name), remove, revoke. */
import { z } from 'zod'
import { NotFoundError, SyncmeshError } from '../../core/errors.js'
import type { Platform, SyncNodeApi } from '../../core/types.js'
import type { App } from '../app.js'
import { doc } from '../openapi.js'
import { parseInput, platformSchema } from '../schemas.js'

const revokeSchema = z.object({ purge: z.boolean().optional() }).strict()

const tag = 'platforms'

export function registerPlatformRoutes (app: App, node: SyncNodeApi): void {
  app.get('/v1/platforms', doc({ tag, summary: 'The platforms of the registry' }), async () => node.registry.platforms())

  app.post<{ Body: unknown }>('/v1/platforms', doc({ tag, summary: 'Register a node (peer id) under a platform name', body: platformSchema, status: 201 }), async (request, reply) => {
    const body = parseInput(platformSchema, request.body, 'body')
    const platform: Platform = {
      name: body.name,
      peerId: body.peerId,
      addrs: body.addrs,
      ...(body.region != null ? { region: body.region } : {}),
      ...(body.tags != null ? { tags: body.tags } : {})
    }
    const added = await node.registry.addPlatform(platform)
    return await reply.code(201).send(added)
  })

  app.delete<{ Params: { name: string } }>('/v1/platforms/:name', doc({ tag, summary: 'Remove a platform from the registry' }), async (request) => {
    const removed = await node.registry.removePlatform(request.params.name)
    if (!removed) throw new NotFoundError(`no platform named "${request.params.name}"; list them with GET /v1/platforms`)
    return { removed: true }
  })

  app.post<{ Params: { name: string }, Body: unknown }>('/v1/platforms/:name/revoke', doc({ tag, summary: 'Revoke a platform for good (its node is refused; "purge" drops its records)', body: revokeSchema }), async (request) => {
    const body = parseInput(revokeSchema, request.body ?? {}, 'body')
    if (node.registry.revokePlatform === undefined) throw new SyncmeshError('NOT_SUPPORTED', 'this node cannot revoke platforms', 501)
    return await node.registry.revokePlatform(request.params.name, { purge: body.purge === true })
  })
}
