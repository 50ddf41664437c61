/**
 * The syncmesh library: `createSyncNode(options)` and the types of its
 * surface (records, registry, rules, events, the changes feed), plus the API
 * client and the helper webhook receivers use to check signatures.
 *
 *   import { createSyncNode } from 'syncmesh'
 *   const node = await createSyncNode({ dataDir, key, name, listen: ['/ip4/127.0.0.1/tcp/0'] })
 *   await node.start()
 *   node.addEventListener('change', (evt) => { … })          // ChangeEvent
 *   node.addEventListener('transform-error', (evt) => { … }) // TransformErrorRecord
 *   node.addEventListener('conflict', (evt) => { … })        // ConflictRecord
 *   node.addEventListener('backfill', (evt) => { … })        // { ruleId }
 *   for await (const line of node.changes({ since: '0' })) { … }
 */
import './polyfill.js'

export { createSyncNode, SyncNode } from './node/node.js'
export type * from './core/types.js'
export { ApiClient } from './api/client.js'
export { startApiServer } from './api/server.js'
export { SyncmeshError, InvalidInputError, NotFoundError, ConflictError, ConfigError, NotRunningError } from './core/errors.js'
export { SIGNATURE_HEADER, verifyWebhookSignature } from './rules/webhooks.js'
export type { WebhookSettings } from './rules/webhooks.js'
export type { TransformContext, TransformRecord, TransformFunction } from './rules/modules.js'
