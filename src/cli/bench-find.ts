// `bench --find-rate --p99 5ms`: the highest open-loop rate whose p99 response time stays
// under the bound (tcpkali's -r@latency). Doubles from --rate (default 1000/s) until a step
// fails, then bisects between the last good and the first bad rate to within 5 %, printing
// each step. A step passes when p99 is within the bound (response time counts from the
// intended send, so a late generator shows there), the due messages were sent (scheduleKept),
// and there were no errors and no mismatches.

import { type BenchOptions, type BenchResult, runBench, scheduleKept } from '../client/bench.js';
import { GATE_FAILED } from './bench-session.js';

export interface FindStep {
  rate: number;
  p99_us: number;
  achieved_per_s: number;
  ok: boolean;
  /** why a step failed */
  why?: string;
}

const MAX_RATE = 10_000_000;
const MAX_STEPS = 24;

function judgeStep(r: BenchResult, rate: number, p99Ns: number): FindStep {
  const errors = Object.values(r.errors).reduce((a, b) => a + b, 0);
  const why =
    r.count === 0
      ? 'no echo'
      : r.mismatches > 0
        ? `${r.mismatches} mismatches`
        : errors > 0
          ? `${errors} errors`
          : r.open_loop && !scheduleKept(r.open_loop.sent, r.open_loop.due)
            ? `the generator sent ${r.open_loop.sent} of ${r.open_loop.due} due`
            : r.latency_us.p99 * 1e3 > p99Ns
              ? 'p99 over the bound'
              : undefined;
  return {
    rate,
    p99_us: r.latency_us.p99,
    achieved_per_s: r.rate_per_s,
    ok: why === undefined,
    ...(why ? { why } : {}),
  };
}

export async function findRate(
  opts: BenchOptions,
  p99Ns: number,
  json: boolean,
  signal: AbortSignal,
): Promise<number> {
  const steps: FindStep[] = [];
  const say = (line: string) => (json ? process.stderr : process.stdout).write(`${line}\n`);
  say(`searching for the highest rate with p99 ≤ ${p99Ns / 1e3} µs, ${opts.durationMs / 1000} s per step`);
  const step = async (rate: number) => {
    const r = await runBench({ ...opts, rate, signal });
    const s = judgeStep(r, rate, p99Ns);
    steps.push(s);
    say(
      `step ${String(steps.length).padStart(2)}  rate ${String(rate).padStart(8)}/s  achieved ${String(s.achieved_per_s).padStart(8)}/s  p99 ${s.p99_us} µs  ${s.ok ? 'ok' : `FAIL (${s.why})`}`,
    );
    return s.ok;
  };
  let good = 0;
  let bad = 0;
  let rate = opts.rate ?? 1000;
  while (!signal.aborted && steps.length < MAX_STEPS) {
    if (await step(rate)) {
      good = rate;
      if (rate >= MAX_RATE) break;
      rate = Math.min(MAX_RATE, rate * 2);
    } else {
      bad = rate;
      break;
    }
  }
  while (!signal.aborted && bad > 0 && good > 0 && bad - good > good * 0.05 && steps.length < MAX_STEPS) {
    const mid = Math.round((good + bad) / 2);
    if (await step(mid)) good = mid;
    else bad = mid;
  }
  const found = good;
  if (json)
    process.stdout.write(`${JSON.stringify({ p99_bound_us: p99Ns / 1e3, max_rate: found, steps })}\n`);
  else
    say(
      found > 0
        ? `highest rate with p99 ≤ ${p99Ns / 1e3} µs: ${found}/s${bad ? ` (${bad}/s failed)` : ''}`
        : `no rate tried kept p99 ≤ ${p99Ns / 1e3} µs (lowest tried: ${steps[0]?.rate ?? rate}/s; start lower with --rate)`,
    );
  return found > 0 ? 0 : GATE_FAILED;
}
