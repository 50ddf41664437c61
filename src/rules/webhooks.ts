/**
 * Rule webhooks: every target node of a rule with a `webhook` POSTs each
 * change the rule applied there to the webhook URL, in order, one change per
 * request, signed with the rule's secret.
 *
 * Delivery reads this node's changes feed (src/node/changes.ts) for the rule's
 * target collection from a cursor persisted per rule (`w rule`), so it
 * survives restarts and outages: at least once for the newest state of every
 * record the rule wrote (a record changed several times while the endpoint
 * was down is delivered once, at its newest state). A failed delivery (network
 * error, timeout, or any status other than 2xx) is retried with exponential
 * backoff, 1 s up to 5 min, without skipping ahead. A webhook added to a rule
 * starts with the changes made from then on (including the rule's backfill).
 *
 * Request:
 *   POST <url>
 *   Content-Type: application/json
 *   X-Syncmesh-Signature-256: sha256=<hex HMAC-SHA256 of the raw body with the rule's secret>
 *   X-Syncmesh-Delivery: <platform>:<rule>:<cursor>   (the same on a retry: deduplicate by it)
 *   X-Syncmesh-Rule, X-Syncmesh-Platform, X-Syncmesh-Cursor
 *   {"rule","platform","cursor","sentAt","change":{"collection","id","op","value"?,"version"}}
 */
import { createHmac, timingSafeEqual } from 'node:crypto'
import type { Logger } from 'pino'
import type { Store } from '../store/db.js'
import { decodeJson, encodeJson } from '../store/db.js'
import { keys } from '../store/keys.js'
import { FEED_CHUNK, FeedSignal, readFeed } from '../node/changes.js'
import type { FeedChange } from '../node/changes.js'
import type { RuleWebhook, WebhookStatus } from '../node/types.js'
import type { CompiledRule } from './engine.js'

export const WEBHOOK_TIMEOUT_MS = 10_000
export const WEBHOOK_RETRY_MIN_MS = 1_000
export const WEBHOOK_RETRY_MAX_MS = 300_000
export const SIGNATURE_HEADER = 'x-syncmesh-signature-256'

interface PersistedState {
  url: string
  cursor: number
  delivered: number
  failures: number
  lastError?: string
  lastDeliveredAt?: string
}

/** The signature header value for a body: "sha256=" + hex HMAC-SHA256. */
export function signBody (secret: string, body: string | Uint8Array): string {
  return 'sha256=' + createHmac('sha256', secret).update(body).digest('hex')
}

/**
 * For webhook receivers: whether `header` (X-Syncmesh-Signature-256) is the
 * signature of the raw request body with `secret`, compared in constant time.
 */
export function verifyWebhookSignature (secret: string, body: string | Uint8Array, header: string | undefined): boolean {
  if (typeof header !== 'string') return false
  const expected = Buffer.from(signBody(secret, body))
  const given = Buffer.from(header)
  return given.length === expected.length && timingSafeEqual(given, expected)
}

export interface WebhookDeps {
  store: Store
  log: Logger
  localName: () => string
  /** The newest feed cursor committed. */
  lastCursor: () => number
  /** Injected for tests of retry timing; defaults to the constants above. */
  retryMinMs?: number
  retryMaxMs?: number
}

export class Webhooks {
  private readonly deps: WebhookDeps
  private readonly deliverers = new Map<string, Deliverer>()
  private readonly signal = new FeedSignal()

  constructor (deps: WebhookDeps) {
    this.deps = deps
  }

  /** Run one deliverer per active rule with a webhook; stop the others. */
  sync (rules: CompiledRule[]): void {
    const wanted = new Map<string, CompiledRule>()
    for (const r of rules) if (r.rule.webhook !== undefined) wanted.set(r.rule.id, r)
    for (const [id, d] of this.deliverers) {
      const r = wanted.get(id)
      if (r === undefined || !d.matches(r)) {
        d.stop()
        this.deliverers.delete(id)
      }
    }
    for (const [id, r] of wanted) {
      if (this.deliverers.has(id)) continue
      const d = new Deliverer(this.deps, r, this.signal, this.deps.lastCursor())
      this.deliverers.set(id, d)
      d.start()
    }
  }

  /** New changes were committed. */
  wake (): void {
    this.signal.notify()
  }

  status (ruleId: string): WebhookStatus | undefined {
    return this.deliverers.get(ruleId)?.status()
  }

  async stop (): Promise<void> {
    const all = [...this.deliverers.values()]
    this.deliverers.clear()
    for (const d of all) d.stop()
    this.signal.notify()
    await Promise.allSettled(all.map(async d => await d.done))
  }
}

class Deliverer {
  private readonly deps: WebhookDeps
  private readonly ruleId: string
  private readonly collection: string
  private readonly hook: RuleWebhook
  private readonly signal: FeedSignal
  private readonly abort = new AbortController()
  private readonly initialCursor: number
  private state?: PersistedState
  private nextAttemptAt?: number
  done: Promise<void> = Promise.resolve()

  constructor (deps: WebhookDeps, rule: CompiledRule, signal: FeedSignal, initialCursor: number) {
    this.deps = deps
    this.ruleId = rule.rule.id
    this.collection = rule.rule.to.collection
    this.hook = rule.rule.webhook as RuleWebhook
    this.signal = signal
    this.initialCursor = initialCursor
  }

  matches (rule: CompiledRule): boolean {
    return rule.rule.to.collection === this.collection && rule.rule.webhook?.url === this.hook.url && rule.rule.webhook?.secret === this.hook.secret
  }

  start (): void {
    this.done = this.run().catch((err: Error) => {
      this.deps.log.error({ rule: this.ruleId, err: err.message }, `webhook of rule ${this.ruleId} stopped: ${err.message}; it resumes at the next start`)
    })
  }

  stop (): void {
    this.abort.abort()
  }

  status (): WebhookStatus {
    const s = this.state
    const out: WebhookStatus = { url: this.hook.url, cursor: String(s?.cursor ?? this.initialCursor), delivered: s?.delivered ?? 0, failures: s?.failures ?? 0 }
    if (s?.lastError !== undefined) out.lastError = s.lastError
    if (s?.lastDeliveredAt !== undefined) out.lastDeliveredAt = s.lastDeliveredAt
    if (this.nextAttemptAt !== undefined) out.nextAttemptAt = new Date(this.nextAttemptAt).toISOString()
    return out
  }

  private get stopped (): boolean {
    return this.abort.signal.aborted
  }

  private async load (): Promise<PersistedState> {
    const key = keys.webhook(this.ruleId)
    const saved = await this.deps.store.db.get(key)
    if (saved !== undefined) {
      const s = decodeJson<PersistedState>(saved)
      if (s.url !== this.hook.url) s.url = this.hook.url // a new URL continues where the old one stopped
      return s
    }
    const s: PersistedState = { url: this.hook.url, cursor: this.initialCursor, delivered: 0, failures: 0 }
    await this.deps.store.db.put(key, encodeJson(s))
    return s
  }

  private async save (): Promise<void> {
    if (this.state !== undefined) await this.deps.store.db.put(keys.webhook(this.ruleId), encodeJson(this.state))
  }

  private async run (): Promise<void> {
    const state = this.state = await this.load()
    const minDelay = this.deps.retryMinMs ?? WEBHOOK_RETRY_MIN_MS
    const maxDelay = this.deps.retryMaxMs ?? WEBHOOK_RETRY_MAX_MS
    while (!this.stopped) {
      const chunk = await readFeed(this.deps.store, state.cursor, this.collection, FEED_CHUNK)
      if (chunk.read === 0) {
        await this.signal.wait(30_000, this.abort.signal)
        continue
      }
      for (const line of chunk.lines) {
        if (this.stopped) return
        if (line.ruleId === this.ruleId) {
          let delay = minDelay
          for (;;) {
            const error = await this.deliver(line)
            if (this.stopped) return
            if (error === undefined) break
            state.failures++
            state.lastError = error
            this.nextAttemptAt = Date.now() + delay
            await this.save()
            this.deps.log.warn({ rule: this.ruleId, url: this.hook.url, cursor: line.cursor, err: error, retryInMs: delay }, `webhook of rule ${this.ruleId} failed (${error}); retrying in ${Math.round(delay / 1000)} s`)
            await sleep(delay, this.abort.signal)
            if (this.stopped) return
            delay = Math.min(maxDelay, delay * 2)
          }
          this.nextAttemptAt = undefined
          state.delivered++
          state.lastDeliveredAt = new Date().toISOString()
        }
        state.cursor = Number(line.cursor)
      }
      state.cursor = chunk.last
      await this.save()
    }
  }

  /** POST one change; undefined on success, else what went wrong. */
  private async deliver (line: FeedChange): Promise<string | undefined> {
    const platform = this.deps.localName()
    const change: Record<string, unknown> = { collection: line.collection, id: line.id, op: line.op, version: line.version }
    if (line.value !== undefined) change.value = line.value
    const body = JSON.stringify({ rule: this.ruleId, platform, cursor: line.cursor, sentAt: new Date().toISOString(), change })
    try {
      const res = await fetch(this.hook.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'syncmesh-webhook/1',
          [SIGNATURE_HEADER]: signBody(this.hook.secret, body),
          'x-syncmesh-delivery': `${platform}:${this.ruleId}:${line.cursor}`,
          'x-syncmesh-rule': this.ruleId,
          'x-syncmesh-platform': platform,
          'x-syncmesh-cursor': line.cursor
        },
        body,
        signal: AbortSignal.any([this.abort.signal, AbortSignal.timeout(WEBHOOK_TIMEOUT_MS)])
      })
      // the body is not needed; release the connection
      await res.arrayBuffer().catch(() => {})
      if (res.status >= 200 && res.status < 300) return undefined
      return `HTTP ${res.status}`
    } catch (err) {
      if ((err as Error).name === 'TimeoutError') return `no answer within ${WEBHOOK_TIMEOUT_MS / 1000} s`
      const cause = (err as { cause?: Error }).cause
      return cause?.message ?? (err as Error).message
    }
  }
}

async function sleep (ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return
  await new Promise<void>((resolve) => {
    const timer = setTimeout(done, ms)
    function done (): void {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    signal.addEventListener('abort', done, { once: true })
  })
}
