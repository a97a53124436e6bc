// The backend that serves connections in this process (evented and iterative modes, and
// every worker process): each admitted socket goes to the echo handler.

import type { Socket } from 'node:net';
import { type FaultDraw, FaultSet, faultKeys } from '../core/faults.js';
import { type TcpInfo, tcpInfo } from '../core/libc.js';
import {
  drainConnection,
  echoApplication,
  forceClose,
  type HandlerContext,
  hasConnectionOptions,
  liveBytes,
  serveConnection,
  setConnectionFaults,
} from './handler.js';
import type { Backend, ConnectionEvents, LiveConnection } from './listener.js';
import type { ReadCallback } from './user-buffer.js';

/**
 * The read callback of light connections where `ctx`'s connections qualify for them (they
 * only echo, count and log, or their application says it runs on them (Application.light,
 * forwarding): no TLS, trace, socket options), else undefined.
 */
export function lightReadOf(ctx: Omit<HandlerContext, 'onClose'>): ReadCallback | undefined {
  const app = ctx.app ?? echoApplication;
  return (app === echoApplication || (app.light === true && app.sharedRead !== undefined)) &&
    !ctx.tls &&
    !ctx.tracer &&
    !hasConnectionOptions(ctx.socketOptions)
    ? app.sharedRead
    : undefined;
}

export function hereBackend(ctx: Omit<HandlerContext, 'onClose'>, { pauseOnConnect = false } = {}): Backend {
  const app = ctx.app ?? echoApplication;
  const live = new Map<Socket, { events: ConnectionEvents; peer: string; since: number; draw?: FaultDraw }>();
  const handlerCtx: HandlerContext = {
    ...ctx,
    onClose(socket, record) {
      const entry = live.get(socket);
      live.delete(socket);
      ctx.onClosed?.(record);
      entry?.events.closed(record);
    },
    onHandOver(from, to) {
      const entry = live.get(from);
      live.delete(from);
      if (entry) live.set(to, entry);
    },
  };
  return {
    pauseOnConnect,
    // TLS reads the TCP socket itself; --trace listens to 'data'
    ...(ctx.tls || ctx.tracer || !app.sharedRead ? {} : { sharedRead: app.sharedRead }),
    // a light connection echoes, counts and logs: anything more needs a net.Socket
    light: !pauseOnConnect && lightReadOf(ctx) !== undefined,
    serve(socket, peer, events, head, faults, draw) {
      const served = serveConnection(socket, handlerCtx, peer, head, faults);
      live.set(served, { events, peer, since: Date.now(), draw });
      // paused when accepted so (iterative mode), or after a PROXY header was read
      served.resume();
    },
    setFaults(faults) {
      const keys = faultKeys(faults);
      for (const [s, { draw }] of live)
        setConnectionFaults(s, FaultSet.faultsOf(faults, draw ?? { n: 0 }, keys));
    },
    async drain() {
      for (const s of live.keys()) drainConnection(s);
    },
    force() {
      for (const s of live.keys()) forceClose(s);
    },
    connections: (): LiveConnection[] =>
      [...live].map(([s, { peer, since }]) => ({
        peer,
        since,
        ...optionalTcp(s),
        ...liveBytes(s),
        buffered: s.writableLength,
        reading: !s.isPaused(),
      })),
  };
}

function optionalTcp(s: Socket): { tcp?: TcpInfo } {
  const tcp = tcpInfo(s);
  return tcp ? { tcp } : {};
}
