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
// never hands the accepted connection on, `light` drops the last byte of every read of a
// light connection (LightSocket, checked by lightPathWorks()), `light-fd` the same for light
// connections on a received descriptor only (openLight; the hand-over's self-test uses them).

import { randomBytes } from 'node:crypto';
import { Socket as DgramSocket } from 'node:dgram';
import diagnostics from 'node:diagnostics_channel';
import net from 'node:net';
import util from 'node:util';

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
  /**
   * Hand a LightSocket (the handle driven without a net.Socket) to `onSocket` where it can be
   * built: not while the `net.server.socket` channel has subscribers (they expect net.Sockets).
   * Callers check lightPathWorks() first.
   */
  light?: boolean;
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
  const lightBroken = broken() === 'light'; // read once: process.env costs a lookup per access
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
    if (socketOpts.light && !serverSocketChannel.hasSubscribers && drivable(clientHandle)) {
      srv._connections = (srv._connections ?? 0) + 1;
      const read = socketOpts.onread();
      onSocket(
        new LightSocket(clientHandle, lightBroken ? brokenRead(read) : read, srv) as unknown as net.Socket,
      );
      return;
    }
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

/** The part of an accepted TCP handle AcceptedHandle uses (tcp_wrap, Node 20, 24). */
interface HeldTcpHandle {
  fd?: number;
  getpeername?: (out: Record<string, unknown>) => number;
  close(cb?: () => void): void;
}

/**
 * An accepted connection's TCP handle held without a net.Socket: its peer read once from the
 * handle, its descriptor, and either release() (its copy closed once the descriptor is on its
 * way to another process) or socket() (a paused net.Socket takes the handle over, for what
 * needs one: a refusal, Node's IPC). The server counts it from accept until release(), or
 * until that net.Socket is destroyed.
 */
export class AcceptedHandle {
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
  readonly remoteFamily: string | undefined;
  private h: HeldTcpHandle | null;
  private sock: net.Socket | undefined;

  constructor(
    handle: HeldTcpHandle,
    private readonly server: net.Server & ServerFields,
  ) {
    this.h = handle;
    const out: Record<string, unknown> = {};
    const ok = typeof handle.getpeername === 'function' && handle.getpeername(out) === 0;
    this.remoteAddress = ok && typeof out.address === 'string' ? out.address : undefined;
    this.remotePort = ok && typeof out.port === 'number' ? out.port : undefined;
    this.remoteFamily = ok && typeof out.family === 'string' ? out.family : undefined;
  }

  /** the descriptor, while this object holds the handle (neither released nor given to a socket) */
  get fd(): number | undefined {
    const fd = this.h?.fd;
    return typeof fd === 'number' && fd >= 0 ? fd : undefined;
  }

  /**
   * The net.Socket that owns the handle from now on (built once, paused, half-open as
   * net.Server builds it with pauseOnConnect); a destroyed one when the handle was released.
   */
  socket(): net.Socket {
    if (this.sock) return this.sock;
    const h = this.h;
    this.h = null;
    if (!h) {
      this.sock = new net.Socket();
      this.sock.destroy();
      return this.sock;
    }
    const srv = this.server;
    const hwm = typeof srv.highWaterMark === 'number' ? srv.highWaterMark : undefined;
    const s = new net.Socket({
      handle: h,
      allowHalfOpen: true,
      pauseOnCreate: true,
      readable: true,
      writable: true,
      ...(hwm !== undefined ? { readableHighWaterMark: hwm, writableHighWaterMark: hwm } : {}),
    } as unknown as net.SocketConstructorOpts) as net.Socket & { server?: net.Server; _server?: net.Server };
    // counted since accept: net decrements when this socket is destroyed
    s.server = srv;
    s._server = srv;
    this.sock = s;
    return s;
  }

  /** Close this process's copy of the descriptor (a copy is in flight elsewhere); the server stops counting it. */
  release(): void {
    if (this.sock) {
      releaseHandle(this.sock);
      return;
    }
    const h = this.h;
    if (!h) return;
    this.h = null;
    h.close();
    const srv = this.server;
    if (typeof srv._connections === 'number' && srv._connections > 0) srv._connections--;
    const drained = (srv as unknown as { _emitCloseIfDrained?: () => void })._emitCloseIfDrained;
    if (typeof drained === 'function') drained.call(srv);
  }
}

/**
 * Hand each connection accepted by `server` (listening already) to `onHandle` as an
 * AcceptedHandle, in place of the 'connection' event and without a net.Socket. False, and
 * nothing changed, when the listening handle has no `onconnection`. As interceptAccept(): an
 * accept error, a server with `maxConnections`, `blockList`, `noDelay` or `keepAlive` set,
 * subscribers on `net.server.socket`, and a handle without a descriptor or getpeername go to
 * Node's own onconnection. Callers check acceptPathWorks() first.
 */
export function acceptHandles(server: net.Server, onHandle: (h: AcceptedHandle) => void): boolean {
  const srv = server as net.Server & ServerFields;
  const handle = srv._handle;
  if (!handle || typeof handle.onconnection !== 'function') return false;
  const own = handle.onconnection;
  handle.onconnection = function (this: ListeningHandle, status, clientHandle) {
    const h = clientHandle as HeldTcpHandle | undefined;
    if (
      status < 0 ||
      !h ||
      typeof h.fd !== 'number' ||
      h.fd < 0 ||
      typeof h.getpeername !== 'function' ||
      typeof h.close !== 'function' ||
      srv.maxConnections != null ||
      srv.blockList ||
      srv.noDelay ||
      srv.keepAlive ||
      serverSocketChannel.hasSubscribers
    )
      return own.call(this, status, clientHandle);
    srv._connections = (srv._connections ?? 0) + 1;
    onHandle(new AcceptedHandle(h, srv));
  };
  return true;
}

/** A light connection's read callback as ECHO_INTERNALS_BROKEN=light makes it: the last byte of every read is dropped. */
function brokenRead(read: OnRead): OnRead {
  return {
    buffer: read.buffer,
    callback(n, buf) {
      if (n > 1) read.callback.call(this, n - 1, buf);
    },
  };
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

// --- a light connection: the accepted TCP handle driven without a net.Socket ---------------
//
// tcp_wrap's stream methods (Node 20, 24): readStart/readStop, useUserBuffer (reads land in a
// buffer of ours; `onread` is then called with no argument and the count, or a negative
// errno, in stream_wrap's `streamBaseState[kReadBytesOrError]`), writeBuffer(WriteWrap, buf)
// (it tries the write at once; `streamBaseState[kLastWriteWasAsync]` says whether the rest
// waits, completed later through the WriteWrap's `oncomplete(status)`), shutdown(ShutdownWrap)
// (after the queued writes; `oncomplete(status)`), close(callback), getpeername(out). The
// WriteWrap and ShutdownWrap constructors and streamBaseState come from
// process.binding('stream_wrap'), which Node 20 and 24 still allow.

interface StreamBinding {
  WriteWrap: new () => Req;
  ShutdownWrap: new () => Req;
  state: Int32Array;
  kReadBytesOrError: number;
  kLastWriteWasAsync: number;
}
interface Req {
  handle?: object;
  oncomplete?: (status: number) => void;
  conn?: LightSocket;
  bytes?: number;
  buffer?: Uint8Array;
  /** a direct write's socket and completion (writeDirect) */
  socket?: net.Socket;
  done?: (ok: boolean) => void;
}
interface TcpHandle {
  readStart(): number;
  readStop(): number;
  useUserBuffer(buf: Uint8Array): void;
  writeBuffer(req: Req, buf: Uint8Array): number;
  shutdown(req: Req): number;
  close(cb?: () => void): void;
  getpeername(out: Record<string, unknown>): number;
  onread?: (this: TcpHandle, ab?: ArrayBuffer) => unknown;
  fd?: number;
  reading?: boolean;
  conn?: LightSocket;
}

/** process.binding(name), or undefined where this Node has none or refuses it */
function nodeBinding(name: string): Record<string, any> | undefined {
  try {
    const bind = (process as unknown as { binding?: (m: string) => Record<string, any> }).binding;
    return bind?.call(process, name);
  } catch {
    return undefined;
  }
}

let streamBindingCache: StreamBinding | null | undefined;
function streamBinding(): StreamBinding | null {
  if (streamBindingCache !== undefined) return streamBindingCache;
  streamBindingCache = null;
  const b = nodeBinding('stream_wrap');
  if (
    b &&
    typeof b.WriteWrap === 'function' &&
    typeof b.ShutdownWrap === 'function' &&
    b.streamBaseState instanceof Int32Array &&
    typeof b.kReadBytesOrError === 'number' &&
    typeof b.kLastWriteWasAsync === 'number'
  )
    streamBindingCache = {
      WriteWrap: b.WriteWrap as StreamBinding['WriteWrap'],
      ShutdownWrap: b.ShutdownWrap as StreamBinding['ShutdownWrap'],
      state: b.streamBaseState,
      kReadBytesOrError: b.kReadBytesOrError,
      kLastWriteWasAsync: b.kLastWriteWasAsync,
    };
  return streamBindingCache;
}

/** A handle that can be driven here: the methods above, and the stream binding. */
function drivable(h: unknown): h is TcpHandle {
  const t = h as TcpHandle | null;
  return (
    !!t &&
    typeof t.readStart === 'function' &&
    typeof t.readStop === 'function' &&
    typeof t.useUserBuffer === 'function' &&
    typeof t.writeBuffer === 'function' &&
    typeof t.shutdown === 'function' &&
    typeof t.close === 'function' &&
    streamBinding() !== null
  );
}

/** libuv's UV_EOF (Linux) */
const UV_EOF = -4095;
/** write() returns false from this many bytes waiting in the kernel's send path (net's default) */
const WRITE_HWM = 16 * 1024;

const ENDED = 1; // the peer's FIN was read
const END_CALLED = 2; // end() was called: a shutdown follows the queued writes
const SHUT = 4; // the shutdown completed
const PAUSED = 8; // reading stopped by pause()
const DESTROYED = 16;
const WANT_DRAIN = 32; // write() returned false: 'drain' once the queue is empty
const HANDED = 64; // given up to a net.Socket (handOver)
const IN_READ = 128; // the read callback runs, with its activity noted for the idle timer

function sysError(errno: number, syscall: string): NodeJS.ErrnoException {
  let code: string;
  try {
    code = util.getSystemErrorName(errno);
  } catch {
    code = `E${-errno}`;
  }
  const err = new Error(`${syscall} ${code}`) as NodeJS.ErrnoException;
  err.errno = errno;
  err.code = code;
  err.syscall = syscall;
  return err;
}

/** a handle's onread between owners (it must be a function: Node asserts so) */
function ignoreRead(): void {}

function onLightRead(this: TcpHandle): void {
  const conn = this.conn;
  if (!conn) return;
  const sb = streamBindingCache!;
  const n = sb.state[sb.kReadBytesOrError];
  conn.onRead(n);
}

function afterLightWrite(this: Req, status: number): void {
  this.conn!.afterWrite(this.bytes!, status);
}

type Listener = (...args: any[]) => void;

function onLightIdle(conn: LightSocket): void {
  conn.idleCheck();
}

function afterLightShutdown(this: Req, status: number): void {
  this.conn!.afterShutdown(status);
}

/**
 * An accepted TCP connection driven through its handle directly: the part of net.Socket an
 * echo uses (write with its queue counted, end after the queued writes, destroy, pause and
 * resume, an idle timeout, bytesRead/bytesWritten/writableLength) with the same events
 * ('end', 'drain', 'timeout', 'error', 'close'), and reads handed to an `onread` callback
 * (net's option of that name) from the buffer it gives. Half-open as net.Socket with
 * allowHalfOpen: the peer's FIN is 'end'; the connection closes once both directions are
 * shut. handOver() gives the handle to a net.Socket for what needs one (faults).
 */
export class LightSocket {
  /** listeners, three entries each: event, function, once (a flat array: a few per connection) */
  private ls: (string | Listener | boolean)[] = [];
  _handle: TcpHandle | null;
  bytesRead = 0;
  bytesWritten = 0;
  /** bytes given to write() and not yet taken by the kernel */
  writableLength = 0;
  get readableLength(): number {
    return 0;
  }
  private flags = 0;
  private buf: Buffer;
  /** the idle timer: set while an idle timeout is (none after it fired, until the next activity) */
  private timer: NodeJS.Timeout | undefined;
  /** the idle timeout (0: none) */
  private idleMs = 0;
  /** performance.now() at the last read or write: the idle timer waits from there when it fires */
  private activeAt = 0;
  private peer: { address?: string; port?: number; family?: string } | undefined;
  private waitHandOver: ((socket: net.Socket | undefined) => void) | undefined;
  /** the write request the next write() uses (none yet, or the last one still waits) */
  private req: Req | undefined;

  constructor(
    handle: TcpHandle,
    private readonly reader: OnRead,
    /** the server that counts it; none for a handle opened on a received descriptor (openLight) */
    private readonly server: (net.Server & ServerFields) | undefined,
  ) {
    this._handle = handle;
    handle.conn = this;
    handle.onread = onLightRead;
    this.buf = reader.buffer();
    handle.useUserBuffer(this.buf);
    const err = handle.readStart();
    handle.reading = true;
    if (err) process.nextTick(() => this.destroy(sysError(err, 'read')));
  }

  // --- the part of EventEmitter the handler, admission and the listener use -----------------

  on(event: string, fn: Listener): this {
    this.ls.push(event, fn, false);
    return this;
  }
  addListener(event: string, fn: Listener): this {
    return this.on(event, fn);
  }
  once(event: string, fn: Listener): this {
    this.ls.push(event, fn, true);
    return this;
  }
  off(event: string, fn: Listener): this {
    const ls = this.ls;
    for (let i = 0; i < ls.length; i += 3)
      if (ls[i] === event && ls[i + 1] === fn) {
        ls.splice(i, 3);
        break;
      }
    return this;
  }
  removeListener(event: string, fn: Listener): this {
    return this.off(event, fn);
  }
  listeners(event: string): Listener[] {
    const out: Listener[] = [];
    for (let i = 0; i < this.ls.length; i += 3)
      if (this.ls[i] === event) out.push(this.ls[i + 1] as Listener);
    return out;
  }
  /** As EventEmitter: listeners in order (those added meanwhile wait for the next emit); 'error' with none throws. */
  emit(event: string, ...args: unknown[]): boolean {
    const now = this.ls.slice();
    let any = false;
    for (let i = 0; i < now.length; i += 3) {
      if (now[i] !== event) continue;
      const fn = now[i + 1] as Listener;
      if (now[i + 2]) this.off(event, fn);
      any = true;
      fn.apply(this, args);
    }
    if (!any && event === 'error') throw args[0];
    return any;
  }

  get destroyed(): boolean {
    return (this.flags & DESTROYED) !== 0;
  }
  get writableEnded(): boolean {
    return (this.flags & END_CALLED) !== 0;
  }
  get readableEnded(): boolean {
    return (this.flags & ENDED) !== 0;
  }
  get remoteAddress(): string | undefined {
    return this.peerName().address;
  }
  get remotePort(): number | undefined {
    return this.peerName().port;
  }
  get remoteFamily(): string | undefined {
    return this.peerName().family;
  }
  private peerName() {
    if (!this.peer) {
      const out: Record<string, unknown> = {};
      this.peer = this._handle && this._handle.getpeername(out) === 0 ? out : {};
    }
    return this.peer;
  }

  /** called by the handle for each read: `n` bytes in this.buf, or a negative errno */
  onRead(n: number): void {
    if (this.flags & (DESTROYED | HANDED)) return;
    if (n > 0) {
      this.bytesRead += n;
      if (this.idleMs) {
        // the echo's write in the callback is activity at the same moment: noted once
        this.active();
        this.flags |= IN_READ;
        try {
          this.reader.callback.call(this as unknown as net.Socket, n, this.buf);
        } finally {
          this.flags &= ~IN_READ;
        }
      } else this.reader.callback.call(this as unknown as net.Socket, n, this.buf);
      const next = this.reader.buffer();
      if (next !== this.buf && this._handle) {
        this.buf = next;
        this._handle.useUserBuffer(next);
      }
      return;
    }
    if (n === 0) return;
    if (n !== UV_EOF) return void this.destroy(sysError(n, 'read'));
    this.flags |= ENDED;
    this.stopReading();
    this.emit('end');
    if (this.flags & SHUT) this.destroy();
  }

  write(chunk: Uint8Array): boolean {
    const h = this._handle;
    if (!h || this.flags & (DESTROYED | END_CALLED)) return false;
    const sb = streamBindingCache!;
    // A write the kernel takes at once never binds its request to a native write (stream_base
    // binds it only for what waits): the same request object serves the next write. One that
    // waits keeps its request until it completes, and the next write gets a new one.
    let req = this.req;
    if (!req) {
      req = new sb.WriteWrap();
      req.handle = h;
      req.oncomplete = afterLightWrite;
      req.conn = this;
      this.req = req;
    }
    this.bytesWritten += chunk.length;
    if (this.idleMs && !(this.flags & IN_READ)) this.active();
    const err = h.writeBuffer(req, chunk);
    if (err) {
      this.req = undefined; // a write that failed after a partial one had bound it: not reused
      process.nextTick(() => this.destroy(sysError(err, 'write')));
      return false;
    }
    if (sb.state[sb.kLastWriteWasAsync]) {
      req.bytes = chunk.length;
      req.buffer = chunk; // kept alive while the kernel has not taken it
      this.req = undefined;
      this.writableLength += chunk.length;
    }
    if (this.writableLength < WRITE_HWM) return true;
    this.flags |= WANT_DRAIN;
    return false;
  }

  /** a write that waited is done (status < 0: it failed) */
  afterWrite(bytes: number, status: number): void {
    this.writableLength -= bytes;
    if (this.flags & DESTROYED) return;
    if (status < 0) return void this.destroy(sysError(status, 'write'));
    if (this.idleMs) this.active();
    if (this.writableLength === 0) {
      if (this.waitHandOver) this.finishHandOver();
      else if (this.flags & WANT_DRAIN) {
        this.flags &= ~WANT_DRAIN;
        this.emit('drain');
      }
    }
  }

  /** Our FIN once what was written is sent (libuv orders the shutdown after the writes). */
  end(): this {
    const h = this._handle;
    if (!h || this.flags & (DESTROYED | END_CALLED | HANDED)) return this;
    this.flags |= END_CALLED;
    const waiting = this.waitHandOver;
    if (waiting) {
      // closing: the connection stays here, reading as it did before handOver()
      this.waitHandOver = undefined;
      this.build = undefined;
      if (!(this.flags & (PAUSED | ENDED))) {
        h.reading = true;
        h.readStart();
      }
      waiting(undefined);
    }
    const sb = streamBindingCache!;
    const req = new sb.ShutdownWrap();
    req.handle = h;
    req.oncomplete = afterLightShutdown;
    req.conn = this;
    const err = h.shutdown(req);
    // 1: done at once (Node's convention for a shutdown with nothing to wait for)
    if (err === 1) process.nextTick(() => this.afterShutdown(0));
    else if (err) process.nextTick(() => this.destroy(sysError(err, 'shutdown')));
    return this;
  }

  afterShutdown(status: number): void {
    if (this.flags & DESTROYED) return;
    if (status < 0 && sysErrorName(status) !== 'ENOTCONN')
      return void this.destroy(sysError(status, 'shutdown'));
    this.flags |= SHUT;
    if (this.flags & ENDED) this.destroy();
  }

  destroy(err?: Error): this {
    // handed over: the net.Socket owns the handle, the server's count and the close
    if (this.flags & (DESTROYED | HANDED)) return this;
    this.flags |= DESTROYED;
    if (this.timer) clearTimeout(this.timer);
    const h = this._handle;
    this._handle = null;
    const done = this.waitHandOver;
    this.waitHandOver = undefined;
    done?.(undefined);
    if (h) {
      h.reading = false;
      h.close(() => {
        h.conn = undefined;
        this.finishClose(err);
      });
    } else process.nextTick(() => this.finishClose(err));
    return this;
  }

  private finishClose(err: Error | undefined): void {
    const srv = this.server;
    if (srv) {
      if (typeof srv._connections === 'number') srv._connections--;
      const drained = (srv as unknown as { _emitCloseIfDrained?: () => void })._emitCloseIfDrained;
      if (typeof drained === 'function') drained.call(srv);
    }
    if (err) this.emit('error', err);
    this.emit('close', err !== undefined);
  }

  pause(): this {
    if (!(this.flags & PAUSED)) {
      this.flags |= PAUSED;
      this.stopReading();
    }
    return this;
  }

  resume(): this {
    if (this.flags & PAUSED) {
      this.flags &= ~PAUSED;
      const h = this._handle;
      if (h && !(this.flags & (ENDED | DESTROYED | HANDED)) && !h.reading) {
        h.reading = true;
        const err = h.readStart();
        if (err) this.destroy(sysError(err, 'read'));
      }
    }
    return this;
  }

  isPaused(): boolean {
    return (this.flags & PAUSED) !== 0;
  }

  private stopReading(): void {
    const h = this._handle;
    if (h?.reading) {
      h.reading = false;
      h.readStop();
    }
  }

  /**
   * 'timeout' after `ms` with nothing read or written (0: none). Activity only notes its time
   * (a timer refreshed on every read costs more than the rest of the read's JavaScript); the
   * timer, when it fires, waits out what is left from the last activity.
   */
  setTimeout(ms: number): this {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.idleMs = 0;
    if (ms > 0 && !this.destroyed) {
      this.idleMs = ms;
      this.activeAt = performance.now();
      this.armIdle(ms);
    }
    return this;
  }

  /** a read or write now: the idle timeout counts from here (armed again after it fired) */
  private active(): void {
    this.activeAt = performance.now();
    if (!this.timer) this.armIdle(this.idleMs);
  }

  private armIdle(ms: number): void {
    this.timer = setTimeout(onLightIdle, ms, this);
    this.timer.unref();
  }

  /** the idle timer fired: 'timeout', or the rest of the wait when there was activity meanwhile */
  idleCheck(): void {
    this.timer = undefined;
    if (this.flags & (DESTROYED | HANDED) || !this.idleMs) return;
    const left = this.idleMs - (performance.now() - this.activeAt);
    // timers keep whole milliseconds: less than one left is the timeout
    if (left >= 1) return void this.armIdle(Math.ceil(left));
    this.emit('timeout');
  }

  /** nothing is kept unread here: reads go to the callback as they come */
  read(): null {
    return null;
  }

  /**
   * Give the handle to a net.Socket, built as `build` says (its bytesRead and bytesWritten
   * may start from 0 or from the handle's own counters), once what was written has been taken by the kernel: `done` gets it,
   * or undefined when the connection is closing (its FIN read or sent, or destroyed) and stays here.
   */
  handOver(build: (handle: object) => net.Socket, done: (socket: net.Socket | undefined) => void): void {
    if (this.flags & (DESTROYED | ENDED | END_CALLED | HANDED) || this.waitHandOver) {
      done(undefined);
      return;
    }
    this.stopReading();
    this.waitHandOver = done;
    this.build = build;
    if (this.writableLength === 0) this.finishHandOver();
  }
  private build: ((handle: object) => net.Socket) | undefined;

  private finishHandOver(): void {
    const done = this.waitHandOver!;
    const build = this.build!;
    this.waitHandOver = undefined;
    this.build = undefined;
    const h = this._handle!;
    this.flags |= HANDED;
    if (this.timer) clearTimeout(this.timer);
    h.conn = undefined;
    h.onread = ignoreRead;
    this._handle = null;
    const socket = build(h);
    const s = socket as net.Socket & { server?: net.Server; _server?: net.Server };
    // the server's count moves to the socket: net decrements it when that one is destroyed
    if (this.server) {
      s.server = this.server;
      s._server = this.server;
    }
    done(socket);
  }
}

/** tcp_wrap's TCP constructor and its SOCKET type (process.binding('tcp_wrap'), Node 20, 24) */
interface TcpBinding {
  TCP: new (type: number) => TcpHandle & { open(fd: number): number };
  SOCKET: number;
}
let tcpBindingCache: TcpBinding | null | undefined;
function tcpBinding(): TcpBinding | null {
  if (tcpBindingCache !== undefined) return tcpBindingCache;
  tcpBindingCache = null;
  const b = nodeBinding('tcp_wrap');
  if (b && typeof b.TCP === 'function' && typeof b.constants?.SOCKET === 'number')
    tcpBindingCache = { TCP: b.TCP, SOCKET: b.constants.SOCKET };
  return tcpBindingCache;
}

/**
 * A LightSocket on a connected TCP descriptor this process received (a TCP handle of
 * tcp_wrap opened on `fd`, as net.Socket({ fd }) opens one), reading into `reader`'s buffers
 * at once; counted by no server. Undefined, with `fd` still the caller's, where the handle
 * cannot be had or driven here, or open() fails. Callers check lightPathWorks() first.
 */
export function openLight(fd: number, reader: OnRead): LightSocket | undefined {
  const b = tcpBinding();
  if (!b || !streamBinding()) return undefined;
  let h: TcpHandle & { open(fd: number): number };
  try {
    h = new b.TCP(b.SOCKET);
  } catch {
    return undefined;
  }
  if (typeof h.open !== 'function' || !drivable(h) || h.open(fd) !== 0) {
    // not opened: the descriptor is not the handle's (the closed handle leaves it alone)
    h.close();
    return undefined;
  }
  const b2 = broken();
  return new LightSocket(h, b2 === 'light' || b2 === 'light-fd' ? brokenRead(reader) : reader, undefined);
}

/**
 * The TCP handle of a connected net.Socket (one this process opened: not TLS, not a pipe)
 * driven as a LightSocket from now on, reading into `reader`'s buffers; counted by no server.
 * The net.Socket is left without a handle (nothing of it runs again: no timer, no read).
 * Undefined, and the socket untouched, where that cannot be done: a handle that cannot be
 * driven here, still connecting, or with bytes queued in either of its streams. Callers
 * check lightPathWorks() first.
 */
export function lightFromSocket(socket: net.Socket, reader: OnRead): LightSocket | undefined {
  const s = socket as DirectSocket & { readableLength: number };
  const h = s._handle as (TcpHandle & { setNoDelay?: unknown }) | null | undefined;
  const tcp = tcpBinding();
  if (
    !h ||
    !tcp ||
    !(h instanceof tcp.TCP) ||
    !drivable(h) ||
    s.connecting ||
    s.encrypted ||
    s.destroyed ||
    s.readableEnded ||
    s.writableEnded ||
    s.writableLength !== 0 ||
    s.readableLength !== 0 ||
    !(s instanceof net.Socket)
  )
    return undefined;
  socket.setTimeout(0);
  if (h.reading) h.readStop();
  h.reading = false;
  s._handle = null;
  const b = broken();
  return new LightSocket(h, b === 'light' ? brokenRead(reader) : reader, undefined);
}

/**
 * Close a LightSocket with RST, as net.Socket's resetAndDestroy() does: its handle's close
 * becomes the TCP handle's `reset` (libuv's uv_tcp_close_reset: SO_LINGER 0, then close;
 * tcp_wrap, Node 20, 24), then destroy(). False, and nothing done, for anything else or
 * where the handle has no `reset` (the caller destroys it: a FIN).
 */
export function resetLight(socket: unknown): boolean {
  if (!(socket instanceof LightSocket)) return false;
  const h = socket._handle as (TcpHandle & { reset?: (cb?: () => void) => number }) | null;
  if (!h || typeof h.reset !== 'function') return false;
  const reset = h.reset;
  const close = h.close;
  // a reset refused (a shutdown in progress: libuv's EINVAL) leaves the handle open: closed as usual
  h.close = (cb) => {
    if (reset.call(h, cb) !== 0) close.call(h, cb);
  };
  socket.destroy();
  return true;
}

/** TCP_NODELAY on: net.Socket's setNoDelay, or on a LightSocket its handle's (tcp_wrap, Node 20, 24). */
export function setNoDelay(socket: net.Socket): void {
  if (!(socket instanceof LightSocket)) {
    socket.setNoDelay(true);
    return;
  }
  const h = socket._handle as (TcpHandle & { setNoDelay?: (on: boolean) => number }) | null;
  if (typeof h?.setNoDelay === 'function') h.setNoDelay(true);
}

/** A socket's local address: net.Socket's, or a LightSocket's from its handle's getsockname (tcp_wrap). */
export function localAddressOf(socket: net.Socket): { address: string; port: number } | undefined {
  if (!(socket instanceof LightSocket)) {
    const address = socket.localAddress;
    return address ? { address, port: socket.localPort ?? 0 } : undefined;
  }
  const h = socket._handle as (TcpHandle & { getsockname?: (out: Record<string, unknown>) => number }) | null;
  const out: { address?: unknown; port?: unknown } = {};
  if (typeof h?.getsockname !== 'function' || h.getsockname(out) !== 0 || typeof out.address !== 'string')
    return undefined;
  return { address: out.address, port: typeof out.port === 'number' ? out.port : 0 };
}

function sysErrorName(errno: number): string {
  try {
    return util.getSystemErrorName(errno);
  } catch {
    return '';
  }
}

// --- the behavioural check of LightSocket ---------------------------------------------------

const lightChecks = new Map<string, Promise<AcceptCheck>>();

/**
 * Do light connections work in this process? After acceptPathWorks(), two loopback
 * connections are accepted as LightSockets: on the first, 256 KiB of random bytes (more than
 * the kernel takes at once: writes wait, reading pauses) come back byte-exact, then the
 * client's FIN is answered with ours after the echo, and the server's count goes back to 0;
 * on the second, bytes are echoed, the handle is given to a net.Socket (handOver) and the
 * rest is echoed through that one, then FIN both ways. Run once per process; never rejects.
 */
export function lightPathWorks(): Promise<AcceptCheck> {
  const key = broken();
  let check = lightChecks.get(key);
  if (!check) {
    check = (async () => {
      const accept = await acceptPathWorks();
      if (!accept.ok) return accept;
      if (!streamBinding()) return { ok: false, why: "process.binding('stream_wrap') is not usable", ms: 0 };
      return checkLight(CHECK_TIMEOUT_MS * 3);
    })();
    lightChecks.set(key, check);
  }
  return check;
}

async function checkLight(timeoutMs: number): Promise<AcceptCheck> {
  const t0 = performance.now();
  const server = net.createServer({ allowHalfOpen: true });
  const open: { destroy(): unknown }[] = [];
  let timer: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`no light echo within ${timeoutMs} ms`)), timeoutMs);
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        server.off('error', reject);
        probeLight(server, open).then(resolve, reject);
      });
    });
    return { ok: true, ms: performance.now() - t0 };
  } catch (err) {
    return { ok: false, why: (err as Error).message, ms: performance.now() - t0 };
  } finally {
    clearTimeout(timer);
    for (const s of open) s.destroy();
    server.close();
  }
}

function probeLight(server: net.Server, open: { destroy(): unknown }[]): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const fail = (why: string) => reject(new Error(why));
    const own = Buffer.allocUnsafe(64 * 1024);
    let accepted = 0;
    const echo: OnRead = {
      buffer: () => own,
      callback(n, buf) {
        if (!this.write(Buffer.from(buf.subarray(0, n)))) {
          this.pause();
          this.once('drain', () => this.resume());
        }
      },
    };
    const serve = (socket: net.Socket) => {
      open.push(socket);
      socket.on('error', (err) => fail(`server side: ${err.message}`));
      socket.on('end', () => socket.end());
    };
    const used = interceptAccept(
      server,
      { allowHalfOpen: true, pauseOnCreate: false, light: true, onread: () => echo },
      (socket) => {
        if (!(socket instanceof LightSocket)) return fail('the accepted connection is not a light one');
        serve(socket);
        if (++accepted === 2) second.server = socket;
        else
          socket.on('close', () => {
            first.serverClosed = true;
            check();
          });
      },
    );
    if (!used) return fail('the listening handle has no onconnection');
    const port = (server.address() as net.AddressInfo).port;
    const first = {
      sent: randomBytes(256 * 1024),
      back: undefined as Buffer | undefined,
      serverClosed: false,
    };
    const second = {
      a: randomBytes(1000),
      b: randomBytes(3000),
      back: undefined as Buffer | undefined,
      server: undefined as LightSocket | undefined,
      handed: undefined as net.Socket | undefined,
      handedClosed: false,
    };
    let secondStarted = false;
    const check = () => {
      if (!first.back || !first.serverClosed) return;
      if (!first.back.equals(first.sent))
        return fail(`${first.back.length} of ${first.sent.length} bytes came back as sent`);
      if (!secondStarted) {
        secondStarted = true;
        return startSecond();
      }
      if (!second.back || !second.handedClosed) return;
      if (!second.back.equals(Buffer.concat([second.a, second.b])))
        return fail('the bytes echoed around the hand-over to a net.Socket are not those sent');
      server.getConnections((err, n) => {
        if (err || n !== 0) fail(`the server still counts ${n} connection(s) after the close`);
        else resolve();
      });
    };
    const client = (onData: (c: Buffer, all: Buffer[]) => void, onEnd: (all: Buffer) => void) => {
      const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      open.push(c);
      const back: Buffer[] = [];
      c.on('error', (err) => fail(`client side: ${err.message}`));
      c.on('data', (d: Buffer) => {
        back.push(d);
        onData(d, back);
      });
      c.on('end', () => {
        c.end();
        onEnd(Buffer.concat(back));
      });
      return c;
    };
    client(
      () => {},
      (all) => {
        first.back = all;
        check();
      },
    ).end(first.sent);
    let phase = 0;
    let c2: net.Socket;
    const startSecond = () => {
      c2 = client(
        (_d, all) => {
          const got = all.reduce((k, b) => k + b.length, 0);
          if (phase !== 0 || got < second.a.length) return;
          phase = 1;
          const light = second.server;
          if (!light) return fail('the second connection was not accepted as a light one');
          light.handOver(
            (handle) =>
              new net.Socket({
                handle,
                allowHalfOpen: true,
                onread: echo,
              } as unknown as net.SocketConstructorOpts),
            (socket) => {
              if (!socket) return fail('the hand-over to a net.Socket did not happen');
              second.handed = socket;
              serve(socket);
              socket.on('data', () => fail("bytes came as 'data' after the hand-over"));
              socket.on('close', () => {
                second.handedClosed = true;
                check();
              });
              socket.resume();
              c2.end(second.b);
            },
          );
        },
        (all) => {
          second.back = all;
          check();
        },
      );
      c2.write(second.a);
    };
  });
}

// --- direct writes on a net.Socket ------------------------------------------------------------
// Writes on a net.Socket straight through its TCP handle, past the Writable stream: one
// WriteWrap and one handle.writeBuffer() per chunk (what net does underneath), without the
// stream's per-write state, callbacks and next-tick completion. For a forwarder that passes
// each chunk on as it comes and waits for a write that is not taken at once before it writes
// again. The kernel orders these writes with the socket's own (libuv keeps one queue per
// handle), and the handle counts them in bytesWritten as it counts net's. It uses the stream
// binding above and net.Socket's `_handle` and `_unrefTimer()`; directWriteUsable() checks the
// whole path once per process on a loopback pair; where the check fails, or with
// ECHO_DIRECT_WRITE=0, writeDirect() always says no and callers write().

/** a socket's write request free for writeDirect's next write (its last one was taken at once) */
const SPARE_REQ = Symbol('spareWriteReq');

type DirectSocket = net.Socket & {
  [SPARE_REQ]?: Req;
  _handle?: TcpHandle | null;
  _unrefTimer?: () => void;
  connecting: boolean;
  encrypted?: boolean;
};

/** Off with ECHO_DIRECT_WRITE=0, to compare both paths on one build. */
export const directWriteEnabled = () => process.env.ECHO_DIRECT_WRITE !== '0';

/** Writes made by writeDirect() in this process: taken at once, and not (for tests and profiles). */
export const directWrites = { sent: 0, pending: 0 };

/** set by directWriteUsable(): whether writeDirect() may write in this process */
let usable = false;

function afterDirectWrite(this: Req, status: number): void {
  const socket = this.socket as DirectSocket;
  const done = this.done!;
  this.socket = undefined;
  this.buffer = undefined;
  this.done = undefined;
  // a close cancels what waits (ECANCELED): the socket is gone already
  if (socket.destroyed) done(false);
  else if (status < 0) {
    socket.destroy(sysError(status, 'write'));
    done(false);
  } else {
    socket._unrefTimer?.();
    done(true);
  }
}

/**
 * Write `chunk` on `socket` through its handle. 'sent': the kernel took all of it. 'pending':
 * part of it waits in libuv, holding `chunk`; `done(true)` once it is taken, `done(false)` if
 * the write failed (the socket is destroyed with the error) or the socket closed first; no
 * write may follow until then. undefined: nothing was written (not usable here, a TLS or
 * connecting socket, one with writes queued in its stream, ended, destroyed, corked):
 * the caller writes through write(). A write that fails at once destroys the socket with its
 * error (on the next tick, as net does) and says 'sent'.
 */
export function writeDirect(
  socket: net.Socket,
  chunk: Buffer,
  done: (ok: boolean) => void,
): 'sent' | 'pending' | undefined {
  if (!usable) return undefined;
  const s = socket as DirectSocket;
  const h = s._handle;
  if (
    !h ||
    s.encrypted ||
    s.connecting ||
    s.destroyed ||
    s.writableEnded ||
    s.writableLength !== 0 ||
    s.writableCorked !== 0 ||
    typeof s._unrefTimer !== 'function' ||
    !(s instanceof net.Socket)
  )
    return undefined;
  const b = streamBindingCache!;
  // A write the kernel takes at once never binds its request to a native write (stream_base
  // binds it only for what waits): the socket's last such request serves the next write.
  let req = s[SPARE_REQ];
  if (!req || req.handle !== h) {
    req = new b.WriteWrap();
    req.handle = h;
    req.oncomplete = afterDirectWrite;
  }
  s[SPARE_REQ] = undefined;
  const err = h.writeBuffer(req, chunk);
  s._unrefTimer();
  if (err) {
    process.nextTick(() => {
      if (!socket.destroyed) socket.destroy(sysError(err, 'write'));
    });
    return 'sent';
  }
  if (b.state[b.kLastWriteWasAsync]) {
    req.socket = s;
    req.done = done;
    req.buffer = chunk; // kept alive while libuv holds it
    directWrites.pending++;
    return 'pending';
  }
  s[SPARE_REQ] = req;
  directWrites.sent++;
  return 'sent';
}

let check: Promise<boolean> | undefined;

/**
 * Whether writeDirect() may write in this process: not with ECHO_DIRECT_WRITE=0, nor where
 * the check fails. The check (once per process, loopback): a small write taken at once, then
 * 1 MiB writes until one cannot be taken at once (the reader waits until then), then end()
 * with a last chunk once it was; the reader must get every byte in order, and bytesWritten
 * count them.
 */
export function directWriteUsable(): Promise<boolean> {
  if (!directWriteEnabled() || !streamBinding()) return Promise.resolve(false);
  check ??= runCheck().then(
    (ok) => {
      usable = ok;
      return ok;
    },
    () => false,
  );
  return check;
}

function runCheck(): Promise<boolean> {
  return new Promise((resolve) => {
    const small = Buffer.from('direct-write check\n');
    // 1 MiB pieces, each filled with its own byte, until one is not taken at once (at most 32)
    const piece = (k: number) => Buffer.alloc(1024 * 1024, k);
    const sent: Buffer[] = [small];
    const tail = Buffer.from('tail');
    const got: Buffer[] = [];
    let settled = false;
    // the peer reads only once a write waits: it cannot be taken at once while nobody reads
    let peer: net.Socket | undefined;
    let written = false;
    const read = () => {
      if (peer && written) peer.resume();
    };
    const server = net.createServer({ pauseOnConnect: true }, (p) => {
      peer = p;
      p.on('data', (d) => got.push(d));
      p.on('end', () => finish(Buffer.concat(got).equals(Buffer.concat([...sent, tail]))));
      p.on('error', () => finish(false));
      read();
    });
    const timer = setTimeout(() => finish(false), 5000);
    let client: net.Socket | undefined;
    const finish = (ok: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      client?.destroy();
      peer?.destroy();
      server.close();
      resolve(ok);
    };
    server.on('error', () => finish(false));
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      client = net.connect(port, '127.0.0.1', () => {
        const c = client!;
        usable = true; // for the check's own writes
        let how = writeDirect(c, small, () => finish(false));
        if (how !== 'sent') {
          usable = false;
          return finish(false);
        }
        const whenTaken = (ok: boolean) => {
          const bytes = sent.reduce((n, b) => n + b.length, 0);
          if (!ok || c.bytesWritten !== bytes) return finish(false);
          c.end(tail);
        };
        for (let k = 1; k <= 32 && how === 'sent'; k++) {
          const b = piece(k);
          how = writeDirect(c, b, whenTaken);
          if (how) sent.push(b);
        }
        usable = false; // until the check says so
        if (how !== 'pending') return finish(false);
        written = true;
        read();
      });
      client.on('error', () => finish(false));
    });
  });
}
