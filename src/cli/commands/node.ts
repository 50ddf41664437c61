/**
 * syncmesh key gen | init | start (key add/use/rm/ls/reload: ./keys.js)
 */
import { createServer } from 'node:net'
import { rm } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import type { Command } from 'commander'
import type { Logger } from 'pino'
import type { MetricsServer } from '../../api/metrics-server.js'
import type { ApiServer } from '../../api/server.js'
import { loadTokens, rotateToken } from '../../api/tokens.js'
import { ConfigError, SyncmeshError } from '../../core/errors.js'
import { API_FILE, generateMeshKey, initDataDir, loadConfig, MAX_CLOCK_AHEAD_MS, MIN_CLOCK_AHEAD_MS, writeApiFile } from '../../node/config.js'
import { resolveStartKey } from '../../node/keyring.js'
import { DEFAULT_API, DEFAULT_LISTEN } from '../../node/constants.js'
import { addJsonOption, collect, parseHostPort, UsageError } from '../common.js'
import { tuneV8 } from '../v8-tuning.js'
import { parseAllowEntry } from '../../rules/webhook-policy.js'
import type { JsonOption } from '../common.js'
import { printJson, printLine } from '../output.js'
import { registerKeyringCommands } from './keys.js'

/** How long a clean stop may take before the process exits anyway. */
const STOP_TIMEOUT_MS = 15_000

export function registerNodeCommands (program: Command): void {
  const key = program.command('key').description('mesh key utilities')
  addJsonOption(
    key.command('gen')
      .description('print a new random mesh key (hex, 32 bytes of entropy)')
  ).action(async (opts: JsonOption) => {
    const meshKey = generateMeshKey()
    if (opts.json === true) await printJson({ key: meshKey })
    else await printLine(meshKey)
  })
  registerKeyringCommands(key)

  addJsonOption(
    program.command('init')
      .description("create DIR with the node's identity and config; print the peer id")
      .requiredOption('--data <dir>', 'data directory to create')
      .requiredOption('--name <name>', 'platform name of this node (letters, digits, "_", "." or "-")')
      .option('--region <region>', 'region label')
  ).action(async (opts: JsonOption & { data: string, name: string, region?: string }) => {
    const result = await initDataDir({ data: opts.data, name: opts.name, ...(opts.region != null ? { region: opts.region } : {}) })
    if (opts.json === true) {
      await printJson({ peerId: result.peerId, name: result.name, region: result.region ?? null, data: result.data })
    } else {
      await printLine(result.peerId)
    }
  })

  addJsonOption(
    program.command('start')
      .description('run the node in the foreground until SIGINT/SIGTERM')
      .requiredOption('--data <dir>', 'data directory (created with "syncmesh init")')
      .option('--key <key>', 'mesh key (default: $SYNCMESH_KEY, else the current key of DIR/keyring.json, else DIR/mesh.key); with a keyring it must be one of its keys')
      .option('--listen <multiaddr>', `listen address, repeatable (default: config, else ${DEFAULT_LISTEN})`, collect)
      .option('--announce <multiaddr>', 'address to announce to other nodes, repeatable', collect)
      .option('--bootstrap <multiaddr>', 'peer to dial at start, repeatable', collect)
      .option('--api <host:port>', `HTTP API address (default: config, else ${DEFAULT_API}; port 0 picks a free port)`)
      .option('--mdns', 'discover peers on the LAN with mDNS (default: config, else off)')
      .option('--target-peers <n>', 'connections to seek through the registry (default: config, else 6; 0 turns discovery off)')
      .option('--max-peers <n>', 'most connections to keep open (default: config, else 16)')
      .option('--transforms <dir>', 'directory rule transform modules are loaded from (default: DIR/transforms)')
      .option('--admin <peer-id>', 'peer allowed to change the registry, repeatable (default: config "admins"; none = every node)', collect)
      .option('--config <file>', 'read the config from FILE instead of DIR/config.json')
      .option('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent (default: config "logLevel", else $SYNCMESH_LOG_LEVEL, else info)')
      .option('--log-format <format>', 'json (one JSON object per line) or pretty (human-readable) (default: config "logFormat", else json)')
      .option('--api-token-file <file>', 'read the full API token from FILE instead of DIR/api-tokens.json (kept by the node across restarts)')
      .option('--metrics <host:port>', 'also serve GET /metrics on this address WITHOUT a token (for a scraper on a trusted network)')
      .option('--max-clock-ahead-ms <ms>', `refuse entries stamped further ahead of this node's clock (default: config "maxClockAheadMs", else 60000)`)
      .option('--streams', 'EXPERIMENTAL, not for production: carry rules by rule streams (protocols/sync/streams.md); every node of the mesh needs it (default: config "streams", else $SYNCMESH_STREAMS, else off)')
      .option('--relay <policy>', 'with --streams: the rule streams this node stores and forwards, "all" (every one, readable or not) or "audience" (only those it can read) (default: config "relay", else all)')
      .option('--webhook-allow <host>', 'host, host:port, address, address range or "*" (public addresses) this node may POST rule webhooks to, repeatable (default: config "webhooks.allow"; none = no webhooks)', collect)
  ).action(async (opts: StartOptions) => {
    await runStart(opts)
  })
}

interface StartOptions extends JsonOption {
  data: string
  key?: string
  listen?: string[]
  announce?: string[]
  bootstrap?: string[]
  api?: string
  mdns?: boolean
  targetPeers?: string
  maxPeers?: string
  transforms?: string
  admin?: string[]
  apiTokenFile?: string
  metrics?: string
  config?: string
  logLevel?: string
  logFormat?: string
  maxClockAheadMs?: string
  streams?: boolean
  relay?: string
  webhookAllow?: string[]
}

function parseCount (text: string | undefined, flag: string, min: number): number | undefined {
  if (text === undefined) return undefined
  const n = Number(text)
  if (!Number.isInteger(n) || n < min || n > 10_000) throw new UsageError(`${flag} must be an integer from ${min} to 10000, got "${text}"`)
  return n
}

/** Logs on stderr: JSON lines (for collectors), or human-readable lines with `pretty`. */
async function createLogger (options: { level?: string, levelFrom: string, format?: string, formatFrom: string }): Promise<Logger> {
  const { pino } = await import('pino')
  const level = options.level ?? 'info'
  if (!Object.hasOwn(pino.levels.values, level) && level !== 'silent') {
    throw new SyncmeshError('INVALID_LOG_LEVEL', `${options.levelFrom} is "${level}"; use one of ${Object.keys(pino.levels.values).join(', ')} or silent`, 400)
  }
  const format = options.format ?? 'json'
  if (format !== 'json' && format !== 'pretty') {
    throw new SyncmeshError('INVALID_LOG_FORMAT', `${options.formatFrom} is "${format}"; use json or pretty`, 400)
  }
  if (format === 'pretty') {
    const { default: pretty } = await import('pino-pretty')
    return pino({ level, base: { pid: process.pid } }, pretty({ destination: 2, sync: true, colorize: process.stderr.isTTY, translateTime: 'SYS:yyyy-mm-dd HH:MM:ss.l', ignore: 'pid,hostname' }))
  }
  return pino({ level, base: { pid: process.pid } }, pino.destination({ dest: 2, sync: true }))
}

/** Turn low-level start failures (libp2p, sockets) into one actionable error. */
function startFailure (err: unknown, listen: string[]): SyncmeshError {
  if (err instanceof SyncmeshError) return err
  const e = err as NodeJS.ErrnoException
  const text = `${e?.code ?? ''} ${e?.message ?? String(err)}`
  if (text.includes('EADDRINUSE')) {
    return new SyncmeshError('LISTEN_FAILED', `cannot listen on ${listen.join(', ')}: address in use; choose another port with --listen (e.g. /ip4/0.0.0.0/tcp/4002; tcp/0 picks a free one)`, 500, { cause: err })
  }
  if (text.includes('EADDRNOTAVAIL') || text.includes('EACCES')) {
    return new SyncmeshError('LISTEN_FAILED', `cannot listen on ${listen.join(', ')}: ${e?.message ?? String(err)}; check the --listen addresses`, 500, { cause: err })
  }
  return new SyncmeshError('START_FAILED', `the node failed to start: ${e?.message ?? String(err)}`, 500, { cause: err })
}

/** Fail before the node starts when the API port is taken (the real bind comes later and is checked again). */
async function checkApiPort (host: string, port: number): Promise<void> {
  if (port === 0) return
  await new Promise<void>((resolve, reject) => {
    const probe = createServer()
    probe.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE') {
        reject(new SyncmeshError('API_PORT_IN_USE', `cannot serve the API on ${host}:${port}: the port is in use; choose another with --api HOST:PORT (port 0 picks a free one)`, 500))
      } else {
        resolve() // other problems are reported by the real bind
      }
    })
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve()))
  })
}

/** What `start` runs with: flags over config.json over defaults, resolved once and checked before anything starts. */
interface StartSettings {
  data: string
  configFile?: string
  config: Awaited<ReturnType<typeof loadConfig>>
  api: { host: string, port: number }
  metrics?: { host: string, port: number }
  key: Awaited<ReturnType<typeof resolveStartKey>>
  listen: string[]
  announce: string[]
  bootstrap: string[]
  targetConnections?: number
  maxConnections?: number
  maxClockAheadMs?: number
  webhookAllow?: string[]
}

function counts (opts: StartOptions): { targetConnections?: number, maxConnections?: number } {
  const targetConnections = parseCount(opts.targetPeers, '--target-peers', 0)
  const maxConnections = parseCount(opts.maxPeers, '--max-peers', 1)
  return { ...(targetConnections !== undefined ? { targetConnections } : {}), ...(maxConnections !== undefined ? { maxConnections } : {}) }
}

/** The flags beat config.json, which beats the defaults; usage problems are reported before anything is touched. */
async function resolveStartSettings (opts: StartOptions): Promise<StartSettings> {
  const data = opts.data
  const apiFromFlag = opts.api != null ? parseHostPort(opts.api, '--api') : undefined
  const metrics = opts.metrics != null ? parseHostPort(opts.metrics, '--metrics') : undefined
  const configFile = opts.config !== undefined ? resolve(opts.config) : undefined
  const config = await loadConfig(data, configFile)
  let api = apiFromFlag
  if (api == null) {
    try {
      api = parseHostPort(config.api ?? DEFAULT_API, 'api')
    } catch {
      throw new SyncmeshError('CONFIG_INVALID', `"api" in ${join(data, 'config.json')} is "${config.api ?? ''}", not HOST:PORT; fix the file or pass --api HOST:PORT`, 500)
    }
  }
  const key = await resolveStartKey({ flag: opts.key, env: process.env.SYNCMESH_KEY, data })
  const list = (flag: string[] | undefined, fromConfig: string[] | undefined, fallback: string[]): string[] => flag != null && flag.length > 0 ? flag : fromConfig ?? fallback
  let maxClockAheadMs: number | undefined
  if (opts.maxClockAheadMs !== undefined) {
    maxClockAheadMs = Number(opts.maxClockAheadMs)
    if (!Number.isInteger(maxClockAheadMs) || maxClockAheadMs < MIN_CLOCK_AHEAD_MS || maxClockAheadMs > MAX_CLOCK_AHEAD_MS) {
      throw new UsageError(`--max-clock-ahead-ms must be an integer from ${MIN_CLOCK_AHEAD_MS} to ${MAX_CLOCK_AHEAD_MS}, got "${opts.maxClockAheadMs}"`)
    }
  }
  const webhookAllow = opts.webhookAllow !== undefined && opts.webhookAllow.length > 0 ? opts.webhookAllow : undefined
  for (const entry of webhookAllow ?? []) {
    try {
      parseAllowEntry(entry)
    } catch (err) {
      throw new UsageError(`--webhook-allow ${(err as Error).message}`)
    }
  }
  return {
    data,
    ...(configFile !== undefined ? { configFile } : {}),
    config,
    api,
    ...(metrics !== undefined ? { metrics } : {}),
    key,
    listen: list(opts.listen, config.listen, [DEFAULT_LISTEN]),
    announce: list(opts.announce, config.announce, []),
    bootstrap: list(opts.bootstrap, config.bootstrap, []),
    ...counts(opts),
    ...(maxClockAheadMs !== undefined ? { maxClockAheadMs } : {}),
    ...(webhookAllow !== undefined ? { webhookAllow } : {})
  }
}

type StartedNode = Awaited<ReturnType<typeof import('../../node/node.js')['createSyncNode']>>

/** Create and start the node (libp2p, the store); a failure says what to change. */
async function startNode (opts: StartOptions, s: StartSettings, logger: Logger): Promise<StartedNode> {
  // loaded lazily: client commands should not pay for libp2p, fastify and prom-client
  const { createSyncNode } = await import('../../node/node.js')
  let node: StartedNode
  try {
    node = await createSyncNode({
      dataDir: s.data,
      ...(s.configFile !== undefined ? { configFile: s.configFile } : {}),
      key: s.key,
      listen: s.listen,
      announce: s.announce,
      bootstrap: s.bootstrap,
      mdns: opts.mdns === true || s.config.mdns === true,
      logger,
      ...(s.targetConnections !== undefined ? { targetConnections: s.targetConnections } : {}),
      ...(s.maxConnections !== undefined ? { maxConnections: s.maxConnections } : {}),
      ...(opts.transforms !== undefined ? { transformsDir: resolve(opts.transforms) } : {}),
      ...(opts.admin !== undefined && opts.admin.length > 0 ? { admins: opts.admin } : {}),
      ...(s.maxClockAheadMs !== undefined ? { maxClockAheadMs: s.maxClockAheadMs } : {}),
      // without the flag the node reads config "streams"
      ...(opts.streams === true ? { streams: true } : {}),
      ...(opts.relay !== undefined ? { relay: relayPolicy(opts.relay) } : {}),
      ...(s.webhookAllow !== undefined ? { webhooks: { allow: s.webhookAllow } } : {})
    })
  } catch (err) {
    throw startFailure(err, s.listen)
  }
  try {
    await node.start()
  } catch (err) {
    await node.stop().catch(() => {})
    throw startFailure(err, s.listen)
  }
  return node
}

/** The HTTP API (tokens kept across restarts) and, with --metrics, the token-free metrics listener. */
async function startApis (node: StartedNode, opts: StartOptions, s: StartSettings, logger: Logger): Promise<{ server: ApiServer, metricsServer?: MetricsServer }> {
  const { startApiServer } = await import('../../api/server.js')
  const data = s.data
  // kept in DIR/api-tokens.json across restarts, so that scrapers and remote clients keep working
  const tokens = await loadTokens(data, opts.apiTokenFile !== undefined ? { fullTokenFile: resolve(opts.apiTokenFile) } : {})
  let apiUrl = ''
  const server = await startApiServer(node, {
    host: s.api.host,
    port: s.api.port,
    token: tokens.full,
    readOnlyToken: tokens.readOnly,
    logger,
    rotateToken: async (kind) => {
      if (kind === 'full' && opts.apiTokenFile !== undefined) {
        throw new SyncmeshError('API_TOKEN_FROM_FILE', `the full API token comes from ${opts.apiTokenFile}; put a new token in that file and restart the node`, 409)
      }
      const next = await rotateToken(data, kind)
      if (kind === 'full') await writeApiFile(data, { url: apiUrl, token: next.full })
      return next
    }
  })
  apiUrl = server.url
  await writeApiFile(data, { url: server.url, token: tokens.full })
  if (s.metrics === undefined) return { server }
  const { startMetricsServer } = await import('../../api/metrics-server.js')
  const metricsServer = await startMetricsServer(node, s.metrics.host, s.metrics.port)
  logger.info({ url: metricsServer.url }, `serving metrics without a token on ${metricsServer.url}`)
  return { server, metricsServer }
}

/** Resolves once SIGINT or SIGTERM has stopped everything in order; a second signal exits at once. */
function stopOnSignals (logger: Logger, stopAll: () => Promise<void>): Promise<void> {
  return new Promise<void>((resolve) => {
    let stopping = false
    const stop = (signal: NodeJS.Signals): void => {
      if (stopping) {
        process.stderr.write(`error [INTERRUPTED]: ${signal} again while stopping; exiting without a clean stop\n`)
        process.exit(1)
      }
      stopping = true
      logger.info({ signal }, 'stopping')
      const timer = setTimeout(() => {
        process.stderr.write(`error [STOP_TIMEOUT]: the node did not stop within ${STOP_TIMEOUT_MS / 1000}s; exiting anyway\n`)
        process.exit(1)
      }, STOP_TIMEOUT_MS)
      timer.unref()
      void stopAll().then(() => {
        clearTimeout(timer)
        logger.info('stopped')
        resolve()
      })
    }
    process.on('SIGINT', stop)
    process.on('SIGTERM', stop)
  })
}

async function printReady (node: StartedNode, opts: StartOptions, apiUrl: string, data: string): Promise<void> {
  const multiaddrs = node.getMultiaddrs()
  if (opts.json === true) {
    await printJson({ event: 'ready', peerId: node.peerId, multiaddrs, api: apiUrl })
    return
  }
  await printLine(`syncmesh node "${node.name}"${node.region != null ? ` (region ${node.region})` : ''} is running`)
  await printLine(`peer id: ${node.peerId}`)
  await printLine('listening on:')
  for (const ma of multiaddrs) await printLine(`  ${ma}`)
  if (multiaddrs.length === 0) await printLine('  (no addresses)')
  await printLine(`API: ${apiUrl} (token in ${join(data, API_FILE)})`)
  await printLine('press Ctrl-C to stop')
}

async function runStart (opts: StartOptions): Promise<void> {
  tuneV8()
  const s = await resolveStartSettings(opts)
  const data = s.data
  await checkApiPort(s.api.host, s.api.port)
  const logger = await createLogger({
    level: opts.logLevel ?? s.config.logLevel ?? process.env.SYNCMESH_LOG_LEVEL,
    levelFrom: opts.logLevel !== undefined ? '--log-level' : s.config.logLevel !== undefined ? 'config "logLevel"' : '$SYNCMESH_LOG_LEVEL',
    format: opts.logFormat ?? s.config.logFormat,
    formatFrom: opts.logFormat !== undefined ? '--log-format' : 'config "logFormat"'
  })
  const node = await startNode(opts, s, logger)
  // the application database connectors in DIR/connectors.json (docs/connectors.md); one that fails is reported in its status
  const connectors = await (await import('../../connectors/manager.js')).startConnectors(node, data, logger)

  // SIGHUP: re-read DIR/keyring.json (mesh key rotation without a restart); the node keeps running
  process.on('SIGHUP', () => {
    node.reloadKeys().then(
      (keys) => logger.info({ keys }, `reloaded the mesh keys on SIGHUP: proving ${keys.current}, accepting ${keys.accepted.join(', ')}`),
      (err: unknown) => logger.error({ err: (err as Error).message }, `could not reload the mesh keys on SIGHUP; the keys are unchanged: ${(err as Error).message}`)
    )
  })

  let apis: Awaited<ReturnType<typeof startApis>>
  try {
    apis = await startApis(node, opts, s, logger)
  } catch (err) {
    await node.stop().catch(() => {})
    throw err
  }
  const stopped = stopOnSignals(logger, async () => {
    await apis.server.close().catch((err: unknown) => logger.warn({ err }, 'closing the API failed'))
    await apis.metricsServer?.close().catch(() => {})
    await rm(join(data, API_FILE), { force: true }).catch(() => {})
    await connectors.stop().catch((err: unknown) => logger.error({ err }, 'stopping the connectors failed'))
    await node.stop().catch((err: unknown) => logger.error({ err }, 'stopping the node failed'))
  })
  await printReady(node, opts, apis.server.url, data)
  await stopped
}

/** `--relay`: "all" or "audience". */
function relayPolicy (value: string): 'all' | 'audience' {
  if (value === 'all' || value === 'audience') return value
  throw new ConfigError(`--relay must be "all" or "audience", got "${value.slice(0, 40)}"`, 'CONFIG_INVALID')
}
