// Small socket helpers the scenarios share: listen, connect, wait for an event with a bound.

import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import { connectTcp } from '../core/connect.js';
import { errorCode } from '../core/errors.js';
import { boundPort, closeFd } from '../core/libc.js';
import { rawListenFd } from '../core/listen.js';
import type { TcpEntry } from '../core/tcp-states.js';
import { announcePort } from './recorder.js';
import { labTcpStates } from './states.js';

/**
 * Listen on `host:port`. With port 0, on a port no other socket uses: bind(0) with SO_REUSEADDR
 * may hand out a port whose earlier connections still wait in TIME_WAIT, and the scenario's
 * state tables (every socket on the port) would show them beside its own.
 */
export async function listenLocal(
  server: net.Server,
  port = 0,
  backlog?: number,
  host = '127.0.0.1',
): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    server.listen({ host, port, ...(backlog !== undefined ? { backlog } : {}) });
    await Promise.race([once(server, 'listening'), once(server, 'error').then(([e]) => Promise.reject(e))]);
    const got = (server.address() as AddressInfo).port;
    if (port !== 0 || attempt === 20 || othersOnPort(got).length === 0) {
      announcePort(got);
      return got;
    }
    await closeServer(server);
  }
}

/** The sockets on loopback `port` besides its listeners: connections, and their TIME_WAIT remains. */
export function othersOnPort(port: number): TcpEntry[] {
  return labTcpStates([port]).entries.filter((e) => !(e.localPort === port && e.state === 'LISTEN'));
}

export function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Connect to 127.0.0.1:port (connectTcp); resolves with the socket, rejects with the connect error. */
export async function connectLocal(
  port: number,
  opts: { localPort?: number; allowHalfOpen?: boolean } = {},
): Promise<net.Socket> {
  return (
    await connectTcp({
      host: '127.0.0.1',
      port,
      allowHalfOpen: opts.allowHalfOpen ?? false,
      localPort: opts.localPort,
    })
  ).socket;
}

/** Wait for `event`, or for an 'error' (rejects), or for `ms` (rejects with a timeout). */
export function waitFor<T = unknown[]>(emitter: NodeJS.EventEmitter, event: string, ms = 10_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      cleanup();
      reject(new Error(`no '${event}' within ${ms} ms`));
    }, ms);
    const onEvent = (...args: unknown[]) => {
      cleanup();
      resolve(args as T);
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    const cleanup = () => {
      clearTimeout(t);
      emitter.off(event, onEvent);
      if (event !== 'error') emitter.off('error', onError);
    };
    emitter.once(event, onEvent);
    if (event !== 'error') emitter.once('error', onError);
  });
}

/**
 * A listening server and one client connected to it, plus the server's side of that
 * connection; everything is closed by `cleanup`. Half-open on both sides when asked, so the
 * scenario (not Node) decides when each side closes.
 */
export async function connectedPair(
  cleanup: { add(fn: () => unknown): void },
  { allowHalfOpen = false } = {},
): Promise<{ server: net.Server; port: number; client: net.Socket; peer: net.Socket }> {
  const server = net.createServer({ allowHalfOpen });
  const port = await listenLocal(server);
  cleanup.add(() => closeServer(server));
  const accepted = waitFor<[net.Socket]>(server, 'connection');
  const client = await connectLocal(port, { allowHalfOpen });
  cleanup.add(() => client.destroy());
  const [peer] = await accepted;
  cleanup.add(() => peer.destroy());
  return { server, port, client, peer };
}

/**
 * bind() and listen() with libc, with or without SO_REUSEADDR: 'listening' (the socket is closed
 * by `cleanup`), or the error code the kernel gave.
 */
export function tryListen(
  host: string,
  port: number,
  reuseAddr: boolean,
  cleanup: { add(fn: () => unknown): void },
): string {
  try {
    const fd = rawListenFd({ host, port, backlog: 1, reuseAddr, reusePort: false });
    cleanup.add(() => closeFd(fd));
    return 'listening';
  } catch (err) {
    return errorCode(err);
  }
}

/**
 * A server that keeps every connection it accepts open and never closes one itself (the
 * classic missing close()): reading each to its end, or, with `read: false`, never reading.
 * `peers` are the accepted sockets, in order; `cleanup` destroys them, then closes the server.
 */
export async function holdingServer(
  cleanup: { add(fn: () => unknown): void },
  { read = true } = {},
): Promise<{ port: number; peers: net.Socket[] }> {
  const peers: net.Socket[] = [];
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: !read }, (s) => {
    peers.push(s);
    if (read) s.resume();
  });
  const port = await listenLocal(server);
  cleanup.add(() => closeServer(server));
  // runs first (cleanups run last-in first-out): the server's close waits for its connections
  cleanup.add(() => {
    for (const s of peers) s.destroy();
  });
  return { port, peers };
}

/**
 * A loopback port nothing listens on, held for the scenario: bound by a socket that never calls
 * listen(), so a connect there is answered with RST. (A port found free and released again
 * could be handed by the kernel to some other program's server before the connect.)
 */
export function refusingPort(cleanup: { add(fn: () => unknown): void }): number {
  const fd = rawListenFd({
    host: '127.0.0.1',
    port: 0,
    backlog: 0,
    reuseAddr: false,
    reusePort: false,
    bindOnly: true,
  });
  cleanup.add(() => closeFd(fd));
  const port = boundPort(fd);
  announcePort(port);
  return port;
}
