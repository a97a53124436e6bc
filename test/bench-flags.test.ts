// The bench's remaining flags: --find-rate (step search), -4/-6 and -p, --connect-timeout,
// --payload FILE and --csv.
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { boundPort, closeFd } from '../src/core/libc.js';
import { rawListenFd } from '../src/core/listen.js';
import {
  echoServer,
  matrix,
  plainServer,
  refusal,
  runEchoClient,
  SERVER_MODES,
  spawnServer,
} from './helpers.js';

const quick = ['-d', '300ms', '--warmup', '0'];

function tmpFile(name: string, data: Buffer | string): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'bench-flags-'));
  onTestFinished(() => rmSync(d, { recursive: true, force: true }));
  const f = path.join(d, name);
  writeFileSync(f, data);
  return f;
}

describe('bench --find-rate', () => {
  it('doubles while p99 holds, prints each step and the highest rate', async () => {
    const { address } = await echoServer();
    const r = await runEchoClient([
      'bench',
      '-p',
      String(address.port),
      ...['-c', '2', '--rate', '100', '--find-rate', '--p99', '30s', ...quick, '--json'],
    ]);
    const j = JSON.parse(r.out.toString());
    expect(j.p99_bound_us).toBe(30e6);
    expect(j.steps[0].rate).toBe(100);
    expect(j.steps.length).toBeGreaterThanOrEqual(2);
    // every step is on stderr (--json), each rate passed is double the one before until one fails
    expect(r.err.match(/^step +\d+ +rate +\d+\/s/gm)?.length).toBe(j.steps.length);
    const passed = j.steps.filter((s: { ok: boolean }) => s.ok);
    expect(j.max_rate).toBe(Math.max(0, ...passed.map((s: { rate: number }) => s.rate)));
    expect(r.code, r.err).toBe(j.max_rate > 0 ? 0 : 3);
  }, 120_000);

  it('a bound nothing meets: exit 3 saying so', async () => {
    const { address } = await echoServer();
    const r = await runEchoClient([
      'bench',
      '-p',
      String(address.port),
      ...['-c', '1', '--rate', '50', '--find-rate', '--p99', '1us', ...quick],
    ]);
    expect(r.code, r.err).toBe(3);
    expect(r.out.toString()).toMatch(/step +1 +rate +50\/s .*FAIL \(/);
    expect(r.out.toString()).toMatch(/no rate tried kept p99 ≤ 1 µs/);
  });

  it('refusals', async () => {
    for (const [argv, re] of [
      [['--find-rate'], /--find-rate: needs --p99/],
      [['--p99', '5ms'], /--p99 5ms: needs --find-rate/],
      [['--find-rate', '--p99', '5ms', '--mode', 'stream'], /--find-rate: cannot be used with --mode stream/],
      [['--find-rate', '--p99', '5ms', '--udp'], /--find-rate: cannot be used with --udp/],
      [['--find-rate', '--p99', 'soon'], /--p99 soon:/],
      [
        ['--find-rate', '--p99', '5ms', '--threshold', 'errors==0'],
        /--find-rate: cannot be used with --threshold/,
      ],
      [
        ['--find-rate', '--p99', '5ms', '--target', '127.0.0.1:1'],
        /--find-rate: cannot be used with --target/,
      ],
    ] as [string[], RegExp][]) {
      const r = await refusal('echo-client', ['bench', ...argv]);
      expect(r.code, argv.join(' ')).toBe(2);
      expect(r.stderr).toMatch(re);
    }
  });
});

describe('bench -4/-6, -p, --connect-timeout, --payload, --csv', () => {
  it('-6 -p PORT reaches ::1 and -4 -p PORT reaches 127.0.0.1', async () => {
    const v6 = await echoServer({ host: '::1' });
    const r6 = await runEchoClient([
      'bench',
      '-6',
      '-p',
      String(v6.address.port),
      '-c',
      '1',
      ...quick,
      '--csv',
    ]);
    expect(r6.code, r6.err).toBe(0);
    expect(r6.out.toString()).toContain(`\n[::1]:${v6.address.port},pingpong,1,`);
    const v4 = await echoServer();
    const r4 = await runEchoClient([
      'bench',
      '-4',
      '-p',
      String(v4.address.port),
      '-c',
      '1',
      ...quick,
      '--csv',
    ]);
    expect(r4.out.toString()).toContain(`\n127.0.0.1:${v4.address.port},pingpong,1,`);
  });

  it('--connect-timeout ends a connect that hangs (full backlog): exit 1, ETIMEDOUT explained', async () => {
    const fd = rawListenFd({ host: '127.0.0.1', port: 0, backlog: 1, reuseAddr: true, reusePort: false });
    onTestFinished(() => closeFd(fd));
    const port = boundPort(fd);
    for (let i = 0; i < 2; i++) {
      const s = net.connect({ port, host: '127.0.0.1' });
      onTestFinished(() => {
        s.destroy();
      });
      await once(s, 'connect');
    }
    const t0 = performance.now();
    const r = await runEchoClient([
      'bench',
      '-p',
      String(port),
      '-c',
      '1',
      '--connect-timeout',
      '500ms',
      ...quick,
    ]);
    const took = performance.now() - t0;
    expect(r.code).toBe(1);
    expect(took).toBeGreaterThanOrEqual(450);
    expect(took).toBeLessThan(8000); // not the 10 s default
    expect(r.err).toMatch(/^echo-client: connect ETIMEDOUT 127\.0\.0\.1:\d+ — no answer in time/);
  });

  it('--payload FILE: each message is the file, verified byte for byte', async () => {
    const body = Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    const file = tmpFile('req.bin', body);
    let bytes = 0;
    let first: Buffer | undefined;
    const { port } = await plainServer(
      (s) =>
        s.on('data', (d: Buffer) => {
          first ??= Buffer.from(d);
          bytes += d.length;
          s.write(d);
        }),
      { allowHalfOpen: false },
    );
    const r = await runEchoClient([
      'bench',
      '-p',
      String(port),
      '-c',
      '1',
      '--payload',
      file,
      ...quick,
      '--json',
    ]);
    expect(r.code, r.err).toBe(0);
    const j = JSON.parse(r.out.toString());
    expect(j.count).toBeGreaterThan(0);
    expect(j.mismatches).toBe(0);
    expect(first!.subarray(0, body.length)).toEqual(body);
    expect(bytes % body.length).toBe(0);
    for (const [argv, re] of [
      [['--payload', file, '--udp'], /--payload: cannot be used with --udp/],
      [['--payload', file, '-s', '10'], /--payload: cannot be used with --size/],
      [['--payload', '/nonexistent/x'], /--payload \/nonexistent\/x: cannot be read \(ENOENT\)/],
      [['--payload', tmpFile('empty', '')], /is empty/],
      [['--connect-timeout', 'soon'], /--connect-timeout soon:/],
    ] as [string[], RegExp][]) {
      const bad = await refusal('echo-client', ['bench', ...argv]);
      expect(bad.code, argv.join(' ')).toBe(2);
      expect(bad.stderr).toMatch(re);
    }
  });

  it('--csv: a header and one row per target, then the total; the numbers are the run', async () => {
    const a = await echoServer();
    const b = await echoServer();
    const r = await runEchoClient([
      'bench',
      ...['--target', `127.0.0.1:${a.address.port}`, '--target', `127.0.0.1:${b.address.port}`],
      ...['-c', '2', ...quick, '--csv', '--percentiles', '50,99.9'],
    ]);
    expect(r.code, r.err).toBe(0);
    const [head, ...rows] = r.out
      .toString()
      .trim()
      .split('\n')
      .map((l) => l.split(','));
    expect(head).toEqual([
      ...['target', 'mode', 'connections', 'duration_s', 'count', 'rate_per_s', 'mb_per_s'],
      ...['p50_us', 'p99.9_us', 'max_us', 'errors', 'mismatches'],
    ]);
    expect(rows.map((x) => x[0])).toEqual([
      `127.0.0.1:${a.address.port}`,
      `127.0.0.1:${b.address.port}`,
      'total',
    ]);
    for (const row of rows) expect(row.slice(2).every((v) => Number.isFinite(Number(v)))).toBe(true);
    expect(Number(rows[2]![4])).toBe(Number(rows[0]![4]) + Number(rows[1]![4]));
    expect(Number(rows[2]![2])).toBe(4);
  });
});

describe('bench gates in every server mode, and UDP', () => {
  it.each(matrix(SERVER_MODES, ['evented', 'fork']))(
    '%s server: open loop, --threshold, --json-stream, --histogram',
    async (_name, args) => {
      const srv = await spawnServer(args);
      const r = await runEchoClient([
        'bench',
        '-p',
        String(srv.port),
        // a fork server starts a process per connection (seconds on a loaded machine): the
        // warm-up covers it
        ...['-c', '2', '--rate', '200', '-d', '500ms', '--warmup', '2s', '--json-stream', '-'],
        ...['--threshold', 'mismatches==0', '--threshold', 'errors==0', '--threshold', 'p50<60s'],
      ]);
      expect(r.code, r.err).toBe(0);
      const lines = r.out
        .toString()
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      const summary = lines.at(-1)!;
      expect(summary.type).toBe('summary');
      expect(summary.open_loop.target_rate).toBe(200);
      expect(summary.count).toBeGreaterThan(0);
      expect(summary.histogram.count).toBe(summary.count);
    },
  );

  it('UDP: --threshold lost==0 and --json-stream work; --rate is refused (the UDP bench is closed-loop)', async () => {
    const srv = await spawnServer(['--udp', '--rate-limit', '0']);
    const r = await runEchoClient([
      'bench',
      '--udp',
      '-p',
      String(srv.port),
      ...['-c', '4', '-d', '400ms', '--warmup', '0', '--json-stream', '-', '--threshold', 'lost==0'],
    ]);
    expect(r.code, r.err).toBe(0);
    const lines = r.out
      .toString()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.at(-1)!.mode).toBe('udp');
    const bad = await refusal('echo-client', ['bench', '--udp', '--rate', '100']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--rate: cannot be used with --udp/);
  });
});
