// The tutorials' claims that echo-lab corrects, read from the run: socket options read back
// by the scenario beside what this test reads itself from the kernel.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { runScenario } from '../src/index.js';

const linux = process.platform === 'linux';

describe.runIf(linux)('echo-lab claims, from the run', () => {
  it("sockopts: a fresh socket's SO_SNDBUF is tcp_wmem's default; the connected one was autotuned", async () => {
    const r = await runScenario('sockopts');
    const wmem = readFileSync('/proc/sys/net/ipv4/tcp_wmem', 'utf8').trim().split(/\s+/).map(Number);
    const fresh = r.steps.find((s) => s.text.startsWith('SO_SNDBUF of a fresh TCP socket'));
    const connected = r.steps.find((s) => s.text.startsWith('SO_SNDBUF of the connected socket'));
    expect(fresh?.text).toContain(`: ${wmem[1]} `);
    const grown = Number(/: (\d+):/.exec(connected?.text ?? '')?.[1]);
    expect(grown).toBeGreaterThan(wmem[1]!);
    expect(grown).toBeLessThanOrEqual(wmem[2]!);
    expect(r.checks.filter((c) => !c.ok)).toEqual([]);
  });
});
