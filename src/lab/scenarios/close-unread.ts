// What close() sends depends on what is still in the socket. Unread data in the receive queue:
// the kernel discards it and sends RST, not FIN (RFC 2525 §2.17), so the peer's next read fails
// with ECONNRESET. Unsent data in the send queue: close() returns at once (SO_LINGER off) and the
// kernel still sends every queued byte, then FIN — the peer reads all of it, then EOF.
// Checked on the wire when a capture can run here, and from the peer's reads in any case.

import net from 'node:net';
import { errorCode } from '../../core/errors.js';
import { type Capture, captureUnavailable, type Segment, startCapture } from '../capture.js';
import { Cleanup, Recorder, type ScenarioResult } from '../recorder.js';
import { closeServer, connectLocal, listenLocal, waitFor } from '../util.js';

const QUEUED = 256 * 1024;

export async function closeUnread(): Promise<ScenarioResult> {
  const r = new Recorder(
    'close-unread',
    'close() with unread data sends RST; queued unsent data is still sent, then FIN',
    'a robust TCP client and server, watched on the wire; Linux socket programming basics',
  );
  r.dependsOn([], ['SO_LINGER off (the default): close() returns at once, the kernel sends what is queued']);
  const c = new Cleanup();
  try {
    const peers: net.Socket[] = [];
    const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, (s) => {
      s.on('error', () => {});
      peers.push(s);
    });
    const port = await listenLocal(server);
    r.usePort(port);
    c.add(() => closeServer(server));
    c.add(() => {
      for (const s of peers) s.destroy();
    });
    let cap: Capture | undefined;
    if (!captureUnavailable()) {
      cap = startCapture('lo', { ports: [port] });
      const running = cap;
      c.add(() => running.stop());
    }

    // 1. unread data, then close()
    const accepted = waitFor<[net.Socket]>(server, 'connection');
    const a = await connectLocal(port, { allowHalfOpen: true });
    c.add(() => a.destroy());
    const [pa] = await accepted;
    const aPort = a.localPort!;
    a.write('nobody reads this\n');
    const queued = await r.settle(
      'the server has unread bytes in its receive queue',
      [port],
      (es) => es.some((e) => e.localPort === port && e.remotePort === aPort && e.rxQueue > 0),
      (e) => e.localPort === port && e.remotePort === aPort,
    );
    r.check(
      "the bytes wait in the server's receive queue (Recv-Q > 0)",
      queued.some((e) => e.rxQueue > 0),
    );
    const aEnd = new Promise<string>((res) => {
      a.once('error', (e) => res(errorCode(e)));
      a.once('end', () => res('EOF'));
      a.resume();
    });
    pa!.destroy(); // close() with the receive queue not empty
    const aGot = await Promise.race([
      aEnd,
      new Promise<string>((res) => setTimeout(() => res('nothing'), 5000)),
    ]);
    r.step(`the server calls close() with 18 bytes unread: the client's read gives ${aGot}`);
    if (aGot === 'ECONNRESET')
      r.error(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET', syscall: 'read' }));
    r.check('close() with unread data: the peer gets ECONNRESET, not EOF', aGot === 'ECONNRESET');

    // 2. queued unsent data, then close()
    const accepted2 = waitFor<[net.Socket]>(server, 'connection');
    const b = await connectLocal(port, { allowHalfOpen: true });
    c.add(() => b.destroy());
    b.pause(); // the client does not read yet: the bytes wait in the kernel's queues
    const [pb] = await accepted2;
    const bPort = b.localPort!;
    await new Promise<void>((res, rej) => pb!.write(Buffer.alloc(QUEUED, 0x62), (e) => (e ? rej(e) : res())));
    const backlog = r.snapshot(
      'the server handed 256 KiB to the kernel; the client has not read',
      [port],
      (e) =>
        (e.localPort === port && e.remotePort === bPort) || (e.localPort === bPort && e.remotePort === port),
    );
    const sq = backlog.find((e) => e.localPort === port)?.txQueue ?? 0;
    const rq = backlog.find((e) => e.localPort === bPort)?.rxQueue ?? 0;
    r.step(
      `the bytes are in the kernel: server Send-Q ${sq} (not yet acknowledged), client Recv-Q ${rq} (received, unread)`,
    );
    pb!.destroy(); // close(): returns at once
    r.step('the server calls close() at once (SO_LINGER off)');
    let got = 0;
    b.on('data', (d: Buffer) => {
      got += d.length;
    });
    const bEnd = new Promise<string>((res) => {
      b.once('error', (e) => res(errorCode(e)));
      b.once('end', () => res('EOF'));
    });
    b.resume();
    const bGot = await Promise.race([
      bEnd,
      new Promise<string>((res) => setTimeout(() => res('nothing'), 10_000)),
    ]);
    r.step(`the client now reads: ${got} bytes, then ${bGot}`);
    r.check(
      'queued data is delivered after close(): every byte, then EOF (FIN)',
      got === QUEUED && bGot === 'EOF',
    );

    if (cap) {
      const segs = (await cap.stop()).filter((x) => x.sport === port || x.dport === port);
      const from = (p: number) => segs.filter((x) => x.sport === port && x.dport === p);
      const fa = from(aPort);
      const fb = from(bPort);
      const firstEnd = (l: Segment[]) => l.find((x) => x.flags.includes('RST') || x.flags.includes('FIN'));
      // bytes sent before the FIN: the FIN's sequence number past the SYN,ACK's (retransmitted
      // and probe bytes are not counted twice)
      const isn = fb.find((x) => x.flags.includes('SYN'))?.seq;
      const fin = fb.find((x) => x.flags.includes('FIN'));
      const dataBytes = isn !== undefined && fin ? (fin.seq + fin.len - isn - 1) >>> 0 : -1;
      r.step(
        `on the wire: the first close sends ${firstEnd(fa)?.flags.join(',') ?? 'nothing'}; the second sends ${dataBytes} bytes of data, then ${firstEnd(fb)?.flags.join(',') ?? 'nothing'}${fin && fin.len > 0 ? ' (the FIN carries the last bytes)' : ''}`,
      );
      r.check(
        'on the wire: close() with unread data sends RST (no FIN)',
        firstEnd(fa)?.flags.includes('RST') === true && !fa.some((x) => x.flags.includes('FIN')),
      );
      r.check(
        'on the wire: every queued byte goes out before or with the FIN, and no RST',
        dataBytes === QUEUED && !fb.some((x) => x.flags.includes('RST')),
      );
    }
    return r.result();
  } finally {
    await c.run();
  }
}
