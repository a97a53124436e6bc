// What every command shares: the runner (the only place that prints a fatal error and
// exits), signal handling, and the flag groups for socket options and logging. Parsing of
// values is done here, up front, so bad input exits 2 before any socket is opened.

import { statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isIP } from 'node:net';
import { Command, CommanderError, Option } from 'commander';
import { type Cidr, parseCidr } from '../core/access.js';
import { explainError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { createLogger, type LogFormat, type LogLevel } from '../core/log.js';
import { isLoopback, parseDuration, parseInteger, parseSize, UsageError } from '../core/parse.js';
import type { SocketOptions } from '../core/sockopts.js';

/** Run a command's main; map errors to exit codes (2 = bad input, 1 = runtime failure). */
export async function runCli(name: string, main: () => Promise<number | undefined>): Promise<void> {
  // a stderr that fails (its reader left, a full disk) loses lines; it never ends the command
  if (process.stderr.listenerCount('error') === 0) process.stderr.on('error', () => {});
  if (jsonRequested(process.argv.slice(2))) jsonStderr = true;
  let code: number;
  try {
    code = (await main()) ?? 0;
  } catch (err) {
    code = reportFatal(name, err);
  }
  process.exitCode = code;
  // let pending stdout writes flush; the event loop ends on its own when nothing is left
}

/** The command's name, from the script that runs it (bin/echo-client.js: echo-client). */
const commandName = () => (process.argv[1] ?? 'echo').replace(/^.*\//, '').replace(/\.js$/, '');

/** Set once --log-format json is known: the runner's own lines on stderr are JSON objects too. */
let jsonStderr = false;

/** Whether --log-format json was asked for. */
export const jsonLogs = (): boolean => jsonStderr;

/** Whether these arguments ask for --log-format json (read before parsing, for parse errors). */
export function jsonRequested(args: readonly string[]): boolean {
  return args.some((a, i) => a === '--log-format=json' || (a === '--log-format' && args[i + 1] === 'json'));
}

const LEVELS = { info: 30, warn: 40, error: 50 } as const;

/**
 * One line of the runner on stderr: `name: text`, or with --log-format json a JSON object in
 * pino's shape (level, time, pid, name, msg) so that every stderr line parses.
 */
export function stderrLine(
  name: string,
  level: keyof typeof LEVELS,
  text: string,
  fields: object = {},
): void {
  const line = jsonStderr
    ? `${JSON.stringify({ level: LEVELS[level], time: Date.now(), pid: process.pid, name, ...fields, msg: text })}\n`
    : `${name}: ${text}\n`;
  process.stderr.write(line);
}

/** A warning a command gives without failing (`echo-client: 3 datagrams lost…`): the runner's format. */
export function warn(name: string, text: string): void {
  stderrLine(name, 'warn', text);
}

export function reportFatal(name: string, err: unknown): number {
  if (err instanceof CommanderError) {
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0)
      return 0;
    return 2; // commander already printed its one line
  }
  if (err instanceof UsageError) {
    stderrLine(name, 'error', err.message, { exitCode: 2 });
    return 2;
  }
  const role = name === 'echo-client' ? 'client' : name === 'echo-chat' ? 'chat' : 'server';
  const e = err as NodeJS.ErrnoException | undefined;
  stderrLine(name, 'error', explainError(err, { role }).line, {
    exitCode: 1,
    ...(typeof e?.code === 'string' ? { code: e.code } : {}),
  });
  return 1;
}

const VERSION: string = (createRequire(import.meta.url)('../../package.json') as { version: string }).version;

/** A commander program that exits 2 on its own errors, printing `name: message`; -V prints the version. */
export function newProgram(name: string, description: string): Command {
  const cmd: Command = new Command(name)
    .description(description)
    .version(VERSION, '-V, --version', 'print the version and exit')
    .exitOverride()
    .configureOutput({
      outputError: (str, write) => {
        const text = str.replace(/^error: /, '');
        if (jsonStderr || jsonRequested((cmd as unknown as { rawArgs?: string[] }).rawArgs ?? []))
          write(
            `${JSON.stringify({ level: 50, time: Date.now(), pid: process.pid, name, exitCode: 2, msg: text.trimEnd() })}\n`,
          );
        else write(`${name}: ${text}`);
      },
    })
    .showSuggestionAfterError(true);
  return cmd;
}

/** The exit code of a command ended by `signal`, as a shell reports it: 130 (SIGINT), 143 (SIGTERM). */
export function signalExitCode(signal: NodeJS.Signals): number {
  return signal === 'SIGINT' ? 130 : 143;
}

/**
 * End the command at once with `signal`'s exit code, for a signal that cannot wait for the
 * command's main to return (a second Ctrl-C, a listener still waiting for its peer). With
 * runCli's exit code, the only way a command ends.
 */
export function exitOnSignal(signal: NodeJS.Signals): never {
  process.exit(signalExitCode(signal));
}

/**
 * First SIGINT/SIGTERM runs `graceful`; a second one runs `force` and exits at once
 * (130 for SIGINT, 143 for SIGTERM), as close-with-grace does.
 */
export function onSignals(graceful: (signal: NodeJS.Signals) => void, force: () => void): () => void {
  let seen = false;
  const handler = (signal: NodeJS.Signals) => {
    if (seen) {
      force();
      exitOnSignal(signal);
    }
    seen = true;
    graceful(signal);
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}

// --- logging flags -------------------------------------------------------------------------

export function addLogFlags(cmd: Command): Command {
  return cmd
    .option('-v, --verbose', 'log every connection and the socket options the kernel reports')
    .option('-q, --quiet', 'log only warnings and errors')
    .addOption(
      new Option('--log-format <format>', 'log format on stderr')
        .choices(['auto', 'pretty', 'json'])
        .default('auto'),
    );
}

export interface LogFlags {
  verbose?: boolean;
  quiet?: boolean;
  logFormat?: string;
}

export function loggerFromFlags(name: string, f: LogFlags, instance?: string) {
  if (f.logFormat === 'json') jsonStderr = true;
  const level: LogLevel = f.verbose ? 'debug' : f.quiet ? 'warn' : 'info';
  return createLogger({ level, format: (f.logFormat ?? 'auto') as LogFormat, name, instance });
}

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

/**
 * A short letter that means something else in another command (or in nc) than it could here: a
 * hidden option that takes what follows, so the resolver can say what to type instead.
 */
export function redirectOption(flags: string): Option {
  return new Option(flags).hideHelp();
}

/** The first redirected letter given: a usage error saying what to type instead. */
export function checkRedirects(
  f: object,
  redirects: [key: string, flag: string, instead: (v: string) => string][],
): void {
  for (const [key, flag, instead] of redirects) {
    const v = (f as Record<string, unknown>)[key];
    if (v !== undefined) throw new UsageError(flag, undefined, instead(String(v)));
  }
}

/** `-v` and `-q` contradict each other: exit 2 naming both. */
export function checkLogFlags(f: LogFlags): void {
  if (f.verbose && f.quiet) throw conflict('--verbose', '--quiet');
}

/**
 * Status lines for a command whose stderr a person reads next to a conversation (echo-chat):
 * plain text lines by default, JSON lines with `--log-format json`, warnings only with -q.
 */
export function statusLogger(name: string, f: LogFlags): Logger {
  if (f.logFormat === 'json') return loggerFromFlags(name, f);
  const rank = { debug: 0, info: 1, warn: 2, error: 3 };
  const min = f.verbose ? 0 : f.quiet ? 2 : 1;
  const line = (level: keyof typeof rank) => (_o: object, msg?: string) => {
    if (rank[level] >= min && msg !== undefined) process.stderr.write(`${msg}\n`);
  };
  return { debug: line('debug'), info: line('info'), warn: line('warn'), error: line('error') };
}

/** After a listen succeeded: say so when the address is reachable from other machines. */
export function warnIfReachable(logger: Logger, address: string): void {
  if (!isLoopback(address)) {
    logger.warn({ host: address }, `listening on ${address}: this server is reachable from the network`);
  }
}

/**
 * The reader of our stdout may leave (`… | head -c 100`): the next write fails with EPIPE.
 * Stop quietly with exit 0, as cat does when its reader has gone, instead of a stack trace.
 */
export function exitQuietlyOnClosedStdout(): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    stderrLine(commandName(), 'error', explainError(err).line, { exitCode: 1 });
    process.exit(1);
  });
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

/** The flags of every command that listens: socket options (listen-time ones too), access lists, logging. */
export function addListenerFlags(cmd: Command): Command {
  addSocketOptionFlags(cmd, { listen: true });
  addAccessFlags(cmd);
  return addLogFlags(cmd);
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
