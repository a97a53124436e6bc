// The bench over WebSocket (echo-client bench --ws): each connection is upgraded (the connect
// figure counts the upgrade), then ping-pong through the bench's scheduler (wsTransport, a
// BenchConnect: closed loop with --pipeline in flight, or open loop at --rate) or connect cycles
// (connect, upgrade, one message, close handshake). Each echo must equal the message sent. The scheduler (bench.ts) owns the figures: it hands each
// connection the hooks below.

import type { WebSocket } from 'ws';
import { connectTcp } from '../core/connect.js';
import type { ClientTls } from '../core/tls.js';
import { openWebSocket } from './websocket.js';

/** What a WebSocket bench connection needs to reach its server. */
export interface WsBenchTarget {
  host: string;
  port: number;
  path?: string;
  tls?: ClientTls;
  sendProxy?: 1 | 2;
  family?: 4 | 6;
  /** the URL path asked for in the upgrade */
  wsPath: string;
}

/** How a bench connection reports to the bench's scheduler. */
export interface BenchHooks {
  stopped(): boolean;
  /** one measured round trip (or connection) of `bytes`, sent at `sentAt` */
  record(bytes: number, sentAt: number, now?: number): void;
  mismatch(): void;
  error(err: unknown): void;
  /** `fn` is called once when measuring stops */
  onStop(fn: () => void): void;
  /** `fn` is called once the wait for replies is over; returns what cancels that */
  whenAbandoned(fn: () => void): () => void;
}

const UPGRADE_TIMEOUT_MS = 10_000;

async function openOne(t: WsBenchTarget): Promise<WebSocket> {
  const { socket } = await connectTcp({
    host: t.host,
    port: t.port,
    path: t.path,
    tls: t.tls,
    sendProxy: t.sendProxy,
    ...(t.family ? { family: t.family } : {}),
    allowHalfOpen: false,
    socketOptions: { noDelay: true },
  });
  try {
    return await openWebSocket(socket, {
      host: t.path !== undefined ? 'localhost' : `${t.host.includes(':') ? `[${t.host}]` : t.host}:${t.port}`,
      path: t.wsPath,
      timeoutMs: UPGRADE_TIMEOUT_MS,
    });
  } catch (err) {
    socket.destroy();
    throw err;
  }
}

/**
 * Ping-pong over WebSocket: a connection of the bench's own scheduler (closed or open loop),
 * each echoed message handed on as a reply of its length.
 */
export function wsTransport(t: WsBenchTarget) {
  return async (
    _o: unknown,
    h: { onReply(len: number, data: Buffer): void; onError(err: Error): void; onClose(): void },
  ) => {
    const ws = await openOne(t);
    ws.on('message', (data: Buffer) => h.onReply(data.length, data));
    ws.on('error', h.onError);
    ws.on('close', () => h.onClose());
    let ended = false;
    return {
      send: (d: Buffer) => ws.send(d, { binary: true }),
      end: () => {
        ended = true;
        if (ws.readyState === ws.OPEN) ws.close(1000);
      },
      destroy: () => ws.terminate(),
      get ended() {
        return ended;
      },
    };
  };
}

/** Connect rate: connect, upgrade, one message and its echo, close handshake; repeat. */
export async function wsConnectLoop(t: WsBenchTarget, h: BenchHooks, payload: Buffer): Promise<void> {
  let failures = 0;
  while (!h.stopped()) {
    const t0 = performance.now();
    try {
      const ws = await openOne(t);
      let abandoned = false;
      const cancel = h.whenAbandoned(() => {
        abandoned = true;
        ws.terminate();
      });
      await new Promise<void>((resolve, reject) => {
        ws.once('message', (data: Buffer) => {
          if (!data.equals(payload)) h.mismatch();
          ws.close(1000);
        });
        ws.on('error', reject);
        ws.on('close', () => resolve());
        ws.send(payload, { binary: true });
      }).finally(cancel);
      if (abandoned) break; // its echo never came
      h.record(payload.length, t0);
    } catch (err) {
      h.error(err);
      if (++failures > 1000) return; // a dead server: stop hammering it
    }
  }
}
