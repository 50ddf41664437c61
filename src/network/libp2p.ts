/**
 * The libp2p host of a node: TCP, Noise, yamux, identify, ping, optional mDNS.
 */
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import type { Libp2p, PeerDiscovery, PrivateKey } from '@libp2p/interface'
import { mdns } from '@libp2p/mdns'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { createLibp2p } from 'libp2p'
import { DIAL_TIMEOUT_MS } from './constants.js'

export interface HostOptions {
  privateKey: PrivateKey
  listen: string[]
  announce?: string[]
  mdns?: boolean
  maxConnections?: number
  /** Refuse peers (e.g. those that recently failed authentication). */
  isDenied?: (peerId: string) => boolean
}

export type Host = Libp2p<{ identify: ReturnType<ReturnType<typeof identify>>, ping: ReturnType<ReturnType<typeof ping>> }>

export async function createHost (options: HostOptions): Promise<Host> {
  const peerDiscovery: Array<(components: any) => PeerDiscovery> = []
  if (options.mdns === true) peerDiscovery.push(mdns())
  const denied = options.isDenied ?? (() => false)
  return await createLibp2p({
    privateKey: options.privateKey,
    addresses: {
      listen: options.listen,
      ...(options.announce !== undefined && options.announce.length > 0 ? { announce: options.announce } : {})
    },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    peerDiscovery,
    services: {
      identify: identify(),
      ping: ping()
    },
    // libp2p pings every connection every 10 s and by default aborts it when a ping takes longer
    // than its adaptive timeout (≥ 5 s). A ping waits behind the batches already on the connection
    // and for a busy receiver, so a large sync had healthy links closed under it ("The operation was
    // aborted due to timeout"; 30 nodes on 2 cores lost ~80 links in 20 s), each costing a reconnect
    // and a re-sync. A link that delivers data is alive: the sync session drops a peer, and its
    // connection, when it sends nothing for SILENT_PEER_MS (it restates its vector every 15 s).
    connectionMonitor: { abortConnectionOnPingFailure: false },
    connectionManager: {
      maxConnections: options.maxConnections ?? 64,
      // quick reconnects (restarts, tests on loopback) must not be throttled
      inboundConnectionThreshold: 100,
      dialTimeout: DIAL_TIMEOUT_MS
    },
    connectionGater: {
      denyInboundEncryptedConnection: (peer) => denied(peer.toString()),
      denyOutboundEncryptedConnection: (peer) => denied(peer.toString())
    },
    start: false
  }) as unknown as Host
}
