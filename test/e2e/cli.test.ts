/**
 * The `syncmesh` binary (dist/src/cli/bin.cjs, built by `npm run build`):
 * exit statuses, one-line errors, --json output, and every command against
 * real `syncmesh start` processes on 127.0.0.1 in temp dirs.
 */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startApiServer } from '../../src/api/server.js'
import type { NodeStatus, SyncNodeApi } from '../../src/core/types.js'
import { waitFor } from '../../scripts/lib/cluster.js'

const BIN = fileURLToPath(new URL('../../dist/src/cli/bin.cjs', import.meta.url))
const KEY = 'k'.repeat(32)

interface Result { code: number | null, stdout: string, stderr: string }

/** The environment without SYNCMESH_* variables, plus `extra`. */
function env (extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const clean: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('SYNCMESH_')) clean[k] = v
  return { ...clean, SYNCMESH_LOG_LEVEL: 'warn', ...extra }
}

async function cli (args: string[], options: { input?: string, env?: Record<string, string> } = {}): Promise<Result> {
  return await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: env(options.env), stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
    child.stdin.end(options.input ?? '')
  })
}

/** Exactly one line on stderr: `error [CODE]: message`. */
function expectOneErrorLine (r: Result, code: string): void {
  const lines = r.stderr.trimEnd().split('\n')
  expect(lines, r.stderr).toHaveLength(1)
  expect(lines[0]).toMatch(new RegExp(`^error \\[${code}\\]: .{10,}`))
}

interface Ready { event: string, peerId: string, multiaddrs: string[], api: string }

class NodeProc {
  readonly child: ChildProcess
  stderr = ''
  readonly ready: Promise<Ready>
  readonly exited: Promise<number | null>

  constructor (args: string[], extraEnv: Record<string, string> = {}) {
    this.child = spawn(process.execPath, [BIN, 'start', ...args, '--json'], { env: env(extraEnv), stdio: ['ignore', 'pipe', 'pipe'] })
    this.child.stderr?.setEncoding('utf8').on('data', (d: string) => { this.stderr += d })
    this.exited = new Promise((resolve) => this.child.on('close', (code) => resolve(code)))
    this.ready = new Promise((resolve, reject) => {
      let out = ''
      this.child.stdout?.setEncoding('utf8').on('data', (d: string) => {
        out += d
        const nl = out.indexOf('\n')
        if (nl !== -1) {
          try {
            resolve(JSON.parse(out.slice(0, nl)) as Ready)
          } catch (err) {
            reject(err)
          }
        }
      })
      void this.exited.then((code) => reject(new Error(`syncmesh start exited with ${code}: ${this.stderr}`)))
    })
    this.ready.catch(() => {}) // reported where it is awaited
  }

  async stop (): Promise<number | null> {
    if (this.child.exitCode == null) this.child.kill('SIGTERM')
    return await this.exited
  }
}

async function freePort (): Promise<{ port: number, close: () => Promise<void> }> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address == null || typeof address === 'string') throw new Error('no port')
  return { port: address.port, close: async () => await new Promise<void>((resolve) => server.close(() => resolve())) }
}

describe('syncmesh CLI', () => {
  let root: string

  beforeAll(async () => {
    if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run "npm run build" first`)
    root = await mkdtemp(join(tmpdir(), 'syncmesh-cli-'))
  })

  afterAll(async () => {
    if (root != null) await rm(root, { recursive: true, force: true })
  })

  describe('without a node', () => {
    it('key gen prints 32 bytes of hex', async () => {
      const r = await cli(['key', 'gen'])
      expect(r.code).toBe(0)
      expect(r.stdout).toMatch(/^[0-9a-f]{64}\n$/)
      const j = await cli(['key', 'gen', '--json'])
      expect(j.code).toBe(0)
      expect(JSON.parse(j.stdout).key).toMatch(/^[0-9a-f]{64}$/)
    })

    it('exits 2 on usage errors', async () => {
      for (const args of [
        [],
        ['bogus'],
        ['get', 'posts'],
        ['put'],
        ['peer'],
        ['init', '--data', join(root, 'x')],
        ['rule', 'add', '--from', 'a:b'],
        ['rule', 'add', '--from', 'a:b', '--to', 'c:d', '--mode', 'sideways'],
        ['get', 'posts', '1', '--no-such-flag']
      ]) {
        const r = await cli(args)
        expect({ args, code: r.code }).toEqual({ args, code: 2 })
        expect(r.stderr).toMatch(/error|Usage/)
      }
    })

    it('exits 0 for --help and --version', async () => {
      const help = await cli(['--help'])
      expect(help.code).toBe(0)
      expect(help.stdout).toMatch(/Usage: syncmesh/)
      const version = await cli(['--version'])
      expect(version.code).toBe(0)
      expect(version.stdout).toMatch(/^\d+\.\d+\.\d+/)
    })

    it('reports bad rule endpoints and options as usage errors with one line', async () => {
      const opts = ['--api', 'http://127.0.0.1:9', '--token', 't']
      for (const [args, needle] of [
        [['rule', 'add', '--from', 'alpha', '--to', 'b:c'], 'PLATFORM:COLLECTION'],
        [['rule', 'add', '--from', 'a:b', '--to', ':c'], 'PLATFORM:COLLECTION'],
        [['rule', 'add', '--from', 'a:b', '--to', 'c:d', '--where', '[1]'], '--where'],
        [['rule', 'add', '--from', 'a:b', '--to', 'c:d', '--where', '{x'], '--where'],
        [['rule', 'add', '--from', 'a:b', '--to', 'c:d', '--rename', 'a'], '--rename'],
        [['rule', 'add', '--from', 'a:b', '--to', 'c:d', '--include', ','], '--include']
      ] as Array<[string[], string]>) {
        const r = await cli([...args, ...opts])
        expect(r.code, r.stderr).toBe(2)
        expectOneErrorLine(r, 'USAGE')
        expect(r.stderr).toContain(needle)
      }
    })

    it('asks how to reach the node when told nothing', async () => {
      const r = await cli(['status'])
      expect(r.code).toBe(2)
      expectOneErrorLine(r, 'USAGE')
      expect(r.stderr).toMatch(/--data DIR/)
    })

    it('says when the node is unreachable', async () => {
      const { port, close } = await freePort()
      await close()
      const r = await cli(['status', '--api', `http://127.0.0.1:${port}`, '--token', 't'])
      expect(r.code).toBe(1)
      expectOneErrorLine(r, 'NODE_UNREACHABLE')
      expect(r.stderr).toContain(`127.0.0.1:${port}`)
      const env = await cli(['status'], { env: { SYNCMESH_API: `http://127.0.0.1:${port}`, SYNCMESH_TOKEN: 't' } })
      expect(env.code).toBe(1)
      expectOneErrorLine(env, 'NODE_UNREACHABLE')
    })

    it('says when --data holds no running node', async () => {
      const r = await cli(['status', '--data', join(root, 'nothing')])
      expect(r.code).toBe(1)
      expectOneErrorLine(r, 'NODE_NOT_RUNNING')
    })

    it('wait polls status until lag is 0, and times out with TIMEOUT', async () => {
      // a stand-in node whose lag drains over ~2.5 s, then one that never catches up
      let lag = 0
      let drainPerPoll = 0
      const stub = {
        peerId: '12D3KooWStub', name: 'stub',
        async status (): Promise<NodeStatus> {
          lag = Math.max(0, lag - drainPerPoll)
          return {
            peerId: '12D3KooWStub', name: 'stub', multiaddrs: [], startedAt: new Date().toISOString(), peers: [], rules: [],
            origins: [{ origin: 'o1', seq: 100 - lag, announced: 100, lag }], caughtUp: lag === 0
          }
        }
      } as unknown as SyncNodeApi
      const server = await startApiServer(stub, { host: '127.0.0.1', port: 0, token: 'tok' })
      try {
        const opts = ['--api', server.url, '--token', 'tok']
        lag = 100
        drainPerPoll = 8
        const ok = await cli(['wait', ...opts])
        expect(ok.code, ok.stderr).toBe(0)
        expect(ok.stdout).toMatch(/^caught up/)
        expect(ok.stderr).toMatch(/^waiting: \d+ entries behind across 1 origins/m)
        expect(ok.stderr.trim().split('\n').length).toBeLessThanOrEqual(5) // at most about once per second

        lag = 50
        drainPerPoll = 0
        const started = Date.now()
        const late = await cli(['wait', '--timeout', '1', ...opts])
        expect(late.code).toBe(1)
        expect(Date.now() - started).toBeLessThan(10_000)
        const last = late.stderr.trimEnd().split('\n').pop() ?? ''
        expect(last).toMatch(/^error \[TIMEOUT\]: not caught up after 1s: 50 entries behind/)

        const badTimeout = await cli(['wait', '--timeout', 'soon', ...opts])
        expect(badTimeout.code).toBe(2)
        expectOneErrorLine(badTimeout, 'USAGE')
      } finally {
        await server.close()
      }
    })

    it('init prints the peer id, --json the details, and refuses an existing node', async () => {
      const dir = join(root, 'init-a')
      const r = await cli(['init', '--data', dir, '--name', 'a1'])
      expect(r.code, r.stderr).toBe(0)
      expect(r.stdout).toMatch(/^12D3KooW\w+\n$/)
      const again = await cli(['init', '--data', dir, '--name', 'a1'])
      expect(again.code).toBe(1)
      expectOneErrorLine(again, 'NODE_EXISTS')
      const j = await cli(['init', '--data', join(root, 'init-b'), '--name', 'b1', '--region', 'eu', '--json'])
      expect(j.code, j.stderr).toBe(0)
      expect(JSON.parse(j.stdout)).toEqual({ peerId: expect.stringMatching(/^12D3KooW/), name: 'b1', region: 'eu', data: join(root, 'init-b') })
      const bad = await cli(['init', '--data', join(root, 'init-c'), '--name', 'bad name'])
      expect(bad.code).toBe(1)
      expectOneErrorLine(bad, 'INVALID_NAME')
    })

    it('start fails with one line for a missing node, a missing or short key, and a bad --api', async () => {
      const missing = await cli(['start', '--data', join(root, 'none'), '--key', KEY])
      expect(missing.code).toBe(1)
      expectOneErrorLine(missing, 'NODE_NOT_FOUND')
      const dir = join(root, 'start-errors')
      expect((await cli(['init', '--data', dir, '--name', 'se'])).code).toBe(0)
      const noKey = await cli(['start', '--data', dir, '--listen', '/ip4/127.0.0.1/tcp/0'])
      expect(noKey.code).toBe(1)
      expectOneErrorLine(noKey, 'KEY_MISSING')
      const shortKey = await cli(['start', '--data', dir, '--key', 'short', '--listen', '/ip4/127.0.0.1/tcp/0'])
      expect(shortKey.code).toBe(1)
      expectOneErrorLine(shortKey, 'KEY_TOO_SHORT')
      const badApi = await cli(['start', '--data', dir, '--key', KEY, '--api', 'localhost:99999'])
      expect(badApi.code).toBe(2)
      expectOneErrorLine(badApi, 'USAGE')
    })
  })

  describe('with running nodes', () => {
    let aDir: string
    let bDir: string
    let a: NodeProc
    let b: NodeProc
    let aReady: Ready
    let bReady: Ready

    beforeAll(async () => {
      aDir = join(root, 'alpha')
      bDir = join(root, 'beta')
      expect((await cli(['init', '--data', aDir, '--name', 'alpha'])).code).toBe(0)
      expect((await cli(['init', '--data', bDir, '--name', 'beta'])).code).toBe(0)
      // the key from --key for alpha, from DIR/mesh.key for beta ($SYNCMESH_KEY: see the SIGTERM test)
      await writeFile(join(bDir, 'mesh.key'), KEY + '\n')
      a = new NodeProc(['--data', aDir, '--key', KEY, '--listen', '/ip4/127.0.0.1/tcp/0', '--api', '127.0.0.1:0'])
      b = new NodeProc(['--data', bDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--api', '127.0.0.1:0'])
      ;[aReady, bReady] = await Promise.all([a.ready, b.ready])
    }, 60_000)

    afterAll(async () => {
      await Promise.all([a?.stop(), b?.stop()])
    }, 60_000)

    it('prints one ready line and writes api.json with mode 0600', async () => {
      expect(aReady.event).toBe('ready')
      expect(aReady.peerId).toMatch(/^12D3KooW/)
      expect(aReady.multiaddrs[0]).toMatch(new RegExp(`^/ip4/127\\.0\\.0\\.1/tcp/\\d+/p2p/${aReady.peerId}$`))
      expect(aReady.api).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
      const file = JSON.parse(await readFile(join(aDir, 'api.json'), 'utf8'))
      expect(file.url).toBe(aReady.api)
      expect(file.token).toMatch(/^[0-9a-f]{64}$/)
      expect((await stat(join(aDir, 'api.json'))).mode & 0o777).toBe(0o600)
    })

    // bin.cts: libuv's pool has 2 threads unless UV_THREADPOOL_SIZE says otherwise (Linux: threads counted in /proc)
    it.runIf(process.platform === 'linux')('the daemon runs libuv\'s thread pool with 2 threads unless UV_THREADPOOL_SIZE is set', async () => {
      const threads = async (env: Record<string, string>, name: string): Promise<number> => {
        const dir = join(root, name)
        expect((await cli(['init', '--data', dir, '--name', name])).code).toBe(0)
        const node = new NodeProc(['--data', dir, '--key', KEY, '--listen', '/ip4/127.0.0.1/tcp/0', '--api', '127.0.0.1:0'], env)
        try {
          await node.ready
          return (await readdir(`/proc/${node.child.pid ?? 0}/task`)).length
        } finally {
          await node.stop()
        }
      }
      // fresh idle nodes, alike but for the variable ('' counts as unset)
      const unset = await threads({ UV_THREADPOOL_SIZE: '' }, 'pool-default')
      const two = await threads({ UV_THREADPOOL_SIZE: '2' }, 'pool-two')
      const four = await threads({ UV_THREADPOOL_SIZE: '4' }, 'pool-four')
      expect(unset).toBe(two)
      expect(four - two).toBe(2)
    })

    it('put, get, del, ls with --data', async () => {
      const d = ['--data', aDir]
      const put = await cli(['put', 'posts', '1', '{"title":"one"}', ...d])
      expect(put.code, put.stderr).toBe(0)
      const putJson = await cli(['put', 'posts', '2', ...d, '--json'], { input: '{"title":"two"}' })
      expect(putJson.code, putJson.stderr).toBe(0)
      expect(JSON.parse(putJson.stdout)).toMatchObject({ collection: 'posts', id: '2', value: { title: 'two' } })

      const get = await cli(['get', 'posts', '1', ...d])
      expect(get.code).toBe(0)
      expect(JSON.parse(get.stdout)).toEqual({ title: 'one' })
      const getJson = await cli(['get', 'posts', '1', ...d, '--json'])
      expect(JSON.parse(getJson.stdout)).toMatchObject({ id: '1', value: { title: 'one' }, version: { origin: aReady.peerId } })

      const ls = await cli(['ls', 'posts', ...d])
      expect(ls.code).toBe(0)
      expect(ls.stdout.trim().split('\n').map((l) => JSON.parse(l))).toEqual([{ id: '1', value: { title: 'one' } }, { id: '2', value: { title: 'two' } }])

      const del = await cli(['del', 'posts', '2', ...d, '--json'])
      expect(del.code).toBe(0)
      expect(JSON.parse(del.stdout)).toEqual({ deleted: true })
      const gone = await cli(['get', 'posts', '2', ...d])
      expect(gone.code).toBe(1)
      expect(gone.stdout).toBe('')
      expectOneErrorLine(gone, 'NOT_FOUND')
    })

    it('rejects values that are not JSON objects', async () => {
      for (const [args, input, code] of [
        [['put', 'posts', 'x', '[1,2]'], '', 'INVALID_VALUE'],
        [['put', 'posts', 'x', '{oops'], '', 'INVALID_JSON'],
        [['put', 'posts', 'x'], '"str"', 'INVALID_VALUE']
      ] as Array<[string[], string, string]>) {
        const r = await cli([...args, '--data', aDir], { input })
        expect(r.code).toBe(1)
        expectOneErrorLine(r, code)
      }
      const empty = await cli(['put', 'posts', 'x', '--data', aDir], { input: '' })
      expect(empty.code).toBe(2)
    })

    it('works with --api and --token, and rejects a wrong token', async () => {
      const token = JSON.parse(await readFile(join(aDir, 'api.json'), 'utf8')).token as string
      const ok = await cli(['get', 'posts', '1', '--api', aReady.api, '--token', token])
      expect(ok.code, ok.stderr).toBe(0)
      const bad = await cli(['get', 'posts', '1', '--api', aReady.api, '--token', 'wrong'])
      expect(bad.code).toBe(1)
      expectOneErrorLine(bad, 'UNAUTHORIZED')
    })

    it('imports a file with progress on stderr and exports it again', async () => {
      const file = join(root, 'in.ndjson')
      const lines: string[] = []
      for (let i = 0; i < 5000; i++) lines.push(JSON.stringify({ id: `r${String(i).padStart(5, '0')}`, value: { i } }))
      await writeFile(file, lines.join('\n') + '\n')
      const imp = await cli(['import', 'bulk', file, '--data', aDir, '--json'])
      expect(imp.code, imp.stderr).toBe(0)
      expect(JSON.parse(imp.stdout)).toEqual({ imported: 5000 })
      expect(imp.stderr).toMatch(/imported 5,000 records into bulk/)
      const exp = await cli(['export', 'bulk', '--data', aDir])
      expect(exp.code).toBe(0)
      expect(exp.stdout).toBe(lines.join('\n') + '\n')

      const viaStdin = await cli(['import', 'bulk2', '-', '--data', aDir, '--json'], { input: lines.slice(0, 10).join('\n') })
      expect(viaStdin.code, viaStdin.stderr).toBe(0)
      expect(JSON.parse(viaStdin.stdout)).toEqual({ imported: 10 })
    })

    it('names the bad line of an import and the missing file', async () => {
      const file = join(root, 'bad.ndjson')
      await writeFile(file, '{"id":"a","value":{}}\n{"id":"b","value":[]}\n')
      const bad = await cli(['import', 'badimp', file, '--data', aDir])
      expect(bad.code).toBe(1)
      expectOneErrorLine(bad, 'INVALID_NDJSON')
      expect(bad.stderr).toMatch(/line 2/)
      const missing = await cli(['import', 'badimp', join(root, 'nope.ndjson'), '--data', aDir])
      expect(missing.code).toBe(1)
      expectOneErrorLine(missing, 'FILE_NOT_FOUND')
    })

    it('peers, platforms, rules, status and wait', async () => {
      const added = await cli(['peer', 'add', aReady.multiaddrs[0] as string, '--data', bDir, '--json'])
      expect(added.code, added.stderr).toBe(0)
      expect(JSON.parse(added.stdout).peerId).toBe(aReady.peerId)

      const peers = await cli(['peer', 'ls', '--data', bDir, '--json'])
      expect(JSON.parse(peers.stdout).map((p: { peerId: string }) => p.peerId)).toContain(aReady.peerId)
      const peerTable = await cli(['peer', 'ls', '--data', bDir])
      expect(peerTable.stdout).toMatch(/^PEER\s+CONNECTED/)
      expect(peerTable.stdout).toContain(aReady.peerId)

      const platform = await cli(['platform', 'add', 'gamma', '--peer', bReady.peerId, '--region', 'eu', '--addr', '/ip4/127.0.0.1/tcp/1', '--data', aDir, '--json'])
      expect(platform.code, platform.stderr).toBe(0)
      expect(JSON.parse(platform.stdout)).toMatchObject({ name: 'gamma', peerId: bReady.peerId, region: 'eu', addrs: ['/ip4/127.0.0.1/tcp/1'] })
      const platforms = await cli(['platform', 'ls', '--data', aDir, '--json'])
      expect(JSON.parse(platforms.stdout).map((p: { name: string }) => p.name)).toEqual(expect.arrayContaining(['alpha', 'gamma']))
      expect((await cli(['platform', 'rm', 'gamma', '--data', aDir])).code).toBe(0)
      const rmAgain = await cli(['platform', 'rm', 'gamma', '--data', aDir])
      expect(rmAgain.code).toBe(1)
      expectOneErrorLine(rmAgain, 'NOT_FOUND')

      // a rule naming a platform the registry lacks is refused: alpha learns beta from the link first
      await waitFor(async () => (JSON.parse((await cli(['platform', 'ls', '--data', aDir, '--json'])).stdout) as Array<{ name: string }>).some(p => p.name === 'beta'), 'alpha to know beta', 30_000)
      const rule = await cli(['rule', 'add', '--from', 'alpha:posts', '--to', 'beta:articles', '--mode', 'merge', '--where', '{"title":"one"}', '--rename', 'title=headline', '--data', aDir])
      expect(rule.code, rule.stderr).toBe(0)
      const ruleId = rule.stdout.trim()
      expect(ruleId).not.toBe('')
      const rules = await cli(['rule', 'ls', '--data', aDir, '--json'])
      expect(JSON.parse(rules.stdout)).toEqual([expect.objectContaining({ id: ruleId, from: { platform: 'alpha', collection: 'posts' }, to: { platform: 'beta', collection: 'articles' }, rename: { title: 'headline' } })])
      const dry = await cli(['rule', 'add', '--from', 'alpha:posts', '--to', 'beta:x', '--dry-run', '--data', aDir])
      expect(dry.code, dry.stderr).toBe(0)
      expect(dry.stdout).toContain('dry run on alpha')
      expect(dry.stdout).toContain('nothing was changed')
      expect(JSON.parse((await cli(['rule', 'ls', '--data', aDir, '--json'])).stdout)).toHaveLength(1)

      const wait = await cli(['wait', '--timeout', '30', '--data', bDir, '--json'])
      expect(wait.code, wait.stderr).toBe(0)
      expect(JSON.parse(wait.stdout)).toMatchObject({ caughtUp: true })

      // the rule carries posts/1 to beta as articles/1
      let got: Result | undefined
      for (let i = 0; i < 100; i++) {
        got = await cli(['get', 'articles', '1', '--data', bDir])
        if (got.code === 0) break
        await new Promise((resolve) => setTimeout(resolve, 200))
      }
      expect(got?.code, got?.stderr).toBe(0)
      expect(JSON.parse(got?.stdout ?? '')).toEqual({ headline: 'one' })

      const status = await cli(['status', '--data', bDir])
      expect(status.code).toBe(0)
      expect(status.stdout).toMatch(/PEERS \(1 of 1 connected\)/)
      expect(status.stdout).toMatch(/ORIGINS/)
      expect(status.stdout).toContain('alpha:posts → beta:articles')
      const statusJson = await cli(['status', '--data', bDir, '--json'])
      expect(JSON.parse(statusJson.stdout)).toMatchObject({ name: 'beta', peerId: bReady.peerId })

      expect((await cli(['rule', 'rm', ruleId, '--data', aDir])).code).toBe(0)
      const removed = await cli(['peer', 'rm', aReady.peerId, '--data', bDir, '--json'])
      expect(removed.code, removed.stderr).toBe(0)
      expect(JSON.parse(removed.stdout)).toEqual({ removed: true })
    }, 60_000)

    it('fails to start a second node on a port in use', async () => {
      const dir = join(root, 'third')
      expect((await cli(['init', '--data', dir, '--name', 'third'])).code).toBe(0)
      const port = new URL(aReady.api).port
      const r = await cli(['start', '--data', dir, '--key', KEY, '--listen', '/ip4/127.0.0.1/tcp/0', '--api', `127.0.0.1:${port}`])
      expect(r.code).toBe(1)
      expectOneErrorLine(r, 'API_PORT_IN_USE')
    })

    it('stops cleanly on SIGTERM with exit 0 and removes api.json', async () => {
      const dir = join(root, 'stopper')
      expect((await cli(['init', '--data', dir, '--name', 'stopper'])).code).toBe(0)
      const proc = new NodeProc(['--data', dir, '--listen', '/ip4/127.0.0.1/tcp/0', '--api', '127.0.0.1:0'], { SYNCMESH_KEY: KEY })
      const ready = await proc.ready
      expect(ready.api).toBe(JSON.parse(await readFile(join(dir, 'api.json'), 'utf8')).url)
      expect(await proc.stop()).toBe(0)
      expect(existsSync(join(dir, 'api.json'))).toBe(false)
      const after = await cli(['status', '--data', dir])
      expect(after.code).toBe(1)
      expectOneErrorLine(after, 'NODE_NOT_RUNNING')
    }, 60_000)
  })
})
