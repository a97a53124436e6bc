// the two listen queues. Completed connections wait in the accept queue (up to
// backlog + 1 on Linux) until the server calls accept(); when it is full, new SYNs are
// dropped and the client retransmits them (1 s, 3 s, …) — connect just takes longer.
import net from 'node:net';
import { boundPort, closeFd } from '../../core/libc.js';
import { rawListenFd } from '../../core/listen.js';
import { captureUnavailable, startCapture } from '../capture.js';
import { Cleanup, Recorder, type ScenarioResult } from '../recorder.js';
import { labTcpStates } from '../states.js';
import { liveSynSchedule } from '../timers.js';
import { closeServer, connectLocal } from '../util.js';
import { nowUs } from '../wire.js';

/**
 * `acceptAfterMs`: how long the late client waits before accept() begins (300 ms: before the
 * first retransmission; a later start lets the first retransmission be dropped too, as a stalled server does).
 */
export async function backlog({ n = 2, acceptAfterMs = 300 } = {}): Promise<ScenarioResult> {
  const r = new Recorder(
    'backlog',
    'the accept queue fills, SYNs are dropped, accept() drains it',
    'Linux socket programming basics',
  );
  r.dependsOn(['somaxconn', 'tcp_max_syn_backlog', 'tcp_abort_on_overflow', 'tcp_syncookies']);
  const c = new Cleanup();
  try {
    const fd = rawListenFd({ host: '127.0.0.1', port: 0, backlog: n, reuseAddr: true, reusePort: false });
    const port = boundPort(fd);
    r.usePort(port);
    const server = net.createServer();
    let fdOwned = false;
    c.add(() => (fdOwned ? closeServer(server) : Promise.resolve(closeFd(fd))));
    r.step(`listen(fd, ${n}) on 127.0.0.1:${port}; nobody calls accept() yet`);
    for (let i = 1; i <= n + 1; i++) {
      const s = await connectLocal(port);
      c.add(() => s.destroy());
    }
    r.step(`${n + 1} connections complete the handshake without accept() (backlog + 1)`);
    const listener = labTcpStates([port]).entries.find((e) => e.state === 'LISTEN');
    // a listening socket's rx_queue in /proc/net/tcp is its accept queue; its tx_queue is 0, not
    // the backlog (ss -ltn shows the accept queue as Recv-Q and the backlog as Send-Q)
    r.step(
      `the listener's accept queue holds ${listener?.rxQueue} (ss -ltn: Recv-Q ${listener?.rxQueue}, Send-Q ${n} = the backlog we set); Linux lets backlog + 1 in`,
    );
    r.check(`accept queue holds ${n + 1}`, listener?.rxQueue === n + 1);
    // the wire says when the dropped SYN was retransmitted (the kernel's stamps, not this loop's)
    const noWire = captureUnavailable();
    // the sent copies: stamped when the client's kernel transmitted each SYN (its timer)
    const wire = noWire ? undefined : startCapture('lo', { ports: [port], sent: true });
    c.add(() => wire?.stop());
    const t0 = performance.now();
    const t0Us = nowUs();
    const late = net.connect({ host: '127.0.0.1', port });
    c.add(() => late.destroy());
    let connectedAt: number | undefined;
    // read at 'connect': the server closes at once, and a closed socket has no localPort
    let latePort: number | undefined;
    const connected = new Promise<void>((res) =>
      late.once('connect', () => {
        connectedAt = performance.now() - t0;
        latePort = late.localPort;
        res();
      }),
    );
    await new Promise((res) => setTimeout(res, acceptAfterMs));
    const pending = r.snapshot(
      'queue full: the next SYN is dropped',
      [port],
      (e) => e.state !== 'ESTABLISHED',
    );
    r.check(
      'the next client waits in SYN_SENT',
      pending.some((e) => e.remotePort === port && e.state === 'SYN_SENT'),
    );
    // now start accepting: Node takes the fd and drains the queue
    server.on('connection', (s) => s.destroy());
    const acceptUs = nowUs();
    server.listen({ fd }, n);
    fdOwned = true;
    const acceptFrom = performance.now() - t0;
    // the first SYN retransmission after accept() began finds room: when the kernel sends it
    const sends = liveSynSchedule()?.sends ?? [];
    r.step('the server starts calling accept(): the queue drains');
    await Promise.race([connected, new Promise((res) => setTimeout(res, 8000))]);
    if (connectedAt !== undefined) {
      const segments = wire ? await wire.stop() : [];
      const syns = segments.filter((x) => x.sport === latePort && x.flags.join() === 'SYN');
      // the queue had room once accept() ran: by the time the server closed the first connection
      // it accepted (its FIN or RST, the kernel's stamp); this loop may run accept() well after
      // listen() when it is busy
      const roomByUs = segments.find(
        (x) =>
          x.sport === port && x.epochUs >= acceptUs && (x.flags.includes('FIN') || x.flags.includes('RST')),
      )?.epochUs;
      if (syns.length >= 2) {
        // the last SYN is the one that found room: retransmission number syns.length - 1
        const first = syns[0]!.epochUs;
        const last = syns.at(-1)!.epochUs;
        const measured = (last - first) / 1000;
        const predicted = sends[syns.length - 1];
        r.step(
          `the waiting client connects after ${connectedAt.toFixed(0)} ms. On the wire: ${syns.length} SYNs, at ${syns.map((x) => ((x.epochUs - first) / 1000).toFixed(0)).join(', ')} ms; accept() was asked for at ${((acceptUs - first) / 1000).toFixed(0)} ms${roomByUs === undefined ? '' : ` and had made room by ${((roomByUs - first) / 1000).toFixed(0)} ms (the server's first close)`}; the last SYN found room`,
        );
        r.check(
          'the SYN that found room is the first one sent after accept() made room (the one before it was dropped)',
          last > acceptUs && syns.at(-2)!.epochUs < (roomByUs ?? acceptUs + 250_000),
        );
        if (predicted !== undefined)
          r.check(
            `retransmission ${syns.length - 1} leaves within 10 % of the computed ${predicted} ms after the first SYN (tcp_syn_linear_timeouts, tcp_syn_retries)`,
            r.timer('backlog: the dropped SYN retransmitted into room', predicted, measured, {
              fromUs: first,
              toUs: last,
            }),
          );
      } else {
        // without a capture: from connect() to the 'connect' event, on this process's clock,
        // against the first retransmission due after accept() began
        const predicted = sends.find((x) => x > acceptFrom);
        r.step(
          `the waiting client connects after ${connectedAt.toFixed(0)} ms: its SYN retransmission found room (computed: the first retransmission after accept() began at ${acceptFrom.toFixed(0)} ms, sent ${predicted ?? '?'} ms after the first SYN); not captured (${noWire ?? 'fewer than two SYNs seen'}): timed on this process's clock`,
        );
        if (predicted !== undefined)
          r.check(
            `the client connects within 10 % of the computed ${predicted} ms (tcp_syn_linear_timeouts, tcp_syn_retries)`,
            r.timer('backlog: the dropped SYN retransmitted into room', predicted, connectedAt, {
              fromUs: t0Us,
              toUs: t0Us + connectedAt * 1000,
            }),
          );
      }
    }
    r.check(
      'the waiting client connects once the queue has room (SYN retransmitted)',
      connectedAt !== undefined && connectedAt > 500,
    );
    return r.result();
  } finally {
    await c.run();
  }
}
