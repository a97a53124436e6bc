import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // builds dist/ when src/ is newer: the spawned CLIs must run the current code
    globalSetup: ['test/global-setup.ts'],
    include: ['test/soak/**/*.test.ts'],
    env: { SOAK: 'full' },
    testTimeout: 300_000,
    hookTimeout: 60_000,
    // one scenario at a time: each one loads the machine on purpose
    fileParallelism: false,
    maxWorkers: 1,
  },
});
