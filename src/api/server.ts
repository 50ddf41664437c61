/**
 * The local HTTP API (reference: docs/http-api.md). Every route but GET /v1/health
 * needs `Authorization: Bearer TOKEN`; every error is
 * `{"error":{"code","message"}}`.
 */
import { STATUS_CODES } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { Readable } from 'node:stream'
import Fastify, { LogController } from 'fastify'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { pino } from 'pino'
import type { Logger } from 'pino'
import { z } from 'zod'
import { InvalidInputError, NotFoundError, SyncmeshError } from '../core/errors.js'
import { MAX_JSON_DEPTH, jsonTooDeep } from '../store/json-depth.js'
import type { ImportLine, Platform, SyncNodeApi } from '../core/types.js'
import { registerConsoleRoutes, isConsolePath } from './console.js'
import { JSON_BODY_LIMIT, errorBody, sendError } from './errors.js'
import { StatusHistory } from './history.js'
import { TokenCheck } from './tokens.js'
import type { ApiTokens, TokenKind } from './tokens.js'
import { createMetrics } from './metrics.js'
import { registerChangesRoute, registerRuleRoutes } from './rules-routes.js'
import { registerConnectorRoutes } from './connectors-routes.js'
import { ImportLineError, importFailure, isJsonObject, parseNdjson } from './ndjson.js'
import { DEFAULT_PAGE_LIMIT, addPeerSchema, listQuerySchema, parseInput, platformSchema } from './schemas.js'

export interface ApiServerOptions {
  host: string
  port: number
  /** The full token: every route. */
  token: string
  /** A read-only token: GET routes only (status, records, metrics, the console without changes). */
  readOnlyToken?: string
  /** Replace a token and keep it (POST /v1/tokens/rotate); without it the route answers 501. */
  rotateToken?: (kind: TokenKind) => Promise<ApiTokens>
  logger?: Logger
}

export interface ApiServer {
  /** e.g. http://127.0.0.1:7070 (an unspecified host is reported as loopback) */
  url: string
  /** Every route served (method and URL pattern), e.g. for checking that each one needs the token. */
  routes: ReadonlyArray<{ method: string, url: string }>
  close (): Promise<void>
}

/** Streamed NDJSON imports may be far larger than a JSON body. */
export const IMPORT_BODY_LIMIT = 1024 * 1024 * 1024

export const NDJSON_CONTENT_TYPES = ['application/x-ndjson', 'application/ndjson', 'text/plain', 'application/octet-stream']

/** How long a failed import keeps reading (and discarding) the rest of the upload so the client sees the error. */
const DRAIN_TIMEOUT_MS = 10_000


/** 127.0.0.0/8, ::1 and IPv4-mapped loopback. */
export function isLoopback (address: string): boolean {
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4) || address === '::1' || address === '0:0:0:0:0:0:0:1'
}

/**
 * Requests that never reach fastify (malformed HTTP, headers over Node's
 * limit, timeouts) still get a JSON error body in the usual shape.
 */
function clientError (err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  let status = 400
  let body = errorBody('BAD_REQUEST', 'the request is not valid HTTP/1.1')
  if (err.code === 'HPE_HEADER_OVERFLOW') {
    status = 431
    body = errorBody('HEADERS_TOO_LARGE', 'the request line and headers are larger than the server accepts (16 KiB); send a shorter URL and fewer or smaller headers')
  } else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    status = 408
    body = errorBody('REQUEST_TIMEOUT', 'the request was not received in time; send it again')
  }
  const text = JSON.stringify(body)
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`)
  }
  socket.destroy()
}

function urlFor (address: AddressInfo): string {
  let host = address.address
  if (host === '0.0.0.0') host = '127.0.0.1'
  if (host === '::') host = '::1'
  if (host.includes(':')) host = `[${host}]`
  return `http://${host}:${address.port}`
}

/** Read and discard what is left of a request body (bounded in time), so an early error reply reaches a client that is still uploading. */
async function drain (stream: Readable): Promise<void> {
  if (stream.readableEnded || stream.destroyed) return
  await new Promise<void>((resolve) => {
    const timer = setTimeout(done, DRAIN_TIMEOUT_MS)
    timer.unref()
    function done (): void {
      clearTimeout(timer)
      stream.off('end', done)
      stream.off('error', done)
      stream.off('close', done)
      resolve()
    }
    stream.on('end', done)
    stream.on('error', done)
    stream.on('close', done)
    stream.resume()
  })
}

interface CollectionParams { collection: string }
interface RecordParams { collection: string, id: string }

const revokeSchema = z.object({ purge: z.boolean().optional() }).strict()
const rotateSchema = z.object({ kind: z.enum(['full', 'read-only']).default('full') }).strict()

export async function startApiServer (node: SyncNodeApi, options: ApiServerOptions): Promise<ApiServer> {
  const log: Logger = options.logger ?? pino({ level: 'silent' })
  if (typeof options.token !== 'string' || options.token.length === 0) {
    throw new SyncmeshError('INVALID_TOKEN', 'the API token must be a non-empty string', 500)
  }
  const tokens = new TokenCheck(options.token, options.readOnlyToken)
  const metrics = createMetrics(node)
  const history = new StatusHistory(node)

  const app = Fastify({
    loggerInstance: log.child({ component: 'api' }),
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: JSON_BODY_LIMIT,
    routerOptions: { maxParamLength: 2048 },
    forceCloseConnections: 'idle',
    clientErrorHandler: clientError,
    frameworkErrors (error, request, reply) {
      sendError(reply, error, log)
    }
  })

  const routes: Array<{ method: string, url: string }> = []
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) routes.push({ method, url: route.url ?? route.path })
  })

  // JSON only on the root context (fastify's default text/plain parser is removed);
  // the import route gets its own streaming parsers below.
  app.removeContentTypeParser('text/plain')

  app.addHook('onRequest', async (request, reply) => {
    const url = request.routeOptions.url
    // the health check and the console's static files (no data in them) need no token
    if (url === '/v1/health' || (url !== undefined && isConsolePath(url))) return
    const granted = tokens.grants(request.headers.authorization)
    if (granted === undefined) {
      reply.header('www-authenticate', 'Bearer')
      return await reply.code(401).send(errorBody('UNAUTHORIZED', 'missing or wrong API token: send "Authorization: Bearer TOKEN" (the running node writes its token to DATA_DIR/api.json; "syncmesh console --data DIR" prints a console URL with it)'))
    }
    if (granted === 'read-only' && request.method !== 'GET' && request.method !== 'HEAD') {
      return await reply.code(403).send(errorBody('READ_ONLY_TOKEN', `the read-only API token allows GET requests only; ${request.method} ${request.url.split('?')[0]} needs the full token (DATA_DIR/api.json)`))
    }
  })

  // JSON bodies: a value nested deeper than any record needs would overflow the stack later (stringify, rules)
  app.addHook('preValidation', async (request) => {
    const body = request.body
    if (typeof body === 'object' && body !== null && !(body instanceof Readable) && jsonTooDeep(body)) {
      throw new InvalidInputError(`the request body nests objects and arrays more than ${MAX_JSON_DEPTH} levels deep; flatten it`, 'JSON_TOO_DEEP')
    }
  })

  app.addHook('onResponse', async (request, reply) => {
    log.debug({ method: request.method, url: request.url, status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'api request')
  })

  app.setErrorHandler((err, _request, reply) => sendError(reply, err, log))

  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0]
    return reply.code(404).send(errorBody('ROUTE_NOT_FOUND', `no route ${request.method} ${path}; the API lives under /v1 (GET /v1/status, /v1/collections/:collection/records, /v1/peers, /v1/platforms, /v1/rules, /v1/changes) plus GET /metrics`))
  })

  // -- node ---------------------------------------------------------------

  app.get('/v1/health', async () => ({ ok: true, peerId: node.peerId, name: node.name }))

  app.get('/v1/status', async () => await node.status())

  // which token the caller holds (the console hides what a read-only token cannot do)
  app.get('/v1/access', async (request) => ({ access: tokens.grants(request.headers.authorization) }))

  // samples of status over the last hour, for the console's charts
  app.get('/v1/status/history', async () => history.samples())

  app.post<{ Body: unknown }>('/v1/tokens/rotate', async (request) => {
    const { kind } = parseInput(rotateSchema, request.body ?? {}, 'body')
    if (options.rotateToken === undefined) throw new SyncmeshError('NOT_SUPPORTED', 'this API server cannot rotate its tokens (it was not started by "syncmesh start")', 501)
    const next = await options.rotateToken(kind)
    tokens.set(next)
    log.info({ kind }, `rotated the ${kind} API token; clients need the new one`)
    return { kind, token: kind === 'full' ? next.full : next.readOnly }
  })

  app.get('/v1/collections', async () => {
    if (node.records.collections === undefined) throw new SyncmeshError('NOT_SUPPORTED', 'this node cannot list its collections', 501)
    return { collections: await node.records.collections() }
  })

  app.get('/metrics', async (_request, reply) => {
    const text = await metrics.scrape()
    return await reply.type(metrics.contentType).send(text)
  })

  // -- mesh keys (fingerprints only) ----------------------------------------

  app.get('/v1/keys', async () => {
    if (node.meshKeys == null) throw new SyncmeshError('NOT_SUPPORTED', 'this node does not report its mesh keys', 501)
    return node.meshKeys()
  })

  app.post('/v1/keys/reload', async () => {
    if (node.reloadKeys == null) throw new SyncmeshError('NOT_SUPPORTED', 'this node cannot reload its mesh keys', 501)
    try {
      return await node.reloadKeys()
    } catch (err) {
      // the keyring file is missing or broken: the caller can fix that (the keys stay as they were)
      if (err instanceof SyncmeshError && err.code.startsWith('KEYRING_')) throw new SyncmeshError(err.code, err.message, 409)
      throw err
    }
  })

  // -- records ------------------------------------------------------------

  app.get<{ Params: CollectionParams, Querystring: unknown }>('/v1/collections/:collection/records', async (request) => {
    const query = parseInput(listQuerySchema, request.query ?? {}, 'query')
    return await node.records.list(request.params.collection, {
      ...(query.after != null ? { after: query.after } : {}),
      limit: query.limit ?? DEFAULT_PAGE_LIMIT
    })
  })

  app.get<{ Params: RecordParams }>('/v1/collections/:collection/records/:id', async (request) => {
    const { collection, id } = request.params
    const record = await node.records.get(collection, id)
    if (record == null) throw new NotFoundError(`no record "${id}" in collection "${collection}"`)
    return record
  })

  app.put<{ Params: RecordParams, Body: unknown }>('/v1/collections/:collection/records/:id', async (request) => {
    const { collection, id } = request.params
    const value = request.body
    if (!isJsonObject(value)) {
      const kind = value === undefined ? 'no body' : value === null ? 'null' : Array.isArray(value) ? 'an array' : `a ${typeof value}`
      throw new SyncmeshError('INVALID_VALUE', `the record value must be a JSON object, got ${kind}; send e.g. {"title":"hello"} with Content-Type: application/json`, 400)
    }
    return await node.records.put(collection, id, value)
  })

  app.delete<{ Params: RecordParams }>('/v1/collections/:collection/records/:id', async (request) => {
    const { collection, id } = request.params
    const deleted = await node.records.delete(collection, id)
    if (!deleted) throw new NotFoundError(`no record "${id}" in collection "${collection}"`)
    return { deleted: true }
  })

  await app.register(async (scope) => {
    // Hand the raw request stream to the handler: the body is parsed line by line.
    scope.removeAllContentTypeParsers()
    scope.addContentTypeParser(NDJSON_CONTENT_TYPES, { bodyLimit: IMPORT_BODY_LIMIT }, (_request, payload, done) => {
      done(null, payload)
    })
    scope.post<{ Params: CollectionParams, Body: Readable | undefined }>('/v1/collections/:collection/import', {
      bodyLimit: IMPORT_BODY_LIMIT
    }, async (request: FastifyRequest<{ Params: CollectionParams, Body: Readable | undefined }>, reply: FastifyReply) => {
      const stream = request.body
      if (stream == null) return { imported: 0 }
      // Errors from parsing are remembered: the node may wrap or replace what its iterator threw.
      let parseError: unknown
      // records committed so far, for the error of a failed import
      let imported = 0
      async function * lines (): AsyncGenerator<ImportLine> {
        try {
          yield * parseNdjson(stream as AsyncIterable<Buffer>)
        } catch (err) {
          parseError = err
          throw err
        }
      }
      try {
        const result = await node.records.import(request.params.collection, lines(), (n) => { imported = n })
        return { imported: result.imported }
      } catch (err) {
        const failure = parseError ?? err
        reply.header('connection', 'close')
        await drain(stream)
        if (failure instanceof ImportLineError) throw importFailure(failure, imported)
        if (failure instanceof SyncmeshError) throw failure
        if ((stream.errored != null || (stream as { aborted?: boolean }).aborted === true) && parseError === failure) {
          throw new SyncmeshError('REQUEST_ABORTED', 'the upload was interrupted; records of batches already committed stay imported; send the file again', 400)
        }
        throw failure
      }
    })
  })

  // -- peers --------------------------------------------------------------

  app.get('/v1/peers', async () => await node.peers.list())

  app.post<{ Body: unknown }>('/v1/peers', async (request, reply) => {
    const { multiaddr } = parseInput(addPeerSchema, request.body, 'body')
    const peer = await node.peers.add(multiaddr)
    return await reply.code(201).send(peer)
  })

  app.delete<{ Params: { peerId: string } }>('/v1/peers/:peerId', async (request) => {
    const removed = await node.peers.remove(request.params.peerId)
    if (!removed) throw new NotFoundError(`no known peer ${request.params.peerId}; list them with GET /v1/peers`)
    return { removed: true }
  })

  // -- registry: platforms ------------------------------------------------

  app.get('/v1/platforms', async () => node.registry.platforms())

  app.post<{ Body: unknown }>('/v1/platforms', async (request, reply) => {
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

  app.delete<{ Params: { name: string } }>('/v1/platforms/:name', async (request) => {
    const removed = await node.registry.removePlatform(request.params.name)
    if (!removed) throw new NotFoundError(`no platform named "${request.params.name}"; list them with GET /v1/platforms`)
    return { removed: true }
  })

  app.post<{ Params: { name: string }, Body: unknown }>('/v1/platforms/:name/revoke', async (request) => {
    const body = parseInput(revokeSchema, request.body ?? {}, 'body')
    if (node.registry.revokePlatform === undefined) throw new SyncmeshError('NOT_SUPPORTED', 'this node cannot revoke platforms', 501)
    return await node.registry.revokePlatform(request.params.name, { purge: body.purge === true })
  })

  // -- registry: rules; the changes feed (./rules-routes.ts) ------------

  registerRuleRoutes(app, node)
  registerChangesRoute(app, node)
  registerConnectorRoutes(app, node)

  // -- the console: static files at / and /console/* (./console.ts) ------

  await registerConsoleRoutes(app)

  try {
    await app.listen({ host: options.host, port: options.port })
  } catch (err) {
    await app.close().catch(() => {})
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EADDRINUSE') {
      throw new SyncmeshError('API_PORT_IN_USE', `cannot serve the API on ${options.host}:${options.port}: the port is in use; choose another with --api HOST:PORT (port 0 picks a free one)`, 500, { cause: err })
    }
    if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
      throw new SyncmeshError('API_LISTEN_FAILED', `cannot serve the API on ${options.host}:${options.port}: no such local address; use e.g. --api 127.0.0.1:7070`, 500, { cause: err })
    }
    if (code === 'EACCES') {
      throw new SyncmeshError('API_LISTEN_FAILED', `cannot serve the API on ${options.host}:${options.port}: permission denied; use a port above 1023`, 500, { cause: err })
    }
    throw new SyncmeshError('API_LISTEN_FAILED', `cannot serve the API on ${options.host}:${options.port}: ${(err as Error).message}`, 500, { cause: err })
  }

  const address = app.server.address()
  if (address == null || typeof address === 'string') {
    await app.close()
    throw new SyncmeshError('API_LISTEN_FAILED', 'the API server did not report a TCP address', 500)
  }
  const url = urlFor(address)
  history.start()
  if (!isLoopback(address.address)) {
    log.warn({ address: address.address, port: address.port }, `the HTTP API listens on ${address.address}:${address.port}, which is not a loopback address: anyone who can reach it and holds the API token can read and write every record; bind it to 127.0.0.1 (--api 127.0.0.1:${address.port}) unless a firewall or TLS proxy protects it`)
  }

  let closing: Promise<void> | undefined
  return {
    url,
    routes,
    async close () {
      history.stop()
      closing ??= app.close()
      await closing
    }
  }
}
