// The V8 heap of a server process. V8 doubles the young generation (two semi-spaces, up to
// 16 MiB each on 64-bit Node 20) while a burst allocates fast, and keeps it: accepting 10,000
// connections grew a server's RSS by about 25 MB of young generation that held nothing,
// 2.5 KB of the 5.6 KB RSS per idle connection counted from the server's start
// (process.memoryUsage() in the same process: heapUsed grew 2.1 KB per connection,
// heapTotal 4.6 KB). Kept at its start size, the young generation does more, smaller
// scavenges instead.

import v8 from 'node:v8';

/** The V8 flag this sets; a user's own (NODE_OPTIONS, node's argv) is left alone. */
const FLAG = '--semi-space-growth-factor';

/**
 * Keep this process's young generation at its start size. For process mains only (it sets a
 * V8 flag for the whole process): echo-server and the children it starts. Off with
 * ECHO_V8_DEFAULTS=1; not set when node was started with a semi-space flag of its own.
 */
export function keepYoungGenerationSmall(): boolean {
  if (process.env.ECHO_V8_DEFAULTS === '1') return false;
  const own = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)];
  if (own.some((a) => /semi[-_]space/.test(a))) return false;
  v8.setFlagsFromString(`${FLAG}=1`);
  return true;
}
