// What a connection sends before its first echoed byte: a PROXY protocol header when the
// server sits behind a proxy (--proxy-protocol). It is read in the process that accepted the
// connection, before admission, so access lists and per-address limits see the real client.

import type { Socket } from 'node:net';
import { codedError } from '../core/errors.js';
import { formatDuration } from '../core/parse.js';
import { type ProxyHeader, parseProxyHeader } from '../core/proxy-protocol.js';

export interface ProxiedConnection {
  header: ProxyHeader;
  /** bytes after the header, read with it: the client's first bytes, to be served first */
  rest: Buffer;
}

type Held = Socket & { _read: (n: number) => void; _handle?: { reading?: boolean; readStop?: () => number } };

function holdRead(): void {}

/**
 * Stop reading from the kernel now. `pause()` alone only stops 'data' events: the socket
 * would go on reading into its buffer (net's Readable calls _read, which starts the handle
 * reading again, from maybeReadMore on the next tick), and those bytes would stay in this
 * process when the socket is handed to another one. So the handle stops and _read is a no-op
 * until resumeReading().
 */
export function stopReading(socket: Socket): void {
  socket.pause();
  const s = socket as Held;
  s._read = holdRead; // an own property over net.Socket.prototype._read
  const h = s._handle;
  if (h?.reading && h.readStop) {
    h.reading = false;
    h.readStop();
  }
}

/** Undo stopReading(): the next resume() reads from the kernel again. */
export function resumeReading(socket: Socket): void {
  const s = socket as Held;
  if (s._read === holdRead) delete (s as Partial<Held>)._read;
}

/** Read a PROXY v1/v2 header within `timeoutMs`; rejects with ERR_PROXY_HEADER saying why. */
export function readProxyHeader(socket: Socket, timeoutMs: number): Promise<ProxiedConnection> {
  return new Promise((resolve, reject) => {
    let got: Buffer = Buffer.alloc(0);
    const finish = (err?: Error, value?: ProxiedConnection) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onError);
      if (err) {
        socket.on('error', () => {});
        reject(err);
      } else resolve(value!);
    };
    const onData = (chunk: Buffer) => {
      got = got.length ? Buffer.concat([got, chunk]) : chunk;
      const r = parseProxyHeader(got);
      if (r.state === 'more') return;
      stopReading(socket);
      if (r.state === 'invalid')
        return finish(codedError('ERR_PROXY_HEADER', `invalid PROXY header: ${r.why}`));
      finish(undefined, { header: r.header, rest: got.subarray(r.header.length) });
    };
    const onEnd = () =>
      finish(codedError('ERR_PROXY_HEADER', `closed after ${got.length} bytes, before a whole PROXY header`));
    const onError = (err: Error) => finish(err);
    const timer = setTimeout(
      () => finish(codedError('ERR_PROXY_HEADER', `no PROXY header within ${formatDuration(timeoutMs)}`)),
      timeoutMs,
    );
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('error', onError);
    socket.resume();
  });
}
