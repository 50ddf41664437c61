/**
 * syncmesh console | api token rotate | api token show
 */
import type { Command } from 'commander'
import { loadTokens, rotateToken } from '../../api/tokens.js'
import type { TokenKind } from '../../api/tokens.js'
import { SyncmeshError } from '../../core/errors.js'
import { readApiFile } from '../../node/config.js'
import { addJsonOption, connect } from '../common.js'
import type { JsonOption } from '../common.js'
import { printJson, printLine } from '../output.js'

interface DataOpts extends JsonOption {
  data: string
  readOnly?: boolean
}

/** The console URL: the token travels in the fragment, which the browser never sends to a server. */
export function consoleUrl (apiUrl: string, token: string): string {
  return `${apiUrl.replace(/\/+$/, '')}/#token=${encodeURIComponent(token)}`
}

export function registerConsoleCommands (program: Command): void {
  addJsonOption(
    program.command('console')
      .description("print the URL of the running node's web console (with its API token in the URL's fragment)")
      .requiredOption('--data <dir>', 'data directory of the running node')
      .option('--read-only', 'a URL with the read-only token: the console shows everything and changes nothing')
  ).action(async (opts: DataOpts) => {
    const api = await readApiFile(opts.data)
    const token = opts.readOnly === true ? (await loadTokens(opts.data)).readOnly : api.token
    const url = consoleUrl(api.url, token)
    if (opts.json === true) await printJson({ url })
    else await printLine(url)
  })

  const api = program.command('api').description('the HTTP API: its tokens')
  const token = api.command('token').description('the API tokens, kept in DIR/api-tokens.json across restarts')
  addJsonOption(
    token.command('rotate')
      .description('replace the full API token (or, with --read-only, the read-only one); the running node switches at once and clients need the new token')
      .requiredOption('--data <dir>', 'data directory of the node (running or not)')
      .option('--read-only', 'rotate the read-only token')
  ).action(async (opts: DataOpts) => {
    const kind: TokenKind = opts.readOnly === true ? 'read-only' : 'full'
    let next: string
    let running = true
    try {
      await readApiFile(opts.data)
    } catch {
      running = false
    }
    if (running) {
      const client = await connect({ data: opts.data })
      next = (await client.rotateToken(kind)).token
    } else {
      const tokens = await rotateToken(opts.data, kind)
      next = kind === 'full' ? tokens.full : tokens.readOnly
    }
    if (opts.json === true) await printJson({ kind, token: next, running })
    else await printLine(next)
  })
  addJsonOption(
    token.command('show')
      .description('print the full API token (or, with --read-only, the read-only one: for a Prometheus scraper or a dashboard)')
      .requiredOption('--data <dir>', 'data directory of the node')
      .option('--read-only', 'the read-only token')
  ).action(async (opts: DataOpts) => {
    const tokens = await loadTokens(opts.data).catch((err: unknown) => {
      throw err instanceof SyncmeshError ? err : new SyncmeshError('API_TOKENS_UNREADABLE', `cannot read the API tokens of ${opts.data}: ${(err as Error).message}`, 500)
    })
    const value = opts.readOnly === true ? tokens.readOnly : tokens.full
    if (opts.json === true) await printJson({ kind: opts.readOnly === true ? 'read-only' : 'full', token: value })
    else await printLine(value)
  })
}
