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
  // Lines go out in batches: when LOG_BATCH bytes wait, or within LOG_FLUSH_MS. A line per
  // connection written on its own cost a quarter of the connect rate (10.0k vs 14.0k conn/s under
  // the C generator, a log file as stderr); batched, it is one write per LOG_BATCH. Each write
  // wakes a thread of libuv's pool: at 8 KiB (a write per ~28 close lines) those wake-ups were
  // about 7 % of the server's CPU under connect load, at 64 KiB about 1 %. Lines still
  // waiting when the process exits are written before it does (a full pipe delays that by at
  // most 200 ms). A stderr that fails (EPIPE, ENOSPC, EIO) is given up: lines are counted and
  // dropped, and serving goes on.
  const sink = new LossySink({ fd: 2, minLength: LOG_BATCH, maxLength: LOG_BUFFER, flushMs: LOG_FLUSH_MS });
  let logger: pino.Logger;
  if (usePretty) {
    const pino = requireHere('pino') as typeof import('pino').default;
    // loaded only for a terminal: it is most of a child process' start-up time otherwise
    const pretty = requireHere('pino-pretty') as typeof import('pino-pretty');
    const stream = pretty({
      destination: sink,
      colorize: process.stderr.isTTY === true,
      translateTime: 'HH:MM:ss.l',
      ignore: 'pid,hostname,name',
      hideObject: true,
    });
    logger = pino({ level, base: baseOf(name, instance) }, stream);
  } else logger = jsonLogger({ level, name, instance }, (s) => sink.push(s));
  // writing works again: say what was lost (if this line finds no room either, it is counted)
  sink.onResume = (n) => logger.warn({ dropped: n }, `${n} log lines dropped: stderr was not being read`);
  return logger;
}

/** the bindings on every line: pid, then name and instance when given */
const baseOf = (name?: string, instance?: string) => ({
  pid: process.pid,
  ...(name ? { name } : {}),
  ...(instance ? { instance } : {}),
});

// loaded by the first logger: a run that only parses its flags (--help, --version, a refused
// flag) never needs pino
const requireHere = (id: string): unknown => createRequire(import.meta.url)(id);

/**
 * A pino logger writing JSON lines to `write` (createLogger's, into its sink, when not pretty):
 * its per-connection lines (logLine) are built without pino's general path.
 */
export function jsonLogger(
  { level = 'info', name, instance }: Omit<LoggerOptions, 'format'>,
  write: (line: string) => void,
): pino.Logger {
  const pino = requireHere('pino') as typeof import('pino').default;
  const logger = pino({ level, base: baseOf(name, instance) }, { write });
  const sym = pino.symbols as unknown as Record<string, symbol>;
  const own = logger as unknown as Record<symbol, unknown>;
  own[JSON_LINES] = {
    sym,
    serializers: own[sym.serializersSym!],
    stringifiers: own[sym.stringifiersSym!],
  } satisfies JsonLines;
  return logger;
}

/**
 * On a logger from jsonLogger (and so on its children, which inherit it): pino's symbols, and
 * its serializers and redaction (stringifiers), against which a child's are compared.
 */
const JSON_LINES = Symbol('jsonLines');
interface JsonLines {
  sym: Record<string, symbol>;
  serializers: unknown;
  stringifiers: unknown;
}

/** What logLine reads of a logger whose lines it builds: pino's own parts of a line. */
interface LineParts {
  stream: { write(s: string): void };
  /** `{"level":30` by level number */
  lsCache: Record<number, string>;
  levels: Record<string, number>;
  /** `,"time":…` */
  time: () => string;
  /** `}` and the line end */
  end: string;
  errorKey: string;
  /** where the bindings are (a child's can be changed: read at each line) */
  chindingsSym: symbol;
}

/**
 * Per logger object (each child is its own): its LineParts, or false when pino must write its
 * lines. What decides it is fixed when a pino logger is made, so it is looked at once: a pino
 * logger's properties are many, and each look-up costs (they were a third of a line's cost).
 */
const PARTS = new WeakMap<object, LineParts | false>();

function partsOf(logger: Logger): LineParts | false {
  let parts = PARTS.get(logger);
  if (parts !== undefined) return parts;
  const l = logger as unknown as Record<symbol, unknown>;
  const j = l[JSON_LINES] as JsonLines | undefined;
  const sym = j?.sym ?? {};
  parts =
    j &&
    l[sym.serializersSym!] === j.serializers &&
    l[sym.stringifiersSym!] === j.stringifiers &&
    (l[sym.formattersSym!] as { log?: unknown }).log === undefined &&
    l[sym.msgPrefixSym!] === undefined &&
    !l[sym.mixinSym!] &&
    !(l[sym.hooksSym!] as { streamWrite?: unknown }).streamWrite &&
    !l[sym.nestedKeySym!] &&
    l[sym.messageKeySym!] === 'msg'
      ? {
          stream: l[sym.streamSym!] as LineParts['stream'],
          lsCache: l[sym.lsCacheSym!] as LineParts['lsCache'],
          levels: (logger as unknown as pino.Logger).levels.values,
          time: l[sym.timeSym!] as LineParts['time'],
          end: l[sym.endSym!] as string,
          errorKey: l[sym.errorKeySym!] as string,
          chindingsSym: sym.chindingsSym!,
        }
      : false;
  PARTS.set(logger, parts);
  return parts;
}

/** A string as pino writes it in a JSON line (its asString: short strings are escaped by hand). */
function jsonString(str: string): string {
  const l = str.length;
  if (l > 100) return JSON.stringify(str);
  let result = '';
  let last = 0;
  let found = false;
  let point = 255;
  for (let i = 0; i < l && point >= 32; i++) {
    point = str.charCodeAt(i);
    if (point === 34 || point === 92) {
      result += `${str.slice(last, i)}\\`;
      last = i;
      found = true;
    }
  }
  if (!found) result = str;
  else result += str.slice(last);
  return point < 32 ? JSON.stringify(str) : `"${result}"`;
}

/** `,"key":` for the field names met so far (a bounded few: those of the per-connection lines) */
const KEYS = new Map<string, string>();

/**
 * `logger[level](obj, msg)`, for a line written per connection. On a logger from jsonLogger
 * (createLogger's in JSON mode) the line is built here, byte for byte what pino builds: pino's
 * own level prefix, time, bindings and line end, read from the logger, and the fields as pino's
 * serialization writes numbers, booleans, strings and plain objects; without pino's general
 * path (argument handling, message formatting, per-field serializer and redaction look-ups).
 * Anything else — another logger, a child with its own serializers, formatters, redaction or
 * message prefix, a field pino treats specially (an error under `err`, an HTTP request or
 * response), a value of another type — goes to pino itself.
 */
export function logLine(logger: Logger, level: Exclude<LogLevel, 'silent'>, obj: object, msg: string): void {
  const parts = partsOf(logger);
  if (!parts) {
    logger[level](obj, msg);
    return;
  }
  // as pino's method for a level it does not write: nothing
  if (!(logger as unknown as pino.Logger).isLevelEnabled(level)) return;
  const line = jsonLine(parts, logger, level, obj, msg);
  if (line === undefined) logger[level](obj, msg);
  else parts.stream.write(line);
}

function jsonLine(p: LineParts, logger: Logger, level: string, obj: object, msg: string): string | undefined {
  const o = obj as Record<string, unknown>;
  // pino maps these to their own fields
  if (typeof o.setHeader === 'function' || (o.method && o.headers && o.socket)) return undefined;
  let props = '';
  for (const key in o) {
    if (!Object.hasOwn(o, key)) continue;
    let value = o[key];
    if (value === undefined) continue;
    if (key === p.errorKey) return undefined;
    switch (typeof value) {
      case 'number':
        if (!Number.isFinite(value)) value = null;
        break;
      case 'boolean':
        break;
      case 'string':
        value = jsonString(value);
        break;
      case 'function':
        continue;
      case 'object':
        if (value === null) value = 'null';
        else if (Object.getPrototypeOf(value) === Object.prototype) {
          try {
            value = JSON.stringify(value);
          } catch {
            return undefined;
          }
          if (value === undefined) return undefined;
        } else return undefined;
        break;
      default:
        return undefined;
    }
    let k = KEYS.get(key);
    if (k === undefined) {
      k = `,${jsonString(key)}:`;
      if (KEYS.size < 256) KEYS.set(key, k);
    }
    props += k + value;
  }
  const chindings = (logger as unknown as Record<symbol, string>)[p.chindingsSym];
  return `${p.lsCache[p.levels[level]!]}${p.time()}${chindings}${props},"msg":${jsonString(msg)}${p.end}`;
}
