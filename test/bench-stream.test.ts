// Time series: --interval prints a line per interval on stderr; --json-stream writes one JSON
// object per interval then the summary, and the intervals add up to the summary.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { echoServer, plainServer, refusal, spawnCli } from './helpers.js';

function sums(lines: Record<string, any>[]) {
  const iv = lines.filter((l) => l.type === 'interval');
  return {
    intervals: iv,
    count: iv.reduce((s, l) => s + l.count, 0),
    bytes: iv.reduce((s, l) => s + l.bytes, 0),
    errors: iv.reduce((s, l) => s + l.errors, 0),
    mismatches: iv.reduce((s, l) => s + l.mismatches, 0),
  };
}

describe('bench --interval, --json-stream', () => {
  it('--json-stream -: every line parses, the intervals add up to the summary', async () => {
    const { address } = await echoServer();
    const p = spawnCli('echo-client', [
      'bench',
      '-p',
      String(address.port),
      ...['-c', '2', '-d', '1200ms', '--warmup', '0', '--interval', '300ms', '--json-stream', '-'],
    ]);
    expect((await p.exit).code, p.stderr()).toBe(0);
    const lines = p
      .stdout()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const summary = lines.at(-1)!;
    expect(summary.type).toBe('summary');
    expect(lines.slice(0, -1).every((l) => l.type === 'interval')).toBe(true);
    const s = sums(lines);
    expect(s.intervals.length).toBeGreaterThanOrEqual(3);
    expect(s.count).toBe(summary.count);
    expect(s.bytes).toBe(summary.count * 64);
    expect(s.errors).toBe(0);
    // the intervals follow each other and cover the run
    for (let i = 1; i < s.intervals.length; i++)
      expect(s.intervals[i].start_s).toBe(s.intervals[i - 1].end_s);
    expect(s.intervals.at(-1)!.end_s).toBeCloseTo(summary.duration_s, 2);
    // --interval: one stderr line per interval as well
    const stderrLines = p
      .stderr()
      .match(/^\[[\d.]+-[\d.]+ s\] \d+\/s +p50 [\d.]+ µs +p99 [\d.]+ µs +errors \d+$/gm);
    expect(stderrLines?.length).toBe(s.intervals.length);
  });

  it('--json-stream FILE with errors: the interval errors add up to the summary errors', async () => {
    let n = 0;
    const { port } = await plainServer(
      (s: Socket) => {
        if (n++ % 2 === 1) s.resetAndDestroy();
        else s.on('data', (d) => s.write(d));
      },
      { allowHalfOpen: false },
    );
    const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-stream-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'run.jsonl');
    const p = spawnCli('echo-client', [
      'bench',
      '-p',
      String(port),
      ...['--mode', 'connect', '-c', '4', '-d', '800ms', '--warmup', '0', '--json-stream', file],
    ]);
    expect((await p.exit).code, p.stderr()).toBe(0);
    expect(p.stdout()).toMatch(/connections\/s/); // the table still goes to stdout
    expect(p.stderr()).not.toMatch(/^\[/m); // no --interval: no stderr lines
    const lines = readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const summary = lines.at(-1)!;
    const s = sums(lines);
    expect(s.count).toBe(summary.count);
    const errors = Object.values(summary.errors as Record<string, number>).reduce((a, b) => a + b, 0);
    expect(errors).toBeGreaterThan(0);
    expect(s.errors).toBe(errors);
  });

  it('refusals name both flags', async () => {
    for (const [argv, re] of [
      [['--json-stream', '-', '--json'], /--json-stream: cannot be used with --json/],
      [['--csv', '--json'], /--csv: cannot be used with --json/],
      [['--interval', '1s', '--target', '127.0.0.1:1'], /--interval: cannot be used with --target/],
      [['--interval', '5ms'], /--interval 5ms: must be between/],
    ] as [string[], RegExp][]) {
      const r = await refusal('echo-client', ['bench', ...argv]);
      expect(r.code, argv.join(' ')).toBe(2);
      expect(r.stderr).toMatch(re);
    }
    const r = await refusal('echo-client', ['bench', '--json-stream', '/nonexistent/dir/x.jsonl']);
    expect(r.code).toBe(0); // the file is opened when the run starts, not by the validators
  });
});
