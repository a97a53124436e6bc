// The kernel's view of TCP sockets, read from /proc/net/tcp and /proc/net/tcp6 (Linux): the
// `netstat -an | grep PORT`. Used by echo-lab to show the states a scenario
// goes through, and by tests to check them. Other platforms get `available: false`.

import { readFileSync } from 'node:fs';

// include/net/tcp_states.h
const STATES: Record<number, string> = {
  1: 'ESTABLISHED',
  2: 'SYN_SENT',
  3: 'SYN_RECV',
  4: 'FIN_WAIT1',
  5: 'FIN_WAIT2',
  6: 'TIME_WAIT',
  7: 'CLOSE',
  8: 'CLOSE_WAIT',
  9: 'LAST_ACK',
  10: 'LISTEN',
  11: 'CLOSING',
  12: 'NEW_SYN_RECV',
};

/** The kernel's name for a TCP state number (TCP_INFO's tcpi_state, /proc/net/tcp's st). */
export function tcpStateName(n: number): string {
  return STATES[n] ?? `state ${n}`;
}

export interface TcpEntry {
  local: string;
  localPort: number;
  remote: string;
  remotePort: number;
  state: string;
  /** bytes queued: send queue (tx) and receive queue (rx); for LISTEN, rx is the accept queue */
  txQueue: number;
  rxQueue: number;
}

export interface TcpView {
  available: boolean;
  entries: TcpEntry[];
}

function hexToIPv4(hex: string): string {
  // /proc shows the address as a little-endian 32-bit word
  const n = Number.parseInt(hex, 16);
  return [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, (n >>> 24) & 255].join('.');
}

function hexToIPv6(hex: string): string {
  const words: string[] = [];
  for (let i = 0; i < 32; i += 8) {
    const w = hex.slice(i, i + 8);
    // each 32-bit group is little-endian
    const b = w.match(/../g)!.reverse().join('');
    words.push(b.slice(0, 4), b.slice(4, 8));
  }
  const full = words.map((w) => Number.parseInt(w, 16).toString(16)).join(':');
  if (full.startsWith('0:0:0:0:0:ffff:')) {
    const v4 = words.slice(6).join('');
    return `::ffff:${hexToIPv4(v4.match(/../g)!.reverse().join(''))}`;
  }
  return full.replace(/(^|:)0(:0)+(:|$)/, '::').replace(/:{3,}/, '::');
}

function parseTable(text: string, v6: boolean): TcpEntry[] {
  const out: TcpEntry[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 5) continue;
    const [la, lp] = f[1]!.split(':') as [string, string];
    const [ra, rp] = f[2]!.split(':') as [string, string];
    const [tx, rx] = f[4]!.split(':') as [string, string];
    out.push({
      local: v6 ? hexToIPv6(la) : hexToIPv4(la),
      localPort: Number.parseInt(lp, 16),
      remote: v6 ? hexToIPv6(ra) : hexToIPv4(ra),
      remotePort: Number.parseInt(rp, 16),
      state: STATES[Number.parseInt(f[3]!, 16)] ?? f[3]!,
      txQueue: Number.parseInt(tx, 16),
      rxQueue: Number.parseInt(rx, 16),
    });
  }
  return out;
}

/**
 * Every TCP socket with one of `ports` as its local or remote port, in this process'
 * network namespace — or another one, when `read` fetches the files from there.
 */
export function tcpStates(
  ports: number[],
  read: (file: string) => string = (f) => readFileSync(f, 'utf8'),
): TcpView {
  if (process.platform !== 'linux') return { available: false, entries: [] };
  const want = new Set(ports);
  const entries: TcpEntry[] = [];
  for (const [file, v6] of [
    ['/proc/net/tcp', false],
    ['/proc/net/tcp6', true],
  ] as const) {
    let text: string;
    try {
      text = read(file);
    } catch {
      continue;
    }
    for (const e of parseTable(text, v6)) {
      if (want.has(e.localPort) || want.has(e.remotePort)) entries.push(e);
    }
  }
  return { available: true, entries };
}

/** `tcp  127.0.0.1:7007  127.0.0.1:49632  TIME_WAIT` lines, as netstat -an prints them. */
export function formatTcpView(view: TcpView): string[] {
  if (!view.available)
    return [`(TCP state view unavailable on ${process.platform}: /proc/net/tcp is Linux-only)`];
  if (view.entries.length === 0) return ['(no TCP sockets on these ports)'];
  return view.entries.map(
    (e) =>
      `tcp  ${`${e.local}:${e.localPort}`.padEnd(22)} ${`${e.remote}:${e.remotePort}`.padEnd(22)} ${e.state}`,
  );
}
