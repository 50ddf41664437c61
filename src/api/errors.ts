/**
 * HTTP error bodies: always `{"error":{"code","message"}}`.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import { SyncmeshError } from '../core/errors.js'

export interface ErrorBody {
  error: {
    code: string
    message: string
  }
}

export function errorBody (code: string, message: string): ErrorBody {
  return { error: { code, message } }
}

/** 1 MiB: the limit for JSON request bodies. */
export const JSON_BODY_LIMIT = 1024 * 1024

const IMPORT_HINT = 'send NDJSON (one {"id","value"} object per line) with Content-Type: application/x-ndjson'
const JSON_HINT = 'send a JSON object with Content-Type: application/json'

function isImportRoute (request: FastifyRequest): boolean {
  return request.routeOptions.url?.endsWith('/import') === true
}

/**
 * Turn any error into a status and an error body. SyncmeshErrors keep their
 * code and status; fastify's own errors get a stable code and a message that
 * says what to do; anything else is a 500 with a generic message (the real
 * one goes to the log).
 */
export function toErrorResponse (err: unknown, request: FastifyRequest, log: Logger): { status: number, body: ErrorBody } {
  if (err instanceof SyncmeshError) {
    const status = Number.isInteger(err.status) && err.status >= 400 && err.status <= 599 ? err.status : 500
    if (status >= 500) log.error({ err, method: request.method, url: request.url }, 'request failed')
    return { status, body: errorBody(err.code, err.message) }
  }
  const fe = err as Partial<FastifyError> | undefined
  const code = typeof fe?.code === 'string' ? fe.code : undefined
  const contentType = request.headers['content-type']
  switch (code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return { status: 400, body: errorBody('INVALID_JSON', `the request body is not valid JSON; ${JSON_HINT}`) }
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return { status: 400, body: errorBody('INVALID_JSON', `the request body is empty; ${JSON_HINT}`) }
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return {
        status: 413,
        body: errorBody('BODY_TOO_LARGE', `the request body is larger than the ${JSON_BODY_LIMIT / 1024 / 1024} MiB limit; split the data, or load many records with POST /v1/collections/:collection/import (NDJSON, streamed)`)
      }
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return {
        status: 415,
        body: errorBody('UNSUPPORTED_MEDIA_TYPE', `unsupported Content-Type ${contentType == null ? '(none)' : JSON.stringify(contentType)}; ${isImportRoute(request) ? IMPORT_HINT : JSON_HINT}`)
      }
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return { status: 400, body: errorBody('INVALID_CONTENT_LENGTH', 'the request body does not match its Content-Length header; send the body again') }
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return { status: 414, body: errorBody('URI_TOO_LONG', 'a path segment of the URL is too long (collection names are at most 128 characters, record ids at most 512)') }
    case 'FST_ERR_BAD_URL':
      return { status: 400, body: errorBody('BAD_URL', 'the request URL is malformed (bad percent-encoding?); encode path segments with encodeURIComponent') }
    default:
      break
  }
  const statusCode = fe?.statusCode
  if (typeof statusCode === 'number' && statusCode >= 400 && statusCode < 500) {
    // Some other client error raised by fastify (or the request stream, e.g. an aborted upload).
    return { status: statusCode, body: errorBody('BAD_REQUEST', `bad request: ${fe?.message ?? 'rejected'}`) }
  }
  log.error({ err, method: request.method, url: request.url }, 'request failed with an unexpected error')
  return { status: 500, body: errorBody('INTERNAL', 'internal error in the node; the node log has the details') }
}

export function sendError (reply: FastifyReply, err: unknown, log: Logger): FastifyReply {
  const { status, body } = toErrorResponse(err, reply.request, log)
  return reply.code(status).type('application/json; charset=utf-8').send(body)
}
