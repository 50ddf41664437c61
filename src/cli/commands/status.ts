/**
 * syncmesh status | wait
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { Command } from 'commander'
import { SyncmeshError } from '../../core/errors.js'
import type { NodeStatus } from '../../core/types.js'
import { addClientOptions, addJsonOption, connect, parseSeconds } from '../common.js'
import type { ClientOptions, JsonOption } from '../common.js'
import { StatusLine, formatAgo, formatBytes, formatCount, formatDuration, printJson, printLine, progressBar, shortId, table } from '../output.js'

type Opts = ClientOptions & JsonOption

const POLL_MS = 200
/** How long `wait` lets a node with known peers stay without any authenticated one before it fails with the reason. */
const UNREACHABLE_GRACE_MS = 10_000

export function renderStatus (s: NodeStatus, now = Date.now()): string {
  const lines: string[] = []
  const uptime = formatDuration((now - Date.parse(s.startedAt)) / 1000)
  lines.push(`node      ${s.name}${s.region != null ? ` (region ${s.region})` : ''}`)
  lines.push(`peer id   ${s.peerId}`)
  lines.push(`up        ${uptime} (since ${s.startedAt})`)
  if (s.streams === true) lines.push('rules     carried by rule streams (experimental)')
  const totalLag = s.origins.reduce((sum, o) => sum + o.lag, 0)
  const basis = s.caughtUpBasis === 'no-peers' ? ' (no peer known yet)' : ''
  lines.push(`caught up ${s.caughtUp && totalLag === 0 ? `yes${basis}` : s.caughtUpBasis === 'unreachable' ? `no: ${s.notCaughtUpReason ?? 'no peer reachable'}` : `no (${formatCount(totalLag)} entries behind)`}`)

  renderPeers(s, now, lines)
  renderOrigins(s, now, lines)
  renderRules(s, now, lines)
  renderConnectors(s, now, lines)
  return lines.join('\n')
}

/** PEERS: by platform name, with last key proof and last traffic */
function renderPeers (s: NodeStatus, now: number, lines: string[]): void {
  const connected = s.peers.filter((p) => p.connected).length
  lines.push('', `PEERS (${connected} of ${s.peers.length} connected)`)
  if (s.peers.length === 0) {
    lines.push('  none; add one with "syncmesh peer add MULTIADDR"')
  } else {
    lines.push(indent(table(
      ['PEER', 'CONNECTED', 'LAST SEEN', 'LAST TRAFFIC', 'IN (entries/bytes)', 'OUT (entries/bytes)', 'ERROR'],
      s.peers.map((p) => [
        p.platform !== undefined ? `${p.platform}${p.region !== undefined ? ` (${p.region})` : ''}` : shortId(p.peerId),
        p.connected ? (p.authenticated ? 'yes' : 'yes (unauthenticated)') : 'no',
        formatAgo(p.lastSeen, now),
        formatAgo(p.lastTraffic, now),
        `${formatCount(p.entriesReceived)} / ${formatBytes(p.bytesReceived)}`,
        `${formatCount(p.entriesSent)} / ${formatBytes(p.bytesSent)}`,
        p.lastError ?? ''
      ])
    )))
  }
}

/** ORIGINS, then STALLS and offences when there are any */
function renderOrigins (s: NodeStatus, now: number, lines: string[]): void {
  lines.push('', `ORIGINS (${s.origins.length})`)
  if (s.origins.length === 0) {
    lines.push('  none yet')
  } else {
    lines.push(indent(table(
      ['PLATFORM', 'ORIGIN', 'SEQ', 'ANNOUNCED', 'LAG', 'NOTE'],
      s.origins.map((o) => [
        o.platform ?? '-', shortId(o.origin), formatCount(o.seq), formatCount(o.announced), formatCount(o.lag),
        o.stuck != null ? `no progress for ${formatDuration((now - Date.parse(o.stuck.since)) / 1000)} (waiting on ${shortId(o.stuck.peer)})` : ''
      ])
    )))
  }

  if (s.stalls != null && s.stalls.recent.length > 0) {
    lines.push('', `STALLS (${s.stalls.active} active of ${s.stalls.total}; see docs/troubleshooting.md)`)
    lines.push(indent(table(
      ['PEER', 'ORIGIN', 'RANGE', 'CHECK', 'REFUSED', 'STATE'],
      s.stalls.recent.map((st) => [
        shortId(st.peer), st.platform ?? shortId(st.origin), `(${st.fromSeq}, ${st.toSeq}]`, st.code, `${st.refusals}×`,
        st.recovered != null ? `recovered ${formatAgo(st.recovered, now)}` : `since ${formatAgo(st.since, now)}${st.asked.length > 0 ? `, asked ${st.asked.length} other peer(s)` : ''}`
      ])
    )))
  }
  if (s.offences != null && s.offences.total > 0) {
    const by = Object.entries(s.offences.byCheck).map(([check, n]) => `${check} ${n}`).join(', ')
    lines.push('', `offences  ${s.offences.total} (${by}), ${s.offences.bans} ban(s) since start; see docs/troubleshooting.md`)
  }
}

/** RULES: what each does here */
function renderRules (s: NodeStatus, now: number, lines: string[]): void {
  lines.push('', `RULES (${s.rules.length})`)
  if (s.rules.length === 0) {
    lines.push('  none')
  } else {
    lines.push(indent(table(
      ['ID', 'FROM → TO', 'MODE', 'HERE', 'APPLIED', 'PENDING', 'CONFLICTS', 'ERRORS', 'PROBLEM'],
      s.rules.map((r) => [
        r.id, `${r.from} → ${r.to}`, r.paused === true ? `${r.mode}, paused` : r.mode, r.local ? (r.paused === true ? 'yes (paused)' : r.backfilled ? 'yes' : r.catchingUp === true ? 'yes (catching up since its pause)' : `yes (backfilling${r.backfillPhase === 'sweep' ? ': removing what the source lacks' : ''})`) : 'no',
        formatCount(r.applied), r.local ? formatCount(r.pending ?? 0) : '-', formatCount(r.conflicts ?? 0), formatCount(r.transformErrors ?? 0),
        [r.problem, (r.unreadable ?? 0) > 0 ? `${formatCount(r.unreadable ?? 0)} stream entries did not open (see the log)` : undefined, r.waitingForKey !== undefined ? `waiting for the stream key of ${r.waitingForKey.join(', ')} (online, with this rule and this platform in its registry, it seals one)` : undefined, r.webhook?.blocked !== undefined ? `webhook not delivered here: ${r.webhook.blocked}` : undefined, r.webhook?.nextAttemptAt !== undefined ? `webhook failing: ${r.webhook.lastError ?? '?'}` : undefined, (r.webhook?.failed ?? 0) > 0 ? `webhook gave up ${formatCount(r.webhook?.failed ?? 0)} changes` : undefined].filter(x => x !== undefined).join('; ')
      ])
    )))
  }
}

/** CONNECTORS, when the node has any */
function renderConnectors (s: NodeStatus, now: number, lines: string[]): void {
  if (s.connectors != null && s.connectors.length > 0) {
    lines.push('', `CONNECTORS (${s.connectors.length}; docs/connectors.md)`)
    lines.push(indent(table(
      ['ID', 'TABLE ↔ COLLECTION', 'RUNNING', 'LAG', 'CAPTURED', 'APPLIED', 'SKIPPED FIELDS', 'REFUSED', 'LAST ERROR'],
      s.connectors.map((c) => [
        c.id, `${c.kind}:${c.table} ${c.direction === 'in' ? '←' : c.direction === 'out' ? '→' : '↔'} ${c.collection}`, c.running ? 'yes' : 'no',
        c.direction === 'in' ? '-' : formatCount(c.lag), formatCount(c.captured), formatCount(c.applied), formatCount(c.skippedFields), formatCount(c.refusedRows),
        c.lastError != null ? `${formatAgo(c.lastError.at, now)}: ${c.lastError.message}` : ''
      ])
    )))
  }
}

function indent (text: string): string {
  return text.split('\n').map((l) => `  ${l}`).join('\n')
}

function isCaughtUp (s: NodeStatus): boolean {
  return s.caughtUp && s.origins.every((o) => o.lag === 0)
}

export function registerStatusCommands (program: Command): void {
  addClientOptions(addJsonOption(
    program.command('status').description('peers, per-origin versions and lag, rules')
  )).action(async (opts: Opts) => {
    const client = await connect(opts)
    const status = await client.status()
    if (opts.json === true) await printJson(status)
    else await printLine(renderStatus(status))
  })

  addClientOptions(addJsonOption(
    program.command('wait').description('return once caught up with connected peers (progress on stderr)')
      .option('--timeout <seconds>', 'give up after this many seconds (exit 1, code TIMEOUT); default: wait forever')
  )).action(async (opts: Opts & { timeout?: string }) => {
    const timeout = opts.timeout != null ? parseSeconds(opts.timeout, '--timeout') : undefined
    const client = await connect(opts)
    const started = Date.now()
    const deadline = timeout != null ? started + timeout * 1000 : undefined
    const line = new StatusLine({ ttyIntervalMs: 0, plainIntervalMs: 1000 })
    let maxLag = 0
    let prev: { lag: number, at: number } | undefined
    let rate = 0 // entries per second, smoothed
    let unreachableSince: number | undefined
    try {
      for (;;) {
        const status = await client.status()
        const now = Date.now()
        if (status.caughtUpBasis === 'unreachable') {
          unreachableSince ??= now
          if (now - unreachableSince >= UNREACHABLE_GRACE_MS) {
            line.clear()
            throw new SyncmeshError('PEERS_UNREACHABLE', `cannot tell whether this node is caught up: ${status.notCaughtUpReason ?? 'no known peer is connected and authenticated'}`, 503)
          }
        } else {
          unreachableSince = undefined
        }
        const lag = status.origins.reduce((sum, o) => sum + o.lag, 0)
        if (isCaughtUp(status)) {
          line.clear()
          const seconds = (now - started) / 1000
          const connected = status.peers.filter((p) => p.connected).length
          if (opts.json === true) await printJson({ caughtUp: true, seconds, origins: status.origins.length, peersConnected: connected })
          else await printLine(`caught up (${status.origins.length} origins, ${connected} peers connected) after ${formatDuration(seconds)}`)
          return
        }
        if (deadline != null && now >= deadline) {
          line.clear()
          throw new SyncmeshError('TIMEOUT', `not caught up after ${formatDuration(timeout ?? 0)}: ${formatCount(lag)} entries behind across ${status.origins.filter((o) => o.lag > 0).length} origins; check "syncmesh status" for peers and errors`, 408)
        }
        maxLag = Math.max(maxLag, lag)
        if (prev != null && now > prev.at) {
          const instant = (prev.lag - lag) / ((now - prev.at) / 1000)
          rate = rate === 0 ? Math.max(0, instant) : 0.8 * rate + 0.2 * Math.max(0, instant)
        }
        prev = { lag, at: now }
        const eta = rate > 0 ? formatDuration(lag / rate) : '?'
        const behind = status.origins.filter((o) => o.lag > 0).length
        const connected = status.peers.filter((p) => p.connected).length
        if (lag === 0) {
          line.update(`waiting for ${connected} connected peer(s) to confirm versions…`)
        } else if (line.tty) {
          line.update(`${progressBar(maxLag > 0 ? 1 - lag / maxLag : 0)}  lag ${formatCount(lag)} entries (${behind} origins)  ETA ${eta}`)
        } else {
          line.update(`waiting: ${formatCount(lag)} entries behind across ${behind} origins, ${connected} peers connected, ETA ${eta}`)
        }
        const wait = deadline != null ? Math.max(0, Math.min(POLL_MS, deadline - Date.now())) : POLL_MS
        await sleep(wait)
      }
    } finally {
      line.clear()
    }
  })
}
