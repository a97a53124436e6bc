// The scenario list as the page shows it: grouped by the tutorial each comes from, each with
// the claim the tutorials make that the scenario checks on this machine. A scenario this table
// does not name is listed under "More" with its summary alone.

import { SCENARIOS } from '../index.js';

export interface CatalogEntry {
  name: string;
  summary: string;
  netns: boolean;
  /** the tutorial it is listed under */
  group: string;
  /** what the tutorials say (where they say something this scenario checks) */
  tutorialSaid?: string;
}

/**
 * The tutorials, in their order, and the scenarios that reproduce what each shows: a scenario
 * is listed under the first tutorial its result names (`tutorials`), the others beside it.
 */
export const GROUPS: [tutorial: string, names: string[]][] = [
  [
    'bind errors in a one-to-one client/server',
    ['eaddrinuse', 'time-wait', 'process-exit', 'reuseaddr-rules', 'half-close', 'close-wait'],
  ],
  ['a first TCP client and server', ['sockopts']],
  [
    'a robust TCP client and server, watched on the wire',
    [
      'econnrefused',
      'connect-timeout',
      'syn-retries',
      'epipe',
      'sigpipe',
      'keepalive',
      'user-timeout',
      'heartbeat',
    ],
  ],
  [
    'Linux socket programming basics',
    [
      'client-port',
      'econnreset',
      'backlog',
      'nonblocking-connect',
      'eintr',
      'unreachable',
      'host-unreachable',
    ],
  ],
  ['port reuse and a process-per-client server', ['fork-holds-port', 'chat-fork']],
  ['Unix-domain stream sockets: bind(), unlink() before bind, abstract names', ['stale-unix-socket']],
];

/** What the tutorials say that the scenario checks; "what this machine did" is the run's. */
export const TUTORIAL_SAID: Record<string, string> = {
  eaddrinuse: 'EADDRINUSE is errno 48; stop the other server or wait',
  'time-wait': 'TIME_WAIT lasts "2 MSL", about 3–4 minutes; the restarted server must wait it out',
  'client-port': 'a fixed client port cannot reconnect while in TIME_WAIT; ephemeral ports are 1024–5000',
  'reuseaddr-rules': 'SO_REUSEADDR is needed to bind two addresses to one port',
  'process-exit':
    'a crashed peer resets the connection; the restarted server must wait for its old connections',
  'fork-holds-port': 'the restarted server must wait for its old connections',
  'chat-fork': 'close() ends the connection',
  epipe: 'a write after the peer closed gives EINTR',
  sigpipe: 'a write after the peer closed gives EINTR',
  econnreset: 'a crashed peer resets the connection',
  'syn-retries': 'connect() waits "a long time"',
  'connect-timeout': 'connect() waits "a long time"',
  unreachable: 'connect() fails with EHOSTUNREACH or ENETUNREACH',
  'host-unreachable':
    'a router’s ICMP unreachable is recorded and the SYN retried; connect() fails only when all retries have failed',
  'nonblocking-connect': 'htons and htonl convert the same way; a full send buffer gives ENOBUFS',
  eintr:
    'accept() interrupted by a signal fails with EINTR: call it again; write() waits until it has copied all, and returns 0 on some errors',
  'half-close': 'TIME_WAIT lasts "2 MSL", about 3–4 minutes',
};

/** Every scenario, under its tutorial. */
export function catalog(): CatalogEntry[] {
  const groupOf = new Map<string, string>();
  for (const [g, names] of GROUPS) for (const n of names) groupOf.set(n, g);
  const order = GROUPS.flatMap(([, names]) => names);
  const rank = (n: string) => (order.includes(n) ? order.indexOf(n) : order.length);
  return [...SCENARIOS]
    .sort((a, b) => rank(a.name) - rank(b.name))
    .map((s) => ({
      name: s.name,
      summary: s.summary,
      netns: s.netns,
      group: groupOf.get(s.name) ?? 'More',
      ...(TUTORIAL_SAID[s.name] ? { tutorialSaid: TUTORIAL_SAID[s.name] } : {}),
    }));
}
