// The kernel's TCP states for a few ports, fast on a machine with many sockets: `ss` asks the
// kernel over sock_diag netlink with the port filter applied in the kernel, where reading
// /proc/net/tcp lists (and this process parses) every socket on the host — seconds with
// 100 000 of them. Same entries as core/tcp-states.ts; /proc is read where ss is missing.

import { execFileSync } from 'node:child_process';
import { type TcpEntry, type TcpView, tcpStates } from '../core/tcp-states.js';

const SS_STATES: Record<string, string> = {
  ESTAB: 'ESTABLISHED',
  'SYN-SENT': 'SYN_SENT',
  'SYN-RECV': 'SYN_RECV',
  'FIN-WAIT-1': 'FIN_WAIT1',
  'FIN-WAIT-2': 'FIN_WAIT2',
  'TIME-WAIT': 'TIME_WAIT',
  CLOSE: 'CLOSE',
  UNCONN: 'CLOSE',
  'CLOSE-WAIT': 'CLOSE_WAIT',
  'LAST-ACK': 'LAST_ACK',
  LISTEN: 'LISTEN',
  CLOSING: 'CLOSING',
};

let ssMissing = false;

/** "127.0.0.1:80", "[::1]:80", "127.0.0.1%lo:80", "0.0.0.0:*" → [address, port] */
function endpoint(s: string): [string, number] {
  const i = s.lastIndexOf(':');
  let addr = s.slice(0, i).replace(/%[^\]]*$/, '');
  if (addr.startsWith('[')) addr = addr.slice(1, -1);
  if (addr === '*') addr = '0.0.0.0';
  const port = s.slice(i + 1);
  return [addr, port === '*' ? 0 : Number(port)];
}

/** Parse `ss -tanH` lines. */
export function parseSs(text: string): TcpEntry[] {
  const out: TcpEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 5) continue;
    const state = SS_STATES[f[0]!];
    if (!state) continue;
    const [local, localPort] = endpoint(f[3]!);
    const [remote, remotePort] = endpoint(f[4]!);
    out.push({
      local,
      localPort,
      remote,
      remotePort,
      state,
      // for a listener ss shows the backlog as Send-Q; /proc/net/tcp shows 0
      txQueue: state === 'LISTEN' ? 0 : Number(f[2]),
      rxQueue: Number(f[1]),
    });
  }
  return out;
}

/** The TCP sockets on these ports; `read` reads /proc/net/tcp elsewhere (a namespace). */
export function labTcpStates(ports: number[], read?: (file: string) => string): TcpView {
  if (read || process.platform !== 'linux' || ssMissing || ports.length === 0) return tcpStates(ports, read);
  const filter = ports.flatMap((p, i) => [
    ...(i ? ['or'] : []),
    'sport',
    '=',
    `:${p}`,
    'or',
    'dport',
    '=',
    `:${p}`,
  ]);
  try {
    const text = execFileSync('ss', ['-tanH', 'state', 'all', '(', ...filter, ')'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 10_000,
    });
    const want = new Set(ports);
    return {
      available: true,
      entries: parseSs(text).filter((e) => want.has(e.localPort) || want.has(e.remotePort)),
    };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') ssMissing = true;
    return tcpStates(ports, read);
  }
}
