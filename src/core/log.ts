// Logging for the commands: pino to stderr, human-readable on a TTY, JSON lines otherwise.
// The library takes any object with these four methods (a pino logger fits) and is silent
// by default, so a test fixture prints nothing unless asked.

import { createRequire } from 'node:module';
import pino from 'pino';

export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  child?(bindings: object): Logger;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
export type LogFormat = 'pretty' | 'json' | 'auto';

const noop = () => {};
export const silentLogger: Logger = {
  debug: noop,
  info: noop,
  warn: noop,
  error: noop,
  child: () => silentLogger,
};

export interface LoggerOptions {
  level?: LogLevel;
  format?: LogFormat;
  /** Name shown in JSON lines (`name` field). */
  name?: string;
}

/** A pino logger on stderr (fd 2): pretty when stderr is a TTY or format=pretty, JSON otherwise. */
export function createLogger({ level = 'info', format = 'auto', name }: LoggerOptions = {}): pino.Logger {
  const usePretty = format === 'pretty' || (format === 'auto' && process.stderr.isTTY === true);
  const base = { pid: process.pid, ...(name ? { name } : {}) };
  if (usePretty) {
    // loaded only for a terminal: it is most of a child process' start-up time otherwise
    const pretty = createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty');
    const stream = pretty({
      destination: 2,
      sync: true,
      colorize: process.stderr.isTTY === true,
      translateTime: 'HH:MM:ss.l',
      ignore: 'pid,hostname,name',
      hideObject: true,
    });
    return pino({ level, base }, stream);
  }
  // Asynchronous writes: under load, lines logged while a write is in flight go out together in
  // the next one, so a log line per connection costs no syscall each on the accept path. Lines
  // still in flight when the loop ends are written before the process exits; only a forced
  // exit (a second signal) can cut the last ones.
  return pino({ level, base }, pino.destination({ fd: 2, sync: false }));
}
