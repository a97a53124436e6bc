// UDP echo: every datagram back to its sender, byte-exact — but never as a
// reflection amplifier: a token bucket per source address, no replies to source ports that
// are echo/chargen-style services themselves (7, 13, 17, 19) or port 0, and none to
// broadcast or multicast sources. Drops are counted and logged at most once per interval.

import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { AccessControl } from '../core/access.js';
import { asUdpError, countError, errorCode, explainError } from '../core/errors.js';
import { type Fault, FaultSet, flipOneBit, latencyDelay } from '../core/faults.js';
import { closeFd, hasNativeReusePort, socketFd } from '../core/libc.js';
import { rawListenFd } from '../core/listen.js';
import { type Logger, silentLogger } from '../core/log.js';
import { formatAddress, plural } from '../core/parse.js';
import type { ServerTotals } from '../core/records.js';
import { applySocketOptions, formatReport, type OptionReport, type SocketOptions } from '../core/sockopts.js';
import type { Tracer } from '../core/trace.js';

/** How long close() lets datagrams held by a fault (latency, reorder) still go out (ms). */
export const DEFAULT_UDP_GRACE_MS = 5000;

import { type AdmitDatagram, isBroadcastOrMulticastV4, UdpBatch } from './batch.js';

export interface UdpEchoServerOptions {
  host?: string;
  port?: number;
  /** datagrams per second allowed per source address; 0 = no limit (default 1000) */
  rateLimit?: number;
  /** bucket size: how many datagrams a source may send at once (default 200) */
  rateBurst?: number;
  reuseAddr?: boolean;
  reusePort?: boolean;
  sendBuffer?: number;
  recvBuffer?: number;
  /** --allow / --deny: datagrams from other sources are dropped */
  access?: AccessControl;
  logger?: Logger;
  logOptions?: boolean;
  /** how often drop summaries may be logged (ms, default 1000) */
  dropLogIntervalMs?: number;
  /** misbehave on purpose: latency, corrupt, drop, duplicate, reorder (chosen per datagram) */
  faults?: Fault[];
  /** --trace: every datagram in and out */
  tracer?: Tracer;
}

/** `shutdown`: held by a fault (latency, reorder) when the close's grace ended or forceClose() came */
export type DropReason =
  | 'rate-limit'
  | 'source-port'
  | 'broadcast-source'
  | 'access'
  | 'self'
  | 'fault'
  | 'shutdown';

export interface UdpTotals {
  datagramsIn: number;
  datagramsOut: number;
  bytesIn: number;
  bytesOut: number;
  dropped: Record<DropReason, number>;
  sources: number;
  errors: Record<string, number>;
}

export interface UdpEchoServer {
  readonly address: AddressInfo;
  readonly options: OptionReport[];
  stats(): UdpTotals;
  /** per source address: datagrams in / out / dropped */
  sources(): Map<string, { in: number; out: number; dropped: number }>;
  /**
   * Stop answering; datagrams a fault holds (latency, reorder) still go out until `graceMs`
   * (default 5000) has passed, then are dropped (counted as `shutdown`). Resolves with the totals.
   */
  close(opts?: { graceMs?: number }): Promise<UdpTotals>;
  /** drop every datagram a fault holds now (counted as `shutdown`) and close */
  forceClose(): void;
  /** replace the faults for datagrams from now on; [] turns them off */
  setFaults(faults: Fault[]): void;
}

/** The totals every server mode reports: a source is a "connection", a dropped datagram a refusal. */
export function serverTotalsOfUdp(t: UdpTotals): ServerTotals {
  const refusedBy: Record<string, number> = {};
  let refused = 0;
  for (const [k, v] of Object.entries(t.dropped)) {
    if (v > 0) refusedBy[k] = v;
    refused += v;
  }
  return {
    connections: t.sources,
    active: 0,
    refused,
    refusedBy,
    bytesIn: t.bytesIn,
    bytesOut: t.bytesOut,
    errors: { ...t.errors },
  };
}

/** Source ports of services that answer anything: replying to them starts an endless loop. */
export const BLOCKED_SOURCE_PORTS: ReadonlySet<number> = new Set([0, 7, 13, 17, 19]);

/** Broadcast or multicast source addresses, which a legitimate client never has. */
export function isBroadcastOrMulticast(addr: string): boolean {
  if (addr.includes(':')) {
    const a = addr.toLowerCase();
    if (a.startsWith('ff')) return true;
    const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
    return v4 ? isBroadcastOrMulticast(v4[1]!) : false;
  }
  const dot = addr.indexOf('.');
  const first = Number(dot < 0 ? addr : addr.slice(0, dot));
  return (first >= 224 && first <= 239) || addr === '255.255.255.255' || addr === '0.0.0.0';
}

/** Whether a source is this socket itself: its port, and its address (any local one when bound to a wildcard). */
function selfCheck(bound: AddressInfo): (address: string, port: number) => boolean {
  const plain = (a: string) => a.toLowerCase().replace(/^::ffff:/, '');
  const wildcard = bound.address === '0.0.0.0' || bound.address === '::';
  const own = new Set<string>([plain(bound.address)]);
  if (wildcard) {
    for (const list of Object.values(networkInterfaces()))
      for (const i of list ?? []) own.add(plain(i.address));
  }
  return (address, port) => {
    if (port !== bound.port) return false;
    const a = plain(address);
    return own.has(a) || (wildcard && (a.startsWith('127.') || a === '::1'));
  };
}

interface Source {
  tokens: number;
  last: number;
  in: number;
  out: number;
  dropped: number;
}

const MAX_SOURCES = 65536;

export async function startUdpEchoServer(opts: UdpEchoServerOptions = {}): Promise<UdpEchoServer> {
  const logger = opts.logger ?? silentLogger;
  const host = opts.host ?? '127.0.0.1';
  const v6 = host.includes(':');
  const rate = opts.rateLimit ?? 1000;
  const burst = opts.rateBurst ?? 200;
  const dropLogIntervalMs = opts.dropLogIntervalMs ?? 1000;
  const totals: UdpTotals = {
    datagramsIn: 0,
    datagramsOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    dropped: {
      'rate-limit': 0,
      'source-port': 0,
      'broadcast-source': 0,
      access: 0,
      self: 0,
      fault: 0,
      shutdown: 0,
    },
    sources: 0,
    errors: {},
  };
  const sources = new Map<string, Source>();
  let dropsSinceLog: Partial<Record<DropReason, number>> = {};
  let dropTimer: NodeJS.Timeout | undefined;

  const flushDropLog = () => {
    dropTimer = undefined;
    const parts = Object.entries(dropsSinceLog).map(([k, v]) => `${v} ${k}`);
    if (parts.length) logger.warn({ dropped: dropsSinceLog }, `dropped datagrams: ${parts.join(', ')}`);
    dropsSinceLog = {};
  };
  const drop = (reason: DropReason, src: Source | undefined): undefined => {
    totals.dropped[reason]++;
    if (src) src.dropped++;
    dropsSinceLog[reason] = (dropsSinceLog[reason] ?? 0) + 1;
    // one summary line per interval, however hard we are flooded
    dropTimer ??= setTimeout(flushDropLog, dropLogIntervalMs);
    return undefined;
  };

  // Unlike TCP, SO_REUSEADDR on UDP lets a second socket bind a port in use and take its
  // datagrams silently: it is off unless asked for, so a second server fails with EADDRINUSE.
  const reuseAddr = opts.reuseAddr === true;
  const useRaw = opts.reusePort === true && !hasNativeReusePort();
  const socket = dgram.createSocket({
    type: v6 ? 'udp6' : 'udp4',
    reuseAddr,
    ...(opts.reusePort && !useRaw ? { reusePort: true } : {}),
  } as dgram.SocketOptions);

  let isSelf: (address: string, port: number) => boolean = () => false; // set once bound
  /** The policy for one datagram, counted in: its source when it is to be answered, else undefined (dropped). */
  const admit = (address: string, port: number, length: number, special: boolean): Source | undefined => {
    totals.datagramsIn++;
    totals.bytesIn += length;
    if (BLOCKED_SOURCE_PORTS.has(port)) return drop('source-port', undefined);
    // a datagram "from" our own address and port (forged): answering it would echo to ourselves forever
    if (isSelf(address, port)) return drop('self', undefined);
    if (special) return drop('broadcast-source', undefined);
    if (opts.access?.active && !opts.access.check(address).ok) return drop('access', undefined);
    let src = sources.get(address);
    if (!src) {
      if (sources.size >= MAX_SOURCES) sources.delete(sources.keys().next().value!);
      src = { tokens: burst, last: performance.now(), in: 0, out: 0, dropped: 0 };
      sources.set(address, src);
      totals.sources++;
    }
    src.in++;
    if (!take(src)) return drop('rate-limit', src);
    return src;
  };
  /** One datagram out to `src` charged to its token bucket: false when the bucket is empty. */
  const take = (src: Source): boolean => {
    if (rate <= 0) return true;
    const now = performance.now();
    src.tokens = Math.min(burst, src.tokens + ((now - src.last) * rate) / 1000);
    src.last = now;
    if (src.tokens < 1) return false;
    src.tokens -= 1;
    return true;
  };
  const countOut = (src: Source, length: number) => {
    src.out++;
    totals.datagramsOut++;
    totals.bytesOut += length;
  };
  let closing = false; // close(): datagrams are no longer answered
  socket.on('message', (msg, rinfo) => {
    if (closing) return;
    if (tracer) tracer.chunk('<', formatAddress(rinfo.address, rinfo.port), msg, 0);
    const src = admit(rinfo.address, rinfo.port, msg.length, isBroadcastOrMulticast(rinfo.address));
    if (src) {
      const chosen = faults.pick();
      if (chosen) faulty(msg, rinfo, chosen, src);
      else {
        countOut(src, msg.length);
        // with the batch on, the echo goes out in the sendmmsg of the drain below
        if (!batch?.queue(msg, rinfo.address, rinfo.port)) send(msg, rinfo);
      }
    }
    // what else is queued, read and answered in one recvmmsg/sendmmsg each (Linux, IPv4)
    batch?.drain(admitQueued, resend);
  });
  let batch: UdpBatch | undefined;
  const admitQueued: AdmitDatagram = (address, port, length, slot, v4) => {
    if (closing) return false;
    const src = admit(address, port, length, isBroadcastOrMulticastV4(v4));
    if (!src) return false;
    const chosen = faults.pick();
    if (!chosen) {
      countOut(src, length);
      return true;
    }
    const msg = batch!.copy(slot, length);
    faulty(msg, { address, port, family: 'IPv4', size: length }, chosen, src);
    return false;
  };
  const resend = (data: Buffer, address: string, port: number) => socket.send(data, port, address, onSent);
  const tracer = opts.tracer;
  const send = (out: Buffer, rinfo: dgram.RemoteInfo) => {
    if (tracer) tracer.chunk('>', formatAddress(rinfo.address, rinfo.port), out, 0);
    socket.send(out, rinfo.port, rinfo.address, onSent);
  };
  const onSent = (err: Error | null) => {
    if (err) countError(totals.errors, err);
  };

  // --- --fault, per datagram: drop, corrupt, duplicate, reorder (held until the next), latency
  const faults = new FaultSet(opts.faults);
  /** datagrams a fault holds back: `count` of them go out when `send` runs */
  type Held = { count: number; send: () => void; lat?: Fault };
  let held: Held | undefined; // reorder: waits for the next datagram
  let heldTimer: NodeJS.Timeout | undefined;
  let lastAt = 0;
  const timers = new Map<NodeJS.Timeout, Held>(); // latency: each waits for its time
  let onSettled: (() => void) | undefined; // close(): told once nothing is held any more
  const later = (h: Held) => {
    const lat = h.lat;
    if (!lat) return h.send();
    const at = Math.max(performance.now() + latencyDelay(lat), lastAt);
    lastAt = at;
    // a timer counts from the event loop's cached clock, which lags: it can fire a
    // millisecond or more early, and the delay is a promise: wait out what is left
    const arm = () => {
      const t = setTimeout(
        () => {
          timers.delete(t);
          if (performance.now() < at) return arm();
          h.send();
          if (timers.size === 0 && !held) onSettled?.();
        },
        Math.ceil(at - performance.now()),
      );
      timers.set(t, h);
    };
    arm();
  };
  /** reorder: the datagram held back goes now (nothing follows within 50 ms, or closing) */
  const releaseHeld = () => {
    clearTimeout(heldTimer);
    const h = held;
    held = undefined;
    if (h) later(h);
  };
  /** What a fault still holds is dropped, counted as `shutdown`. */
  const dropHeld = () => {
    clearTimeout(heldTimer);
    let n = held?.count ?? 0;
    held = undefined;
    for (const [t, h] of timers) {
      clearTimeout(t);
      n += h.count;
    }
    timers.clear();
    totals.dropped.shutdown += n;
  };
  const faulty = (msg: Buffer, rinfo: dgram.RemoteInfo, chosen: Fault[], src: Source) => {
    const by: Partial<Record<string, Fault>> = {};
    for (const f of chosen) by[f.kind] = f;
    if (by.drop && Math.random() < by.drop.chance!) return drop('fault', src);
    let out = msg;
    if (by.corrupt && msg.length && Math.random() < by.corrupt.chance!) out = flipOneBit(msg);
    let copies = by.duplicate && Math.random() < by.duplicate.chance! ? 2 : 1;
    // the copy is a datagram sent to the source like any other: it is charged to its bucket
    // (admit() charged the first), so duplicates cannot make the server an amplifier
    if (copies === 2 && !take(src)) {
      copies = 1;
      drop('rate-limit', src);
    }
    const sendCopies = () => {
      for (let i = 0; i < copies; i++) {
        src.out++;
        totals.datagramsOut++;
        totals.bytesOut += out.length;
        send(out, rinfo);
      }
    };
    if (held) {
      // the one held back goes after this one: their order is swapped
      const prev = held;
      held = undefined;
      clearTimeout(heldTimer);
      later({
        count: copies + prev.count,
        send: () => {
          sendCopies();
          prev.send();
        },
        lat: by.latency,
      });
      return;
    }
    const mine: Held = { count: copies, send: sendCopies, lat: by.latency };
    if (by.reorder && Math.random() < by.reorder.chance!) {
      held = mine;
      heldTimer = setTimeout(releaseHeld, 50);
      return;
    }
    later(mine);
  };
  // ICMP errors from earlier sends (ECONNREFUSED…) surface here; they concern one peer only
  socket.on('error', (err) => {
    countError(totals.errors, err);
    logger.warn({ code: errorCode(err) }, `udp socket error: ${explainError(asUdpError(err)).line}`);
  });

  let fd: number | undefined;
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => {
      if (fd !== undefined) closeFd(fd);
      reject(asUdpError(err));
    };
    socket.once('error', onError);
    if (useRaw) {
      try {
        fd = rawListenFd({
          host,
          port: opts.port ?? 7007,
          backlog: 0,
          type: 'udp',
          reuseAddr,
          reusePort: opts.reusePort === true,
        });
      } catch (err) {
        reject(asUdpError(err));
        return;
      }
      socket.bind({ fd }, () => {
        socket.off('error', onError);
        resolve();
      });
    } else {
      socket.bind({ port: opts.port ?? 7007, address: host }, () => {
        socket.off('error', onError);
        resolve();
      });
    }
  });
  // the same options code as TCP: buffer sizes (dgram takes them only once bound), read back
  const sockOpts: SocketOptions = {
    reuseAddr,
    ...(opts.reusePort ? { reusePort: true } : {}),
    sendBuffer: opts.sendBuffer,
    recvBuffer: opts.recvBuffer,
  };
  const options = applySocketOptions(socket, sockOpts, { report: process.platform === 'linux' });
  if (opts.logOptions) {
    for (const r of options) logger.info({ ...r }, `udp socket: ${formatReport(r)}`);
  }

  const address = socket.address();
  isSelf = selfCheck(address);
  // --trace shows each datagram as dgram delivers it: traced servers read one at a time
  if (!tracer && !v6 && process.env.ECHO_UDP_BATCH !== '0') batch = UdpBatch.create(fd ?? socketFd(socket));
  logger.debug({ address: formatAddress(address.address, address.port) }, 'udp socket bound');
  let closed: Promise<UdpTotals> | undefined;
  let cut: (() => void) | undefined; // ends the grace now
  let forced = false;
  const stats = () => ({ ...totals, dropped: { ...totals.dropped }, errors: { ...totals.errors } });
  /** Wait (at most graceMs, or until forceClose) for what a fault holds to go out; drop the rest. */
  const settle = async (graceMs: number) => {
    if (forced) return dropHeld();
    releaseHeld(); // no datagram will follow it now
    if (timers.size > 0) {
      await new Promise<void>((resolve) => {
        const grace = setTimeout(resolve, graceMs);
        onSettled = cut = () => {
          clearTimeout(grace);
          resolve();
        };
      });
    }
    dropHeld();
  };
  const close = ({ graceMs = DEFAULT_UDP_GRACE_MS }: { graceMs?: number } = {}) => {
    closed ??= (async () => {
      closing = true;
      await settle(graceMs);
      if (dropTimer) {
        clearTimeout(dropTimer);
        flushDropLog();
      }
      logSources();
      batch?.free();
      batch = undefined;
      await new Promise<void>((resolve) => socket.close(() => resolve()));
      return stats();
    })();
    return closed;
  };
  /** per-source counters, busiest first, bounded so a spoofed flood cannot flood the log */
  const logSources = () => {
    const busiest = [...sources].sort((a, b) => b[1].in - a[1].in).slice(0, 20);
    for (const [addr, s] of busiest) {
      logger.info(
        { source: addr, in: s.in, out: s.out, dropped: s.dropped },
        `source ${addr}: in ${s.in}, out ${s.out}, dropped ${s.dropped}`,
      );
    }
    if (sources.size > busiest.length)
      logger.info({}, `… and ${plural(sources.size - busiest.length, 'more source', 'more sources')}`);
  };
  return {
    address,
    options,
    stats,
    sources: () => new Map([...sources].map(([k, v]) => [k, { in: v.in, out: v.out, dropped: v.dropped }])),
    setFaults: (list) => faults.set(list),
    close,
    forceClose() {
      forced = true;
      cut?.();
      void close({ graceMs: 0 });
    },
  };
}
