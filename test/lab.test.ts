// The echo-lab scenarios, run exactly as `echo-lab NAME` runs them: demo and test cannot drift.
import { describe, expect, it } from 'vitest';
import { runScenario, SCENARIOS } from '../src/index.js';
import { netnsUnavailable } from '../src/lab/netns.js';
import { spawnCli } from './helpers.js';

const expectedErrors: Record<string, string[]> = {
  eaddrinuse: ['EADDRINUSE'],
  'time-wait': ['EADDRINUSE'],
  'client-port': ['EADDRINUSE'],
  econnrefused: ['ECONNREFUSED'],
  epipe: ['EPIPE'],
  econnreset: ['ECONNRESET'],
  'connect-timeout': ['ETIMEDOUT'],
  'half-close': [],
  sockopts: [],
  backlog: [],
  keepalive: ['ETIMEDOUT'],
  'user-timeout': ['ETIMEDOUT'],
  unreachable: ['EHOSTUNREACH', 'ENETUNREACH'],
};

const noNetns = process.platform === 'linux' ? netnsUnavailable() : 'Linux only';
if (noNetns) console.warn(`skipping the network-namespace scenarios: ${noNetns}`);
const linux = process.platform === 'linux';

/** Each scenario runs once; the tests that look at its result share that run. */
const runs = new Map<string, ReturnType<typeof runScenario>>();
const run = (name: string) => {
  if (!runs.has(name)) runs.set(name, runScenario(name));
  return runs.get(name)!;
};

describe.runIf(linux)('echo-lab scenarios', () => {
  // the namespace scenarios take seconds each (they wait for the kernel's timers): run them concurrently
  describe.concurrent('reproduce what the tutorials show', () => {
    for (const s of SCENARIOS) {
      it.skipIf(s.netns && !!noNetns)(s.name, async () => {
        const r = await run(s.name);
        expect(r.skipped).toBeUndefined();
        expect(r.checks.filter((c) => !c.ok)).toEqual([]);
        expect(r.ok).toBe(true);
        expect(r.errors.map((e) => e.code)).toEqual(expectedErrors[s.name]);
        // every error is explained from the shared table
        for (const e of r.errors) expect(e.line).toMatch(new RegExp(`${e.code}( \\S+)? — .+\\.`));
      });
    }
  });

  it('the TCP states the tutorials show are observed', async () => {
    const hc = await run('half-close');
    const states = hc.states.flatMap((s) => s.entries.map((e) => e.state));
    expect(states).toEqual(expect.arrayContaining(['FIN_WAIT2', 'CLOSE_WAIT', 'TIME_WAIT']));
    const tw = await run('time-wait');
    expect(tw.states[0]!.entries.map((e) => e.state)).toContain('TIME_WAIT');
  });

  it('echo-lab prints steps, the explained errno and the states; --json is the same result', async () => {
    const p = spawnCli('echo-lab', ['time-wait']);
    expect((await p.exit).code).toBe(0);
    const out = p.stdout();
    expect(out).toMatch(/^echo-lab time-wait: /);
    expect(out).toMatch(
      /EADDRINUSE: bind EADDRINUSE 127\.0\.0\.1:\d+ — another socket holds that address and port/,
    );
    expect(out).toMatch(/tcp {2}127\.0\.0\.1:\d+ +127\.0\.0\.1:\d+ +TIME_WAIT/);
    expect(out).toMatch(/reproduced as expected/);
    const j = spawnCli('echo-lab', ['econnrefused', '--json']);
    expect((await j.exit).code).toBe(0);
    const r = JSON.parse(j.stdout());
    expect(r).toMatchObject({ name: 'econnrefused', ok: true, errors: [{ code: 'ECONNREFUSED' }] });
  });

  it('echo-lab all --json prints one JSON array; the text form ends with a summary line', async () => {
    const j = spawnCli('echo-lab', ['all', '--json']);
    expect((await j.exit).code).toBe(0);
    const all = JSON.parse(j.stdout()); // one document, not one per line
    expect(all.map((r: { name: string }) => r.name)).toEqual(SCENARIOS.map((s) => s.name));
    const t = spawnCli('echo-lab', ['all']);
    expect((await t.exit).code).toBe(0);
    expect(t.stdout()).toMatch(
      new RegExp(`\\n${SCENARIOS.length} scenarios: \\d+ reproduced, 0 not, \\d+ skipped[^\\n]*\\n$`),
    );
  }, 90_000);

  it('echo-lab list names every scenario; an unknown one exits 2', async () => {
    const p = spawnCli('echo-lab', ['list']);
    expect((await p.exit).code).toBe(0);
    for (const s of SCENARIOS) expect(p.stdout()).toContain(s.name);
    const bad = spawnCli('echo-lab', ['nope']);
    expect((await bad.exit).code).toBe(2);
    expect(bad.stderr()).toMatch(/^echo-lab: SCENARIO nope: unknown/);
  });
});
