// What a server reports, in plain data: one connection's record when it closes and the
// totals of a server in every mode (UDP maps its own counters onto these).

import type { TcpInfo } from './libc.js';

export type CloseReason =
  | 'client closed'
  | 'reset by peer'
  | 'reset by peer, nothing lost'
  | 'idle timeout'
  | 'too slow (--min-rate)'
  | 'max lifetime'
  | 'server shutdown'
  | 'forced at shutdown'
  | 'left during the TLS handshake (did it reject the certificate?)'
  | `fault ${string}`
  | `websocket ${string}`
  | `error ${string}`;

/** WebSocket messages (echo-server --ws): how many, and their payload bytes, each way. */
export interface MessageCounts {
  messagesIn: number;
  messagesOut: number;
  payloadIn: number;
  payloadOut: number;
}

/** Add `b` into `a`. */
export function addMessages(a: MessageCounts, b: MessageCounts): void {
  a.messagesIn += b.messagesIn;
  a.messagesOut += b.messagesOut;
  a.payloadIn += b.payloadIn;
  a.payloadOut += b.payloadOut;
}

/** What one connection did, reported when it closes. */
export interface ConnectionRecord {
  peer: string;
  bytesIn: number;
  bytesOut: number;
  /** bytes that arrived after shutdown began, read and dropped (the client had its FIN already) */
  discarded: number;
  ms: number;
  reason: CloseReason;
  /** the socket error that ended it, if any (ECONNRESET…) */
  error?: string;
  /** TCP_INFO as the connection ended (with --verbose, Linux) */
  tcp?: TcpInfo;
  /** its smoothed RTT then (µs), read with --verbose or --metrics */
  rttUs?: number;
  /** a WebSocket connection's messages */
  messages?: MessageCounts;
}

/** What a server did, in every mode (UDP maps its own counters onto these). */
export interface ServerTotals {
  /** connections served (UDP: distinct sources) */
  connections: number;
  active: number;
  refused: number;
  /** refusals (UDP: dropped datagrams) by reason: access, max, per-ip, fd-limit, rate-limit… */
  refusedBy: Record<string, number>;
  bytesIn: number;
  bytesOut: number;
  errors: Record<string, number>;
  /** WebSocket messages of the connections closed so far (present once one has been counted) */
  messages?: MessageCounts;
}

export function emptyTotals(): ServerTotals {
  return { connections: 0, active: 0, refused: 0, refusedBy: {}, bytesIn: 0, bytesOut: 0, errors: {} };
}

export function copyTotals(t: ServerTotals): ServerTotals {
  return {
    ...t,
    refusedBy: { ...t.refusedBy },
    errors: { ...t.errors },
    ...(t.messages ? { messages: { ...t.messages } } : {}),
  };
}
