// npx tsx bench/hold-rss.ts --before DIR [--reps N] [--n N]
// Memory per idle connection of one evented echo-server (`-q`), counted from the server's
// start: N connections held by two `lg hold` processes (each process may open at most 20,000
// files), each server fresh. Per run: VmRSS of the server from /proc, and V8's heap as the
// server itself reports it after a full GC (process.memoryUsage(), through a preload that
// answers SIGWINCH by writing it to a file). Configurations, round-robin within each rep:
// this tree (light connections), this tree with ECHO_LIGHT=0 (net.Socket on the shared read
// path), this tree with ECHO_SHARED_READ=0 (net.Server's own accept), and DIR (before).
// Prints a markdown table and writes it to bench/results-hold-rss.md.

import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { binDir, buildC, median, root, rssKb, startServer } from './tools.js';

const { values: o } = parseArgs({
  options: {
    before: { type: 'string' },
    reps: { type: 'string', default: '3' },
    n: { type: 'string', default: '10000' },
  },
});
if (!o.before || !existsSync(path.join(o.before, 'bin', 'echo-server.js'))) {
  console.error('hold-rss: --before DIR (a built checkout of this repo) is required');
  process.exit(2);
}
const REPS = Number(o.reps);
const N = Number(o.n);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const preload = path.join(os.tmpdir(), `hold-rss-preload-${process.pid}.cjs`);
writeFileSync(
  preload,
  `process.on('SIGWINCH', () => { globalThis.gc?.(); require('fs').writeFileSync(process.env.HOLD_MEM_OUT, JSON.stringify(process.memoryUsage())); });\n`,
);

const CONFIGS: { name: string; dir: string; env: Record<string, string> }[] = [
  { name: 'after: light connections', dir: root, env: {} },
  { name: 'after, ECHO_LIGHT=0 (net.Socket, shared read)', dir: root, env: { ECHO_LIGHT: '0' } },
  { name: 'after, ECHO_SHARED_READ=0 (public accept)', dir: root, env: { ECHO_SHARED_READ: '0' } },
  { name: 'before (main)', dir: path.resolve(o.before), env: {} },
];

async function heap(pid: number, out: string): Promise<NodeJS.MemoryUsage> {
  rmSync(out, { force: true });
  process.kill(pid, 'SIGWINCH');
  for (let i = 0; i < 200 && !existsSync(out); i++) await sleep(25);
  await sleep(50);
  return JSON.parse(readFileSync(out, 'utf8'));
}

/** `lg hold`: n idle connections kept `seconds`; resolves once they are up. */
async function hold(
  port: number,
  n: number,
  seconds: number,
): Promise<{ held: number; child: ChildProcess }> {
  const child = spawn(
    path.join(binDir, 'lg'),
    ['hold', '-p', String(port), '-n', String(n), '-m', '0', '-d', String(seconds)],
    {
      stdio: ['ignore', 'pipe', 'ignore'],
    },
  );
  let out = '';
  await new Promise<void>((resolve) => {
    child.stdout!.on('data', (d) => {
      out += d;
      if (/held=\d+/.test(out)) resolve();
    });
    child.once('exit', () => resolve());
  });
  return { held: Number(/held=(\d+)/.exec(out)?.[1] ?? 0), child };
}

interface Row {
  held: number;
  rssB: number;
  heapB: number;
  externalB: number;
}

async function once(c: (typeof CONFIGS)[number]): Promise<Row> {
  const out = path.join(os.tmpdir(), `hold-rss-${process.pid}.json`);
  const srv = await startServer(`hold-${c.name}`, (port) => [
    'env',
    [
      ...Object.entries({ ...c.env, HOLD_MEM_OUT: out }).map(([k, v]) => `${k}=${v}`),
      process.execPath,
      '--expose-gc',
      '--require',
      preload,
      path.join(c.dir, 'bin', 'echo-server.js'),
      '--port',
      String(port),
      '--log-format',
      'json',
      '-q',
    ],
  ]);
  try {
    await sleep(500);
    const rss0 = rssKb(srv.pid);
    const h0 = await heap(srv.pid, out);
    const a = await hold(srv.port, Math.floor(N / 2), 10);
    const b = await hold(srv.port, N - Math.floor(N / 2), 6);
    await sleep(1000);
    const rss1 = rssKb(srv.pid);
    const h1 = await heap(srv.pid, out);
    const held = a.held + b.held;
    a.child.kill();
    b.child.kill();
    return {
      held,
      rssB: ((rss1 - rss0) * 1024) / held,
      heapB: (h1.heapUsed - h0.heapUsed) / held,
      externalB: (h1.external + h1.arrayBuffers - h0.external - h0.arrayBuffers) / held,
    };
  } finally {
    await srv.stop().catch(() => {});
  }
}

buildC();
const rows = new Map<string, Row[]>(CONFIGS.map((c) => [c.name, []]));
for (let r = 0; r < REPS; r++) {
  for (const c of CONFIGS) {
    const row = await once(c);
    console.error(
      `hold-rss: rep ${r + 1} ${c.name}: held ${row.held}, RSS ${Math.round(row.rssB)} B, heap ${Math.round(row.heapB)} B per connection`,
    );
    rows.get(c.name)!.push(row);
  }
}
rmSync(preload, { force: true });
const fmt = (xs: number[]) => String(Math.round(median(xs) ?? Number.NaN));
const range = (xs: number[]) => `${Math.round(Math.min(...xs))}–${Math.round(Math.max(...xs))}`;
const lines = [
  '# Memory per idle connection: light connections vs net.Socket',
  '',
  `- date: ${new Date().toISOString()}; Node ${process.version}; ${REPS} reps, each a fresh \`echo-server -q\` (evented) holding ${N} idle connections from two \`lg hold\` processes, counted from the server's start`,
  "- RSS: VmRSS from /proc; heap: the server's process.memoryUsage().heapUsed after a full GC; external: external + arrayBuffers (same); all per held connection, median over reps (min–max); the machine is shared (2 cores, six engineers)",
  '',
  '| config | held | RSS B/conn | RSS min–max | heap B/conn | heap min–max | external B/conn |',
  '|---|---:|---:|---:|---:|---:|---:|',
  ...CONFIGS.map((c) => {
    const rs = rows.get(c.name)!;
    return `| ${c.name} | ${fmt(rs.map((x) => x.held))} | ${fmt(rs.map((x) => x.rssB))} | ${range(rs.map((x) => x.rssB))} | ${fmt(rs.map((x) => x.heapB))} | ${range(rs.map((x) => x.heapB))} | ${fmt(rs.map((x) => x.externalB))} |`;
  }),
  '',
];
console.log(lines.join('\n'));
writeFileSync(path.join(root, 'bench', 'results-hold-rss.md'), lines.join('\n'));
