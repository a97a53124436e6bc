import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/soak/**/*.test.ts'],
    env: { SOAK: 'full' },
    testTimeout: 300_000,
    hookTimeout: 60_000,
    // one scenario at a time: each one loads the machine on purpose
    fileParallelism: false,
    maxWorkers: 1,
  },
});
