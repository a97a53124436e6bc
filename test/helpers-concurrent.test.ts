// The helpers' cleanups belong to the test that made them, also under describe.concurrent:
// a test that ends first must not close what a test still running holds.

import { describe, expect, it } from 'vitest';
import { afterTest, connect, plainServer, readN } from './helpers.js';

const log: string[] = [];

describe.concurrent('cleanups of concurrent tests', () => {
  // started a, b, c; b ends first, then c, then a
  for (const [name, ms] of [
    ['a', 300],
    ['b', 20],
    ['c', 150],
  ] as const) {
    it(name, async () => {
      const { port } = await plainServer((s) => s.pipe(s));
      const s = await connect(port);
      afterTest(() => log.push(`cleanup ${name}`));
      await new Promise((r) => setTimeout(r, ms)); // the three tests overlap: that is the subject
      s.write(name);
      expect((await readN(s, 1)).toString()).toBe(name);
      log.push(`end ${name}`);
    });
  }
});

it('each cleanup ran after its own test, none before it ended', () => {
  expect([...log].sort()).toEqual(['cleanup a', 'cleanup b', 'cleanup c', 'end a', 'end b', 'end c']);
  for (const n of ['a', 'b', 'c'])
    expect(log.indexOf(`cleanup ${n}`)).toBeGreaterThan(log.indexOf(`end ${n}`));
});
