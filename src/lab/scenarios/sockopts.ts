// SO_TYPE of a TCP and a UDP socket, SO_SNDBUF before and after
// setting it — Linux doubles the value for its bookkeeping — and the rest of the options
// read back as echo-server --verbose reports them.
import dgram from 'node:dgram';
import net from 'node:net';
import { applySocketOptions, formatReport, readSocketOptions } from '../../core/sockopts.js';
import { Cleanup, Recorder, type ScenarioResult } from '../recorder.js';
import { closeServer, connectLocal, listenLocal, waitFor } from '../util.js';

export async function sockopts({ sendBuffer = 16384 } = {}): Promise<ScenarioResult> {
  const r = new Recorder(
    'sockopts',
    'get, set and read back socket options',
    'a first TCP client and server',
  );
  r.dependsOn([], ["Linux doubles SO_SNDBUF and SO_RCVBUF: the other half is the kernel's bookkeeping"]);
  const c = new Cleanup();
  try {
    const server = net.createServer();
    const port = await listenLocal(server);
    r.usePort(port);
    c.add(() => closeServer(server));
    const tcp = await connectLocal(port);
    c.add(() => tcp.destroy());
    const udp = dgram.createSocket('udp4');
    udp.bind(0, '127.0.0.1');
    await waitFor(udp, 'listening');
    c.add(() => new Promise<void>((res) => udp.close(() => res())));
    const before = readSocketOptions(tcp);
    r.step(`tcp socket: SO_TYPE ${before.SO_TYPE}; udp socket: SO_TYPE ${readSocketOptions(udp).SO_TYPE}`);
    r.step(`tcp SO_SNDBUF before: ${before.SO_SNDBUF}`);
    const reports = applySocketOptions(tcp, {
      sendBuffer,
      noDelay: true,
      keepAlive: true,
      keepAliveIdleMs: 30_000,
      keepAliveIntervalMs: 5000,
      keepAliveCount: 4,
    });
    for (const rep of reports) r.step(formatReport(rep));
    const after = readSocketOptions(tcp);
    r.check('SO_TYPE reads SOCK_STREAM for TCP', before.SO_TYPE === 'SOCK_STREAM');
    r.check('SO_TYPE reads SOCK_DGRAM for UDP', readSocketOptions(udp).SO_TYPE === 'SOCK_DGRAM');
    r.check(
      `SO_SNDBUF ${sendBuffer} reads back doubled (${sendBuffer * 2})`,
      after.SO_SNDBUF === sendBuffer * 2,
    );
    r.check(
      'keepalive idle/interval/count read back as set',
      after.TCP_KEEPIDLE === 30 && after.TCP_KEEPINTVL === 5 && after.TCP_KEEPCNT === 4,
    );
    return r.result();
  } finally {
    await c.run();
  }
}
