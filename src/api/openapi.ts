/**
 * The OpenAPI 3.1 document of the HTTP API, built from the routes as they are
 * registered: each route carries its summary and the zod schemas its handler
 * parses its body and query with (`config.doc`, see `doc()`), so the document
 * cannot drift from what the server checks. Served at GET /v1/openapi.json.
 */
import { z } from 'zod'

export interface RouteDoc {
  /** One line: what the route does. */
  summary: string
  /** Groups routes in the document (records, peers, platforms, rules, …). */
  tag: string
  /** The JSON body the handler parses (parseInput). */
  body?: z.ZodType
  /** The query string the handler parses (parseInput). */
  query?: z.ZodType
  /** A body that is not JSON (e.g. NDJSON for imports): its media types. */
  bodyMediaTypes?: string[]
  /** What the route answers when it is not a JSON object (e.g. NDJSON, text). */
  responseMediaType?: string
  /** The success status when it is not 200. */
  status?: number
  /** Routes that need no token (the health check). */
  public?: boolean
}

/** Route options that attach `d` to a route: `app.get(url, doc({...}), handler)`. */
export function doc (d: RouteDoc): { config: { doc: RouteDoc } } {
  return { config: { doc: d } }
}

export interface DocumentedRoute { method: string, url: string, doc?: RouteDoc }

function jsonSchema (schema: z.ZodType): Record<string, unknown> {
  const out = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>
  delete out.$schema
  return out
}

function pathParams (url: string): string[] {
  return [...url.matchAll(/:([A-Za-z0-9_]+)/g)].map(m => m[1])
}

function operation (route: DocumentedRoute): Record<string, unknown> {
  const d = route.doc
  const op: Record<string, unknown> = {
    summary: d?.summary ?? `${route.method} ${route.url}`,
    tags: [d?.tag ?? 'other'],
    operationId: `${route.method.toLowerCase()}${route.url.replace(/[/:{}.-]+([a-zA-Z0-9]?)/g, (_m, c: string) => c.toUpperCase())}`
  }
  const parameters: Array<Record<string, unknown>> = pathParams(route.url).map(name => ({ name, in: 'path', required: true, schema: { type: 'string' } }))
  if (d?.query !== undefined) {
    const q = jsonSchema(d.query)
    const props = (q.properties ?? {}) as Record<string, Record<string, unknown>>
    const required = new Set((q.required ?? []) as string[])
    for (const [name, schema] of Object.entries(props)) parameters.push({ name, in: 'query', required: required.has(name), schema })
  }
  if (parameters.length > 0) op.parameters = parameters
  if (d?.body !== undefined) op.requestBody = { required: true, content: { 'application/json': { schema: jsonSchema(d.body) } } }
  else if (d?.bodyMediaTypes !== undefined) op.requestBody = { required: true, content: Object.fromEntries(d.bodyMediaTypes.map(t => [t, { schema: { type: 'string' } }])) }
  const ok = String(d?.status ?? 200)
  op.responses = {
    [ok]: { description: 'success', content: { [d?.responseMediaType ?? 'application/json']: {} } },
    default: { description: 'an error: {"error":{"code","message"}} (codes: docs/http-api.md)', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } }
  }
  if (d?.public === true) op.security = []
  return op
}

/** The document for `routes` (HEAD routes, which fastify adds to every GET, are left out). */
export function openApiDocument (routes: readonly DocumentedRoute[], version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {}
  for (const route of routes) {
    if (route.method === 'HEAD' || route.doc === undefined) continue
    const path = route.url.replace(/:([A-Za-z0-9_]+)/g, '{$1}')
    ;(paths[path] ??= {})[route.method.toLowerCase()] = operation(route)
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'syncmesh node HTTP API',
      version,
      description: 'The local HTTP API of one syncmesh node. Reference with examples: docs/http-api.md.'
    },
    security: [{ bearer: [] }],
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'the full token, or the read-only token for GET routes (DATA_DIR/api.json)' } },
      schemas: {
        Error: {
          type: 'object',
          required: ['error'],
          properties: { error: { type: 'object', required: ['code', 'message'], properties: { code: { type: 'string' }, message: { type: 'string' } } } }
        }
      }
    },
    paths
  }
}
