/**
 * The local HTTP API (reference: docs/http-api.md; the node serves its
 * OpenAPI document at GET /v1/openapi.json). Every route but GET /v1/health
 * needs `Authorization: Bearer TOKEN`; every error is
 * `{"error":{"code","message"}}`. Routes live one file per resource.
 */
import { STATUS_CODES } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { Readable } from 'node:stream'
import Fastify, { LogController } from 'fastify'
import { pino } from 'pino'
import type { Logger } from 'pino'
import { InvalidInputError, SyncmeshError } from '../core/errors.js'
import { MAX_JSON_DEPTH, jsonTooDeep } from '../store/json-depth.js'
import type { SyncNodeApi } from '../core/types.js'
import type { App } from './app.js'
import { registerConsoleRoutes, isConsolePath } from './console.js'
import { JSON_BODY_LIMIT, errorBody, sendError } from './errors.js'
import { StatusHistory } from './history.js'
import { TokenCheck } from './tokens.js'
import type { ApiTokens, TokenKind } from './tokens.js'
import { createMetrics } from './metrics.js'
import type { DocumentedRoute, RouteDoc } from './openapi.js'
import { registerChangesRoute, registerRuleRoutes } from './rules-routes.js'
import { registerConnectorRoutes } from './connectors-routes.js'
import { registerNodeRoutes } from './routes/node.js'
import { registerPeerRoutes } from './routes/peers.js'
import { registerPlatformRoutes } from './routes/platforms.js'
import { registerRecordRoutes } from './routes/records.js'

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

export { IMPORT_BODY_LIMIT, NDJSON_CONTENT_TYPES } from './routes/records.js'

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

/** Fastify with the API's error shape, body limits and no request logging (the onResponse hook logs at debug). */
function createApp (log: Logger): App {
  return Fastify({
    loggerInstance: log.child({ component: 'api' }),
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: JSON_BODY_LIMIT,
    routerOptions: { maxParamLength: 2048 },
    forceCloseConnections: 'idle',
    clientErrorHandler: clientError,
    frameworkErrors (error, _request, reply) {
      sendError(reply, error, log)
    }
  }) as unknown as App
}

/** The token check, the JSON depth limit, request logging, errors and 404s: what every route shares. */
function addHooks (app: App, node: SyncNodeApi, tokens: TokenCheck, log: Logger): void {
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
    // labelled by route pattern (bounded), never by the URL a client sent
    const route = request.routeOptions.url ?? 'unmatched'
    node.metrics?.httpRequests.inc({ method: request.method, route, status: String(reply.statusCode) })
    node.metrics?.httpSeconds.observe({ method: request.method, route }, reply.elapsedTime / 1000)
  })

  app.setErrorHandler((err, _request, reply) => sendError(reply, err, log))

  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0]
    return reply.code(404).send(errorBody('ROUTE_NOT_FOUND', `no route ${request.method} ${path}; the API lives under /v1 (GET /v1/status, /v1/collections/:collection/records, /v1/peers, /v1/platforms, /v1/rules, /v1/changes, /v1/openapi.json) plus GET /metrics`))
  })
}

/** Listen on HOST:PORT, or throw an error that says what to change. */
async function listen (app: App, host: string, port: number): Promise<AddressInfo> {
  try {
    await app.listen({ host, port })
  } catch (err) {
    await app.close().catch(() => {})
    const code = (err as NodeJS.ErrnoException).code
    const where = `cannot serve the API on ${host}:${port}`
    if (code === 'EADDRINUSE') throw new SyncmeshError('API_PORT_IN_USE', `${where}: the port is in use; choose another with --api HOST:PORT (port 0 picks a free one)`, 500, { cause: err })
    if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EAI_AGAIN') throw new SyncmeshError('API_LISTEN_FAILED', `${where}: no such local address; use e.g. --api 127.0.0.1:7070`, 500, { cause: err })
    if (code === 'EACCES') throw new SyncmeshError('API_LISTEN_FAILED', `${where}: permission denied; use a port above 1023`, 500, { cause: err })
    throw new SyncmeshError('API_LISTEN_FAILED', `${where}: ${(err as Error).message}`, 500, { cause: err })
  }
  const address = app.server.address()
  if (address == null || typeof address === 'string') {
    await app.close()
    throw new SyncmeshError('API_LISTEN_FAILED', 'the API server did not report a TCP address', 500)
  }
  return address
}

export async function startApiServer (node: SyncNodeApi, options: ApiServerOptions): Promise<ApiServer> {
  const log: Logger = options.logger ?? pino({ level: 'silent' })
  if (typeof options.token !== 'string' || options.token.length === 0) {
    throw new SyncmeshError('INVALID_TOKEN', 'the API token must be a non-empty string', 500)
  }
  const tokens = new TokenCheck(options.token, options.readOnlyToken)
  const history = new StatusHistory(node)
  const app = createApp(log)

  const routes: DocumentedRoute[] = []
  app.addHook('onRoute', (route) => {
    const d = (route.config as { doc?: RouteDoc } | undefined)?.doc
    for (const method of [route.method].flat()) routes.push({ method, url: route.url ?? route.path, ...(d !== undefined ? { doc: d } : {}) })
  })
  // JSON only on the root context (fastify's default text/plain parser is removed);
  // the import route gets its own streaming parsers.
  app.removeContentTypeParser('text/plain')
  addHooks(app, node, tokens, log)

  // one file per resource (./routes/, ./rules-routes.ts, ./connectors-routes.ts); the console's static files (./console.ts)
  registerNodeRoutes(app, { node, tokens, history, metrics: createMetrics(node), log, routes, ...(options.rotateToken !== undefined ? { rotateToken: options.rotateToken } : {}) })
  await registerRecordRoutes(app, node)
  registerPeerRoutes(app, node)
  registerPlatformRoutes(app, node)
  registerRuleRoutes(app, node)
  registerChangesRoute(app, node)
  registerConnectorRoutes(app, node)
  await registerConsoleRoutes(app)

  const address = await listen(app, options.host, options.port)
  history.start()
  if (!isLoopback(address.address)) {
    log.warn({ address: address.address, port: address.port }, `the HTTP API listens on ${address.address}:${address.port}, which is not a loopback address: anyone who can reach it and holds the API token can read and write every record; bind it to 127.0.0.1 (--api 127.0.0.1:${address.port}) unless a firewall or TLS proxy protects it`)
  }
  let closing: Promise<void> | undefined
  return {
    url: urlFor(address),
    routes,
    async close () {
      history.stop()
      closing ??= app.close()
      await closing
    }
  }
}
