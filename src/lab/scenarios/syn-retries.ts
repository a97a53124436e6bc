// The kernel's own connect timeout: a SYN nobody answers is retransmitted on a schedule the
// kernel computes from tcp_syn_retries (or TCP_SYNCNT on the socket) and, since Linux 6.5,
// tcp_syn_linear_timeouts (the first N retransmissions 1 s apart, then doubling waits); then
// connect() fails with ETIMEDOUT. The schedule is computed from this machine's settings
// (timers.ts) and checked against the SYNs seen on the wire. Shown live with TCP_SYNCNT 2,
// next to the application timer of `connect-timeout`, which gives up when the program decides.

import net from 'node:net';
import { errorCode } from '../../core/errors.js';
import { boundPort, closeFd, setIntOption, socketFd } from '../../core/libc.js';
import { rawListenFd } from '../../core/listen.js';
import { type Capture, captureUnavailable, startCapture } from '../capture.js';
import { Cleanup, loopSentinel, Recorder, type ScenarioResult } from '../recorder.js';
import { describeSchedule, liveSynSchedule, synLinearTimeouts, synSchedule } from '../timers.js';
import { connectLocal, waitFor } from '../util.js';

export async function synRetries({ syncnt = 2 } = {}): Promise<ScenarioResult> {
  const r = new Recorder(
    'syn-retries',
    "the kernel's own connect timeout: SYN retransmissions (tcp_syn_retries, TCP_SYNCNT, tcp_syn_linear_timeouts)",
    'a robust TCP client and server, watched on the wire',
  );
  r.dependsOn(['tcp_syn_retries', 'tcp_syn_linear_timeouts']);
  const c = new Cleanup();
  try {
    const plan = synSchedule(syncnt, synLinearTimeouts());
    // a listener with a full accept queue drops SYNs: nobody answers
    const fd = rawListenFd({ host: '127.0.0.1', port: 0, backlog: 1, reuseAddr: true, reusePort: false });
    c.add(() => closeFd(fd));
    const port = boundPort(fd);
    r.usePort(port);
    for (let i = 0; i < 2; i++) {
      const s = await connectLocal(port);
      c.add(() => s.destroy());
    }
    r.step(`a listener on ${port} whose accept queue is full drops every new SYN`);
    // the SYNs themselves, when a capture can run here: the schedule is checked against them
    let cap: Capture | undefined;
    if (!captureUnavailable()) {
      // the sent copies: when the retransmission timer fired, not when lo delivered the SYN
      cap = startCapture('lo', { ports: [port], sent: true });
      const running = cap;
      c.add(() => running.stop());
    }
    const t0 = performance.now();
    const s = net.connect({ host: '127.0.0.1', port });
    c.add(() => s.destroy());
    // ETIMEDOUT is read on this process's clock: a timer due when the kernel should give up
    // tells how late the event loop ran then (other work in this process, a loaded machine)
    const sentinel = loopSentinel(plan.etimedoutMs);
    c.add(() => sentinel.stop());
    // net.connect() makes the socket and sends the SYN on the next tick: set its retry count then
    // (it counts retransmissions, so the first SYN being out already changes nothing)
    const failed = waitFor<[Error]>(s, 'connect', plan.etimedoutMs * 2 + 10_000).then(
      () => [undefined as unknown as Error],
      (e: Error) => [e],
    );
    await new Promise((res) => setImmediate(res));
    const sfd = socketFd(s);
    if (sfd === undefined) throw new Error('the connecting socket has no descriptor yet');
    setIntOption(sfd, 'TCP_SYNCNT', syncnt);
    r.step(
      `connect with TCP_SYNCNT ${syncnt} and no timer of our own; computed from tcp_syn_linear_timeouts ${plan.linear}: ${describeSchedule(plan)}`,
    );
    const localPort = s.localPort;
    const [err] = await failed;
    const ms = performance.now() - t0;
    const loopLateMs = sentinel.lateMs();
    r.step(
      `connect fails after ${(ms / 1000).toFixed(2)} s: ${err ? errorCode(err) : 'it connected (unexpected)'}${loopLateMs > 100 ? `; this process's event loop ran a timer due then ${loopLateMs} ms late` : ''}`,
    );
    if (err) r.error(err);
    r.check(
      'connect() fails with ETIMEDOUT from the kernel',
      err !== undefined && errorCode(err) === 'ETIMEDOUT',
    );
    if (cap) {
      const syns = (await cap.stop()).filter(
        (x) =>
          x.dport === port && x.flags.join() === 'SYN' && (localPort === undefined || x.sport === localPort),
      );
      const first = syns[0];
      const seen = syns.map((x) => (x.us - first!.us) / 1000);
      r.step(`on the wire: ${syns.length} SYNs, at ${seen.map((x) => (x / 1000).toFixed(2)).join(', ')} s`);
      r.check(`${plan.sends.length - 1} retransmissions, as computed`, syns.length === plan.sends.length);
      let all = true;
      plan.sends.slice(1).forEach((p, i) => {
        all = r.timer(`SYN retransmission ${i + 1}`, p, seen[i + 1]) && all;
      });
      r.check('every retransmission within 10 % of its computed time', all);
      // ETIMEDOUT: measured from the first SYN on the wire to the error
      const base = first ? first.epochUs / 1000 - (performance.timeOrigin + t0) : 0;
      r.check(
        `ETIMEDOUT within 10 % of the computed ${plan.etimedoutMs / 1000} s`,
        r.timer('ETIMEDOUT', plan.etimedoutMs, ms - base, { loopLateMs }),
      );
    } else {
      r.check(
        `ETIMEDOUT within 10 % of the computed ${plan.etimedoutMs / 1000} s`,
        r.timer('ETIMEDOUT', plan.etimedoutMs, ms, { loopLateMs }),
      );
    }
    const dflt = liveSynSchedule();
    if (dflt)
      r.step(
        `without TCP_SYNCNT, this machine's tcp_syn_retries ${dflt.retries}: ${describeSchedule(dflt)}; an application timer (echo-client --connect-timeout) decides sooner`,
      );
    return r.result();
  } finally {
    await c.run();
  }
}
