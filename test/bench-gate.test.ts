// CI gates: --threshold (each kind passing and failing: exit 3 naming the threshold and the
// measured value) and --abort-on (stops early, exit 3); bad conditions exit 2 naming the flag.
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { echoServer, plainServer, refusal, spawnCli } from './helpers.js';

const short = ['-c', '2', '-d', '400ms', '--warmup', '0'];

async function bench(port: number, ...args: string[]) {
  const p = spawnCli('echo-client', ['bench', '-p', String(port), ...short, ...args]);
  const { code } = await p.exit;
  return { code, out: p.stdout(), err: p.stderr() };
}

describe('bench --threshold', () => {
  it('latency (pNN): a bound that holds passes, one that cannot fails with the measured p99', async () => {
    const { address } = await echoServer();
    const ok = await bench(address.port, '--threshold', 'p99<60s', '--threshold', 'p99.9<=60000ms');
    expect(ok.code, ok.err).toBe(0);
    const bad = await bench(address.port, '--threshold', 'p99<1ns', '--threshold', 'p50<60s');
    expect(bad.code, bad.err).toBe(3);
    expect(bad.err).toMatch(/echo-client: threshold p99<1ns failed: p99 was \d+(\.\d+)?ns/);
    expect(bad.err).not.toMatch(/p50<60s/);
    expect(bad.out).toMatch(/round trips/); // the figures are still printed
  });

  it('rate: passes above a low bound, fails above an unreachable one', async () => {
    const { address } = await echoServer();
    expect((await bench(address.port, '--threshold', 'rate>1')).code).toBe(0);
    const bad = await bench(address.port, '--threshold', 'rate>100000000');
    expect(bad.code, bad.err).toBe(3);
    expect(bad.err).toMatch(/threshold rate>100000000 failed: rate was [1-9]\d*/);
  });

  it('errors: 0 against a healthy server, not 0 against one that resets every other connection', async () => {
    const { address } = await echoServer();
    expect((await bench(address.port, '--threshold', 'errors==0')).code).toBe(0);
    let n = 0;
    const { port } = await plainServer(
      (s: Socket) => {
        if (n++ % 2 === 1) s.resetAndDestroy();
        else s.on('data', (d) => s.write(d));
      },
      { allowHalfOpen: false },
    );
    const bad = await bench(port, '-c', '4', '--threshold', 'errors==0');
    expect(bad.code, bad.err).toBe(3);
    expect(bad.err).toMatch(/threshold errors==0 failed: errors was [1-9]/);
  });

  it('mismatches: 0 against an echo, exit 3 (not 1) with the count against a server that alters bytes', async () => {
    const { address } = await echoServer();
    expect((await bench(address.port, '--threshold', 'mismatches==0')).code).toBe(0);
    const { port } = await plainServer(
      (s: Socket) => s.on('data', (d: Buffer) => s.write(Buffer.from(d).fill(0x41, 0, 1))),
      { allowHalfOpen: false },
    );
    const bad = await bench(port, '--threshold', 'mismatches==0');
    expect(bad.code, bad.err).toBe(3);
    expect(bad.err).toMatch(/threshold mismatches==0 failed: mismatches was [1-9]/);
  });

  it('--abort-on stops the run early once its condition holds, exit 3 naming it', async () => {
    const { address } = await echoServer();
    const t0 = performance.now();
    const r = await bench(address.port, '-d', '60s', '--abort-on', 'count>50', '--json');
    expect(r.code, r.err).toBe(3);
    expect(performance.now() - t0).toBeLessThan(30_000);
    expect(r.err).toMatch(/stopped early: --abort-on count>50 held \(count was \d+\)/);
    const j = JSON.parse(r.out);
    expect(j.count).toBeGreaterThan(50);
    expect(j.duration_s).toBeLessThan(30);
    // a condition that never holds lets the run finish
    const ok = await bench(address.port, '--abort-on', 'errors>100');
    expect(ok.code, ok.err).toBe(0);
  });

  it('--abort-on errors>N against a server that resets connections', async () => {
    let n = 0;
    const { port } = await plainServer(
      (s: Socket) => {
        if (n++ % 2 === 1) s.resetAndDestroy();
        else s.on('data', (d) => s.write(d));
      },
      { allowHalfOpen: false },
    );
    const t0 = performance.now();
    const r = await bench(port, '--mode', 'connect', '-d', '60s', '--abort-on', 'errors>20');
    expect(performance.now() - t0).toBeLessThan(30_000);
    expect(r.code, r.err).toBe(3);
    expect(r.err).toMatch(/--abort-on errors>20 held \(errors was \d+\)/);
  });

  it('bad conditions exit 2 naming the flag', async () => {
    for (const [argv, re] of [
      [['--threshold', 'p99<5'], /--threshold p99<5: p99 is a time: give a unit/],
      [['--threshold', 'latency<5ms'], /--threshold latency<5ms: unknown metric latency/],
      [['--threshold', 'p99'], /--threshold p99: is METRIC OP VALUE/],
      [['--threshold', 'errors==none'], /errors is compared with a number/],
      [['--abort-on', 'mean>5ms'], /--abort-on mean>5ms: reads errors, mismatches, count, rate or pNN/],
      [['--strict-rate'], /--strict-rate: needs --rate/],
    ] as [string[], RegExp][]) {
      const r = await refusal('echo-client', ['bench', ...argv]);
      expect(r.code, argv.join(' ')).toBe(2);
      expect(r.stderr).toMatch(re);
    }
  });
});
