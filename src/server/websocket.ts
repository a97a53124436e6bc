// WebSocket echo (echo-server --ws): an application like echo, after the transport (TCP, TLS,
// Unix), the PROXY header and admission. Each connection is handed to an HTTP parser (an
// http.Server that never listens); an upgrade is answered by the `ws` library, which does the
// RFC 6455 framing, and every message is sent back as it came: text as text, binary as
// binary, a fragmented message whole; pings are answered with pongs (the library's), and a
// close frame's code and reason are sent back (the library's close handshake).
// A plain HTTP request is answered 426 with a one-line hint; bytes that are not HTTP close
// the connection, logged once per source address.
// --fault is applied per message here: latency (and jitter) delays each echoed message,
// order kept; corrupt flips one bit of a message's payload; close-after=SIZE ends the
// connection once SIZE bytes of payload have been echoed, without a close frame (how=fin: the
// client sees 1006) or with an RST (how=rst). The faults before any byte (reset-on-connect,
// blackhole, accept-delay) happen before the application, as for echo.

import http, { type IncomingMessage } from 'node:http';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import type { WebSocket, WebSocketServer } from 'ws';
import { type Fault, flipOneBit, latencyDelay } from '../core/faults.js';
import { isLoopback } from '../core/parse.js';
import type { MessageCounts } from '../core/records.js';
import { describeCloseCode } from '../core/ws-codes.js';
import type { Application, ServeInfo } from './application.js';
import { resetSocket } from './faults.js';

export interface WebSocketOptions {
  /** the one path upgrades are answered on (others: 404); default: any path */
  path?: string;
  /** a message larger than this (bytes) closes the connection with 1009; default 16 MiB */
  maxMessage?: number;
  /** permessage-deflate, when the client offers it */
  compress?: boolean;
  /** subprotocols accepted (the first the client offers that is here); default: the client's first */
  protocols?: string[];
  /**
   * the Origin headers accepted (`*`: any); default: none (a client that is not a browser)
   * or a page served from this machine (an origin whose host is localhost or a loopback address)
   */
  origins?: string[];
}

export const DEFAULT_MAX_MESSAGE = 16 * 1024 * 1024;

/** Faults that are about the byte stream and have no per-message meaning here. */
export const WS_REFUSED_FAULTS = ['bandwidth', 'slice', 'stall-after'] as const;

/** The HTTP request (upgrade or not) must have come whole within this. */
export const UPGRADE_TIMEOUT_MS = 10_000;

// what a connection's socket carries: its handler's info, the upgrade timer, its WebSocket
const INFO = Symbol('ws-info');
const TIMER = Symbol('ws-upgrade-timer');
const WS = Symbol('ws-socket');

function infoOf(socket: Socket): ServeInfo | undefined {
  return (socket as Socket & { [INFO]?: ServeInfo })[INFO];
}

/** The request has come: the upgrade timer is done. */
function requestCame(socket: Socket): void {
  clearTimeout((socket as Socket & { [TIMER]?: NodeJS.Timeout })[TIMER]);
}

/** Stop reading the client while this much of its echo waits in Node's buffer. */
const HIGH_WATER = 1024 * 1024;

/** The WebSocket of one connection, told when a close is sent (the client's code echoed, or ours). */
interface EchoWebSocket extends WebSocket {
  onClosing?: (code: number | undefined, reason: Buffer | string | undefined) => void;
}

/** The `ws` library and the class of our connections, loaded by the first --ws application. */
let wsLib: { WebSocketServer: typeof WebSocketServer; EchoWebSocket: typeof WebSocket } | undefined;
function loadWs(): NonNullable<typeof wsLib> {
  if (wsLib) return wsLib;
  const lib = createRequire(import.meta.url)('ws') as typeof import('ws');
  class Echo extends lib.WebSocket implements EchoWebSocket {
    onClosing?: EchoWebSocket['onClosing'];
    override close(code?: number, data?: string | Buffer): void {
      const told = this.onClosing;
      this.onClosing = undefined;
      told?.(code, data);
      super.close(code, data);
    }
  }
  wsLib = { WebSocketServer: lib.WebSocketServer, EchoWebSocket: Echo };
  return wsLib;
}

/** Whether an upgrade with this Origin header (undefined: none) is served. */
export function originAllowed(origin: string | undefined, allowed: string[] | undefined): boolean {
  if (allowed?.includes('*')) return true;
  if (origin === undefined) return true; // not a browser: an Origin is what a page cannot leave out
  const o = origin.toLowerCase();
  if (allowed) return allowed.some((a) => a.toLowerCase() === o);
  try {
    const host = new URL(o).hostname.replace(/^\[|\]$/g, '');
    return host === 'localhost' || host.endsWith('.localhost') || isLoopback(host);
  } catch {
    return false; // `null` (a file: page, a sandboxed frame) and anything unparsable
  }
}

/** `127.0.0.1:5555` → `127.0.0.1`; `[::1]:5555` → `::1`; `A:1 via B:2` (PROXY header) → A */
function sourceOf(peer: string): string {
  return peer
    .split(' via ')[0]!
    .replace(/:\d+$/, '')
    .replace(/^\[|\]$/g, '');
}

const SAID_NOT_HTTP = new Set<string>();

function reply(socket: Socket, status: number, text: string, body: string, extra = ''): void {
  socket.end(
    `HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`,
  );
}

/** The WebSocket echo application with these options (one per process). */
export function websocketApplication(o: WebSocketOptions = {}): Application {
  const { WebSocketServer, EchoWebSocket } = loadWs();
  const wss = new WebSocketServer({
    noServer: true,
    WebSocket: EchoWebSocket,
    maxPayload: o.maxMessage ?? DEFAULT_MAX_MESSAGE,
    perMessageDeflate: o.compress === true,
    clientTracking: false,
    ...(o.protocols?.length
      ? {
          handleProtocols: (offered: Set<string>) =>
            [...offered].find((p) => o.protocols!.includes(p)) ?? false,
        }
      : {}),
  });
  const parser = http.createServer();
  parser.on('request', (req: IncomingMessage, res: http.ServerResponse) => {
    requestCame(req.socket);
    const where = o.path ?? '/';
    const scheme = (req.socket as Socket & { encrypted?: boolean }).encrypted ? 'wss' : 'ws';
    res.shouldKeepAlive = false;
    res
      .writeHead(426, {
        'content-type': 'text/plain; charset=utf-8',
        upgrade: 'websocket',
        connection: 'close',
      })
      .end(
        `426 Upgrade Required: this is a WebSocket echo server; connect with ${scheme}://${req.headers.host ?? 'HOST:PORT'}${where} (echo-client ${scheme}://…, or new WebSocket(…) in a browser)\n`,
      );
    infoOf(req.socket)?.setReason?.('websocket plain HTTP request answered 426');
  });
  parser.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    const info = infoOf(socket);
    const source = sourceOf(info?.peer ?? '?');
    info?.setReason?.(`websocket not HTTP (${err.code ?? err.message})`);
    if (!SAID_NOT_HTTP.has(source)) {
      if (SAID_NOT_HTTP.size >= 10_000) SAID_NOT_HTTP.clear();
      SAID_NOT_HTTP.add(source);
      info?.logger?.warn(
        { peer: info.peer, code: err.code },
        `${info.peer}: not an HTTP request (${err.code ?? err.message}): closed; a WebSocket client starts with an HTTP upgrade (logged once per source)`,
      );
    }
    socket.destroy();
  });
  parser.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    requestCame(socket);
    const info = infoOf(socket);
    const path = (req.url ?? '/').split('?')[0];
    if (o.path !== undefined && path !== o.path) {
      info?.setReason?.(`websocket upgrade refused, 404 (path ${JSON.stringify(path)})`);
      reply(socket, 404, 'Not Found', `no WebSocket here: the path is ${o.path}\n`);
      return;
    }
    const origin = req.headers.origin;
    if (!originAllowed(origin, o.origins)) {
      info?.setReason?.(`websocket upgrade refused, 403 (origin ${JSON.stringify(origin)})`);
      info?.logger?.info(
        { peer: info.peer, origin },
        `${info.peer}: WebSocket upgrade from origin ${JSON.stringify(origin)} refused (403); allow it with --ws-origin`,
      );
      reply(socket, 403, 'Forbidden', `origin ${origin} is not allowed (echo-server --ws-origin)\n`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => echo(ws as EchoWebSocket, socket, info ?? { peer: '?' }));
  });
  return {
    name: 'ws',
    tracesItself: true,
    ownFaults: true,
    serve(conn, info) {
      (conn as Socket & { [INFO]?: ServeInfo })[INFO] = info;
      // the HTTP request must come whole within UPGRADE_TIMEOUT_MS: a client that trickles
      // its headers does not hold the connection (the parser never listens, so Node's own
      // headersTimeout does not run)
      const timer = setTimeout(() => {
        info.setReason?.(`websocket no whole HTTP request within ${UPGRADE_TIMEOUT_MS / 1000} s`);
        conn.destroy();
      }, UPGRADE_TIMEOUT_MS);
      timer.unref();
      (conn as Socket & { [TIMER]?: NodeJS.Timeout })[TIMER] = timer;
      conn.once('close', () => clearTimeout(timer));
      parser.emit('connection', conn);
    },
    shutdown(conn) {
      const ws = (conn as Socket & { [WS]?: WebSocket })[WS];
      if (ws && ws.readyState === ws.OPEN) ws.close(1001, 'server shutdown');
      else if (!ws) conn.end();
    },
  };
}

/** Echo every message of one upgraded connection. */
function echo(ws: EchoWebSocket, socket: Socket, info: ServeInfo): void {
  (socket as Socket & { [WS]?: WebSocket })[WS] = ws;
  // the library set the socket's timeout to 0: --idle-timeout holds after the upgrade too
  if (info.idleTimeoutMs) socket.setTimeout(info.idleTimeoutMs);
  const counts: MessageCounts = { messagesIn: 0, messagesOut: 0, payloadIn: 0, payloadOut: 0 };
  info.setMessages?.(counts);
  const { tracer, peer } = info;
  const trace = tracer?.message?.bind(tracer);
  let failed: string | undefined;
  let closing = false;
  // before the handler's own 'end' listener, which would call it "client closed"
  socket.prependOnceListener('end', () => {
    if (!closing) info.setReason?.('websocket ended without a close frame (1006)');
  });
  ws.onClosing = (code, reason) => {
    closing = true;
    // the 'error' that explains a close the library starts comes right after this call
    queueMicrotask(() => {
      const r = reason === undefined || reason.length === 0 ? '' : ` ${JSON.stringify(String(reason))}`;
      info.setReason?.(
        failed
          ? `websocket error ${describeCloseCode(code)}: ${failed}`
          : `websocket close ${describeCloseCode(code)}${r}`,
      );
    });
  };
  ws.on('error', (err: Error & { code?: string }) => {
    failed = err.code ?? err.message;
  });
  const faults = info.faults?.length ? new MessageFaults(ws, socket, info.faults, info) : undefined;
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    counts.messagesIn++;
    counts.payloadIn += data.length;
    trace?.('<', peer, isBinary ? 'binary' : 'text', data);
    if (faults) faults.message(data, isBinary, send);
    else send(data, isBinary);
  });
  const send = (data: Buffer, isBinary: boolean) => {
    if (ws.readyState !== ws.OPEN) return;
    counts.messagesOut++;
    counts.payloadOut += data.length;
    trace?.('>', peer, isBinary ? 'binary' : 'text', data);
    ws.send(data, { binary: isBinary });
    // backpressure: a client that does not read its echo stops us reading from it
    if (socket.writableLength > HIGH_WATER && !ws.isPaused) {
      ws.pause();
      socket.once('drain', () => ws.resume());
    }
  };
  if (trace) {
    ws.on('ping', (d: Buffer) => {
      trace('<', peer, 'ping', d);
      trace('>', peer, 'pong', d);
    });
    ws.on('pong', (d: Buffer) => trace('<', peer, 'pong', d));
    ws.on('close', (code: number, reason: Buffer) =>
      trace('<', peer, 'close', Buffer.concat([Buffer.from(`${code} `), reason])),
    );
  }
}

/** --fault per message: latency (order kept), corrupt, close-after. */
class MessageFaults {
  private lastDue = 0;
  private echoed = 0;
  private stopped = false;
  private readonly by: Partial<Record<string, Fault>> = {};
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(
    ws: WebSocket,
    private readonly socket: Socket,
    faults: Fault[],
    private readonly info: ServeInfo,
  ) {
    for (const f of faults) this.by[f.kind] = f;
    ws.once('close', () => {
      for (const t of this.timers) clearTimeout(t);
    });
  }

  message(data: Buffer, isBinary: boolean, send: (d: Buffer, b: boolean) => void): void {
    if (this.stopped) return;
    let d = data;
    const closeAfter = this.by['close-after'];
    let close: 'fin' | 'rst' | undefined;
    if (closeAfter && this.echoed + d.length >= closeAfter.bytes!) {
      d = d.subarray(0, closeAfter.bytes! - this.echoed);
      close = closeAfter.how ?? 'fin';
      this.stopped = true;
    }
    this.echoed += d.length;
    const corrupt = this.by.corrupt;
    if (d.length && corrupt && Math.random() < corrupt.chance!) d = flipOneBit(d);
    const lat = this.by.latency;
    const due = Math.max(performance.now() + (lat ? latencyDelay(lat) : 0), this.lastDue);
    this.lastDue = due;
    const go = () => {
      if (d.length) send(d, isBinary);
      if (close) this.close(close);
    };
    const wait = due - performance.now();
    if (wait <= 1) go();
    else {
      const t = setTimeout(() => {
        this.timers.delete(t);
        go();
      }, wait);
      this.timers.add(t);
    }
  }

  private close(how: 'fin' | 'rst'): void {
    this.info.setReason?.(`fault close-after (${how})`);
    if (how === 'rst') this.socket.write(Buffer.alloc(0), () => resetSocket(this.socket));
    else this.socket.end();
  }
}
