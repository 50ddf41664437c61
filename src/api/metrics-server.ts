/**
 * /metrics on an address of its own, without a token, for a Prometheus
 * scraper when the operator asks for it (start --metrics HOST:PORT). Serves
 * nothing else.
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { SyncmeshError } from '../core/errors.js'
import type { SyncNodeApi } from '../core/types.js'
import { createMetrics } from './metrics.js'

export interface MetricsServer {
  url: string
  close (): Promise<void>
}

export async function startMetricsServer (node: SyncNodeApi, host: string, port: number): Promise<MetricsServer> {
  const metrics = createMetrics(node)
  const server = createServer((request, response) => {
    const path = (request.url ?? '').split('?')[0]
    if (request.method !== 'GET' || path !== '/metrics') {
      response.writeHead(404, { 'content-type': 'application/json; charset=utf-8' })
      response.end(JSON.stringify({ error: { code: 'ROUTE_NOT_FOUND', message: 'this address serves GET /metrics only' } }))
      return
    }
    metrics.scrape().then((text) => {
      response.writeHead(200, { 'content-type': metrics.contentType })
      response.end(text)
    }, (err: unknown) => {
      response.writeHead(500, { 'content-type': 'application/json; charset=utf-8' })
      response.end(JSON.stringify({ error: { code: 'METRICS_FAILED', message: `collecting the metrics failed: ${(err as Error).message}` } }))
    })
  })
  server.requestTimeout = 10_000
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      reject(new SyncmeshError('METRICS_LISTEN_FAILED', `cannot serve metrics on ${host}:${port}: ${err.code === 'EADDRINUSE' ? 'the port is in use; choose another with --metrics HOST:PORT' : err.message}`, 500, { cause: err }))
    })
    server.listen({ host, port }, () => resolve())
  })
  const address = server.address() as AddressInfo
  const shown = address.address.includes(':') ? `[${address.address}]` : address.address
  return {
    url: `http://${shown}:${address.port}/metrics`,
    async close () {
      await new Promise<void>((resolve) => server.close(() => resolve()))
      server.closeAllConnections()
    }
  }
}
