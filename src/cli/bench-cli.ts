// `echo-client bench`: flags → BenchOptions → runBench; a progress line on a TTY (stderr),
// a table at the end (stdout), or one JSON object with --json.

import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { Option } from 'commander';
import { checkTargets, runBench } from '../client/bench.js';
import { codedError } from '../core/errors.js';
import {
  formatAddress,
  parseDuration,
  parseInteger,
  parseSize,
  parseTarget,
  plural,
  UsageError,
} from '../core/parse.js';
import { findRate } from './bench-find.js';
import {
  addBenchGateFlags,
  type BenchGateFlags,
  resolveBenchGate,
  resolveBenchInput,
  shareOf,
} from './bench-flags.js';
import { addBenchMergeCommand } from './bench-merge-cli.js';
import { formatBench, formatCsv, formatHistogram, noEcho, percentilesUs } from './bench-report.js';
import { startSession, stopOnSignal } from './bench-session.js';
import { runFleet } from './bench-targets.js';
import { checkRedirects, redirectOption, warn } from './common.js';
import { conflict, type FamilyFlags, hostForFamily, resolveFamily } from './flag-groups.js';
import {
  addClientTransportFlags,
  type ClientTransportFlags,
  INSECURE_WARNING,
  resolveClientTransport,
  targetNamedBy,
} from './transport.js';
import { resolveBenchWs } from './ws-flags.js';

export { formatBench };

/** `echo-client bench`: a subcommand whose action resolves with the exit code. */
export function addBenchCommand(program: Command, onDone: (code: number) => void): Command {
  const cmd = program
    .command('bench')
    .description('load and latency, tcpkali-style, with every echoed byte verified')
    .argument('[host]', 'server address (HOST, HOST:PORT, [v6]:PORT, or a lone PORT)')
    .argument('[port]', 'server port (default 7007)')
    .option('-p, --port <port>', 'server port (instead of the second argument)')
    .option('-4', 'IPv4 only (the default server is 127.0.0.1)')
    .option('-6', 'IPv6 only (the default server is ::1)')
    .addOption(redirectOption('-m <value>'))
    .option('-c, --connections <n>', 'connections (UDP: datagrams outstanding)', '10')
    .option('-d, --duration <dur>', 'how long to measure', '10s')
    .option('--requests <n>', 'stop after this many round trips / connections')
    .option('-s, --size <size>', 'message size (stream: write size)')
    .option('--pipeline <n>', 'messages in flight per connection (1 = strict ping-pong)', '1')
    .option('--rate <n>', 'open loop: messages per second in total, latency from the scheduled send time')
    .addOption(
      new Option('--mode <mode>', 'what to measure')
        .choices(['pingpong', 'stream', 'connect'])
        .default('pingpong'),
    )
    .option('-u, --udp', 'UDP ping-pong')
    .option(
      '--ws [path]',
      'WebSocket (echo-server --ws): messages over an upgraded connection; wss with --tls',
    )
    .option('--warmup <dur>', 'run this long before measuring', '1s')
    .option('--json', 'print one JSON object on stdout')
    .option(
      '--target <host:port>',
      'drive several servers at once, each with --connections of its own (repeatable); results per target and in total',
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option('--targets-file <file>', 'read HOST:PORT targets from a file, one per line (# comments)');
  addClientTransportFlags(cmd);
  addBenchGateFlags(cmd);
  addBenchMergeCommand(cmd, onDone);
  return cmd
    .addHelpText(
      'after',
      `
Examples:
  echo-client bench -c 100 -d 5s                  100 connections, strict ping-pong, 64-byte messages
  echo-client bench --mode stream -c 1 -s 64k     bulk MB/s
  echo-client bench --mode connect -c 50          connect/echo/close per second
  echo-client bench --rate 20000 -c 50            open loop, latency without coordinated omission
  echo-client bench --udp -c 32 --json
  echo-client bench -6 -p 7007 -c 10              against [::1]:7007
  echo-client bench --tls --insecure -c 10        TLS ping-pong (handshakes in --mode connect)
  echo-client bench --unix /tmp/echo.sock --mode stream
  echo-client bench --rate 1000 -c 10 --threshold 'p99<5ms' --threshold 'errors==0'   a CI gate (exit 3)
  echo-client bench -d 60s --interval 1s --json-stream run.jsonl                       a time series
  echo-client bench --shard 0/4 --json > a.json; echo-client bench merge a.json b.json …
  echo-client bench --find-rate --p99 5ms -d 3s    the highest rate whose p99 stays under 5 ms`,
    )
    .action(async (host: string | undefined, port: string | undefined, flags: BenchFlags) =>
      onDone(await runBenchCli(flags, host, port)),
    );
}

export interface BenchFlags extends ClientTransportFlags, FamilyFlags, BenchGateFlags {
  port?: string;
  /** -m: echo-client's --message; refused here, naming --mode */
  m?: string;
  target?: string[];
  targetsFile?: string;
  connections: string;
  duration: string;
  requests?: string;
  size?: string;
  pipeline: string;
  rate?: string;
  mode: 'pingpong' | 'stream' | 'connect';
  udp?: boolean;
  ws?: boolean | string;
  warmup: string;
  json?: boolean;
}

const MAX_DURATION = 3_600_000;

/** Validate every bench flag up front; throws UsageError naming the flag. */
export function resolveBenchOptions(f: BenchFlags, hostArg: string | undefined, portArg: string | undefined) {
  checkRedirects(f, [
    ['m', '-m', (v) => `is echo-client's --message; for the bench's mode type --mode ${v}`],
  ]);
  if (f.udp && f.mode !== 'pingpong')
    throw new UsageError('--udp', undefined, `cannot be used with --mode ${f.mode}`);
  const ws = resolveBenchWs(f);
  if (portArg !== undefined && f.port !== undefined) throw conflict('--port', 'a PORT argument');
  const family = resolveFamily(f);
  const { host, port } = parseTarget(hostArg, portArg ?? f.port, {
    host: family === 6 ? '::1' : '127.0.0.1',
    port: '7007',
  });
  hostForFamily(family, host, 'HOST');
  const connections = parseInteger('--connections', f.connections, 1, 100_000);
  const durationMs = parseDuration('--duration', f.duration, 100, MAX_DURATION);
  const defSize = f.mode === 'stream' ? '64k' : '64';
  const size = parseSize('--size', f.size ?? defSize, 1, f.udp ? 65507 : 64 * 1024 * 1024);
  const pipeline = parseInteger('--pipeline', f.pipeline, 1, 65535);
  if (f.rate !== undefined && f.mode !== 'pingpong')
    throw new UsageError('--rate', f.rate, 'needs --mode pingpong');
  if (f.rate !== undefined && f.udp) throw conflict('--rate', '--udp');
  const transport = resolveClientTransport(f, {
    udp: f.udp === true,
    targetGiven: targetNamedBy(hostArg, portArg, f.port),
    socket: {},
    local: family ? `-${family}` : undefined,
  });
  let targets: { host: string; port: number }[] | undefined;
  if (f.target !== undefined || f.targetsFile !== undefined) {
    if (hostArg !== undefined) throw conflict('--target', 'a HOST argument');
    if (f.port !== undefined) throw conflict('--target', '--port');
    if (transport.path !== undefined) throw conflict('--target', '--unix');
    const list = [...(f.target ?? [])];
    if (f.targetsFile !== undefined) {
      let text: string;
      try {
        text = readFileSync(f.targetsFile, 'utf8');
      } catch (err) {
        throw new UsageError(
          '--targets-file',
          f.targetsFile,
          `cannot be read (${(err as NodeJS.ErrnoException).code})`,
        );
      }
      for (const line of text.split('\n')) {
        const t = line.replace(/#.*/, '').trim();
        if (t) list.push(t);
      }
    }
    if (list.length === 0) throw new UsageError('--targets-file', f.targetsFile, 'lists no targets');
    targets = list.map((t) => {
      let target: { host: string; port: number };
      try {
        target = parseTarget(t, undefined, { host: family === 6 ? '::1' : '127.0.0.1' });
      } catch {
        throw new UsageError('--target', t, 'is HOST:PORT ([v6]:PORT)');
      }
      hostForFamily(family, target.host, '--target');
      return target;
    });
  }
  const gate = resolveBenchGate(f);
  if (targets)
    for (const [flag, given] of [
      ['--interval', f.interval],
      ['--json-stream', f.jsonStream],
      ['--abort-on', f.abortOn],
    ] as const)
      if (given !== undefined) throw conflict(flag, '--target');
  let rate = f.rate !== undefined ? parseInteger('--rate', f.rate, 1, 10_000_000) : undefined;
  let conns = connections;
  if (gate.shard) {
    const { index, count } = gate.shard;
    conns = shareOf(connections, gate.shard);
    if (conns === 0)
      throw conflict(`--shard ${index}/${count}`, `--connections ${connections} (no connection left for it)`);
    if (rate !== undefined) rate = shareOf(rate, gate.shard);
    if (rate === 0) throw conflict(`--shard ${index}/${count}`, `--rate ${f.rate} (no rate left for it)`);
  }
  const opts = {
    host,
    port,
    ...(family ? { family } : {}),
    targets,
    gate,
    ...transport,
    mode: f.mode,
    udp: f.udp === true,
    connections: conns,
    durationMs,
    requests: f.requests !== undefined ? parseInteger('--requests', f.requests, 1, 1e12) : undefined,
    size,
    pipeline,
    rate,
    warmupMs: parseDuration('--warmup', f.warmup, 0, MAX_DURATION),
    ...resolveBenchInput(f),
    ...(ws ? { ws } : {}),
  };
  return opts;
}

export async function runBenchCli(
  f: BenchFlags,
  hostArg: string | undefined,
  portArg: string | undefined,
): Promise<number> {
  const opts = resolveBenchOptions(f, hostArg, portArg);
  if (opts.gate.findRate) {
    await checkTargets([{ host: opts.host, port: opts.port, path: opts.path }], opts);
    const stop = stopOnSignal();
    const code = await findRate(opts, opts.gate.findRate.p99Ns, f.json === true, stop.signal).finally(
      stop.done,
    );
    return stop.code() || code;
  }
  if (opts.targets) return runFleet(f, { ...opts, targets: opts.targets });
  const { host, port, durationMs, gate } = opts;
  const where = opts.path !== undefined ? `unix:${opts.path}` : formatAddress(host, port);
  if (opts.tls?.insecure) warn('echo-client', INSECURE_WARNING);
  await checkTargets([{ host, port, path: opts.path }], opts);
  const tty = process.stderr.isTTY === true && !f.json && !gate.intervalLines;
  const stop = stopOnSignal();
  const session = startSession(
    gate,
    stop.signal,
    tty
      ? (p) =>
          process.stderr.write(
            `\r\x1b[2K${(p.elapsedMs / 1000).toFixed(1)}/${(durationMs / 1000).toFixed(1)} s  ${Math.round((f.mode === 'stream' ? p.bytes / 1e6 : p.count) / (p.elapsedMs / 1000))} ${f.mode === 'stream' ? 'MB/s' : f.mode === 'connect' ? 'conn/s' : 'rt/s'}`,
          )
      : undefined,
  );
  const r = await runBench({ ...opts, ...session.options }).finally(stop.done);
  if (tty) process.stderr.write('\r\x1b[2K');
  const result = {
    ...r,
    ...(f.percentiles !== undefined
      ? { percentiles_us: Object.fromEntries(percentilesUs(r, gate.percentiles)) }
      : {}),
    ...(gate.shard ? { shard: gate.shard } : {}),
  };
  session.finish(result);
  if (r.count === 0 && Object.keys(r.errors).length > 0) {
    // nothing came back and something failed: say what, as any other command would
    const [code] = Object.entries(r.errors).sort((a, b) => b[1] - a[1])[0]!;
    throw Object.assign(new Error(`${r.mode} bench to ${where}: ${code}`), {
      code,
      syscall: opts.udp ? 'send' : 'connect',
      address: host,
      port,
      ...(opts.udp ? { proto: 'udp' } : {}),
    });
  }
  if (gate.csv) process.stdout.write(formatCsv([{ target: where, r }], gate.percentiles));
  else if (f.json) process.stdout.write(`${JSON.stringify(result)}\n`);
  else if (gate.jsonStream !== '-')
    process.stdout.write(
      formatBench(r, where, gate.percentiles) + (gate.histogram ? formatHistogram(r) : ''),
    );
  if (r.count === 0 && !r.interrupted) throw noEcho(r, where);
  if (r.lost && r.count > 0) {
    warn(
      'echo-client',
      `${plural(r.lost, 'datagram')} got no echo within 1 s; an echo-server limits each source to 1000 datagrams/s by default (start it with --udp --rate-limit 0 to measure)`,
    );
  }
  const verdict = session.verdict(r);
  if (verdict) return verdict;
  if (r.mismatches > 0) {
    throw codedError('ERR_ECHO_MISMATCH', `${r.mismatches} echoed chunks differed from what was sent`);
  }
  return stop.code();
}
