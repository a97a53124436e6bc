// Process main (it exits by itself): the lab's program for one side of a two-host scenario,
// run inside a network namespace by netns.ts. Its role comes as JSON in argv; it reports over
// IPC and never outlives 60 s.

import net from 'node:net';
import { EchoConnection, startHeartbeat } from '../client/echo.js';
import { tcpInfo } from '../core/libc.js';
import { applySocketOptions, type SocketOptions } from '../core/sockopts.js';
import { startCapture } from './capture.js';

type Role =
  | { role: 'server'; host: string; echo?: boolean; closeFirst?: boolean }
  | {
      role: 'client';
      host: string;
      port: number;
      options: SocketOptions;
      mode: 'idle' | 'write' | 'heartbeat' | 'close-on-start';
      heartbeat?: { intervalMs: number; timeoutMs: number };
    }
  | { role: 'connect'; host: string; port: number; timeoutMs: number }
  | { role: 'capture'; ifname: string; marker: { host: string; port: number }; icmp?: boolean };

const role = JSON.parse(process.argv[2] ?? '{}') as Role;
const send = (m: object) => process.send?.(m);
setTimeout(() => process.exit(3), 60_000).unref();
process.on('disconnect', () => process.exit(0));

if (role.role === 'server') {
  const server = net.createServer((s) => {
    s.on('error', () => {});
    if (role.echo) s.pipe(s);
    else s.resume(); // read and drop: the peer's kernel keeps acknowledging
    if (role.closeFirst) s.end(); // the active close: FIN at once
  });
  server.listen(0, role.host, () =>
    send({ type: 'listening', port: (server.address() as net.AddressInfo).port }),
  );
} else if (role.role === 'client') {
  const s = net.connect({ host: role.host, port: role.port, allowHalfOpen: true });
  s.on('connect', () => {
    applySocketOptions(s, role.options);
    send({ type: 'connected', local: s.localPort });
  });
  s.on('end', () => send({ type: 'peer-fin' }));
  s.resume();
  // TCP_INFO sampled while the fd lives: by the time 'error' is emitted it is closed
  let lastInfo: ReturnType<typeof tcpInfo>;
  const sampler = setInterval(() => {
    lastInfo = tcpInfo(s) ?? lastInfo;
  }, 200);
  s.on('error', (err: NodeJS.ErrnoException) => {
    clearInterval(sampler);
    // atUs: when the error reached the program, µs since the epoch (a capture's clock)
    const atUs = (performance.timeOrigin + performance.now()) * 1000;
    send({ type: 'error', code: err.code, syscall: err.syscall, message: err.message, tcp: lastInfo, atUs });
    setTimeout(() => process.exit(0), 50);
  });
  process.on('message', (m: { type: string }) => {
    if (m.type === 'start' && role.mode === 'heartbeat' && role.heartbeat) {
      // an echo is a natural heartbeat: one every interval, the peer is gone when one is late
      startHeartbeat(new EchoConnection(s), role.heartbeat, (err: NodeJS.ErrnoException) => {
        const atUs = (performance.timeOrigin + performance.now()) * 1000;
        send({ type: 'error', code: err.code, syscall: 'heartbeat', message: err.message, atUs });
        setTimeout(() => process.exit(0), 50);
      });
      return;
    }
    if (m.type === 'start' && role.mode === 'close-on-start') {
      s.end(); // the passive side's FIN: it waits in LAST_ACK for the ACK
      return;
    }
    if (m.type !== 'start' || role.mode !== 'write') return;
    // keep sending a little: unacknowledged data is what TCP_USER_TIMEOUT watches
    const chunk = Buffer.alloc(1024, 0x61);
    const timer = setInterval(() => s.write(chunk), 100);
    s.once('close', () => clearInterval(timer));
  });
} else if (role.role === 'capture') {
  // every TCP segment on the namespace's veth (nothing else runs in it), both directions, and
  // with `icmp` the ICMP errors about them
  const cap = startCapture(role.ifname, { marker: role.marker, icmp: role.icmp === true });
  send({ type: 'capturing' });
  process.on('message', async (m: { type: string }) => {
    if (m.type !== 'stop') return;
    send({ type: 'segments', segments: await cap.stop() });
  });
} else if (role.role === 'connect') {
  const t0 = performance.now();
  // `atUs`: when the outcome reached this program, µs since the epoch (the capture's clock)
  const result = (code: string | undefined) => {
    const now = performance.now();
    send({ type: 'result', code, ms: now - t0, atUs: Math.round((performance.timeOrigin + now) * 1000) });
  };
  const s = net.connect({ host: role.host, port: role.port, timeout: role.timeoutMs });
  s.on('connect', () => {
    result('CONNECTED');
    s.destroy();
  });
  s.on('timeout', () => {
    result('ETIMEDOUT');
    s.destroy();
  });
  s.on('error', (err: NodeJS.ErrnoException) => result(err.code));
}
