// The backend that serves connections in this process (evented and iterative modes, and
// every worker process): each admitted socket goes to the echo handler.

import type { Socket } from 'node:net';
import { formatAddress } from '../core/parse.js';
import { drainConnection, forceClose, type HandlerContext, serveEcho } from './handler.js';
import type { Backend, LiveConnection } from './listener.js';

export function hereBackend(ctx: Omit<HandlerContext, 'onClose'>, { pauseOnConnect = false } = {}): Backend {
  const live = new Map<Socket, () => void>();
  const handlerCtx: HandlerContext = {
    ...ctx,
    onClose(socket, record) {
      const done = live.get(socket);
      live.delete(socket);
      ctx.onClosed?.(record);
      done?.();
    },
  };
  return {
    pauseOnConnect,
    serve(socket, peer, done) {
      live.set(socket, done);
      serveEcho(socket, handlerCtx, peer);
      if (pauseOnConnect) socket.resume();
    },
    async drain() {
      for (const s of live.keys()) drainConnection(s);
    },
    force() {
      for (const s of live.keys()) forceClose(s);
    },
    connections: (): LiveConnection[] =>
      [...live.keys()].map((s) => ({
        peer: formatAddress(s.remoteAddress ?? '?', s.remotePort ?? 0),
        bytesIn: s.bytesRead,
        bytesOut: s.bytesWritten - s.writableLength,
        buffered: s.writableLength,
        reading: !s.isPaused(),
      })),
  };
}
