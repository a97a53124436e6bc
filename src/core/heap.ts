// The V8 heap of a server process. V8 doubles the young generation (two semi-spaces, up to
// 16 MiB each on 64-bit Node 20) while a burst allocates fast, and keeps it: accepting 10,000
// connections grew a server's RSS by about 25 MB of young generation that held nothing,
// 2.5 KB of the 5.6 KB RSS per idle connection counted from the server's start
// (process.memoryUsage() in the same process: heapUsed grew 2.1 KB per connection,
// heapTotal 4.6 KB). A young generation kept at its start size costs CPU where connections
// come and go fast (connect/echo/close with 50 in flight: 5-25 % more server CPU per
// connection, since more of them live through a scavenge and are promoted), so it is kept
// small only while a process holds many connections: V8 reads the growth factor each time it
// would grow the young generation.

import v8 from 'node:v8';

/** The V8 flag this sets, and V8's default for it. */
const FLAG = '--semi-space-growth-factor';
const V8_DEFAULT = 2;
/** From this many open connections the young generation stops growing; below LOW it may again. */
export const HIGH = 128;
export const LOW = 64;

let managed = false;
let open = 0;
let small = false;

/**
 * Manage this process's young generation from here on (see openConnections). For process
 * mains only (it sets a V8 flag for the whole process): echo-server and the children it
 * starts. Off with ECHO_V8_DEFAULTS=1, and when node was started with a semi-space flag of
 * the user's own (NODE_OPTIONS or node's argv).
 */
export function manageYoungGeneration(): boolean {
  if (process.env.ECHO_V8_DEFAULTS === '1') return false;
  const own = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)];
  if (own.some((a) => /semi[-_]space/.test(a))) return false;
  managed = true;
  return true;
}

/**
 * A connection opened (+1) or closed (-1) in this process. Once HIGH are open the young
 * generation stays the size it has; once fewer than LOW are, V8 may grow it again. Nothing
 * unless manageYoungGeneration() was called.
 */
export function openConnections(delta: number): void {
  if (!managed) return;
  open += delta;
  if (!small && open >= HIGH) {
    small = true;
    v8.setFlagsFromString(`${FLAG}=1`);
  } else if (small && open < LOW) {
    small = false;
    v8.setFlagsFromString(`${FLAG}=${V8_DEFAULT}`);
  }
}

/** Whether the young generation is held at its size now (for tests). */
export const youngGenerationHeld = (): boolean => small;
