// connect errors that come from the routing table, not from the peer. In a
// namespace of our own: an `unreachable` route gives EHOSTUNREACH, an address with no route
// at all gives ENETUNREACH — both at once, no packet ever leaves the namespace.
import { netnsUnavailable, withTwoHosts } from '../netns.js';
import { Recorder, type ScenarioResult } from '../recorder.js';

export async function unreachable(): Promise<ScenarioResult> {
  const r = new Recorder(
    'unreachable',
    'EHOSTUNREACH and ENETUNREACH from the routing table',
    'Linux socket programming basics',
  );
  r.dependsOn(
    ['tcp_syn_retries'],
    [
      "these come from this host's own routing table, at once; a router's ICMP unreachable during connect fails it at once on Linux too (host-unreachable shows it on the wire), where BSD keeps it as a soft error and retransmits the SYN (the error comes after several retransmissions or its 75 s timer)",
    ],
  );
  const why = netnsUnavailable();
  if (why) {
    r.step(`skipped: ${why}`);
    return r.result(why);
  }
  return withTwoHosts(async (h) => {
    h.ip(h.client, 'route', 'add', 'unreachable', '198.18.5.5/32');
    r.step(
      `client namespace ${h.client}: on-link 198.18.0.0/24, route "unreachable 198.18.5.5", no default route`,
    );
    for (const [addr, want, why2] of [
      ['198.18.5.5', 'EHOSTUNREACH', 'the route says the host cannot be reached'],
      ['198.18.9.9', 'ENETUNREACH', 'there is no route to that network at all'],
    ] as const) {
      const child = h.spawnIn(h.client, { role: 'connect', host: addr, port: 7007, timeoutMs: 5000 });
      const res = await child.next('result', 15_000);
      r.step(`connect ${addr}:7007 → ${res.code} after ${Number(res.ms).toFixed(1)} ms (${why2})`);
      r.error(
        Object.assign(new Error(`connect ${res.code}`), {
          code: res.code,
          syscall: 'connect',
          address: addr,
          port: 7007,
        }),
      );
      r.check(`connect to ${addr} fails with ${want}`, res.code === want);
    }
    return r.result();
  });
}
