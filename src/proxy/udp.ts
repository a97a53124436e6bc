// echo-proxy --udp: a datagram session per client address (its own socket toward the
// upstream, so replies find their client), ended after an idle timeout. Each datagram passes
// the faults of its direction: drop, corrupt, duplicate, reorder (held until the next one, at
// most 50 ms) and latency (order kept). Toxicity is drawn per datagram, as echo-server's p=.

import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import { type Fault, flipOneBit, latencyDelay } from '../core/faults.js';
import type { Logger } from '../core/log.js';
import { formatAddress } from '../core/parse.js';
import { copyTotals, emptyTotals, type ServerTotals } from '../core/records.js';
import type { LiveConnection } from '../server/listener.js';
import type { LiveFaults } from './forward.js';

/** One direction's per-datagram faults. */
class DatagramFaults {
  private held: (() => void) | undefined;
  private heldTimer: NodeJS.Timeout | undefined;
  private lastAt = 0;
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(
    private readonly stream: 'upstream' | 'downstream',
    private readonly faults: LiveFaults,
  ) {}

  private chosen(): Partial<Record<string, Fault>> {
    const by: Partial<Record<string, Fault>> = {};
    for (const t of this.faults.current())
      if ((t.fault.stream ?? 'downstream') === this.stream && Math.random() < t.toxicity)
        by[t.fault.kind] = t.fault;
    return by;
  }

  private later(send: () => void, lat: Fault | undefined): void {
    if (!lat) {
      send();
      return;
    }
    const at = Math.max(performance.now() + latencyDelay(lat), this.lastAt);
    this.lastAt = at;
    const t = setTimeout(
      () => {
        this.timers.delete(t);
        send();
      },
      Math.max(0, Math.ceil(at - performance.now())),
    );
    this.timers.add(t);
  }

  pass(msg: Buffer, send: (b: Buffer) => void): void {
    const by = this.chosen();
    if (by.drop && Math.random() < by.drop.chance!) return;
    const out = by.corrupt && msg.length && Math.random() < by.corrupt.chance! ? flipOneBit(msg) : msg;
    const copies = by.duplicate && Math.random() < by.duplicate.chance! ? 2 : 1;
    const mine = () => {
      for (let i = 0; i < copies; i++) send(out);
    };
    if (this.held) {
      const prev = this.held;
      this.held = undefined;
      clearTimeout(this.heldTimer);
      this.later(() => {
        mine();
        prev();
      }, by.latency);
      return;
    }
    if (by.reorder && Math.random() < by.reorder.chance!) {
      this.held = mine;
      this.heldTimer = setTimeout(() => {
        const h = this.held;
        this.held = undefined;
        h?.();
      }, 50);
      return;
    }
    this.later(mine, by.latency);
  }

  dispose(): void {
    clearTimeout(this.heldTimer);
    this.held = undefined;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }
}

interface Session {
  sock: dgram.Socket;
  timer: NodeJS.Timeout;
  down: DatagramFaults;
  since: number;
  bytesIn: number;
  bytesOut: number;
}

export interface UdpProxy {
  address: { address: string; port: number; family: string };
  /** sessions as connections: those started, those open; bytes from and to clients of those ended */
  stats(): ServerTotals;
  /** the open sessions (peer, since, bytes each way) */
  connections(): LiveConnection[];
  close(): Promise<void>;
}

export async function startUdpProxy(o: {
  name: string;
  listen: { host: string; port: number };
  upstream: () => { host: string; port: number };
  faults: LiveFaults;
  idleTimeoutMs: number;
  logger: Logger;
}): Promise<UdpProxy> {
  const server = dgram.createSocket(isIPv6(o.listen.host) ? 'udp6' : 'udp4');
  const sessions = new Map<string, Session>();
  const up = new DatagramFaults('upstream', o.faults);
  const totals = emptyTotals();
  const end = (key: string) => {
    const s = sessions.get(key);
    if (!s) return;
    sessions.delete(key);
    totals.bytesIn += s.bytesIn;
    totals.bytesOut += s.bytesOut;
    clearTimeout(s.timer);
    s.down.dispose();
    s.sock.close();
  };
  server.on('message', (msg, rinfo) => {
    const key = formatAddress(rinfo.address, rinfo.port);
    let s = sessions.get(key);
    const target = o.upstream();
    if (!s) {
      const sock = dgram.createSocket(isIPv6(target.host) ? 'udp6' : 'udp4');
      const down = new DatagramFaults('downstream', o.faults);
      const session: Session = {
        sock,
        down,
        timer: setTimeout(() => end(key), o.idleTimeoutMs),
        since: Date.now(),
        bytesIn: 0,
        bytesOut: 0,
      };
      s = session;
      totals.connections++;
      sock.on('message', (reply, from) => {
        if (from.port !== target.port) return; // only the upstream's answers go back
        session.timer.refresh();
        down.pass(reply, (b) => {
          session.bytesOut += b.length;
          server.send(b, rinfo.port, rinfo.address);
        });
      });
      sock.on('error', (err) =>
        o.logger.debug(
          { proxy: o.name, peer: key, code: (err as NodeJS.ErrnoException).code },
          `${o.name}: udp ${key}: ${err.message}`,
        ),
      );
      sessions.set(key, s);
    }
    s.timer.refresh();
    s.bytesIn += msg.length;
    const sock = s.sock;
    up.pass(msg, (b) => sock.send(b, target.port, target.host));
  });
  server.on('error', (err) =>
    o.logger.warn({ proxy: o.name }, `${o.name}: udp socket error: ${err.message}`),
  );
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.bind(o.listen.port, o.listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    address: server.address(),
    // as a TCP server's: bytes of the sessions ended; connections() has the open ones'
    stats: () => ({ ...copyTotals(totals), active: sessions.size }),
    connections: () =>
      [...sessions].map(([peer, x]) => ({
        peer,
        since: x.since,
        bytesIn: x.bytesIn,
        bytesOut: x.bytesOut,
        buffered: 0,
        reading: true,
      })),
    close: async () => {
      for (const key of [...sessions.keys()]) end(key);
      up.dispose();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
