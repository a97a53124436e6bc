// Logging for the commands: pino to stderr, human-readable on a TTY, JSON lines otherwise.
// The library takes any object with these four methods (a pino logger fits) and is silent
// by default, so a test fixture prints nothing unless asked.

import pino from 'pino';
import pretty from 'pino-pretty';

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
  // sync writes: a line logged just before exit is never lost, and stderr order matches events.
  return pino({ level, base }, pino.destination({ fd: 2, sync: true }));
}
