// Fleets: --shard I/N (or N with JOB_COMPLETION_INDEX) takes a share of --connections and
// --rate; N shards against one server merge to the whole; deploy/bench-job.yaml is an Indexed
// Job whose flags the bench accepts; bench/fleet.ts runs the split locally and merges.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { parseShard, shareOf } from '../src/cli/bench-flags.js';
import { mergeResults } from '../src/client/bench-merge.js';
import { echoServer, ROOT, refusal, spawnCli } from './helpers.js';

describe('bench --shard', () => {
  it('shares add up to the total for every split', () => {
    for (const total of [1, 7, 100, 40_000])
      for (const count of [1, 2, 3, 4, 16]) {
        const shares = Array.from({ length: count }, (_, index) => shareOf(total, { index, count }));
        expect(shares.reduce((a, b) => a + b, 0)).toBe(total);
        expect(Math.max(...shares) - Math.min(...shares)).toBeLessThanOrEqual(1);
      }
    expect(parseShard('1/3')).toEqual({ index: 1, count: 3 });
    expect(parseShard('4', { JOB_COMPLETION_INDEX: '3' })).toEqual({ index: 3, count: 4 });
  });

  it('N shards × C connections against one server: the same total, merged p99 within the parts', async () => {
    const { address } = await echoServer();
    const n = 3;
    const shards = Array.from({ length: n }, (_, i) =>
      spawnCli('echo-client', [
        'bench',
        '-p',
        String(address.port),
        ...['-c', '7', '-d', '800ms', '--warmup', '100ms', '--shard', `${i}/${n}`, '--json'],
      ]),
    );
    const exits = await Promise.all(shards.map((s) => s.exit));
    for (const [i, e] of exits.entries()) expect(e.code, shards[i]!.stderr()).toBe(0);
    const parts = shards.map((s) => JSON.parse(s.stdout()));
    expect(parts.map((p) => p.connections)).toEqual([3, 2, 2]);
    expect(parts.map((p) => p.shard)).toEqual([0, 1, 2].map((index) => ({ index, count: n })));
    const m = mergeResults(parts);
    expect(m.connections).toBe(7);
    expect(m.count).toBe(parts.reduce((s, p) => s + p.count, 0));
    const p99s = parts.map((p) => p.latency_us.p99);
    expect(m.latency_us.p99).toBeGreaterThanOrEqual(Math.min(...p99s));
    expect(m.latency_us.p99).toBeLessThanOrEqual(Math.max(...p99s));
  });

  it('--shard N takes its index from JOB_COMPLETION_INDEX, and its share of --rate', async () => {
    const { address } = await echoServer();
    const p = spawnCli(
      'echo-client',
      [
        'bench',
        '-p',
        String(address.port),
        ...['-c', '5', '--rate', '301', '-d', '300ms', '--warmup', '0', '--shard', '2', '--json'],
      ],
      { env: { JOB_COMPLETION_INDEX: '1' } },
    );
    expect((await p.exit).code, p.stderr()).toBe(0);
    const r = JSON.parse(p.stdout());
    expect(r.shard).toEqual({ index: 1, count: 2 });
    expect(r.connections).toBe(2);
    expect(r.open_loop.target_rate).toBe(150);
  });

  it('refusals name the flag', async () => {
    const env = process.env.JOB_COMPLETION_INDEX;
    delete process.env.JOB_COMPLETION_INDEX;
    onTestFinished(() => {
      if (env !== undefined) process.env.JOB_COMPLETION_INDEX = env;
    });
    for (const [argv, re] of [
      [['--shard', '3/3'], /--shard 3\/3: index 3 is not in 0-2/],
      [['--shard', '4'], /--shard 4: gives no index: write I\/N, or set JOB_COMPLETION_INDEX/],
      [['--shard', 'a/b'], /--shard a\/b: is I\/N/],
      [
        ['--shard', '5/8', '-c', '4'],
        /--shard 5\/8: cannot be used with --connections 4 \(no connection left for it\)/,
      ],
    ] as [string[], RegExp][]) {
      const r = await refusal('echo-client', ['bench', ...argv]);
      expect(r.code, argv.join(' ')).toBe(2);
      expect(r.stderr).toMatch(re);
    }
  });
});

describe('deploy/bench-job.yaml', () => {
  it('is an Indexed Job of N generator pods, each a shard of N, against the Service of k8s.yaml', async () => {
    const job = parseYaml(readFileSync(path.join(ROOT, 'deploy', 'bench-job.yaml'), 'utf8'));
    expect(job.apiVersion).toBe('batch/v1');
    expect(job.kind).toBe('Job');
    expect(job.spec.completionMode).toBe('Indexed');
    const n = job.spec.completions;
    expect(n).toBeGreaterThan(1);
    expect(job.spec.parallelism).toBe(n);
    expect(job.spec.template.spec.restartPolicy).toBe('Never');
    const [c] = job.spec.template.spec.containers;
    expect(c.command).toEqual(['node', 'bin/echo-client.js']);
    const args: string[] = c.args;
    expect(args[0]).toBe('bench');
    expect(args[args.indexOf('--shard') + 1]).toBe(String(n));
    expect(args).toContain('--json');
    // the target is the echo-server Service and its port
    const docs = readFileSync(path.join(ROOT, 'deploy', 'k8s.yaml'), 'utf8')
      .split(/^---$/m)
      .map((d) => parseYaml(d))
      .filter(Boolean);
    const svc = docs.find((d) => d.kind === 'Service');
    expect(args[1]).toBe(svc.metadata.name);
    expect(svc.spec.ports.map((p: { port: number }) => String(p.port))).toContain(args[2]);
    // the bench accepts these flags, as a pod of the Job (JOB_COMPLETION_INDEX set) runs them
    const env = process.env.JOB_COMPLETION_INDEX;
    process.env.JOB_COMPLETION_INDEX = String(n - 1);
    onTestFinished(() => {
      if (env === undefined) delete process.env.JOB_COMPLETION_INDEX;
      else process.env.JOB_COMPLETION_INDEX = env;
    });
    const r = await refusal('echo-client', args);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });
});

describe('npm run bench-fleet (bench/fleet.ts)', () => {
  it('runs N shards at once and merges them', async () => {
    const { address } = await echoServer();
    const child = spawn(
      path.join(ROOT, 'node_modules', '.bin', 'tsx'),
      ['bench/fleet.ts', '2', '-p', String(address.port), '-c', '4', '-d', '500ms', '--warmup', '0'],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    onTestFinished(() => {
      if (child.exitCode === null) child.kill('SIGKILL');
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const code = await new Promise((r) => child.once('close', r));
    expect(code, err).toBe(0);
    expect(out).toMatch(/shard 0\/2: 2 connections/);
    expect(out).toMatch(/shard 1\/2: 2 connections/);
    expect(out).toMatch(/2 shards merged \(pingpong, 4 connections\)/);
  });
});
