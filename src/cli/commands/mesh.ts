/**
 * syncmesh peer … | platform … | rule …
 */
import { Option } from 'commander'
import type { Command } from 'commander'
import type { Rule, RuleMode, RuleSpec } from '../../node/types.js'
import { addClientOptions, addJsonOption, collect, connect, parseEndpoint, parseJsonObjectArg, parseList, parseRename } from '../common.js'
import type { ClientOptions, JsonOption } from '../common.js'
import { formatAgo, printJson, printLine, table } from '../output.js'

type Opts = ClientOptions & JsonOption

function clientCommand (parent: Command, spec: string, description: string): Command {
  return addClientOptions(addJsonOption(parent.command(spec).description(description)))
}

function yesNo (value: boolean): string {
  return value ? 'yes' : 'no'
}

export function describeRule (rule: Pick<Rule, 'where' | 'include' | 'exclude' | 'rename' | 'key'>): string {
  const parts: string[] = []
  if (rule.where != null) parts.push(`where ${JSON.stringify(rule.where)}`)
  if (rule.include != null) parts.push(`include ${rule.include.join(',')}`)
  if (rule.exclude != null) parts.push(`exclude ${rule.exclude.join(',')}`)
  if (rule.rename != null) parts.push(`rename ${Object.entries(rule.rename).map(([a, b]) => `${a}=${b}`).join(',')}`)
  if (rule.key != null) parts.push(`key ${rule.key}`)
  return parts.join('; ')
}

export function registerMeshCommands (program: Command): void {
  // -- peers --------------------------------------------------------------
  const peer = program.command('peer').description('peers this node dials and keeps')

  clientCommand(peer, 'add', 'dial a peer now and keep it (persisted)')
    .argument('<multiaddr>', 'e.g. /ip4/10.0.0.2/tcp/4001/p2p/12D3KooW…')
    .action(async (multiaddr: string, opts: Opts) => {
      const client = await connect(opts)
      const info = await client.addPeer(multiaddr)
      if (opts.json === true) {
        await printJson(info)
      } else {
        const state = info.connected ? 'connected' : `not connected yet${info.lastError != null ? ` (${info.lastError})` : ''}; it will be redialled`
        await printLine(`added peer ${info.peerId}: ${state}`)
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
        ['PEER', 'CONNECTED', 'AUTH', 'PERSISTED', 'LAST SEEN', 'ADDRESSES'],
        peers.map((p) => [p.peerId, yesNo(p.connected), yesNo(p.authenticated), yesNo(p.persisted), formatAgo(p.lastSeen), p.addrs.join(' ')])
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

  // -- platforms ----------------------------------------------------------
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

  // -- rules --------------------------------------------------------------
  const rule = program.command('rule').description('one-way sync rules: PLATFORM:COLLECTION → TARGET:COLLECTION')

  clientCommand(rule, 'add', "create a rule; print the new rule's id")
    .requiredOption('--from <platform:collection>', 'source, e.g. hub:posts')
    .requiredOption('--to <platform:collection>', 'target, e.g. edge:articles')
    .addOption(new Option('--mode <mode>', 'how records are applied').choices(['merge', 'mirror', 'insert-only']))
    .option('--where <json>', 'filter on the source value, a JSON object, e.g. \'{"status":"published"}\'')
    .option('--include <fields>', 'copy only these fields (comma-separated)')
    .option('--exclude <fields>', 'drop these fields (comma-separated)')
    .option('--rename <old=new,…>', 'rename fields')
    .option('--key <field>', "use this field of the source value as the target record's id")
    .option('--dry-run', 'show what the rule would do without creating it')
    .action(async (opts: Opts & { from: string, to: string, mode?: RuleMode, where?: string, include?: string, exclude?: string, rename?: string, key?: string, dryRun?: boolean }) => {
      const spec: RuleSpec = {
        from: parseEndpoint(opts.from, '--from'),
        to: parseEndpoint(opts.to, '--to'),
        ...(opts.mode != null ? { mode: opts.mode } : {}),
        ...(opts.where != null ? { where: parseJsonObjectArg(opts.where, '--where') } : {}),
        ...(opts.include != null ? { include: parseList(opts.include, '--include') } : {}),
        ...(opts.exclude != null ? { exclude: parseList(opts.exclude, '--exclude') } : {}),
        ...(opts.rename != null ? { rename: parseRename(opts.rename) } : {}),
        ...(opts.key != null ? { key: opts.key } : {})
      }
      const client = await connect(opts)
      const created = await client.addRule(spec, { dryRun: opts.dryRun === true })
      if (opts.json === true) await printJson(created)
      else await printLine(created.id)
    })

  clientCommand(rule, 'ls', 'list the rules')
    .action(async (opts: Opts) => {
      const client = await connect(opts)
      const rules = await client.listRules()
      if (opts.json === true) {
        await printJson(rules)
        return
      }
      if (rules.length === 0) {
        await printLine('no rules; add one with "syncmesh rule add --from P:C --to P:C"')
        return
      }
      await printLine(table(
        ['ID', 'FROM', 'TO', 'MODE', 'DETAILS'],
        rules.map((r) => [r.id, `${r.from.platform}:${r.from.collection}`, `${r.to.platform}:${r.to.collection}`, r.mode, describeRule(r) || '-'])
      ))
    })

  clientCommand(rule, 'rm', 'remove a rule')
    .argument('<rule-id>')
    .action(async (id: string, opts: Opts) => {
      const client = await connect(opts)
      const result = await client.removeRule(id)
      if (opts.json === true) await printJson(result)
      else await printLine(`removed rule ${id}`)
    })
}
