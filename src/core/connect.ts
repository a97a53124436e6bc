// connectTcp(): the one function for every outgoing TCP connection (echo-client, echo-chat,
// bench, lab), in the spirit of nc's remote_connect/timeout_connect: optional local address
// and port (bound before connect), a connect timeout that ends in a real ETIMEDOUT, retries
// with backoff, and the shared socket options applied once connected.

import net, { isIP, type LookupFunction, type Socket } from 'node:net';
import { errorCode } from './errors.js';
import { rawListenFd, rawUnixConnectFd, unixPathOf } from './listen.js';
import { buildProxyHeader } from './proxy-protocol.js';
import { applySocketOptions, type OptionReport, type SocketOptions } from './sockopts.js';
import { type ClientTls, connectTls, type TlsInfo, tlsInfo } from './tls.js';

export interface ConnectOptions {
  host: string;
  port: number;
  /** a Unix-domain socket (a path, or `@name`) instead of host and port */
  path?: string;
  /** TLS over the connection, checked as these options say */
  tls?: ClientTls;
  /** first send a PROXY protocol header (v1 text, v2 binary) naming this connection's addresses */
  sendProxy?: 1 | 2;
  /** name resolution (tests: a resolver that answers ::1 then 127.0.0.1, as many hosts do for localhost) */
  lookup?: LookupFunction;
  /** give up on a connect after this many ms with ETIMEDOUT (a full backlog, a silent host) */
  connectTimeoutMs?: number;
  localAddress?: string;
  localPort?: number;
  /** resolve the host to this family only (-4 / -6) */
  family?: 4 | 6;
  /** false: bind localPort without SO_REUSEADDR (a port in TIME_WAIT then fails with EADDRINUSE) */
  reuseAddr?: boolean;
  socketOptions?: SocketOptions;
  /** keep our side open after the peer's FIN (default true: we decide when to close) */
  allowHalfOpen?: boolean;
  /** read into this buffer (or the one the function returns before each read) with this callback instead of 'data' events (net's `onread`) */
  onread?: { buffer: Buffer | (() => Buffer); callback: (nread: number, buf: Buffer) => unknown };
}

export interface ConnectResult {
  /** the socket to use: a TLSSocket under `tls` */
  socket: Socket;
  options: OptionReport[];
  /** what TLS negotiated */
  tls?: TlsInfo;
}

/** An error shaped like Node's own connect errors. */
export function connectTimeoutError(host: string, port: number): NodeJS.ErrnoException {
  const err = new Error(`connect ETIMEDOUT ${host}:${port}`) as NodeJS.ErrnoException & {
    address: string;
    port: number;
  };
  err.code = 'ETIMEDOUT';
  err.syscall = 'connect';
  err.address = host;
  err.port = port;
  return err;
}

/**
 * A socket bound to a fixed local port without SO_REUSEADDR (libuv always sets it on bind):
 * made with libc, so a port still in TIME_WAIT gives the classic EADDRINUSE.
 */
function boundWithoutReuseAddr(o: ConnectOptions): net.Socket {
  const host = o.localAddress ?? (isIP(o.host) === 6 || o.family === 6 ? '::' : '0.0.0.0');
  const fd = rawListenFd({
    host,
    port: o.localPort!,
    backlog: 0,
    reuseAddr: false,
    reusePort: false,
    bindOnly: true,
  });
  return new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: o.allowHalfOpen ?? true });
}

export function connectTcp(o: ConnectOptions): Promise<ConnectResult> {
  return new Promise((resolve, reject) => {
    let socket: net.Socket;
    if (o.reuseAddr === false && o.localPort !== undefined) {
      try {
        socket = boundWithoutReuseAddr(o);
      } catch (err) {
        reject(err);
        return;
      }
      socket.connect({ host: o.host, port: o.port, ...(o.family ? { family: o.family } : {}) });
    } else if (o.path?.startsWith('@') && process.platform === 'linux') {
      // an abstract name: connected with libc, with the name's exact length (net pads it to 108 bytes)
      try {
        socket = new net.Socket({
          fd: rawUnixConnectFd(unixPathOf(o.path)),
          readable: true,
          writable: true,
          ...(o.onread && !o.tls ? { onread: o.onread as net.OnReadOpts } : {}),
          allowHalfOpen: o.allowHalfOpen ?? true,
        } as net.SocketConstructorOpts);
      } catch (err) {
        reject(err);
        return;
      }
      const connected = socket;
      process.nextTick(() => connected.emit('connect')); // connected already: as net.connect says it
    } else if (o.path !== undefined) {
      socket = net.connect({
        path: unixPathOf(o.path),
        ...(o.onread && !o.tls ? { onread: o.onread as net.OnReadOpts } : {}),
        allowHalfOpen: o.allowHalfOpen ?? true,
      });
    } else {
      socket = net.connect({
        host: o.host,
        port: o.port,
        localAddress: o.localAddress,
        localPort: o.localPort,
        ...(o.family ? { family: o.family } : {}),
        ...(o.lookup ? { lookup: o.lookup } : {}),
        ...(o.onread && !o.tls ? { onread: o.onread as net.OnReadOpts } : {}),
        allowHalfOpen: o.allowHalfOpen ?? true,
      });
    }
    const started = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const onError = (err: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    socket.once('error', onError);
    if (o.connectTimeoutMs !== undefined) {
      // net's own `timeout` only emits 'timeout'; end the attempt ourselves with ETIMEDOUT
      timer = setTimeout(() => {
        socket.off('error', onError);
        socket.on('error', () => {});
        socket.destroy();
        reject(connectTimeoutError(o.path ?? o.host, o.port));
      }, o.connectTimeoutMs);
    }
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.off('error', onError);
      let options: OptionReport[] = [];
      try {
        if (o.socketOptions) options = applySocketOptions(socket, o.socketOptions);
      } catch (err) {
        socket.destroy();
        reject(err);
        return;
      }
      if (o.sendProxy) {
        const unix = o.path !== undefined;
        socket.write(
          buildProxyHeader(
            o.sendProxy,
            unix ? undefined : { address: socket.localAddress ?? '', port: socket.localPort ?? 0 },
            unix ? undefined : { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 },
          ),
        );
      }
      if (!o.tls) return resolve({ socket, options });
      // the handshake shares the connect timeout: both are "getting a usable connection"
      const left =
        o.connectTimeoutMs !== undefined
          ? Math.max(1, o.connectTimeoutMs - (Date.now() - started))
          : undefined;
      connectTls(socket, o.path !== undefined ? 'localhost' : o.host, o.tls, {
        timeoutMs: left,
        allowHalfOpen: o.allowHalfOpen ?? true,
      }).then((t) => {
        if (o.onread) {
          const { callback } = o.onread;
          t.on('data', (d: Buffer) => callback(d.length, d));
        }
        resolve({
          socket: t,
          options,
          tls: { ...tlsInfo(t), ...(o.tls?.fingerprint ? { pinned: true } : {}) },
        });
      }, reject);
    });
  });
}

const RETRYABLE = new Set([
  'ECONNREFUSED',
  'ETIMEDOUT',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
]);

export interface RetryOptions {
  retries: number;
  /** first delay in ms, doubled each time, capped at maxDelay */
  baseDelay?: number;
  maxDelay?: number;
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
}

/** Run `fn`, retrying retryable socket errors with exponential backoff. */
export async function withRetry<T>(fn: () => Promise<T>, r: RetryOptions): Promise<T> {
  const base = r.baseDelay ?? 200;
  const max = r.maxDelay ?? 5000;
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (attempt >= r.retries || !RETRYABLE.has(errorCode(err))) throw err;
      const delay = Math.min(max, base * 2 ** attempt);
      r.onRetry?.(err, attempt + 1, delay);
      await new Promise((res) => setTimeout(res, delay));
    }
  }
}
