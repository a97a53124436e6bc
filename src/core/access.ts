// Who may connect: --allow / --deny CIDR lists (IPv4 and IPv6; an IPv4-mapped IPv6 peer is
// matched against IPv4 rules), checked on every accepted connection or datagram with
// node:net's BlockList. And a log that says each refusal once per source per interval, so a
// flood of refused peers cannot flood the log.

import { BlockList, isIP } from 'node:net';
import type { Logger } from './log.js';
import { UsageError } from './parse.js';

export interface Cidr {
  address: string;
  prefix: number;
  family: 'ipv4' | 'ipv6';
  /** as the user wrote it, normalised: `10.0.0.0/8` */
  text: string;
}

/** `10.0.0.0/8`, `::1/128`, or a bare address (a /32 or /128). */
export function parseCidr(flag: string, raw: string): Cidr {
  const s = raw.trim();
  const [addr = '', prefixText, extra] = s.split('/');
  const v = isIP(addr);
  if (!v || extra !== undefined)
    throw new UsageError(flag, raw, 'must be an address or CIDR like 10.0.0.0/8 or ::1/128');
  const max = v === 4 ? 32 : 128;
  let prefix = max;
  if (prefixText !== undefined) {
    if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > max) {
      throw new UsageError(flag, raw, `prefix length must be 0-${max}`);
    }
    prefix = Number(prefixText);
  }
  return { address: addr, prefix, family: v === 4 ? 'ipv4' : 'ipv6', text: `${addr}/${prefix}` };
}

export type AccessVerdict = { ok: true } | { ok: false; why: string };

export class AccessControl {
  private readonly allowList = new BlockList();
  private readonly denyList = new BlockList();

  constructor(
    readonly allow: Cidr[] = [],
    readonly deny: Cidr[] = [],
  ) {
    for (const c of allow) this.allowList.addSubnet(c.address, c.prefix, c.family);
    for (const c of deny) this.denyList.addSubnet(c.address, c.prefix, c.family);
  }

  get active(): boolean {
    return this.allow.length > 0 || this.deny.length > 0;
  }

  check(address: string | undefined): AccessVerdict {
    if (!address) return { ok: false, why: 'no peer address' };
    const family = isIP(address) === 6 ? 'ipv6' : 'ipv4';
    if (this.denyList.check(address, family)) return { ok: false, why: 'matches --deny' };
    if (this.allow.length > 0 && !this.allowList.check(address, family))
      return { ok: false, why: 'not in --allow' };
    return { ok: true };
  }
}

/**
 * Logs the first event of a key at once, then at most one summary per key per interval
 * (`… 57 more in the last 10 s`). Keys are bounded: the oldest are forgotten first.
 */
export class RateLimitedLog {
  private readonly seen = new Map<string, { last: number; suppressed: number }>();

  constructor(
    private readonly logger: Logger,
    private readonly intervalMs = 10_000,
    private readonly maxKeys = 10_000,
  ) {}

  warn(key: string, fields: object, msg: string): void {
    const now = Date.now();
    const e = this.seen.get(key);
    if (e && now - e.last < this.intervalMs) {
      e.suppressed++;
      return;
    }
    const more = e?.suppressed
      ? ` (and ${e.suppressed} more in the last ${Math.round((now - e.last) / 1000)} s)`
      : '';
    this.logger.warn({ ...fields, suppressed: e?.suppressed ?? 0 }, `${msg}${more}`);
    this.seen.delete(key);
    if (this.seen.size >= this.maxKeys) this.seen.delete(this.seen.keys().next().value!);
    this.seen.set(key, { last: now, suppressed: 0 });
  }
}
