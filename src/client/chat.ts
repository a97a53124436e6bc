// echo-chat's sockets (seed 004's P2P pair): one side listens for exactly one peer and then
// stops listening; the other connects. Raw bytes on the wire, no framing, so nc, ncat or
// socat can be either side. The terminal handling lives in cli/echo-chat.ts.

import net, { type AddressInfo, type Socket } from 'node:net';
import type { AccessControl } from '../core/access.js';
import { listenTcp } from '../core/listen.js';
import { applySocketOptions, type OptionReport, type SocketOptions } from '../core/sockopts.js';
import { connectTcp, withRetry } from './connect.js';

export interface ChatListenOptions extends SocketOptions {
  host?: string;
  port?: number;
  /** --allow / --deny: a refused peer is closed at once and the listener keeps waiting */
  access?: AccessControl;
  onRefused?: (address: string, why: string) => void;
}

export interface ChatListener {
  readonly address: AddressInfo;
  /** the one peer; the listening socket is closed as soon as it arrives */
  readonly peer: Promise<{ socket: Socket; options: OptionReport[] }>;
  close(): Promise<void>;
}

export async function listenChat(o: ChatListenOptions = {}): Promise<ChatListener> {
  const server = net.createServer({ allowHalfOpen: true });
  const address = await listenTcp(server, {
    host: o.host ?? '127.0.0.1',
    port: o.port ?? 7007,
    backlog: o.backlog ?? 1,
    reuseAddr: o.reuseAddr,
    reusePort: o.reusePort,
  });
  const peer = new Promise<{ socket: Socket; options: OptionReport[] }>((resolve, reject) => {
    const onConnection = (socket: Socket) => {
      const verdict = o.access?.check(socket.remoteAddress) ?? { ok: true };
      if (!verdict.ok) {
        o.onRefused?.(socket.remoteAddress ?? '?', verdict.why);
        socket.destroy();
        return;
      }
      server.off('connection', onConnection);
      // seed 004 closes its listening socket once the peer is in: a chat is one to one
      server.close();
      try {
        resolve({ socket, options: applySocketOptions(socket, o) });
      } catch (err) {
        socket.destroy();
        reject(err);
      }
    };
    server.on('connection', onConnection);
    server.once('error', reject);
  });
  return {
    address,
    peer,
    close: () =>
      new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve())),
  };
}

export interface ChatConnectOptions {
  host: string;
  port: number;
  connectTimeout?: number;
  retries?: number;
  socketOptions?: SocketOptions;
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
}

/** Library (SPEC §7): connect to a chat peer (an echo-chat --listen, nc -l, anything TCP). */
export async function connectChat(
  o: ChatConnectOptions,
): Promise<{ socket: Socket; options: OptionReport[] }> {
  return withRetry(
    () =>
      connectTcp({
        host: o.host,
        port: o.port,
        connectTimeout: o.connectTimeout,
        socketOptions: o.socketOptions,
      }),
    { retries: o.retries ?? 0, onRetry: o.onRetry },
  );
}
