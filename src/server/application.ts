// What runs on a connection once the stages before it are done: the transport (TCP, TLS,
// Unix: socket options set, TLS terminated), the preamble (a PROXY header read, the first
// bytes checked) and the faults chosen for it. The handler (handler.ts) owns the
// connection's life around it — timeouts, --min-rate, shutdown, the close record — so an
// application only says what to do with the client's bytes. Echo is one (handler.ts); a
// process finds an application by its name (ServerConfig.app), so child processes serve the
// same one as their parent.

import type { Socket } from 'node:net';
import type { Fault } from '../core/faults.js';
import type { Logger } from '../core/log.js';
import type { CloseReason, MessageCounts } from '../core/records.js';
import type { Tracer } from '../core/trace.js';
import type { ReadCallback } from './user-buffer.js';

/** What the handler tells an application about a connection it is given. */
export interface ServeInfo {
  peer: string;
  logger?: Logger;
  /** --trace, for an application that traces itself (tracesItself) */
  tracer?: Tracer;
  /** --idle-timeout (ms), for an application that resets the socket's timeout */
  idleTimeoutMs?: number;
  /** the connection's faults, for an application that applies them itself (ownFaults) */
  faults?: Fault[];
  /** why the connection ends, if no reason was given before */
  setReason?(reason: CloseReason): void;
  /** the message counters the connection's close record carries */
  setMessages?(counts: MessageCounts): void;
}

export interface Application {
  /** the name a config selects it by */
  readonly name: string;
  /** Start serving `conn`: it may be paused; the handler resumes it. */
  serve(conn: Socket, info: ServeInfo): void;
  /** --trace is written by the application (per message), not per chunk by the handler */
  readonly tracesItself?: boolean;
  /** --fault is applied by the application (info.faults), not by the handler's byte-stream echo */
  readonly ownFaults?: boolean;
  /** Shutdown: end the conversation (instead of the handler's FIN); the handler's deadline still holds. */
  shutdown?(conn: Socket): void;
  /**
   * The read callback of sockets that read into the process's shared buffer instead of
   * emitting 'data' (user-buffer.ts); without one, connections of this application use 'data'.
   */
  readonly sharedRead?: ReadCallback;
  /**
   * With sharedRead: its connections may be light ones (core/internals.ts LightSocket: the
   * part of net.Socket an echo uses, and the handle's own setNoDelay/getsockname through
   * internals.ts), as echo's are where nothing else needs a net.Socket.
   */
  readonly light?: boolean;
  /**
   * The client's FIN: without it the handler answers with ours at once (echo's rule); an
   * application that forwards passes it on instead.
   */
  end?(conn: Socket): void;
  /** The client can take more again: without it the handler resumes reading the client. */
  drain?(conn: Socket): void;
}

/** Discard (RFC 863): every byte read is dropped; the client's FIN is answered with ours. */
export const discardApplication: Application = {
  name: 'discard',
  serve(conn) {
    conn.on('data', () => {});
  },
};
