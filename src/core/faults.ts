// The fault model: what --fault means (parse, format), the faults a server runs with
// (FaultSet, changeable while it runs) and the per-chunk or per-datagram helpers TCP and UDP
// share. Faults are chosen per connection (UDP: per datagram) by the process that accepts it,
// so `p=` and `every=` hold across worker and fork processes; they travel with the connection
// to the process that serves it.

import { parseDuration, parseSize, UsageError } from './parse.js';

export type FaultKind =
  | 'latency'
  | 'bandwidth'
  | 'slice'
  | 'stall-after'
  | 'close-after'
  | 'reset-on-connect'
  | 'blackhole'
  | 'corrupt'
  | 'drop'
  | 'duplicate'
  | 'reorder'
  | 'accept-delay'
  | 'slow-close'
  | 'timeout'
  | 'limit-data'
  | 'down';

export interface Fault {
  kind: FaultKind;
  /**
   * latency: the delay; slice: the pause between pieces; slow-close: how long the FIN is held;
   * timeout: when the connection is closed (0: never); reset-on-connect: after this long (ms)
   */
  delayMs?: number;
  /** latency: ± this much at random, order kept (ms) */
  jitterMs?: number;
  /** bandwidth: bytes per second */
  rate?: number;
  /** slice: piece size; stall-after, close-after, limit-data: after this many bytes */
  bytes?: number;
  /** slice: each piece's size varies by ± this many bytes */
  variation?: number;
  /**
   * The direction the fault acts on: downstream (toward the client, the default) or upstream
   * (toward the service). Echo has one stream: its faults act on what is sent back.
   */
  stream?: 'upstream' | 'downstream';
  /** close-after: FIN, or RST (SO_LINGER 0) */
  how?: 'fin' | 'rst';
  /** corrupt, drop, duplicate, reorder: the chance per chunk (TCP) or datagram (UDP) */
  chance?: number;
  /** apply to this fraction of connections (UDP: datagrams) … */
  fraction?: number;
  /** … or to every Nth one */
  every?: number;
}

export const TCP_FAULTS: readonly FaultKind[] = [
  'latency',
  'bandwidth',
  'slice',
  'stall-after',
  'close-after',
  'reset-on-connect',
  'blackhole',
  'corrupt',
  'accept-delay',
];
export const UDP_FAULTS: readonly FaultKind[] = ['latency', 'corrupt', 'drop', 'duplicate', 'reorder'];
/** What echo-proxy runs on a TCP stream: echo-server's faults and Toxiproxy's others. */
export const PROXY_FAULTS: readonly FaultKind[] = [
  ...TCP_FAULTS.filter((k) => k !== 'accept-delay'),
  'slow-close',
  'timeout',
  'limit-data',
  'down',
];

const KINDS = new Set<FaultKind>([...TCP_FAULTS, ...UDP_FAULTS, ...PROXY_FAULTS]);

function chance(flag: string, raw: string): number {
  const p = Number(raw);
  if (!/^(0|1|0?\.\d+|1\.0*)$/.test(raw) || !(p >= 0 && p <= 1))
    throw new UsageError(flag, raw, 'must be a probability between 0 and 1 (e.g. 0.05)');
  return p;
}

/**
 * A duration inside a fault spec. A bare number is refused rather than read as seconds (the
 * rule of --idle-timeout and the other flags): people who know Toxiproxy type milliseconds.
 */
function faultDuration(flag: string, text: string, raw: string, minMs: number, maxMs: number): number {
  const bare = raw.trim();
  if (/^\d+(\.\d+)?$/.test(bare)) throw new UsageError(flag, text, `${bare}: add a unit, e.g. ${bare}ms`);
  return parseDuration(flag, raw, minMs, maxMs);
}

/** `key=value` at the first `=`: the value keeps any later `=` (and is then refused whole). */
function keyValue(s: string): [string, string | undefined] {
  const i = s.indexOf('=');
  return i < 0 ? [s, undefined] : [s.slice(0, i), s.slice(i + 1)];
}

/** `latency=50ms,jitter=10ms,p=0.5` → a Fault; bad input is a UsageError naming --fault. */
export function parseFault(text: string, flag = '--fault'): Fault {
  const parts = text.split(',').map((s) => s.trim());
  const [head = '', ...opts] = parts;
  const [name, value] = keyValue(head);
  if (!KINDS.has(name as FaultKind))
    throw new UsageError(flag, text, `unknown fault "${name}" (one of: ${[...KINDS].join(', ')})`);
  const kind = name as FaultKind;
  const f: Fault = { kind };
  const need = (what: string) => {
    if (value === undefined || value === '')
      throw new UsageError(flag, text, `${kind} needs a value: ${kind}=${what}`);
    return value;
  };
  switch (kind) {
    case 'latency':
      f.delayMs = faultDuration(flag, text, need('DUR'), 0, 600_000);
      break;
    case 'bandwidth':
      f.rate = parseSize(flag, need('RATE (bytes per second, e.g. 64k)'), 1, 1024 ** 3);
      break;
    case 'slice':
      f.bytes = parseSize(flag, need('SIZE'), 1, 64 * 1024 * 1024);
      f.delayMs = 10; // each piece its own read on the client
      break;
    case 'slow-close':
      f.delayMs = faultDuration(flag, text, need('DUR'), 0, 600_000);
      break;
    case 'timeout':
      // 0: never closes (what Toxiproxy's timeout=0 means); a bare 0 needs no unit
      f.delayMs = need('DUR (0 = never)') === '0' ? 0 : faultDuration(flag, text, value!, 0, 600_000);
      break;
    case 'limit-data':
      f.bytes = parseSize(flag, need('SIZE'), 0, Number.MAX_SAFE_INTEGER);
      break;
    case 'stall-after':
    case 'close-after':
      f.bytes = parseSize(flag, need('SIZE'), 0, Number.MAX_SAFE_INTEGER);
      if (kind === 'close-after') f.how = 'fin';
      break;
    case 'accept-delay':
      f.delayMs = faultDuration(flag, text, need('DUR'), 1, 600_000);
      break;
    case 'blackhole':
    case 'down':
    case 'reset-on-connect':
      if (value !== undefined) throw new UsageError(flag, text, `${kind} takes no value`);
      break;
    case 'reorder':
      f.chance = value === undefined ? 0.5 : chance(flag, value);
      break;
    default:
      f.chance = chance(flag, need('P'));
  }
  for (const opt of opts) {
    const [k, v] = keyValue(opt);
    if (v === undefined || v === '') throw new UsageError(flag, text, `"${k}" needs a value (${k}=…)`);
    if (k === 'p') f.fraction = chance(flag, v);
    else if (k === 'every') {
      if (!/^[1-9]\d{0,8}$/.test(v)) throw new UsageError(flag, text, 'every= needs a whole number ≥ 1');
      f.every = Number(v);
    } else if (k === 'jitter' && kind === 'latency') f.jitterMs = faultDuration(flag, text, v, 0, 600_000);
    else if (k === 'delay' && kind === 'slice') f.delayMs = faultDuration(flag, text, v, 0, 60_000);
    else if (k === 'after' && kind === 'reset-on-connect')
      f.delayMs = faultDuration(flag, text, v, 0, 600_000);
    else if (k === 'variation' && kind === 'slice') f.variation = parseSize(flag, v, 0, 64 * 1024 * 1024);
    else if (k === 'stream') {
      if (v !== 'upstream' && v !== 'downstream')
        throw new UsageError(flag, text, 'stream= is upstream or downstream');
      f.stream = v;
    } else if (k === 'how' && kind === 'close-after') {
      if (v !== 'fin' && v !== 'rst') throw new UsageError(flag, text, 'how= is fin or rst');
      f.how = v;
    } else throw new UsageError(flag, text, `${kind} has no option "${k}"`);
  }
  if (f.fraction !== undefined && f.every !== undefined)
    throw new UsageError(flag, text, 'p= and every= choose connections two ways: give one');
  if (f.kind === 'slice' && f.variation !== undefined && f.variation >= f.bytes!)
    throw new UsageError(flag, text, 'variation= must be smaller than the slice size');
  if (kind === 'accept-delay' && (f.fraction !== undefined || f.every !== undefined))
    throw new UsageError(
      flag,
      text,
      'accept-delay is about the listening socket, not a connection: no p= or every=',
    );
  return f;
}

/** A number ≥ 0 as plain decimal digits (1e-7 → 0.0000001), the form the parsers read. */
function decimal(n: number): string {
  const s = String(n);
  const e = s.indexOf('e');
  if (e < 0) return s;
  const exp = Number(s.slice(e + 1));
  const [int = '', frac = ''] = s.slice(0, e).split('.');
  const digits = int + frac;
  const point = int.length + exp;
  if (point <= 0) return `0.${'0'.repeat(-point)}${digits}`;
  if (point >= digits.length) return digits + '0'.repeat(point - digits.length);
  return `${digits.slice(0, point)}.${digits.slice(point)}`;
}

/** `latency=50ms,jitter=10ms`: a fault as it is written; parseFault() reads it back the same. */
export function formatFault(f: Fault): string {
  const ms = (n: number | undefined) => `${decimal(n ?? 0)}ms`;
  const main =
    f.kind === 'latency' || f.kind === 'accept-delay'
      ? `=${ms(f.delayMs)}${f.jitterMs !== undefined ? `,jitter=${ms(f.jitterMs)}` : ''}`
      : f.kind === 'bandwidth'
        ? `=${f.rate}`
        : f.kind === 'slice'
          ? `=${f.bytes},delay=${ms(f.delayMs)}${f.variation !== undefined ? `,variation=${f.variation}` : ''}`
          : f.kind === 'slow-close' || f.kind === 'timeout'
            ? `=${ms(f.delayMs)}`
            : f.kind === 'reset-on-connect' && f.delayMs
              ? `,after=${ms(f.delayMs)}`
              : f.kind === 'stall-after' || f.kind === 'limit-data'
                ? `=${f.bytes}`
                : f.kind === 'close-after'
                  ? `=${f.bytes},how=${f.how}`
                  : f.chance !== undefined
                    ? `=${decimal(f.chance)}`
                    : '';
  const sel =
    f.fraction !== undefined ? `,p=${decimal(f.fraction)}` : f.every !== undefined ? `,every=${f.every}` : '';
  const dir = f.stream !== undefined ? `,stream=${f.stream}` : '';
  return `${f.kind}${main}${sel}${dir}`;
}

/**
 * What one connection drew when it was accepted, so a change of faults while it is open is
 * applied to it with the same choices: `n`, its number (every=), `rolls`, its draw of each
 * p= fault seen so far (by faultKey), `v`, the FaultSet version it was drawn from. Plain
 * data: it travels with the connection to the process that serves it.
 */
export interface FaultDraw {
  n: number;
  rolls?: Record<string, boolean>;
  v?: number;
}

/** A fault's identity in a list: its fields, and which of the identical ones it is. */
export function faultKeys(list: readonly Fault[]): string[] {
  const seen = new Map<string, number>();
  return list.map((f) => {
    const k = JSON.stringify(Object.entries(f).sort(([a], [b]) => (a < b ? -1 : 1)));
    const i = seen.get(k) ?? 0;
    seen.set(k, i + 1);
    return `${k}#${i}`;
  });
}

/**
 * The faults of a server, changeable while it runs; `pick()` chooses those that apply to the
 * next datagram, `draw()` and `faultsOf()` those of a connection, now and after each change.
 */
export class FaultSet {
  private list: Fault[];
  private n = 0;
  /** counts the changes: a draw older than the list a process knows is redone against it */
  version = 0;

  constructor(faults: Fault[] = []) {
    this.list = faults;
  }

  get faults(): readonly Fault[] {
    return this.list;
  }

  get active(): boolean {
    return this.list.length > 0;
  }

  /** accept-delay: the pause between two accept() calls, if set */
  get acceptDelayMs(): number | undefined {
    return this.list.find((f) => f.kind === 'accept-delay')?.delayMs;
  }

  /** Replace every fault; open connections take the new list through faultsOf() and their draw. */
  set(faults: Fault[]): void {
    this.list = faults;
    this.version++;
  }

  pick(): Fault[] | undefined {
    if (this.list.length === 0) return undefined;
    const n = ++this.n;
    const out = this.list.filter(
      (f) =>
        f.kind !== 'accept-delay' &&
        (f.every === undefined || n % f.every === 0) &&
        (f.fraction === undefined || Math.random() < f.fraction),
    );
    return out.length ? out : undefined;
  }

  /** The next connection's draw (its faults: faultsOf(faults, draw)). */
  draw(): FaultDraw {
    return { n: ++this.n, v: this.version };
  }

  /**
   * The faults of `list` that apply to the connection of `draw`: every= by its number, p= by
   * its roll of that fault, rolled now (and kept in `draw`) for a fault it has not seen. A
   * connection not chosen for a fault is never chosen for it later, nor the other way round,
   * whatever else changes; toxicity 0 never fires (Math.random() < 0 is false). `keys`:
   * faultKeys(list), computed once for many connections.
   */
  static faultsOf(list: readonly Fault[], draw: FaultDraw, keys = faultKeys(list)): Fault[] {
    if (list.length === 0) return [];
    return list.filter((f, i) => {
      if (f.kind === 'accept-delay' || (f.every !== undefined && draw.n % f.every !== 0)) return false;
      if (f.fraction === undefined) return true;
      draw.rolls ??= {};
      const k = keys[i]!;
      draw.rolls[k] ??= Math.random() < f.fraction;
      return draw.rolls[k];
    });
  }
}

/** A latency fault's delay for one chunk or datagram: the delay ± a uniform jitter, never < 0 (ms). */
export function latencyDelay(f: Fault): number {
  const jitter = f.jitterMs ? (Math.random() * 2 - 1) * f.jitterMs : 0;
  return Math.max(0, f.delayMs! + jitter);
}

/** Flip one random bit of a copy of `b`. */
export function flipOneBit(b: Buffer): Buffer {
  const c = Buffer.from(b);
  const i = Math.floor(Math.random() * c.length);
  c[i] = c[i]! ^ (1 << Math.floor(Math.random() * 8));
  return c;
}
