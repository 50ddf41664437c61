#!/usr/bin/env node
/**
 * The `syncmesh` command (package.json "bin"): sets what the process must
 * set before anything runs, then starts the CLI (main.ts).
 *
 * LevelDB's reads and batch writes run on libuv's thread pool (4 threads by
 * default). glibc gives each thread that allocates concurrently its own
 * malloc arena, and an arena keeps what was freed in it for reuse, so each
 * pool thread holds on to the high-water mark of its share of the native
 * memory the store churns through. Syncing a million records, a target's
 * anonymous memory reached 271–274 MB with 4 threads and 154 MB with 2, at
 * the same speed (`npm run profile:sync`, 5 interleaved pairs: 2.67 vs 2.66 s
 * for 100,000 records): LevelDB writes one batch at a time, and the API's
 * reads wait on the disk or the page cache, not on a core. So the pool has
 * DEFAULT_THREAD_POOL_SIZE threads unless the operator set
 * UV_THREADPOOL_SIZE.
 *
 * libuv reads UV_THREADPOOL_SIZE once, when the pool is first used, and
 * Node's ES module loader reads module files through the pool: an ES module
 * is too late to set it. Hence this file is CommonJS and imports the CLI
 * only once the variable is set.
 */
const DEFAULT_THREAD_POOL_SIZE = 2

if ((process.env.UV_THREADPOOL_SIZE ?? '').trim() === '') process.env.UV_THREADPOOL_SIZE = String(DEFAULT_THREAD_POOL_SIZE)

import('./main.js').catch((err: unknown) => {
  process.stderr.write(`error [START_FAILED]: cannot load the syncmesh CLI: ${(err as Error)?.stack ?? String(err)}\n`)
  process.exit(1)
})
