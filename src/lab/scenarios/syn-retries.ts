// The kernel's own connect timeout: a SYN nobody answers is retransmitted tcp_syn_retries times
// with doubling waits (1, 2, 4 … s); with the default 6 that is about 127 s before connect()
// fails with ETIMEDOUT. Shown live with TCP_SYNCNT 2 on the socket (≈ 7 s), next to the
// application timer of `connect-timeout`, which gives up when the program decides.

import net from 'node:net';
import { errorCode } from '../../core/errors.js';
import { boundPort, closeFd, setIntOption, socketFd } from '../../core/libc.js';
import { rawListenFd } from '../../core/listen.js';
import { Cleanup, Recorder, type ScenarioResult } from '../recorder.js';
import { connectLocal, waitFor } from '../util.js';

export async function synRetries({ syncnt = 2 } = {}): Promise<ScenarioResult> {
  const r = new Recorder(
    'syn-retries',
    "the kernel's own connect timeout: SYN retransmissions (tcp_syn_retries, TCP_SYNCNT)",
    'a robust TCP client and server, watched on the wire',
  );
  r.dependsOn(['tcp_syn_retries']);
  const c = new Cleanup();
  try {
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
    const t0 = performance.now();
    const s = net.connect({ host: '127.0.0.1', port });
    c.add(() => s.destroy());
    // net.connect() makes the socket and sends the SYN on the next tick: set its retry count then
    // (it counts retransmissions, so the first SYN being out already changes nothing)
    const failed = waitFor<[Error]>(s, 'connect', 30_000).then(
      () => [undefined as unknown as Error],
      (e: Error) => [e],
    );
    await new Promise((res) => setImmediate(res));
    const sfd = socketFd(s);
    if (sfd === undefined) throw new Error('the connecting socket has no descriptor yet');
    setIntOption(sfd, 'TCP_SYNCNT', syncnt);
    r.step(
      `connect with TCP_SYNCNT ${syncnt} and no timer of our own: retransmissions after 1 s, 2 s, … then the kernel gives up`,
    );
    const [err] = await failed;
    const secs = (performance.now() - t0) / 1000;
    const expected = 2 ** (syncnt + 1) - 1; // 1 + 2 + 4 … s of waiting
    r.step(`connect fails after ${secs.toFixed(1)} s: ${err ? errorCode(err) : 'it connected (unexpected)'}`);
    if (err) r.error(err);
    r.check(
      `ETIMEDOUT from the kernel after about ${expected} s (${syncnt} retransmissions)`,
      err !== undefined && errorCode(err) === 'ETIMEDOUT' && secs > expected * 0.8 && secs < expected * 1.6,
    );
    r.step(
      `with the default tcp_syn_retries the same connect would wait about ${2 ** (Number(r.kernel[0]?.value ?? 6) + 1) - 1} s; an application timer (echo-client --connect-timeout) decides sooner`,
    );
    return r.result();
  } finally {
    await c.run();
  }
}
