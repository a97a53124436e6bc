// Parsing and validation of what people type: ports, hosts, sizes, durations, counts.
// Used by every CLI (src/cli) before anything opens a socket; each failure is a
// UsageError that names the flag, so the runner can print one line and exit 2.

import { isIP } from 'node:net';

/** Bad input from the command line: the runner prints `prog: FLAG VALUE: REASON` and exits 2. */
export class UsageError extends Error {
  constructor(
    readonly flag: string,
    readonly value: string | undefined,
    readonly reason: string,
  ) {
    super(value === undefined ? `${flag}: ${reason}` : `${flag} ${value}: ${reason}`);
    this.name = 'UsageError';
  }
}

const INTEGER = /^[+]?\d+$/;

/** A whole number within [min, max]. */
export function parseInteger(flag: string, raw: string, min: number, max: number): number {
  const s = raw.trim();
  if (!INTEGER.test(s)) throw new UsageError(flag, raw, `must be a whole number (${min}-${max})`);
  const n = Number(s);
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(flag, raw, `must be ${min}-${max}`);
  }
  return n;
}

/** TCP/UDP port, 0 = let the kernel pick. */
export function parsePort(flag: string, raw: string, { allowZero = true } = {}): number {
  const s = raw.trim();
  if (!INTEGER.test(s)) throw new UsageError(flag, raw, 'must be a number 0-65535');
  const n = Number(s);
  if (n > 65535) throw new UsageError(flag, raw, 'must be 0-65535');
  if (n === 0 && !allowZero) throw new UsageError(flag, raw, 'must be 1-65535');
  return n;
}

// RFC 1123 host names: labels of letters, digits and hyphens.
const HOSTNAME =
  /^(?=.{1,253}$)([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*\.?$/;

/** An IP literal (v4 or v6, brackets allowed) or a host name. Returns it without brackets. */
export function parseHost(flag: string, raw: string): string {
  let s = raw.trim();
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  if (s === '') throw new UsageError(flag, JSON.stringify(raw), 'must not be empty');
  if (isIP(s)) return s;
  // strip an IPv6 zone id for the check (fe80::1%eth0)
  if (s.includes('%') && isIP(s.split('%')[0]!) === 6) return s;
  if (!HOSTNAME.test(s)) throw new UsageError(flag, JSON.stringify(raw), 'not an IP address or host name');
  return s;
}

/**
 * Where to connect, from the positional arguments a user of nc or socat would write:
 * `HOST PORT`, `HOST:PORT`, `[v6]:PORT`, or a lone `PORT` (on the default host). A host that
 * is all digits is never taken as an address (`20010` is not 0.0.78.42).
 */
export function parseTarget(
  hostArg: string | undefined,
  portArg: string | undefined,
  defaults: { host: string; port?: string },
): { host: string; port: number } {
  let host = hostArg;
  let port = portArg;
  if (host !== undefined && port === undefined) {
    const v6 = /^\[([^\]]+)\]:(\d*)$/.exec(host);
    const v4 = /^([^:\s]+):(\d*)$/.exec(host);
    if (v6 || v4) [host, port] = [(v6 ?? v4)![1], (v6 ?? v4)![2]];
    else if (/^\d+$/.test(host)) [host, port] = [undefined, host];
    else refuseAmbiguousV6(host);
  }
  if (host !== undefined && /^\d+$/.test(host)) {
    throw new UsageError('HOST', host, 'is a number: give HOST PORT, HOST:PORT, or PORT alone');
  }
  port ??= defaults.port;
  if (port === undefined) throw new UsageError('PORT', undefined, 'missing: give HOST PORT or HOST:PORT');
  return {
    host: parseHost('HOST', host ?? defaults.host),
    port: parsePort('PORT', port, { allowZero: false }),
  };
}

/**
 * `::1:7103` is both the address ::1:7103 and ::1 with port 7103: a bare IPv6 literal whose
 * last group could be a port, with no port given, is refused and both readings are named.
 */
function refuseAmbiguousV6(host: string): void {
  const cut = host.lastIndexOf(':');
  const [addr, port] = [host.slice(0, cut), host.slice(cut + 1)];
  if (isIP(host) !== 6 || isIP(addr) !== 6 || !/^\d{1,5}$/.test(port) || Number(port) > 65535) return;
  throw new UsageError(
    'HOST',
    host,
    `is ambiguous: for ${addr} port ${port} write [${addr}]:${port} (or ${addr} ${port}); for the address ${host} give the port too ([${host}]:PORT)`,
  );
}

/** True for an address only this machine can reach: 127.0.0.0/8, ::1, ::ffff:127.x (a literal, after listen). */
export function isLoopback(address: string): boolean {
  const a = address.toLowerCase();
  return a.startsWith('127.') || a === '::1' || a.startsWith('::ffff:127.') || a === 'localhost';
}

/** An IP literal only (a bind address: names are not resolved there). */
export function parseIp(flag: string, raw: string): string {
  let s = raw.trim();
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  if (isIP(s)) return s;
  throw new UsageError(flag, JSON.stringify(raw), 'must be an IP address such as 127.0.0.2 or ::1');
}

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
};

/** A byte count: `512`, `16k`, `1m`, `1.5m` (binary units). */
export function parseSize(flag: string, raw: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/.exec(raw.trim());
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new UsageError(flag, raw, 'must be a size like 512, 16k or 1m');
  const n = Math.round(Number(m[1]) * unit);
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(flag, raw, `must be between ${formatBytes(min)} and ${formatBytes(max)}`);
  }
  return n;
}

const DURATION_UNITS: Record<string, number> = {
  us: 0.001,
  ms: 1,
  '': 1000, // a bare number is seconds, as in nc -w and socat -T
  s: 1000,
  m: 60_000,
  min: 60_000,
  h: 3_600_000,
};

/** A duration in milliseconds: `500ms`, `2s`, `1.5` (seconds), `1m`. */
export function parseDuration(flag: string, raw: string, minMs = 0, maxMs = 2_147_483_647): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/.exec(raw.trim());
  const unit = m ? DURATION_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new UsageError(flag, raw, 'must be a duration like 500ms, 2s or 1m');
  const ms = Number(m[1]) * unit;
  if (!Number.isFinite(ms) || ms < minMs || ms > maxMs) {
    throw new UsageError(flag, raw, `must be between ${formatDuration(minMs)} and ${formatDuration(maxMs)}`);
  }
  return ms;
}

export function formatBytes(n: number): string {
  if (n >= 1024 ** 3 && n % 1024 ** 3 === 0) return `${n / 1024 ** 3}g`;
  if (n >= 1024 ** 2 && n % 1024 ** 2 === 0) return `${n / 1024 ** 2}m`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024}k`;
  return String(n);
}

/** `1 connection`, `2 connections`: a count with its noun in the right number. */
export function plural(n: number, word: string, words = `${word}s`): string {
  return `${n} ${n === 1 ? word : words}`;
}

export function formatDuration(ms: number): string {
  if (ms >= 1000 && ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/** `host:port` with brackets for IPv6, as people write it. */
export function formatAddress(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** The 16 bytes of an IPv6 address (`::1`, `fe80::1%eth0`, `::ffff:127.0.0.1`). */
export function ipv6Bytes(host: string): Buffer {
  const [head = '', tail] = host.split('%')[0]!.split('::') as [string, string | undefined];
  const words = (s: string) => (s ? s.split(':') : []);
  let h = words(head);
  let tl = tail === undefined ? [] : words(tail);
  // embedded IPv4 at the end (::ffff:127.0.0.1)
  const expand = (arr: string[]) => {
    const last = arr[arr.length - 1];
    if (last?.includes('.')) {
      const b = last.split('.').map(Number);
      arr.splice(-1, 1, ((b[0]! << 8) | b[1]!).toString(16), ((b[2]! << 8) | b[3]!).toString(16));
    }
    return arr;
  };
  h = expand(h);
  tl = expand(tl);
  const fill = tail === undefined ? [] : new Array(8 - h.length - tl.length).fill('0');
  const all = [...h, ...fill, ...tl];
  const out = Buffer.alloc(16);
  for (const [i, w] of all.entries()) out.writeUInt16BE(Number.parseInt(w, 16), i * 2);
  return out;
}
