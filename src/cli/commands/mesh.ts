/**
 * syncmesh peer … | platform … (rule …: ./rules.ts)
 */
import type { Command } from 'commander'
import { addClientOptions, addJsonOption, collect, connect } from '../common.js'
import type { ClientOptions, JsonOption } from '../common.js'
import { formatAgo, printJson, printLine, table } from '../output.js'

type Opts = ClientOptions & JsonOption

function clientCommand (parent: Command, spec: string, description: string): Command {
  return addClientOptions(addJsonOption(parent.command(spec).description(description)))
}

function yesNo (value: boolean): string {
  return value ? 'yes' : 'no'
}

export { describeRule } from './rules.js'

export function registerMeshCommands (program: Command): void {
  registerPeerCommands(program)
  registerPlatformCommands(program)
}

/** syncmesh peer add | ls | rm */
function registerPeerCommands (program: Command): void {
  const peer = program.command('peer').description('peers this node dials and keeps')

  clientCommand(peer, 'add', 'dial a peer at this address, prove the mesh key over it, and keep it (persisted) if that worked')
    .argument('<multiaddr>', 'e.g. /ip4/10.0.0.2/tcp/4001/p2p/12D3KooW…')
    .option('--save', 'keep the address even when the dial or the key proof fails (it is redialled in the background)')
    .action(async (multiaddr: string, opts: Opts & { save?: boolean }) => {
      const client = await connect(opts)
      const info = await client.addPeer(multiaddr, { save: opts.save === true })
      if (opts.json === true) {
        await printJson(info)
      } else if (info.proved === false) {
        await printLine(`saved peer ${info.peerId} at ${multiaddr}, but it is not connected over that address (${info.lastError ?? 'no proof of the mesh key'}); it will be redialled`)
      } else {
        await printLine(`added peer ${info.peerId}: connected over ${multiaddr} and proved the mesh key`)
      }
    })

  clientCommand(peer, 'ls', 'known peers: id, addresses, connected, last seen')
    .action(async (opts: Opts) => {
      const client = await connect(opts)
      const peers = await client.listPeers()
      if (opts.json === true) {
        await printJson(peers)
        return
      }
      if (peers.length === 0) {
        await printLine('no peers; add one with "syncmesh peer add MULTIADDR"')
        return
      }
      await printLine(table(
        ['PEER', 'CONNECTED', 'AUTH', 'PERSISTED', 'LAST SEEN', 'LAST TRAFFIC', 'ADDRESSES'],
        peers.map((p) => [p.peerId, yesNo(p.connected), yesNo(p.authenticated), yesNo(p.persisted), formatAgo(p.lastSeen), formatAgo(p.lastTraffic), p.addrs.join(' ')])
      ))
    })

  clientCommand(peer, 'rm', 'forget a peer (and stop redialling it)')
    .argument('<peer-id>')
    .action(async (peerId: string, opts: Opts) => {
      const client = await connect(opts)
      const result = await client.removePeer(peerId)
      if (opts.json === true) await printJson(result)
      else await printLine(`removed peer ${peerId}`)
    })
}

/** syncmesh platform ls | add | rm | revoke */
function registerPlatformCommands (program: Command): void {
  const platform = program.command('platform').description("the replicated registry's platforms")

  clientCommand(platform, 'ls', "the replicated registry's platforms")
    .action(async (opts: Opts) => {
      const client = await connect(opts)
      const platforms = await client.listPlatforms()
      if (opts.json === true) {
        await printJson(platforms)
        return
      }
      if (platforms.length === 0) {
        await printLine('no platforms')
        return
      }
      await printLine(table(
        ['NAME', 'PEER', 'REGION', 'TAGS', 'ADDRESSES'],
        platforms.map((p) => [p.name, p.peerId, p.region ?? '-', (p.tags ?? []).join(',') || '-', p.addrs.join(' ') || '-'])
      ))
    })

  clientCommand(platform, 'add', 'register a platform in the replicated registry')
    .argument('<name>')
    .requiredOption('--peer <peer-id>', 'peer id of the node serving this platform')
    .option('--region <region>', 'region label')
    .option('--addr <multiaddr>', 'address other nodes can dial, repeatable', collect)
    .option('--tag <tag>', 'extra label rules can target, repeatable', collect)
    .action(async (name: string, opts: Opts & { peer: string, region?: string, addr?: string[], tag?: string[] }) => {
      const client = await connect(opts)
      const added = await client.addPlatform({
        name,
        peerId: opts.peer,
        addrs: opts.addr ?? [],
        ...(opts.region != null ? { region: opts.region } : {}),
        ...(opts.tag != null ? { tags: opts.tag } : {})
      })
      if (opts.json === true) await printJson(added)
      else await printLine(`added platform ${added.name} (peer ${added.peerId})`)
    })

  clientCommand(platform, 'rm', 'remove a platform from the registry')
    .argument('<name>')
    .action(async (name: string, opts: Opts) => {
      const client = await connect(opts)
      const result = await client.removePlatform(name)
      if (opts.json === true) await printJson(result)
      else await printLine(`removed platform ${name}`)
    })

  clientCommand(platform, 'revoke', 'revoke a platform: every node refuses its connections and its new entries')
    .argument('<name>')
    .option('--purge', 'also remove what it wrote (its log)')
    .action(async (name: string, opts: Opts & { purge?: boolean }) => {
      const client = await connect(opts)
      const result = await client.revokePlatform(name, { purge: opts.purge === true })
      if (opts.json === true) await printJson(result)
      else await printLine(`revoked platform ${name} (peer ${result.peerId}); its entries after seq ${result.revokedAfter ?? 0} are refused everywhere`)
    })
}
