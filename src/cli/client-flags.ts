// echo-client's flags: the program (with its `bench` subcommand) and the resolution of
// flags and arguments into a ClientConfig, refusing bad input with exit 2 naming the flag.

import type { Command } from 'commander';
import { type ClientConfig, PROMPT } from '../client/session.js';
import {
  parseDuration,
  parseInteger,
  parseIp,
  parsePort,
  parseSize,
  parseTarget,
  UsageError,
} from '../core/parse.js';
import type { SocketOptions } from '../core/sockopts.js';
import { addBenchCommand } from './bench-cli.js';
import {
  addLogFlags,
  checkLogFlags,
  checkRedirects,
  type LogFlags,
  newProgram,
  redirectOption,
} from './common.js';
import {
  addFamilyFlags,
  addSocketOptionFlags,
  addTraceFlags,
  conflict,
  type FamilyFlags,
  hostForFamily,
  resolveFamily,
  resolveSocketOptions,
  resolveTrace,
  type SocketOptionFlags,
  type TraceFlags,
} from './flag-groups.js';
import {
  addClientTransportFlags,
  type ClientTransportFlags,
  resolveClientTransport,
  targetNamedBy,
} from './transport.js';

/** The program with its `bench` subcommand; `onBench` gets the bench's exit code. */
export function buildClientProgram(onBench: (code: number) => void = () => {}): Command {
  const cmd = newProgram(
    'echo-client',
    'Echo client: interactive, one-shot, piped with an integrity check, UDP, bench',
  )
    .argument(
      '[host]',
      'server address: HOST, HOST:PORT, [v6]:PORT, a lone PORT (default 127.0.0.1), or a WebSocket URL ws://HOST:PORT/PATH (wss:// with TLS)',
    )
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
    )
    .option(
      '--text',
      'ws:// URL, piped: each line is a text message (default: binary messages of the input)',
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
  echo-client ws://127.0.0.1:7007/ -m hello   against echo-server --ws (wss:// with --tls flags)
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
  /** with a ws:// URL, piped: lines as text messages */
  text?: boolean;
  /** -w SECONDS, as nc */
  w?: string;
  /** -l / -k: nc's listen flags; refused here, naming echo-server */
  l?: string;
  k?: boolean;
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
    targetGiven: targetNamedBy(hostArg, portArg, f.port),
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
