// Logging for the commands: pino to stderr, human-readable on a TTY, JSON lines otherwise.
// The library takes any object with these four methods (a pino logger fits) and is silent
// by default, so a test fixture prints nothing unless asked.

import { createRequire } from 'node:module';
import type pino from 'pino';
import { LossySink } from './sink.js';

export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  child?(bindings: object): Logger;
  /** pino's: lets a caller skip building a line that would not be written */
  isLevelEnabled?(level: string): boolean;
}

/** Whether `level` lines are written (true for a logger that cannot say). */
export const logs = (logger: Logger, level: LogLevel): boolean => logger.isLevelEnabled?.(level) ?? true;

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
export type LogFormat = 'pretty' | 'json' | 'auto';

const noop = () => {};
export const silentLogger: Logger = {
  isLevelEnabled: () => false,
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
/** Lines are written once this many bytes wait, or LOG_FLUSH_MS after they were logged. */
const LOG_BATCH = 64 * 1024;
const LOG_FLUSH_MS = 50;

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
  // Lines go out in batches: when LOG_BATCH bytes wait, or within LOG_FLUSH_MS. A line per
  // connection written on its own cost a quarter of the connect rate (10.0k vs 14.0k conn/s under
  // the C generator, a log file as stderr); batched, it is one write per LOG_BATCH. Each write
  // wakes a thread of libuv's pool: at 8 KiB (a write per ~28 close lines) those wake-ups were
  // about 7 % of the server's CPU under connect load, at 64 KiB about 1 %. Lines still
  // waiting when the process exits are written before it does (a full pipe delays that by at
  // most 200 ms). A stderr that fails (EPIPE, ENOSPC, EIO) is given up: lines are counted and
  // dropped, and serving goes on.
  const sink = new LossySink({ fd: 2, minLength: LOG_BATCH, maxLength: LOG_BUFFER, flushMs: LOG_FLUSH_MS });
  // loaded by the first logger: a run that only parses its flags (--help, --version, a refused
  // flag) never needs it
  const require = createRequire(import.meta.url);
  const pino = require('pino') as typeof import('pino').default;
  let logger: pino.Logger;
  if (usePretty) {
    // loaded only for a terminal: it is most of a child process' start-up time otherwise
    const pretty = require('pino-pretty') as typeof import('pino-pretty');
    const stream = pretty({
      destination: sink,
      colorize: process.stderr.isTTY === true,
      translateTime: 'HH:MM:ss.l',
      ignore: 'pid,hostname,name',
      hideObject: true,
    });
    logger = pino({ level, base }, stream);
  } else {
    logger = pino({ level, base }, { write: (s: string) => sink.push(s) });
  }
  // writing works again: say what was lost (if this line finds no room either, it is counted)
  sink.onResume = (n) => logger.warn({ dropped: n }, `${n} log lines dropped: stderr was not being read`);
  return logger;
}
