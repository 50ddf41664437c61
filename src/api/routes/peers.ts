/** Peers: the ones this node knows (connected or not), add one by address, forget one. */
import { NotFoundError } from '../../core/errors.js'
import type { SyncNodeApi } from '../../core/types.js'
import type { App } from '../app.js'
import { doc } from '../openapi.js'
import { addPeerSchema, parseInput } from '../schemas.js'

const tag = 'peers'

export function registerPeerRoutes (app: App, node: SyncNodeApi): void {
  app.get('/v1/peers', doc({ tag, summary: 'Known peers: platform, state, last seen, traffic, errors' }), async () => await node.peers.list())

  app.post<{ Body: unknown }>('/v1/peers', doc({ tag, summary: 'Dial a peer at this multiaddr, prove the mesh key over it, and keep it if that worked (or with "save": true)', body: addPeerSchema, status: 201 }), async (request, reply) => {
    const { multiaddr, save } = parseInput(addPeerSchema, request.body, 'body')
    const peer = await node.peers.add(multiaddr, save === true ? { save: true } : {})
    return await reply.code(201).send(peer)
  })

  app.delete<{ Params: { peerId: string } }>('/v1/peers/:peerId', doc({ tag, summary: 'Forget a peer and close its connections' }), async (request) => {
    const removed = await node.peers.remove(request.params.peerId)
    if (!removed) throw new NotFoundError(`no known peer ${request.params.peerId}; list them with GET /v1/peers`)
    return { removed: true }
  })
}
