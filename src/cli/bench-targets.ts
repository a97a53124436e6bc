// `echo-client bench --target A --target B …`: every target at once, each with its own
// connections; one result per target, and the total (histograms merged).

import { type BenchOptions, checkTargets, fleetTotal, runBench } from '../client/bench.js';
import { mergeResults } from '../client/bench-merge.js';
import { codedError } from '../core/errors.js';
import { formatAddress, plural } from '../core/parse.js';
import type { BenchGate } from './bench-flags.js';
import { formatBench, formatCsv, formatHistogram, noEcho } from './bench-report.js';
import { startSession, stopOnSignal } from './bench-session.js';

export type FleetOptions = BenchOptions & { targets: { host: string; port: number }[]; gate: BenchGate };

/** Every target at once, each with its own connections; one result per target and the total. */
export async function runFleet(f: { json?: boolean }, opts: FleetOptions): Promise<number> {
  const targets = opts.targets;
  const name = (t: { host: string; port: number }) => formatAddress(t.host, t.port);
  await checkTargets(targets, opts);
  const stop = stopOnSignal();
  const session = startSession(opts.gate, stop.signal);
  const results = await Promise.all(
    targets.map((t) => runBench({ ...opts, host: t.host, port: t.port, ...session.options })),
  ).finally(stop.done);
  const merged = mergeResults(results);
  const total = { ...fleetTotal(results), latency_us: merged.latency_us, histogram: merged.histogram };
  if (opts.gate.csv) {
    const rows = results.map((r, i) => ({ target: name(targets[i]!), r }));
    process.stdout.write(formatCsv([...rows, { target: 'total', r: merged }], opts.gate.percentiles));
  } else if (f.json) {
    process.stdout.write(
      `${JSON.stringify({ targets: results.map((r, i) => ({ target: name(targets[i]!), ...r })), total })}\n`,
    );
  } else {
    for (const [i, r] of results.entries())
      process.stdout.write(`${formatBench(r, name(targets[i]!), opts.gate.percentiles)}\n`);
    process.stdout.write(
      `total          ${plural(targets.length, 'target')}: ${plural(total.count, opts.mode === 'stream' ? 'byte' : opts.mode === 'connect' ? 'connection' : 'round trip')}, ${total.rate_per_s}/s, ${total.mb_per_s} MB/s, ${plural(total.mismatches, 'mismatch', 'mismatches')}\n`,
    );
    if (opts.gate.histogram) process.stdout.write(formatHistogram(merged));
  }
  const verdict = session.verdict(merged);
  if (verdict) return verdict;
  if (total.mismatches > 0)
    throw codedError('ERR_ECHO_MISMATCH', `${total.mismatches} echoed chunks differed from what was sent`);
  const silent = results.findIndex((r) => r.count === 0 && !r.interrupted);
  if (silent >= 0) throw noEcho(results[silent]!, name(targets[silent]!));
  return stop.code();
}
