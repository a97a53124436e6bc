// The bench client is a measuring tool: these check it measures and verifies, briefly (the
// figures themselves come from `npm run bench`, never from tests).
import { spawnSync } from 'node:child_process';
import { describe, expect, it, onTestFinished } from 'vitest';
import { runBench } from '../src/client/bench.js';
import { startUdpEchoServer } from '../src/index.js';
import { echoServer, plainServer, refusal, socatListen, spawnCli, until } from './helpers.js';

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

  it('Ctrl-C stops a bench in every mode and prints what was measured, then exits 130', async () => {
    // the server counts what it sees; the signal goes once the client has surely had replies
    let seen = 0;
    let conns = 0;
    const { port } = await plainServer(
      (s) => {
        conns++;
        s.on('data', (d: Buffer) => {
          seen += d.length;
          s.write(d);
        });
      },
      { allowHalfOpen: false },
    );
    const udp = await startUdpEchoServer({ port: 0, rateLimit: 0 });
    onTestFinished(() => udp.close().then(() => {}));
    let udpBase = 0;
    const cases: [string[], () => boolean][] = [
      [['--mode', 'pingpong', '-c', '1'], () => seen >= 64 * 1024], // strict ping-pong: 1,000 round trips
      [['--mode', 'stream', '-c', '1'], () => seen >= 16 << 20], // at most 4 MiB ahead of its echo
      [['--mode', 'connect', '-c', '2'], () => conns >= 10], // each worker's next starts when one is done
      [['--udp', '-c', '2'], () => udp.stats().datagramsIn - udpBase >= 20], // a new one per answer
    ];
    for (const [args, enough] of cases) {
      seen = 0;
      conns = 0;
      udpBase = udp.stats().datagramsIn;
      const target = args[0] === '--udp' ? udp.address.port : port;
      const p = spawnCli('echo-client', [
        'bench',
        ...args,
        ...['-d', '60s', '--warmup', '0', '--json', '127.0.0.1', String(target)],
      ]);
      await until(enough, 15_000, args.join(' '));
      p.child.kill('SIGINT');
      expect((await p.exit).code, p.stderr()).toBe(130);
      const j = JSON.parse(p.stdout());
      expect(j.interrupted, args.join(' ')).toBe(true);
      expect(j.count, args.join(' ')).toBeGreaterThan(0);
      expect(j.mismatches).toBe(0);
      expect(j.duration_s).toBeLessThan(60);
      expect(p.stderr()).not.toMatch(/\n\s+at /);
    }
    // the table says so too; SIGTERM exits 143
    const t = spawnCli('echo-client', [
      'bench',
      '-c',
      '1',
      '-d',
      '60s',
      '--warmup',
      '0',
      '127.0.0.1',
      String(port),
    ]);
    seen = 0;
    await until(() => seen >= 64 * 1024, 15_000, 'text');
    t.child.kill('SIGTERM');
    expect((await t.exit).code).toBe(143);
    expect(t.stdout()).toMatch(/^duration +[\d.]+ s \(interrupted: the figures cover this much\)$/m);
    expect(t.stdout()).toMatch(/^verified +every echoed byte matched$/m);
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
    const bad = await refusal('echo-client', ['bench', '-c', '0']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--connections 0/);
  });

  it.skipIf(!hasSocat)('works against socat as the echo server', async () => {
    const { port } = await socatListen('PIPE', ',fork');
    const r = await runBench({ ...base, port, mode: 'pingpong', connections: 2 });
    expect(r.count).toBeGreaterThan(10);
    expect(r.mismatches).toBe(0);
  });
});
if (!hasSocat) console.warn('skipped the socat bench test: socat is not installed');
