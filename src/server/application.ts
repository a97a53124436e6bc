// What runs on a connection once the stages before it are done: the transport (TCP, TLS,
// Unix: socket options set, TLS terminated), the preamble (a PROXY header read, the first
// bytes checked) and the faults chosen for it. The handler (handler.ts) owns the
// connection's life around it — timeouts, --min-rate, shutdown, the close record — so an
// application only says what to do with the client's bytes. Echo is one (handler.ts); a
// process finds an application by its name (ServerConfig.app), so child processes serve the
// same one as their parent.

import type { Socket } from 'node:net';
import type { ReadCallback } from './user-buffer.js';

export interface Application {
  /** the name a config selects it by */
  readonly name: string;
  /** Start serving `conn`: it may be paused; the handler resumes it. */
  serve(conn: Socket, info: { peer: string }): void;
  /**
   * The read callback of sockets that read into the process's shared buffer instead of
   * emitting 'data' (user-buffer.ts); without one, connections of this application use 'data'.
   */
  readonly sharedRead?: ReadCallback;
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
