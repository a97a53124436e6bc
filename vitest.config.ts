import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // builds dist/ when src/ is newer: the spawned CLIs must run the current code
    globalSetup: ['test/global-setup.ts'],
    // test/soak runs here in its short form; `npm run test:soak` runs it in full
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // socket tests are light; two workers keep the 2-core machines responsive
    maxWorkers: 2,
  },
});
