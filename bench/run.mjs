#!/usr/bin/env node
// npm run bench: every server mode against a plain `net.createServer(s => s.pipe(s))` baseline
// and the C epoll reference of ../shared/perf, all in one run on this machine, driven by our
// bench client (and by the C load generator, to check the client itself). Writes
// bench/results.md and bench/latency.svg. Loopback only; every run is bounded in time.
// Absolute numbers drift on shared 2-core machines: the ratios measured in this run are the result.

import { execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const binDir = path.join(root, 'bench', 'bin');
const perfSrc = path.resolve(root, '..', 'shared', 'perf');
const D = Number(process.env.BENCH_SECONDS ?? 3); // seconds per measured run
const HOLD = Number(process.env.BENCH_HOLD ?? 10000); // idle connections for the memory run
const node = process.execPath;

function buildC() {
  if (!existsSync(perfSrc)) return false;
  mkdirSync(binDir, { recursive: true });
  try {
    for (const [out, src, libs] of [
      ['echo_epoll', 'echo_epoll.c', []],
      ['udp_echo', 'udp_echo.c', []],
      ['lg', 'lg.c', ['-lm']],
    ]) {
      const dst = path.join(binDir, out);
      if (!existsSync(dst))
        execFileSync('gcc', ['-O2', '-Wall', '-o', dst, path.join(perfSrc, src), ...libs]);
    }
    return true;
  } catch (err) {
    console.error(`bench: could not build the C reference (${err.message}); running without it`);
    return false;
  }
}

async function freePort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

/** Start a server process and wait until it accepts (TCP) or a moment (UDP). */
async function startServer(name, cmd, args, port, udp = false) {
  // the server logs to a file: a pipe would fill while this runner blocks in execFileSync,
  // and a server blocked on its own stderr measures nothing
  const log = path.join(binDir, `${name}.log`);
  const fd = openSync(log, 'w');
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', fd] });
  closeSync(fd);
  const err = () => readFileSync(log, 'utf8').slice(-2000);
  const t0 = Date.now();
  if (udp) {
    await new Promise((r) => setTimeout(r, 500));
  } else {
    for (;;) {
      const ok = await new Promise((r) => {
        const s = net.connect(port, '127.0.0.1');
        s.once('connect', () => {
          s.destroy();
          r(true);
        });
        s.once('error', () => r(false));
      });
      if (ok) break;
      if (Date.now() - t0 > 10000) throw new Error(`${name} did not start: ${err()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    name,
    pid: child.pid,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`${name} had exited (${child.exitCode ?? child.signalCode}): ${err()}`);
      }
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 8000);
      await new Promise((r) => child.once('exit', r));
      clearTimeout(t);
    },
  };
}

function ourBench(port, args) {
  console.error(`bench:   echo-client bench ${args.join(' ')}`);
  const out = execFileSync(
    node,
    [
      path.join(root, 'bin', 'echo-client.js'),
      'bench',
      '127.0.0.1',
      String(port),
      '--json',
      '-d',
      `${D}s`,
      '--warmup',
      '500ms',
      ...args,
    ],
    {
      encoding: 'utf8',
      timeout: (D + 30) * 1000,
    },
  );
  return JSON.parse(out);
}

function lg(args) {
  const out = execFileSync(path.join(binDir, 'lg'), args, { encoding: 'utf8', timeout: (D + 40) * 1000 });
  const line = out.trim().split('\n').pop();
  return Object.fromEntries(line.split(' ').map((kv) => kv.split('=')));
}

/** RSS of a process and its children, kB. */
function rssKb(pid) {
  const pids = [pid];
  try {
    const kids = execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .filter(Boolean);
    pids.push(...kids.map(Number));
  } catch {}
  let kb = 0;
  for (const p of pids) {
    const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, 'utf8'));
    kb += m ? Number(m[1]) : 0;
  }
  return kb;
}

async function holdMemory(srv, port) {
  const before = rssKb(srv.pid);
  const child = spawn(
    path.join(binDir, 'lg'),
    ['hold', '-p', String(port), '-n', String(HOLD), '-m', '0', '-d', '4'],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  );
  let out = '';
  await new Promise((resolve) => {
    child.stdout.on('data', (d) => {
      out += d;
      if (/held=\d+/.test(out)) resolve();
    });
    child.once('exit', resolve);
  });
  await new Promise((r) => setTimeout(r, 1000)); // let the server settle its accepts
  const after = rssKb(srv.pid);
  await new Promise((r) => child.once('exit', r));
  const held = Number(/held=(\d+)/.exec(out)?.[1] ?? 0);
  return { held, bytesPerConn: held ? Math.round(((after - before) * 1024) / held) : null };
}

/**
 * Time from connect to the first echoed byte, median of n fresh connections (the fork mode's
 * cost). With gapMs, connections come that far apart, so a warm spare child has time to start.
 */
async function firstEcho(port, n = 30, gapMs = 0) {
  const times = [];
  for (let i = 0; i < n; i++) {
    if (gapMs) await new Promise((r) => setTimeout(r, gapMs));
    const t0 = performance.now();
    await new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => s.write('x'));
      s.once('data', () => {
        times.push(performance.now() - t0);
        s.destroy();
        resolve();
      });
      s.once('error', reject);
    });
  }
  times.sort((a, b) => a - b);
  return Math.round(times[Math.floor(n / 2)] * 100) / 100;
}

const fmt = (x, d = 0) => (x === undefined || x === null || Number.isNaN(x) ? '—' : Number(x).toFixed(d));
const ratio = (a, b) => (a && b ? (a / b).toFixed(2) : '—');

const REPS = Number(process.env.BENCH_REPS ?? 3); // each figure is the median of this many runs

const median = (xs) => {
  const v = xs.filter((x) => typeof x === 'number').sort((a, b) => a - b);
  return v.length ? v[Math.floor(v.length / 2)] : undefined;
};

/** The median run of a set (by its headline figure), so every reported field comes from one real run. */
function medianRun(runs, key) {
  const m = median(runs.map((r) => r[key]));
  return runs.find((r) => r[key] === m);
}

async function main() {
  const hasC = process.platform === 'linux' && buildC();
  mkdirSync(binDir, { recursive: true });
  const echoServerBin = path.join(root, 'bin', 'echo-server.js');
  const tcpServers = [
    [
      'baseline',
      (p) =>
        startServer(
          'baseline',
          node,
          ['-e', `require('net').createServer(s=>{s.on('error',()=>{});s.pipe(s)}).listen(${p},'127.0.0.1')`],
          p,
        ),
    ],
    [
      'evented',
      (p) => startServer('evented', node, [echoServerBin, '--port', String(p), '--log-format', 'json'], p),
    ],
    [
      'workers',
      (p) =>
        startServer(
          'workers',
          node,
          [echoServerBin, '--port', String(p), '--mode', 'workers', '--workers', '2', '--log-format', 'json'],
          p,
        ),
    ],
    [
      'fork',
      (p) =>
        startServer(
          'fork',
          node,
          [
            echoServerBin,
            '--port',
            String(p),
            '--mode',
            'fork',
            '--max-children',
            '200',
            '--log-format',
            'json',
          ],
          p,
        ),
    ],
    ...(hasC
      ? [['C epoll', (p) => startServer('c-epoll', path.join(binDir, 'echo_epoll'), [String(p)], p)]]
      : []),
  ];
  // all servers up at once (idle ones cost nothing); runs interleaved across servers and
  // repeated, so a disturbance on the shared machine hits every server alike
  const up = {};
  for (const [name, start] of tcpServers) {
    const port = await freePort();
    up[name] = { port, srv: await start(port) };
  }
  const runs = Object.fromEntries(
    tcpServers.map(([n]) => [n, { pp: [], bulk: [], conn: [], lgPp: [], lgBulk: [] }]),
  );
  let tcpResults;
  try {
    for (let rep = 0; rep < REPS; rep++) {
      for (const [name] of tcpServers) {
        if (name === 'fork') continue;
        runs[name].pp.push(ourBench(up[name].port, ['-c', '100', '-s', '64']));
      }
      // the C generator drives every server too: it loads a server harder than a Node client can
      for (const [name] of hasC ? tcpServers : []) {
        if (name === 'fork') continue;
        runs[name].lgPp.push(
          lg(['pp', '-p', String(up[name].port), '-c', '100', '-m', '64', '-d', String(D), '-w', '0.5']),
        );
      }
      for (const [name] of tcpServers) {
        if (name === 'fork') continue;
        runs[name].bulk.push(ourBench(up[name].port, ['--mode', 'stream', '-c', '1', '-s', '64k']));
      }
      for (const [name] of hasC ? tcpServers : []) {
        if (name === 'fork') continue;
        runs[name].lgBulk.push(
          lg([
            'bulk',
            '-p',
            String(up[name].port),
            '-c',
            '1',
            '-b',
            '65536',
            '-W',
            '4194304',
            '-d',
            String(D),
          ]),
        );
      }
      for (const [name] of tcpServers) {
        runs[name].conn.push(
          ourBench(up[name].port, ['--mode', 'connect', '-c', name === 'fork' ? '8' : '50', '-s', '64']),
        );
      }
    }
    const results = {};
    for (const [name] of tcpServers) {
      const r = runs[name];
      results[name] = {
        pp: medianRun(r.pp, 'rate_per_s'),
        bulk: medianRun(r.bulk, 'mb_per_s'),
        conn: medianRun(r.conn, 'rate_per_s'),
        lgPp: r.lgPp.length
          ? medianRun(
              r.lgPp.map((x) => ({ ...x, rate: Number(x.rate) })),
              'rate',
            )
          : undefined,
        lgBulk: r.lgBulk.length
          ? medianRun(
              r.lgBulk.map((x) => ({ ...x, rate_MBps: Number(x.rate_MBps) })),
              'rate_MBps',
            )
          : undefined,
      };
    }
    results.fork.firstEchoMs = await firstEcho(up.fork.port);
    results.fork.firstEchoSpacedMs = await firstEcho(up.fork.port, 10, 300);
    results.evented.firstEchoMs = await firstEcho(up.evented.port);
    if (hasC) {
      // memory on a fresh process each: a server that has just served the load runs carries
      // a grown heap, and holding idle connections then shows no growth at all
      for (const [name, start] of tcpServers.filter(([n]) =>
        ['baseline', 'evented', 'C epoll'].includes(n),
      )) {
        console.error(`bench: ${name}: memory with ${HOLD} idle connections (fresh process)`);
        const port = await freePort();
        const fresh = await start(port);
        try {
          await new Promise((r) => setTimeout(r, 500));
          results[name].mem = await holdMemory(fresh, port);
        } finally {
          await fresh.stop();
        }
      }
    }
    tcpResults = results;
  } finally {
    for (const { srv } of Object.values(up)) await srv.stop();
  }
  // UDP: our server (no rate limit: a benchmark is one source on purpose), a plain dgram echo, the C loop
  const udpServers = [
    [
      'baseline',
      (p) =>
        startServer(
          'udp-baseline',
          node,
          [
            '-e',
            `const s=require('dgram').createSocket('udp4');s.on('message',(m,r)=>s.send(m,r.port,r.address));s.bind(${p},'127.0.0.1')`,
          ],
          p,
          true,
        ),
    ],
    [
      'echo-server --udp',
      (p) =>
        startServer(
          'udp-ours',
          node,
          [echoServerBin, '--udp', '--port', String(p), '--rate-limit', '0', '--log-format', 'json'],
          p,
          true,
        ),
    ],
    ...(hasC
      ? [['C udp_echo', (p) => startServer('udp-c', path.join(binDir, 'udp_echo'), [String(p)], p, true)]]
      : []),
  ];
  const uup = {};
  for (const [name, start] of udpServers) {
    const port = await freePort();
    uup[name] = { port, srv: await start(port) };
  }
  const udp = Object.fromEntries(udpServers.map(([n]) => [n, { ours: [], lg: [] }]));
  try {
    for (let rep = 0; rep < REPS; rep++) {
      for (const [name] of udpServers) {
        udp[name].ours.push(ourBench(uup[name].port, ['--udp', '-c', '32', '-s', '64']));
        if (hasC)
          udp[name].lg.push({
            ...lg(['udp', '-p', String(uup[name].port), '-c', '32', '-m', '64', '-d', String(D)]),
          });
      }
    }
  } finally {
    for (const { srv } of Object.values(uup)) await srv.stop();
  }
  const udpResults = Object.fromEntries(
    Object.entries(udp).map(([n, u]) => [
      n,
      {
        ours: medianRun(u.ours, 'rate_per_s'),
        lg: u.lg.length ? { rate: median(u.lg.map((x) => Number(x.rate))) } : undefined,
      },
    ]),
  );
  writeReport(tcpResults, udpResults, hasC);
}

function writeReport(R, U, hasC) {
  const b = R.baseline;
  const c = R['C epoll'];
  const lines = [];
  lines.push('# Bench results', '');
  lines.push(
    `Produced by \`npm run bench\` on ${new Date().toISOString()} — Node ${process.versions.node}, ${D} s per run, each figure the median of ${REPS} runs interleaved across servers, loopback, 2-core machine; the client (\`echo-client bench\`) and the server share the cores. Ratios are against the plain Node baseline (\`net.createServer(s => s.pipe(s))\`) and the C epoll reference measured in this same run.`,
    '',
  );
  lines.push('## TCP', '');
  lines.push(
    '| server | ping-pong rt/s (100 conn, 64 B) | × baseline | × C | bulk MB/s (1 conn, 64 KiB) | × baseline | × C | connect/s | × baseline | × C | p50 / p99 µs | RSS per idle conn |',
  );
  lines.push('|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const [name, r] of Object.entries(R)) {
    lines.push(
      `| ${name} | ${fmt(r.pp?.rate_per_s)} | ${ratio(r.pp?.rate_per_s, b.pp?.rate_per_s)} | ${ratio(r.pp?.rate_per_s, c?.pp?.rate_per_s)} | ${fmt(r.bulk?.mb_per_s)} | ${ratio(r.bulk?.mb_per_s, b.bulk?.mb_per_s)} | ${ratio(r.bulk?.mb_per_s, c?.bulk?.mb_per_s)} | ${fmt(r.conn?.rate_per_s)} | ${ratio(r.conn?.rate_per_s, b.conn?.rate_per_s)} | ${ratio(r.conn?.rate_per_s, c?.conn?.rate_per_s)} | ${r.pp ? `${fmt(r.pp.latency_us.p50)} / ${fmt(r.pp.latency_us.p99)}` : '—'} | ${r.mem?.bytesPerConn ? `${r.mem.bytesPerConn} B (${r.mem.held} held)` : '—'} |`,
    );
  }
  lines.push('');
  lines.push(
    `Fork mode (a process per connection): ${fmt(R.fork?.conn?.rate_per_s)} connections/s with 8 in flight. Median time to first echo: ${fmt(R.fork?.firstEchoSpacedMs, 2)} ms when clients come 300 ms apart (a warm spare child is ready, the wait is the hand-over), ${fmt(R.fork?.firstEchoMs, 2)} ms back to back (each client waits for a Node process to start: the spare cannot be replaced faster than that); evented: ${fmt(R.evented?.firstEchoMs, 2)} ms.`,
    '',
  );
  lines.push(
    'Every echoed byte was verified in every run; a mismatch fails the run (and with it `npm run bench`): none did.',
    '',
  );

  lines.push('## UDP (32 datagrams outstanding, 64 B)', '');
  lines.push('| server | datagrams/s (our client) | × baseline | × C | datagrams/s (C lg) | lost |');
  lines.push('|---|---|---|---|---|---|');
  const ub = U.baseline?.ours?.rate_per_s;
  const uc = U['C udp_echo']?.ours?.rate_per_s;
  for (const [name, u] of Object.entries(U)) {
    lines.push(
      `| ${name} | ${fmt(u.ours.rate_per_s)} | ${ratio(u.ours.rate_per_s, ub)} | ${ratio(u.ours.rate_per_s, uc)} | ${fmt(u.lg?.rate)} | ${fmt(u.ours.lost)} |`,
    );
  }
  lines.push('');
  if (hasC) {
    const lb = R.baseline.lgPp?.rate;
    const lc = c.lgPp?.rate;
    const bb = R.baseline.lgBulk?.rate_MBps;
    const bc = c.lgBulk?.rate_MBps;
    lines.push('## TCP, driven by the C load generator (lg)', '');
    lines.push(
      "The same servers loaded by `../shared/perf/lg` — faster than any Node client, so these ratios are the servers' own (the reference figures in `../shared/perf/README.md` are measured this way).",
      '',
    );
    lines.push(
      '| server | ping-pong rt/s (100 conn, 64 B) | × baseline | × C | bulk MB/s (1 conn, 64 KiB) | × baseline | × C |',
    );
    lines.push('|---|---|---|---|---|---|---|');
    for (const [name, r] of Object.entries(R)) {
      if (!r.lgPp) continue;
      lines.push(
        `| ${name} | ${fmt(r.lgPp.rate)} | ${ratio(r.lgPp.rate, lb)} | ${ratio(r.lgPp.rate, lc)} | ${fmt(r.lgBulk?.rate_MBps)} | ${ratio(r.lgBulk?.rate_MBps, bb)} | ${ratio(r.lgBulk?.rate_MBps, bc)} |`,
      );
    }
    lines.push('');
    lines.push('## The bench client itself, against the C epoll server', '');
    lines.push('| run | echo-client bench | C load generator (lg) | ratio |');
    lines.push('|---|---|---|---|');
    lines.push(
      `| ping-pong, 100 conn, 64 B (rt/s) | ${fmt(c.pp?.rate_per_s)} | ${fmt(c.lgPp?.rate)} | ${ratio(c.pp?.rate_per_s, Number(c.lgPp?.rate))} |`,
    );
    lines.push(
      `| bulk, 1 conn, 64 KiB (MB/s) | ${fmt(c.bulk?.mb_per_s)} | ${fmt(c.lgBulk?.rate_MBps)} | ${ratio(c.bulk?.mb_per_s, Number(c.lgBulk?.rate_MBps))} |`,
    );
    lines.push('');
  }
  lines.push('![latency percentiles](latency.svg)', '');
  writeFileSync(path.join(root, 'bench', 'results.md'), `${lines.join('\n')}\n`);
  writeFileSync(path.join(root, 'bench', 'latency.svg'), svg(R));
  console.log(lines.join('\n'));
}

/** Grouped bars: p50 / p90 / p99 of 100-connection ping-pong per server, µs. */
function svg(R) {
  const rows = Object.entries(R).filter(([, r]) => r.pp);
  const keys = ['p50', 'p90', 'p99'];
  const colors = ['#4e79a7', '#f28e2b', '#e15759'];
  const max = Math.max(1, ...rows.flatMap(([, r]) => keys.map((k) => r.pp.latency_us[k])));
  const W = 640;
  const H = 60 + rows.length * 70;
  const x0 = 110;
  const scale = (W - x0 - 80) / max;
  let out = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">\n`;
  out += '<title>Ping-pong latency percentiles per server</title>\n';
  out += `<text x="10" y="20" font-size="14">Ping-pong latency, 100 connections, 64 B (µs)</text>\n`;
  rows.forEach(([name, r], i) => {
    const y = 40 + i * 70;
    out += `<text x="10" y="${y + 30}">${name}</text>\n`;
    keys.forEach((k, j) => {
      const v = r.pp.latency_us[k];
      out += `<rect x="${x0}" y="${y + j * 20}" width="${(v * scale).toFixed(1)}" height="16" fill="${colors[j]}"/>`;
      out += `<text x="${(x0 + v * scale + 4).toFixed(1)}" y="${y + j * 20 + 12}">${k} ${v}</text>\n`;
    });
  });
  return `${out}</svg>\n`;
}

main().catch((err) => {
  console.error(`bench: ${err.stack ?? err}`);
  process.exitCode = 1;
});
