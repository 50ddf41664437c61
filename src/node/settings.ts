/**
 * Every tunable of a node, resolved once at start: the library's options
 * (or the CLI's flags) over config.json over the defaults below. The rest of
 * the node reads `NodeSettings`, never the three sources.
 */
import { ConfigError } from '../core/errors.js'
import { DEFAULT_MAX_CLOCK_AHEAD_MS } from '../core/hlc.js'
import type { SyncNodeOptions } from '../core/types.js'
import { DEFAULT_MAX_CONNECTIONS, DEFAULT_TARGET_CONNECTIONS } from '../network/constants.js'
import type { NodeConfig } from './config.js'
import { DEFAULT_LISTEN } from './constants.js'

export interface NodeSettings {
  /** Addresses to listen on. Default: /ip4/0.0.0.0/tcp/4001. */
  listen: string[]
  /** Addresses to announce instead of the listening ones (empty: the listening ones). */
  announce: string[]
  /** Peers dialled at start. Default: none. */
  bootstrap: string[]
  /** Find peers on the local network by mDNS. Default: off. */
  mdns: boolean
  /** Connections sought through the registry's addresses. Default: 6. */
  targetConnections: number
  /** Hard cap on open connections. Default: 16. */
  maxConnections: number
  /** Peer ids allowed to change the registry; empty: every node. */
  admins: string[]
  /** Entries stamped further ahead of this node's clock are refused (ms). Default: 60000. */
  maxClockAheadMs: number
  /** EXPERIMENTAL: rules are carried by rule streams (protocols/sync/streams.md). Default: off. */
  streams: boolean
  /** With streams: which rule streams the node carries, every one or only those it can read. Default: all. */
  relay: 'all' | 'audience'
}

/** A list given in the options wins when it is not empty; then config.json's; then the default. */
function list (option: string[] | undefined, config: string[] | undefined, fallback: string[]): string[] {
  if (option !== undefined && option.length > 0) return option
  if (config !== undefined && config.length > 0) return config
  return fallback
}

/**
 * `SYNCMESH_STREAMS` (`1`/`true` or `0`/`false`): whether nodes carry rules
 * by rule streams when neither the option nor the config says, for running
 * a whole deployment, or the test suite, one way or the other.
 */
function streamsFromEnv (): boolean | undefined {
  const v = process.env.SYNCMESH_STREAMS
  if (v === undefined || v === '') return undefined
  if (v === '1' || v === 'true') return true
  if (v === '0' || v === 'false') return false
  throw new ConfigError(`SYNCMESH_STREAMS is "${v.slice(0, 20)}"; set it to 1 (or true) to carry rules by rule streams, 0 (or false) not to, or unset it`, 'CONFIG_INVALID')
}

export function resolveSettings (options: SyncNodeOptions, config: NodeConfig): NodeSettings {
  return {
    listen: list(options.listen, config.listen, [DEFAULT_LISTEN]),
    announce: list(options.announce, config.announce, []),
    bootstrap: list(options.bootstrap, config.bootstrap, []),
    mdns: options.mdns ?? config.mdns ?? false,
    targetConnections: options.targetConnections ?? config.targetConnections ?? DEFAULT_TARGET_CONNECTIONS,
    maxConnections: options.maxConnections ?? config.maxConnections ?? DEFAULT_MAX_CONNECTIONS,
    admins: options.admins ?? config.admins ?? [],
    maxClockAheadMs: options.maxClockAheadMs ?? config.maxClockAheadMs ?? DEFAULT_MAX_CLOCK_AHEAD_MS,
    streams: options.streams ?? config.streams ?? streamsFromEnv() ?? false,
    relay: options.relay ?? config.relay ?? 'all'
  }
}
