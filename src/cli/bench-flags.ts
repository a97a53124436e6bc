// The bench flags for CI gates, time series and fleets: --threshold, --abort-on, --strict-rate,
// --histogram, --percentiles, --interval, --json-stream, --csv, --shard, --find-rate,
// --connect-timeout, --payload. Parsed up front, so bad input exits 2 naming the flag.

import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { type Condition, parseCondition } from '../client/bench-gate.js';
import { parseDuration, parseInteger, UsageError } from '../core/parse.js';
import { conflict } from './flag-groups.js';

const repeat = (v: string, prev: string[] = []) => [...prev, v];

export function addBenchGateFlags(cmd: Command): Command {
  return cmd
    .option(
      '--threshold <cond>',
      "fail (exit 3) unless this holds at the end, e.g. 'p99<5ms', 'rate>10000', 'errors==0', 'mismatches==0' (repeatable)",
      repeat,
    )
    .option(
      '--abort-on <cond>',
      "stop early (exit 3) once this holds, e.g. 'errors>100' (repeatable)",
      repeat,
    )
    .option('--strict-rate', 'with --rate: exit 3 when the generator could not keep the rate')
    .option('--histogram', 'print the response times in log buckets (--json always carries them)')
    .option('--percentiles <list>', 'percentiles to report, e.g. 50,90,99,99.9,99.99')
    .option('--interval <dur>', 'a line on stderr per interval: rate, p50/p99, errors')
    .option(
      '--json-stream <file>',
      "one JSON object per --interval (default 1s) then the summary, to FILE or '-'",
    )
    .option('--csv', 'print a CSV header and one row per target on stdout')
    .option(
      '--shard <i/n>',
      "this generator's share of --connections and --rate: I/N, or N with I from JOB_COMPLETION_INDEX",
    )
    .option('--find-rate', 'search for the highest --rate that keeps p99 under --p99, printing each step')
    .option('--p99 <dur>', 'with --find-rate: the p99 response-time bound')
    .option('--connect-timeout <dur>', 'each connect must be done within this (default 10s)')
    .option('--payload <file>', "send this file's bytes as each message (stream: each write)");
}

export interface BenchGateFlags {
  threshold?: string[];
  abortOn?: string[];
  strictRate?: boolean;
  histogram?: boolean;
  percentiles?: string;
  interval?: string;
  jsonStream?: string;
  csv?: boolean;
  shard?: string;
  findRate?: boolean;
  p99?: string;
  connectTimeout?: string;
  payload?: string;
}

export interface BenchGate {
  thresholds: Condition[];
  abortOn: Condition[];
  strictRate: boolean;
  histogram: boolean;
  percentiles: number[];
  intervalMs?: number;
  /** --interval given: a stderr line per interval (--json-stream alone writes only the file) */
  intervalLines: boolean;
  jsonStream?: string;
  csv: boolean;
  shard?: { index: number; count: number };
  findRate?: { p99Ns: number };
}

const ABORTABLE = /^(p\d+(\.\d+)?|errors|mismatches|count|rate)$/;

function conditions(flag: string, list: string[] | undefined): Condition[] {
  return (list ?? []).map((raw) => {
    try {
      return parseCondition(raw);
    } catch (err) {
      throw new UsageError(flag, raw, (err as Error).message);
    }
  });
}

/** "I/N" or "N" (index from JOB_COMPLETION_INDEX, as a Kubernetes Indexed Job sets it). */
export function parseShard(
  raw: string,
  env: NodeJS.ProcessEnv = process.env,
): { index: number; count: number } {
  const m = /^\s*(?:(\d+)\s*\/\s*)?(\d+)\s*$/.exec(raw);
  if (!m) throw new UsageError('--shard', raw, 'is I/N (0 ≤ I < N), or N with JOB_COMPLETION_INDEX set');
  const count = parseInteger('--shard', m[2]!, 1, 100_000);
  const idx = m[1] ?? env.JOB_COMPLETION_INDEX;
  if (idx === undefined)
    throw new UsageError(
      '--shard',
      raw,
      'gives no index: write I/N, or set JOB_COMPLETION_INDEX (an Indexed Job does)',
    );
  if (!/^\d+$/.test(idx.trim()) || Number(idx) >= count)
    throw new UsageError('--shard', raw, `index ${idx} is not in 0-${count - 1}`);
  return { index: Number(idx), count };
}

/** Shard `index` of `count` takes an equal part of `total`, the first ones one more. */
export function shareOf(total: number, shard: { index: number; count: number }): number {
  return Math.floor(total / shard.count) + (shard.index < total % shard.count ? 1 : 0);
}

export function resolveBenchGate(
  f: BenchGateFlags & {
    rate?: string;
    mode: string;
    udp?: boolean;
    json?: boolean;
    target?: string[];
    targetsFile?: string;
  },
): BenchGate {
  const thresholds = conditions('--threshold', f.threshold);
  const abortOn = conditions('--abort-on', f.abortOn);
  for (const c of abortOn)
    if (!ABORTABLE.test(c.metric))
      throw new UsageError(
        '--abort-on',
        c.text,
        'reads errors, mismatches, count, rate or pNN while running',
      );
  if (f.strictRate && f.rate === undefined && !f.findRate)
    throw new UsageError('--strict-rate', undefined, 'needs --rate');
  const percentiles = (f.percentiles ?? '50,90,99,99.9').split(',').map((p) => {
    const n = Number(p.trim());
    if (!(n > 0 && n <= 100))
      throw new UsageError('--percentiles', f.percentiles, `${p} is not a percentile in (0, 100]`);
    return n;
  });
  if (f.jsonStream !== undefined && f.json) throw conflict('--json-stream', '--json');
  if (f.csv && (f.json || f.jsonStream !== undefined))
    throw conflict('--csv', f.json ? '--json' : '--json-stream');
  const intervalMs =
    f.interval !== undefined
      ? parseDuration('--interval', f.interval, 100, 3_600_000)
      : f.jsonStream !== undefined
        ? 1000
        : undefined;
  let findRate: BenchGate['findRate'];
  if (f.findRate) {
    if (f.p99 === undefined) throw new UsageError('--find-rate', undefined, 'needs --p99 (e.g. --p99 5ms)');
    if (f.mode !== 'pingpong' || f.udp) throw conflict('--find-rate', f.udp ? '--udp' : `--mode ${f.mode}`);
    for (const [flag, v] of [
      ['--json-stream', f.jsonStream],
      ['--csv', f.csv],
      ['--interval', f.interval],
      ['--threshold', f.threshold],
      ['--abort-on', f.abortOn],
      ['--strict-rate', f.strictRate],
      ['--target', f.target],
      ['--targets-file', f.targetsFile],
    ] as const)
      if (v !== undefined && v !== false) throw conflict('--find-rate', flag);
    findRate = { p99Ns: parseDuration('--p99', f.p99, 0.001, 60_000) * 1e6 };
  } else if (f.p99 !== undefined)
    throw new UsageError('--p99', f.p99, "needs --find-rate (a gate is --threshold 'p99<5ms')");
  return {
    thresholds,
    abortOn,
    strictRate: f.strictRate === true,
    histogram: f.histogram === true,
    percentiles,
    intervalMs,
    intervalLines: f.interval !== undefined,
    jsonStream: f.jsonStream,
    csv: f.csv === true,
    shard: f.shard !== undefined ? parseShard(f.shard) : undefined,
    findRate,
  };
}

/** --connect-timeout and --payload, as BenchOptions fields. */
export function resolveBenchInput(f: BenchGateFlags & { udp?: boolean; size?: string }) {
  const connectTimeoutMs =
    f.connectTimeout !== undefined
      ? parseDuration('--connect-timeout', f.connectTimeout, 1, 3_600_000)
      : undefined;
  let payload: Buffer | undefined;
  if (f.payload !== undefined) {
    if (f.udp) throw conflict('--payload', '--udp');
    if (f.size !== undefined) throw conflict('--payload', '--size');
    try {
      payload = readFileSync(f.payload);
    } catch (err) {
      throw new UsageError('--payload', f.payload, `cannot be read (${(err as NodeJS.ErrnoException).code})`);
    }
    if (payload.length === 0) throw new UsageError('--payload', f.payload, 'is empty');
    if (payload.length > 64 * 1024 * 1024) throw new UsageError('--payload', f.payload, 'is over 64 MiB');
  }
  return {
    ...(connectTimeoutMs !== undefined ? { connectTimeoutMs } : {}),
    ...(payload ? { payload, size: payload.length } : {}),
  };
}
