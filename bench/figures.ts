// The figures a bench run measures, as run.ts collects them and report.ts writes them.

import type { BenchResult } from '../src/client/bench.js';
import type { LgResult } from './tools.js';

/** What is measured on a TCP server: with our client, and with the C load generator. */
export type OurRun = 'pp' | 'bulk' | 'conn';
export type LgRun = 'lgPp' | 'lgBulk' | 'lgConn';

export interface ServerFigures {
  ours: Partial<Record<OurRun, BenchResult>>;
  lg: Partial<Record<LgRun, LgResult>>;
  mem?: { held: number; bytesPerConn: number | undefined; marginal: number | undefined };
  firstEchoMs?: number;
  firstEchoSpacedMs?: number;
}

export interface ScaleFigures {
  rows: { workers: number; cpus: string; rate: number; cpuUs: number | undefined }[];
}
