// Holding a TCP socket's reads in the kernel: while a socket is held, nothing more is read
// into this process (the bytes stay in the kernel's receive queue, for a process the socket
// is handed to, or unread on purpose), until resumeReading().

import type { Socket } from 'node:net';

type Handle = { reading?: boolean; readStop?: () => number; readStart?: () => number };
type Held = Socket & { _handle?: Handle | null };

/** Stands in for the handle's readStart while the socket is held: reading stays stopped. */
function heldReadStart(): number {
  return 0;
}

/**
 * Stop reading from the kernel now. `pause()` alone only stops 'data' events: net's Readable
 * goes on reading into the socket's buffer (maybeReadMore calls _read, which starts the
 * handle again on the next tick), and those bytes would stay in this process when the socket
 * is handed to another one. So the handle stops, and its readStart does nothing until
 * resumeReading().
 */
export function stopReading(socket: Socket): void {
  socket.pause();
  const h = (socket as Held)._handle;
  if (!h) return;
  if (h.reading && h.readStop) {
    h.reading = false;
    h.readStop();
  }
  h.readStart = heldReadStart; // an own property over the handle's native method
}

/** Undo stopReading(): if net asked to read meanwhile, start the handle now. */
export function resumeReading(socket: Socket): void {
  const h = (socket as Held)._handle;
  if (!h || h.readStart !== heldReadStart) return;
  delete h.readStart;
  const start = (h as Handle).readStart; // the native one again
  if (h.reading && start) start.call(h);
}
