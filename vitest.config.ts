import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // builds dist/ when src/ is newer: the spawned CLIs must run the current code
    globalSetup: ['test/global-setup.ts'],
    // test/soak runs here in its short form; `npm run test:soak` runs it in full
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // most of a test's time is a spawned process or the kernel's timers: three workers keep both
    // cores of the 2-core machines busy (npm test ~2 min idle) with bounds that hold under load
    maxWorkers: 3,
  },
});
