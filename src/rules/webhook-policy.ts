/**
 * Where a node may POST webhooks: decided by the node's own configuration
 * (`webhooks.allow` in config.json, or `--webhook-allow`), never by the
 * replicated rule, so a rule written by any member cannot aim a node at its
 * own network.
 *
 * An allow entry is one of:
 *   hooks.example.com        that host name, any port
 *   hooks.example.com:8443   that host name, that port
 *   10.0.0.5  10.0.0.5:8080  [fd00::5]:8080   that address (and port)
 *   10.0.0.0/24  fd00::/64   any address in that range
 *   *                        any host name or address, as long as every address it resolves to is public
 *
 * A URL is delivered to when its host (and port) matches an entry, and every
 * address its host resolves to is public, or is itself allowed by an address
 * or range entry. Not public: loopback, private (RFC 1918, unique local),
 * link-local, shared (100.64/10), unspecified, multicast, reserved,
 * documentation ranges, and IPv4-mapped, NAT64 and 6to4 IPv6 addresses.
 * The delivery connects to the address that was checked (no second DNS
 * lookup, so a name cannot be re-pointed between check and connect).
 */
import { BlockList, isIP } from 'node:net'

export interface AllowEntry {
  /** What the operator wrote. */
  text: string
  kind: 'any' | 'name' | 'address' | 'range'
  /** Lower-case host name or canonical address. */
  host?: string
  port?: number
  range?: BlockList
  /** The range's family. */
  family?: 'ipv4' | 'ipv6'
}

/** Whether `address` is in a range entry (of its own family only). */
function inRange (e: AllowEntry, address: string): boolean {
  const fam = family(address)
  return e.kind === 'range' && e.family === fam && e.range?.check(address, fam) === true
}

// one list per family: a BlockList also checks an IPv4 address against IPv6 rules (as ::ffff:a.b.c.d)
const NOT_PUBLIC_V4 = new BlockList()
const NOT_PUBLIC_V6 = new BlockList()
for (const [net, bits] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.88.99.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['198.51.100.0', 24],
  ['203.0.113.0', 24], ['224.0.0.0', 4], ['240.0.0.0', 4]
] as const) NOT_PUBLIC_V4.addSubnet(net, bits, 'ipv4')
for (const [net, bits] of [
  ['::', 128], ['::1', 128], ['::ffff:0:0', 96], ['64:ff9b::', 96], ['64:ff9b:1::', 48], ['100::', 64], ['2001::', 23],
  ['2001:db8::', 32], ['2002::', 16], ['fc00::', 7], ['fe80::', 10], ['fec0::', 10], ['ff00::', 8]
] as const) NOT_PUBLIC_V6.addSubnet(net, bits, 'ipv6')

function family (address: string): 'ipv4' | 'ipv6' {
  return isIP(address) === 6 ? 'ipv6' : 'ipv4'
}

/** Whether an IP address is reachable on the public internet (see the list above). */
export function isPublicAddress (address: string): boolean {
  const version = isIP(address)
  if (version === 0) return false
  return version === 4 ? !NOT_PUBLIC_V4.check(address, 'ipv4') : !NOT_PUBLIC_V6.check(address, 'ipv6')
}

/** A canonical form of an IP address (as the URL parser writes it), or undefined when `text` is not one. */
function canonicalAddress (text: string): string | undefined {
  const bare = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text
  if (isIP(bare) === 0) return undefined
  try {
    const host = new URL(`http://${isIP(bare) === 6 ? `[${bare}]` : bare}/`).hostname
    return host.startsWith('[') ? host.slice(1, -1) : host
  } catch {
    return undefined
  }
}

function parsePort (text: string, entry: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535) throw new Error(`"${entry}": the port must be a number from 1 to 65535`)
  return Number(text)
}

const HOST_NAME = /^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$/

/** Parse one allow entry; throws Error with a message naming the entry. */
export function parseAllowEntry (input: string): AllowEntry {
  const text = input.trim()
  if (text === '*') return { text, kind: 'any' }
  if (text.includes('://')) {
    let host = ''
    try {
      host = new URL(text).host
    } catch {}
    throw new Error(`"${input}" is a URL: allow its host${host !== '' ? ` ("${host}")` : ''}, e.g. "hooks.example.com" or "hooks.example.com:8443"`)
  }
  const slash = text.indexOf('/')
  if (slash !== -1) {
    const address = canonicalAddress(text.slice(0, slash))
    const bitsText = text.slice(slash + 1)
    if (address === undefined || !/^\d{1,3}$/.test(bitsText)) throw new Error(`"${input}" is not an address range like 10.0.0.0/24 or fd00::/64`)
    const bits = Number(bitsText)
    const fam = family(address)
    if (bits > (fam === 'ipv4' ? 32 : 128)) throw new Error(`"${input}": a /${bits} range is longer than the address`)
    const range = new BlockList()
    range.addSubnet(address, bits, fam)
    return { text, kind: 'range', range, family: fam }
  }
  // [v6]:port, [v6], v6, v4:port, v4, name:port, name
  let host = text
  let port: number | undefined
  const bracket = /^\[([^\]]+)\](?::(.*))?$/.exec(text)
  if (bracket !== null) {
    host = bracket[1]
    if (bracket[2] !== undefined) port = parsePort(bracket[2], input)
    if (isIP(host) !== 6) throw new Error(`"${input}" is not an IPv6 address in brackets`)
  } else if (isIP(text) === 0) {
    const colon = text.lastIndexOf(':')
    if (colon !== -1) {
      host = text.slice(0, colon)
      port = parsePort(text.slice(colon + 1), input)
    }
  }
  const address = canonicalAddress(host)
  if (address !== undefined) return { text, kind: 'address', host: address, ...(port !== undefined ? { port } : {}) }
  const name = host.toLowerCase().replace(/\.$/, '')
  if (!HOST_NAME.test(name)) throw new Error(`"${input}" is not a host name, address, host:port, address range or "*"`)
  return { text, kind: 'name', host: name, ...(port !== undefined ? { port } : {}) }
}

export interface Target {
  /** The URL's host: a lower-case name, or a canonical address without brackets. */
  host: string
  port: number
  isAddress: boolean
}

/** The host and port a webhook URL connects to. */
export function targetOf (url: URL): Target {
  const raw = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname
  const isAddress = isIP(raw) !== 0
  const host = isAddress ? raw : raw.toLowerCase().replace(/\.$/, '')
  const port = url.port !== '' ? Number(url.port) : url.protocol === 'https:' ? 443 : 80
  return { host, port, isAddress }
}

export class WebhookPolicy {
  readonly entries: AllowEntry[]

  constructor (allow: string[] = []) {
    this.entries = allow.map(parseAllowEntry)
  }

  /** Why this node will not POST to `url` whatever it resolves to, or undefined when its host is allowed. */
  refuseHost (url: URL): string | undefined {
    const t = targetOf(url)
    for (const e of this.entries) {
      if (e.kind === 'any') return undefined
      if ((e.kind === 'name' || e.kind === 'address') && e.host === t.host && (e.port === undefined || e.port === t.port)) return undefined
      if (t.isAddress && inRange(e, t.host)) return undefined
    }
    if (this.entries.length === 0) return `this node allows no webhook hosts (add "${hostEntry(t)}" to "webhooks.allow" in its config.json, or start it with --webhook-allow ${hostEntry(t)})`
    return `${hostEntry(t)} is not in this node's "webhooks.allow" (${this.entries.map(e => e.text).join(', ')})`
  }

  /** Why this node will not connect to `address` (one the URL's host resolved to): "a loopback … address, …", or undefined. */
  refuseAddress (address: string, port: number): string | undefined {
    if (isPublicAddress(address)) return undefined
    const canonical = canonicalAddress(address) ?? address
    for (const e of this.entries) {
      if (e.kind === 'address' && e.host === canonical && (e.port === undefined || e.port === port)) return undefined
      if (inRange(e, canonical)) return undefined
    }
    return `a loopback, private, link-local or reserved address, and not in this node's "webhooks.allow" (add "${canonical.includes(':') ? `[${canonical}]` : canonical}:${port}" there to allow it)`
  }
}

function hostEntry (t: Target): string {
  const host = t.host.includes(':') ? `[${t.host}]` : t.host
  return `${host}:${t.port}`
}
