// The kernel settings the classic socket behaviours depend on, read live from /proc/sys, with
// what each one means on Linux. A tutorial's "about 3 minutes" or "5000 ports" is one machine's
// value (often not Linux's): echo-lab prints this machine's.

import { readFileSync } from 'node:fs';

export const SYSCTLS = {
  tcp_fin_timeout: 'seconds an orphaned FIN_WAIT2 socket lives (a closed socket whose peer never closes)',
  tcp_syn_retries:
    "SYN retransmissions before connect() gives up by itself (the kernel's own connect timeout; 6 was about 127 s before Linux 6.5's linear first retries)",
  tcp_syn_linear_timeouts:
    'Linux ≥ 6.5: the first N SYN retransmissions come 1 s apart before the waits double',
  tcp_retries2: 'retransmissions of unacknowledged data before a connection is dropped (15 ≈ 15 min)',
  tcp_keepalive_time: 'seconds idle before the first keepalive probe, when SO_KEEPALIVE is on (7200 = 2 h)',
  tcp_keepalive_intvl: 'seconds between keepalive probes',
  tcp_keepalive_probes: 'unanswered keepalive probes before the connection is dropped',
  ip_local_port_range: 'the ephemeral ports connect() picks a local port from',
  somaxconn: 'the cap on every listen() backlog',
  tcp_max_syn_backlog: 'half-open connections (SYN received, handshake not finished) a listener may hold',
  tcp_syncookies: '1: SYN cookies when the SYN queue overflows',
  tcp_abort_on_overflow:
    '0: a full accept queue drops the handshake’s final ACK (the server resends its SYN,ACK) and new SYNs (the client resends); 1: the final ACK is answered with RST (SYNs are still dropped, never answered)',
  tcp_timestamps: 'TCP timestamps (RFC 7323); they let a TIME_WAIT pair be reused safely',
  tcp_tw_reuse: 'reuse a TIME_WAIT pair for a new outgoing connection (2 = loopback only); needs timestamps',
} as const;

export type SysctlName = keyof typeof SYSCTLS;

/** The value of net.ipv4.NAME (or net.core.somaxconn), whitespace folded; undefined off Linux. */
export function readSysctl(name: SysctlName): string | undefined {
  const dir = name === 'somaxconn' ? 'core' : 'ipv4';
  try {
    return readFileSync(`/proc/sys/net/${dir}/${name}`, 'utf8').trim().replace(/\s+/g, '–');
  } catch {
    return undefined;
  }
}

/** Timers that are constants in Linux, not settings: said where a learner reads them. */
export const LINUX_FACTS = {
  timeWait:
    'TIME_WAIT lasts a fixed 60 s on Linux (TCP_TIMEWAIT_LEN, not a setting; tutorials written for other systems say "2 MSL", often "about 4 minutes")',
  closeWait: 'CLOSE_WAIT never expires: it lasts until the program that owns the socket calls close()',
} as const;
