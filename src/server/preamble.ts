// What a connection sends before its first echoed byte: a PROXY protocol header when the
// server sits behind a proxy (--proxy-protocol). It is read in the process that accepted the
// connection, before admission, so access lists and per-address limits see the real client.

import type { Socket } from 'node:net';
import { codedError } from '../core/errors.js';
import { holdReads, releaseReads } from '../core/internals.js';
import { formatDuration, plural } from '../core/parse.js';
import { type ProxyHeader, parseProxyHeader } from '../core/proxy-protocol.js';

export interface ProxiedConnection {
  header: ProxyHeader;
  /** bytes after the header, read with it: the client's first bytes, to be served first */
  rest: Buffer;
}

/**
 * Stop reading from the kernel now. `pause()` alone only stops 'data' events: net's Readable
 * goes on reading into the socket's buffer, and those bytes would stay in this process when
 * the socket is handed to another one (core/internals.ts holdReads()).
 */
export const stopReading = holdReads;

/** Undo stopReading(): if net asked to read meanwhile, reading starts now. */
export const resumeReading = releaseReads;

/** Read a PROXY v1/v2 header within `timeoutMs`; rejects with ERR_PROXY_HEADER saying why. */
export function readProxyHeader(socket: Socket, timeoutMs: number): Promise<ProxiedConnection> {
  return new Promise((resolve, reject) => {
    let got: Buffer = Buffer.alloc(0);
    const finish = (err?: Error, value?: ProxiedConnection) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onClose);
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
      finish(
        codedError(
          'ERR_PROXY_HEADER',
          `closed after ${plural(got.length, 'byte')}, before a whole PROXY header`,
        ),
      );
    const onError = (err: Error) => finish(err);
    const onClose = () => finish(codedError('ERR_PROXY_HEADER', 'closed before a whole PROXY header'));
    const timer = setTimeout(
      () => finish(codedError('ERR_PROXY_HEADER', `no PROXY header within ${formatDuration(timeoutMs)}`)),
      timeoutMs,
    );
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('error', onError);
    socket.once('close', onClose);
    socket.resume();
  });
}

/**
 * Read the first bytes a client sends, within `timeoutMs`, then stop reading (as after a
 * PROXY header). Rejects when the connection ends (ERR_TLS_NO_HELLO) or the time is up
 * (ERR_TLS_HANDSHAKE_TIMEOUT: the first bytes of a TLS connection are its handshake's).
 */
export function readFirstBytes(socket: Socket, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const finish = (err?: Error, value?: Buffer) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.off('error', onError);
      if (err) {
        socket.on('error', () => {});
        reject(err);
      } else resolve(value!);
    };
    const onData = (chunk: Buffer) => {
      stopReading(socket);
      finish(undefined, chunk);
    };
    const onEnd = () => finish(codedError('ERR_TLS_NO_HELLO', 'closed before sending anything'));
    const onError = (err: Error) => finish(err);
    const timer = setTimeout(
      () => finish(codedError('ERR_TLS_HANDSHAKE_TIMEOUT', 'TLS handshake timed out')),
      timeoutMs,
    );
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    socket.once('error', onError);
    resumeReading(socket);
    socket.resume();
  });
}
