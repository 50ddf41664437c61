/**
 * Attackers at the door of a real node, over real TCP on loopback. Each uses
 * its own loopback source addresses (127.0.0.0/8 is all loopback on Linux),
 * as attackers on other hosts would: idle sockets that never speak, and
 * keyless libp2p hosts that open Noise connections and never authenticate.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { createConnection } from 'node:net'
import type { Socket } from 'node:net'
import { createHost } from '../../src/network/libp2p.js'
import type { Host } from '../../src/network/libp2p.js'

/** `count` loopback addresses 127.<b>.<c>.<d> from `first` on (e.g. '127.0.0.2'). */
export function loopbackAddresses (first: string, count: number): string[] {
  const [, b, c, d] = first.split('.').map(Number)
  const start = (b << 16) + (c << 8) + d
  return Array.from({ length: count }, (_, i) => {
    const n = start + i
    return `127.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`
  })
}

/** TCP host and port of a /ip4/…/tcp/… multiaddr. */
export function tcpTarget (ma: string): { host: string, port: number } {
  const [, , host, , port] = ma.split('/')
  return { host, port: Number(port) }
}

/** Idle sockets that never send a byte, `perAddress` from each address, reopened `reopenMs` after the node closes one. */
export class IdleSockets {
  private readonly sockets = new Set<Socket>()
  private running = false
  opened = 0

  constructor (private readonly target: string, private readonly addresses: string[], private readonly perAddress: number, private readonly reopenMs = 500) {}

  start (): void {
    this.running = true
    for (const addr of this.addresses) for (let i = 0; i < this.perAddress; i++) this.open(addr)
  }

  get open_ (): number {
    return this.sockets.size
  }

  private open (localAddress: string): void {
    if (!this.running) return
    const { host, port } = tcpTarget(this.target)
    const sock = createConnection({ host, port, localAddress })
    this.opened++
    this.sockets.add(sock)
    sock.on('error', () => {})
    sock.on('close', () => {
      this.sockets.delete(sock)
      if (this.running) setTimeout(() => this.open(localAddress), this.reopenMs).unref()
    })
  }

  stop (): void {
    this.running = false
    for (const s of this.sockets) s.destroy()
    this.sockets.clear()
  }
}

/** Keyless libp2p hosts, one per address, each keeping `concurrent` Noise connections to the node that never authenticate. */
export class NoiseFlood {
  private readonly hosts: Host[] = []
  private running = false
  connections = 0

  constructor (private readonly target: string, private readonly addresses: string[], private readonly concurrent: number) {}

  async start (): Promise<void> {
    this.running = true
    for (const localAddress of this.addresses) {
      const host = await createHost({ privateKey: await generateKeyPair('Ed25519'), listen: [], localAddress })
      await host.start()
      this.hosts.push(host)
      for (let i = 0; i < this.concurrent; i++) void this.loop(host)
    }
  }

  private async loop (host: Host): Promise<void> {
    while (this.running) {
      try {
        const conn = await host.dial(multiaddr(this.target), { force: true, signal: AbortSignal.timeout(5000) })
        this.connections++
        while (this.running && conn.status === 'open') await new Promise(resolve => setTimeout(resolve, 200))
      } catch {}
      await new Promise(resolve => setTimeout(resolve, 100))
    }
  }

  async stop (): Promise<void> {
    this.running = false
    for (const h of this.hosts.splice(0)) await Promise.resolve(h.stop()).catch(() => {})
  }
}
