import { request as httpRequest } from 'node:http'

export interface RawResponse { status: number, headers: Record<string, unknown>, text: string, json: any }

/**
 * One HTTP request on a fresh connection, without fetch's normalisation:
 * for malformed paths, odd headers and raw bodies in API tests.
 */
export async function rawRequest (base: string | URL, options: { method?: string, path: string, headers?: Record<string, string>, body?: string | Buffer }): Promise<RawResponse> {
  const u = typeof base === 'string' ? new URL(base) : base
  return await new Promise((resolve, reject) => {
    const req = httpRequest({ host: u.hostname, port: u.port, method: options.method ?? 'GET', path: options.path, headers: options.headers, agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        let json: unknown
        try { json = JSON.parse(text) } catch {}
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json })
      })
    })
    req.on('error', reject)
    if (options.body !== undefined) req.write(options.body)
    req.end()
  })
}
