// `npm run bench -- --c100k`: hold 100,000 idle TCP connections on one host and measure a
// ping-pong's latency while they are held; then one process at 19,000 in steps (its slope).
// Writes bench/results-c100k.md.
//
// Every process here may open at most 20,000 files (a hard limit), so 100,000 connections need
// several processes on both sides: the server as `--mode workers --exclusive --reuse-port`
// (the kernel spreads connections over the workers' listening sockets), and several `lg hold`
// generators, whose source addresses rotate over 127.0.0.2–127.0.0.17 (~28,000 ephemeral ports
// each). Each held connection echoes once (`-m 64`), so every one was accepted and served, not
// just completed in a listen queue. Loopback only; every generator stops within 120 s.

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { binDir, buildC, type LgResult, lg, node, type Running, root, rssKb, startServer } from './tools.js';

const echoServer = path.join(root, 'bin', 'echo-server.js');
const TOTAL = Number(process.env.C100K_TOTAL ?? 100_000);
const WORKERS = Number(process.env.C100K_WORKERS ?? 6);
const GENERATORS = Number(process.env.C100K_GENERATORS ?? 6);
/** the one-process run: idle connections held at each step */
const STEPS = [0, 5000, 10_000, 15_000, 19_000];
/** how long each generator keeps its connections (s); the measurements fit well inside */
const HOLD_S = 100;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Holder {
  child: ChildProcess;
  /** resolves with lg's `held=… echoed=… errs=… establish_ms=…` line, parsed */
  ready: Promise<LgResult>;
}

/** Start `lg hold` with n connections that each echo 64 bytes once, then stay idle. */
function hold(port: number, n: number): Holder {
  const child = spawn(
    path.join(binDir, 'lg'),
    ['hold', '-p', String(port), '-n', String(n), '-m', '64', '-P', '256', '-d', String(HOLD_S)],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  const ready = new Promise<LgResult>((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      out += d;
      const line = /held=.*\n/.exec(out)?.[0];
      if (line)
        resolve(
          Object.fromEntries(
            line
              .trim()
              .split(' ')
              .map((kv) => [kv.split('=')[0]!, Number(kv.split('=')[1])]),
          ),
        );
    });
    child.once('exit', (code) => reject(new Error(`lg hold exited (${code}) before holding: ${out}`)));
  });
  return { child, ready };
}

async function stopHolders(holders: Holder[]): Promise<void> {
  for (const h of holders) {
    if (h.child.exitCode === null && h.child.signalCode === null) {
      h.child.kill('SIGKILL'); // the kernel closes its sockets
      await new Promise((r) => h.child.once('exit', r));
    }
  }
}

/** Established TCP connections to `port` on this host, as the kernel counts them (server side). */
function establishedTo(port: number): number {
  const out = execFileSync('ss', ['-Htn', 'state', 'established', `( sport = :${port} )`], {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  return out.split('\n').filter(Boolean).length;
}

/** Ping-pong, 100 connections, 64 B, 5 s, by the C generator: the latency while connections are held. */
const pingPong = (port: number) =>
  lg(['pp', '-p', String(port), '-c', '100', '-m', '64', '-d', '5', '-w', '0.5', '-S', '1']);

interface Step {
  held: number;
  rssMb: number;
  rate: number;
  p50: number;
  p99: number;
}

async function measureStep(srv: Running, port: number, held: number): Promise<Step> {
  await sleep(500);
  const rssMb = rssKb(srv.pid) / 1024;
  const pp = pingPong(port);
  return { held, rssMb, rate: pp.rate!, p50: pp.p50_us!, p99: pp.p99_us! };
}

/** 100,000 across the workers of one server. */
async function manyProcesses(): Promise<{
  steps: Step[];
  held: number;
  echoed: number;
  kernel: number;
  establishMs: number;
}> {
  const srv = await startServer('c100k-workers', (p) => [
    node,
    [
      echoServer,
      '--port',
      String(p),
      '--mode',
      'workers',
      '--workers',
      String(WORKERS),
      '--exclusive',
      '--reuse-port',
      '--backlog',
      '4096',
      '-q',
    ],
  ]);
  const holders: Holder[] = [];
  try {
    await sleep(1000); // every worker listening
    const steps = [await measureStep(srv, srv.port, 0)];
    const t0 = Date.now();
    for (let i = 0; i < GENERATORS; i++) holders.push(hold(srv.port, Math.ceil(TOTAL / GENERATORS)));
    const lines = await Promise.all(holders.map((h) => h.ready));
    const establishMs = Date.now() - t0;
    const held = lines.reduce((a, l) => a + (l.held ?? 0), 0);
    const echoed = lines.reduce((a, l) => a + (l.echoed ?? 0), 0);
    const kernel = establishedTo(srv.port);
    steps.push(await measureStep(srv, srv.port, held));
    return { steps, held, echoed, kernel, establishMs };
  } finally {
    await stopHolders(holders);
    await srv.stop();
  }
}

/** One evented process, held connections added in steps: RSS and latency at each. */
async function oneProcess(): Promise<Step[]> {
  const srv = await startServer('c100k-one', (p) => [
    node,
    [echoServer, '--port', String(p), '--backlog', '4096', '-q'],
  ]);
  const holders: Holder[] = [];
  const steps: Step[] = [];
  try {
    let held = 0;
    for (const target of STEPS) {
      if (target > held) {
        const h = hold(srv.port, target - held);
        holders.push(h);
        const line = await h.ready;
        held += line.held ?? 0;
      }
      steps.push(await measureStep(srv, srv.port, held));
    }
    return steps;
  } finally {
    await stopHolders(holders);
    await srv.stop();
  }
}

/** RSS bytes per connection between two steps (the first and last by default). */
function slope(steps: Step[], from = 0, to = steps.length - 1): number | undefined {
  const a = steps[from];
  const b = steps[to];
  return a && b && b.held > a.held ? ((b.rssMb - a.rssMb) * 1024 * 1024) / (b.held - a.held) : undefined;
}

function table(steps: Step[]): string[] {
  return [
    '| connections held | server RSS (MB) | ping-pong rt/s (100 conn) | p50 µs | p99 µs |',
    '|---|---|---|---|---|',
    ...steps.map(
      (s) =>
        `| ${s.held} | ${s.rssMb.toFixed(0)} | ${s.rate.toFixed(0)} | ${s.p50.toFixed(0)} | ${s.p99.toFixed(0)} |`,
    ),
  ];
}

export async function c100k(): Promise<string> {
  if (!buildC()) throw new Error('the C load generator (../shared/perf/lg.c) is needed: gcc and ../shared');
  console.error(`c100k: ${TOTAL} connections, ${WORKERS} workers, ${GENERATORS} generators`);
  const many = await manyProcesses();
  console.error('c100k: one process, in steps to 19,000');
  const one = await oneProcess();
  const ok = many.echoed >= TOTAL && many.steps[1]!.p99 < 5000;
  const perConnMany = slope(many.steps);
  const perConnOne = slope(one);
  // past the first step the heap has grown its young generation (a one-off of some tens of MB):
  // the slope from the second step on is what each further connection costs
  const marginalOne = slope(one, 1);
  const L = [
    '# C100K',
    '',
    `Produced by \`npm run bench -- --c100k\` on ${new Date().toISOString()} — Node ${process.versions.node}, loopback, 2 cores; every process may open at most 20,000 files.`,
    '',
    `## ${TOTAL.toLocaleString('en')} idle connections, one host`,
    '',
    `\`echo-server --mode workers --workers ${WORKERS} --exclusive --reuse-port\`, held by ${GENERATORS} \`lg hold\` processes (sources 127.0.0.2–.17), each connection echoing 64 B once before going idle. Then \`lg pp\` (100 connections, 64 B, 5 s) measures latency while they are held.`,
    '',
    `- held: **${many.held}**, each echoed once: **${many.echoed}**; established to the port, as \`ss\` counts them: ${many.kernel}; all up and echoed in ${(many.establishMs / 1000).toFixed(1)} s`,
    `- ping-pong while held: p99 **${many.steps[1]!.p99.toFixed(0)} µs** (target < 5 ms: ${ok ? 'met' : 'NOT met'}), ${many.steps[1]!.rate.toFixed(0)} rt/s; before: p99 ${many.steps[0]!.p99.toFixed(0)} µs, ${many.steps[0]!.rate.toFixed(0)} rt/s`,
    `- RSS of the server (primary and ${WORKERS} workers): ${many.steps[0]!.rssMb.toFixed(0)} MB → ${many.steps[1]!.rssMb.toFixed(0)} MB, ${perConnMany?.toFixed(0) ?? '—'} B per connection`,
    '',
    ...table(many.steps),
    '',
    '## One process (evented), in steps to 19,000',
    '',
    `RSS grows by **${marginalOne?.toFixed(0) ?? '—'} B per further idle connection** from ${one[1]?.held} to ${one[one.length - 1]?.held} held (${perConnOne?.toFixed(0) ?? '—'} B each counted from 0, which includes the heap's one-off growth as the first thousands arrive); ping-pong latency at each step:`,
    '',
    ...table(one),
    '',
  ];
  const md = `${L.join('\n')}\n`;
  writeFileSync(path.join(root, 'bench', 'results-c100k.md'), md);
  return md;
}
