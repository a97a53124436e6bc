// Open loop (--rate): messages leave on time, response time counts from the intended send time,
// service time from the actual write, and the generator's own lateness is reported; with
// --strict-rate a generator that could not keep the rate fails the run (exit 3).
import { describe, expect, it } from 'vitest';
import { runBench } from '../src/client/bench.js';
import { echoServer, spawnCli } from './helpers.js';

const base = { host: '127.0.0.1', size: 64, pipeline: 1, warmupMs: 0, mode: 'pingpong' } as const;

describe('bench open loop', () => {
  it('sends on schedule and reports response time, service time and generator lateness', async () => {
    const srv = await echoServer();
    const r = await runBench({
      ...base,
      port: srv.address.port,
      connections: 1,
      rate: 50,
      durationMs: 2000,
    });
    const ol = r.open_loop!;
    expect(ol).toBeDefined();
    expect(ol.target_rate).toBe(50);
    // the schedule: 50/s over the measured time, give or take the message due at each end
    expect(Math.abs(ol.due - 50 * r.duration_s)).toBeLessThanOrEqual(2);
    expect(ol.sent).toBeLessThanOrEqual(ol.due);
    expect(r.count).toBeGreaterThan(0);
    expect(r.count).toBeLessThanOrEqual(ol.sent + 1);
    // response time counts from the intended send, so it is never below the service time
    expect(r.service_us).toBeDefined();
    expect(r.latency_us.p50).toBeGreaterThanOrEqual(r.service_us!.p50);
    expect(r.service_histogram!.count).toBe(r.histogram!.count);
    // a gross bound only: an idle machine gives a lateness p50 of tens of µs, one loaded far past
    // its cores (load average 13 on 2) 1-4 ms; a pacer that batched sends per interval (20 ms)
    // would give about 10 ms
    expect(ol.lateness_us.p50).toBeLessThan(5000);
    expect(r.latency_us.p50).toBeLessThan(6000);
  });

  it('rate split over connections: the total rate is kept, not rate per connection', async () => {
    const srv = await echoServer();
    const r = await runBench({ ...base, port: srv.address.port, connections: 8, rate: 400, durationMs: 800 });
    expect(Math.abs(r.open_loop!.due - 400 * r.duration_s)).toBeLessThanOrEqual(2);
    expect(r.count).toBeLessThanOrEqual(r.open_loop!.due + 8);
  });

  it('a generator that cannot keep the rate says so; --strict-rate exits 3', async () => {
    const srv = await echoServer();
    const args = ['bench', '-p', String(srv.address.port), '-c', '1', '-d', '500ms', '--warmup', '0'];
    const fast = spawnCli('echo-client', [...args, '--rate', '10000000', '--strict-rate', '--json']);
    const { code } = await fast.exit;
    expect(code, fast.stderr()).toBe(3);
    const r = JSON.parse(fast.stdout());
    expect(r.open_loop.rate_kept).toBe(false);
    expect(r.open_loop.sent).toBeLessThan(r.open_loop.due);
    expect(fast.stderr()).toMatch(
      /--strict-rate: the generator did not keep 10000000\/s \(sent \d+ of \d+ due/,
    );
    // the same without --strict-rate: reported, not failed
    const lax = spawnCli('echo-client', [...args, '--rate', '10000000']);
    expect((await lax.exit).code, lax.stderr()).toBe(0);
    expect(lax.stdout()).toMatch(/generator +\d+\/\d+ sent of 10000000\/s.*RATE NOT KEPT/);
  });

  it('--strict-rate exits 3 exactly when the result says the rate was not kept', async () => {
    const srv = await echoServer();
    const p = spawnCli('echo-client', [
      'bench',
      '-p',
      String(srv.address.port),
      ...['-c', '2', '-d', '500ms', '--warmup', '0', '--rate', '100', '--strict-rate', '--json'],
    ]);
    const { code } = await p.exit;
    const r = JSON.parse(p.stdout());
    expect(code, p.stderr()).toBe(r.open_loop.rate_kept ? 0 : 3);
  });
});
