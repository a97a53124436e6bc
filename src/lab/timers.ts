// Linux's connect() timer, computed from the live settings the way the kernel computes it
// (net/ipv4/tcp_timer.c): a SYN_SENT socket retransmits its SYN when the retransmission timer
// fires, starting from a 1 s RTO (TCP_TIMEOUT_INIT). The first tcp_syn_linear_timeouts
// retransmissions (Linux ≥ 6.5) keep the RTO; after them it doubles, up to 120 s (TCP_RTO_MAX).
// connect() fails with ETIMEDOUT at the first timer expiry once the time since the first SYN
// reaches the modelled timeout of `retries` doubling retransmissions: ((2 << retries) − 1) × 1 s,
// or past 6 (ilog2(120)), 127 s + 120 s for each retry beyond. The retry count is TCP_SYNCNT when
// set on the socket, tcp_syn_retries otherwise.

import { readFileSync } from 'node:fs';

const RTO_INIT_MS = 1000;
const RTO_MAX_MS = 120_000;

export interface SynSchedule {
  /** the retry count used (TCP_SYNCNT, or tcp_syn_retries) */
  retries: number;
  /** tcp_syn_linear_timeouts (0 before Linux 6.5) */
  linear: number;
  /** when each SYN is sent, ms after the first: [0, first retransmission, …] */
  sends: number[];
  /** when connect() fails with ETIMEDOUT, ms after the first SYN */
  etimedoutMs: number;
}

/** The timeout the kernel models for `boundary` retries of a `rtoBase` RTO (tcp_model_timeout). */
export function modelTimeoutMs(boundary: number, rtoBase = RTO_INIT_MS): number {
  const thresh = Math.floor(Math.log2(RTO_MAX_MS / rtoBase));
  return boundary <= thresh
    ? ((2 << boundary) - 1) * rtoBase
    : ((2 << thresh) - 1) * rtoBase + (boundary - thresh) * RTO_MAX_MS;
}

export function synSchedule(retries: number, linear: number): SynSchedule {
  const timeout = modelTimeoutMs(retries);
  const sends = [0];
  let t = 0;
  let rto = RTO_INIT_MS;
  for (let backoff = 0; sends.length < 1000; ) {
    t += rto;
    if (t >= timeout) break;
    sends.push(t);
    backoff++;
    if (backoff > linear) rto = Math.min(rto * 2, RTO_MAX_MS);
  }
  return { retries, linear, sends, etimedoutMs: t };
}

/** net.ipv4.tcp_syn_linear_timeouts, 0 where the kernel has none (before 6.5) or off Linux. */
export function synLinearTimeouts(): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/tcp_syn_linear_timeouts', 'utf8').trim()) || 0;
  } catch {
    return 0;
  }
}

/** The schedule for this machine's settings; `syncnt` is a TCP_SYNCNT set on the socket. */
export function liveSynSchedule(syncnt?: number): SynSchedule | undefined {
  let retries = syncnt;
  if (retries === undefined) {
    try {
      retries = Number(readFileSync('/proc/sys/net/ipv4/tcp_syn_retries', 'utf8').trim());
    } catch {
      return undefined;
    }
  }
  return synSchedule(retries, synLinearTimeouts());
}

const secs = (ms: number) => `${Number((ms / 1000).toFixed(1))}`;

/** "5 retransmissions at 1, 2, 3, 4, 5 s; ETIMEDOUT at 7 s" */
export function describeSchedule(s: SynSchedule): string {
  const r = s.sends.slice(1);
  return `${r.length} retransmission${r.length === 1 ? '' : 's'} at ${r.map(secs).join(', ')} s; ETIMEDOUT at ${secs(s.etimedoutMs)} s`;
}
