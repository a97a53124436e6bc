// What --metrics charts per connection (duration, bytes, TCP RTT at close): each connection
// that ends in this process, or that a child process reported, is told to the listeners here.
// With no listener (no --metrics, or a child process) nothing is done.

export interface ClosedConnection {
  ms: number;
  bytesIn: number;
  bytesOut: number;
  /** smoothed RTT from TCP_INFO as the connection ended (Linux, TCP), µs */
  rttUs?: number;
}

const listeners = new Set<(c: ClosedConnection) => void>();

/** Listen for every connection that ends; returns the function that stops listening. */
export function onConnectionClosed(fn: (c: ClosedConnection) => void): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** Whether someone listens (TCP_INFO is read at close only then). */
export const closedWanted = (): boolean => listeners.size > 0;

export function connectionClosed(c: ClosedConnection): void {
  for (const fn of listeners) fn(c);
}
