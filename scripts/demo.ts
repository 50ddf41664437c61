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
 */
import { rm } from 'node:fs/promises'
import { generateMeshKey } from '../src/node/config.js'
import { CLI, NodeProcess, tempDir, waitFor } from './lib/cluster.js'

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

main().catch((err: Error) => {
  process.stderr.write(`demo failed: ${err.message}\n`)
  process.exit(1)
})
