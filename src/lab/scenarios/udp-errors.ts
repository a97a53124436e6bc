// UDP, step by step on raw descriptors (Linux). A socket never bound gets a port from the
// kernel at its first sendto() (an implicit bind: getsockname shows port 0 before, an
// ephemeral port after). A datagram to a port with no socket draws an ICMP port unreachable;
// Linux reports it only on a connected UDP socket — its next send or recv fails with
// ECONNREFUSED — and keeps quiet on an unconnected one (unless IP_RECVERR is set), where
// sendto() goes on succeeding.

import dgram from 'node:dgram';
import { createRequire } from 'node:module';
import { constants } from 'node:os';
import { closeFd, loadLibc, platformTable } from '../../core/libc.js';
import { sockaddr } from '../../core/listen.js';
import { Cleanup, Recorder, type ScenarioResult } from '../recorder.js';
import { waitFor } from '../util.js';

const SOCK_DGRAM = 2;
const MSG_DONTWAIT = 0x40;
const ERRNO = new Map<number, string>();
for (const [k, v] of Object.entries(constants.errno)) if (!ERRNO.has(v)) ERRNO.set(v, k);

let fns: { sendto: any; recv: any } | undefined;
function udpFns() {
  if (!fns) {
    const koffi = createRequire(import.meta.url)('koffi');
    const lib = koffi.load(platformTable().libc);
    fns = {
      sendto: lib.func('long sendto(int, const void *, size_t, int, const void *, uint32_t)'),
      recv: lib.func('long recv(int, _Out_ void *, size_t, int)'),
    };
  }
  return fns;
}

export async function udpErrors(): Promise<ScenarioResult> {
  const r = new Recorder(
    'udp-errors',
    'UDP: sendto binds implicitly; ICMP port unreachable reaches only a connected socket',
    'a first UDP client and server; Linux socket programming basics',
  );
  r.dependsOn(
    [],
    [
      'Linux reports ICMP errors to a UDP socket only when it is connected (or has IP_RECVERR); the error is returned by the next call on the socket',
    ],
  );
  const c = new Cleanup();
  try {
    if (process.platform !== 'linux') return r.result('the raw descriptor steps are written for Linux');
    const libc = loadLibc();
    const { sendto, recv } = udpFns();
    // a UDP port with no socket: bound by Node, then closed again
    const probe = dgram.createSocket('udp4');
    probe.bind(0, '127.0.0.1');
    await waitFor(probe, 'listening');
    const closed = probe.address().port;
    await new Promise<void>((res) => probe.close(() => res()));
    r.step(`no UDP socket on 127.0.0.1:${closed}`);

    const nameOf = (fd: number) => {
      const sa = Buffer.alloc(16);
      const len = [16];
      return libc.getsockname(fd, sa, len) === 0 ? sa.readUInt16BE(2) : -1;
    };
    const { addr } = sockaddr('127.0.0.1', closed);
    const msg = Buffer.from('hello?\n');
    const buf = Buffer.alloc(64);
    const call = (rc: number) => (rc >= 0 ? String(rc) : `-1 ${ERRNO.get(libc.errno()) ?? libc.errno()}`);

    // 1. unconnected: implicit bind, and the ICMP error is not reported
    const u = libc.socket(2 /* AF_INET */, SOCK_DGRAM, 0);
    c.add(() => closeFd(u));
    const before = nameOf(u);
    const s1 = call(Number(sendto(u, msg, msg.length, 0, addr, addr.length)));
    const after = nameOf(u);
    r.usePort(after);
    r.step(
      `unconnected socket: getsockname port ${before} before sendto(); sendto() = ${s1}; port ${after} after`,
    );
    r.check('sendto() on an unbound socket binds it to an ephemeral port', before === 0 && after > 0);
    // the ICMP port unreachable has been processed when sendto() returned (loopback, softirq)
    const s2 = call(Number(sendto(u, msg, msg.length, 0, addr, addr.length)));
    const r1 = call(Number(recv(u, buf, buf.length, MSG_DONTWAIT)));
    r.step(`after the ICMP port unreachable: sendto() again = ${s2}; recv() = ${r1}`);
    r.check(
      'unconnected: the ICMP error is not reported (sendto succeeds, recv has nothing)',
      s2 === String(msg.length) && r1 === '-1 EAGAIN',
    );

    // 2. connected: the same datagram, and the next call fails with ECONNREFUSED
    const k = libc.socket(2, SOCK_DGRAM, 0);
    c.add(() => closeFd(k));
    const conn = call(libc.connect(k, addr, addr.length));
    const k1 = call(Number(libc.send(k, msg, msg.length, 0)));
    const k2 = call(Number(libc.send(k, msg, msg.length, 0)));
    const k3 = call(Number(libc.send(k, msg, msg.length, 0)));
    r.step(
      `connected socket: connect() = ${conn} (nothing sent); send() = ${k1}; send() again = ${k2}; and again = ${k3}`,
    );
    r.check(
      'connected: the send after the ICMP port unreachable fails with ECONNREFUSED, once',
      k1 === String(msg.length) && k2 === '-1 ECONNREFUSED' && k3 === String(msg.length),
    );
    if (k2 === '-1 ECONNREFUSED')
      r.error(Object.assign(new Error('send ECONNREFUSED'), { code: 'ECONNREFUSED', syscall: 'send' }));
    return r.result();
  } finally {
    await c.run();
  }
}
