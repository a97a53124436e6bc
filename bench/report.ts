// bench/results.md (ratios to the baseline and to C, measured in the same run) and
// bench/latency.svg (ping-pong latency percentiles per server).

import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ServerFigures } from './run.js';
import { root } from './tools.js';

const fmt = (x: number | undefined, d = 0) => (x === undefined || Number.isNaN(x) ? '—' : x.toFixed(d));
const ratio = (a: number | undefined, b: number | undefined) => (a && b ? (a / b).toFixed(2) : '—');

export interface Report {
  tcp: Record<string, ServerFigures>;
  udp: Record<string, ServerFigures>;
  /** TLS and Unix sockets, each against a plain Node server of the same transport */
  transports: Record<string, ServerFigures>;
  hasC: boolean;
  seconds: number;
  reps: number;
}

/** Write both files; returns the markdown. */
export function writeReport(r: Report): string {
  const { tcp: T, udp: U } = r;
  const b = T.baseline;
  const c = T['C epoll'];
  const L: string[] = ['# Bench results', ''];
  L.push(
    `Produced by \`npm run bench\` on ${new Date().toISOString()} — Node ${process.versions.node}, ${r.seconds} s per run, each figure the median of ${r.reps} runs interleaved across servers, loopback, 2-core machine; the client and the server share the cores. Ratios are against the plain Node baseline (\`net.createServer(s => s.pipe(s))\`) and the C epoll reference measured in this same run.`,
    '',
    '## TCP, driven by our client (echo-client bench)',
    '',
    '| server | ping-pong rt/s (100 conn, 64 B) | × baseline | × C | bulk MB/s (1 conn, 64 KiB) | × baseline | × C | connect/s | × baseline | × C | p50 / p99 µs | RSS per idle conn |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
  );
  for (const [name, f] of Object.entries(T)) {
    const pp = f.ours.pp;
    const bulk = f.ours.bulk;
    const conn = f.ours.conn;
    L.push(
      `| ${name} | ${fmt(pp?.rate_per_s)} | ${ratio(pp?.rate_per_s, b?.ours.pp?.rate_per_s)} | ${ratio(pp?.rate_per_s, c?.ours.pp?.rate_per_s)} | ${fmt(bulk?.mb_per_s)} | ${ratio(bulk?.mb_per_s, b?.ours.bulk?.mb_per_s)} | ${ratio(bulk?.mb_per_s, c?.ours.bulk?.mb_per_s)} | ${fmt(conn?.rate_per_s)} | ${ratio(conn?.rate_per_s, b?.ours.conn?.rate_per_s)} | ${ratio(conn?.rate_per_s, c?.ours.conn?.rate_per_s)} | ${pp ? `${fmt(pp.latency_us.p50)} / ${fmt(pp.latency_us.p99)}` : '—'} | ${f.mem?.bytesPerConn ? `${f.mem.bytesPerConn} B (${f.mem.held} held; ${f.mem.marginal ?? '—'} B each past ${Math.floor(f.mem.held / 2)})` : '—'} |`,
    );
  }
  const fork = T.fork;
  L.push(
    '',
    `Fork mode (a process per connection): ${fmt(fork?.ours.conn?.rate_per_s)} connections/s with 8 in flight. Median time to first echo: ${fmt(fork?.firstEchoSpacedMs, 2)} ms when clients come 300 ms apart (a warm spare child is ready: the wait is the hand-over), ${fmt(fork?.firstEchoMs, 2)} ms back to back (each client waits for a Node process to start); evented: ${fmt(T.evented?.firstEchoMs, 2)} ms.`,
    '',
    'Every echoed byte was verified in every run; a mismatch fails the run (and with it `npm run bench`): none did.',
    '',
  );
  if (r.hasC) {
    L.push(
      '## TCP, driven by the C load generator (lg)',
      '',
      "The same servers loaded by `../shared/perf/lg` — faster than any Node client, so these ratios are the servers' own.",
      '',
      '| server | ping-pong rt/s (100 conn, 64 B) | × baseline | × C | bulk MB/s (1 conn, 64 KiB) | × baseline | × C |',
      '|---|---|---|---|---|---|---|',
    );
    for (const [name, f] of Object.entries(T)) {
      const pp = f.lg.lgPp?.rate;
      const bulk = f.lg.lgBulk?.rate_MBps;
      if (pp === undefined) continue;
      L.push(
        `| ${name} | ${fmt(pp)} | ${ratio(pp, b?.lg.lgPp?.rate)} | ${ratio(pp, c?.lg.lgPp?.rate)} | ${fmt(bulk)} | ${ratio(bulk, b?.lg.lgBulk?.rate_MBps)} | ${ratio(bulk, c?.lg.lgBulk?.rate_MBps)} |`,
      );
    }
    L.push(
      '',
      '## The bench client itself, against the C epoll server',
      '',
      '| run | echo-client bench | C load generator (lg) | ratio |',
      '|---|---|---|---|',
      `| ping-pong, 100 conn, 64 B (rt/s) | ${fmt(c?.ours.pp?.rate_per_s)} | ${fmt(c?.lg.lgPp?.rate)} | ${ratio(c?.ours.pp?.rate_per_s, c?.lg.lgPp?.rate)} |`,
      `| bulk, 1 conn, 64 KiB (MB/s) | ${fmt(c?.ours.bulk?.mb_per_s)} | ${fmt(c?.lg.lgBulk?.rate_MBps)} | ${ratio(c?.ours.bulk?.mb_per_s, c?.lg.lgBulk?.rate_MBps)} |`,
      '',
    );
  }
  const ub = U.baseline?.ours.pp?.rate_per_s;
  const uc = U['C udp_echo']?.ours.pp?.rate_per_s;
  const lub = U.baseline?.lg.lgPp?.rate;
  const luc = U['C udp_echo']?.lg.lgPp?.rate;
  L.push(
    '## UDP (32 datagrams outstanding, 64 B)',
    '',
    '| server | datagrams/s (our client) | × baseline | × C | datagrams/s (C lg) | × baseline | × C | lost |',
    '|---|---|---|---|---|---|---|---|',
  );
  for (const [name, f] of Object.entries(U)) {
    const o = f.ours.pp;
    const l = f.lg.lgPp?.rate;
    L.push(
      `| ${name} | ${fmt(o?.rate_per_s)} | ${ratio(o?.rate_per_s, ub)} | ${ratio(o?.rate_per_s, uc)} | ${fmt(l)} | ${ratio(l, lub)} | ${ratio(l, luc)} | ${fmt(o?.lost)} |`,
    );
  }
  const X = r.transports;
  L.push(
    '',
    '## TLS and Unix-domain sockets (echo-client bench)',
    '',
    'Each of ours against a plain Node server of the same transport, in the same run: `tls.createServer(opts, s => s.pipe(s))` with the same certificate (EC P-256, TLS 1.3), and `net.createServer(s => s.pipe(s)).listen(path)`. TLS connect/s is full handshakes per second (no session resumption).',
    '',
    ...baselineTable(X),
  );
  L.push('', '![latency percentiles](latency.svg)', '');
  const md = `${L.join('\n')}\n`;
  writeFileSync(path.join(root, 'bench', 'results.md'), md);
  writeFileSync(path.join(root, 'bench', 'latency.svg'), svg(T));
  return md;
}

/** Grouped bars: p50 / p90 / p99 of 100-connection ping-pong per server, µs. */
function svg(T: Record<string, ServerFigures>): string {
  const rows = Object.entries(T).flatMap(([name, f]) =>
    f.ours.pp ? [[name, f.ours.pp.latency_us] as const] : [],
  );
  const keys = ['p50', 'p90', 'p99'] as const;
  const colors = ['#4e79a7', '#f28e2b', '#e15759'];
  const max = Math.max(1, ...rows.flatMap(([, l]) => keys.map((k) => l[k])));
  const W = 640;
  const H = 60 + rows.length * 70;
  const x0 = 110;
  const scale = (W - x0 - 80) / max;
  let out = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">\n`;
  out += '<title>Ping-pong latency percentiles per server</title>\n';
  out += '<text x="10" y="20" font-size="14">Ping-pong latency, 100 connections, 64 B (µs)</text>\n';
  rows.forEach(([name, l], i) => {
    const y = 40 + i * 70;
    out += `<text x="10" y="${y + 30}">${name}</text>\n`;
    keys.forEach((k, j) => {
      const v = l[k];
      out += `<rect x="${x0}" y="${y + j * 20}" width="${(v * scale).toFixed(1)}" height="16" fill="${colors[j]}"/>`;
      out += `<text x="${(x0 + v * scale + 4).toFixed(1)}" y="${y + j * 20 + 12}">${k} ${v}</text>\n`;
    });
  });
  return `${out}</svg>\n`;
}

/** The tables of a partial run (BENCH_ONLY): each server against the first of its transport. */
export function partialReport(
  only: string,
  X: Record<string, ServerFigures>,
  seconds: number,
  reps: number,
): string {
  const L = [
    `# Bench, partial run (BENCH_ONLY=${only})`,
    '',
    `Produced by \`BENCH_ONLY=${only} npm run bench\` on ${new Date().toISOString()} — Node ${process.versions.node}, ${seconds} s per run, medians of ${reps} interleaved runs, echo-client bench as the client.`,
    '',
    ...baselineTable(X),
  ];
  return `${L.join('\n')}\n`;
}

/** Each server against the plain Node server of its transport: the one named tls/unix baseline, or `baseline`. */
function baselineTable(X: Record<string, ServerFigures>): string[] {
  const out = [
    '| server | ping-pong rt/s (100 conn, 64 B) | × its baseline | bulk MB/s (1 conn, 64 KiB) | × its baseline | connect/s | × its baseline | p50 / p99 µs |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const [name, f] of Object.entries(X)) {
    const base = name.includes('unix')
      ? X['unix baseline']
      : name.includes('tls')
        ? X['tls baseline']
        : X.baseline;
    const pp = f.ours.pp;
    const bulk = f.ours.bulk;
    const conn = f.ours.conn;
    out.push(
      `| ${name} | ${fmt(pp?.rate_per_s)} | ${ratio(pp?.rate_per_s, base?.ours.pp?.rate_per_s)} | ${fmt(bulk?.mb_per_s)} | ${ratio(bulk?.mb_per_s, base?.ours.bulk?.mb_per_s)} | ${fmt(conn?.rate_per_s)} | ${ratio(conn?.rate_per_s, base?.ours.conn?.rate_per_s)} | ${pp ? `${fmt(pp.latency_us.p50)} / ${fmt(pp.latency_us.p99)}` : '—'} |`,
    );
  }
  return out;
}
