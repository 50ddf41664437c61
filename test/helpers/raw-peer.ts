/**
 * A bare libp2p host that proves the mesh key and speaks the sync protocol
 * by hand (real TCP, Noise, yamux): tests use it to play a peer that sends
 * exactly the frames they script, and to see exactly what a node sends.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Connection, PrivateKey } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { pino } from 'pino'
import { VersionVector } from '../../src/log/vector.js'
import { MeshAuth } from '../../src/network/auth/auth.js'
import { SYNC_PROTOCOL, SYNC_PROTOCOL_STREAMS, SYNC_PROTOCOL_VERSION } from '../../src/network/constants.js'
import { FramedStream } from '../../src/network/frames.js'
import { createHost } from '../../src/network/libp2p.js'
import type { Host } from '../../src/network/libp2p.js'
import { decodeFrame, encodeHello } from '../../src/network/sync/codec.js'
import type { SyncMessage } from '../../src/network/sync/codec.js'

/**
 * Open a session in whichever sync protocol the node speaks (with or without
 * rule streams: the frames are the same), for tests whose subject is the same
 * in both designs.
 */
export const EITHER_SYNC_PROTOCOL = [SYNC_PROTOCOL, SYNC_PROTOCOL_STREAMS]

export interface RawSession {
  framed: FramedStream
  /** Every frame the node sent after its Hello, decoded, with when it arrived (Date.now()). */
  received: Array<{ at: number, msg: SyncMessage }>
}

export class RawPeer {
  host!: Host
  private auth!: MeshAuth
  private readonly authed = new Map<string, () => void>()
  private readonly key: string
  private readonly localAddress?: string

  /** `localAddress`: dial from this loopback address (e.g. 127.0.0.2), as a peer on another host would. */
  constructor (key: string, options: { localAddress?: string } = {}) {
    this.key = key
    this.localAddress = options.localAddress
  }

  /** Start with a new identity, or with `identity` (a test playing a member whose key it holds). */
  async start (identity?: PrivateKey): Promise<void> {
    const privateKey = identity ?? await generateKeyPair('Ed25519')
    let auth: MeshAuth | undefined
    this.host = await createHost({ privateKey, listen: ['/ip4/127.0.0.1/tcp/0'], localAddress: this.localAddress, isAuthenticated: (c) => auth?.isAuthenticated(c) ?? false })
    this.auth = auth = new MeshAuth(this.host, {
      keys: [this.key],
      logger: pino({ level: 'silent' }),
      onAuthenticated: (c: Connection) => this.authed.get(c.remotePeer.toString())?.()
    })
    await this.auth.start()
    await this.host.start()
  }

  get peerId (): string {
    return this.host.peerId.toString()
  }

  /**
   * Connect (a fresh connection), authenticate, open a sync stream and
   * exchange hellos: ours states `vector` and grants `credit` batches. What
   * the node sends from then on is collected in `received`. `protocol`: the
   * sync protocol id to open (SYNC_PROTOCOL_STREAMS for a node with rule streams),
   * or a list of them to open the first the node speaks (EITHER_SYNC_PROTOCOL).
   */
  async session (target: string, options: { vector?: VersionVector, credit?: number, name?: string, protocol?: string | string[] } = {}): Promise<RawSession> {
    const peer = target.split('/p2p/')[1]
    await this.host.hangUp(multiaddr(target)).catch(() => {})
    let timer: ReturnType<typeof setTimeout> | undefined
    const ready = new Promise<void>((resolve, reject) => {
      this.authed.set(peer, resolve)
      timer = setTimeout(() => reject(new Error('not authenticated in time')), 5000)
    })
    ready.catch(() => {}) // awaited below unless the dial fails first (a refused peer's)
    let conn: Connection
    try {
      conn = await this.host.dial(multiaddr(target), { signal: AbortSignal.timeout(5000) })
      await ready
    } finally {
      clearTimeout(timer)
    }
    const stream = await conn.newStream(options.protocol ?? SYNC_PROTOCOL)
    const framed = new FramedStream(stream, 4 * 1024 * 1024)
    framed.sendNow(encodeHello(options.name ?? 'raw', options.vector ?? new VersionVector(), options.credit ?? 8, SYNC_PROTOCOL_VERSION))
    const frames = framed.frames()
    const first = await frames.next()
    const hello = decodeFrame(first.value as Uint8Array, { version: SYNC_PROTOCOL_VERSION })
    if (hello.type !== 'hello') throw new Error(`expected hello, got ${hello.type}`)
    const received: RawSession['received'] = []
    void (async () => {
      try {
        for await (const bytes of frames) received.push({ at: Date.now(), msg: decodeFrame(bytes, { version: SYNC_PROTOCOL_VERSION }) })
      } catch {}
    })()
    return { framed, received }
  }

  async stop (): Promise<void> {
    await this.auth.stop()
    await this.host.stop()
  }
}
