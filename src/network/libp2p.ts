/**
 * The libp2p host of a node: TCP, Noise, yamux, identify, ping, optional mDNS.
 *
 * Inbound connections pass the door (src/network/auth/door.ts) before Noise:
 * connections that have not proved the mesh key have their own budget, so
 * libp2p's own limits are set above it and above the connection cap.
 * Identify and ping answer only on connections that have proved the key.
 */
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import type { Connection, Libp2p, PeerDiscovery, PrivateKey, Stream, StreamHandler, StreamHandlerOptions } from '@libp2p/interface'
import { mdns } from '@libp2p/mdns'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { createLibp2p } from 'libp2p'
import { AuthenticationError } from '../core/errors.js'
import { Door } from './auth/door.js'
import { DIAL_TIMEOUT_MS, DOOR_HANDSHAKE_TIMEOUT_MS } from './constants.js'

export interface HostOptions {
  privateKey: PrivateKey
  listen: string[]
  announce?: string[]
  mdns?: boolean
  /** Connections to peers that proved the mesh key (the peer manager enforces it; libp2p's limit is above it). */
  maxConnections?: number
  /** Refuse peers (e.g. those that recently failed authentication). */
  isDenied?: (peerId: string) => boolean
  /** Peer ids the node knows (operator-added, registry platforms): their failures are not held against their address. */
  isKnown?: (peerId: string) => boolean
  /** Whether a connection has proved the mesh key: identify and ping answer only those (none without it). */
  isAuthenticated?: (connection: Connection) => boolean
  /**
   * Admission of inbound connections that have not proved the key. Absent: a
   * door with the default budgets that refuses no address (an address is
   * refused on failures its owner counts: the node passes its own door).
   */
  door?: Door
  /** Dial from this local IP address (multi-homed hosts). */
  localAddress?: string
}

export type Host = Libp2p<{ identify: ReturnType<ReturnType<typeof identify>>, ping: ReturnType<ReturnType<typeof ping>> }>

/**
 * The components a service sees, with a registrar whose handlers run only on
 * connections that have proved the mesh key: a stream on any other is reset.
 */
function authenticatedOnly (components: any, isAuthenticated: (c: Connection) => boolean): any {
  const registrar = components.registrar
  const gated = new Proxy(registrar, {
    get (target, prop) {
      if (prop === 'handle') {
        return async (protocol: string | string[], handler: StreamHandler, options?: StreamHandlerOptions) => {
          return await target.handle(protocol, (stream: Stream, connection: Connection) => {
            if (!isAuthenticated(connection)) {
              stream.abort(new AuthenticationError('prove the mesh key first'))
              return
            }
            return handler(stream, connection)
          }, options)
        }
      }
      const value = target[prop]
      return typeof value === 'function' ? value.bind(target) : value
    }
  })
  return new Proxy(components, {
    get (target, prop) {
      return prop === 'registrar' ? gated : target[prop]
    }
  })
}

export async function createHost (options: HostOptions): Promise<Host> {
  const peerDiscovery: Array<(components: any) => PeerDiscovery> = []
  if (options.mdns === true) peerDiscovery.push(mdns())
  const denied = options.isDenied ?? (() => false)
  const door = options.door ?? new Door({ failureLimit: Infinity })
  const isAuthenticated = options.isAuthenticated ?? (() => false)
  const maxConnections = options.maxConnections ?? 64
  const identifyService = identify({ runOnConnectionOpen: false })
  const pingService = ping()
  return await createLibp2p({
    privateKey: options.privateKey,
    addresses: {
      listen: options.listen,
      ...(options.announce !== undefined && options.announce.length > 0 ? { announce: options.announce } : {})
    },
    transports: [tcp(options.localAddress !== undefined ? { dialOpts: { localAddress: options.localAddress } as any } : {})],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    peerDiscovery,
    services: {
      identify: (components: any) => identifyService(authenticatedOnly(components, isAuthenticated)),
      ping: (components: any) => pingService(authenticatedOnly(components, isAuthenticated))
    },
    // libp2p pings every connection every 10 s and by default aborts it when a ping takes longer
    // than its adaptive timeout (≥ 5 s). A ping waits behind the batches already on the connection
    // and for a busy receiver, so a large sync had healthy links closed under it ("The operation was
    // aborted due to timeout"; 30 nodes on 2 cores lost ~80 links in 20 s), each costing a reconnect
    // and a re-sync. A link that delivers data is alive: the sync session drops a peer, and its
    // connection, when it sends nothing for SILENT_PEER_MS (it restates its vector every 15 s).
    connectionMonitor: { abortConnectionOnPingFailure: false },
    connectionManager: {
      // the cap on connections that proved the key is the peer manager's; connections at the door
      // have their own budget (the door's), and our own dials in flight need room too
      maxConnections: maxConnections * 2 + door.capacity,
      // the door decides which handshakes go on: libp2p's pending limit only backs it up (an
      // evicted connection still counts here until its upgrade has ended)
      maxIncomingPendingConnections: door.capacity * 2,
      inboundUpgradeTimeout: DOOR_HANDSHAKE_TIMEOUT_MS,
      // quick reconnects (restarts, tests on loopback) must not be throttled
      inboundConnectionThreshold: 100,
      dialTimeout: DIAL_TIMEOUT_MS
    },
    connectionGater: {
      denyInboundConnection: (maConn) => !door.admit(maConn),
      denyInboundEncryptedConnection: (peer, maConn) => {
        if (options.isKnown?.(peer.toString()) === true) door.knownPeer(maConn)
        if (!denied(peer.toString())) return false
        door.identityRefused(maConn)
        return true
      },
      denyOutboundEncryptedConnection: (peer) => denied(peer.toString())
    },
    start: false
  }) as unknown as Host
}
