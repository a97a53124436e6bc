// What a bench run does besides measuring: --abort-on watched while it runs, --interval lines,
// the --json-stream file, and the verdict at the end (--threshold, --strict-rate) → exit 3.

import { closeSync, openSync, writeSync } from 'node:fs';
import type { BenchInterval, BenchOptions, BenchProgress, BenchResult } from '../client/bench.js';
import { checkThresholds, judge, measureProgress } from '../client/bench-gate.js';
import { UsageError } from '../core/parse.js';
import type { BenchGate } from './bench-flags.js';
import { formatInterval } from './bench-report.js';
import { onSignals, signalExitCode } from './common.js';

/** Exit code of a bench whose gate failed (a threshold, --abort-on, --strict-rate). */
export const GATE_FAILED = 3;

export interface Session {
  /** the options runBench takes for this (signal, progress, intervals) */
  options: Pick<BenchOptions, 'signal' | 'intervalMs' | 'onInterval' | 'onProgress'>;
  /** the --json-stream summary line, then close it */
  finish(summary: unknown): void;
  /** one stderr line per failed condition; GATE_FAILED if any, else 0 */
  verdict(r: BenchResult): number;
}

export function startSession(
  gate: BenchGate,
  stop: AbortSignal,
  progress?: (p: BenchProgress) => void,
  out: (line: string) => void = (l) => process.stderr.write(l),
): Session {
  const abort = new AbortController();
  let abortedBy: string | undefined;
  let fd: number | undefined;
  if (gate.jsonStream !== undefined && gate.jsonStream !== '-') {
    try {
      fd = openSync(gate.jsonStream, 'w');
    } catch (err) {
      throw new UsageError(
        '--json-stream',
        gate.jsonStream,
        `cannot be written (${(err as NodeJS.ErrnoException).code})`,
      );
    }
  }
  const stream = (o: unknown) => {
    const line = `${JSON.stringify(o)}\n`;
    if (fd !== undefined) writeSync(fd, line);
    else process.stdout.write(line);
  };
  const onInterval =
    gate.intervalMs !== undefined
      ? (i: BenchInterval) => {
          if (gate.jsonStream !== undefined) stream({ type: 'interval', ...i });
          if (gate.intervalLines) out(formatInterval(i));
        }
      : undefined;
  const watch = gate.abortOn.length > 0;
  const onProgress =
    progress || watch
      ? (p: BenchProgress) => {
          progress?.(p);
          if (abortedBy) return;
          for (const c of gate.abortOn) {
            const v = measureProgress(c, p);
            if (v === undefined) continue;
            const j = judge(c, v, '--abort-on');
            if (j.ok) {
              abortedBy = `stopped early: --abort-on ${c.text} held (${j.message.replace(/^.*?: /, '')})`;
              abort.abort();
              return;
            }
          }
        }
      : undefined;
  return {
    options: {
      signal: AbortSignal.any([stop, abort.signal]),
      ...(onInterval ? { intervalMs: gate.intervalMs, onInterval } : {}),
      ...(onProgress ? { onProgress } : {}),
    },
    finish(summary) {
      if (gate.jsonStream === undefined) return;
      stream({ type: 'summary', ...(summary as object) });
      if (fd !== undefined) closeSync(fd);
    },
    verdict(r) {
      const failed: string[] = [];
      if (abortedBy) failed.push(abortedBy);
      for (const v of checkThresholds(gate.thresholds, r)) if (!v.ok) failed.push(v.message);
      if (gate.strictRate && r.open_loop && !r.open_loop.rate_kept) {
        const o = r.open_loop;
        failed.push(
          `--strict-rate: the generator did not keep ${o.target_rate}/s (sent ${o.sent} of ${o.due} due, lateness p99 ${o.lateness_us.p99} µs; kept means at most 1 % unsent and p99 ≤ 1000 µs)`,
        );
      }
      for (const l of failed) out(`echo-client: ${l}\n`);
      return failed.length ? GATE_FAILED : 0;
    },
  };
}

/**
 * Ctrl-C (or SIGTERM) while a bench runs stops it and prints what was measured so far, as wrk
 * does; the exit code is still 130 (143). A second signal exits at once.
 */
export function stopOnSignal(): { signal: AbortSignal; done: () => void; code: () => number } {
  const ac = new AbortController();
  let got: NodeJS.Signals | undefined;
  const off = onSignals(
    (signal) => {
      got = signal;
      ac.abort();
    },
    () => {},
  );
  return {
    signal: ac.signal,
    done: off,
    code: () => (got === undefined ? 0 : signalExitCode(got)),
  };
}
