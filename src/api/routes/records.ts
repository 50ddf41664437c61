/**
 * Records of a collection: list (paged), get, put, delete, and the streamed
 * NDJSON import (parsed line by line; batches committed as they fill).
 */
import { Readable } from 'node:stream'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { NotFoundError, SyncmeshError } from '../../core/errors.js'
import type { ImportLine, SyncNodeApi } from '../../core/types.js'
import type { App } from '../app.js'
import { ImportLineError, importFailure, isJsonObject, parseNdjson } from '../ndjson.js'
import { doc } from '../openapi.js'
import { DEFAULT_PAGE_LIMIT, listQuerySchema, parseInput } from '../schemas.js'

/** Streamed NDJSON imports may be far larger than a JSON body. */
export const IMPORT_BODY_LIMIT = 1024 * 1024 * 1024

export const NDJSON_CONTENT_TYPES = ['application/x-ndjson', 'application/ndjson', 'text/plain', 'application/octet-stream']

/** How long a failed import keeps reading (and discarding) the rest of the upload so the client sees the error. */
const DRAIN_TIMEOUT_MS = 10_000

interface CollectionParams { collection: string }
interface RecordParams { collection: string, id: string }

const tag = 'records'

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

export async function registerRecordRoutes (app: App, node: SyncNodeApi): Promise<void> {
  app.get<{ Params: CollectionParams, Querystring: unknown }>('/v1/collections/:collection/records', doc({ tag, summary: 'A page of records in id order; pass "next" as "after" for the next page', query: listQuerySchema }), async (request) => {
    const query = parseInput(listQuerySchema, request.query ?? {}, 'query')
    return await node.records.list(request.params.collection, {
      ...(query.after != null ? { after: query.after } : {}),
      limit: query.limit ?? DEFAULT_PAGE_LIMIT
    })
  })

  app.get<{ Params: RecordParams }>('/v1/collections/:collection/records/:id', doc({ tag, summary: 'One record with its version' }), async (request) => {
    const { collection, id } = request.params
    const record = await node.records.get(collection, id)
    if (record == null) throw new NotFoundError(`no record "${id}" in collection "${collection}"`)
    return record
  })

  app.put<{ Params: RecordParams, Body: unknown }>('/v1/collections/:collection/records/:id', doc({ tag, summary: 'Write a record (a JSON object); answers when it is durable' }), async (request) => {
    const { collection, id } = request.params
    const value = request.body
    if (!isJsonObject(value)) {
      const kind = value === undefined ? 'no body' : value === null ? 'null' : Array.isArray(value) ? 'an array' : `a ${typeof value}`
      throw new SyncmeshError('INVALID_VALUE', `the record value must be a JSON object, got ${kind}; send e.g. {"title":"hello"} with Content-Type: application/json`, 400)
    }
    return await node.records.put(collection, id, value)
  })

  app.delete<{ Params: RecordParams }>('/v1/collections/:collection/records/:id', doc({ tag, summary: 'Delete a record' }), async (request) => {
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
      bodyLimit: IMPORT_BODY_LIMIT,
      ...doc({ tag, summary: 'Import NDJSON lines {"id","value"}, streamed and committed in batches', bodyMediaTypes: NDJSON_CONTENT_TYPES })
    }, async (request: FastifyRequest<{ Params: CollectionParams, Body: Readable | undefined }>, reply: FastifyReply) => {
      const stream = request.body
      if (stream == null) return { imported: 0 }
      return await importStream(node, request.params.collection, stream, reply)
    })
  })
}

async function importStream (node: SyncNodeApi, collection: string, stream: Readable, reply: FastifyReply): Promise<{ imported: number }> {
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
    const result = await node.records.import(collection, lines(), (n) => { imported = n })
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
}
