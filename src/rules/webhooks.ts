/**
 * Rule webhooks: every target node of a rule with a `webhook` POSTs each
 * change the rule applied there to the webhook URL, in order, one change per
 * request, signed with the secret the rule names.
 *
 * The target node decides where it may POST and with which key (its own
 * config.json, not the replicated rule; see webhook-policy.ts and
 * docs/webhooks.md):
 * - the URL's host must be in `webhooks.allow`, and every address it resolves
 *   to must be public unless that address is allowed there too; the request
 *   goes to the address that was checked;
 * - the rule names its secret (`secretRef`), whose value is in the node's
 *   `webhooks.secrets`. A rule that still carries an inline `secret` (the form
 *   before secret references; new ones are refused) keeps working, with a
 *   warning in the log and in status;
 * - redirects are not followed, at most 64 KiB of an answer is read (the rest
 *   is discarded with the connection), the connection must be made within
 *   5 s and the whole request done within `webhooks.timeout` (10 s).
 * A host or secret this node does not allow stops the rule's delivery here
 * (status `webhook.blocked`) without moving its cursor: after a restart with
 * the configuration fixed, delivery resumes where it stopped.
 *
 * Delivery reads this node's changes feed (src/store/changes.ts) for the rule's
 * target collection from a cursor persisted per rule (`w rule`), so it
 * survives restarts and outages: at least once for the newest state of every
 * record the rule wrote (a record changed several times while the endpoint
 * was down is delivered once, at its newest state). A failed attempt (network
 * error, timeout, refused address, or any status other than 2xx) is retried
 * with exponential backoff, 1 s up to 5 min; after `webhooks.maxAttempts`
 * (10, about 8.5 minutes) the change is given up: counted in status
 * (`webhook.failed`, `webhook.lastFailure` with its cursor, to replay it from
 * the changes feed), logged, and the cursor moves on, so an endpoint that
 * always fails cannot hold the rule's deliveries forever. A webhook added to
 * a rule starts with the changes made from then on (including the rule's
 * backfill).
 *
 * Request:
 *   POST <url>
 *   Content-Type: application/json
 *   X-Syncmesh-Signature-256: sha256=<hex HMAC-SHA256 of the raw body with the secret>
 *   X-Syncmesh-Delivery: <platform>:<rule>:<cursor>   (the same on a retry: deduplicate by it)
 *   X-Syncmesh-Rule, X-Syncmesh-Platform, X-Syncmesh-Cursor
 *   {"rule","platform","cursor","sentAt","change":{"collection","id","op","value"?,"version"}}
 */
import { createHmac, timingSafeEqual } from 'node:crypto'
import { lookup } from 'node:dns/promises'
import { Agent as HttpAgent, request as httpRequest } from 'node:http'
import type { ClientRequest, IncomingMessage } from 'node:http'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'
import { isIP } from 'node:net'
import type { LookupFunction, Socket } from 'node:net'
import type { Logger } from 'pino'
import type { Store } from '../store/db.js'
import { decodeJson, encodeJson } from '../store/db.js'
import { keys } from '../store/keys.js'
import { deadline } from '../core/deadline.js'
import { FEED_CHUNK, FeedSignal, readFeed } from '../store/changes.js'
import type { FeedChange } from '../store/changes.js'
import type { RuleWebhook, WebhookSettings, WebhookStatus } from '../core/types.js'
export type { WebhookSettings } from '../core/types.js'
import type { CompiledRule } from './engine.js'
import { targetOf, WebhookPolicy } from './webhook-policy.js'

export const WEBHOOK_TIMEOUT_MS = 10_000
export const WEBHOOK_CONNECT_TIMEOUT_MS = 5_000
export const WEBHOOK_RETRY_MIN_MS = 1_000
export const WEBHOOK_RETRY_MAX_MS = 300_000
export const WEBHOOK_MAX_ATTEMPTS = 10
/** Bytes of an answer read (then the connection is closed); the answer's body is never used. */
export const WEBHOOK_RESPONSE_CAP = 64 * 1024
export const SIGNATURE_HEADER = 'x-syncmesh-signature-256'

/** The node-local webhook settings (config.json "webhooks", flags, library options). */
interface FailedDelivery {
  cursor: string
  collection: string
  id: string
  error: string
  at: string
}

interface PersistedState {
  url: string
  cursor: number
  delivered: number
  failures: number
  /** Changes given up after maxAttempts. */
  failed?: number
  lastFailure?: FailedDelivery
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
  /** This node's webhook settings. */
  settings?: WebhookSettings
  /** Injected for tests of retry timing; defaults to the constants above. */
  retryMinMs?: number
  retryMaxMs?: number
}

export class Webhooks {
  private readonly deps: WebhookDeps
  private readonly deliverers = new Map<string, Deliverer>()
  private readonly signal = new FeedSignal()
  private readonly policy: WebhookPolicy

  constructor (deps: WebhookDeps) {
    this.deps = deps
    this.policy = new WebhookPolicy(deps.settings?.allow ?? [])
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
      const d = new Deliverer(this.deps, this.policy, r, this.signal, this.deps.lastCursor())
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
  private readonly policy: WebhookPolicy
  private readonly ruleId: string
  private readonly collection: string
  private readonly hook: RuleWebhook
  private readonly signal: FeedSignal
  private readonly abort = new AbortController()
  private readonly initialCursor: number
  private readonly maxAttempts: number
  private readonly timeoutMs: number
  private agent?: HttpAgent
  private state?: PersistedState
  private nextAttemptAt?: number
  /** Why this node does not deliver this rule's webhook (host or secret not allowed here). */
  private blocked?: string
  private warning?: string
  done: Promise<void> = Promise.resolve()

  constructor (deps: WebhookDeps, policy: WebhookPolicy, rule: CompiledRule, signal: FeedSignal, initialCursor: number) {
    this.deps = deps
    this.policy = policy
    this.ruleId = rule.rule.id
    this.collection = rule.rule.to.collection
    this.hook = rule.rule.webhook as RuleWebhook
    this.signal = signal
    this.initialCursor = initialCursor
    this.maxAttempts = deps.settings?.maxAttempts ?? WEBHOOK_MAX_ATTEMPTS
    this.timeoutMs = (deps.settings?.timeout ?? WEBHOOK_TIMEOUT_MS / 1000) * 1000
  }

  matches (rule: CompiledRule): boolean {
    const w = rule.rule.webhook
    return rule.rule.to.collection === this.collection && w?.url === this.hook.url && w?.secret === this.hook.secret && w?.secretRef === this.hook.secretRef
  }

  start (): void {
    this.done = this.run().catch((err: Error) => {
      this.deps.log.error({ rule: this.ruleId, err: err.message }, `webhook of rule ${this.ruleId} stopped: ${err.message}; it resumes at the next start`)
    }).finally(() => this.agent?.destroy())
  }

  stop (): void {
    this.abort.abort()
  }

  status (): WebhookStatus {
    const s = this.state
    const out: WebhookStatus = { url: this.hook.url, cursor: String(s?.cursor ?? this.initialCursor), delivered: s?.delivered ?? 0, failures: s?.failures ?? 0, failed: s?.failed ?? 0 }
    if (this.hook.secretRef !== undefined) out.secretRef = this.hook.secretRef
    if (this.blocked !== undefined) out.blocked = this.blocked
    if (this.warning !== undefined) out.warning = this.warning
    if (s?.lastError !== undefined) out.lastError = s.lastError
    if (s?.lastFailure !== undefined) out.lastFailure = s.lastFailure
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

  /** The signing secret, or why there is none on this node. */
  private secret (): { secret: string } | { problem: string } {
    if (this.hook.secretRef !== undefined) {
      const secret = this.deps.settings?.secrets?.[this.hook.secretRef]
      if (secret === undefined) return { problem: `the secret "${this.hook.secretRef}" is not in this node's "webhooks.secrets" (config.json)` }
      return { secret }
    }
    if (this.hook.secret !== undefined) {
      this.warning = 'the rule carries its webhook secret inline, replicated in clear to every node: put it in "webhooks.secrets" of the target nodes\' config.json and update the rule with "secretRef"'
      return { secret: this.hook.secret }
    }
    return { problem: 'the rule names no webhook secret' }
  }

  private async run (): Promise<void> {
    const state = this.state = await this.load()
    const secret = this.secret()
    if (this.warning !== undefined) this.deps.log.warn({ rule: this.ruleId }, `webhook of rule ${this.ruleId}: ${this.warning}`)
    let url: URL | undefined
    try {
      url = new URL(this.hook.url)
    } catch {}
    this.blocked = 'problem' in secret ? secret.problem : url === undefined ? `"${this.hook.url.slice(0, 80)}" is not a URL` : this.policy.refuseHost(url)
    if (this.blocked !== undefined || url === undefined || 'problem' in secret) {
      // nothing is consumed: with the configuration fixed, the next start delivers from here
      this.deps.log.warn({ rule: this.ruleId, url: this.hook.url }, `webhook of rule ${this.ruleId} is not delivered by this node: ${this.blocked ?? ''}; its changes wait at cursor ${state.cursor}`)
      return
    }
    this.agent = url.protocol === 'https:' ? new HttpsAgent({ keepAlive: true, maxSockets: 1 }) : new HttpAgent({ keepAlive: true, maxSockets: 1 })
    const minDelay = this.deps.retryMinMs ?? WEBHOOK_RETRY_MIN_MS
    const maxDelay = this.deps.retryMaxMs ?? WEBHOOK_RETRY_MAX_MS
    while (!this.stopped) {
      const seen = this.signal.notifies
      const chunk = await readFeed(this.deps.store, state.cursor, this.collection, FEED_CHUNK)
      if (chunk.read === 0) {
        // a commit while the feed was read wakes this wait at once
        await this.signal.wait(30_000, this.abort.signal, seen)
        continue
      }
      for (const line of chunk.lines) {
        if (this.stopped) return
        if (line.ruleId === this.ruleId) {
          let delay = minDelay
          for (let attempt = 1; ; attempt++) {
            const error = await this.deliver(url, secret.secret, line)
            if (this.stopped) return
            if (error === undefined) {
              state.delivered++
              state.lastDeliveredAt = new Date().toISOString()
              break
            }
            state.failures++
            state.lastError = error
            if (attempt >= this.maxAttempts) {
              // given up: recorded, and the rule's other changes go on
              state.failed = (state.failed ?? 0) + 1
              state.lastFailure = { cursor: line.cursor, collection: line.collection, id: line.id, error, at: new Date().toISOString() }
              this.deps.log.error({ rule: this.ruleId, url: this.hook.url, cursor: line.cursor, id: line.id, err: error, attempts: attempt }, `webhook of rule ${this.ruleId} gave up on change ${line.cursor} (${line.collection}/${line.id}) after ${attempt} attempts (${error}); replay it from the changes feed after cursor ${Number(line.cursor) - 1} if needed`)
              break
            }
            this.nextAttemptAt = Date.now() + delay
            await this.save()
            this.deps.log.warn({ rule: this.ruleId, url: this.hook.url, cursor: line.cursor, err: error, retryInMs: delay }, `webhook of rule ${this.ruleId} failed (${error}); retrying in ${Math.round(delay / 1000)} s`)
            await sleep(delay, this.abort.signal)
            if (this.stopped) return
            delay = Math.min(maxDelay, delay * 2)
          }
          this.nextAttemptAt = undefined
        }
        state.cursor = Number(line.cursor)
      }
      state.cursor = chunk.last
      await this.save()
    }
  }

  /** POST one change; undefined on success, else what went wrong. */
  private async deliver (url: URL, secret: string, line: FeedChange): Promise<string | undefined> {
    const platform = this.deps.localName()
    const change: Record<string, unknown> = { collection: line.collection, id: line.id, op: line.op, version: line.version }
    if (line.value !== undefined) change.value = line.value
    const body = JSON.stringify({ rule: this.ruleId, platform, cursor: line.cursor, sentAt: new Date().toISOString(), change })
    const headers = {
      'content-type': 'application/json',
      'user-agent': 'syncmesh-webhook/1',
      [SIGNATURE_HEADER]: signBody(secret, body),
      'x-syncmesh-delivery': `${platform}:${this.ruleId}:${line.cursor}`,
      'x-syncmesh-rule': this.ruleId,
      'x-syncmesh-platform': platform,
      'x-syncmesh-cursor': line.cursor
    }
    const timeout = deadline(this.timeoutMs, this.abort.signal)
    const signal = timeout.signal
    try {
      const address = await this.resolve(url, signal)
      if (typeof address === 'string') return address
      const status = await post(url, address, headers, body, this.agent as HttpAgent, signal, Math.min(WEBHOOK_CONNECT_TIMEOUT_MS, this.timeoutMs))
      if (status >= 200 && status < 300) return undefined
      if (status >= 300 && status < 400) return `HTTP ${status} (redirects are not followed: point the webhook at the final URL)`
      return `HTTP ${status}`
    } catch (err) {
      if (this.stopped) return 'stopped'
      if (signal.aborted) return `no answer within ${this.timeoutMs / 1000} s`
      const cause = (err as { cause?: Error }).cause
      return cause?.message ?? (err as Error).message
    } finally {
      timeout.clear()
    }
  }

  /** The one address to connect to, checked against this node's policy, or why there is none. */
  private async resolve (url: URL, deadline: AbortSignal): Promise<{ address: string, family: number } | string> {
    const { host, port, isAddress } = targetOf(url)
    let addresses: Array<{ address: string, family: number }>
    if (isAddress) {
      addresses = [{ address: host, family: isIP(host) }]
    } else {
      addresses = await abortable(lookup(host, { all: true, verbatim: true }), deadline)
      if (addresses.length === 0) return `${host} resolves to no address`
    }
    // every address the name resolves to must be allowed: the check cannot be steered by which one is picked
    for (const a of addresses) {
      const problem = this.policy.refuseAddress(a.address, port)
      if (problem !== undefined) return isAddress ? `${a.address} is ${problem}` : `${host} resolves to ${a.address}, ${problem}`
    }
    return addresses[0]
  }
}

/**
 * POST `body` to `url`, connecting only to `target` (no DNS lookup here);
 * resolves with the status once the answer's head arrived and at most
 * WEBHOOK_RESPONSE_CAP bytes of its body were read (the connection is closed
 * when there is more, or when the body does not end by the deadline).
 */
async function post (url: URL, target: { address: string, family: number }, headers: Record<string, string>, body: string, agent: HttpAgent, deadline: AbortSignal, connectTimeoutMs: number): Promise<number> {
  const pinned: LookupFunction = (_hostname, options, callback) => {
    if ((options as { all?: boolean }).all === true) (callback as unknown as (err: null, addresses: Array<{ address: string, family: number }>) => void)(null, [target])
    else callback(null, target.address, target.family)
  }
  return await new Promise<number>((resolve, reject) => {
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest
    let connectTimer: NodeJS.Timeout | undefined
    let req: ClientRequest
    const fail = (err: Error): void => {
      clearTimeout(connectTimer)
      req?.destroy()
      reject(err)
    }
    req = send(url, {
      method: 'POST',
      headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
      agent,
      lookup: pinned,
      signal: deadline,
      maxHeaderSize: 16 * 1024
    }, (res: IncomingMessage) => {
      clearTimeout(connectTimer)
      const status = res.statusCode ?? 0
      let read = 0
      const done = (): void => {
        deadline.removeEventListener('abort', cut)
        resolve(status)
      }
      const cut = (): void => {
        res.destroy()
        done()
      }
      // the status decides; the body is read (to reuse the connection) only up to the cap and the deadline
      deadline.addEventListener('abort', cut, { once: true })
      res.on('data', (chunk: Buffer) => {
        read += chunk.length
        if (read > WEBHOOK_RESPONSE_CAP) cut()
      })
      res.on('end', done)
      res.on('error', done)
      res.on('aborted', done)
    })
    req.on('socket', (socket: Socket) => {
      if (!socket.connecting) return
      connectTimer = setTimeout(() => fail(new Error(`could not connect within ${connectTimeoutMs / 1000} s`)), connectTimeoutMs)
      socket.once('connect', () => clearTimeout(connectTimer))
    })
    req.on('error', fail)
    req.end(body)
  })
}

async function abortable<T> (promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) throw signal.reason
  return await new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason)
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
  })
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
