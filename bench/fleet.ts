// npm run bench-fleet -- [N] [bench flags…]: the split a Kubernetes Indexed Job makes
// (deploy/bench-job.yaml), run as N local processes at once: each `echo-client bench --shard
// I/N --json`, then their results merged (rates summed, histograms merged). Without a target
// in the flags, an echo-server is started on a free loopback port for the run.
//   npm run bench-fleet -- 4 -c 40 -d 5s
//   npm run bench-fleet -- 2 127.0.0.1 7007 --rate 20000 -c 20

import { spawn } from 'node:child_process';
import path from 'node:path';
import { formatBench } from '../src/cli/bench-report.js';
import type { BenchResult } from '../src/client/bench.js';
import { mergeResults } from '../src/client/bench-merge.js';
import { root, startServer } from './tools.js';

function run(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(process.execPath, [path.join(root, 'bin', 'echo-client.js'), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, out, err })));
}

export async function fleet(
  n: number,
  flags: string[],
): Promise<{ parts: BenchResult[]; merged: BenchResult }> {
  // a target is given as HOST [PORT] before the flags, or with -p / --target
  const hasTarget =
    (flags[0] !== undefined && !flags[0].startsWith('-')) ||
    flags.some((f) => /^(-p|--port|--target|--unix)$/.test(f));
  const server = hasTarget
    ? undefined
    : await startServer('fleet-echo-server', (port) => [
        process.execPath,
        [path.join(root, 'bin', 'echo-server.js'), '--port', String(port), '--host', '127.0.0.1'],
      ]);
  try {
    const target = server ? ['-p', String(server.port)] : [];
    const runs = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        run(['bench', ...target, ...flags, '--shard', `${i}/${n}`, '--json']),
      ),
    );
    const parts = runs.map((r, i) => {
      if (r.code !== 0 && r.code !== 3) throw new Error(`shard ${i}/${n} exited ${r.code}: ${r.err.trim()}`);
      return JSON.parse(r.out.trim().split('\n').at(-1)!) as BenchResult;
    });
    return { parts, merged: mergeResults(parts) };
  } finally {
    await server?.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const argv = process.argv.slice(2);
  const n = /^\d+$/.test(argv[0] ?? '') ? Number(argv.shift()) : 4;
  const { parts, merged } = await fleet(n, argv.length ? argv : ['-c', '40', '-d', '5s']);
  for (const [i, p] of parts.entries())
    process.stdout.write(
      `shard ${i}/${n}: ${p.connections} connections, ${p.rate_per_s}/s, p50 ${p.latency_us.p50} µs, p99 ${p.latency_us.p99} µs\n`,
    );
  process.stdout.write(`\n${formatBench(merged, `${n} shards merged`)}`);
}
