// A server that never closes its side of a connection the client has closed leaks a socket in
// CLOSE_WAIT for as long as it runs: CLOSE_WAIT has no timer. The client's side, closed and
// orphaned in FIN_WAIT2, does expire: after tcp_fin_timeout (60 s by default) — shown live here
// with a per-socket TCP_LINGER2 of 2 s.

import { execFileSync } from 'node:child_process';
import { setIntOption, socketFd, tcpInfo } from '../../core/libc.js';
import { LINUX_FACTS, readSysctl } from '../../core/sysctl.js';
import { captureUnavailable, startCapture } from '../capture.js';
import { Cleanup, Recorder, type ScenarioResult } from '../recorder.js';
import { connectLocal, holdingServer, waitFor } from '../util.js';
import { ackOfFin, nowUs, ssTimerMs } from '../wire.js';

export async function closeWait({ linger2 = 2 } = {}): Promise<ScenarioResult> {
  const r = new Recorder(
    'close-wait',
    'a server that never closes: CLOSE_WAIT forever, the peer’s FIN_WAIT2 expires',
    'bind errors in a one-to-one client/server; Linux socket programming basics',
  );
  // an orphaned FIN_WAIT2 is kept in a TIME_WAIT-table entry: with that table full
  // (tcp_max_tw_buckets) the kernel closes it at once, and the run says so
  r.needsTimeWait();
  r.dependsOn(['tcp_fin_timeout'], [LINUX_FACTS.closeWait]);
  const c = new Cleanup();
  try {
    // reads to the end, then keeps its socket open: the classic missing close()
    const { port } = await holdingServer(c);
    // the wire says when the client entered FIN_WAIT2: the ACK of its FIN
    const noWire = captureUnavailable();
    const wire = noWire ? undefined : startCapture('lo', { ports: [port] });
    c.add(() => wire?.stop());
    const client = await connectLocal(port, { allowHalfOpen: true });
    const local = client.localPort!;
    const fd = socketFd(client);
    if (fd !== undefined) setIntOption(fd, 'TCP_LINGER2', linger2);
    r.step(
      `client sets TCP_LINGER2 ${linger2} s (its FIN_WAIT2 lifetime once closed; tcp_fin_timeout otherwise)`,
    );
    const predicted = finTime(linger2, tcpInfo(client)?.rtoUs);
    let firstSeenUs: number | undefined;
    client.destroy(); // close(): FIN, and the socket is orphaned
    await waitFor(client, 'close');
    r.step('client closes; the server reads EOF but never calls close()');
    const both = await r.settle('client closed, server did not', [port], (es) => {
      if (firstSeenUs === undefined && es.some((e) => e.localPort === local && e.state === 'FIN_WAIT2'))
        firstSeenUs = nowUs();
      return ['FIN_WAIT2', 'CLOSE_WAIT'].every((st) => es.some((e) => e.state === st));
    });
    r.check(
      'client FIN_WAIT2, server CLOSE_WAIT',
      ['FIN_WAIT2', 'CLOSE_WAIT'].every((st) => both.some((e) => e.state === st)),
    );
    // the kernel's own countdown: ss -o shows the FIN_WAIT2 timer's time left (to the ms below 10 s)
    const expiryUs = timerRunsOut(local);
    // polled: the moment the FIN_WAIT2 socket is seen gone (late by the poll on a busy machine)
    let goneUs: number | undefined;
    const later = await r.settle(
      `${linger2} s later`,
      [port],
      (es) => {
        const gone = !es.some((e) => e.state === 'FIN_WAIT2');
        if (gone) goneUs ??= nowUs();
        return gone;
      },
      undefined,
      linger2 * 1000 + 4000,
    );
    r.step(`after ${linger2} s the orphaned FIN_WAIT2 is gone; the CLOSE_WAIT stays until the server closes`);
    r.check('the orphaned FIN_WAIT2 expired', !later.some((e) => e.state === 'FIN_WAIT2'));
    const ack = wire ? ackOfFin(await wire.stop(), { addr: '127.0.0.1', port: local }) : undefined;
    const fromUs = ack?.epochUs ?? firstSeenUs;
    const how = ack ? 'the ACK of its FIN on the wire' : `first seen in /proc/net/tcp (${noWire})`;
    if (fromUs !== undefined && expiryUs !== undefined && goneUs !== undefined) {
      const measured = (expiryUs - fromUs) / 1000;
      r.step(
        `the client's FIN_WAIT2 timer (its time left, read with ss -o) runs out ${(measured / 1000).toFixed(3)} s after ${how}; the socket was seen gone ${((goneUs - fromUs) / 1e6).toFixed(3)} s after it (polled); computed ${predicted.ms / 1000} s (${predicted.how})`,
      );
      r.check(
        `the FIN_WAIT2 lifetime is within 10 % of the computed ${predicted.ms / 1000} s`,
        r.timer("close-wait: the orphaned client's FIN_WAIT2 lifetime", predicted.ms, measured, {
          fromUs,
          toUs: expiryUs,
        }),
      );
      r.check('the socket is gone once its timer ran out', goneUs >= expiryUs - 50_000);
    } else r.check('the FIN_WAIT2 lifetime was measured', false);
    r.check(
      'the CLOSE_WAIT is still there',
      later.some((e) => e.state === 'CLOSE_WAIT'),
    );
    return r.result();
  } finally {
    await c.run();
  }
}

/**
 * An orphaned FIN_WAIT2 socket's lifetime (tcp_fin_time): TCP_LINGER2 when set, else
 * tcp_fin_timeout, but never under 3.5 RTOs.
 */
function finTime(linger2: number, rtoUs?: number): { ms: number; how: string } {
  const base = linger2 > 0 ? linger2 * 1000 : Number(readSysctl('tcp_fin_timeout') ?? 60) * 1000;
  const floor = rtoUs ? Math.round((rtoUs / 1000) * 3.5) : 0;
  const src = linger2 > 0 ? `TCP_LINGER2 ${linger2} s` : `tcp_fin_timeout ${base / 1000} s`;
  return floor > base
    ? { ms: floor, how: `3.5 × the RTO ${rtoUs! / 1000} ms, above ${src}` }
    : { ms: base, how: `${src}, above 3.5 × the RTO ${rtoUs ? `${rtoUs / 1000} ms` : '?'}` };
}

/**
 * When the FIN_WAIT2 timer of the socket on `local` runs out, µs since the epoch: its time left
 * as ss -o shows it ("1.988ms" is 1 s 988 ms; "59sec", "850ms", "2min"); undefined when the
 * socket is gone or ss is missing.
 */
function timerRunsOut(local: number): number | undefined {
  // ss's run time bounds the error: on a machine with many sockets it can be long, so the
  // shortest of a few reads is kept
  let best: { at: number; spread: number; left: number } | undefined;
  for (let i = 0; i < 5 && (best === undefined || best.spread > 20_000); i++) {
    let out: string;
    const before = nowUs();
    try {
      out = execFileSync('ss', ['-tanoH', 'state', 'fin-wait-2', '(', 'sport', '=', `:${local}`, ')'], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      });
    } catch {
      return undefined;
    }
    const after = nowUs();
    const left = ssTimerMs(/timer:\([a-z]+,([^,]*),/.exec(out)?.[1] ?? '');
    if (left === undefined) break;
    // ss read the timer somewhere between before and after: the middle
    if (best === undefined || after - before < best.spread)
      best = { at: (before + after) / 2, spread: after - before, left };
  }
  return best && best.at + best.left * 1000;
}
