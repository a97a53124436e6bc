// The echo-lab scenarios: each reproduces one classic socket failure on loopback
// (or in network namespaces it makes itself) and returns a structured result. echo-lab
// prints it; the test suite asserts on the very same results.

import { captureUnavailable, type Segment, startCapture } from './capture.js';
import { ladders } from './ladder.js';
import { netnsUnavailable, removeNamespacesNow, traceNamespaces } from './netns.js';
import { Cleanup, onPort, type ScenarioResult } from './recorder.js';
import { backlog } from './scenarios/backlog.js';
import { chatFork } from './scenarios/chat-fork.js';
import { clientPort } from './scenarios/client-port.js';
import { closeOutage } from './scenarios/close-outage.js';
import { closeUnread } from './scenarios/close-unread.js';
import { closeWait } from './scenarios/close-wait.js';
import { connectTimeout } from './scenarios/connect-timeout.js';
import { heartbeat, keepalive, userTimeout } from './scenarios/dead-peer.js';
import { eaddrinuse } from './scenarios/eaddrinuse.js';
import { econnrefused } from './scenarios/econnrefused.js';
import { econnreset } from './scenarios/econnreset.js';
import { eintr } from './scenarios/eintr.js';
import { epipe } from './scenarios/epipe.js';
import { forkHoldsPort } from './scenarios/fork-holds-port.js';
import { halfClose } from './scenarios/half-close.js';
import { hostUnreachable } from './scenarios/host-unreachable.js';
import { nonblockingConnect } from './scenarios/nonblocking-connect.js';
import { processExit } from './scenarios/process-exit.js';
import { reuseaddrRules } from './scenarios/reuseaddr-rules.js';
import { sigpipe } from './scenarios/sigpipe.js';
import { sockopts } from './scenarios/sockopts.js';
import { staleUnixSocket } from './scenarios/stale-unix-socket.js';
import { synRetries } from './scenarios/syn-retries.js';
import { timeWait } from './scenarios/time-wait.js';
import { timeWaitWhy } from './scenarios/time-wait-why.js';
import { udpErrors } from './scenarios/udp-errors.js';
import { unreachable } from './scenarios/unreachable.js';
import { zombies } from './scenarios/zombies.js';

export interface ScenarioInfo {
  name: string;
  summary: string;
  /** needs network namespaces (root or CAP_NET_ADMIN) */
  netns: boolean;
  run: () => Promise<ScenarioResult>;
}

export const SCENARIOS: readonly ScenarioInfo[] = [
  { name: 'eaddrinuse', summary: 'a second listener on a port in use', netns: false, run: eaddrinuse },
  {
    name: 'time-wait',
    summary: 'restart after an active close, with and without SO_REUSEADDR',
    netns: false,
    run: timeWait,
  },
  {
    name: 'client-port',
    summary: 'a fixed client port reused while in TIME_WAIT',
    netns: false,
    run: clientPort,
  },
  { name: 'econnrefused', summary: 'connect to a port nobody listens on', netns: false, run: econnrefused },
  {
    name: 'stale-unix-socket',
    summary: 'a killed server leaves its Unix socket file: EADDRINUSE; stale or live?',
    netns: false,
    run: staleUnixSocket,
  },
  { name: 'epipe', summary: 'write after the peer closed', netns: false, run: epipe },
  { name: 'econnreset', summary: 'the peer aborts with RST', netns: false, run: econnreset },
  {
    name: 'connect-timeout',
    summary: 'a full backlog drops SYNs; connect times out',
    netns: false,
    run: () => connectTimeout(),
  },
  {
    name: 'half-close',
    summary: 'server closes first: FIN_WAIT2 / CLOSE_WAIT / LAST_ACK (netns) / TIME_WAIT',
    netns: false,
    run: halfClose,
  },
  {
    name: 'sockopts',
    summary: 'SO_TYPE, SO_SNDBUF get/set/read back (doubled)',
    netns: false,
    run: () => sockopts(),
  },
  {
    name: 'backlog',
    summary: 'the accept queue fills; SYNs retried until accept()',
    netns: false,
    run: () => backlog(),
  },
  {
    name: 'sigpipe',
    summary: 'SIGPIPE kills a writer to a reset socket; ignored, it is EPIPE',
    netns: false,
    run: sigpipe,
  },
  {
    name: 'close-wait',
    summary: 'a server that never closes: CLOSE_WAIT forever, the peer’s FIN_WAIT2 expires',
    netns: false,
    run: () => closeWait(),
  },
  {
    name: 'close-unread',
    summary: 'close() with unread data sends RST; queued unsent data is still sent, then FIN',
    netns: false,
    run: closeUnread,
  },
  {
    name: 'process-exit',
    summary: 'a process exits mid-connection: FIN, and the restart with(out) SO_REUSEADDR',
    netns: false,
    run: processExit,
  },
  {
    name: 'reuseaddr-rules',
    summary: 'SO_REUSEADDR on both sockets; wildcard vs specific; two addresses need nothing',
    netns: false,
    run: reuseaddrRules,
  },
  {
    name: 'fork-holds-port',
    summary: 'the fork server restarts while a child serves: what binds and why',
    netns: false,
    run: forkHoldsPort,
  },
  {
    name: 'zombies',
    summary: 'a fork server that never reaps: zombies in the process table; wait()/Node reap them',
    netns: false,
    run: zombies,
  },
  {
    name: 'chat-fork',
    summary: 'two-process chat: close() in one process sends no FIN; shutdown() does',
    netns: false,
    run: chatFork,
  },
  {
    name: 'syn-retries',
    summary:
      "the kernel's own connect timeout, computed from tcp_syn_retries / TCP_SYNCNT / tcp_syn_linear_timeouts",
    netns: false,
    run: () => synRetries(),
  },
  {
    name: 'nonblocking-connect',
    summary: 'EINPROGRESS, poll for writable, SO_ERROR: refused, timed out, connected',
    netns: false,
    run: () => nonblockingConnect(),
  },
  {
    name: 'eintr',
    summary:
      'a signal interrupts a blocking accept() (EINTR; restarted with SA_RESTART) and send() (a short count); Node never sees it',
    netns: false,
    run: eintr,
  },
  {
    name: 'udp-errors',
    summary: 'UDP: sendto binds implicitly; ICMP port unreachable reaches only a connected socket',
    netns: false,
    run: udpErrors,
  },
  { name: 'keepalive', summary: 'an idle dead peer found by keepalive probes', netns: true, run: keepalive },
  {
    name: 'user-timeout',
    summary: 'sending to a dead peer, bounded by TCP_USER_TIMEOUT',
    netns: true,
    run: userTimeout,
  },
  {
    name: 'heartbeat',
    summary:
      'an echo after 1 s of quiet, 3 s to answer: a dead peer found in 4 s; keepalive defaults take 2 h',
    netns: true,
    run: heartbeat,
  },
  {
    name: 'time-wait-why',
    summary: 'why TIME_WAIT: the last ACK lost, the FIN resent, TIME_WAIT answers it and restarts',
    netns: true,
    run: timeWaitWhy,
  },
  {
    name: 'close-outage',
    summary: 'close() during an outage: FIN_WAIT1, the FIN retransmitted, then gone without TIME_WAIT',
    netns: true,
    run: closeOutage,
  },
  { name: 'unreachable', summary: 'EHOSTUNREACH / ENETUNREACH from routes', netns: true, run: unreachable },
  {
    name: 'host-unreachable',
    summary: "a router's ICMP host unreachable during connect: Linux fails it at once, no SYN retry",
    netns: true,
    run: hostUnreachable,
  },
];

/**
 * A signal is ending the process in the middle of a scenario: remove what it set up (network
 * namespaces, child processes, files) now, since the scenario's own cleanup will not run.
 */
export function abortScenarios(): void {
  removeNamespacesNow();
  Cleanup.runAllNow();
}

export function findScenario(name: string): ScenarioInfo | undefined {
  return SCENARIOS.find((s) => s.name === name);
}

/** Library entry: run one scenario by name. */
export async function runScenario(name: string, opts: { trace?: boolean } = {}): Promise<ScenarioResult> {
  const s = findScenario(name);
  if (!s) throw new Error(`no scenario named ${name}; try: ${SCENARIOS.map((x) => x.name).join(', ')}`);
  return opts.trace ? traced(s) : s.run();
}

/**
 * Run a scenario with a packet capture on `lo` around it. The namespace scenarios' traffic runs
 * on their own veth: it is captured there, inside the client's namespace (nothing else runs in
 * it, so every TCP segment on it is the scenario's).
 */
export async function traced(s: ScenarioInfo): Promise<ScenarioResult> {
  const why = captureUnavailable() ?? (s.netns ? netnsUnavailable() : undefined);
  if (why) return { ...(await s.run()), trace: { unavailable: why } };
  if (s.netns) {
    const seen: Segment[] = [];
    traceNamespaces((segs) => seen.push(...segs));
    let r: ScenarioResult;
    try {
      r = await s.run();
    } finally {
      traceNamespaces(undefined);
    }
    const ports = new Set(seen.flatMap((x) => [x.sport, x.dport]));
    return { ...r, trace: { segments: seen, ladders: ladders(seen, ports), ports: [...ports] } };
  }
  // only the scenario's ports reach the capture's queue (other programs on lo can be busy):
  // each port is added to the kernel's filter as the scenario makes it, before it is used
  const cap = startCapture('lo', { ports: [] });
  const watched = new Set<number>();
  const stopHearing = onPort((p) => {
    watched.add(p);
    try {
      cap.watch(p);
    } catch {
      // the filter could not be widened: this port's segments are left out of the ladder
    }
  });
  // a scenario on lo that runs a part in namespaces (half-close's LAST_ACK): captured on its veth
  const inNamespaces: Segment[] = [];
  traceNamespaces((segs) => inNamespaces.push(...segs));
  let r: ScenarioResult;
  try {
    r = await s.run();
  } catch (err) {
    stopHearing();
    traceNamespaces(undefined);
    await cap.stop();
    throw err;
  }
  stopHearing();
  traceNamespaces(undefined);
  // the last segments (a FIN's ACK, an RST) may still be on their way through lo
  await new Promise((res) => setTimeout(res, 30));
  const segments = await cap.stop();
  const ports = scenarioPorts(r);
  for (const p of watched) ports.add(p);
  const mine = segments.filter((x) => ports.has(x.sport) || ports.has(x.dport));
  const nsPorts = new Set(inNamespaces.flatMap((x) => [x.sport, x.dport]));
  return {
    ...r,
    trace: {
      segments: mine,
      ladders: [...ladders(mine, ports), ...ladders(inNamespaces, nsPorts)],
      ports: [...watched],
      ...(inNamespaces.length ? { netnsSegments: inNamespaces } : {}),
    },
  };
}

/**
 * The ports a scenario used: those it named itself (Recorder.usePort), and those its steps and
 * its TCP-state snapshots show.
 */
export function scenarioPorts(r: ScenarioResult): Set<number> {
  const ports = new Set<number>(r.ports ?? []);
  for (const s of r.steps) for (const m of s.text.matchAll(/:(\d{4,5})\b/g)) ports.add(Number(m[1]));
  for (const st of r.states) for (const e of st.entries) ports.add(e.localPort).add(e.remotePort);
  for (const p of [...ports]) if (p < 1024 || p > 65535) ports.delete(p);
  return ports;
}

export type { ScenarioResult } from './recorder.js';
