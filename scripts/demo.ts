/**
 * `npm run demo`: a local three-node mesh, in a temp dir, that shows the main
 * job end to end and then keeps running so you can try the CLI against it.
 *
 *   staging (eu) ── production (eu) ── edge (us)
 *
 * Rules: staging:posts → production:posts (only published posts),
 *        staging:posts → edge:headlines (title only).
 * edge is not connected to staging: staging's log reaches it through production.
 *
 * `npm run demo -- --once` stops after the demonstration (used by the tests).
 *
 * `npm run demo -- --connectors`: two nodes in two regions, each with its own
 * SQLite application database holding a `devices` table, bound to the
 * collection `devices` by a two-way connector (docs/connectors.md), and
 * rules both ways. A row inserted with the `sqlite3` shell (or, when it is
 * not installed, through better-sqlite3) into one table shows up in the
 * other; then the demo prints the sqlite3 commands to try it yourself.
 */
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { generateMeshKey } from '../src/node/config.js'
import { CLI, NodeProcess, runCli, tempDir, waitFor } from './lib/cluster.js'

const once = process.argv.includes('--once')
const say = (msg: string): void => { process.stdout.write(msg + '\n') }

async function main (): Promise<void> {
  const parent = await tempDir('syncmesh-demo-')
  const key = generateMeshKey()
  say(`syncmesh demo: three nodes in ${parent}, mesh key ${key.slice(0, 8)}…`)
  const staging = await NodeProcess.create('staging', key, { parent, region: 'eu' })
  const production = await NodeProcess.create('production', key, { parent, region: 'eu' })
  const edge = await NodeProcess.create('edge', key, { parent, region: 'us' })
  const nodes = [staging, production, edge]
  const shutdown = async (): Promise<void> => {
    for (const n of nodes) await n.stop().catch(() => {})
    await rm(parent, { recursive: true, force: true })
  }
  try {
    for (const n of nodes) {
      await n.start()
      say(`  started ${n.name.padEnd(10)} ${n.peerId}  api ${n.api}`)
    }
    await production.addPeer(staging.multiaddr)
    say('  production peered with staging (by multiaddr)')
    await edge.addPeer(production.multiaddr)
    say('  edge peered with production (edge never talks to staging)')

    const r1 = await staging.addRule({ from: { platform: 'staging', collection: 'posts' }, to: { platform: 'production', collection: 'posts' }, where: { status: 'published' } })
    say(`  rule ${r1.id}: staging:posts → production:posts where status = published`)
    const r2 = await staging.addRule({ from: { platform: 'staging', collection: 'posts' }, to: { platform: 'edge', collection: 'headlines' }, where: { status: 'published' }, include: ['title'] })
    say(`  rule ${r2.id}: staging:posts → edge:headlines, title only`)

    const posts = [
      { id: 'welcome', value: { title: 'Welcome', body: 'Hello from staging', status: 'published' } },
      { id: 'pricing', value: { title: 'Pricing', body: 'Plans and prices', status: 'published' } },
      { id: 'roadmap', value: { title: 'Roadmap', body: 'Secret plans', status: 'draft' } },
      { id: 'about', value: { title: 'About us', body: 'Who we are', status: 'published' } }
    ]
    for (const p of posts) await staging.put('posts', p.id, p.value)
    say(`  wrote ${posts.length} posts on staging (one is a draft)`)

    const t0 = performance.now()
    await waitFor(async () => await production.count('posts') === 3 && await edge.count('headlines') === 3, 'the posts to reach production and edge', 30_000, 20)
    say(`  synced in ${(performance.now() - t0).toFixed(0)} ms:`)
    for (const [name, node, coll] of [['production', production, 'posts'], ['edge', edge, 'headlines']] as const) {
      for (const [id, value] of await node.all(coll)) say(`    ${name}:${coll}/${id} = ${JSON.stringify(value)}`)
    }

    await staging.put('posts', 'pricing', { title: 'Pricing (new)', body: 'Cheaper plans', status: 'published' })
    await staging.del('posts', 'about')
    await waitFor(async () => (await edge.get('headlines', 'pricing'))?.title === 'Pricing (new)' && await edge.get('headlines', 'about') === undefined, 'the update and delete to reach edge', 30_000, 20)
    say('  an update and a delete on staging reached edge through production')

    if (once) {
      await shutdown()
      say('demo finished')
      return
    }
    say('\nThe mesh keeps running. Try, in another terminal:')
    say(`  node ${CLI} put posts hello '{"title":"Hi","status":"published"}' --data ${staging.dir}`)
    say(`  node ${CLI} ls headlines --data ${edge.dir}`)
    say(`  node ${CLI} status --data ${production.dir}`)
    say('Press Ctrl-C to stop and delete the demo mesh.')
    await new Promise<void>(resolve => {
      process.once('SIGINT', resolve)
      process.once('SIGTERM', resolve)
    })
    await shutdown()
  } catch (err) {
    await shutdown()
    throw err
  }
}

const SQLITE3 = ['/usr/bin/sqlite3', '/usr/local/bin/sqlite3'].find(p => existsSync(p))
const DEVICES = 'CREATE TABLE devices (id TEXT PRIMARY KEY, name TEXT NOT NULL, ip TEXT, online BOOLEAN, seen_at TIMESTAMP)'

/** Shell quoting for the commands the demo prints. */
function sh (arg: string): string {
  if (/^[\w./:=@-]+$/.test(arg)) return arg
  if (!arg.includes("'")) return `'${arg}'`
  if (!/["$`\\!]/.test(arg)) return `"${arg}"`
  return `'${arg.replace(/'/g, "'\\''")}'`
}

async function connectorsDemo (): Promise<void> {
  const parent = await tempDir('syncmesh-demo-')
  const key = generateMeshKey()
  say(`syncmesh connectors demo: two nodes in ${parent}, mesh key ${key.slice(0, 8)}…`)
  const eu = await NodeProcess.create('site-eu', key, { parent, region: 'eu' })
  const us = await NodeProcess.create('site-us', key, { parent, region: 'us' })
  const nodes = [eu, us]
  const apps = new Map<NodeProcess, { file: string, db: Database.Database }>()
  const shutdown = async (): Promise<void> => {
    for (const n of nodes) await n.stop().catch(() => {})
    for (const { db } of apps.values()) db.close()
    await rm(parent, { recursive: true, force: true })
  }
  try {
    for (const n of nodes) {
      // the application's own database: a table it already has
      const file = join(parent, `${n.name}-app.db`)
      const db = new Database(file)
      db.pragma('journal_mode = WAL')
      db.pragma('busy_timeout = 2000')
      db.exec(DEVICES)
      apps.set(n, { file, db })
      await n.start(['--target-peers', '0'])
      say(`  started ${n.name.padEnd(8)} ${n.peerId}  api ${n.api}`)
      say(`           its application database: ${file} (table devices)`)
    }
    await us.addPeer(eu.multiaddr)
    await waitFor(async () => ((await eu.request<unknown[]>('GET', '/v1/platforms')).body).length === 2, 'the sites to know each other', 30_000, 50)
    say('  site-us peered with site-eu')
    for (const [from, to] of [[eu, us], [us, eu]]) {
      const r = await eu.addRule({ from: { platform: from.name, collection: 'devices' }, to: { platform: to.name, collection: 'devices' } })
      say(`  rule ${r.id}: ${from.name}:devices → ${to.name}:devices`)
    }
    for (const n of nodes) {
      const args = ['connector', 'add', 'sqlite', '--db', apps.get(n)?.file as string, '--table', 'devices', '--collection', 'devices', '--id', 'id', '--data', n.dir]
      const r = await runCli(args)
      if (r.code !== 0) throw new Error(`syncmesh ${args.join(' ')}: ${r.stderr.trim()}`)
      say(`  $ syncmesh ${args.map(sh).join(' ')}`)
    }

    const insert = async (n: NodeProcess, sql: string): Promise<void> => {
      const { file, db } = apps.get(n) as { file: string, db: Database.Database }
      if (SQLITE3 !== undefined) {
        execFileSync(SQLITE3, ['-cmd', '.timeout 2000', file, sql])
        say(`  $ sqlite3 ${sh(file)} ${sh(sql)}`)
      } else {
        db.exec(sql)
        say(`  (sqlite3 is not installed: apt-get install sqlite3) ran through better-sqlite3 on ${file}: ${sql}`)
      }
    }
    const row = (n: NodeProcess, id: string): Record<string, unknown> | undefined => apps.get(n)?.db.prepare('SELECT * FROM devices WHERE id = ?').get(id) as Record<string, unknown> | undefined

    let t0 = performance.now()
    await insert(eu, "INSERT INTO devices (id, name, ip, online, seen_at) VALUES ('router-1', 'edge router', '10.0.0.1', 1, CURRENT_TIMESTAMP)")
    await waitFor(() => row(us, 'router-1') !== undefined, 'router-1 to reach site-us\'s table', 30_000, 10)
    say(`  site-us's table has it after ${(performance.now() - t0).toFixed(0)} ms: ${JSON.stringify(row(us, 'router-1'))}`)

    t0 = performance.now()
    await insert(us, "UPDATE devices SET online = 0, name = 'edge router (down)' WHERE id = 'router-1'")
    await insert(us, "INSERT INTO devices (id, name, ip, online) VALUES ('camera-7', 'lobby camera', '10.1.0.7', 1)")
    await waitFor(() => row(eu, 'camera-7') !== undefined && row(eu, 'router-1')?.online === 0, 'site-us\'s changes to reach site-eu\'s table', 30_000, 10)
    say(`  and the other way: site-eu's table has site-us's update and insert after ${(performance.now() - t0).toFixed(0)} ms:`)
    for (const r of apps.get(eu)?.db.prepare('SELECT * FROM devices ORDER BY id').all() as unknown[]) say(`    ${JSON.stringify(r)}`)

    if (once) {
      await shutdown()
      say('demo finished')
      return
    }
    const euFile = apps.get(eu)?.file as string
    const usFile = apps.get(us)?.file as string
    say('\nThe two sites keep running. Try, in another terminal:')
    if (SQLITE3 !== undefined) {
      say(`  sqlite3 -cmd '.timeout 2000' ${sh(euFile)} ${sh("INSERT INTO devices (id, name, ip, online) VALUES ('printer', 'office printer', '10.0.0.9', 1)")}`)
      say(`  sqlite3 -header -column ${sh(usFile)} 'SELECT * FROM devices'`)
      say(`  sqlite3 -cmd '.timeout 2000' ${sh(usFile)} ${sh("DELETE FROM devices WHERE id = 'printer'")}`)
      say(`  sqlite3 -header -column ${sh(euFile)} 'SELECT * FROM devices'`)
    } else {
      say('  (the sqlite3 shell is not installed here: apt-get install sqlite3 gives it; any program that writes these files works the same)')
    }
    say(`  node ${CLI} connector ls --data ${eu.dir}`)
    say(`  node ${CLI} status --data ${us.dir}`)
    say('Press Ctrl-C to stop and delete the demo.')
    await new Promise<void>(resolve => {
      process.once('SIGINT', resolve)
      process.once('SIGTERM', resolve)
    })
    await shutdown()
  } catch (err) {
    await shutdown()
    throw err
  }
}

;(process.argv.includes('--connectors') ? connectorsDemo() : main()).catch((err: Error) => {
  process.stderr.write(`demo failed: ${err.message}\n`)
  process.exit(1)
})
