// The scenario's own segments, off the wire: an AF_PACKET socket on the loopback interface
// (root or CAP_NET_RAW), opened through koffi, read on koffi's worker threads (so the event
// loop never blocks), parsed down to the TCP header. No tcpdump needed. Loopback shows each
// packet twice (outgoing and incoming): only the incoming copy is kept.

import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { createRequire } from 'node:module';
import { loadLibc, platformTable, sysError } from '../core/libc.js';

export interface Segment {
  /** ms since the capture started, to the µs (the kernel's receive timestamps) */
  t: number;
  /** µs since the capture started */
  us: number;
  /** the kernel's receive timestamp, µs since the epoch (as tcpdump prints with -tt) */
  epochUs: number;
  /** where `t` came from: the kernel's stamp, or (no stamp available) the reader's clock */
  clock: 'kernel' | 'reader';
  src: string;
  sport: number;
  dst: string;
  dport: number;
  flags: string[];
  seq: number;
  ack: number;
  /** the window field as sent (before scaling) */
  win: number;
  len: number;
  /** TCP options that matter on a ladder (SYN segments carry them) */
  mss?: number;
  /** window scale shift offered in this SYN */
  wscale?: number;
  /** the TCP header (options included), bytes */
  hlen?: number;
  /**
   * Set on an ICMP error about a TCP segment (captured with `icmp: true`). Then src/dst are the
   * ICMP packet's addresses (the router that sent it, the host it went to), sport/dport the
   * quoted segment's ports the way a reply on that connection carries them (its dport, its
   * sport), seq the quoted sequence number, flags empty, ack/win/len 0.
   */
  icmp?: IcmpError;
}

/** An ICMPv4 error (destination unreachable, time exceeded, parameter problem) quoting a TCP segment. */
export interface IcmpError {
  type: number;
  code: number;
  /** the quoted segment's IP and TCP header fields (an ICMP error carries its first 8 TCP bytes) */
  quoted: { src: string; sport: number; dst: string; dport: number; seq: number };
}

export interface Capture {
  /** stop reading; resolves with every TCP segment seen, oldest first */
  stop(): Promise<Segment[]>;
  /** with a port filter: keep this port's segments too, from now on */
  watch(port: number): void;
}

export interface CaptureOptions {
  /**
   * Keep only TCP segments to or from these ports (a socket filter in the kernel, so other
   * programs' traffic on the interface never reaches the reader's queue); more are added with
   * watch(). Without it, every TCP segment is kept.
   */
  ports?: Iterable<number>;
  /**
   * On lo, keep the sent copy of each packet (stamped when the kernel transmitted it) instead of
   * the received one (stamped when it was received, as tcpdump shows lo): what a sender's
   * timer did, even when a busy machine delays the receive side
   */
  sent?: boolean;
  /** where stop() sends the datagram that ends the read (default 127.0.0.1:9, on lo) */
  marker?: { host: string; port: number };
  /**
   * Keep ICMPv4 errors that quote a TCP segment too (as Segments with `icmp` set). Only without
   * `ports`: the port filter passes TCP alone.
   */
  icmp?: boolean;
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

/** where stop() sends the datagram that ends the read: the discard port, on loopback */
const MARKER_LO = { host: '127.0.0.1', port: 9 };

let recvfrom: any;
let setFilter: any;
let ioctlStamp: any;

/**
 * Start capturing TCP on an interface (`lo` by default). Throws when captureUnavailable() says
 * why. On lo every packet is seen twice (sent and received): the received copy is kept. On any
 * other interface (a veth in a namespace) both directions are distinct packets: all are kept.
 */
export function startCapture(ifname = 'lo', opts: CaptureOptions = {}): Capture {
  const keepOutgoing = ifname !== 'lo';
  const sentCopy = opts.sent === true;
  const markerArg = opts.marker ?? MARKER_LO;
  const why = captureUnavailable();
  if (why) throw new Error(why);
  const c = loadLibc();
  if (!recvfrom) {
    const koffi = createRequire(import.meta.url)('koffi');
    const lib = koffi.load(platformTable().libc);
    recvfrom = lib.func('long recvfrom(int, _Out_ void *, size_t, int, _Out_ void *, _Inout_ uint32_t *)');
    ioctlStamp = lib.func('int ioctl(int, unsigned long, _Out_ void *)');
    const SockFilter = koffi.struct('lab_sock_filter', {
      code: 'uint16',
      jt: 'uint8',
      jf: 'uint8',
      k: 'uint32',
    });
    koffi.struct('lab_sock_fprog', { len: 'uint16', filter: koffi.pointer(SockFilter) });
    setFilter = lib.func('int setsockopt(int, int, int, const lab_sock_fprog *, uint32_t)');
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
  const watched = opts.ports ? new Set(opts.ports) : undefined;
  const attach = () => {
    if (!watched) return;
    const prog = portFilter([...watched], markerArg.port);
    if (
      setFilter(fd, 1 /* SOL_SOCKET */, 26 /* SO_ATTACH_FILTER */, { len: prog.length, filter: prog }, 16) !==
      0
    )
      throw sysError('setsockopt SO_ATTACH_FILTER', c.errno());
  };
  try {
    attach();
  } catch (err) {
    c.close(fd);
    throw err;
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
  // the kernel's receive timestamp of the last packet read: SIOCGSTAMPNS. It reads the socket's
  // sk_stamp, which the kernel writes only while SO_TIMESTAMP(NS) is off (with it on, the stamp
  // goes into a control message instead and the ioctl fails with ENOENT). The first ioctl turns
  // stamping on, so it is made now, before any packet of interest arrives.
  const stamp = Buffer.alloc(16);
  const kernelTime = (): number | undefined =>
    ioctlStamp(fd, 0x8907 /* SIOCGSTAMPNS */, stamp) === 0
      ? Number(stamp.readBigInt64LE(0)) * 1e6 + Number(stamp.readBigInt64LE(8)) / 1000
      : undefined;
  kernelTime();
  let t0: number | undefined;
  const segments: Segment[] = [];
  let stopping = false;
  let stopLimit = 0;
  // sent through lo at stop(): once the reader sees it, it has read everything before it
  const marker = randomBytes(16);
  const markerTo = markerArg;
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
      if (!err && n > 0 && (keepOutgoing || (from[10] === PACKET_OUTGOING) === sentCopy)) {
        const k = kernelTime();
        const at = k ?? Date.now() * 1000;
        t0 ??= at;
        const s = parseFrame(buf.subarray(0, n), (at - t0) / 1000, opts.icmp === true);
        if (s) {
          s.epochUs = Math.round(at);
          s.clock = k === undefined ? 'reader' : 'kernel';
          segments.push(s);
        }
      }
      loop();
    });
  };
  loop();
  let stopped: Promise<Segment[]> | undefined;
  return {
    stop() {
      stopped ??= stopOnce();
      return stopped;
    },
    watch(port) {
      if (!watched || watched.has(port) || stopped) return;
      watched.add(port);
      attach();
    },
  };
  async function stopOnce(): Promise<Segment[]> {
    {
      stopLimit = Date.now() + 3000;
      stopping = true;
      const udp = dgram.createSocket('udp4');
      udp.on('error', () => {});
      udp.send(marker, markerTo.port, markerTo.host, () => udp.close());
      await finished;
      c.close(fd);
      return segments;
    }
  }
}

interface Insn {
  code: number;
  k?: number;
  jt?: string;
  jf?: string;
  label?: string;
}

/**
 * A classic BPF program for an Ethernet-framed packet socket: TCP over IPv4 or IPv6 with either
 * port in `ports`, and UDP to `markerPort`; everything else is left out (return 0).
 */
export function portFilter(ports: number[], markerPort: number) {
  const LDH = 0x28;
  const LDB = 0x30;
  const LDXMSH = 0xb1;
  const LDH_IND = 0x48;
  const JEQ = 0x15;
  const RET = 0x06;
  const anyPort = (load: (off: number) => Insn[]): Insn[] => [
    ...load(0),
    ...ports.map((p) => ({ code: JEQ, k: p, jt: 'accept' })),
    ...load(2),
    ...ports.map((p) => ({ code: JEQ, k: p, jt: 'accept' })),
    { code: RET, k: 0 },
  ];
  const v4 = (off: number): Insn[] => [
    { code: LDXMSH, k: 14 },
    { code: LDH_IND, k: 14 + off },
  ];
  const v6 = (off: number): Insn[] => [{ code: LDH, k: 54 + off }];
  const prog: Insn[] = [
    { code: LDH, k: 12 },
    { code: JEQ, k: 0x0800, jf: 'six' },
    { code: LDB, k: 23 },
    { code: JEQ, k: 17, jf: 'tcp4' },
    ...v4(2),
    { code: JEQ, k: markerPort, jt: 'accept', jf: 'reject' },
    { label: 'tcp4', code: JEQ, k: 6, jf: 'reject' },
    ...anyPort(v4),
    { label: 'six', code: JEQ, k: 0x86dd, jf: 'reject' },
    { code: LDB, k: 20 },
    { code: JEQ, k: 6, jf: 'reject' },
    ...anyPort(v6),
    { label: 'accept', code: RET, k: 0x40000 },
    { label: 'reject', code: RET, k: 0 },
  ];
  const at = new Map(prog.flatMap((x, i) => (x.label ? [[x.label, i] as const] : [])));
  return prog.map((x, i) => ({
    code: x.code,
    jt: x.jt ? at.get(x.jt)! - i - 1 : 0,
    jf: x.jf ? at.get(x.jf)! - i - 1 : 0,
    k: x.k ?? 0,
  }));
}

/**
 * An Ethernet frame (loopback's header is all zeros but for the type) → a TCP segment, or with
 * `icmp` an ICMPv4 error about one.
 */
export function parseFrame(f: Buffer, t: number, icmp = false): Segment | undefined {
  if (f.length < 14) return undefined;
  const type = f.readUInt16BE(12);
  let off = 14;
  let src: string;
  let dst: string;
  let ipPayload: number;
  if (type === 0x0800) {
    if (icmp && f.length >= off + 20 && f[off + 9] === 1) return parseIcmp(f, off, t);
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
  const opts = tcpOptions(f.subarray(off + 20, Math.min(f.length, off + dataOff)));
  return {
    t,
    us: Math.round(t * 1000),
    epochUs: 0,
    clock: 'kernel',
    src,
    sport: f.readUInt16BE(off),
    dst,
    dport: f.readUInt16BE(off + 2),
    seq: f.readUInt32BE(off + 4),
    ack: f.readUInt32BE(off + 8),
    flags: FLAG_NAMES.filter(([b]) => bits & b).map(([, n]) => n),
    win: f.readUInt16BE(off + 14),
    len: Math.max(0, ipPayload - dataOff),
    hlen: dataOff,
    ...opts,
  };
}

const ipv4 = (b: Buffer) => [...b].join('.');

/**
 * An ICMPv4 packet at `off` (its IP header) → a Segment with `icmp` set, when it is an error
 * (type 3 destination unreachable, 11 time exceeded, 12 parameter problem) quoting a TCP segment.
 */
function parseIcmp(f: Buffer, off: number, t: number): Segment | undefined {
  const ihl = (f[off]! & 0x0f) * 4;
  const icmpAt = off + ihl;
  const type = f[icmpAt];
  if (type !== 3 && type !== 11 && type !== 12) return undefined;
  // the quoted IP header starts after the 8-byte ICMP header; then 8 bytes of its TCP header
  const q = icmpAt + 8;
  if (f.length < q + 20 || f[q + 9] !== 6) return undefined;
  const qt = q + (f[q]! & 0x0f) * 4;
  if (f.length < qt + 8) return undefined;
  const quoted = {
    src: ipv4(f.subarray(q + 12, q + 16)),
    sport: f.readUInt16BE(qt),
    dst: ipv4(f.subarray(q + 16, q + 20)),
    dport: f.readUInt16BE(qt + 2),
    seq: f.readUInt32BE(qt + 4),
  };
  return {
    t,
    us: Math.round(t * 1000),
    epochUs: 0,
    clock: 'kernel',
    src: ipv4(f.subarray(off + 12, off + 16)),
    sport: quoted.dport,
    dst: ipv4(f.subarray(off + 16, off + 20)),
    dport: quoted.sport,
    seq: quoted.seq,
    ack: 0,
    flags: [],
    win: 0,
    len: 0,
    icmp: { type, code: f[icmpAt + 1]!, quoted },
  };
}

/** MSS (kind 2) and window scale (kind 3) from a TCP header's options. */
function tcpOptions(o: Buffer): { mss?: number; wscale?: number } {
  const out: { mss?: number; wscale?: number } = {};
  for (let i = 0; i < o.length; ) {
    const kind = o[i]!;
    if (kind === 0) break;
    if (kind === 1) {
      i++;
      continue;
    }
    const len = o[i + 1] ?? 0;
    if (len < 2 || i + len > o.length) break;
    if (kind === 2 && len === 4) out.mss = o.readUInt16BE(i + 2);
    if (kind === 3 && len === 3) out.wscale = o[i + 2]!;
    i += len;
  }
  return out;
}
