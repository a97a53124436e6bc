// `echo-client bench merge a.json b.json …`: results of benches run at the same time (shards,
// machines) combined into one, with exact percentiles from the merged histograms; the same
// --threshold gate as a bench, so a fleet run is gated on its total.

import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { BenchResult } from '../client/bench.js';
import { type Condition, checkThresholds, parseCondition } from '../client/bench-gate.js';
import { mergeResults, resultsInText } from '../client/bench-merge.js';
import { UsageError } from '../core/parse.js';
import { formatBench, formatHistogram } from './bench-report.js';
import { GATE_FAILED } from './bench-session.js';

interface MergeFlags {
  json?: boolean;
  histogram?: boolean;
  percentiles?: string;
  threshold?: string[];
}

export function addBenchMergeCommand(bench: Command, onDone: (code: number) => void): Command {
  return bench
    .command('merge')
    .description('combine JSON results of benches run at the same time: rates summed, histograms merged')
    .argument(
      '<files...>',
      'results of `bench --json` (or --json-stream files, or collected pod logs); - is stdin',
    )
    .option('--json', 'print the merged result as one JSON object')
    .option('--histogram', 'print the merged histogram')
    .option('--percentiles <list>', 'percentiles to report, e.g. 50,90,99,99.9,99.99')
    .option(
      '--threshold <cond>',
      "exit 3 unless this holds for the merged result, e.g. 'p99<5ms' (repeatable)",
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .action((files: string[], f: MergeFlags) => onDone(runMerge(files, f)));
}

export function runMerge(files: string[], f: MergeFlags): number {
  const percentiles = (f.percentiles ?? '50,90,99,99.9').split(',').map((p) => {
    const n = Number(p.trim());
    if (!(n > 0 && n <= 100))
      throw new UsageError('--percentiles', f.percentiles, `${p} is not a percentile in (0, 100]`);
    return n;
  });
  const conds: Condition[] = (f.threshold ?? []).map((raw) => {
    try {
      return parseCondition(raw);
    } catch (err) {
      throw new UsageError('--threshold', raw, (err as Error).message);
    }
  });
  const parts: BenchResult[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file === '-' ? 0 : file, 'utf8');
    } catch (err) {
      throw new UsageError('merge', file, `cannot be read (${(err as NodeJS.ErrnoException).code})`);
    }
    try {
      parts.push(...resultsInText(text));
    } catch (err) {
      throw new UsageError('merge', file, (err as Error).message);
    }
  }
  let merged: ReturnType<typeof mergeResults>;
  try {
    merged = mergeResults(parts);
  } catch (err) {
    throw new UsageError('merge', files.join(' '), (err as Error).message);
  }
  if (f.json) process.stdout.write(`${JSON.stringify(merged)}\n`);
  else
    process.stdout.write(
      formatBench(merged, `${merged.merged} results merged`, percentiles) +
        (f.histogram ? formatHistogram(merged) : ''),
    );
  const failed = checkThresholds(conds, merged).filter((v) => !v.ok);
  for (const v of failed) process.stderr.write(`echo-client: ${v.message}\n`);
  return failed.length ? GATE_FAILED : 0;
}
