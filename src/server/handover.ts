// The workers' hand-over channel: admitted sockets go from the primary to a worker as
// descriptors over an AF_UNIX SOCK_SEQPACKET pair (SCM_RIGHTS), several per message with
// their metadata as JSON, instead of one per Node IPC message with an acknowledgement each.
//
// Primary: one HandoverChannel per worker. What it sends is a net.Socket or, where the
// listener accepted without one, an AcceptedHandle. Sockets handed in one event-loop turn
// leave in one sendmsg at the end of the turn (setImmediate), up to BATCH_MAX per message; the
// primary closes its copies once sendmsg has returned (the kernel holds the descriptors in flight).
// EAGAIN (the worker's queue is full) keeps them queued and retries, never blocking. Batches
// are numbered: a worker told to shut down is told how many were sent, and takes them all.
// Worker: receiveHandovers() turns every descriptor into a net.Socket for the same pipeline
// as Node's IPC hand-over, or, where the worker's connections qualify for light ones, into a
// LightSocket (a TCP handle opened on the descriptor, driven without a net.Socket); the
// self-test's connection then takes that path too.
//
// The channel is used for a worker only after probeHandover() has passed one real loopback
// connection through it and had bytes echoed; otherwise, and where descriptors cannot be
// passed (no koffi, not Linux), and with ECHO_HANDOVER=ipc, Node's IPC hand-over is used.
// For tests of that check, ECHO_HANDOVER=broken makes a worker close what it receives
// unserved (and unreported); =silent makes it never read the channel.

import { randomBytes } from 'node:crypto';
import net, { type Socket } from 'node:net';
import type { Fault, FaultDraw } from '../core/faults.js';
import {
  closeDescriptor,
  type FdMessage,
  FdReceiver,
  fdPassAvailable,
  MAX_PAYLOAD,
  sendFds,
  socketPair,
  wake,
} from '../core/fdpass.js';
import { AcceptedHandle, handleFd, type OnRead, releaseHandle } from '../core/internals.js';
import { sysError } from '../core/libc.js';
import { lightOnFd, type ReadCallback } from './user-buffer.js';

/** What travels with each descriptor. */
export interface HandedMeta {
  /** the hand-over id the worker's `closed` report names */
  id: number;
  peer: string;
  /** base64 of bytes the primary read already (after a PROXY header, a TLS record header) */
  head?: string;
  faults?: Fault[];
  draw?: FaultDraw;
  /** the self-test's connection: echoed raw, not served nor reported */
  probe?: true;
}

/** the most sockets in one message (the kernel takes up to 253) */
export const BATCH_MAX = 64;
/** a socket whose metadata is larger than this goes over Node's IPC instead */
const META_MAX = MAX_PAYLOAD / 2;
/** how long the self-test waits for its echo */
const PROBE_TIMEOUT_MS = 3000;
const EAGAIN = 11;
const ENOBUFS = 105;
const ETOOMANYREFS = 109;

const broken = () => process.env.ECHO_HANDOVER ?? '';

/** Why the descriptor channel is not to be used in this process, or undefined when it may be. */
export function handoverUnavailable(): string | undefined {
  if (process.env.ECHO_HANDOVER === 'ipc') return 'ECHO_HANDOVER=ipc';
  return fdPassAvailable();
}

/** A channel's ends (and its wake-up stream's), or undefined where there can be none. */
export function handoverPair(): { parent: [number, number]; child: [number, number] } | undefined {
  if (handoverUnavailable()) return undefined;
  let channel: [number, number] | undefined;
  try {
    const c = socketPair('seqpacket');
    channel = c;
    const w = socketPair('stream');
    return { parent: [c[0], w[0]], child: [c[1], w[1]] };
  } catch {
    channel?.forEach(closeDescriptor);
    return undefined; // out of descriptors: this worker gets Node's IPC
  }
}

interface Entry {
  /** a net.Socket, or an accepted handle that never had one */
  socket: Socket | AcceptedHandle;
  fd: number;
  meta: string;
  /** sent (no error), or not: the socket is still this process's */
  done: (err?: NodeJS.ErrnoException) => void;
}

/** The primary's end of one worker's channel. */
export class HandoverChannel {
  /** batches sent so far */
  seq = 0;
  /** set once the self-test passed: hand-overs may use it */
  usable = false;
  /** why it stopped working (sendmsg failed for good, or it was closed) */
  broken?: string;
  private queue: Entry[] = [];
  private scheduled = false;
  private retries = 0;
  private readonly flushNow = () => {
    this.scheduled = false;
    this.flush();
  };

  /** `fd`: the channel's end; `wakeFd`: the wake-up stream's, written after each turn's messages */
  constructor(
    readonly fd: number,
    readonly wakeFd: number,
  ) {}

  /**
   * Queue `socket` for the end of this event-loop turn; `done` once it was sent (its copy
   * here is closed then) or could not be. False, with nothing done, when it cannot go this
   * way (the channel is broken, the socket has no descriptor, its metadata is too large).
   */
  send(socket: Socket | AcceptedHandle, meta: HandedMeta, done: Entry['done']): boolean {
    if (this.broken) return false;
    const fd = socket instanceof AcceptedHandle ? socket.fd : handleFd(socket);
    if (fd === undefined) return false;
    const json = JSON.stringify(meta);
    if (json.length > META_MAX) return false;
    this.queue.push({ socket, fd, meta: json, done });
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flushNow);
    }
    return true;
  }

  /** hand-overs queued and not yet sent (this process still holds their sockets) */
  get queued(): number {
    return this.queue.length;
  }

  private flush(): void {
    const seq = this.seq;
    this.sendQueued();
    if (this.seq !== seq) wake(this.wakeFd);
  }

  private sendQueued(): void {
    while (this.queue.length > 0 && !this.broken) {
      let n = 0;
      let bytes = 0;
      while (n < this.queue.length && n < BATCH_MAX && bytes + this.queue[n]!.meta.length + 1 < META_MAX)
        bytes += this.queue[n++]!.meta.length + 1;
      n = Math.max(n, 1);
      const batch = this.queue.slice(0, n);
      const payload = `{"s":${this.seq + 1},"c":[${batch.map((e) => e.meta).join(',')}]}`;
      const err = sendFds(
        this.fd,
        batch.map((e) => e.fd),
        payload,
      );
      if (err === EAGAIN || err === ENOBUFS || err === ETOOMANYREFS) {
        // the worker's queue is full (or the kernel's in-flight allowance): later, never blocking
        this.scheduled = true;
        if (this.retries++ === 0) setImmediate(this.flushNow);
        else setTimeout(this.flushNow, 1);
        return;
      }
      this.retries = 0;
      if (err !== 0) {
        this.fail(sysError('sendmsg', err));
        return;
      }
      this.seq++;
      this.queue.splice(0, n);
      for (const e of batch) {
        // in flight: the kernel holds the descriptor
        if (e.socket instanceof AcceptedHandle) e.socket.release();
        else releaseHandle(e.socket);
        e.done();
      }
    }
  }

  /** Nothing more goes this way: what is queued is given back (`done` with `err`). */
  private fail(err: NodeJS.ErrnoException): void {
    this.broken ??= err.code ?? err.message;
    const left = this.queue;
    this.queue = [];
    for (const e of left) e.done(err);
  }

  /** The worker is gone: close this end; what was queued is given back (code ECHILDGONE). */
  close(): void {
    if (this.broken === 'closed') return;
    this.fail(Object.assign(new Error('the worker exited before it was sent'), { code: 'ECHILDGONE' }));
    this.broken = 'closed';
    closeDescriptor(this.fd);
    closeDescriptor(this.wakeFd);
  }
}

/**
 * Pass one real loopback connection through `ch` and have the worker echo 4 KiB of random
 * bytes on it: undefined when they came back byte-exact and the worker closed after the
 * client did, else why not. Never rejects.
 */
export function probeHandover(
  ch: HandoverChannel,
  timeoutMs = PROBE_TIMEOUT_MS,
): Promise<string | undefined> {
  return new Promise((resolve) => {
    const sockets: Socket[] = [];
    const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true });
    let over = false;
    const finish = (why?: string) => {
      if (over) return;
      over = true;
      clearTimeout(timer);
      for (const s of sockets) s.destroy();
      server.close();
      resolve(why);
    };
    const timer = setTimeout(() => finish(`no echo within ${timeoutMs} ms`), timeoutMs);
    const sent = randomBytes(4096);
    server.on('error', (err) => finish(`loopback listen: ${err.message}`));
    server.on('connection', (s) => {
      sockets.push(s);
      s.on('error', () => {});
      const queued = ch.send(s, { id: 0, peer: 'self-test', probe: true }, (err) => {
        if (err) finish(`sendmsg: ${err.code ?? err.message}`);
      });
      if (!queued) finish(`the socket could not be queued (${ch.broken ?? 'no descriptor'})`);
    });
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      const client = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      sockets.push(client);
      const back: Buffer[] = [];
      client.on('error', (err) => finish(`client: ${err.message}`));
      client.on('data', (d: Buffer) => back.push(d));
      client.on('end', () => {
        const got = Buffer.concat(back);
        finish(got.equals(sent) ? undefined : `${got.length} of ${sent.length} bytes came back as sent`);
      });
      client.on('close', () => finish('the worker closed without the echo'));
      client.end(sent);
    });
  });
}

/** The worker's end: what receiveHandovers() tells its caller. */
export interface HandoverHandlers {
  /**
   * Where this process's connections qualify for light ones (lightUsable(), an echo with
   * nothing more): their read callback. Each received descriptor then becomes a LightSocket
   * (the self-test's connection too), else a net.Socket as without it.
   */
  light?: ReadCallback;
  /** a socket to serve, as a Node IPC hand-over's would be */
  conn(socket: Socket, meta: HandedMeta): void;
  /** a hand-over whose descriptor did not arrive or could not be opened: report it closed */
  lost(meta: HandedMeta, code: string): void;
  /** a batch has been dealt with: `seq` batches so far */
  batch(seq: number): void;
  /** the primary's end closed, or reading failed */
  end(why?: string): void;
}

/**
 * Read the channel on descriptor `fd` (the worker's end), woken up by `wakeFd`, until it
 * closes; close() stops it.
 */
export function receiveHandovers(fd: number, wakeFd: number, h: HandoverHandlers): { close(): void } {
  const b = broken();
  const rx = new FdReceiver(fd, wakeFd, (m) => onMessage(m, h, b), h.end);
  if (b !== 'silent') rx.start();
  return rx;
}

function onMessage(m: FdMessage, h: HandoverHandlers, b: string): void {
  let msg: { s: number; c: HandedMeta[] } | undefined;
  try {
    msg = m.truncated ? undefined : JSON.parse(m.payload.toString('utf8'));
  } catch {
    msg = undefined;
  }
  const metas = msg?.c ?? [];
  m.fds.slice(metas.length).forEach(closeDescriptor); // more descriptors than sockets named
  metas.forEach((meta, i) => {
    const socket = socketOf(m.fds[i], meta, h, b);
    if (!socket) return;
    if (meta.probe) echoRaw(socket);
    else h.conn(socket, meta);
  });
  if (msg) h.batch(msg.s);
}

/** The socket for a received descriptor; undefined when there is none (reported lost). */
function socketOf(
  fd: number | undefined,
  meta: HandedMeta,
  h: HandoverHandlers,
  b: string,
): Socket | undefined {
  if (fd === undefined) {
    h.lost(meta, 'EMFILE'); // the kernel dropped it (MSG_CTRUNC): this process is at its limit
    return undefined;
  }
  if (b === 'broken') {
    closeDescriptor(fd);
    return undefined;
  }
  const read = h.light;
  if (read && !meta.head) {
    const light = lightOnFd(fd, meta.probe ? probeRead : read);
    if (light) return light;
  }
  try {
    return new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: true });
  } catch (err) {
    closeDescriptor(fd);
    h.lost(meta, (err as NodeJS.ErrnoException).code ?? 'EBADF');
    return undefined;
  }
}

/** The self-test's read callback on a light connection: every byte back. */
const probeRead: OnRead = {
  buffer: () => probeBuffer,
  callback(n, buf) {
    this.write(Buffer.from(buf.subarray(0, n)));
  },
};
const probeBuffer = Buffer.allocUnsafe(64 * 1024);

/** The self-test's connection: every byte back ('data', or probeRead on a light one), FIN after the client's. */
function echoRaw(s: Socket): void {
  s.on('error', () => s.destroy());
  s.on('data', (d) => s.write(d));
  s.on('end', () => s.end());
}
