// Results of benches run at the same time (shards of one load, several machines) combined
// into one: counts and rates summed, histograms merged bucket by bucket, so the merged
// percentiles are those of one histogram holding every measurement.

import type { BenchResult } from './bench.js';
import { type HistogramJson, LogHistogram, latencySummary } from './bench-hist.js';

function mergeHist(all: (HistogramJson | undefined)[]): LogHistogram | undefined {
  if (all.some((h) => h === undefined)) return undefined;
  const h = new LogHistogram();
  for (const j of all) h.add(LogHistogram.fromJSON(j!));
  return h;
}

export interface MergedResult extends BenchResult {
  /** how many results were merged */
  merged: number;
}

/** Throws an Error saying why when the results cannot be merged exactly. */
export function mergeResults(parts: readonly BenchResult[]): MergedResult {
  if (parts.length === 0) throw new Error('nothing to merge');
  const mode = parts[0]!.mode;
  const other = parts.find((p) => p.mode !== mode);
  if (other) throw new Error(`results of different modes (${mode}, ${other.mode}) do not merge`);
  const hist = mergeHist(parts.map((p) => p.histogram));
  if (!hist) throw new Error('a result has no histogram (a bench of this version writes one with --json)');
  const svc = mergeHist(parts.map((p) => p.service_histogram));
  const sum = (f: (p: BenchResult) => number) => parts.reduce((s, p) => s + f(p), 0);
  const errors: Record<string, number> = {};
  for (const p of parts) for (const [k, v] of Object.entries(p.errors)) errors[k] = (errors[k] ?? 0) + v;
  const loops = parts.map((p) => p.open_loop);
  const lost = parts.some((p) => p.lost !== undefined) ? sum((p) => p.lost ?? 0) : undefined;
  return {
    mode,
    merged: parts.length,
    connections: sum((p) => p.connections),
    duration_s: Math.max(...parts.map((p) => p.duration_s)),
    count: sum((p) => p.count),
    rate_per_s: sum((p) => p.rate_per_s),
    mb_per_s: Math.round(sum((p) => p.mb_per_s) * 100) / 100,
    latency_us: latencySummary(hist),
    ...(svc ? { service_us: latencySummary(svc) } : {}),
    ...(loops.every((l) => l !== undefined)
      ? {
          open_loop: {
            target_rate: sum((p) => p.open_loop!.target_rate),
            sent: sum((p) => p.open_loop!.sent),
            due: sum((p) => p.open_loop!.due),
            // lateness is not merged bucket by bucket: the worst part's figure is an upper bound
            lateness_us: {
              p50: Math.max(...loops.map((l) => l!.lateness_us.p50)),
              p99: Math.max(...loops.map((l) => l!.lateness_us.p99)),
              max: Math.max(...loops.map((l) => l!.lateness_us.max)),
            },
            rate_kept: loops.every((l) => l!.rate_kept),
          },
        }
      : {}),
    histogram: hist.toJSON(),
    ...(svc ? { service_histogram: svc.toJSON() } : {}),
    errors,
    mismatches: sum((p) => p.mismatches),
    ...(lost !== undefined ? { lost } : {}),
    ...(parts.some((p) => p.interrupted) ? { interrupted: true as const } : {}),
  };
}

/**
 * The results in a file written by `bench --json` (one result, or {targets, total} of several
 * targets), `--json-stream` (interval lines, then the summary) or collected pod logs: the last
 * line that is a JSON result; a several-target result gives one per target.
 */
export function resultsInText(text: string): BenchResult[] {
  const lines = text.split('\n').filter((l) => l.trim().startsWith('{'));
  for (let i = lines.length - 1; i >= 0; i--) {
    let v: unknown;
    try {
      v = JSON.parse(lines[i]!);
    } catch {
      continue;
    }
    const o = v as Record<string, unknown>;
    if (Array.isArray(o.targets)) return o.targets as BenchResult[];
    if (typeof o.mode === 'string' && typeof o.count === 'number') return [o as unknown as BenchResult];
  }
  throw new Error('holds no bench result (a line of `echo-client bench --json`)');
}
