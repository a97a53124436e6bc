// SO_TYPE of a TCP and a UDP socket, SO_SNDBUF before and after
// setting it — Linux doubles the value for its bookkeeping — and the rest of the options
// read back as echo-server --verbose reports them.
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { closeFd, getIntOption, loadLibc, platformTable } from '../../core/libc.js';
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
    // the tutorial reads SO_SNDBUF of a fresh socket: tcp_wmem's default. A connected socket's
    // was grown by the kernel when the handshake completed (tcp_sndbuf_expand: about twice the
    // initial congestion window × MSS, and the MSS on lo is 65483), up to tcp_wmem's maximum
    let wmem: number[] = [];
    try {
      wmem = readFileSync('/proc/sys/net/ipv4/tcp_wmem', 'utf8').trim().split(/\s+/).map(Number);
    } catch {
      // not Linux: no tcp_wmem to compare with
    }
    let fresh: number | undefined;
    if (process.platform === 'linux') {
      const fd = loadLibc().socket(2 /* AF_INET */, platformTable().SOCK_STREAM, 0);
      if (fd >= 0) {
        try {
          fresh = getIntOption(fd, 'SO_SNDBUF');
        } finally {
          closeFd(fd);
        }
      }
    }
    r.step(
      `SO_SNDBUF of a fresh TCP socket (socket(), nothing else): ${fresh ?? '?'}${wmem.length === 3 ? ` = tcp_wmem's default (tcp_wmem = ${wmem.join(' ')})` : ''}`,
    );
    r.step(
      `SO_SNDBUF of the connected socket: ${before.SO_SNDBUF}: the kernel grew it when the connection was established (autotuning: about 2 × initial cwnd 10 × MSS; MSS on lo is 65483), capped by tcp_wmem's maximum`,
    );
    if (fresh !== undefined && wmem.length === 3) {
      r.check("a fresh socket's SO_SNDBUF is tcp_wmem's default", fresh === wmem[1]);
      r.check(
        "the connected socket's SO_SNDBUF was autotuned above it, within tcp_wmem's maximum",
        Number(before.SO_SNDBUF) > fresh && Number(before.SO_SNDBUF) <= wmem[2]!,
      );
    }
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
