// listenTcp(): put a net.Server on an address with its listen-time options.
// Node's own listen() always sets SO_REUSEADDR and (before 22.12) ignores reusePort, so
// when those or a buffer size must be set before bind, the socket is made with libc and
// handed over by fd. Used by echo-server, echo-chat --listen and the lab.

import cluster from 'node:cluster';
import { chmodSync, lstatSync, unlinkSync } from 'node:fs';
import net, { type AddressInfo, type Server } from 'node:net';
import { takeHandle } from './internals.js';
import {
  closeFd,
  hasNativeReusePort,
  loadLibc,
  platformTable,
  SocketOptionError,
  setIntOption,
  sysError,
} from './libc.js';
import { ipv6Bytes } from './parse.js';

export interface ListenOptions {
  host: string;
  port: number;
  /** a Unix-domain socket instead of host and port; `@name` is a Linux abstract name */
  path?: string;
  /** with a path: chmod the socket file to this mode (e.g. 0o660) once bound */
  unixMode?: number;
  /** on `::`, refuse IPv4 clients (IPV6_V6ONLY); by default `::` takes both families */
  ipv6Only?: boolean;
  backlog?: number;
  reuseAddr?: boolean;
  reusePort?: boolean;
  /** cluster: this worker opens its own socket instead of sharing the primary's */
  exclusive?: boolean;
  recvBuffer?: number;
  sendBuffer?: number;
}

export const DEFAULT_BACKLOG = 511; // Node's default, capped by net.core.somaxconn

/** True when Node's own listen() cannot give these options and libc must make the socket. */
export function needsRawListen(o: ListenOptions, nativeReusePort = hasNativeReusePort()): boolean {
  return (
    o.reuseAddr === false ||
    (o.reusePort === true && !nativeReusePort) ||
    o.recvBuffer !== undefined ||
    o.sendBuffer !== undefined
  );
}

/** `@name` → the kernel's abstract name (a leading NUL byte); a path as it is. */
export function unixPathOf(path: string): string {
  return path.startsWith('@') ? `\0${path.slice(1)}` : path;
}

/** How a Unix socket address reads: `@name` for abstract ones. */
export function displayUnixPath(path: string): string {
  return path.startsWith('\0') ? `@${path.slice(1)}` : path;
}

/** What listenTcp() found at the path before it could bind. */
export interface UnixListenNotes {
  /** a socket file nobody listened on was removed first */
  removedStale?: string;
}

/** AF_UNIX on Linux and macOS */
const AF_UNIX = 1;
const SOCK_CLOEXEC = 0o2000000; // Linux
const SOCK_NONBLOCK = 0o4000; // Linux
const SUN_PATH = 108; // Linux sizeof(sun_path)

/**
 * A sockaddr_un for `path` (`\0name`: abstract) and its exact length. An abstract name is
 * the bytes given and no more: libuv passes the whole 108-byte sun_path, so another program
 * binding or connecting to `@name` would not meet it (ss shows `@name@@@…`).
 */
export function sockaddrUn(path: string, syscall = 'listen'): { addr: Buffer; len: number } {
  const name = Buffer.from(path);
  const abstract = path.startsWith('\0');
  if (name.length > (abstract ? SUN_PATH : SUN_PATH - 1) || name.length === 0) {
    throw Object.assign(sysError(syscall, 36 /* ENAMETOOLONG */, displayUnixPath(path)), {
      address: displayUnixPath(path),
    });
  }
  const addr = Buffer.alloc(2 + SUN_PATH);
  addr.writeUInt16LE(AF_UNIX, 0);
  name.copy(addr, 2);
  return { addr, len: 2 + name.length + (abstract ? 0 : 1) };
}

/**
 * A Unix stream socket connected to `path` (Linux; for `@name`: the exact name), close-on-exec
 * and non-blocking; the caller owns the fd. A listener whose backlog is full gives EAGAIN.
 */
export function rawUnixConnectFd(path: string): number {
  const c = loadLibc();
  const { addr, len } = sockaddrUn(path, 'connect');
  const fd = c.socket(AF_UNIX, platformTable().SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) throw sysError('socket', c.errno());
  if (c.connect(fd, addr, len) !== 0) {
    const errno = c.errno();
    c.close(fd);
    throw Object.assign(sysError('connect', errno, displayUnixPath(path)), {
      address: displayUnixPath(path),
    });
  }
  return fd;
}

/** socket() + bind() + listen() of a Unix stream socket (Linux), close-on-exec; the caller owns the fd. */
function rawUnixListenFd(path: string, backlog: number): number {
  const c = loadLibc();
  const { addr, len } = sockaddrUn(path);
  const fd = c.socket(AF_UNIX, platformTable().SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw sysError('socket', c.errno());
  try {
    if (c.bind(fd, addr, len) !== 0)
      throw Object.assign(sysError('listen', c.errno(), displayUnixPath(path)), {
        address: displayUnixPath(path),
      });
    if (c.listen(fd, backlog) !== 0) throw sysError('listen', c.errno(), displayUnixPath(path));
  } catch (err) {
    c.close(fd);
    throw err;
  }
  return fd;
}

/**
 * On close, remove the socket file only if it is still the one we bound (same device and
 * inode): a file or another server's socket put at the path meanwhile stays. The check runs
 * before Node closes the listening fd, so no new server can have bound the path in between.
 */
function removeOnClose(server: Server, path: string): void {
  let ours: { dev: number; ino: number } | undefined;
  try {
    const st = lstatSync(path);
    ours = { dev: st.dev, ino: st.ino };
  } catch {
    return; // already gone: nothing of ours to remove
  }
  const close = server.close;
  server.close = function (this: Server, ...args: Parameters<Server['close']>) {
    if (ours) {
      try {
        const st = lstatSync(path);
        if (st.isSocket() && st.dev === ours.dev && st.ino === ours.ino) unlinkSync(path);
      } catch {}
      ours = undefined;
    }
    return close.apply(this, args);
  } as Server['close'];
}

/**
 * Listen on a Unix socket path. A socket file left by a server that died (nobody accepts on
 * it: connect gives ECONNREFUSED) is removed and the bind retried once; a live one (connect
 * succeeds) or a file that is not a socket is left alone and reported as EADDRINUSE.
 * On Linux the socket is made with libc: an abstract name is bound with its exact length,
 * and libuv (which unlinks whatever is at the path when it closes a pipe it bound) does not
 * know the path, so removeOnClose() decides.
 */
async function listenUnix(server: Server, o: ListenOptions, notes: UnixListenNotes): Promise<AddressInfo> {
  const path = unixPathOf(o.path!);
  const backlog = o.backlog ?? DEFAULT_BACKLOG;
  const raw = process.platform === 'linux' && !cluster.isWorker;
  const once = () =>
    listenOnce(server, () => {
      const fd = raw ? rawUnixListenFd(path, backlog) : undefined;
      // backlog must be positional: listen({ fd, backlog }) re-listens with 511
      if (fd !== undefined) server.listen({ fd }, backlog);
      else server.listen({ path, backlog });
      return fd;
    });
  try {
    await once();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || path.startsWith('\0')) throw err;
    const verdict = await staleCheck(path);
    if (verdict !== 'stale') throw unixInUseError(err as NodeJS.ErrnoException, o.path!, verdict);
    unlinkSync(path);
    notes.removedStale = path;
    await once();
  }
  if (raw && !path.startsWith('\0')) removeOnClose(server, path);
  if (o.unixMode !== undefined && !path.startsWith('\0')) chmodSync(path, o.unixMode);
  return { address: displayUnixPath(path), family: 'unix', port: 0 };
}

/** Is the socket file at `path` in use ('live'), left over ('stale'), or not a socket at all? */
function staleCheck(path: string): Promise<'stale' | 'live' | 'not-a-socket'> {
  try {
    if (!lstatSync(path).isSocket()) return Promise.resolve('not-a-socket');
  } catch {
    return Promise.resolve('stale'); // gone meanwhile: binding again will tell
  }
  return new Promise((resolve) => {
    const probe = net.connect({ path });
    probe.once('connect', () => {
      probe.destroy();
      resolve('live');
    });
    probe.once('error', (e: NodeJS.ErrnoException) =>
      resolve(e.code === 'ECONNREFUSED' || e.code === 'ENOENT' ? 'stale' : 'live'),
    );
  });
}

function unixInUseError(err: NodeJS.ErrnoException, path: string, why: 'live' | 'not-a-socket'): Error {
  const e = new Error(
    why === 'live'
      ? `listen EADDRINUSE ${path} — another process is listening on this Unix socket (a connect to it succeeded), so it was left alone. Stop that process (ss -xlp | grep ${path}) or choose another path.`
      : `listen EADDRINUSE ${path} — the path exists and is not a socket; it was left alone. Remove it yourself or choose another path.`,
  );
  return Object.assign(e, { code: 'EADDRINUSE_UNIX', cause: err });
}

export function listenSocket(
  server: Server,
  o: ListenOptions,
  notes: UnixListenNotes = {},
): Promise<AddressInfo> {
  return o.path !== undefined ? listenUnix(server, o, notes) : listenTcp(server, o);
}

export async function listenTcp(server: Server, o: ListenOptions): Promise<AddressInfo> {
  const backlog = o.backlog ?? DEFAULT_BACKLOG;
  await listenOnce(server, () => {
    if (!needsRawListen(o)) {
      server.listen({
        host: o.host,
        port: o.port,
        backlog,
        exclusive: o.exclusive,
        ...(o.ipv6Only ? { ipv6Only: true } : {}),
        ...(o.reusePort ? { reusePort: true } : {}),
      } as Parameters<Server['listen']>[0]);
      return undefined;
    }
    const fd = rawListenFd({
      host: o.host,
      port: o.port,
      backlog,
      reuseAddr: o.reuseAddr !== false,
      reusePort: o.reusePort === true,
      recvBuffer: o.recvBuffer,
      sendBuffer: o.sendBuffer,
      ipv6Only: o.ipv6Only,
    });
    if (cluster.isWorker) {
      // listen({ fd }) in a cluster worker asks the primary to share the fd (which it does
      // not have: EEXIST). Wrapped as a TCP handle it is listened on here, exclusively.
      const handle = takeHandle(fd);
      server.listen((handle ?? { fd }) as net.ListenOptions, backlog);
    } else {
      // backlog must be positional: listen({ fd, backlog }) re-listens with 511
      server.listen({ fd }, backlog);
    }
    return fd;
  });
  return server.address() as AddressInfo;
}

/**
 * Run `listen` (which may make a socket with libc, then calls server.listen and returns that
 * fd) and settle on the server's 'listening' or 'error'. An fd made for it is closed when
 * listening fails; an error thrown by `listen` itself rejects.
 */
function listenOnce(server: Server, listen: () => number | undefined): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let fd: number | undefined;
    const onError = (err: Error) => {
      server.off('listening', onListening);
      if (fd !== undefined) closeFd(fd);
      reject(err);
    };
    const onListening = () => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    try {
      fd = listen();
    } catch (err) {
      server.off('error', onError);
      server.off('listening', onListening);
      reject(err);
    }
  });
}

// --- sockets made with libc, for the options that must be set before bind() ----------------

export interface RawListenOptions {
  host: string;
  port: number;
  backlog: number;
  reuseAddr: boolean;
  reusePort: boolean;
  recvBuffer?: number;
  sendBuffer?: number;
  /** SOCK_STREAM (default) or SOCK_DGRAM (then no listen) */
  type?: 'tcp' | 'udp';
  /** bind only, no listen (a client socket with a fixed port) */
  bindOnly?: boolean;
  /** IPV6_V6ONLY on an IPv6 socket (default: the kernel's net.ipv6.bindv6only, 0 on Linux) */
  ipv6Only?: boolean;
  /**
   * O_NONBLOCK (Linux SOCK_NONBLOCK): accept() with nothing queued returns EAGAIN instead of
   * blocking the whole process (an fd Node does not watch is polled with accept4)
   */
  nonBlocking?: boolean;
}

/** A sockaddr_in / sockaddr_in6 for bind() or connect(). */
export function sockaddr(host: string, port: number): { family: number; addr: Buffer } {
  const t = platformTable();
  const v6 = host.includes(':');
  const buf = Buffer.alloc(v6 ? 28 : 16);
  if (t.sinLen) {
    buf.writeUInt8(buf.length, 0);
    buf.writeUInt8(v6 ? t.AF_INET6 : t.AF_INET, 1);
  } else {
    buf.writeUInt16LE(v6 ? t.AF_INET6 : t.AF_INET, 0);
  }
  buf.writeUInt16BE(port, 2);
  if (v6) {
    ipv6Bytes(host).copy(buf, 8);
    // fe80::1%eth0: the zone is the interface a link-local address belongs to (sin6_scope_id)
    const zone = host.split('%')[1];
    if (zone !== undefined) buf.writeUInt32LE(scopeId(zone), 24);
  } else {
    const parts = host.split('.').map(Number);
    if (parts.length !== 4 || parts.some((p) => !(p >= 0 && p <= 255))) {
      throw new SocketOptionError('bind', `${host} is not an IPv4 or IPv6 address`, 'EINVAL');
    }
    Buffer.from(parts).copy(buf, 4);
  }
  return { family: v6 ? t.AF_INET6 : t.AF_INET, addr: buf };
}

/** An IPv6 zone: an interface name (if_nametoindex) or its number. */
function scopeId(zone: string): number {
  if (/^\d+$/.test(zone)) return Number(zone);
  const index = loadLibc().if_nametoindex(zone);
  if (!index) throw Object.assign(sysError('if_nametoindex', 19 /* ENODEV */, zone), { address: zone });
  return index;
}

/**
 * socket(), setsockopt() before bind, bind(), listen(): a listening fd with exactly the
 * options asked for, for `server.listen({ fd }, backlog)`. The caller owns the fd.
 */
export function rawListenFd(o: RawListenOptions): number {
  const t = platformTable();
  const c = loadLibc();
  const { family, addr } = sockaddr(o.host, o.port);
  const type = o.type === 'udp' ? t.SOCK_DGRAM : t.SOCK_STREAM;
  const fd = c.socket(family, o.nonBlocking ? type | SOCK_NONBLOCK : type, 0);
  if (fd < 0) throw sysError('socket', c.errno());
  try {
    setIntOption(fd, 'SO_REUSEADDR', o.reuseAddr ? 1 : 0);
    if (o.reusePort) setIntOption(fd, 'SO_REUSEPORT', 1);
    if (o.recvBuffer !== undefined) setIntOption(fd, 'SO_RCVBUF', o.recvBuffer);
    if (o.sendBuffer !== undefined) setIntOption(fd, 'SO_SNDBUF', o.sendBuffer);
    if (o.ipv6Only !== undefined && family === t.AF_INET6)
      setIntOption(fd, 'IPV6_V6ONLY', o.ipv6Only ? 1 : 0);
    if (c.bind(fd, addr, addr.length) !== 0) {
      throw Object.assign(sysError('bind', c.errno(), `${o.host}:${o.port}`), {
        address: o.host,
        port: o.port,
      });
    }
    if (o.type !== 'udp' && !o.bindOnly && c.listen(fd, o.backlog) !== 0) throw sysError('listen', c.errno());
  } catch (err) {
    c.close(fd);
    throw err;
  }
  return fd;
}
