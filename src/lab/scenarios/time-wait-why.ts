// Why TIME_WAIT exists: the side that closed first sends the last ACK and cannot know it
// arrived. Here it is lost on purpose (a blackhole route on the server for the client's
// address, added before the client's FIN): the passive side, in LAST_ACK, resends its FIN; the TIME_WAIT side is still
// there to answer with the ACK again, and each resent FIN restarts its 60 s timer. Without
// TIME_WAIT the FIN would meet no socket and draw an RST. (It also keeps old duplicate
// segments of this connection from being taken for a new one on the same ports.)

import { execFileSync } from 'node:child_process';
import { CLIENT_ADDR, netnsUnavailable, SERVER_ADDR, withTwoHosts } from '../netns.js';
import { Recorder, type ScenarioResult } from '../recorder.js';

/** The TIME_WAIT sockets in a namespace with their timer's remaining seconds (ss -tano). */
function timeWaitTimers(ns: string, port: number): number[] {
  const out = execFileSync(
    'ip',
    ['netns', 'exec', ns, 'ss', '-tanoH', 'state', 'time-wait', '(', 'sport', '=', `:${port}`, ')'],
    { encoding: 'utf8' },
  );
  return [...out.matchAll(/timer:\(timewait,([\d.]+)(ms|sec|min)/g)].map((m) =>
    m[2] === 'ms' ? Number(m[1]) / 1000 : m[2] === 'min' ? Number(m[1]) * 60 : Number(m[1]),
  );
}

export async function timeWaitWhy(): Promise<ScenarioResult> {
  const r = new Recorder(
    'time-wait-why',
    'why TIME_WAIT: the last ACK is lost, the peer resends its FIN, TIME_WAIT answers it and restarts',
    'bind errors in a one-to-one client/server; a robust TCP client and server, watched on the wire',
  );
  r.dependsOn(
    [],
    [
      'TIME_WAIT lasts 60 s on Linux (TCP_TIMEWAIT_LEN); a FIN that arrives in TIME_WAIT is ACKed again and restarts it',
    ],
  );
  const why = netnsUnavailable();
  if (why) {
    r.step(`skipped: ${why}`);
    return r.result(why);
  }
  return withTwoHosts(async (h) => {
    const server = h.spawnIn(h.server, { role: 'server', host: SERVER_ADDR, closeFirst: true });
    const { port } = await server.next('listening');
    const client = h.spawnIn(h.client, {
      role: 'client',
      host: SERVER_ADDR,
      port,
      options: {},
      mode: 'close-on-start',
    });
    await client.next('connected');
    await client.next('peer-fin');
    r.step(`the server ${SERVER_ADDR}:${port} closes first (FIN); the client ${CLIENT_ADDR} acknowledges it`);
    // from now on nothing the server sends reaches the client: its last ACK will be lost
    h.ip(h.server, 'route', 'add', 'blackhole', `${CLIENT_ADDR}/32`);
    r.step("a blackhole route on the server for the client's address: the server's last ACK will be lost");
    client.send({ type: 'start' }); // the client's FIN: it waits in LAST_ACK
    const t0 = performance.now();
    const first = await r.settle(
      'the client closed; the server’s last ACK is lost',
      [port],
      (es) => es.some((e) => e.state === 'TIME_WAIT'),
      undefined,
      3000,
      h.readIn(h.server),
    );
    r.check(
      'the server is in TIME_WAIT',
      first.some((e) => e.state === 'TIME_WAIT'),
    );
    const early = timeWaitTimers(h.server, port)[0];
    const client1 = await r.settle(
      'the client, its FIN unacknowledged',
      [port],
      (es) => es.some((e) => e.state === 'LAST_ACK'),
      undefined,
      3000,
      h.readIn(h.client),
    );
    r.check(
      'the client waits in LAST_ACK, resending its FIN',
      client1.some((e) => e.state === 'LAST_ACK'),
    );
    // the FIN is resent with doubling waits (0.2, 0.4, 0.8, 1.6, 3.2 s …): look after ~6 s
    await new Promise((res) => setTimeout(res, 6000));
    const elapsed = (performance.now() - t0) / 1000;
    const late = timeWaitTimers(h.server, port)[0];
    r.step(
      `the server's TIME_WAIT timer: ${early?.toFixed(1) ?? '?'} s left at first; ${late?.toFixed(1) ?? '?'} s left ${elapsed.toFixed(1)} s later (without a restart it would be ${early === undefined ? '?' : (early - elapsed).toFixed(1)} s)`,
    );
    r.check(
      'each resent FIN restarted the TIME_WAIT timer (more time left than a plain countdown)',
      early !== undefined && late !== undefined && late > early - elapsed + 2,
    );
    return r.result();
  });
}
