// Batched UDP echo on Linux: after libuv has read one datagram ('message'), read what else is
// queued on the socket with recvmmsg(2) and send the echoes with one sendmmsg(2) per read, through
// koffi, without blocking (MSG_DONTWAIT). Node reads and sends one datagram per JS callback,
// and that callback, not the kernel, was the limit: a plain dgram echo reached 0.43× the C
// recvfrom/sendto loop. The datagrams are read into native memory laid out once (headers,
// iovecs, addresses, 64 KiB per slot: no datagram is truncated) and each echo is sent from
// where it was read, to the address it came from. The datagram libuv read is copied into a
// slot of its own (queue()) and echoed first in the same sendmmsg.
//
// IPv4 sockets on 64-bit Linux only (the struct layouts below are those of x86_64 and
// arm64); elsewhere, or if koffi cannot load libc, the server stays on dgram alone.

import { createRequire } from 'node:module';

const SLOTS = 32;
/** the largest UDP payload over IPv4 is 65,507 bytes */
const SLOT_BYTES = 64 * 1024;
const MMSGHDR = 64; // struct mmsghdr: msghdr (56) + msg_len (4) + padding
const IOVEC = 16;
const NAME = 32; // room for a sockaddr_in (16)
const SOCKADDR_IN = 16;
const AF_INET = 2;
const MSG_DONTWAIT = 0x40;
/** rounds of recvmmsg per 'message' at most, so one busy socket cannot hold the event loop */
const MAX_ROUNDS = 8;

interface Mm {
  recvmmsg: (fd: number, vec: unknown, n: number, flags: number, timeout: null) => number;
  sendmmsg: (fd: number, vec: unknown, n: number, flags: number) => number;
  alloc: (type: string, n: number) => unknown;
  free: (p: unknown) => void;
  address: (p: unknown) => bigint;
  view: (p: unknown, len: number) => ArrayBuffer;
}

let mm: Mm | null | undefined;

/** A dotted IPv4 address as a 32-bit number, or -1 when `s` is not one. */
export function parseIpv4(s: string): number {
  let v = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || dots === 3) return -1;
      v = v * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57 && digits < 3) {
      part = part * 10 + (c - 48);
      if (part > 255) return -1;
      digits++;
    } else return -1;
  }
  if (digits === 0 || dots !== 3) return -1;
  return v * 256 + part;
}

function load(): Mm | null {
  if (mm !== undefined) return mm;
  mm = null;
  if (process.platform !== 'linux' || (process.arch !== 'x64' && process.arch !== 'arm64')) return mm;
  try {
    const koffi: any = createRequire(import.meta.url)('koffi');
    if (typeof koffi.view !== 'function' || typeof koffi.address !== 'function') return mm;
    const lib = koffi.load('libc.so.6');
    mm = {
      recvmmsg: lib.func('int recvmmsg(int, void *, unsigned int, int, void *)'),
      sendmmsg: lib.func('int sendmmsg(int, void *, unsigned int, int)'),
      alloc: (t, n) => koffi.alloc(t, n),
      free: (p) => koffi.free(p),
      address: (p) => koffi.address(p),
      view: (p, len) => koffi.view(p, len),
    };
  } catch {
    mm = null;
  }
  return mm;
}

/**
 * The policy for one datagram read in a batch: true to echo it unchanged from where it lies.
 * `slot` lets the callee copy it out (batch.copy) when it does anything else with it;
 * `v4` is the source address as a 32-bit number (the same address as `address`).
 */
export type AdmitDatagram = (
  address: string,
  port: number,
  length: number,
  slot: number,
  v4: number,
) => boolean;

/** Whether an IPv4 source address (a 32-bit number) is multicast (224/4), 255.255.255.255 or 0.0.0.0. */
export function isBroadcastOrMulticastV4(v4: number): boolean {
  return v4 >>> 28 === 14 || v4 >>> 0 === 0xffffffff || v4 === 0;
}

export class UdpBatch {
  /** receive side: SLOTS mmsghdr, then their iovecs, source addresses and 64 KiB slots */
  private readonly recv: unknown;
  /** send side: SLOTS mmsghdr and their iovecs, pointing into the receive slots */
  private readonly send: unknown;
  private readonly rv: DataView;
  private readonly sv: DataView;
  private readonly data: Buffer;
  private readonly nameAddr: bigint[] = [];
  private readonly dataAddr: bigint[] = [];
  /** the same addresses as 32-bit halves (low, high) for setUint32: no BigInt per echo */
  private readonly nameHalves = new Uint32Array(2 * (SLOTS + 1));
  private readonly dataHalves = new Uint32Array(2 * (SLOTS + 1));
  /** receive headers the last recvmmsg filled (their msg_namelen to reset) */
  private filled = SLOTS;
  /** which slot each send header echoes, for resends */
  private readonly sentSlot = new Int32Array(SLOTS + 1);
  /** IPv4 source address (as a 32-bit number) → its dotted string */
  private readonly names = new Map<number, string>();
  private lastV4 = -1;
  private lastName = '';
  private freed = false;
  /** the length of the datagram queue() put in the last slot, or -1 */
  private queued = -1;

  /** A batch reader for `fd` (an IPv4 UDP socket), or undefined where it cannot run. */
  static create(fd: number | undefined): UdpBatch | undefined {
    const lib = load();
    if (!lib || fd === undefined) return undefined;
    try {
      return new UdpBatch(lib, fd);
    } catch {
      return undefined;
    }
  }

  private constructor(
    private readonly lib: Mm,
    private readonly fd: number,
  ) {
    // SLOTS receive headers; SLOTS + 1 addresses and data slots, the last one for the datagram
    // dgram delivered (queue()); SLOTS + 1 send headers
    const offIov = SLOTS * MMSGHDR;
    const offName = offIov + SLOTS * IOVEC;
    const offData = offName + (SLOTS + 1) * NAME;
    const recvSize = offData + (SLOTS + 1) * SLOT_BYTES;
    const sendSize = (SLOTS + 1) * (MMSGHDR + IOVEC);
    this.recv = lib.alloc('uint8_t', recvSize);
    this.send = lib.alloc('uint8_t', sendSize);
    const rBase = lib.address(this.recv);
    const sBase = lib.address(this.send);
    const rab = lib.view(this.recv, recvSize);
    this.rv = new DataView(rab);
    this.sv = new DataView(lib.view(this.send, sendSize));
    this.data = Buffer.from(rab, offData, (SLOTS + 1) * SLOT_BYTES);
    const { rv, sv } = this;
    for (let i = 0; i <= SLOTS; i++) {
      this.nameAddr.push(rBase + BigInt(offName + i * NAME));
      this.dataAddr.push(rBase + BigInt(offData + i * SLOT_BYTES));
      this.nameHalves[2 * i] = Number(this.nameAddr[i]! & 0xffffffffn);
      this.nameHalves[2 * i + 1] = Number(this.nameAddr[i]! >> 32n);
      this.dataHalves[2 * i] = Number(this.dataAddr[i]! & 0xffffffffn);
      this.dataHalves[2 * i + 1] = Number(this.dataAddr[i]! >> 32n);
      // send header i: name and iovec base/length are set per echo
      const s = i * MMSGHDR;
      sv.setUint32(s + 8, SOCKADDR_IN, true);
      sv.setBigUint64(s + 16, sBase + BigInt((SLOTS + 1) * MMSGHDR + i * IOVEC), true);
      sv.setBigUint64((SLOTS + 1) * MMSGHDR + i * IOVEC + 8, 0n, true); // iov_len: echo() sets its low half
      sv.setBigUint64(s + 24, 1n, true);
      sv.setBigUint64(s + 32, 0n, true);
      sv.setBigUint64(s + 40, 0n, true);
      sv.setUint32(s + 48, 0, true);
      if (i === SLOTS) break;
      // receive header i: its address, one iovec over its 64 KiB slot
      const h = i * MMSGHDR;
      rv.setBigUint64(h, this.nameAddr[i]!, true); // msg_name
      rv.setUint32(h + 8, SOCKADDR_IN, true); // msg_namelen
      rv.setBigUint64(h + 16, rBase + BigInt(offIov + i * IOVEC), true); // msg_iov
      rv.setBigUint64(h + 24, 1n, true); // msg_iovlen
      rv.setBigUint64(h + 32, 0n, true); // msg_control
      rv.setBigUint64(h + 40, 0n, true); // msg_controllen
      rv.setUint32(h + 48, 0, true); // msg_flags
      rv.setBigUint64(offIov + i * IOVEC, this.dataAddr[i]!, true);
      rv.setBigUint64(offIov + i * IOVEC + 8, BigInt(SLOT_BYTES), true);
    }
  }

  /**
   * Echo `msg`, a datagram dgram delivered from `address`:`port` (IPv4), ahead of the next
   * drain()'s echoes, in its sendmmsg: one send call per wakeup instead of a dgram send plus
   * the sendmmsg. False (nothing queued) when `address` is not a dotted IPv4 address, or one
   * is queued already, or the batch was freed.
   */
  queue(msg: Buffer, address: string, port: number): boolean {
    if (this.freed || this.queued >= 0) return false;
    const v4 = parseIpv4(address);
    if (v4 < 0) return false;
    msg.copy(this.data, SLOTS * SLOT_BYTES);
    const name = SLOTS * MMSGHDR + SLOTS * IOVEC + SLOTS * NAME;
    this.rv.setUint16(name, AF_INET, true);
    this.rv.setUint16(name + 2, port, false);
    this.rv.setUint32(name + 4, v4, false);
    this.queued = msg.length;
    return true;
  }

  /** A copy of the datagram in `slot` (the slot is overwritten by the next drain). */
  copy(slot: number, length: number): Buffer {
    const start = slot * SLOT_BYTES;
    return Buffer.from(this.data.subarray(start, start + length));
  }

  /**
   * Read what is queued until recvmmsg finds nothing (at most MAX_ROUNDS × SLOTS datagrams),
   * ask `admit` about each, echo the admitted ones with one sendmmsg per round, the one queue()
   * took first. Echoes the kernel does not take at once (a full send buffer) go to `resend`,
   * which queues them (dgram's send). Returns the datagrams read.
   */
  drain(admit: AdmitDatagram, resend: (data: Buffer, address: string, port: number) => void): number {
    if (this.freed) return 0;
    const { rv, sv, lib } = this;
    const ioBase = (SLOTS + 1) * MMSGHDR;
    const nameBase = SLOTS * MMSGHDR + SLOTS * IOVEC;
    let total = 0;
    for (let round = 0; round < MAX_ROUNDS; round++) {
      let out = 0;
      if (this.queued >= 0) {
        // the datagram queue() took goes first: it was read before these
        this.echo(0, SLOTS, this.queued);
        this.queued = -1;
        out = 1;
      }
      // recvmmsg set msg_namelen only in the headers it filled
      for (let i = 0; i < this.filled; i++) rv.setUint32(i * MMSGHDR + 8, SOCKADDR_IN, true);
      // EAGAIN (nothing queued) or another error: dgram's own reads report errors
      const n = Math.max(0, lib.recvmmsg(this.fd, this.recv, SLOTS, MSG_DONTWAIT, null));
      this.filled = n;
      total += n;
      for (let i = 0; i < n; i++) {
        const length = rv.getUint32(i * MMSGHDR + 56, true);
        const name = nameBase + i * NAME;
        if (rv.getUint16(name, true) !== AF_INET) continue;
        const port = rv.getUint16(name + 2, false);
        const v4 = rv.getUint32(name + 4, false);
        if (!admit(this.ipv4(v4), port, length, i, v4)) continue;
        this.echo(out, i, length);
        out++;
      }
      if (out > 0) {
        const sent = Math.max(0, lib.sendmmsg(this.fd, this.send, out, 0));
        for (let k = sent; k < out; k++) {
          const slot = this.sentSlot[k]!;
          const name = nameBase + slot * NAME;
          const length = sv.getUint32(ioBase + k * IOVEC + 8, true);
          resend(
            this.copy(slot, length),
            this.ipv4(rv.getUint32(name + 4, false)),
            rv.getUint16(name + 2, false),
          );
        }
      }
      // the peers answered while the echoes went out: read again until nothing is queued
      // (an empty recvmmsg costs less than libuv's read and a 'message' callback)
      if (n === 0) break;
    }
    return total;
  }

  /** Send header `k` echoes `length` bytes of `slot` to the address read with it. */
  private echo(k: number, slot: number, length: number): void {
    const { sv, nameHalves, dataHalves } = this;
    const h = k * MMSGHDR;
    sv.setUint32(h, nameHalves[2 * slot]!, true);
    sv.setUint32(h + 4, nameHalves[2 * slot + 1]!, true);
    const iov = (SLOTS + 1) * MMSGHDR + k * IOVEC;
    sv.setUint32(iov, dataHalves[2 * slot]!, true);
    sv.setUint32(iov + 4, dataHalves[2 * slot + 1]!, true);
    sv.setUint32(iov + 8, length, true); // iov_len: a datagram is < 2^32 bytes; its high half stays 0
    this.sentSlot[k] = slot;
  }

  private ipv4(v: number): string {
    // one source sends most of a batch: its string is looked up once
    if (v === this.lastV4) return this.lastName;
    let s = this.names.get(v);
    if (s === undefined) {
      s = `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
      if (this.names.size >= 65536) this.names.clear();
      this.names.set(v, s);
    }
    this.lastV4 = v;
    this.lastName = s;
    return s;
  }

  /** Release the native memory; drain() does nothing afterwards. */
  free(): void {
    if (this.freed) return;
    this.freed = true;
    this.lib.free(this.recv);
    this.lib.free(this.send);
  }
}
