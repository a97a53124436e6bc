// Accepted sockets that read into one buffer shared by the whole process (net's public `onread`
// option) instead of through a Readable stream. Node's default read path allocates a 64 KiB
// buffer per read, shrinks it to the bytes read and pushes it through the stream machinery
// ('data' event); here the kernel writes into the shared buffer and one callback runs. Every
// read on this thread reuses that buffer, so the callback copies out what must outlive it.
// A socket whose reads are large (a bulk stream) gets a buffer of its own instead, and its
// chunks are written without a copy (a write the kernel does not take at once keeps that
// buffer, and the next read goes into a new one); one whose read fills that buffer reads up to
// BIG_READ at once from then on (fewer reads and writes per MB); it goes back to the shared
// buffer when its reads are small again. Idle and small connections hold no buffer.
//
// net.Server builds each accepted Socket itself, without `onread`: the sockets here are built
// by core/internals.ts (interceptAccept), once its behavioural check has passed in this
// process (sharedReadUsable). Otherwise net.Server's own path stays, and the echo reads
// 'data' events as before.

import type net from 'node:net';
import {
  acceptPathWorks,
  interceptAccept,
  lightPathWorks,
  type OnRead,
  openLight,
} from '../core/internals.js';
import type { Logger } from '../core/log.js';

/** Bytes one read may take: what Node's own read path asks libuv for. */
const READ_SIZE = 64 * 1024;
/** What one read may take on a socket whose reads fill READ_SIZE (a bulk stream). */
const BIG_READ = 256 * 1024;
const shared = Buffer.allocUnsafe(READ_SIZE);
/** The first bytes of `shared`, as a view: kept while the reads' length stays the same. */
let sharedView = shared.subarray(0, 0);

/** Set on sockets built here (their read state): their bytes go to the read callback, never to 'data'. */
export const SHARED_READ = Symbol('shared-read');

/** A read at least this large makes the socket read into a buffer of its own (no copies). */
const OWN_FROM = 16 * 1024;

interface ReadState {
  socket: net.Socket | undefined;
  /** the socket's own read buffer while its reads are large */
  own: Buffer | undefined;
  /** whether the last chunk is still in use (default: a write pending on the socket itself) */
  inUse?: () => boolean;
}

/**
 * For a socket whose chunks are written elsewhere (a forwarder's upstream): says whether the
 * last chunk readChunk() gave is still in use, so its own buffer is not read into again.
 */
export function setReadInUse(socket: net.Socket, inUse: () => boolean): void {
  const st = (socket as net.Socket & { [SHARED_READ]?: ReadState })[SHARED_READ];
  if (st) st.inUse = inUse;
}

/**
 * The chunk a read callback may hand to write() and keep: a copy of a read into the shared
 * buffer, the bytes themselves from a socket's own buffer (replaced before the next read if
 * the write is still pending).
 */
export function readChunk(socket: net.Socket, n: number, buf: Buffer): Buffer {
  const st = (socket as net.Socket & { [SHARED_READ]?: ReadState })[SHARED_READ];
  if (buf === shared) {
    // from the next read on: a buffer of its own, larger still when this read filled the shared one
    if (st && n >= OWN_FROM) st.own = Buffer.allocUnsafe(n === READ_SIZE ? BIG_READ : READ_SIZE);
    const chunk = Buffer.allocUnsafe(n);
    // one copy, from a view reused while the reads' length does not change (a ping-pong's)
    if (sharedView.length !== n) sharedView = shared.subarray(0, n);
    chunk.set(sharedView);
    return chunk;
  }
  if (!st) {
    const chunk = Buffer.allocUnsafe(n);
    buf.copy(chunk, 0, 0, n);
    return chunk;
  }
  // small reads again: the shared buffer from the next read; one that filled it: larger reads
  if (n < OWN_FROM) st.own = undefined;
  else if (n === buf.length && n < BIG_READ) st.own = Buffer.allocUnsafe(BIG_READ);
  return buf.subarray(0, n);
}

/** Echo copies up to this size go into a scratch buffer reused from read to read. */
const SCRATCH = 2048;
/** Where echoRead() copies a small read from the shared buffer; replaced when a write that waits keeps it. */
let scratch = Buffer.allocUnsafe(SCRATCH);
/** The first bytes of `scratch`, as a view: kept while the reads' length stays the same. */
let scratchView = scratch.subarray(0, 0);

/**
 * Echo a read: write the `n` bytes at the start of `buf` to `socket` and return write()'s
 * answer. What readChunk() then write() do, without allocating for a small read into the
 * shared buffer: its bytes are copied into a scratch buffer that the next read reuses when
 * the kernel took this write whole (nothing waits on the socket afterwards). A write that
 * waits keeps the scratch buffer, and later copies go into a new one; while writes wait on
 * the socket anyway, each copy is a chunk of its own (readChunk()).
 */
export function echoRead(socket: net.Socket, n: number, buf: Buffer): boolean {
  if (buf !== shared || n > SCRATCH || socket.writableLength > 0)
    return socket.write(readChunk(socket, n, buf));
  if (sharedView.length !== n) sharedView = shared.subarray(0, n);
  if (scratchView.length !== n) scratchView = scratch.subarray(0, n);
  scratchView.set(sharedView);
  const ok = socket.write(scratchView);
  if (socket.writableLength > 0) {
    // the write waits with these bytes: they stay as they are until it completes
    scratch = Buffer.allocUnsafe(SCRATCH);
    scratchView = scratch.subarray(0, 0);
  }
  return ok;
}

/**
 * Called by net after every read: the buffer the socket's next read goes into. A write still
 * pending holds the last read's bytes, so the next read goes into a new buffer — even when the
 * echo has paused reading until the write drains: shutdown resumes reading to drop what
 * arrives, and those reads must not land in bytes still being echoed.
 */
function nextBuffer(st: ReadState): Buffer {
  if (!st.own) return shared;
  if (st.inUse ? st.inUse() : st.socket && st.socket.writableLength > 0)
    st.own = Buffer.allocUnsafe(st.own.length);
  return st.own;
}

/** `n` bytes at the start of `buf`, valid only until the callback returns. */
export type ReadCallback = (this: net.Socket, n: number, buf: Buffer) => void;

/** Off with ECHO_SHARED_READ=0, to compare both paths on one build. */
export const sharedReadEnabled = () => process.env.ECHO_SHARED_READ !== '0';

const explained = new Set<string>();

/**
 * Whether servers in this process may accept with the shared read buffer: not with
 * ECHO_SHARED_READ=0, nor when the accept path failed its check (logged once, at debug).
 */
export async function sharedReadUsable(logger?: Logger): Promise<boolean> {
  if (!sharedReadEnabled()) return false;
  const check = await acceptPathWorks();
  const key = check.why ?? '';
  if (logger && !explained.has(key)) {
    explained.add(key);
    if (check.ok)
      logger.debug(
        { ms: Math.round(check.ms * 10) / 10 },
        'accepting into the shared read buffer: check passed',
      );
    else
      logger.debug(
        { ms: Math.round(check.ms * 10) / 10, why: check.why },
        `accepting through net.Server's own path: the shared-read accept check failed (${check.why})`,
      );
  }
  return check.ok;
}

/** Off with ECHO_LIGHT=0 (light connections, core/internals.ts LightSocket), to compare both paths on one build. */
export const lightEnabled = () => process.env.ECHO_LIGHT !== '0';

/**
 * Whether servers in this process may accept echo-only connections as light ones (the TCP
 * handle driven without a net.Socket): where the shared read buffer is usable, not with
 * ECHO_LIGHT=0, nor when the light path failed its check (logged once, at debug).
 */
export async function lightUsable(logger?: Logger): Promise<boolean> {
  if (!lightEnabled() || !(await sharedReadUsable(logger))) return false;
  const check = await lightPathWorks();
  const key = `light|${check.why ?? ''}`;
  if (logger && !explained.has(key)) {
    explained.add(key);
    if (check.ok)
      logger.debug({ ms: Math.round(check.ms * 10) / 10 }, 'light connections for echo: check passed');
    else
      logger.debug(
        { ms: Math.round(check.ms * 10) / 10, why: check.why },
        `every connection is a net.Socket: the light-connection check failed (${check.why})`,
      );
  }
  return check.ok;
}

/**
 * The `onread` option for a net.Socket that takes over the handle of `socket` (a light
 * connection built by acceptWithSharedRead): the same read state, now the new socket's.
 */
export function sharedReadOf(
  socket: net.Socket,
  onRead: ReadCallback,
): { buffer: () => Buffer; callback: ReadCallback } | undefined {
  const st = (socket as net.Socket & { [SHARED_READ]?: ReadState })[SHARED_READ];
  if (!st) return undefined;
  return { buffer: () => nextBuffer(st), callback: onRead };
}

/** Move the read state of `from` to `to` (its handle's new owner). */
export function moveSharedRead(from: net.Socket, to: net.Socket): void {
  const st = (from as net.Socket & { [SHARED_READ]?: ReadState })[SHARED_READ];
  if (!st) return;
  st.socket = to;
  (to as net.Socket & { [SHARED_READ]?: ReadState })[SHARED_READ] = st;
}

/**
 * Build each socket accepted by `server` (listening already) with the shared read buffer and
 * `onRead`, and hand it to `onSocket` in place of the 'connection' event. False, and nothing
 * changed, when this Node's listening handle has no `onconnection`. Callers check
 * sharedReadUsable() first.
 */
export function acceptWithSharedRead(
  server: net.Server,
  /** light: LightSockets where they can be built (lightUsable() said yes) */
  opts: { allowHalfOpen: boolean; pauseOnCreate: boolean; light?: boolean },
  onRead: ReadCallback,
  onSocket: (socket: net.Socket) => void,
): boolean {
  let st: ReadState | undefined; // set by onread() just before onSocket(), in the same accept
  return interceptAccept(
    server,
    {
      ...opts,
      // net calls these without the socket: the closures carry its state, one per socket
      onread: () => {
        const mine: ReadState = { socket: undefined, own: undefined };
        st = mine;
        return { buffer: () => nextBuffer(mine), callback: onRead };
      },
    },
    (socket) => {
      st!.socket = socket;
      (socket as net.Socket & { [SHARED_READ]?: ReadState })[SHARED_READ] = st;
      onSocket(socket);
    },
  );
}

/**
 * A light connection on a connected TCP descriptor received from another process, reading
 * into the shared buffer into `onRead` as acceptWithSharedRead's do; undefined, with `fd`
 * still the caller's, where one cannot be opened. `onRead` may instead be a whole OnRead
 * (buffers of its own). Callers check lightUsable() first.
 */
export function lightOnFd(fd: number, onRead: ReadCallback | OnRead): net.Socket | undefined {
  if (typeof onRead !== 'function') return openLight(fd, onRead) as unknown as net.Socket | undefined;
  const st: ReadState = { socket: undefined, own: undefined };
  const light = openLight(fd, { buffer: () => nextBuffer(st), callback: onRead }) as unknown as
    | net.Socket
    | undefined;
  if (!light) return undefined;
  st.socket = light;
  (light as net.Socket & { [SHARED_READ]?: ReadState })[SHARED_READ] = st;
  return light;
}
