// echo-client: interactive prompt on a TTY, one-shot --message (ping-style with --count),
// or piped stdin with an integrity check; --udp for datagrams; `echo-client bench` is the
// load generator (bench-cli.ts).

import type { Socket } from 'node:net';
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import {
  EchoConnection,
  formatProgress,
  type StreamProgress,
  startHeartbeat,
  streamThrough,
} from '../client/echo.js';
import { type ConnectResult, connectTcp, withRetry } from '../core/connect.js';
import { codedError, explainError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import {
  formatAddress,
  parseDuration,
  parseInteger,
  parseIp,
  parsePort,
  parseSize,
  parseTarget,
  plural,
  UsageError,
} from '../core/parse.js';
import { formatReport, type SocketOptions } from '../core/sockopts.js';
import { escapeForTerminal } from '../core/terminal.js';
import { formatTlsInfo } from '../core/tls.js';
import { createTracer, traceSink, traceSocket } from '../core/trace.js';
import { addBenchCommand } from './bench-cli.js';
import {
  addFamilyFlags,
  addLogFlags,
  addSocketOptionFlags,
  addTraceFlags,
  checkLogFlags,
  checkRedirects,
  conflict,
  exitQuietlyOnClosedStdout,
  type FamilyFlags,
  hostForFamily,
  jsonLogs,
  type LogFlags,
  loggerFromFlags,
  newProgram,
  normalizeTraceArg,
  onSignals,
  redirectOption,
  resolveFamily,
  resolveSocketOptions,
  resolveTrace,
  runCli,
  type SocketOptionFlags,
  stderrLine,
  type TraceFlags,
} from './common.js';
import {
  addClientTransportFlags,
  type ClientTransport,
  type ClientTransportFlags,
  INSECURE_WARNING,
  resolveClientTransport,
} from './transport.js';

export const PROMPT = 'Input message (Q to quit): ';

/** The program with its `bench` subcommand; `onBench` gets the bench's exit code. */
export function buildClientProgram(onBench: (code: number) => void = () => {}): Command {
  const cmd = newProgram(
    'echo-client',
    'Echo client: interactive, one-shot, piped with an integrity check, UDP, bench',
  )
    .argument('[host]', 'server address: HOST, HOST:PORT, [v6]:PORT, or a lone PORT (default 127.0.0.1)')
    .argument('[port]', 'server port (default 7007)')
    .option('-p, --port <port>', 'server port (instead of the second argument)')
    .option('-m, --message <text>', 'send this message, print the echo, exit')
    .option('-n, --count <n>', 'with --message: send it this many times over one connection, ping-style')
    .option('-i, --interval <dur>', 'with --count: wait this long between messages')
    .option('--connect-timeout <dur>', 'give up on a connect after this long (ETIMEDOUT)', '10s')
    .option(
      '--heartbeat <dur>',
      'interactive: when idle this long, send an echo to check the peer is still there',
    )
    .option(
      '--heartbeat-timeout <dur>',
      'with --heartbeat: the peer is gone when its echo takes longer (default 3 × --heartbeat)',
    )
    .option('-t, --timeout <dur>', 'give up on a reply after this long (TCP: no limit by default; UDP: 1s)')
    .option(
      '-w <seconds>',
      'as nc -w: give up on a connect or a reply after this many seconds (--timeout, and --connect-timeout when shorter)',
    )
    .addOption(redirectOption('-l [port]'))
    .addOption(redirectOption('-k'))
    .option('--retry <n>', 'TCP: retry a refused or timed-out connect this many times, with backoff')
    .option(
      '--banner',
      'TCP: the server sends a line first (echo-server --banner): print it to stderr, then echo',
    )
    .option('--local-port <port>', 'bind this local port before connecting')
    .option('--local-address <addr>', 'bind this local IP address before connecting')
    .option('-u, --udp', 'UDP: one datagram per line (or per --datagram-size bytes) or message')
    .option('--resend <n>', 'UDP: resend an unanswered datagram this many times (default 2)')
    .option(
      '--datagram-size <size>',
      'UDP, piped: cut the input into datagrams of this size instead of lines',
    );
  addFamilyFlags(cmd);
  addClientTransportFlags(cmd);
  addTraceFlags(cmd);
  addSocketOptionFlags(cmd, { listen: false });
  addLogFlags(cmd);
  // options after `bench` belong to bench (it has its own --udp, --mode…)
  cmd.enablePositionalOptions();
  cmd.helpCommand('help [command]', 'show help for a command (help bench)');
  addBenchCommand(cmd, onBench);
  cmd.addHelpText(
    'after',
    `
Examples:
  echo-client                          interactive: ${PROMPT}
  echo-client 127.0.0.1 7007 --message hello
  echo-client 127.0.0.1:7007 -m hello  (or [::1]:7007, or 7007 alone for 127.0.0.1)
  echo-client --message ping --count 5 --interval 1s
  echo-client -6 -w 2 7007 -m hi       as nc -6 -w 2: [::1]:7007, 2 s to connect and to answer
  head -c 10m /dev/urandom | echo-client > /dev/null   stream and verify every byte
  echo-client --connect-timeout 1s --retry 3 10.0.0.1 7
  echo-client --udp --message hello --timeout 500ms --resend 3
  head -c 64k /dev/urandom | echo-client --udp --datagram-size 1400 > /dev/null
  echo-client --tls --fingerprint AB:CD:…   against echo-server --tls (pin what it printed)
  echo-client --tls --ca ca.pem example.test 7007
  echo-client --unix /tmp/echo.sock -m hello
  echo-client --send-proxy v2 -m hello     as if relayed by HAProxy
  echo-client bench -c 100 -d 5s`,
  );
  return cmd;
}

export interface ClientFlags
  extends SocketOptionFlags,
    LogFlags,
    FamilyFlags,
    ClientTransportFlags,
    TraceFlags {
  port?: string;
  message?: string;
  count?: string;
  interval?: string;
  connectTimeout: string;
  timeout?: string;
  retry?: string;
  localPort?: string;
  localAddress?: string;
  udp?: boolean;
  resend?: string;
  datagramSize?: string;
  heartbeat?: string;
  heartbeatTimeout?: string;
  banner?: boolean;
  /** -w SECONDS, as nc */
  w?: string;
  /** -l / -k: nc's listen flags; refused here, naming echo-server */
  l?: string;
  k?: boolean;
}

export interface ClientConfig {
  host: string;
  port: number;
  family?: 4 | 6;
  message?: string;
  count: number;
  intervalMs: number;
  connectTimeoutMs: number;
  timeoutMs?: number;
  /** TCP: connect attempts after the first */
  retry: number;
  /** UDP: resends of an unanswered datagram */
  resend: number;
  datagramSize?: number;
  heartbeat?: { intervalMs: number; timeoutMs: number };
  localPort?: number;
  localAddress?: string;
  udp: boolean;
  socket: SocketOptions;
  verbose: boolean;
  /** -q, and --log-format json: no progress line */
  quiet: boolean;
  jsonLogs: boolean;
  /** --unix, --tls…, --send-proxy */
  transport: ClientTransport;
  trace?: { format: 'text' | 'hex'; file?: string };
  banner: boolean;
}

export function resolveClientConfig(
  hostArg: string | undefined,
  portArg: string | undefined,
  f: ClientFlags,
): ClientConfig {
  checkLogFlags(f);
  checkRedirects(f, [
    [
      'l',
      '-l',
      (v) => {
        const port = /^\d+$/.test(v) ? v : 'PORT';
        return `echo-client connects; to listen type echo-server -l ${port} (or echo-chat -l ${port})`;
      },
    ],
    ['k', '-k', () => 'is nc -l -k (keep listening); echo-server always does: type echo-server -l PORT'],
  ]);
  if (portArg !== undefined && f.port !== undefined) throw conflict('--port', 'a PORT argument');
  if (f.w !== undefined && f.timeout !== undefined) throw conflict('-w', '--timeout');
  const family = resolveFamily(f);
  const waitMs = f.w !== undefined ? parseDuration('-w', f.w, 1) : undefined;
  const udp = f.udp === true;
  // flags of the other protocol are refused, not ignored
  if (udp && f.retry !== undefined) throw conflict('--retry', '--udp (UDP resends datagrams: --resend)');
  if (!udp && f.resend !== undefined)
    throw new UsageError('--resend', f.resend, 'needs --udp (a TCP connect is retried with --retry)');
  if (!udp && f.datagramSize !== undefined)
    throw new UsageError('--datagram-size', f.datagramSize, 'needs --udp');
  if (f.count !== undefined && f.message === undefined)
    throw new UsageError('--count', f.count, 'needs --message');
  if (f.interval !== undefined && f.count === undefined)
    throw new UsageError('--interval', f.interval, 'needs --count');
  if (f.datagramSize !== undefined && f.message !== undefined) throw conflict('--datagram-size', '--message');
  if (f.heartbeat !== undefined && (udp || f.message !== undefined))
    throw conflict('--heartbeat', udp ? '--udp' : '--message');
  if (f.heartbeatTimeout !== undefined && f.heartbeat === undefined)
    throw new UsageError('--heartbeat-timeout', f.heartbeatTimeout, 'needs --heartbeat');
  if (f.reuseAddr === false && f.localPort === undefined)
    throw new UsageError(
      '--no-reuse-addr',
      undefined,
      'needs --local-port (it is about binding a fixed port)',
    );
  if (f.reuseAddr === false && udp) throw conflict('--no-reuse-addr', '--udp');
  const target = parseTarget(hostArg, portArg ?? f.port, {
    host: family === 6 ? '::1' : '127.0.0.1',
    port: '7007',
  });
  hostForFamily(family, target.host, 'HOST');
  const connectTimeoutMs = parseDuration('--connect-timeout', f.connectTimeout, 1);
  const cfg: ClientConfig = {
    ...target,
    family,
    message: f.message,
    count: f.count !== undefined ? parseInteger('--count', f.count, 1, 1_000_000_000) : 1,
    intervalMs: f.interval !== undefined ? parseDuration('--interval', f.interval) : 0,
    connectTimeoutMs: waitMs !== undefined ? Math.min(waitMs, connectTimeoutMs) : connectTimeoutMs,
    timeoutMs: f.timeout !== undefined ? parseDuration('--timeout', f.timeout, 1) : waitMs,
    retry: f.retry !== undefined ? parseInteger('--retry', f.retry, 0, 1000) : 0,
    resend: f.resend !== undefined ? parseInteger('--resend', f.resend, 0, 1000) : 2,
    heartbeat: f.heartbeat !== undefined ? resolveHeartbeat(f.heartbeat, f.heartbeatTimeout) : undefined,
    datagramSize:
      f.datagramSize !== undefined ? parseSize('--datagram-size', f.datagramSize, 1, 65527) : undefined,
    localPort:
      f.localPort !== undefined ? parsePort('--local-port', f.localPort, { allowZero: false }) : undefined,
    localAddress: f.localAddress !== undefined ? parseIp('--local-address', f.localAddress) : undefined,
    udp,
    socket: clientSocketOptions(f),
    verbose: f.verbose === true,
    quiet: f.quiet === true,
    jsonLogs: f.logFormat === 'json',
    transport: {},
    trace: resolveTrace(f),
    banner: f.banner === true,
  };
  if (cfg.banner && udp) throw conflict('--banner', '--udp');
  if (cfg.trace && udp) throw conflict('--trace', '--udp (echo-server --udp --trace traces datagrams)');
  cfg.transport = resolveClientTransport(f, {
    udp,
    targetGiven:
      hostArg !== undefined
        ? 'a HOST argument'
        : portArg !== undefined
          ? 'a PORT argument'
          : f.port !== undefined
            ? '--port'
            : undefined,
    socket: cfg.socket,
    local:
      f.localPort !== undefined
        ? '--local-port'
        : f.localAddress !== undefined
          ? '--local-address'
          : f[4]
            ? '-4'
            : f[6]
              ? '-6'
              : undefined,
  });
  if (f.message === '' && !cfg.udp) throw new UsageError('--message', '""', 'must not be empty');
  if (udp) {
    const tcpOnly: [string, unknown][] = [
      ['--keepalive', cfg.socket.keepAlive],
      ['--user-timeout', cfg.socket.userTimeoutMs],
      ['--no-delay', cfg.socket.noDelay],
      ['--linger', cfg.socket.lingerMs],
    ];
    for (const [flag, v] of tcpOnly) if (v !== undefined) throw conflict(flag, '--udp');
  }
  return cfg;
}

/** A client sets SO_REUSEADDR only with --local-port (libuv does); --no-reuse-addr is the one choice. */
function clientSocketOptions(f: ClientFlags): SocketOptions {
  const o = resolveSocketOptions(f);
  if (o.reuseAddr === true) delete o.reuseAddr;
  return o;
}

function resolveHeartbeat(every: string, timeout?: string): { intervalMs: number; timeoutMs: number } {
  const intervalMs = parseDuration('--heartbeat', every, 100, 3_600_000);
  return {
    intervalMs,
    timeoutMs:
      timeout !== undefined ? parseDuration('--heartbeat-timeout', timeout, 10, 3_600_000) : 3 * intervalMs,
  };
}

async function connectWithRetry(cfg: ClientConfig, logger: Logger): Promise<ConnectResult> {
  return withRetry(
    () =>
      connectTcp({
        host: cfg.host,
        port: cfg.port,
        ...cfg.transport,
        family: cfg.family,
        connectTimeoutMs: cfg.connectTimeoutMs,
        localAddress: cfg.localAddress,
        localPort: cfg.localPort,
        reuseAddr: cfg.socket.reuseAddr,
        socketOptions: cfg.socket,
      }),
    {
      retries: cfg.retry,
      onRetry: (err, attempt, delay) =>
        logger.warn(
          { attempt, delay },
          `${explainError(err).summary}; retry ${attempt}/${cfg.retry} in ${delay} ms`,
        ),
    },
  );
}

/** The first line the server sends (echo-server --banner), read before any echo. */
function readBanner(socket: Socket, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = Buffer.alloc(0);
    const done = (err?: Error, line?: string) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      // held until whoever reads next attaches its 'data' listener (no byte lost between)
      socket.pause();
      const onListener = (event: string) => {
        if (event !== 'data') return;
        socket.off('newListener', onListener);
        process.nextTick(() => socket.resume());
      };
      socket.on('newListener', onListener);
      if (err) reject(err);
      else resolve(line!);
    };
    const onData = (d: Buffer) => {
      got = Buffer.concat([got, d]);
      const nl = got.indexOf(0x0a);
      if (nl < 0) {
        if (got.length > 4096) done(codedError('ERR_BANNER', 'no newline in the first 4 KiB: not a banner'));
        return;
      }
      const rest = got.subarray(nl + 1);
      if (rest.length) socket.unshift(rest);
      done(undefined, got.subarray(0, nl).toString('utf8').replace(/\r$/, ''));
    };
    const onEnd = () => done(codedError('ERR_BANNER', 'the server closed before sending a banner line'));
    const timer = setTimeout(
      () =>
        done(
          codedError(
            'ERR_BANNER',
            `no banner line within ${timeoutMs} ms (does the server run with --banner?)`,
          ),
        ),
      timeoutMs,
    );
    socket.on('data', onData);
    socket.once('end', onEnd);
  });
}

/**
 * The progress line of a piped transfer, on stderr when it is a terminal and stdout is not that
 * terminal too; none with -q or JSON logs. `clear()` removes it before the last log line.
 */
export function progressOnStderr(cfg: ClientConfig): {
  onProgress?: (p: StreamProgress) => void;
  clear: () => void;
} {
  if (process.stderr.isTTY !== true || process.stdout.isTTY === true || cfg.quiet || cfg.jsonLogs)
    return { clear: () => {} };
  let shown = '';
  return {
    onProgress: (p) => {
      // a terminal write is synchronous: a stalled transfer does not repeat its line
      const line = formatProgress(p);
      if (line !== shown) process.stderr.write(`\r\x1b[2K${line}`);
      shown = line;
    },
    clear: () => {
      if (shown) process.stderr.write('\r\x1b[2K');
      shown = '';
    },
  };
}

/** ping's last line: `5 sent, 5 echoed; rtt min/avg/max = 0.081/0.112/0.204 ms` */
export function pingSummary(sent: number, rtts: number[]): string {
  if (!rtts.length) return `${sent} sent, 0 echoed\n`;
  const avg = rtts.reduce((a, b) => a + b, 0) / rtts.length;
  const f = (x: number) => x.toFixed(3);
  return `${sent} sent, ${rtts.length} echoed; rtt min/avg/max = ${f(Math.min(...rtts))}/${f(avg)}/${f(Math.max(...rtts))} ms\n`;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runClientCli(argv: string[]): Promise<void> {
  exitQuietlyOnClosedStdout();
  await runCli('echo-client', async () => {
    let code = 0;
    const program = buildClientProgram((c) => {
      code = c;
    });
    program.action(async (hostArg: string | undefined, portArg: string | undefined, flags: ClientFlags) => {
      code = await runClient(hostArg, portArg, flags);
    });
    await program.parseAsync(normalizeTraceArg(argv), { from: 'user' });
    return code;
  });
}

async function runClient(hostArg: string | undefined, portArg: string | undefined, flags: ClientFlags) {
  const cfg = resolveClientConfig(hostArg, portArg, flags);
  const logger = loggerFromFlags('echo-client', flags);
  if (cfg.udp) {
    const { runUdpClient } = await import('./udp-client-cli.js');
    return runUdpClient(cfg, logger);
  }
  if (cfg.transport.tls?.insecure) logger.warn({}, INSECURE_WARNING);
  const { socket, options, tls } = await connectWithRetry(cfg, logger);
  try {
    return await overConnection(cfg, logger, socket, options, tls);
  } finally {
    socket.destroy(); // whatever ended the command (a banner that never came…) closes the connection
  }
}

async function overConnection(
  cfg: ClientConfig,
  logger: Logger,
  socket: Socket,
  options: ConnectResult['options'],
  tls: ConnectResult['tls'],
): Promise<number> {
  logger.debug(
    { local: `${socket.localAddress}:${socket.localPort}` },
    cfg.transport.path !== undefined
      ? `connected to unix:${cfg.transport.path}`
      : `connected to ${formatAddress(cfg.host, cfg.port)} from ${formatAddress(socket.localAddress ?? '?', socket.localPort ?? 0)}`,
  );
  if (tls) logger.debug({ ...tls }, `TLS: ${formatTlsInfo(tls)}`);
  if (cfg.trace) {
    const peer =
      cfg.transport.path !== undefined ? `unix:${cfg.transport.path}` : formatAddress(cfg.host, cfg.port);
    traceSocket(socket, createTracer(cfg.trace.format, traceSink(cfg.trace.file)), peer);
  }
  for (const r of options) logger.debug({ ...r }, formatReport(r));
  if (cfg.banner) {
    const line = await readBanner(socket, cfg.connectTimeoutMs);
    if (jsonLogs()) stderrLine('echo-client', 'info', `banner: ${escapeForTerminal(line)}`, { banner: line });
    else process.stderr.write(`banner: ${escapeForTerminal(line)}\n`);
  }
  if (cfg.message !== undefined) return oneShot(cfg, socket, logger);
  if (process.stdin.isTTY) return interactive(cfg, socket);
  if (cfg.heartbeat) {
    socket.destroy();
    throw new UsageError(
      '--heartbeat',
      undefined,
      'works on a terminal (interactive mode); piped input is its own proof of life',
    );
  }
  const progress = progressOnStderr(cfg);
  const result = await streamThrough(socket, process.stdin, process.stdout, {
    timeoutMs: cfg.timeoutMs,
    terminal: process.stdout.isTTY === true,
    onProgress: progress.onProgress,
  });
  progress.clear();
  if (!result.ok) {
    // where in the stream it broke: the byte count a reset or a close arrived at
    if (result.received <= result.sent)
      logger.warn(
        { sent: result.sent, received: result.received },
        `${result.received} of ${plural(result.sent, 'byte')} sent had come back`,
      );
    throw result.problem;
  }
  logger.info(
    { sent: result.sent, received: result.received },
    `${plural(result.sent, 'byte')} sent, all came back identical`,
  );
  return 0;
}

/** --message: print the echo; with --count, one ping-style line per echo and a summary. */
async function oneShot(cfg: ClientConfig, socket: Socket, logger: Logger): Promise<number> {
  const conn = new EchoConnection(socket);
  const msg = Buffer.from(cfg.message!);
  const where =
    cfg.transport.path !== undefined ? `unix:${cfg.transport.path}` : formatAddress(cfg.host, cfg.port);
  const rtts: number[] = [];
  try {
    for (let i = 0; i < cfg.count; i++) {
      if (i > 0 && cfg.intervalMs > 0) await sleep(cfg.intervalMs);
      const { reply, rttMs } = await conn.roundTrip(msg, cfg.timeoutMs);
      rtts.push(rttMs);
      if (cfg.count === 1) {
        // the echo, as echo(1) prints its argument: on its own line
        const text = process.stdout.isTTY ? escapeForTerminal(reply.toString()) : reply;
        process.stdout.write(text);
        if (reply[reply.length - 1] !== 0x0a) process.stdout.write('\n');
      } else {
        process.stdout.write(
          `${plural(reply.length, 'byte')} from ${where}: seq=${i + 1} time=${rttMs.toFixed(3)} ms\n`,
        );
      }
      logger.debug(
        { seq: i + 1, rtt_ms: Number(rttMs.toFixed(3)) },
        `reply ${i + 1}: ${rttMs.toFixed(3)} ms`,
      );
    }
    if (cfg.count > 1) process.stdout.write(pingSummary(cfg.count, rtts));
    await conn.finish(cfg.timeoutMs);
    return 0;
  } finally {
    socket.destroy();
  }
}

/**
 * The prompt loop: each line is sent in full and its whole echo read back before the next
 * prompt. The server closing is reported when it happens, not at the next line typed.
 */
async function interactive(cfg: ClientConfig, socket: Socket): Promise<number> {
  const conn = new EchoConnection(socket);
  const rl = createInterface({ input: process.stdin, output: process.stdout, prompt: PROMPT });
  let ended: 'server' | 'interrupted' | 'dead' | undefined;
  let dead: Error | undefined;
  const stop = (why: 'server' | 'interrupted' | 'dead') => {
    if (ended) return;
    ended = why;
    process.stdout.write('\n'); // end the prompt's line: the shell prompt starts clean
    rl.close();
  };
  socket.once('end', () => stop('server'));
  socket.once('close', () => stop('server'));
  rl.on('SIGINT', () => stop('interrupted'));
  const stopHeartbeat = cfg.heartbeat
    ? startHeartbeat(conn, cfg.heartbeat, (err) => {
        dead = err;
        stop('dead');
      })
    : () => {};
  const stopSignals = onSignals(
    () => stop('interrupted'),
    () => {},
  );
  rl.prompt();
  try {
    let quit = false;
    for await (const line of rl) {
      if (line === 'Q' || line === 'q') {
        quit = true;
        break;
      }
      // the newline goes too, so `nc` on the other side sees lines
      const { reply } = await conn.roundTrip(Buffer.from(`${line}\n`), cfg.timeoutMs);
      process.stdout.write(`from server: ${escapeForTerminal(reply.toString())}`);
      rl.prompt();
    }
    if (!ended && !quit) process.stdout.write('\n'); // Ctrl-D on the prompt: end its line
    if (ended === 'interrupted') return 130;
    if (ended === 'dead') throw dead;
    if (ended === 'server') throw codedError('ERR_SERVER_CLOSED', 'the server closed the connection');
    await conn.finish(cfg.timeoutMs);
    return 0;
  } finally {
    stopHeartbeat();
    stopSignals();
    rl.close();
    socket.destroy();
  }
}
