/**
 * A throwaway PostgreSQL server for the benchmark and the connector tests: the system's initdb and
 * pg_ctl into a temp dir, trust authentication, on a free loopback port
 * (as root, run as the postgres user: initdb refuses root).
 */
import { execFileSync } from 'node:child_process'
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { freePort } from './cluster.js'

/** The newest system PostgreSQL's bin directory, if installed. */
export function postgresBin (): string | undefined {
  const root = '/usr/lib/postgresql'
  if (!existsSync(root)) return undefined
  const versions = readdirSync(root).filter(v => existsSync(join(root, v, 'bin', 'initdb'))).sort((a, b) => Number(b) - Number(a))
  return versions.length > 0 ? join(root, versions[0], 'bin') : undefined
}


export interface PgServer { url: string, stop: () => void }

/** Start a server with its data in `parent`/pgdata; stop() is synchronous (fast shutdown). */
export async function startPostgres (parent: string): Promise<PgServer> {
  const bin = postgresBin()
  if (bin === undefined) throw new Error('no PostgreSQL server installed (/usr/lib/postgresql/*/bin/initdb): apt-get install postgresql')
  const data = join(parent, 'pgdata')
  mkdirSync(data, { mode: 0o700 })
  const asRoot = process.getuid?.() === 0
  const run = (cmd: string, args: string[]): void => {
    if (asRoot) execFileSync('runuser', ['-u', 'postgres', '--', cmd, ...args], { stdio: 'pipe' })
    else execFileSync(cmd, args, { stdio: 'pipe' })
  }
  if (asRoot) {
    chmodSync(parent, 0o755)
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim())
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim())
    chownSync(data, uid, gid)
  }
  run(join(bin, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8'])
  const port = await freePort()
  run(join(bin, 'pg_ctl'), ['-D', data, '-l', join(data, 'server.log'), '-w', '-o', `-p ${port} -k ${data} -c listen_addresses=127.0.0.1`, 'start'])
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    stop: () => { try { run(join(bin, 'pg_ctl'), ['-D', data, '-m', 'fast', '-w', 'stop']) } catch {} }
  }
}
