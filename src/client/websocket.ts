// A WebSocket echo session over a connection made as echo-client makes every other one
// (--tls and its checks, --send-proxy, --connect-timeout, --retry): the `ws` library does the
// upgrade and the framing on that socket. What can go wrong on the way is one WsFailure with
// one explained line: an upgrade refused (404, 403, 426…), a server that does not speak
// HTTP, an upgrade never answered, a close code the client did not ask for.

import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import { formatDuration } from '../core/parse.js';
import { escapeForTerminal } from '../core/terminal.js';
import { describeCloseCode } from '../core/ws-codes.js';

/** A WebSocket session that failed, said in one line (the command exits 1 with it). */
export class WsFailure extends Error {
  constructor(
    readonly line: string,
    readonly code: string,
  ) {
    super(line);
  }
}

const STATUS_MEANING: Record<number, string> = {
  400: 'the server found the upgrade request malformed',
  401: 'the server wants credentials',
  403: 'the server refused this client (an Origin or access rule; echo-server allows origins with --ws-origin)',
  404: 'no WebSocket at this path (ask for the path the server serves, e.g. ws://HOST:PORT/echo)',
  426: 'the server wants an upgrade this request did not offer (another protocol or version)',
};

export interface WsOpenOptions {
  /** the URL's path and query, e.g. `/echo?x=1` */
  path: string;
  /** the Host header: `host:port` */
  host: string;
  /** the upgrade must be answered within this (ms) */
  timeoutMs: number;
  protocols?: string[];
}

/** `ws`, loaded by the first WebSocket: echo-client's other commands never need it. */
let wsModule: typeof import('ws') | undefined;
const wsLib = (): typeof import('ws') =>
  (wsModule ??= createRequire(import.meta.url)('ws') as typeof import('ws'));

/** Upgrade `socket` (connected, TLS already under wss://) to a WebSocket. */
export function openWebSocket(socket: Socket, o: WsOpenOptions): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new (wsLib().WebSocket)(`ws://${o.host}${o.path}`, o.protocols ?? [], {
      createConnection: () => socket,
      maxPayload: 1024 ** 3,
    });
    // the library's handshakeTimeout does not fire on a socket handed over connected
    const timer = setTimeout(
      () => fail(upgradeFailure(new Error('Opening handshake has timed out'), o.timeoutMs)),
      o.timeoutMs,
    );
    const fail = (f: WsFailure) => {
      clearTimeout(timer);
      ws.removeAllListeners('open');
      ws.on('error', () => {});
      ws.terminate();
      reject(f);
    };
    ws.once('unexpected-response', (req, res) => {
      const status = res.statusCode ?? 0;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        if (body.length < 512) body += d;
      });
      const done = () => {
        req.destroy();
        const said = body.split('\n')[0]!.trim().slice(0, 200);
        const meaning =
          STATUS_MEANING[status] ??
          (status === 101
            ? 'answered with another protocol'
            : 'it answered HTTP without upgrading: not a WebSocket endpoint');
        fail(
          new WsFailure(
            `upgrade refused: HTTP ${status} ${escapeForTerminal(res.statusMessage ?? '')} — ${meaning}${said ? `; the server said: "${escapeForTerminal(said)}"` : ''}`,
            `HTTP_${status}`,
          ),
        );
      };
      res.once('end', done);
      res.once('error', done);
      res.once('aborted', done);
    });
    ws.once('error', (err: Error & { code?: string }) => fail(upgradeFailure(err, o.timeoutMs)));
    ws.once('open', () => {
      clearTimeout(timer);
      ws.removeAllListeners('error');
      resolve(ws);
    });
  });
}

function upgradeFailure(err: Error & { code?: string }, timeoutMs: number): WsFailure {
  const code = err.code ?? '';
  if (/handshake has timed out/i.test(err.message))
    return new WsFailure(
      `no answer to the WebSocket upgrade within ${formatDuration(timeoutMs)} (--timeout): is it a WebSocket server? A plain TCP server waits for more, or echoes the request`,
      'ETIMEDOUT',
    );
  if (code.startsWith('HPE_'))
    return new WsFailure(
      `the server did not answer in HTTP (${code}): not a WebSocket server (a plain TCP echo server sends the request back: talk to it with echo-client HOST PORT)`,
      'ENOTWS',
    );
  if (code === 'ECONNRESET' || /socket hang up/i.test(err.message))
    return new WsFailure(
      'the server closed the connection without answering the upgrade: not a WebSocket server, or one that refused this client',
      code || 'ECONNRESET',
    );
  if (/Sec-WebSocket-Accept|Sec-WebSocket-Protocol|Sec-WebSocket-Extensions/i.test(err.message))
    return new WsFailure(
      `the server answered the upgrade wrongly (${escapeForTerminal(err.message)}): not a conforming WebSocket server`,
      'EPROTO',
    );
  return new WsFailure(`WebSocket upgrade failed: ${escapeForTerminal(err.message)}`, code || 'UNKNOWN');
}

/** The line for a close the client did not start (or an error that ended the WebSocket). */
export function closeFailure(code: number, reason: string, error?: Error & { code?: string }): WsFailure {
  const said = reason ? ` "${escapeForTerminal(reason)}"` : '';
  if (error && code === 1006 && error.code?.startsWith('WS_ERR_'))
    return new WsFailure(
      `the server broke the WebSocket protocol (${error.code}: ${escapeForTerminal(error.message)}); closed with 1002 (protocol error)`,
      'WS_1002',
    );
  const hint: Record<number, string> = {
    1002: ': the server found a frame of ours invalid',
    1006: ': the TCP connection ended without a close frame (the server went away or reset it)',
    1009: ': a message was larger than the server accepts (echo-server --ws-max-message)',
    1011: ': the server hit an error of its own',
  };
  return new WsFailure(
    `the server closed the WebSocket: ${describeCloseCode(code)}${said}${hint[code] ?? ''}`,
    `WS_${code}`,
  );
}

/**
 * Reads a WebSocket's messages in order: `next()` resolves with the next one (or rejects with
 * the close that ended it, or after `timeoutMs`).
 */
export class MessageReader {
  private readonly queue: { data: Buffer; isBinary: boolean }[] = [];
  private waiter:
    | { resolve: (m: { data: Buffer; isBinary: boolean }) => void; reject: (e: Error) => void }
    | undefined;
  /** set when the WebSocket has closed: what it means */
  ended: WsFailure | undefined;
  /** the close came after close() was called by us */
  closing = false;
  closeCode: number | undefined;
  private error: (Error & { code?: string }) | undefined;

  constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const w = this.waiter;
      this.waiter = undefined;
      if (w) w.resolve({ data, isBinary });
      else this.queue.push({ data, isBinary });
    });
    ws.on('error', (err: Error & { code?: string }) => {
      this.error ??= err;
    });
    ws.on('close', (code: number, reason: Buffer) => {
      this.closeCode = code;
      this.ended =
        this.closing && !this.error ? undefined : closeFailure(code, reason.toString(), this.error);
      const w = this.waiter;
      this.waiter = undefined;
      w?.reject(this.ended ?? new WsFailure('the WebSocket closed', 'WS_CLOSED'));
    });
  }

  next(timeoutMs?: number): Promise<{ data: Buffer; isBinary: boolean }> {
    const m = this.queue.shift();
    if (m) return Promise.resolve(m);
    if (this.ws.readyState === this.ws.CLOSED)
      return Promise.reject(this.ended ?? new WsFailure('the WebSocket closed', 'WS_CLOSED'));
    return new Promise((resolve, reject) => {
      const t =
        timeoutMs !== undefined
          ? setTimeout(() => {
              this.waiter = undefined;
              reject(new WsFailure(`no echo within ${formatDuration(timeoutMs)} (--timeout)`, 'ETIMEDOUT'));
            }, timeoutMs)
          : undefined;
      this.waiter = {
        resolve: (x) => {
          clearTimeout(t);
          resolve(x);
        },
        reject: (e) => {
          clearTimeout(t);
          reject(e);
        },
      };
    });
  }

  /** Close with `code` and wait for the server's close (at most `timeoutMs`, then cut). */
  async close(code = 1000, timeoutMs = 5000): Promise<void> {
    if (this.ws.readyState === this.ws.CLOSED) return;
    this.closing = true;
    const done = new Promise<void>((resolve) => this.ws.once('close', () => resolve()));
    this.ws.close(code);
    const t = setTimeout(() => this.ws.terminate(), timeoutMs);
    await done;
    clearTimeout(t);
  }
}
