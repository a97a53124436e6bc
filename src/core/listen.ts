// listenTcp(): put a net.Server on an address with its listen-time options.
// Node's own listen() always sets SO_REUSEADDR and (before 22.12) ignores reusePort, so
// when those or a buffer size must be set before bind, the socket is made with libc and
// handed over by fd. Used by echo-server, echo-chat --listen and the lab.

import cluster from 'node:cluster';
import net, { type AddressInfo, type Server } from 'node:net';
import { closeFd, hasNativeReusePort, rawListenFd } from './sockopts.js';

export interface ListenOptions {
  host: string;
  port: number;
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

export function listenTcp(server: Server, o: ListenOptions): Promise<AddressInfo> {
  const backlog = o.backlog ?? DEFAULT_BACKLOG;
  return new Promise<AddressInfo>((resolve, reject) => {
    let fd: number | undefined;
    const onError = (err: Error) => {
      server.off('listening', onListening);
      if (fd !== undefined) closeFd(fd);
      reject(err);
    };
    const onListening = () => {
      server.off('error', onError);
      resolve(server.address() as AddressInfo);
    };
    server.once('error', onError);
    server.once('listening', onListening);
    if (needsRawListen(o)) {
      try {
        fd = rawListenFd({
          host: o.host,
          port: o.port,
          backlog,
          reuseAddr: o.reuseAddr !== false,
          reusePort: o.reusePort === true,
          recvBuffer: o.recvBuffer,
          sendBuffer: o.sendBuffer,
        });
      } catch (err) {
        server.off('error', onError);
        server.off('listening', onListening);
        reject(err);
        return;
      }
      if (cluster.isWorker) {
        // listen({ fd }) in a cluster worker asks the primary to share the fd (which it does
        // not have: EEXIST). Wrapped as a TCP handle it is listened on here, exclusively.
        const holder = new net.Socket({ fd, readable: false, writable: false }) as net.Socket & {
          _handle: unknown;
        };
        const handle = holder._handle;
        holder._handle = null;
        server.listen(handle as net.ListenOptions, backlog);
      } else {
        // backlog must be positional: listen({ fd, backlog }) re-listens with 511
        server.listen({ fd }, backlog);
      }
    } else {
      server.listen({
        host: o.host,
        port: o.port,
        backlog,
        exclusive: o.exclusive,
        ...(o.reusePort ? { reusePort: true } : {}),
      } as Parameters<Server['listen']>[0]);
    }
  });
}
