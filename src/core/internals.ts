// Every use of a Node internal (an underscore property, a private symbol, a handle's native
// method) is a function here, each with the public path it falls back to when the internal is
// missing. Versions named below are those the code was run on (Node 20.20 and 24.21 on Linux).
//
// The one internal a server relies on for speed, the listening handle's `onconnection`, is
// also checked by behaviour before first use: acceptPathWorks() accepts one loopback
// connection through it and echoes bytes. Until that passes, callers keep net.Server's own
// accept path.
//
// ECHO_INTERNALS_BROKEN (read here only) replaces an internal with a broken one, to test that
// the check notices: `onconnection` drops the last byte of every read, `onconnection-silent`
// never hands the accepted connection on.

import { randomBytes } from 'node:crypto';
import { Socket as DgramSocket } from 'node:dgram';
import diagnostics from 'node:diagnostics_channel';
import net from 'node:net';

const broken = () => process.env.ECHO_INTERNALS_BROKEN ?? '';

// --- accepting: the listening handle's onconnection ----------------------------------------

type OnConnection = (status: number, clientHandle?: object) => void;
interface ListeningHandle {
  onconnection?: OnConnection;
}
/** the fields of net.Server that its own onconnection reads or writes (Node 20, 24) */
interface ServerFields {
  _handle?: ListeningHandle | null;
  _connections?: number;
  maxConnections?: number;
  blockList?: unknown;
  noDelay?: boolean;
  keepAlive?: boolean;
  highWaterMark?: number;
}

/** Node's `net.server.socket` channel: net.Server publishes `{ socket }` for each accepted socket. */
const serverSocketChannel = diagnostics.channel('net.server.socket');

/** net's public `onread` socket option, with a buffer function. */
export interface OnRead {
  buffer: () => Buffer;
  callback: (this: net.Socket, n: number, buf: Buffer) => void;
}

/** What the accepted sockets are built with. */
export interface AcceptOptions {
  allowHalfOpen: boolean;
  pauseOnCreate: boolean;
  /** called once per accepted socket, before `onSocket` */
  onread: () => OnRead;
}

/**
 * Build each socket accepted by `server` (listening already) with `opts` (its `onread` in
 * particular, which net.Server does not pass) and hand it to `onSocket` in place of the
 * 'connection' event. False, and nothing changed, when the listening handle has no
 * `onconnection` (Node 20 and 24 have it: libuv's connection callback, `(status, clientHandle)`).
 *
 * What net.Server's own onconnection does still holds on this path: the server counts the
 * socket (`getConnections()`, and close() waits for it), the `net.server.socket` diagnostics
 * channel fires. An accept error, and any connection to a server with `maxConnections`,
 * `blockList`, `noDelay` or `keepAlive` set, goes to Node's own onconnection (the servers of
 * this project set none of them).
 */
export function interceptAccept(
  server: net.Server,
  opts: AcceptOptions,
  onSocket: (socket: net.Socket) => void,
): boolean {
  const srv = server as net.Server & ServerFields;
  const handle = srv._handle;
  if (!handle || typeof handle.onconnection !== 'function') return false;
  const own = handle.onconnection;
  const socketOpts = brokenAccept(opts);
  handle.onconnection = function (this: ListeningHandle, status, clientHandle) {
    if (
      status < 0 ||
      !clientHandle ||
      srv.maxConnections != null ||
      srv.blockList ||
      srv.noDelay ||
      srv.keepAlive
    )
      return own.call(this, status, clientHandle);
    if (socketOpts === 'silent') return;
    const hwm = typeof srv.highWaterMark === 'number' ? srv.highWaterMark : undefined;
    const socket = new net.Socket({
      handle: clientHandle,
      allowHalfOpen: socketOpts.allowHalfOpen,
      pauseOnCreate: socketOpts.pauseOnCreate,
      readable: true,
      writable: true,
      ...(hwm !== undefined ? { readableHighWaterMark: hwm, writableHighWaterMark: hwm } : {}),
      onread: socketOpts.onread(),
    } as unknown as net.SocketConstructorOpts);
    // as net.Server does: the socket's destroy decrements the count and lets close() finish
    srv._connections = (srv._connections ?? 0) + 1;
    (socket as net.Socket & { server?: net.Server; _server?: net.Server }).server = server;
    (socket as net.Socket & { _server?: net.Server })._server = server;
    onSocket(socket);
    if (serverSocketChannel.hasSubscribers) serverSocketChannel.publish({ socket });
  };
  return true;
}

/** The options as ECHO_INTERNALS_BROKEN makes them ('silent': drop every connection). */
function brokenAccept(opts: AcceptOptions): AcceptOptions | 'silent' {
  const b = broken();
  if (b === 'onconnection-silent') return 'silent';
  if (b !== 'onconnection') return opts;
  return {
    ...opts,
    onread: () => {
      const { buffer, callback } = opts.onread();
      return {
        buffer,
        callback(n, buf) {
          if (n > 1) callback.call(this, n - 1, buf);
        },
      };
    },
  };
}

// --- the behavioural check of interceptAccept ----------------------------------------------

export interface AcceptCheck {
  ok: boolean;
  /** why the check failed */
  why?: string;
  /** how long it took, ms */
  ms: number;
}

/** How long the check may take before the public path is chosen. */
const CHECK_TIMEOUT_MS = 1000;
const checks = new Map<string, Promise<AcceptCheck>>();

/**
 * Does interceptAccept() work in this process? One loopback connection is accepted through it:
 * bytes written come back byte-exact through the `onread` callback (none as 'data', none
 * through net.Server's 'connection'), the server counts the socket, and both ends see the
 * close. Run once per process (per ECHO_INTERNALS_BROKEN value); never rejects.
 */
export function acceptPathWorks(): Promise<AcceptCheck> {
  const key = broken();
  let check = checks.get(key);
  if (!check) {
    check = checkAccept(CHECK_TIMEOUT_MS);
    checks.set(key, check);
  }
  return check;
}

async function checkAccept(timeoutMs: number): Promise<AcceptCheck> {
  const t0 = performance.now();
  const server = net.createServer({ allowHalfOpen: true });
  const sockets: net.Socket[] = [];
  let timer: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`no echo within ${timeoutMs} ms`)), timeoutMs);
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        server.off('error', reject);
        probe(server, sockets).then(resolve, reject);
      });
    });
    return { ok: true, ms: performance.now() - t0 };
  } catch (err) {
    return { ok: false, why: (err as Error).message, ms: performance.now() - t0 };
  } finally {
    clearTimeout(timer);
    for (const s of sockets) s.destroy();
    server.close();
  }
}

function probe(server: net.Server, sockets: net.Socket[]): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const fail = (why: string) => reject(new Error(why));
    const sent = randomBytes(4096);
    const own = Buffer.allocUnsafe(64 * 1024);
    let serverClosed = false;
    let echoed: Buffer | undefined;
    const done = () => {
      if (!serverClosed || !echoed) return;
      if (!echoed.equals(sent)) return fail(`${echoed.length} of ${sent.length} bytes came back as sent`);
      server.getConnections((err, n) => {
        if (err || n !== 0) fail(`the server still counts ${n} connection(s) after the close`);
        else resolve();
      });
    };
    server.on('connection', () => fail("net.Server's own accept ran, not the replaced onconnection"));
    const used = interceptAccept(
      server,
      {
        allowHalfOpen: true,
        pauseOnCreate: false,
        onread: () => ({
          buffer: () => own,
          callback(n, buf) {
            this.write(Buffer.from(buf.subarray(0, n)));
          },
        }),
      },
      (socket) => {
        sockets.push(socket);
        socket.on('error', (err) => fail(`server side: ${err.message}`));
        socket.on('data', () => fail("bytes came as 'data', not through the read callback"));
        socket.on('end', () => socket.end());
        socket.on('close', () => {
          serverClosed = true;
          done();
        });
      },
    );
    if (!used) return fail('the listening handle has no onconnection');
    const port = (server.address() as net.AddressInfo).port;
    const client = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    sockets.push(client);
    const back: Buffer[] = [];
    client.on('error', (err) => fail(`client side: ${err.message}`));
    client.on('data', (c: Buffer) => back.push(c));
    client.on('end', () => {
      echoed = Buffer.concat(back);
      client.end();
      done();
    });
    client.end(sent);
  });
}

// --- a socket's handle and file descriptor -------------------------------------------------

/**
 * The OS file descriptor behind a net.Socket, net.Server or dgram.Socket; undefined when it has
 * none (not open, shared by cluster) or when this Node keeps it elsewhere. net objects keep the
 * handle in `_handle` (Node 20, 24); dgram sockets keep it in a state object behind a symbol
 * (`Symbol(state symbol)`, Node 20, 24), where `_handle` is a deprecated getter (DEP0112).
 */
export function handleFd(sock: unknown): number | undefined {
  if (!sock || typeof sock !== 'object') return undefined;
  const s = sock as Record<string | symbol, any>;
  let handle = sock instanceof DgramSocket ? undefined : s._handle;
  if (handle === undefined) {
    for (const sym of Object.getOwnPropertySymbols(s)) {
      const v = s[sym];
      if (v && typeof v === 'object' && 'handle' in v && v.handle && typeof v.handle.fd === 'number') {
        handle = v.handle;
        break;
      }
    }
  }
  const fd = handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/** The TCP (or pipe) socket under a TLS socket (`_parent`, Node 20, 24); the socket itself otherwise. */
export function transportSocket(socket: net.Socket): net.Socket {
  const parent = (socket as net.Socket & { _parent?: unknown })._parent;
  return parent instanceof net.Socket ? parent : socket;
}

/**
 * The native TCP handle for a listening fd, to be passed to `server.listen(handle)`: a net.Socket
 * wraps the fd and gives its `_handle` up (Node 20, 24). Undefined where that handle cannot be
 * had; the caller then listens with `{ fd }`.
 */
export function takeHandle(fd: number): object | undefined {
  const holder = new net.Socket({ fd, readable: false, writable: false }) as net.Socket & {
    _handle?: object | null;
  };
  const handle = holder._handle;
  if (!handle || typeof handle !== 'object') return undefined;
  holder._handle = null;
  return handle;
}

// --- reading: the stream handle's readStart -------------------------------------------------

type StreamHandle = { reading?: boolean; readStop?: () => number; readStart?: () => number };
type WithHandle = net.Socket & { _handle?: StreamHandle | null };

/** Stands in for the handle's readStart while reads are held: reading stays stopped. */
function heldReadStart(): number {
  return 0;
}

/**
 * Stop reading from the kernel until releaseReads(), whatever net's Readable asks: the handle
 * stops and its `readStart` is shadowed by an own property that does nothing (the handle's
 * `reading`, `readStop`, `readStart`: Node 20, 24). `reading` keeps saying whether net wants
 * to read: true if a read was pending when reads were held, or once net asks again (its
 * `_read` sets it and calls the shadow). `pause()` alone only stops 'data' events, and is all
 * that happens where the handle lacks these: then net may read ahead into this process's buffer.
 */
export function holdReads(socket: net.Socket): void {
  socket.pause();
  const h = (socket as WithHandle)._handle;
  if (!h || typeof h.readStop !== 'function' || typeof h.readStart !== 'function') return;
  if (h.reading) h.readStop();
  h.readStart = heldReadStart;
}

/** Undo holdReads(): if net asked to read meanwhile, the handle starts reading now. */
export function releaseReads(socket: net.Socket): void {
  const h = (socket as WithHandle)._handle;
  if (!h || h.readStart !== heldReadStart) return;
  delete h.readStart;
  const start = (h as StreamHandle).readStart; // the native one again
  if (h.reading && start) start.call(h);
}

// --- giving a socket's descriptor up: the handle's close without the socket's destroy --------

type ReleasableSocket = net.Socket & {
  _handle?: { close?: () => void; onread?: unknown } | null;
  _server?: (net.Server & ServerFields) | null;
};

/**
 * Close this process's copy of a socket's descriptor once a copy is on its way to another
 * process, as Node's own IPC does after it sent a socket (`_handle`, `_server`: Node 20, 24):
 * the handle closes, the socket object stays without one and emits no 'close' (its connection
 * is not over), the server stops counting it. Where the handle is not there, destroy() (which
 * emits 'close'). False then.
 */
export function releaseHandle(socket: net.Socket): boolean {
  const s = socket as ReleasableSocket;
  const h = s._handle;
  if (!h || typeof h.close !== 'function') {
    socket.destroy();
    return false;
  }
  h.onread = () => {};
  s._handle = null;
  socket.setTimeout(0);
  const srv = s._server;
  if (srv && typeof srv._connections === 'number' && srv._connections > 0) srv._connections--;
  s._server = null; // a later destroy() must not count it off again
  h.close();
  return true;
}
