// What `echo-client bench` prints: the table, the chosen percentiles, the histogram, CSV
// rows, --interval lines, and the errors that end a bench that measured nothing.

import type { BenchInterval, BenchResult } from '../client/bench.js';
import { LogHistogram } from '../client/bench-hist.js';
import { codedError } from '../core/errors.js';
import { plural } from '../core/parse.js';

/** Nothing was echoed (and no error said why): a bench that measured nothing has failed. */
export function noEcho(r: BenchResult, where: string): Error {
  const errs = Object.entries(r.errors).map(([k, v]) => `${k} ${v}`);
  const sent = r.lost ? ` (${r.lost} datagrams went unanswered)` : '';
  const why = errs.length ? `; errors: ${errs.join(', ')}` : '';
  return codedError(
    'ERR_NO_ECHO',
    `${r.mode} bench to ${where}: no echo came back in ${r.duration_s} s${sent}${why}`,
  );
}

/** The response time at each percentile, µs (from the histogram: any percentile, exactly as merged). */
export function percentilesUs(
  r: BenchResult,
  ps: readonly number[],
  which: 'histogram' | 'service_histogram' = 'histogram',
) {
  const j = r[which];
  const h = j ? LogHistogram.fromJSON(j) : undefined;
  // a result without its histogram (one written by an older version) has the four fixed ones
  const l = (which === 'histogram' ? r.latency_us : r.service_us) ?? r.latency_us;
  const fixed: Record<number, number | undefined> = { 50: l.p50, 90: l.p90, 99: l.p99, 99.9: l.p999 };
  return ps.map((p) => [p, h ? Math.round(h.percentile(p) / 10) / 100 : (fixed[p] ?? 0)] as const);
}

const pctLine = (pairs: readonly (readonly [number, number])[], max: number) =>
  `${pairs.map(([p, v]) => `p${p} ${v}`).join('  ')}  max ${max}`;

export function formatBench(r: BenchResult, where: string, percentiles = [50, 90, 99, 99.9]): string {
  const l = r.latency_us;
  const ol = r.open_loop;
  const errs = Object.entries(r.errors)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  const rows: [string, string][] = [
    [
      'target',
      `${where} (${r.mode}, ${r.mode === 'udp' ? `${r.connections} outstanding` : plural(r.connections, 'connection')})`,
    ],
    ['duration', `${r.duration_s} s${r.interrupted ? ' (interrupted: the figures cover this much)' : ''}`],
    [
      r.mode === 'stream' ? 'echoed' : r.mode === 'connect' ? 'connections' : 'round trips',
      r.mode === 'stream' ? `${(r.count / 1e6).toFixed(1)} MB` : String(r.count),
    ],
    ...(r.mode === 'stream'
      ? []
      : ([[r.mode === 'connect' ? 'connections/s' : 'round trips/s', String(r.rate_per_s)]] as [
          string,
          string,
        ][])),
    ['MB/s', String(r.mb_per_s)],
    ...(r.mode === 'stream'
      ? []
      : ([[ol ? 'response µs' : 'latency µs', pctLine(percentilesUs(r, percentiles), l.max)]] as [
          string,
          string,
        ][])),
    ...(r.service_us
      ? ([['service µs', pctLine(percentilesUs(r, percentiles, 'service_histogram'), r.service_us.max)]] as [
          string,
          string,
        ][])
      : []),
    ...(ol
      ? ([
          [
            'generator',
            `${ol.sent}/${ol.due} sent of ${ol.target_rate}/s, late p50 ${ol.lateness_us.p50} µs p99 ${ol.lateness_us.p99} µs: ${ol.rate_kept ? 'rate kept' : 'RATE NOT KEPT'}`,
          ],
        ] as [string, string][])
      : []),
    [
      'verified',
      r.mismatches > 0
        ? plural(r.mismatches, 'MISMATCH', 'MISMATCHES')
        : r.count === 0
          ? 'nothing: no echo came back'
          : 'every echoed byte matched',
    ],
    ['errors', errs || 'none'],
    ...(r.lost !== undefined ? ([['lost', String(r.lost)]] as [string, string][]) : []),
  ];
  return `${rows.map(([k, v]) => `${k.padEnd(14)} ${v}`).join('\n')}\n`;
}

/** The histogram as text rows (log buckets, 1-2-5 steps). */
export function formatHistogram(r: BenchResult): string {
  return r.histogram ? `response time histogram\n${LogHistogram.fromJSON(r.histogram).text()}` : '';
}

const CSV_FIXED = ['target', 'mode', 'connections', 'duration_s', 'count', 'rate_per_s', 'mb_per_s'];

/** A CSV header and one row per result: the fixed columns, the percentiles (µs), errors, mismatches. */
export function formatCsv(rows: { target: string; r: BenchResult }[], ps: readonly number[]): string {
  const q = (v: string) => (/[",\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);
  const head = [...CSV_FIXED, ...ps.map((p) => `p${p}_us`), 'max_us', 'errors', 'mismatches'];
  const lines = rows.map(({ target, r }) =>
    [
      q(target),
      r.mode,
      r.connections,
      r.duration_s,
      r.count,
      r.rate_per_s,
      r.mb_per_s,
      ...percentilesUs(r, ps).map(([, v]) => v),
      r.latency_us.max,
      Object.values(r.errors).reduce((a, b) => a + b, 0),
      r.mismatches,
    ].join(','),
  );
  return `${[head.join(','), ...lines].join('\n')}\n`;
}

/** One --interval line (stderr). */
export function formatInterval(i: BenchInterval): string {
  const l = i.latency_us;
  return `[${i.start_s.toFixed(1)}-${i.end_s.toFixed(1)} s] ${i.rate_per_s}/s  p50 ${l.p50} µs  p99 ${l.p99} µs  errors ${i.errors}${i.mismatches ? `  MISMATCHES ${i.mismatches}` : ''}\n`;
}
