// What a connection sends before its first echoed byte: a PROXY protocol header when the
// server sits behind a proxy (--proxy-protocol). It is read in the process that accepted the
// connection, before admission, so access lists and per-address limits see the real client.

import type { Socket } from 'node:net';
import { codedError } from '../core/errors.js';
import { resumeReading, stopReading } from '../core/hold.js';
import { formatDuration, plural } from '../core/parse.js';
import { type ProxyHeader, parseProxyHeader } from '../core/proxy-protocol.js';

export interface ProxiedConnection {
  header: ProxyHeader;
  /** bytes after the header, read with it: the client's first bytes, to be served first */
  rest: Buffer;
}

/** What a preamble reader makes of the bytes so far: wait for more, a result, or a refusal. */
type Taken<T> = { more: true } | { value: T } | { error: Error };

/**
 * Read from `socket` until `take` (given every byte so far) has its result, within
 * `timeoutMs`; then reading stops, so what follows stays in the kernel for whoever serves the
 * connection. A connection that ends first rejects with `ended(how, bytes so far)`, the time
 * running out with `late()`.
 */
function readPreamble<T>(
  socket: Socket,
  timeoutMs: number,
  take: (got: Buffer) => Taken<T>,
  ended: (how: 'end' | 'close', got: number) => Error,
  late: () => Error,
): Promise<T> {
  return new Promise((resolve, reject) => {
    let got: Buffer = Buffer.alloc(0);
    const finish = (err?: Error, value?: T) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onClose);
      socket.off('error', onError);
      if (err) {
        socket.on('error', () => {});
        reject(err);
      } else resolve(value as T);
    };
    const onData = (chunk: Buffer) => {
      got = got.length ? Buffer.concat([got, chunk]) : chunk;
      const r = take(got);
      if ('more' in r) return;
      stopReading(socket);
      if ('error' in r) finish(r.error);
      else finish(undefined, r.value);
    };
    const onEnd = () => finish(ended('end', got.length));
    const onClose = () => finish(ended('close', got.length));
    const onError = (err: Error) => finish(err);
    const timer = setTimeout(() => finish(late()), timeoutMs);
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onClose);
    socket.once('error', onError);
    resumeReading(socket); // a socket held by this process reads again
    socket.resume();
  });
}

/** Read a PROXY v1/v2 header within `timeoutMs`; rejects with ERR_PROXY_HEADER saying why. */
export function readProxyHeader(socket: Socket, timeoutMs: number): Promise<ProxiedConnection> {
  return readPreamble<ProxiedConnection>(
    socket,
    timeoutMs,
    (got) => {
      const r = parseProxyHeader(got);
      if (r.state === 'more') return { more: true };
      if (r.state === 'invalid')
        return { error: codedError('ERR_PROXY_HEADER', `invalid PROXY header: ${r.why}`) };
      return { value: { header: r.header, rest: got.subarray(r.header.length) } };
    },
    (how, n) =>
      codedError(
        'ERR_PROXY_HEADER',
        how === 'end'
          ? `closed after ${plural(n, 'byte')}, before a whole PROXY header`
          : 'closed before a whole PROXY header',
      ),
    () => codedError('ERR_PROXY_HEADER', `no PROXY header within ${formatDuration(timeoutMs)}`),
  );
}

/**
 * Read the first bytes a client sends, within `timeoutMs`, then stop reading (as after a
 * PROXY header). Rejects when the connection ends (ERR_TLS_NO_HELLO) or the time is up
 * (ERR_TLS_HANDSHAKE_TIMEOUT: the first bytes of a TLS connection are its handshake's).
 */
export function readFirstBytes(socket: Socket, timeoutMs: number): Promise<Buffer> {
  return readPreamble<Buffer>(
    socket,
    timeoutMs,
    (got) => ({ value: got }),
    () => codedError('ERR_TLS_NO_HELLO', 'closed before sending anything'),
    () => codedError('ERR_TLS_HANDSHAKE_TIMEOUT', 'TLS handshake timed out'),
  );
}
