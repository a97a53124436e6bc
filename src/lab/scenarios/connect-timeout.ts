// A connect that nobody answers. A listener whose accept queue is full (backlog N,
// N+1 connections completed, nobody calls accept) makes the kernel drop new SYNs
// (tcp_abort_on_overflow = 0): the client retransmits its SYN until its own timeout.
import { connectTcp } from '../../core/connect.js';
import { errorCode } from '../../core/errors.js';
import { boundPort, closeFd } from '../../core/libc.js';
import { rawListenFd } from '../../core/listen.js';
import { Cleanup, loopSentinel, Recorder, type ScenarioResult } from '../recorder.js';
import { connectLocal } from '../util.js';
import { nowUs } from '../wire.js';

export async function connectTimeout({ timeoutMs = 1000 } = {}): Promise<ScenarioResult> {
  const r = new Recorder(
    'connect-timeout',
    'connect to a listener whose queue is full',
    'a robust TCP client and server, watched on the wire',
  );
  r.dependsOn(['tcp_syn_retries', 'tcp_abort_on_overflow', 'somaxconn']);
  const c = new Cleanup();
  try {
    // made with libc and never handed to Node: nothing ever accepts from it
    const fd = rawListenFd({ host: '127.0.0.1', port: 0, backlog: 1, reuseAddr: true, reusePort: false });
    c.add(() => closeFd(fd));
    const port = boundPort(fd);
    r.usePort(port);
    r.step(`listener on 127.0.0.1:${port} with backlog 1 that never calls accept()`);
    for (let i = 1; i <= 2; i++) {
      const s = await connectLocal(port);
      c.add(() => s.destroy());
      r.step(`connection ${i} completes (the kernel finishes the handshake and queues it)`);
    }
    const t0 = performance.now();
    const t0Us = nowUs();
    const attempt = connectTcp({ host: '127.0.0.1', port, connectTimeoutMs: timeoutMs });
    attempt.catch(() => {}); // awaited below
    // the give-up is read on this process's clock: a timer due with the client's tells how
    // late the event loop ran timers then (other work in this process, a loaded machine)
    const sentinel = loopSentinel(timeoutMs);
    c.add(() => sentinel.stop());
    // let connect() reach the kernel before the first (synchronous) read of the state table,
    // which takes long on a machine with many sockets
    for (let i = 0; i < 3; i++) await new Promise((res) => setImmediate(res));
    // look while the SYN is unanswered (the ETIMEDOUT below shows it never was)
    const pending = await r.settle(
      'while connection 3 waits',
      [port],
      (entries) => entries.length === 1,
      (e) => e.remotePort === port && e.state === 'SYN_SENT',
      timeoutMs * 0.8,
    );
    r.check('connection 3 sits in SYN_SENT: its SYN was dropped', pending.length === 1);
    try {
      const { socket } = await attempt;
      socket.destroy();
      r.step('connection 3 completed (unexpected)');
      r.check('connection 3 times out', false);
    } catch (err) {
      const ms = performance.now() - t0;
      const endUs = nowUs();
      const loopLateMs = sentinel.lateMs();
      r.step(
        `connection 3 gives up after ${ms.toFixed(0)} ms (--connect-timeout ${timeoutMs} ms): ${errorCode(err)}${loopLateMs > timeoutMs * 0.05 ? `; this process's event loop ran a timer due then ${loopLateMs} ms late` : ''}`,
      );
      r.error(err);
      r.check(
        'connection 3 ends with ETIMEDOUT at the client timeout',
        errorCode(err) === 'ETIMEDOUT' && ms >= timeoutMs * 0.95,
      );
      r.check(
        `it gives up within 10 % of --connect-timeout ${timeoutMs} ms`,
        r.timer(
          "connect-timeout: --connect-timeout (the client's own timer), from connect()",
          timeoutMs,
          ms,
          {
            fromUs: t0Us,
            toUs: endUs,
            loopLateMs,
          },
        ),
      );
    }
    return r.result();
  } finally {
    await c.run();
  }
}
