/**
 * A lean HTTP client for the benchmark: node:http with keep-alive sockets.
 * `fetch` (undici) costs about twice as much per request on this machine
 * (~0.8–1 ms against ~0.45 ms for a GET on loopback), which matters when a
 * tight GET loop is the probe of the latency measurement.
 */
import { Agent, request } from 'node:http'
import type { NodeStatus } from '../../src/core/types.js'

export interface Reply {
  status: number
  body: string
}

export class FastClient {
  private readonly host: string
  private readonly port: number
  private readonly auth: string
  private readonly agent: Agent

  constructor (api: string, token: string) {
    const url = new URL(api)
    this.host = url.hostname
    this.port = Number(url.port)
    this.auth = `Bearer ${token}`
    this.agent = new Agent({ keepAlive: true, maxSockets: 8 })
  }

  async request (method: string, path: string, body?: string): Promise<Reply> {
    return await new Promise<Reply>((resolve, reject) => {
      const headers: Record<string, string | number> = { authorization: this.auth }
      if (body !== undefined) {
        headers['content-type'] = 'application/json'
        headers['content-length'] = Buffer.byteLength(body)
      }
      const req = request({ host: this.host, port: this.port, method, path, agent: this.agent, headers }, (res) => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (c: string) => { text += c })
        res.on('error', reject)
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }))
      })
      req.on('error', reject)
      req.end(body)
    })
  }

  /** HTTP status of GET record (200 when readable, 404 when not yet). */
  async probe (collection: string, id: string): Promise<number> {
    return (await this.request('GET', `/v1/collections/${encodeURIComponent(collection)}/records/${encodeURIComponent(id)}`)).status
  }

  async put (collection: string, id: string, value: unknown): Promise<void> {
    const r = await this.request('PUT', `/v1/collections/${encodeURIComponent(collection)}/records/${encodeURIComponent(id)}`, JSON.stringify(value))
    if (r.status !== 200) throw new Error(`PUT ${collection}/${id} failed: ${r.status} ${r.body}`)
  }

  async status (): Promise<NodeStatus> {
    const r = await this.request('GET', '/v1/status')
    if (r.status !== 200) throw new Error(`GET /v1/status failed: ${r.status} ${r.body}`)
    return JSON.parse(r.body) as NodeStatus
  }

  close (): void {
    this.agent.destroy()
  }
}

/**
 * A follower of the node's changes feed (GET /v1/changes?follow=true): the
 * node pushes one NDJSON line per committed change, so the bench learns that
 * a record became readable without polling the node. Records the local
 * arrival time of every change line by record id.
 */
export class FeedFollower {
  private readonly arrivals = new Map<string, number>()
  private readonly waiters = new Map<string, (t: number) => void>()
  private req?: ReturnType<typeof request>
  private error?: Error
  private buffer = ''

  private onFirstLine?: () => void

  /**
   * Opens the feed with 1 s heartbeats and resolves at its first line (a
   * heartbeat, since it starts at "now"): the node sends its headers only
   * with the first line, and by then the follower is registered. Rejects
   * with the status otherwise (e.g. 404 on a node without a feed).
   */
  async open (api: string, token: string, collection: string): Promise<void> {
    const url = new URL(`${api}/v1/changes?since=now&follow=true&heartbeat=1&collection=${encodeURIComponent(collection)}`)
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the changes feed sent nothing within 10 s')), 10_000)
      this.onFirstLine = () => { clearTimeout(timer); resolve() }
      const req = request(url, { headers: { authorization: `Bearer ${token}` }, agent: false }, (res) => {
        if (res.statusCode !== 200) {
          clearTimeout(timer)
          res.resume()
          reject(new Error(`GET /v1/changes answered ${String(res.statusCode)}`))
          return
        }
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => this.onData(chunk))
        res.on('error', (err) => { this.error = err })
      })
      req.on('error', (err) => { clearTimeout(timer); this.error = err; reject(err) })
      req.end()
      this.req = req
    })
  }

  private onData (chunk: string): void {
    const t = performance.now()
    this.buffer += chunk
    let nl: number
    while ((nl = this.buffer.indexOf('\n')) !== -1) {
      const line = this.buffer.slice(0, nl)
      this.buffer = this.buffer.slice(nl + 1)
      if (line.trim() === '') continue
      const msg = JSON.parse(line) as { type: string, id?: string }
      this.onFirstLine?.()
      this.onFirstLine = undefined
      if (msg.type !== 'change' || msg.id === undefined) continue
      if (!this.arrivals.has(msg.id)) this.arrivals.set(msg.id, t)
      const w = this.waiters.get(msg.id)
      if (w !== undefined) {
        this.waiters.delete(msg.id)
        w(t)
      }
    }
  }

  /** performance.now() at which the change of `id` arrived (maybe already). */
  async arrival (id: string, timeoutMs: number): Promise<number> {
    const have = this.arrivals.get(id)
    if (have !== undefined) return have
    if (this.error !== undefined) throw this.error
    return await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(id)
        reject(new Error(`no change for ${id} on the feed within ${timeoutMs} ms${this.error !== undefined ? ` (${this.error.message})` : ''}`))
      }, timeoutMs)
      this.waiters.set(id, (t) => { clearTimeout(timer); resolve(t) })
    })
  }

  close (): void {
    this.req?.destroy()
    this.req = undefined
  }
}
