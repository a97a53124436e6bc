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
  /** --instance-name: on every line, so a fleet's logs say which instance wrote them */
  instance?: string;
}

/** Log bytes held for a stderr that is not being read; beyond that, lines are dropped and counted. */
const LOG_BUFFER = 1024 * 1024;

/**
 * A pino logger on stderr (fd 2): pretty when stderr is a TTY or format=pretty, JSON otherwise.
 * Writing never blocks the event loop, on a terminal too: lines go out asynchronously, and a
 * stderr nobody reads (a stuck terminal, Ctrl-S, a full pipe) holds at most LOG_BUFFER bytes;
 * further lines are dropped and, once writing resumes, one line says how many.
 */
export function createLogger({
  level = 'info',
  format = 'auto',
  name,
  instance,
}: LoggerOptions = {}): pino.Logger {
  const usePretty = format === 'pretty' || (format === 'auto' && process.stderr.isTTY === true);
  const base = { pid: process.pid, ...(name ? { name } : {}), ...(instance ? { instance } : {}) };
  // Under load, lines logged while a write is in flight go out together in the next one, so a
  // log line per connection costs no syscall each on the accept path. Lines still in flight when
  // the loop ends are written before the process exits; only a forced exit can cut the last ones.
  const dest = pino.destination({ fd: 2, sync: false, maxLength: LOG_BUFFER });
  let logger: pino.Logger;
  if (usePretty) {
    // loaded only for a terminal: it is most of a child process' start-up time otherwise
    const pretty = createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty');
    const stream = pretty({
      destination: dest,
      colorize: process.stderr.isTTY === true,
      translateTime: 'HH:MM:ss.l',
      ignore: 'pid,hostname,name',
      hideObject: true,
    });
    logger = pino({ level, base }, stream);
  } else {
    logger = pino({ level, base }, dest);
  }
  let dropped = 0;
  dest.on('drop', () => {
    dropped++;
  });
  dest.on('write', () => {
    // writing works again: say what was lost (if this line finds no room either, it is counted)
    if (dropped > 0) {
      const n = dropped;
      dropped = 0;
      logger.warn({ dropped: n }, `${n} log lines dropped: stderr was not being read`);
    }
  });
  return logger;
}
