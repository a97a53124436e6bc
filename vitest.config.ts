import { relative } from 'node:path';
import { defineConfig } from 'vitest/config';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * Files in one consistent order: those without a duration from an earlier run (a fresh clone,
 * a new file) first, larger before smaller; then the rest, longest first, by that duration.
 * Vitest's own order compares a file without a duration to the others by size and the rest by
 * duration: with a few new files that order is no order, and a long file can start last and
 * hold the run for its whole length on one worker while the others are idle.
 */
class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const { cache, config } = this.ctx;
    const key = (f: TestSpecification) => `${f.project.name}:${relative(config.root, f.moduleId)}`;
    const last = (f: TestSpecification) => cache.getFileTestResults(key(f))?.duration;
    const size = (f: TestSpecification) => cache.getFileStats(key(f))?.size ?? 0;
    return [...files].sort((a, b) => {
      const [da, db] = [last(a), last(b)];
      if (da === undefined || db === undefined) {
        if (da !== db) return da === undefined ? -1 : 1;
        return size(b) - size(a);
      }
      return db - da;
    });
  }
}

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
    sequence: { sequencer: LongestFirst },
  },
});
