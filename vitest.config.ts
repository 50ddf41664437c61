import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    setupFiles: ['./test/setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // end-to-end suites start real processes; keep the 2-core machine from oversubscribing
    maxWorkers: 2,
    fileParallelism: true
  }
})
