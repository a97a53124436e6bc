// Why TIME_WAIT exists: the side that closed first sends the last ACK and cannot know it
// arrived. Here it is lost on purpose (a blackhole route on the server for the client's
// address, added before the client's FIN): the passive side, in LAST_ACK, resends its FIN; the TIME_WAIT side is still
// there to answer with the ACK again, and each resent FIN restarts its 60 s timer. Without
// TIME_WAIT the FIN would meet no socket and draw an RST. (It also keeps old duplicate
// segments of this connection from being taken for a new one on the same ports.)

import { execFileSync } from 'node:child_process';
import { captureUnavailable, type Segment } from '../capture.js';
import { CLIENT_ADDR, netnsUnavailable, SERVER_ADDR, withTwoHosts } from '../netns.js';
import { Recorder, type ScenarioResult } from '../recorder.js';
import { captureClientVeth, nowUs, ssTimerMs } from '../wire.js';

/**
 * The first TIME_WAIT socket on `port` in a namespace: its timer's time left (ss -tano), and when
 * it was read (µs since the epoch, the middle of ss's run).
 */
function timeWaitTimer(ns: string, port: number): { leftMs: number; atUs: number } | undefined {
  const before = nowUs();
  const out = execFileSync(
    'ip',
    ['netns', 'exec', ns, 'ss', '-tanoH', 'state', 'time-wait', '(', 'sport', '=', `:${port}`, ')'],
    { encoding: 'utf8' },
  );
  const atUs = (before + nowUs()) / 2;
  const leftMs = ssTimerMs(/timer:\(timewait,([^,]*),/.exec(out)?.[1] ?? '');
  return leftMs === undefined ? undefined : { leftMs, atUs };
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
    // the wire says when each of the client's FINs reached the server: TIME_WAIT restarts there
    const noWire = captureUnavailable();
    const wire = noWire ? undefined : await captureClientVeth(h);
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
    const earlyRead = timeWaitTimer(h.server, port);
    const early = earlyRead && earlyRead.leftMs / 1000;
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
    const lateRead = timeWaitTimer(h.server, port);
    const late = lateRead && lateRead.leftMs / 1000;
    r.step(
      `the server's TIME_WAIT timer: ${early?.toFixed(1) ?? '?'} s left at first; ${late?.toFixed(1) ?? '?'} s left ${elapsed.toFixed(1)} s later (without a restart it would be ${early === undefined ? '?' : (early - elapsed).toFixed(1)} s)`,
    );
    r.check(
      'each resent FIN restarted the TIME_WAIT timer (more time left than a plain countdown)',
      early !== undefined && late !== undefined && late > early - elapsed + 2,
    );
    // TIME_WAIT runs out 60 s after the last FIN it received: the one before each reading
    const fins = (wire ? await wire.stop() : []).filter((x) => x.sport !== port && x.flags.includes('FIN'));
    for (const [when, read] of [
      ['at first', earlyRead],
      ['later', lateRead],
    ] as const) {
      const fin = read && lastBefore(fins, read.atUs);
      if (!read || !fin) {
        r.step(`TIME_WAIT's length ${when} could not be timed: ${noWire ?? 'no FIN or no timer seen'}`);
        r.check(`TIME_WAIT's length ${when} is timed on the wire (or no capture here)`, !!noWire);
        continue;
      }
      const measured = (read.atUs + read.leftMs * 1000 - fin.epochUs) / 1000;
      r.step(
        `${when}: the server's TIME_WAIT runs out ${(measured / 1000).toFixed(3)} s after the client's last FIN before it was read (its time left as ss -o shows it, whole seconds above 9 s, so up to 1 s short, + the time since that FIN on the wire)`,
      );
      r.check(
        `TIME_WAIT ${when}: 60 s (TCP_TIMEWAIT_LEN) after the last FIN, within 10 %`,
        r.timer(`time-wait-why: TIME_WAIT, from the last FIN received (${when})`, 60_000, measured, {
          fromUs: fin.epochUs,
          toUs: read.atUs + read.leftMs * 1000,
        }),
      );
    }
    return r.result();
  });
}

/** the last segment of `list` stamped before `us` */
function lastBefore(list: Segment[], us: number): Segment | undefined {
  return list.filter((x) => x.epochUs < us).at(-1);
}
