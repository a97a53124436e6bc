// The bench client is a measuring tool: these check it measures and verifies, briefly (the
// figures themselves come from `npm run bench`, never from tests).
import { spawnSync } from 'node:child_process';
import { describe, expect, it, onTestFinished } from 'vitest';
import { runBench } from '../src/client/bench.js';
import { startUdpEchoServer } from '../src/index.js';
import { echoServer, plainServer, socatListen, spawnCli } from './helpers.js';

const base = {
  host: '127.0.0.1',
  connections: 4,
  durationMs: 300,
  size: 64,
  pipeline: 1,
  warmupMs: 0,
} as const;
const hasSocat = spawnSync('socat', ['-V'], { stdio: 'ignore' }).status === 0;

describe('echo-client bench', () => {
  it('pingpong: round trips counted, latency percentiles ordered, every byte verified', async () => {
    const srv = await echoServer();
    const r = await runBench({ ...base, port: srv.address.port, mode: 'pingpong', pipeline: 4 });
    expect(r.count).toBeGreaterThan(100);
    expect(r.mismatches).toBe(0);
    expect(r.errors).toEqual({});
    const l = r.latency_us;
    expect(l.p50).toBeGreaterThan(0);
    expect(l.p50).toBeLessThanOrEqual(l.p90);
    expect(l.p90).toBeLessThanOrEqual(l.p99);
    expect(l.p99).toBeLessThanOrEqual(l.max);
    // the server echoed exactly what the client counted, plus what was in flight at the stop
    await srv.close();
    expect(srv.stats().bytesIn).toBeGreaterThanOrEqual(r.count * 64);
  });

  it('stream and connect modes', async () => {
    const srv = await echoServer();
    const st = await runBench({
      ...base,
      port: srv.address.port,
      mode: 'stream',
      connections: 1,
      size: 65536,
    });
    expect(st.mb_per_s).toBeGreaterThan(1);
    expect(st.mismatches).toBe(0);
    const cn = await runBench({ ...base, port: srv.address.port, mode: 'connect' });
    expect(cn.count).toBeGreaterThan(10);
    expect(cn.rate_per_s).toBeGreaterThan(0);
    expect(srv.stats().connections).toBeGreaterThanOrEqual(cn.count + 1);
  });

  it('--requests stops after that many round trips', async () => {
    const srv = await echoServer();
    const r = await runBench({
      ...base,
      port: srv.address.port,
      mode: 'pingpong',
      connections: 1,
      requests: 500,
      durationMs: 5000,
    });
    expect(r.count).toBe(500);
  });

  it('open loop (--rate): sends on schedule, about rate × duration', async () => {
    const srv = await echoServer();
    const r = await runBench({
      ...base,
      port: srv.address.port,
      mode: 'pingpong',
      rate: 2000,
      durationMs: 500,
    });
    // open loop: never more than scheduled — 2000/s over the measured time, plus what was in
    // flight when the window opened (5 %: the ticks are 1-10 ms apart); a loaded machine may see fewer
    expect(r.count).toBeLessThanOrEqual(Math.ceil(2000 * r.duration_s * 1.05) + r.connections);
    expect(r.count).toBeGreaterThan(2000 * r.duration_s * 0.3);
  });

  it('UDP ping-pong with datagrams outstanding', async () => {
    const srv = await startUdpEchoServer({ port: 0, rateLimit: 0 });
    onTestFinished(() => srv.close().then(() => {}));
    const r = await runBench({
      ...base,
      port: srv.address.port,
      mode: 'pingpong',
      udp: true,
      connections: 8,
    });
    expect(r.count).toBeGreaterThan(100);
    expect(r.mismatches).toBe(0);
  });

  it('detects a server that alters bytes', async () => {
    const { port } = await plainServer(
      (s) => {
        s.on('data', (d: Buffer) => s.write(Buffer.from(d).fill(0x41, 0, 1)));
      },
      { allowHalfOpen: false },
    );
    const r = await runBench({ ...base, port, mode: 'pingpong', connections: 1 });
    expect(r.mismatches).toBeGreaterThan(0);
  });

  it('CLI --json prints the SPEC §6 object', async () => {
    const srv = await echoServer();
    const p = spawnCli('echo-client', [
      'bench',
      '127.0.0.1',
      String(srv.address.port),
      '-c',
      '2',
      '-d',
      '300ms',
      '--warmup',
      '0',
      '--json',
    ]);
    expect((await p.exit).code).toBe(0);
    const j = JSON.parse(p.stdout());
    expect(Object.keys(j)).toEqual(
      expect.arrayContaining([
        'mode',
        'connections',
        'duration_s',
        'count',
        'rate_per_s',
        'mb_per_s',
        'latency_us',
        'errors',
      ]),
    );
    expect(Object.keys(j.latency_us)).toEqual(expect.arrayContaining(['p50', 'p90', 'p99', 'p999', 'max']));
    const bad = spawnCli('echo-client', ['bench', '-c', '0']);
    expect((await bad.exit).code).toBe(2);
    expect(bad.stderr()).toMatch(/--connections 0/);
  });

  it.skipIf(!hasSocat)('works against socat as the echo server', async () => {
    const { port } = await socatListen('PIPE', ',fork');
    const r = await runBench({ ...base, port, mode: 'pingpong', connections: 2 });
    expect(r.count).toBeGreaterThan(10);
    expect(r.mismatches).toBe(0);
  });
});
if (!hasSocat) console.warn('skipped the socat bench test: socat is not installed');
