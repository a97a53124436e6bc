// The bench over WebSocket (echo-client bench --ws): each connection is upgraded (the connect
// figure counts the upgrade), then ping-pong (closed loop with --pipeline in flight, or open
// loop at --rate) or connect cycles (connect, upgrade, one message, close handshake). Each
// echo must equal the message sent. The scheduler (bench.ts) owns the figures: it hands each
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

/** Ping-pong on one WebSocket: closed loop with `pipeline` in flight, or open loop every `intervalMs`. */
export async function wsPingpong(
  t: WsBenchTarget,
  h: BenchHooks,
  payload: Buffer,
  pipeline: number,
  intervalMs?: number,
): Promise<void> {
  const ws = await openOne(t);
  const sentAt: number[] = [];
  let timer: NodeJS.Timeout | undefined;
  let next = performance.now();
  const send = (at: number) => {
    sentAt.push(at);
    ws.send(payload, { binary: true });
  };
  const finish = () => {
    if (sentAt.length === 0 && ws.readyState === ws.OPEN) ws.close(1000);
  };
  await new Promise<void>((resolve) => {
    ws.on('message', (data: Buffer) => {
      const now = performance.now();
      if (!data.equals(payload)) h.mismatch();
      h.record(data.length, sentAt.shift() ?? now, now);
      if (h.stopped()) finish();
      else if (intervalMs === undefined) send(now);
    });
    ws.on('error', (err) => h.error(err));
    ws.on('close', () => {
      clearInterval(timer);
      resolve();
    });
    h.onStop(finish);
    h.whenAbandoned(() => ws.terminate());
    if (intervalMs === undefined) {
      const now = performance.now();
      for (let i = 0; i < pipeline; i++) send(now);
    } else {
      const tick = () => {
        if (h.stopped()) {
          clearInterval(timer);
          finish();
          return;
        }
        const now = performance.now();
        while (next <= now && sentAt.length < 65535) {
          send(next);
          next += intervalMs;
        }
      };
      timer = setInterval(tick, Math.max(1, Math.min(10, intervalMs)));
      tick();
    }
  });
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
