// The scenario's own segments, off the wire: an AF_PACKET socket on the loopback interface
// (root or CAP_NET_RAW), opened through koffi, read on koffi's worker threads (so the event
// loop never blocks), parsed down to the TCP header. No tcpdump needed. Loopback shows each
// packet twice (outgoing and incoming): only the incoming copy is kept.

import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { createRequire } from 'node:module';
import { loadLibc, platformTable, sysError } from '../core/libc.js';

export interface Segment {
  /** ms since the capture started */
  t: number;
  src: string;
  sport: number;
  dst: string;
  dport: number;
  flags: string[];
  seq: number;
  ack: number;
  win: number;
  len: number;
}

export interface Capture {
  /** stop reading; resolves with every TCP segment seen, oldest first */
  stop(): Promise<Segment[]>;
}

const AF_PACKET = 17;
const SOCK_RAW = 3;
const ETH_P_ALL = 0x0003;
const PACKET_OUTGOING = 4;
// in the order tcpdump and Wireshark name them: SYN,ACK  FIN,ACK  PSH,ACK  RST,ACK
const FLAG_NAMES: [number, string][] = [
  [0x02, 'SYN'],
  [0x01, 'FIN'],
  [0x04, 'RST'],
  [0x08, 'PSH'],
  [0x10, 'ACK'],
  [0x20, 'URG'],
];

/** Why a capture cannot run here, or undefined when it can. */
export function captureUnavailable(): string | undefined {
  if (process.platform !== 'linux') return 'packet capture (AF_PACKET) is Linux only';
  try {
    const c = loadLibc();
    const fd = c.socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    if (fd < 0) {
      const e = c.errno();
      return e === 1 || e === 13
        ? 'packet capture needs root or CAP_NET_RAW (socket(AF_PACKET) was refused)'
        : `socket(AF_PACKET) failed: ${sysError('socket', e).code}`;
    }
    c.close(fd);
    return undefined;
  } catch (err) {
    return `packet capture unavailable: ${(err as Error).message}`;
  }
}

function htons(n: number): number {
  return ((n & 0xff) << 8) | ((n >> 8) & 0xff);
}

let recvfrom: any;
let ioctlStamp: any;

/** Start capturing TCP on `lo`. Throws when captureUnavailable() says why. */
export function startCapture(ifname = 'lo'): Capture {
  const why = captureUnavailable();
  if (why) throw new Error(why);
  const c = loadLibc();
  if (!recvfrom) {
    const koffi = createRequire(import.meta.url)('koffi');
    const lib = koffi.load(platformTable().libc);
    recvfrom = lib.func('long recvfrom(int, _Out_ void *, size_t, int, _Out_ void *, _Inout_ uint32_t *)');
    ioctlStamp = lib.func('int ioctl(int, unsigned long, _Out_ void *)');
  }
  const fd = c.socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
  if (fd < 0) throw sysError('socket', c.errno());
  // bind to the one interface
  const index = c.if_nametoindex(ifname);
  const sll = Buffer.alloc(20);
  sll.writeUInt16LE(AF_PACKET, 0);
  sll.writeUInt16BE(ETH_P_ALL, 2);
  sll.writeInt32LE(index, 4);
  if (c.bind(fd, sll, sll.length) !== 0) {
    const e = c.errno();
    c.close(fd);
    throw sysError('bind', e, ifname);
  }
  // a receive timeout, so a reader blocked in recvfrom wakes up to see it should stop
  const tv = Buffer.alloc(16);
  tv.writeBigInt64LE(0n, 0);
  tv.writeBigInt64LE(50_000n, 8);
  c.setsockopt(fd, 1 /* SOL_SOCKET */, 20 /* SO_RCVTIMEO */, tv, 16);
  // room for bursts: other programs' bulk transfers on lo are captured too (and dropped by
  // the kernel when this queue is full); SO_RCVBUFFORCE (root) may exceed net.core.rmem_max
  const big = Buffer.alloc(4);
  big.writeInt32LE(64 * 1024 * 1024);
  if (c.setsockopt(fd, 1, 33 /* SO_RCVBUFFORCE */, big, 4) !== 0)
    c.setsockopt(fd, 1, 8 /* SO_RCVBUF */, big, 4);
  // stamp packets as they arrive (without it the first SIOCGSTAMP stamps them when asked)
  const one = Buffer.alloc(4);
  one.writeInt32LE(1);
  c.setsockopt(fd, 1 /* SOL_SOCKET */, 29 /* SO_TIMESTAMP */, one, 4);

  // times are the kernel's receive timestamps (SIOCGSTAMP of the last packet read): the
  // callback that sees a packet runs later, on the event loop
  const stamp = Buffer.alloc(16);
  const kernelTime = (): number | undefined =>
    ioctlStamp(fd, 0x8906 /* SIOCGSTAMP */, stamp) === 0
      ? Number(stamp.readBigInt64LE(0)) * 1000 + Number(stamp.readBigInt64LE(8)) / 1000
      : undefined;
  let t0: number | undefined;
  const segments: Segment[] = [];
  let stopping = false;
  let stopLimit = 0;
  // sent through lo at stop(): once the reader sees it, it has read everything before it
  const marker = randomBytes(16);
  let done!: () => void;
  const finished = new Promise<void>((r) => {
    done = r;
  });
  const buf = Buffer.alloc(65_600);
  const from = Buffer.alloc(20);
  const loop = () => {
    recvfrom.async(fd, buf, buf.length, 0, from, [20], (err: Error | null, n: number) => {
      // stopping: read on until the marker sent at stop() comes by (or the queue is empty, or
      // 3 s passed), so a reader that lags behind under load still gets every queued segment
      if (stopping && (err || n < 0 || Date.now() > stopLimit)) return done();
      if (stopping && n > 0 && buf.subarray(0, n).includes(marker)) return done();
      if (!err && n > 0 && from[10] !== PACKET_OUTGOING) {
        const at = kernelTime() ?? Date.now();
        t0 ??= at;
        const s = parseFrame(buf.subarray(0, n), at - t0);
        if (s) segments.push(s);
      }
      loop();
    });
  };
  loop();
  return {
    async stop() {
      stopLimit = Date.now() + 3000;
      stopping = true;
      const udp = dgram.createSocket('udp4');
      udp.on('error', () => {});
      udp.send(marker, 9, '127.0.0.1', () => udp.close()); // the discard port, on loopback
      await finished;
      c.close(fd);
      return segments;
    },
  };
}

/** An Ethernet frame (loopback's header is all zeros but for the type) → a TCP segment. */
export function parseFrame(f: Buffer, t: number): Segment | undefined {
  if (f.length < 14) return undefined;
  const type = f.readUInt16BE(12);
  let off = 14;
  let src: string;
  let dst: string;
  let ipPayload: number;
  if (type === 0x0800) {
    if (f.length < off + 20 || f[off + 9] !== 6) return undefined;
    const ihl = (f[off]! & 0x0f) * 4;
    const total = f.readUInt16BE(off + 2);
    src = [...f.subarray(off + 12, off + 16)].join('.');
    dst = [...f.subarray(off + 16, off + 20)].join('.');
    ipPayload = total - ihl;
    off += ihl;
  } else if (type === 0x86dd) {
    if (f.length < off + 40 || f[off + 6] !== 6) return undefined;
    ipPayload = f.readUInt16BE(off + 4);
    const hex = (b: Buffer) => {
      const g: string[] = [];
      for (let i = 0; i < 16; i += 2) g.push(b.readUInt16BE(i).toString(16));
      return g.join(':').replace(/(^|:)0(:0)+(:|$)/, '::');
    };
    src = hex(f.subarray(off + 8, off + 24));
    dst = hex(f.subarray(off + 24, off + 40));
    off += 40;
  } else return undefined;
  if (f.length < off + 20) return undefined;
  const dataOff = (f[off + 12]! >> 4) * 4;
  const bits = f[off + 13]!;
  return {
    t,
    src,
    sport: f.readUInt16BE(off),
    dst,
    dport: f.readUInt16BE(off + 2),
    seq: f.readUInt32BE(off + 4),
    ack: f.readUInt32BE(off + 8),
    flags: FLAG_NAMES.filter(([b]) => bits & b).map(([, n]) => n),
    win: f.readUInt16BE(off + 14),
    len: Math.max(0, ipPayload - dataOff),
  };
}
