// Passing file descriptors between processes over an AF_UNIX SOCK_SEQPACKET socket pair:
// sendmsg/recvmsg with SCM_RIGHTS through koffi, several descriptors and one payload per
// message. Linux on 64-bit little-endian machines only (the struct layouts below are those of
// x86_64 and aarch64 glibc/musl); elsewhere fdPassAvailable() says why not and callers keep
// Node's IPC.
//
// Layouts (Linux, LP64): struct msghdr { void *name; socklen_t namelen; struct iovec *iov;
// size_t iovlen; void *control; size_t controllen; int flags; } is 56 bytes (offsets 0, 8, 16,
// 24, 32, 40, 48); struct iovec { void *base; size_t len; } is 16; struct cmsghdr { size_t len;
// int level; int type; } is 16, its data 8-aligned (CMSG_SPACE).
//
// Sending never blocks (MSG_DONTWAIT): EAGAIN comes back to the caller, which retries later.
// The receiver learns that messages are waiting from a second socket pair, a stream the
// event loop watches (a net.Socket on its descriptor): the sender writes a byte to it after
// the messages of a turn, the receiver then reads messages (MSG_DONTWAIT) until EAGAIN. No
// thread waits on the channel, so nothing holds up the receiving process's exit (a poll() on
// a koffi `.async` thread would cost a thread hand-off per wake-up, and Node's exit waits for
// a thread still blocked in it).

import { createRequire } from 'node:module';
import { Socket, type SocketConstructorOpts } from 'node:net';
import { platformTable } from './libc.js';

/** the most descriptors one message carries (Linux's SCM_MAX_FD is 253) */
export const MAX_FDS_PER_MESSAGE = 253;
/** the largest payload a message may have (the receiver's buffer is twice this) */
export const MAX_PAYLOAD = 128 * 1024;

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_SEQPACKET = 5;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SCM_RIGHTS = 1;
const MSG_CTRUNC = 0x8;
const MSG_TRUNC = 0x20;
const MSG_DONTWAIT = 0x40;
const MSG_NOSIGNAL = 0x4000;
const MSG_CMSG_CLOEXEC = 0x40000000;
const EAGAIN = 11;
const EINTR = 4;

const MSGHDR_OFF = 0;
const IOVEC_OFF = 64;
const CONTROL_OFF = 80;
const CONTROL_SIZE = 16 + 8 * Math.ceil((MAX_FDS_PER_MESSAGE * 4) / 8);
const PAYLOAD_OFF = (CONTROL_OFF + CONTROL_SIZE + 15) & ~15;

interface Native {
  koffi: any;
  socketpair(domain: number, type: number, proto: number, fds: Int32Array): number;
  sendmsg(fd: number, msg: unknown, flags: number): number;
  recvmsg(fd: number, msg: unknown, flags: number): number;
  send(fd: number, buf: Buffer, len: number, flags: number): number;
  ioctl(fd: number, request: number, out: Int32Array): number;
  close(fd: number): number;
  errno(): number;
}

let native: Native | undefined;
let unavailable: string | undefined;

/** Why descriptors cannot be passed here, or undefined when they can (koffi loads, Linux, LP64 LE). */
export function fdPassAvailable(): string | undefined {
  if (native) return undefined;
  unavailable ??= loadNative();
  return unavailable || undefined;
}

/** '' once loaded, else why not */
function loadNative(): string {
  if (process.platform !== 'linux') return `not on ${process.platform}`;
  if (process.arch !== 'x64' && process.arch !== 'arm64')
    return `struct layouts not known for ${process.arch}`;
  try {
    const koffi = createRequire(import.meta.url)('koffi');
    const lib = koffi.load(platformTable().libc);
    native = {
      koffi,
      socketpair: lib.func('int socketpair(int, int, int, _Out_ int *)'),
      sendmsg: lib.func('long sendmsg(int, void *, int)'),
      recvmsg: lib.func('long recvmsg(int, void *, int)'),
      send: lib.func('long send(int, const void *, size_t, int)'),
      ioctl: lib.func('int ioctl(int, unsigned long, _Out_ int *)'),
      close: lib.func('int close(int)'),
      errno: () => koffi.errno() as number,
    };
    return '';
  } catch (err) {
    return `koffi could not be loaded (${(err as Error).message})`;
  }
}

function load(): Native {
  const why = fdPassAvailable();
  if (why) throw Object.assign(new Error(`descriptor passing: ${why}`), { code: 'ENOSYS' });
  return native!;
}

/** A block of native memory laid out for one msghdr, its iovec, its control data and its payload. */
class Block {
  readonly ptr: unknown;
  readonly buf: Buffer;
  constructor(
    readonly n: Native,
    payloadSize: number,
  ) {
    const size = PAYLOAD_OFF + payloadSize;
    this.ptr = n.koffi.alloc('uint8', size);
    this.buf = Buffer.from(n.koffi.view(this.ptr, size) as ArrayBuffer);
    this.buf.fill(0, 0, PAYLOAD_OFF);
    const base = BigInt(n.koffi.address(this.ptr));
    const b = this.buf;
    b.writeBigUInt64LE(base + BigInt(IOVEC_OFF), MSGHDR_OFF + 16); // msg_iov
    b.writeBigUInt64LE(1n, MSGHDR_OFF + 24); // msg_iovlen
    b.writeBigUInt64LE(base + BigInt(CONTROL_OFF), MSGHDR_OFF + 32); // msg_control
    b.writeBigUInt64LE(base + BigInt(PAYLOAD_OFF), IOVEC_OFF); // iov_base
  }
  set(payloadLen: number, controlLen: number): void {
    this.buf.writeBigUInt64LE(BigInt(payloadLen), IOVEC_OFF + 8);
    this.buf.writeBigUInt64LE(BigInt(controlLen), MSGHDR_OFF + 40);
    this.buf.writeInt32LE(0, MSGHDR_OFF + 48);
  }
  get payload(): Buffer {
    return this.buf.subarray(PAYLOAD_OFF);
  }
}

/**
 * A connected AF_UNIX socket pair, both ends close-on-exec (a child gets its end by dup2):
 * SOCK_SEQPACKET for the channel, SOCK_STREAM for its wake-ups.
 */
export function socketPair(type: 'seqpacket' | 'stream' = 'seqpacket'): [number, number] {
  const n = load();
  const fds = new Int32Array(2);
  const t = type === 'seqpacket' ? SOCK_SEQPACKET : SOCK_STREAM;
  if (n.socketpair(AF_UNIX, t | SOCK_CLOEXEC, 0, fds) !== 0)
    throw Object.assign(new Error(`socketpair: errno ${n.errno()}`), { code: 'ESOCKETPAIR' });
  return [fds[0]!, fds[1]!];
}

const WAKE = Buffer.from([1]);
const unread = new Int32Array(1);

/**
 * Tell the receiver that messages wait: one byte on the wake-up stream, never waiting; none
 * while it has not read the last one (SIOCOUTQ: it will read every message when it does, those
 * sent since included). A full stream (EAGAIN) is no loss for the same reason.
 */
export function wake(fd: number): void {
  const n = load();
  if (n.ioctl(fd, 0x5411 /* SIOCOUTQ */, unread) === 0 && unread[0]! > 0) return;
  n.send(fd, WAKE, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
}

let sendBlock: Block | undefined;

/**
 * Send `fds` and `payload` (at most MAX_PAYLOAD bytes of UTF-8) as one message, never waiting:
 * 0 once the kernel has them (they are in flight, the caller may close its copies), or the
 * errno (EAGAIN: the receiver's queue is full, try later; EPIPE: the receiver is gone).
 */
export function sendFds(fd: number, fds: readonly number[], payload: string): number {
  const n = load();
  if (fds.length > MAX_FDS_PER_MESSAGE) throw new RangeError(`at most ${MAX_FDS_PER_MESSAGE} descriptors`);
  sendBlock ??= new Block(n, MAX_PAYLOAD);
  const b = sendBlock.buf;
  const len = sendBlock.payload.write(payload, 0, MAX_PAYLOAD, 'utf8');
  if (len === MAX_PAYLOAD && Buffer.byteLength(payload) > MAX_PAYLOAD) return 90; // EMSGSIZE
  let control = 0;
  if (fds.length) {
    b.writeBigUInt64LE(BigInt(16 + 4 * fds.length), CONTROL_OFF);
    b.writeInt32LE(SOL_SOCKET, CONTROL_OFF + 8);
    b.writeInt32LE(SCM_RIGHTS, CONTROL_OFF + 12);
    for (let i = 0; i < fds.length; i++) b.writeInt32LE(fds[i]!, CONTROL_OFF + 16 + 4 * i);
    control = 16 + 8 * Math.ceil((4 * fds.length) / 8);
  }
  sendBlock.set(len, control);
  for (;;) {
    if (n.sendmsg(fd, sendBlock.ptr, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) return 0;
    const e = n.errno();
    if (e !== EINTR) return e;
  }
}

/** One message as received: its payload, the descriptors that came with it (close-on-exec). */
export interface FdMessage {
  payload: Buffer;
  fds: number[];
  /** descriptors were sent that did not arrive (the receiver was at its descriptor limit) */
  lostFds: boolean;
  /** the payload was longer than the buffer */
  truncated: boolean;
}

/**
 * The receiving end of a descriptor channel (`fd`), read when its wake-up stream (`wakeFd`)
 * has bytes: `onMessage` for each message, `onEnd` once when the other end has closed (or
 * reading failed). Nothing is read before start().
 */
export class FdReceiver {
  private readonly n: Native;
  private readonly block: Block;
  private closed = false;
  private wakeups?: Socket;

  constructor(
    readonly fd: number,
    private readonly wakeFd: number,
    private readonly onMessage: (m: FdMessage) => void,
    private readonly onEnd: (why?: string) => void,
  ) {
    this.n = load();
    this.block = new Block(this.n, 2 * MAX_PAYLOAD);
  }

  /** Read what is queued now, then each time the sender wakes this end up. */
  start(): void {
    if (this.closed || this.wakeups) return;
    const scratch = Buffer.allocUnsafe(64);
    // the wake-up bytes are read into one buffer and dropped; only their arrival matters
    const opts = {
      fd: this.wakeFd,
      readable: true,
      writable: false,
      onread: { buffer: scratch, callback: () => this.drain() },
    };
    const s = new Socket(opts as unknown as SocketConstructorOpts);
    s.on('error', (err) => this.end(`wake-ups: ${err.message}`));
    s.on('end', () => {
      this.drain(); // the last messages, then the end the recvmsg of 0 bytes tells
      this.end();
    });
    this.wakeups = s;
    this.drain();
  }

  /** Read every message queued now. */
  private drain(): void {
    const { n, block } = this;
    const b = block.buf;
    while (!this.closed) {
      block.set(2 * MAX_PAYLOAD, CONTROL_SIZE);
      const r = n.recvmsg(this.fd, block.ptr, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
      if (r < 0) {
        const e = n.errno();
        if (e !== EAGAIN && e !== EINTR) this.end(`recvmsg: errno ${e}`);
        return;
      }
      const flags = b.readInt32LE(MSGHDR_OFF + 48);
      const controlLen = Number(b.readBigUInt64LE(MSGHDR_OFF + 40));
      const fds: number[] = [];
      for (let off = CONTROL_OFF; off + 16 <= CONTROL_OFF + controlLen; ) {
        const len = Number(b.readBigUInt64LE(off));
        if (len < 16) break;
        if (b.readInt32LE(off + 8) === SOL_SOCKET && b.readInt32LE(off + 12) === SCM_RIGHTS)
          for (let i = 0; i < (len - 16) / 4; i++) fds.push(b.readInt32LE(off + 16 + 4 * i));
        off += 8 * Math.ceil(len / 8);
      }
      if (r === 0 && fds.length === 0) {
        this.end();
        return;
      }
      this.onMessage({
        payload: Buffer.from(block.payload.subarray(0, r)),
        fds,
        lostFds: (flags & MSG_CTRUNC) !== 0,
        truncated: (flags & MSG_TRUNC) !== 0,
      });
    }
  }

  private end(why?: string): void {
    if (this.closed) return;
    this.close();
    this.onEnd(why);
  }

  /** Stop reading: the wake-up stream closes; the channel's descriptor stays open until exit. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.wakeups?.destroy();
  }
}

/** Close a descriptor (one received and not turned into a socket, or a channel end). */
export function closeDescriptor(fd: number): void {
  load().close(fd);
}
