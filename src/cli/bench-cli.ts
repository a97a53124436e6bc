// `echo-client bench`: flags → BenchOptions → runBench; a progress line on a TTY (stderr),
// a table at the end (stdout), or one JSON object with --json.

import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { Option } from 'commander';
import { type BenchResult, checkTargets, fleetTotal, runBench } from '../client/bench.js';
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
import { checkRedirects, onSignals, redirectOption, signalExitCode, warn } from './common.js';
import { conflict, type FamilyFlags, hostForFamily, resolveFamily } from './flag-groups.js';
import {
  addClientTransportFlags,
  type ClientTransportFlags,
  INSECURE_WARNING,
  resolveClientTransport,
  targetNamedBy,
} from './transport.js';
import { resolveBenchWs } from './ws-flags.js';

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
  echo-client bench --unix /tmp/echo.sock --mode stream`,
    )
    .action(async (host: string | undefined, port: string | undefined, flags: BenchFlags) =>
      onDone(await runBenchCli(flags, host, port)),
    );
}

export interface BenchFlags extends ClientTransportFlags, FamilyFlags {
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
  const opts = {
    host,
    port,
    ...(family ? { family } : {}),
    targets,
    ...transport,
    mode: f.mode,
    udp: f.udp === true,
    connections,
    durationMs,
    requests: f.requests !== undefined ? parseInteger('--requests', f.requests, 1, 1e12) : undefined,
    size,
    pipeline,
    rate: f.rate !== undefined ? parseInteger('--rate', f.rate, 1, 10_000_000) : undefined,
    warmupMs: parseDuration('--warmup', f.warmup, 0, MAX_DURATION),
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
  if (opts.targets) return runFleet(f, opts);
  const { host, port, durationMs } = opts;
  const where = opts.path !== undefined ? `unix:${opts.path}` : formatAddress(host, port);
  if (opts.tls?.insecure) warn('echo-client', INSECURE_WARNING);
  await checkTargets([{ host, port, path: opts.path }], opts);
  const tty = process.stderr.isTTY === true && !f.json;
  const stop = stopOnSignal();
  const r = await runBench({
    ...opts,
    signal: stop.signal,
    onProgress: tty
      ? (p) =>
          process.stderr.write(
            `\r\x1b[2K${(p.elapsedMs / 1000).toFixed(1)}/${(durationMs / 1000).toFixed(1)} s  ${Math.round((f.mode === 'stream' ? p.bytes / 1e6 : p.count) / (p.elapsedMs / 1000))} ${f.mode === 'stream' ? 'MB/s' : f.mode === 'connect' ? 'conn/s' : 'rt/s'}`,
          )
      : undefined,
  }).finally(stop.done);
  if (tty) process.stderr.write('\r\x1b[2K');
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
  process.stdout.write(f.json ? `${JSON.stringify(r)}\n` : formatBench(r, where));
  if (r.count === 0 && !r.interrupted) throw noEcho(r, where);
  if (r.lost && r.count > 0) {
    warn(
      'echo-client',
      `${plural(r.lost, 'datagram')} got no echo within 1 s; an echo-server limits each source to 1000 datagrams/s by default (start it with --udp --rate-limit 0 to measure)`,
    );
  }
  if (r.mismatches > 0) {
    throw codedError('ERR_ECHO_MISMATCH', `${r.mismatches} echoed chunks differed from what was sent`);
  }
  return stop.code();
}

/** Nothing was echoed (and no error said why): a bench that measured nothing has failed. */
function noEcho(r: BenchResult, where: string): Error {
  const errs = Object.entries(r.errors).map(([k, v]) => `${k} ${v}`);
  const sent = r.lost ? ` (${r.lost} datagrams went unanswered)` : '';
  const why = errs.length ? `; errors: ${errs.join(', ')}` : '';
  return codedError(
    'ERR_NO_ECHO',
    `${r.mode} bench to ${where}: no echo came back in ${r.duration_s} s${sent}${why}`,
  );
}

/**
 * Ctrl-C (or SIGTERM) while a bench runs stops it and prints what was measured so far, as wrk
 * does; the exit code is still 130 (143). A second signal exits at once.
 */
function stopOnSignal(): { signal: AbortSignal; done: () => void; code: () => number } {
  const ac = new AbortController();
  let got: NodeJS.Signals | undefined;
  const off = onSignals(
    (signal) => {
      got = signal;
      ac.abort();
    },
    () => {},
  );
  return {
    signal: ac.signal,
    done: off,
    code: () => (got === undefined ? 0 : signalExitCode(got)),
  };
}

/** Every target at once, each with its own connections; one result per target and the total. */
async function runFleet(f: BenchFlags, opts: ReturnType<typeof resolveBenchOptions>): Promise<number> {
  const targets = opts.targets!;
  const name = (t: { host: string; port: number }) => formatAddress(t.host, t.port);
  await checkTargets(targets, opts);
  const stop = stopOnSignal();
  const results = await Promise.all(
    targets.map((t) => runBench({ ...opts, host: t.host, port: t.port, signal: stop.signal })),
  ).finally(stop.done);
  const total = fleetTotal(results);
  if (f.json) {
    process.stdout.write(
      `${JSON.stringify({ targets: results.map((r, i) => ({ target: name(targets[i]!), ...r })), total })}\n`,
    );
  } else {
    for (const [i, r] of results.entries()) process.stdout.write(`${formatBench(r, name(targets[i]!))}\n`);
    process.stdout.write(
      `total          ${plural(targets.length, 'target')}: ${plural(total.count, opts.mode === 'stream' ? 'byte' : opts.mode === 'connect' ? 'connection' : 'round trip')}, ${total.rate_per_s}/s, ${total.mb_per_s} MB/s, ${plural(total.mismatches, 'mismatch', 'mismatches')}\n`,
    );
  }
  if (total.mismatches > 0)
    throw codedError('ERR_ECHO_MISMATCH', `${total.mismatches} echoed chunks differed from what was sent`);
  const silent = results.findIndex((r) => r.count === 0 && !r.interrupted);
  if (silent >= 0) throw noEcho(results[silent]!, name(targets[silent]!));
  return stop.code();
}

export function formatBench(r: BenchResult, where: string): string {
  const l = r.latency_us;
  const errs = Object.entries(r.errors)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  const rows: [string, string][] = [
    [
      'target',
      `${where} (${r.mode}, ${r.mode === 'udp' ? `${r.connections} outstanding` : plural(r.connections, 'connection')})`,
    ],
    ['duration', `${r.duration_s} s${r.interrupted ? ' (interrupted: the figures cover this much)' : ''}`],
    [
      r.mode === 'stream' ? 'echoed' : r.mode === 'connect' ? 'connections' : 'round trips',
      r.mode === 'stream' ? `${(r.count / 1e6).toFixed(1)} MB` : String(r.count),
    ],
    ...(r.mode === 'stream'
      ? []
      : ([[r.mode === 'connect' ? 'connections/s' : 'round trips/s', String(r.rate_per_s)]] as [
          string,
          string,
        ][])),
    ['MB/s', String(r.mb_per_s)],
    ...(r.mode === 'stream'
      ? []
      : ([['latency µs', `p50 ${l.p50}  p90 ${l.p90}  p99 ${l.p99}  p99.9 ${l.p999}  max ${l.max}`]] as [
          string,
          string,
        ][])),
    [
      'verified',
      r.mismatches > 0
        ? plural(r.mismatches, 'MISMATCH', 'MISMATCHES')
        : r.count === 0
          ? 'nothing: no echo came back'
          : 'every echoed byte matched',
    ],
    ['errors', errs || 'none'],
    ...(r.lost !== undefined ? ([['lost', String(r.lost)]] as [string, string][]) : []),
  ];
  return `${rows.map(([k, v]) => `${k.padEnd(14)} ${v}`).join('\n')}\n`;
}
