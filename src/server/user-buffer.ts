// Accepted sockets that read into one buffer shared by the whole process (net's public `onread`
// option) instead of through a Readable stream. Node's default read path allocates a 64 KiB
// buffer per read, shrinks it to the bytes read and pushes it through the stream machinery
// ('data' event); here the kernel writes into the shared buffer and one callback runs. Every
// read on this thread reuses that buffer, so the callback copies out what must outlive it.
// A socket whose reads are large (a bulk stream) gets a buffer of its own instead, and its
// chunks are written without a copy (a write the kernel does not take at once keeps that
// buffer, and the next read goes into a new one); it goes back to the shared buffer when its
// reads are small again.
//
// net.Server builds each accepted Socket itself, without `onread`. The listening handle calls
// its `onconnection(status, clientHandle)` for every accept (libuv's connection callback, the
// same in Node 20 and 24); replacing it is the one internal used here, and only where it exists.
// Elsewhere net.Server's own path stays, and the echo reads 'data' events as before.

import net from 'node:net';
import { getSystemErrorName } from 'node:util';

/** Bytes one read may take: what Node's own read path asks libuv for. */
const READ_SIZE = 64 * 1024;
const shared = Buffer.allocUnsafe(READ_SIZE);

/** Set on sockets built here (their read state): their bytes go to the read callback, never to 'data'. */
export const SHARED_READ = Symbol('shared-read');

/** A read at least this large makes the socket read into a buffer of its own (no copies). */
const OWN_FROM = 16 * 1024;

interface ReadState {
  socket: net.Socket | undefined;
  /** the socket's own read buffer while its reads are large */
  own: Buffer | undefined;
}

/**
 * The chunk a read callback may hand to write() and keep: a copy of a read into the shared
 * buffer, the bytes themselves from a socket's own buffer (replaced before the next read if
 * the write is still pending).
 */
export function readChunk(socket: net.Socket, n: number, buf: Buffer): Buffer {
  const st = (socket as net.Socket & { [SHARED_READ]?: ReadState })[SHARED_READ];
  if (buf === shared || !st) {
    if (st && n >= OWN_FROM) st.own = Buffer.allocUnsafe(READ_SIZE); // from the next read on
    const chunk = Buffer.allocUnsafe(n);
    buf.copy(chunk, 0, 0, n);
    return chunk;
  }
  if (n < OWN_FROM) st.own = undefined; // small reads again: the shared buffer from the next read
  return buf.subarray(0, n);
}

/**
 * Called by net after every read: the buffer the socket's next read goes into. A write still
 * pending holds the last read's bytes, so the next read goes into a new buffer — even when the
 * echo has paused reading until the write drains: shutdown resumes reading to drop what
 * arrives, and those reads must not land in bytes still being echoed.
 */
function nextBuffer(st: ReadState): Buffer {
  if (!st.own) return shared;
  if (st.socket && st.socket.writableLength > 0) st.own = Buffer.allocUnsafe(READ_SIZE);
  return st.own;
}

/** `n` bytes at the start of `buf`, valid only until the callback returns. */
export type ReadCallback = (this: net.Socket, n: number, buf: Buffer) => void;

interface ListeningHandle {
  onconnection?: (status: number, clientHandle?: object) => void;
}

/** Off with ECHO_SHARED_READ=0, to compare both paths on one build. */
export const sharedReadEnabled = () => process.env.ECHO_SHARED_READ !== '0';

/**
 * Build each socket accepted by `server` (listening already) with the shared read buffer and
 * `onRead`, and hand it to `onSocket` in place of the 'connection' event. False, and nothing
 * changed, when this Node's listening handle has no `onconnection`.
 */
export function acceptWithSharedRead(
  server: net.Server,
  opts: { allowHalfOpen: boolean; pauseOnCreate: boolean },
  onRead: ReadCallback,
  onSocket: (socket: net.Socket) => void,
): boolean {
  const handle = (server as unknown as { _handle?: ListeningHandle })._handle;
  if (!handle || typeof handle.onconnection !== 'function') return false;
  handle.onconnection = (status, clientHandle) => {
    if (status < 0 || !clientHandle) {
      const code = status < 0 ? getSystemErrorName(status) : 'EINVAL';
      server.emit(
        'error',
        Object.assign(new Error(`accept ${code}`), { code, errno: status, syscall: 'accept' }),
      );
      return;
    }
    const st: ReadState = { socket: undefined, own: undefined };
    const socket = new net.Socket({
      handle: clientHandle,
      allowHalfOpen: opts.allowHalfOpen,
      pauseOnCreate: opts.pauseOnCreate,
      readable: true,
      writable: true,
      // net calls this without the socket: the closure carries its state
      onread: { buffer: () => nextBuffer(st), callback: onRead },
    } as unknown as net.SocketConstructorOpts);
    st.socket = socket;
    (socket as net.Socket & { [SHARED_READ]?: ReadState })[SHARED_READ] = st;
    onSocket(socket);
  };
  return true;
}
