// Accepted sockets that read into one buffer shared by the whole process (net's public `onread`
// option) instead of through a Readable stream. Node's default read path allocates a 64 KiB
// buffer per read, shrinks it to the bytes read and pushes it through the stream machinery
// ('data' event); here the kernel writes into the shared buffer and one callback runs. Every
// read on this thread reuses that buffer, so the callback copies out what must outlive it.
//
// net.Server builds each accepted Socket itself, without `onread`. The listening handle calls
// its `onconnection(status, clientHandle)` for every accept (libuv's connection callback, the
// same in Node 20 and 24); replacing it is the one internal used here, and only where it exists.
// Elsewhere net.Server's own path stays, and the echo reads 'data' events as before.

import net from 'node:net';
import { getSystemErrorName } from 'node:util';

/** Bytes one read may take: what Node's own read path asks libuv for. */
export const READ_SIZE = 64 * 1024;
const shared = Buffer.allocUnsafe(READ_SIZE);

/** Set on sockets built here: their bytes go to the read callback, never to 'data'. */
export const SHARED_READ = Symbol('shared-read');

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
    const socket = new net.Socket({
      handle: clientHandle,
      allowHalfOpen: opts.allowHalfOpen,
      pauseOnCreate: opts.pauseOnCreate,
      readable: true,
      writable: true,
      onread: { buffer: shared, callback: onRead },
    } as unknown as net.SocketConstructorOpts);
    (socket as net.Socket & { [SHARED_READ]?: true })[SHARED_READ] = true;
    onSocket(socket);
  };
  return true;
}
