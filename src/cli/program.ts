/**
 * The `syncmesh` command line (reference: docs/cli.md): builds the commander
 * program and runs it, mapping every outcome to an exit status:
 * 0 success, 1 failure (one line on stderr: `error [CODE]: message`), 2 usage error.
 */
import { Command, CommanderError } from 'commander'
import { SyncmeshError } from '../core/errors.js'
import { registerConsoleCommands } from './commands/console.js'
import { registerConnectorCommands } from './commands/connectors.js'
import { registerMeshCommands } from './commands/mesh.js'
import { registerNodeCommands } from './commands/node.js'
import { registerRecordCommands } from './commands/records.js'
import { registerRuleCommands } from './commands/rules.js'
import { registerStatusCommands } from './commands/status.js'
import { UsageError, readVersion } from './common.js'

export const EXIT_OK = 0
export const EXIT_FAILURE = 1
export const EXIT_USAGE = 2

export function buildProgram (version: string): Command {
  const program = new Command('syncmesh')
  // settings first: subcommands copy them when they are created
  program
    .exitOverride()
    .showSuggestionAfterError(true)
    .showHelpAfterError('(add --help for usage)')
    .description('peer-to-peer sync mesh for JSON records')
    .version(version, '-V, --version')
    .configureHelp({ sortSubcommands: false })

  registerNodeCommands(program)
  registerStatusCommands(program)
  registerRecordCommands(program)
  registerMeshCommands(program)
  registerRuleCommands(program)
  registerConsoleCommands(program)
  registerConnectorCommands(program)
  return program
}

function oneLine (text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim()
}

/** The exit status for an error thrown by a command (printing its one line). */
export function reportError (err: unknown): number {
  if (err instanceof CommanderError) {
    // commander has already printed its message (or the help / version)
    return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE
  }
  if (err instanceof UsageError) {
    process.stderr.write(`error [${err.code}]: ${oneLine(err.message)}\n`)
    return EXIT_USAGE
  }
  if (err instanceof SyncmeshError) {
    process.stderr.write(`error [${err.code}]: ${oneLine(err.message)}\n`)
    if (process.env.SYNCMESH_DEBUG != null && err.cause != null) console.error(err.cause)
    return EXIT_FAILURE
  }
  const message = err instanceof Error ? err.message : String(err)
  process.stderr.write(`error [INTERNAL]: ${oneLine(message)} (set SYNCMESH_DEBUG=1 for details)\n`)
  if (process.env.SYNCMESH_DEBUG != null) console.error(err)
  return EXIT_FAILURE
}

async function flush (stream: NodeJS.WriteStream): Promise<void> {
  if (stream.destroyed || stream.writableEnded) return
  await new Promise<void>((resolve) => stream.write('', () => resolve()))
}

/** Run the CLI with `argv` (as process.argv) and exit with the right status. */
export async function run (argv: string[]): Promise<never> {
  // `syncmesh ls posts | head` closes the pipe early: that is not an error
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(EXIT_OK)
    process.stderr.write(`error [OUTPUT_FAILED]: cannot write to stdout: ${err.message}\n`)
    process.exit(EXIT_FAILURE)
  })
  let code = EXIT_OK
  try {
    const program = buildProgram(await readVersion())
    await program.parseAsync(argv)
  } catch (err) {
    code = reportError(err)
  }
  await flush(process.stdout)
  await flush(process.stderr)
  process.exit(code)
}
