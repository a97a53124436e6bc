// What every command shares: the runner (the only place that prints a fatal error and
// exits), signal handling, the program, logging flags and stderr lines. The flag groups
// (family, socket options, access lists, traces) are in flag-groups.ts.

import { createRequire } from 'node:module';
import { Command, CommanderError, Option } from 'commander';
import { explainError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { createLogger, type LogFormat, type LogLevel } from '../core/log.js';
import { isLoopback, UsageError } from '../core/parse.js';
import { addAccessFlags, addSocketOptionFlags, conflict } from './flag-groups.js';

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
export function warnIfReachable(logger: Logger, address: string, what = 'this server'): void {
  if (!isLoopback(address)) {
    logger.warn({ host: address }, `listening on ${address}: ${what} is reachable from the network`);
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

/** The flags of every command that listens: socket options (listen-time ones too), access lists, logging. */
export function addListenerFlags(cmd: Command): Command {
  addSocketOptionFlags(cmd, { listen: true });
  addAccessFlags(cmd);
  return addLogFlags(cmd);
}
