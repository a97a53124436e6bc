// Pass/fail conditions on a bench's figures (--threshold, --abort-on): `p99<5ms`, `rate>10000`,
// `errors==0`, `mismatches==0` … Parsed once; evaluated on a finished result or, for
// --abort-on, on the running figures.

import type { BenchProgress, BenchResult } from './bench.js';
import { type HistogramJson, LogHistogram } from './bench-hist.js';

export type Op = '<' | '<=' | '>' | '>=' | '==' | '!=';

export interface Condition {
  /** as written, e.g. "p99<5ms" */
  text: string;
  metric: string;
  op: Op;
  /** latency metrics in ns, the others as counted */
  value: number;
  latency: boolean;
  /** the unit the value was written in, for the measured figure in messages */
  unit?: string;
}

/** Latency: pNN (any percentile of the response time), mean, max, lateness_p99, service_p99. */
const LATENCY = /^(p\d+(?:\.\d+)?|mean|max|lateness_p99|service_p\d+(?:\.\d+)?)$/;
const COUNTS = ['rate', 'mbps', 'errors', 'mismatches', 'lost', 'count'];
const UNITS: Record<string, number> = { ns: 1, us: 1e3, µs: 1e3, ms: 1e6, s: 1e9 };

/** Parse "METRIC OP VALUE"; throws an Error whose message says what is wrong. */
export function parseCondition(raw: string): Condition {
  const m = /^\s*([a-z_][a-z_0-9.]*)\s*(<=|>=|==|!=|<|>)\s*(.+?)\s*$/i.exec(raw);
  if (!m) throw new Error('is METRIC OP VALUE, e.g. p99<5ms, rate>10000, errors==0');
  const metric = m[1]!.toLowerCase();
  const op = m[2] as Op;
  const v = m[3]!;
  if (LATENCY.test(metric)) {
    const p = /^p(\d+(?:\.\d+)?)$/.exec(metric.replace(/^service_/, ''));
    if (p && !(Number(p[1]) > 0 && Number(p[1]) <= 100))
      throw new Error(`percentile ${p[1]} is not in (0, 100]`);
    const u = /^(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s)$/.exec(v);
    if (!u) throw new Error(`${metric} is a time: give a unit (5ms, 500us, 1s)`);
    return { text: raw.trim(), metric, op, value: Number(u[1]) * UNITS[u[2]!]!, latency: true, unit: u[2]! };
  }
  if (!COUNTS.includes(metric))
    throw new Error(
      `unknown metric ${metric} (pNN, mean, max, service_pNN, lateness_p99, ${COUNTS.join(', ')})`,
    );
  if (!/^\d+(?:\.\d+)?$/.test(v)) throw new Error(`${metric} is compared with a number`);
  return { text: raw.trim(), metric, op, value: Number(v), latency: false };
}

function holds(op: Op, a: number, b: number): boolean {
  switch (op) {
    case '<':
      return a < b;
    case '<=':
      return a <= b;
    case '>':
      return a > b;
    case '>=':
      return a >= b;
    case '==':
      return a === b;
    default:
      return a !== b;
  }
}

/** The measured figure in the condition's own unit: "7.21ms", "8123". */
export function formatMeasured(c: Condition, v: number): string {
  if (!c.latency) return String(Math.round(v * 100) / 100);
  const u = UNITS[c.unit!]!;
  return `${+(v / u).toPrecision(4)}${c.unit}`;
}

const sumErrors = (e: Record<string, number>) => Object.values(e).reduce((a, b) => a + b, 0);

function fromHistogram(j: HistogramJson | undefined, p: number): number | undefined {
  return j ? LogHistogram.fromJSON(j).percentile(p) : undefined;
}

/** The figure a condition reads from a finished result (ns for latency); undefined if absent. */
export function measure(c: Condition, r: BenchResult): number | undefined {
  const pct = /^(service_)?p(\d+(?:\.\d+)?)$/.exec(c.metric);
  if (pct) {
    const hist = pct[1] ? r.service_histogram : r.histogram;
    return fromHistogram(hist, Number(pct[2]));
  }
  switch (c.metric) {
    case 'mean':
      return r.latency_us.mean * 1e3;
    case 'max':
      return r.latency_us.max * 1e3;
    case 'lateness_p99':
      return r.open_loop ? r.open_loop.lateness_us.p99 * 1e3 : undefined;
    case 'rate':
      return r.rate_per_s;
    case 'mbps':
      return r.mb_per_s;
    case 'errors':
      return sumErrors(r.errors);
    case 'mismatches':
      return r.mismatches;
    case 'lost':
      return r.lost ?? 0;
    case 'count':
      return r.count;
  }
  return undefined;
}

/** The figure a condition reads from the running figures (--abort-on); undefined if not known yet. */
export function measureProgress(c: Condition, p: BenchProgress): number | undefined {
  const pct = /^p(\d+(?:\.\d+)?)$/.exec(c.metric);
  if (pct) return p.count > 0 ? p.percentileUs(Number(pct[1])) * 1e3 : undefined;
  switch (c.metric) {
    case 'errors':
      return p.errors;
    case 'mismatches':
      return p.mismatches;
    case 'count':
      return p.count;
    case 'rate':
      return p.elapsedMs > 0 ? p.count / (p.elapsedMs / 1000) : undefined;
  }
  return undefined;
}

export interface Verdict {
  condition: Condition;
  ok: boolean;
  measured?: number;
  /** one line: "threshold p99<5ms failed: p99 was 7.21ms" */
  message: string;
}

export function judge(c: Condition, v: number | undefined, what = 'threshold'): Verdict {
  if (v === undefined)
    return { condition: c, ok: false, message: `${what} ${c.text} failed: ${c.metric} was not measured` };
  const ok = holds(c.op, v, c.value);
  return {
    condition: c,
    ok,
    measured: v,
    message: `${what} ${c.text} ${ok ? 'passed' : 'failed'}: ${c.metric} was ${formatMeasured(c, v)}`,
  };
}

export function checkThresholds(conds: readonly Condition[], r: BenchResult): Verdict[] {
  return conds.map((c) => judge(c, measure(c, r)));
}
