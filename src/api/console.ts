/**
 * The operator's console: a single page served by every node on its API
 * address, from files that ship in the package (src/console/), with no asset
 * from the network. The page holds no data and needs no token; it takes the
 * token from the URL's fragment (syncmesh console prints that URL) and sends
 * it as a bearer token on every API call.
 */
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { FastifyReply } from 'fastify'
import type { App } from './rules-routes.js'

const here = dirname(fileURLToPath(import.meta.url))
/** From src/api (tests) or dist/src/api (the build): the assets stay in src/console. */
const ASSET_DIRS = [join(here, '..', 'console'), join(here, '..', '..', '..', 'src', 'console')]

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml'
}

/** Nothing but the page's own files; no inline script or style; never framed. */
export const CONSOLE_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

export const CONSOLE_FILES = ['index.html', 'app.js', 'app.css']

export function isConsolePath (url: string): boolean {
  return url === '/' || url === '/favicon.ico' || url.startsWith('/console/')
}

function assetDir (): string | undefined {
  return ASSET_DIRS.find(d => existsSync(join(d, 'index.html')))
}

export async function registerConsoleRoutes (app: App): Promise<void> {
  const dir = assetDir()
  const files = new Map<string, { type: string, body: Buffer }>()
  if (dir !== undefined) {
    for (const name of CONSOLE_FILES) {
      files.set(name, { type: TYPES[name.slice(name.lastIndexOf('.'))], body: await readFile(join(dir, name)) })
    }
  }
  const send = (name: string) => async (_request: unknown, reply: FastifyReply) => {
    const file = files.get(name)
    if (file === undefined) {
      return await reply.code(404).send({ error: { code: 'CONSOLE_MISSING', message: 'the console files are not installed with this node (src/console in the package); reinstall syncmesh' } })
    }
    return await reply
      .header('content-security-policy', CONSOLE_CSP)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('cache-control', 'no-cache')
      .type(file.type)
      .send(file.body)
  }
  app.get('/', send('index.html'))
  // browsers ask for it on their own: no icon, and no 401 in their console
  app.get('/favicon.ico', async (_request, reply) => await reply.code(204).header('cache-control', 'max-age=86400').send())
  for (const name of CONSOLE_FILES) app.get(`/console/${name}`, send(name))
}
