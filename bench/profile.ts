// Where a server's CPU goes under each load: start it with --cpu-prof, drive it with the C load
// generator, stop it (the profile is written as the process exits) and sum self time per
// function over every process of the server (workers write one profile each). Prints a
// markdown table per load; `npm run bench -- --profile` writes it to bench/profile.md.

import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, lg, node, root, SECONDS } from './tools.js';

const echoServer = path.join(root, 'bin', 'echo-server.js');

interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}
interface CpuProfile {
  nodes: CpuProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
}

export interface Frame {
  name: string;
  where: string;
  selfPct: number;
}

/** Self time per function, summed over profiles, in % of the busy samples (all but '(idle)'). */
export function topFrames(profiles: CpuProfile[], n = 12): Frame[] {
  const hits = new Map<string, { name: string; where: string; hits: number }>();
  let total = 0;
  for (const p of profiles) {
    for (const nd of p.nodes) {
      const h = nd.hitCount ?? 0;
      if (!h || nd.callFrame.functionName === '(idle)') continue;
      total += h;
      const cf = nd.callFrame;
      const file = cf.url ? cf.url.replace(/^file:\/\//, '').replace(`${root}/`, '') : '';
      const where = file ? `${file}:${cf.lineNumber + 1}` : '';
      const name = cf.functionName || '(anonymous)';
      const key = `${name}@${where}`;
      const e = hits.get(key) ?? { name, where, hits: 0 };
      e.hits += h;
      hits.set(key, e);
    }
  }
  return [...hits.values()]
    .sort((a, b) => b.hits - a.hits)
    .slice(0, n)
    .map((e) => ({ name: e.name, where: e.where, selfPct: (100 * e.hits) / Math.max(1, total) }));
}

export interface ProfileLoad {
  name: string;
  /** echo-server arguments besides --port */
  server: string[];
  /** lg arguments besides -p and -d */
  lg: string[];
}

export const LOADS: ProfileLoad[] = [
  // each load runs SECONDS under the C generator, the server started with --cpu-prof
  { name: 'evented, ping-pong 100 conn 64 B', server: [], lg: ['pp', '-c', '100', '-m', '64'] },
  {
    name: 'evented, bulk 1 conn 64 KiB',
    server: [],
    lg: ['bulk', '-c', '1', '-b', '65536', '-W', '4194304'],
  },
  { name: 'evented, connect/echo/close 50 in flight', server: [], lg: ['conn', '-P', '50', '-m', '64'] },
  {
    name: 'evented -q, connect/echo/close 50 in flight',
    server: ['-q'],
    lg: ['conn', '-P', '50', '-m', '64'],
  },
  {
    name: 'workers ×2 (hand-over), connect/echo/close 50 in flight; every process of the server',
    server: ['--mode', 'workers', '--workers', '2'],
    lg: ['conn', '-P', '50', '-m', '64'],
  },
  {
    name: 'UDP, 32 outstanding 64 B',
    server: ['--udp', '--rate-limit', '0'],
    lg: ['udp', '-c', '32', '-m', '64'],
  },
];

/** Profile one load; returns the figure lg measured and the top frames. */
export async function profileLoad(load: ProfileLoad): Promise<{ rate: number; frames: Frame[] }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'echo-prof-'));
  const port = await freePort();
  mkdirSync(path.join(root, 'bench', 'bin'), { recursive: true });
  const log = openSync(path.join(root, 'bench', 'bin', 'profile.log'), 'w');
  const child = spawn(
    node,
    [
      '--cpu-prof',
      '--cpu-prof-dir',
      dir,
      echoServer,
      '--port',
      String(port),
      '--log-format',
      'json',
      ...load.server,
    ],
    { stdio: ['ignore', 'ignore', log] },
  );
  closeSync(log);
  try {
    await new Promise((r) => setTimeout(r, 1500)); // started (workers too)
    const r = lg([...load.lg, '-p', String(port), '-d', String(SECONDS)]);
    child.kill('SIGTERM');
    await new Promise((res) => child.once('exit', res));
    const profiles = readdirSync(dir)
      .filter((f) => f.endsWith('.cpuprofile'))
      .map((f) => JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as CpuProfile);
    return { rate: r.rate_MBps ?? r.rate ?? Number.NaN, frames: topFrames(profiles) };
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The loads BENCH_PROFILE names: `conn` the connect/echo/close ones only; all when unset. */
export function profileLoads(which = process.env.BENCH_PROFILE): ProfileLoad[] {
  return which === 'conn' ? LOADS.filter((l) => l.lg[0] === 'conn') : LOADS;
}

export function profileMarkdown(results: { load: ProfileLoad; rate: number; frames: Frame[] }[]): string {
  const L: string[] = [];
  for (const { load, rate, frames } of results) {
    L.push(
      `### ${load.name} (lg: ${Math.round(rate)}${load.lg[0] === 'bulk' ? ' MB/s' : '/s'} while profiled)`,
      '',
    );
    L.push('| self % of busy time | function | where |', '|---|---|---|');
    for (const f of frames) L.push(`| ${f.selfPct.toFixed(1)} | \`${f.name}\` | ${f.where || '—'} |`);
    L.push('');
  }
  return L.join('\n');
}
