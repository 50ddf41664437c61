/**
 * The package's version (package.json `version`), read once: the CLI's
 * --version, the API's OpenAPI document and the `syncmesh_build_info` metric.
 */
import { readFileSync } from 'node:fs'

let cached: string | undefined

/** The version of the syncmesh package this code belongs to ("0.0.0" if its package.json is not found). */
export function packageVersion (): string {
  if (cached !== undefined) return cached
  cached = '0.0.0'
  // src/core/version.ts and dist/src/core/version.js
  for (const rel of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string, version?: string }
      if (pkg.name === 'syncmesh' && typeof pkg.version === 'string') {
        cached = pkg.version
        break
      }
    } catch {}
  }
  return cached
}
