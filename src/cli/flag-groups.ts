// The flag groups several commands share, each with its resolution: address family and
// where to listen, socket options, access lists (--allow/--deny) and data traces (--trace).
// Values are parsed here, up front, so bad input exits 2 naming the flag before any socket
// is opened.

import { statSync } from 'node:fs';
import { isIP } from 'node:net';
import type { Command } from 'commander';
import { type Cidr, parseCidr } from '../core/access.js';
import { parseDuration, parseInteger, parseSize, UsageError } from '../core/parse.js';
import type { SocketOptions } from '../core/sockopts.js';

// --- address family ------------------------------------------------------------------------

export function addFamilyFlags(cmd: Command): Command {
  return cmd.option('-4', 'IPv4 only').option('-6', 'IPv6 only');
}

export interface FamilyFlags {
  4?: boolean;
  6?: boolean;
}

export function resolveFamily(f: FamilyFlags): 4 | 6 | undefined {
  if (f[4] && f[6]) throw conflict('-4', '-6');
  return f[4] ? 4 : f[6] ? 6 : undefined;
}

/**
 * The address under -4/-6: the family's loopback when none was given (127.0.0.1 or ::1), the
 * given one when it is of that family. An IP literal of the other family is refused naming both;
 * a name is refused too where it would be used as given (a listen address), since its family is
 * only known after resolving it.
 */
export function hostForFamily(
  family: 4 | 6 | undefined,
  host: string | undefined,
  hostFlag: string,
  { names = true }: { names?: boolean } = {},
): string | undefined {
  if (family === undefined) return host;
  if (host === undefined) return family === 6 ? '::1' : '127.0.0.1';
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  const is = isIP(bare);
  if (is !== 0 && is !== family) throw conflict(`-${family}`, `${hostFlag} ${host} (an IPv${is} address)`);
  if (is === 0 && !names)
    throw conflict(
      `-${family}`,
      `${hostFlag} ${host} (a name): give an IPv${family} address such as ${family === 6 ? '::1' : '127.0.0.1'}`,
    );
  return host;
}

/**
 * Where to listen, from --host/--port and nc's positional forms: `PORT` (nc -l 7007) or
 * `HOST PORT` (nc -l 127.0.0.1 7007). A place given twice is refused naming both.
 */
export function listenArgs(
  f: { host?: string; port?: string },
  a1: string | undefined,
  a2: string | undefined,
): { host?: string; hostFlag: string; port?: string } {
  let host = f.host;
  let hostFlag = '--host';
  if (a2 !== undefined || (a1 !== undefined && !/^\d+$/.test(a1))) {
    if (a2 === undefined)
      throw new UsageError('PORT', undefined, `missing after ${a1}: give PORT, or HOST PORT (as nc -l)`);
    if (f.host !== undefined) throw conflict('--host', 'a HOST argument');
    host = a1;
    hostFlag = 'HOST';
  }
  const portArg = a2 ?? a1;
  if (portArg !== undefined && f.port !== undefined) throw conflict('--port', 'a PORT argument');
  return { host, hostFlag, port: portArg ?? f.port };
}

// --- socket option flags -----------------------------------------------------------

export function addSocketOptionFlags(cmd: Command, { listen }: { listen: boolean }): Command {
  if (!listen) {
    cmd.option(
      '--no-reuse-addr',
      'with --local-port: bind it without SO_REUSEADDR (a port still in TIME_WAIT then fails with EADDRINUSE)',
    );
  }
  if (listen) {
    cmd
      .option('--reuse-addr', 'set SO_REUSEADDR on the listening socket (the default)')
      .option(
        '--no-reuse-addr',
        'listen without SO_REUSEADDR (a restart fails while old connections are in TIME_WAIT)',
      )
      .option('--reuse-port', 'set SO_REUSEPORT: several processes share the port, the kernel balances')
      .option('--backlog <n>', 'listen queue length (capped by net.core.somaxconn)');
  }
  return cmd
    .option('--keepalive [idle]', 'TCP keepalive; optional idle time before the first probe (e.g. 30s)')
    .option('--keepalive-interval <dur>', 'time between keepalive probes (TCP_KEEPINTVL)')
    .option('--keepalive-count <n>', 'unanswered probes before the connection is dropped (TCP_KEEPCNT)')
    .option(
      '--user-timeout <dur>',
      'drop the connection when sent data stays unacknowledged this long (TCP_USER_TIMEOUT)',
    )
    .option('--no-delay', 'disable Nagle (TCP_NODELAY)')
    .option('--send-buffer <size>', 'SO_SNDBUF (e.g. 64k; Linux doubles it)')
    .option('--recv-buffer <size>', 'SO_RCVBUF (e.g. 64k; Linux doubles it)')
    .option('--linger <dur>', 'SO_LINGER: how long close() waits for unsent data; 0 closes with RST');
}

export interface SocketOptionFlags {
  reuseAddr?: boolean;
  reusePort?: boolean;
  backlog?: string;
  keepalive?: boolean | string;
  keepaliveInterval?: string;
  keepaliveCount?: string;
  userTimeout?: string;
  delay?: boolean;
  sendBuffer?: string;
  recvBuffer?: string;
  linger?: string;
}

const MAX_BUFFER = 1024 ** 3; // 1 GiB; the kernel caps at net.core.[rw]mem_max anyway

/** Validate the socket option flags; throws UsageError naming the flag. */
export function resolveSocketOptions(f: SocketOptionFlags): SocketOptions {
  const o: SocketOptions = {};
  if (f.reuseAddr !== undefined) o.reuseAddr = f.reuseAddr;
  if (f.reusePort) o.reusePort = true;
  if (f.backlog !== undefined) o.backlog = parseInteger('--backlog', f.backlog, 0, 65535);
  if (f.keepalive !== undefined) {
    o.keepAlive = true;
    if (typeof f.keepalive === 'string')
      o.keepAliveIdleMs = parseDuration('--keepalive', f.keepalive, 1000, 32767_000);
  }
  if (f.keepaliveInterval !== undefined) {
    o.keepAliveIntervalMs = parseDuration('--keepalive-interval', f.keepaliveInterval, 1000, 32767_000);
  }
  if (f.keepaliveCount !== undefined)
    o.keepAliveCount = parseInteger('--keepalive-count', f.keepaliveCount, 1, 127);
  if ((o.keepAliveIntervalMs !== undefined || o.keepAliveCount !== undefined) && o.keepAlive === undefined) {
    o.keepAlive = true; // interval and count mean nothing without keepalive on
  }
  if (f.userTimeout !== undefined)
    o.userTimeoutMs = parseDuration('--user-timeout', f.userTimeout, 0, 2_147_483_647);
  if (f.delay === false) o.noDelay = true;
  if (f.sendBuffer !== undefined) o.sendBuffer = parseSize('--send-buffer', f.sendBuffer, 1, MAX_BUFFER);
  if (f.recvBuffer !== undefined) o.recvBuffer = parseSize('--recv-buffer', f.recvBuffer, 1, MAX_BUFFER);
  if (f.linger !== undefined) o.lingerMs = parseDuration('--linger', f.linger, 0, 65535_000);
  return o;
}

/** Flags that cannot be used together: `cannot use --a with --b`. */
export function conflict(a: string, b: string): UsageError {
  return new UsageError(a, undefined, `cannot be used with ${b}`);
}

// --- access control (--allow / --deny) ----------------------------------------------------------

const collect = (v: string, prev: string[]) => [...prev, v];

export function addAccessFlags(cmd: Command): Command {
  return cmd
    .option(
      '--allow <cidr>',
      'accept peers only from this address or CIDR (repeatable)',
      collect,
      [] as string[],
    )
    .option(
      '--deny <cidr>',
      'refuse peers from this address or CIDR (repeatable; wins over --allow)',
      collect,
      [] as string[],
    );
}

export function resolveAccess(f: { allow?: string[]; deny?: string[] }): { allow: Cidr[]; deny: Cidr[] } {
  return {
    allow: (f.allow ?? []).map((c) => parseCidr('--allow', c)),
    deny: (f.deny ?? []).map((c) => parseCidr('--deny', c)),
  };
}

// --- data traces (--trace) ---------------------------------------------------------------------

export function addTraceFlags(cmd: Command): Command {
  return cmd
    .option(
      '--trace [format]',
      'print every chunk read and written, with time, direction and length: text (socat -v style, the default) or hex (xxd style); to stderr',
    )
    .option('--trace-file <file>', 'with --trace: append the trace to this file instead of stderr');
}

export interface TraceFlags {
  trace?: boolean | string;
  traceFile?: string;
}

export function resolveTrace(f: TraceFlags): { format: 'text' | 'hex'; file?: string } | undefined {
  if (f.traceFile !== undefined && f.trace === undefined)
    throw new UsageError('--trace-file', f.traceFile, 'needs --trace');
  if (f.trace === undefined) return undefined;
  const format = f.trace === true ? 'text' : String(f.trace);
  if (format !== 'text' && format !== 'hex') throw new UsageError('--trace', format, 'is text or hex');
  if (f.traceFile !== undefined) {
    if (f.traceFile === '') throw new UsageError('--trace-file', '""', 'needs a file name');
    let isDir = false;
    try {
      isDir = statSync(f.traceFile).isDirectory();
    } catch {}
    if (isDir) throw new UsageError('--trace-file', f.traceFile, 'is a directory');
  }
  return { format, ...(f.traceFile !== undefined ? { file: f.traceFile } : {}) };
}

/**
 * `--trace` takes an optional format; followed by anything else (`--trace 127.0.0.1 7007`) it
 * means text, and the next word stays what it was.
 */
export function normalizeTraceArg(argv: string[]): string[] {
  return argv.map((a, i) =>
    a === '--trace' && argv[i + 1] !== 'text' && argv[i + 1] !== 'hex' ? '--trace=text' : a,
  );
}
