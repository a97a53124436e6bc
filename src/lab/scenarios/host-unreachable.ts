// An ICMP destination unreachable from a router during connect, on the wire. Three namespaces:
// client — router (forwarding) — server. The router has an `unreachable` route (it answers ICMP
// host unreachable at once), a `prohibit` route (ICMP communication administratively
// prohibited, code 13), and on the server's link an address nobody owns (its ARP goes
// unanswered; after its probes it answers ICMP host unreachable). The client's link is captured:
// the test reads the ICMP there, and that no SYN followed it. Linux's tcp_v4_err reports an ICMP
// unreachable to a socket in SYN_SENT and closes it at once; BSD keeps it as a soft error and
// retransmits the SYN (the error comes after several retransmissions or the 75 s timer).

import os from 'node:os';
import type { Segment } from '../capture.js';
import { icmpName } from '../ladder.js';
import {
  CLIENT_ADDR,
  netnsUnavailable,
  ROUTED_SERVER_ADDR,
  ROUTER_ADDR,
  ROUTER_SERVER_SIDE_ADDR,
  withRouter,
} from '../netns.js';
import { Recorder, type ScenarioResult } from '../recorder.js';
import { liveSynSchedule } from '../timers.js';

/** the port every failing connect aims at (no host there to answer) */
const PORT = 7007;
/** an address the client's own table prohibits */
const LOCAL_PROHIBIT = '198.18.3.6';

interface Target {
  addr: string;
  how: string;
  /** the ICMP code the router answers with (type 3) */
  code: number;
  /** the router answers after its ARP probes, not at once */
  arp?: boolean;
}

const TARGETS: Target[] = [
  { addr: '198.18.2.5', how: 'the router has a route "unreachable" for it', code: 1 },
  { addr: '198.18.2.6', how: 'the router has a route "prohibit" for it', code: 13 },
  {
    addr: '198.18.1.9',
    how: "on the server's link, an address nobody owns: the router's ARP goes unanswered",
    code: 1,
    arp: true,
  },
];

const ms = (us: number) => (us / 1000).toFixed(3);

export async function hostUnreachable(): Promise<ScenarioResult> {
  const r = new Recorder(
    'host-unreachable',
    'ICMP host unreachable from a router during connect: Linux fails the connect at once, no SYN retry',
    'Linux socket programming basics; a robust TCP client and server, watched on the wire',
  );
  r.dependsOn(
    ['tcp_syn_retries'],
    [
      'RFC 1122 calls ICMP net/host unreachable a soft error; Linux (tcp_v4_err) makes an exception for a socket in SYN_SENT: the error is reported and the socket closed at once, so connect() fails with no further SYN (only if a system call holds the socket’s lock at that instant is it kept as a soft error and the SYN retried)',
      '4.4BSD (tcp_notify), the tutorial’s description: in SYN_SENT the ICMP is kept as a soft error and the SYN retransmitted; connect() fails only after more than 3 retransmissions (when an ICMP comes again) or when the 75 s connection timer runs out, with EHOSTUNREACH instead of ETIMEDOUT',
      'Linux maps each ICMP unreachable code to an errno (icmp_err_convert): host unreachable (1) and administratively prohibited (13) both give EHOSTUNREACH, net unreachable (0) ENETUNREACH; EACCES comes only from a "prohibit" route in this host’s own table',
      'a router answers at once for an unreachable or prohibit route; for a neighbour that never answers ARP only after (mcast_solicit + app_solicit) × retrans_time_ms of its interface (3 × 1 s by default), so the client retransmits its SYN meanwhile',
      'on an established connection the same ICMP stays a soft error on Linux too (sk_err_soft; reported only with IP_RECVERR): the retransmissions go on',
    ],
  );
  const why = netnsUnavailable();
  if (why) {
    r.step(`skipped: ${why}`);
    return r.result(why);
  }
  return withRouter(async (h) => {
    h.ip(h.router, 'route', 'add', 'unreachable', `${TARGETS[0]!.addr}/32`);
    h.ip(h.router, 'route', 'add', 'prohibit', `${TARGETS[1]!.addr}/32`);
    r.step(
      `Linux ${os.release()}: client ${CLIENT_ADDR} — router ${ROUTER_ADDR} / ${ROUTER_SERVER_SIDE_ADDR} (ip_forward 1) — server ${ROUTED_SERVER_ADDR}; the client's link is captured`,
    );
    const server = h.spawnIn(h.server, { role: 'server', host: ROUTED_SERVER_ADDR });
    const { port } = await server.next('listening');
    r.usePort(port, PORT);
    const control = await h
      .spawnIn(h.client, { role: 'connect', host: ROUTED_SERVER_ADDR, port, timeoutMs: 10_000 })
      .next('result', 20_000);
    r.step(`connect ${ROUTED_SERVER_ADDR}:${port} through the router → ${control.code}`);
    r.check('the router forwards: a connect to the server behind it succeeds', control.code === 'CONNECTED');

    const results = new Map<string, Record<string, any>>();
    for (const t of TARGETS) {
      r.step(`connect ${t.addr}:${PORT} (${t.how})`);
      const res = await h
        .spawnIn(h.client, { role: 'connect', host: t.addr, port: PORT, timeoutMs: 20_000 })
        .next('result', 30_000);
      results.set(t.addr, res);
      r.step(`connect ${t.addr}:${PORT} → ${res.code} after ${Number(res.ms).toFixed(1)} ms`);
      if (res.code !== 'CONNECTED' && res.code !== 'ETIMEDOUT')
        r.error(
          Object.assign(new Error(`connect ${res.code}`), {
            code: res.code,
            syscall: 'connect',
            address: t.addr,
            port: PORT,
          }),
          Number(res.atUs),
        );
    }
    // keep capturing past the moment the next SYN retransmission would have been due had the
    // connect carried on (the schedule from the live settings; 1 s apart at first)
    const sends = liveSynSchedule()?.sends ?? [0, 1000, 2000, 3000, 4000, 5000];
    const last = results.get(TARGETS[2]!.addr)!;
    const nextDue = sends.find((x) => x > Number(last.ms)) ?? Number(last.ms) + 1000;
    const quietUntil = performance.now() + nextDue - Number(last.ms) + 500;
    // meanwhile, the contrast: the same kind of route in the client's own table fails connect()
    // before any packet leaves, and a local "prohibit" is EACCES where the router's code 13
    // was EHOSTUNREACH
    h.ip(h.client, 'route', 'add', 'prohibit', `${LOCAL_PROHIBIT}/32`);
    const local = await h
      .spawnIn(h.client, { role: 'connect', host: LOCAL_PROHIBIT, port: PORT, timeoutMs: 5000 })
      .next('result', 20_000);
    await new Promise((res) => setTimeout(res, Math.max(0, quietUntil - performance.now())));
    const stopAtUs = Date.now() * 1000;
    const segs = await h.captured();

    const routerDev = h.routerIf.server;
    const neigh = (name: string) =>
      Number(h.readIn(h.router)(`/proc/sys/net/ipv4/neigh/${routerDev}/${name}`).trim());
    for (const t of TARGETS) {
      const res = results.get(t.addr)!;
      const syns = segs.filter((s) => !s.icmp && s.dst === t.addr && s.flags.join() === 'SYN');
      const icmp = segs.find((s): s is Segment & Required<Pick<Segment, 'icmp'>> =>
        Boolean(s.icmp && s.icmp.quoted.dst === t.addr),
      );
      const { name, errno } = icmpName(3, t.code);
      if (!icmp || syns.length === 0) {
        r.step(`${t.addr}: the capture shows ${syns.length} SYN(s) and no ICMP error about them`);
        r.check(`${t.addr}: the router's ICMP ${name} is on the client's link`, false);
        continue;
      }
      const seen = icmpName(icmp.icmp.type, icmp.icmp.code);
      const before = syns.filter((s) => s.epochUs <= icmp.epochUs);
      const after = syns.filter((s) => s.epochUs > icmp.epochUs);
      r.step(
        `${t.addr}: SYN sent at ${before.map((s) => ms(s.epochUs - syns[0]!.epochUs)).join(', ')} ms; at ${ms(icmp.epochUs - syns[0]!.epochUs)} ms ICMP type ${icmp.icmp.type} code ${icmp.icmp.code} (${seen.name}) from ${icmp.src}, quoting ${icmp.icmp.quoted.src}:${icmp.icmp.quoted.sport} → ${icmp.icmp.quoted.dst}:${icmp.icmp.quoted.dport}`,
      );
      r.check(
        `${t.addr}: the router ${ROUTER_ADDR} answers ICMP type 3 code ${t.code} (${name}) quoting the client's SYN`,
        icmp.icmp.type === 3 &&
          icmp.icmp.code === t.code &&
          icmp.src === ROUTER_ADDR &&
          icmp.icmp.quoted.sport === syns[0]!.sport &&
          icmp.icmp.quoted.dport === PORT,
      );
      // the SYN the kernel would have sent next, had it taken the ICMP as a soft error
      const dueUs = syns[0]!.epochUs + (sends[before.length] ?? sends.at(-1)! + 1000) * 1000;
      const quietMs = (stopAtUs - icmp.epochUs) / 1000;
      r.step(
        `${t.addr}: ${after.length} SYN(s) after the ICMP in the ${quietMs.toFixed(0)} ms captured after it (the next retransmission was due ${((dueUs - icmp.epochUs) / 1000).toFixed(0)} ms after it)`,
      );
      r.check(
        `${t.addr}: no SYN after the ICMP (Linux does not retry; BSD would)`,
        after.length === 0 && stopAtUs > dueUs,
      );
      const lagMs = (Number(res.atUs) - icmp.epochUs) / 1000;
      r.step(
        `${t.addr}: connect() failed with ${res.code} ${lagMs.toFixed(2)} ms after the ICMP arrived (${errno} is what Linux maps code ${t.code} to)`,
      );
      r.check(`${t.addr}: connect() fails with ${errno}`, res.code === errno);
      r.check(
        `${t.addr}: the failure follows the ICMP at once (within 500 ms; the next SYN was due after ${((dueUs - icmp.epochUs) / 1000).toFixed(0)} ms)`,
        lagMs > -2 && lagMs < 500,
      );
      if (t.arp) {
        const probes = neigh('mcast_solicit') + neigh('app_solicit');
        const every = neigh('retrans_time_ms');
        const measured = (icmp.epochUs - syns[0]!.epochUs) / 1000;
        const within = r.timer(
          `the router's ARP gives up: ${probes} probes × ${every} ms, then ICMP host unreachable`,
          probes * every,
          measured,
        );
        r.step(
          `${t.addr}: the router's ARP (${probes} probes ${every} ms apart) gave up after ${measured.toFixed(0)} ms; meanwhile the client retransmitted its SYN ${before.length - 1} time(s)`,
        );
        r.check(
          `${t.addr}: the ICMP comes when the router's ARP gives up (${probes * every} ms, within 10 %), after SYN retransmissions`,
          within && before.length >= 2,
        );
      }
    }
    r.step(
      `a route "prohibit" for ${LOCAL_PROHIBIT} in the client's own table: connect ${LOCAL_PROHIBIT}:${PORT} → ${local.code} after ${Number(local.ms).toFixed(1)} ms`,
    );
    if (local.code !== 'CONNECTED' && local.code !== 'ETIMEDOUT')
      r.error(
        Object.assign(new Error(`connect ${local.code}`), {
          code: local.code,
          syscall: 'connect',
          address: LOCAL_PROHIBIT,
          port: PORT,
        }),
        Number(local.atUs),
      );
    r.check(
      "the client's own prohibit route: EACCES at once, no packet on the link (the router's, by ICMP code 13, gave EHOSTUNREACH)",
      local.code === 'EACCES' &&
        !segs.some((x) => x.dst === LOCAL_PROHIBIT || x.icmp?.quoted.dst === LOCAL_PROHIBIT),
    );
    r.step(
      'what 4.4BSD does (the tutorial): keeps the ICMP as a soft error and retransmits the SYN; connect() fails with EHOSTUNREACH only after several retransmissions or its 75 s timer',
    );
    return r.result();
  });
}
