/**
 * The API's bearer tokens: a full token (every route) and a read-only token
 * (GET routes: status, records, metrics, the console without changes). They
 * are kept in DATA_DIR/api-tokens.json (mode 0600) so that scrapers and
 * remote clients keep working across restarts, and rotated on demand.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { chmod, readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import { ConfigError } from '../core/errors.js'

export const TOKENS_FILE = 'api-tokens.json'
const TOKENS_VERSION = 1

export type TokenKind = 'full' | 'read-only'

export interface ApiTokens {
  full: string
  readOnly: string
}

const fileSchema = z.object({ version: z.literal(TOKENS_VERSION), full: z.string().min(16), readOnly: z.string().min(16) })

export function newToken (): string {
  return randomBytes(32).toString('hex')
}

function digest (value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest()
}

async function writeTokens (data: string, tokens: ApiTokens): Promise<void> {
  const path = join(data, TOKENS_FILE)
  const tmp = `${path}.tmp`
  await writeFile(tmp, JSON.stringify({ version: TOKENS_VERSION, ...tokens }) + '\n', { mode: 0o600 })
  await chmod(tmp, 0o600)
  await rename(tmp, path)
}

/** The tokens kept in `data`, created on first use. A `fullTokenFile` (operator-managed) replaces the kept full token. */
export async function loadTokens (data: string, options: { fullTokenFile?: string } = {}): Promise<ApiTokens> {
  const path = join(data, TOKENS_FILE)
  let tokens: ApiTokens | undefined
  let text: string | undefined
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new ConfigError(`cannot read ${path}: ${(err as Error).message}`, 'API_TOKENS_UNREADABLE')
  }
  if (text !== undefined) {
    let raw: unknown
    try {
      raw = JSON.parse(text)
    } catch {
      raw = undefined
    }
    const parsed = fileSchema.safeParse(raw)
    if (!parsed.success) throw new ConfigError(`${path} is not a valid token file; delete it to have the node create new tokens (clients then need the new ones)`, 'API_TOKENS_INVALID')
    tokens = { full: parsed.data.full, readOnly: parsed.data.readOnly }
  }
  if (tokens === undefined) {
    tokens = { full: newToken(), readOnly: newToken() }
    await writeTokens(data, tokens)
  }
  if (options.fullTokenFile !== undefined) tokens = { ...tokens, full: await readTokenFile(options.fullTokenFile) }
  return tokens
}

export async function readTokenFile (file: string): Promise<string> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    throw new ConfigError(`cannot read the API token file ${file}: ${(err as Error).message}`, 'API_TOKEN_FILE_UNREADABLE')
  }
  const token = text.trim()
  if (token.length < 16 || /\s/.test(token)) throw new ConfigError(`the API token in ${file} must be at least 16 characters without spaces`, 'API_TOKEN_FILE_INVALID')
  return token
}

/** Replace one token in `data`'s token file; returns the tokens now kept. */
export async function rotateToken (data: string, kind: TokenKind): Promise<ApiTokens> {
  const current = await loadTokens(data)
  const next = kind === 'full' ? { ...current, full: newToken() } : { ...current, readOnly: newToken() }
  await writeTokens(data, next)
  return next
}

/** What a request's bearer token grants: checked in constant time against both tokens. */
export class TokenCheck {
  private full: Buffer
  private readOnly: Buffer | undefined

  constructor (full: string, readOnly?: string) {
    this.full = digest(full)
    this.readOnly = readOnly !== undefined ? digest(readOnly) : undefined
  }

  set (tokens: { full?: string, readOnly?: string }): void {
    if (tokens.full !== undefined) this.full = digest(tokens.full)
    if (tokens.readOnly !== undefined) this.readOnly = digest(tokens.readOnly)
  }

  /** 'full', 'read-only' or undefined for a missing or wrong token. */
  grants (header: string | undefined): TokenKind | undefined {
    const match = typeof header === 'string' ? /^Bearer[ ]+(\S+)\s*$/i.exec(header) : null
    const given = digest(match?.[1] ?? '')
    // compare with both, whatever the header, so timing says nothing
    const isFull = timingSafeEqual(given, this.full)
    const isReadOnly = this.readOnly !== undefined && timingSafeEqual(given, this.readOnly)
    if (match == null) return undefined
    if (isFull) return 'full'
    if (isReadOnly) return 'read-only'
    return undefined
  }
}
