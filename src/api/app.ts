/** The fastify instance the API's routes are registered on. */
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'

export type App = FastifyInstance<Server, IncomingMessage, ServerResponse, Logger>
