// Soak, fault and resource suite (issue: reliability). Bounded in count and time, loopback
// only. `npm test` runs the short form; `npm run test:soak` (SOAK=full) the full one:
// 10,000 idle connections, a 1,000-client reset storm, a 200 MB non-reader, 100 streams at SIGTERM.
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { jsonLines, spawnServer, streamUntilServerCloses, until } from '../helpers.js';

const FULL = process.env.SOAK === 'full';
const N_IDLE = FULL ? 10_000 : 1_000;
const N_RESET = FULL ? 1_000 : 200;
const NONREADER_MB = FULL ? 200 : 48;
const N_STREAMS = FULL ? 100 : 20;
const linux = process.platform === 'linux';

const rssKb = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
const fdCount = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;

function report(what: string, value: string) {
  console.log(`[soak${FULL ? '' : ' short'}] ${what}: ${value}`);
}

describe.runIf(linux)(`soak (${FULL ? 'full' : 'short'})`, () => {
  it(`holds ${N_IDLE} idle connections; RSS per connection reported and bounded`, {
    timeout: 120_000,
  }, async () => {
    const srv = await spawnServer();
    const pid = srv.child.pid!;
    const before = rssKb(pid);
    const socks: net.Socket[] = [];
    onTestFinished(() => {
      for (const s of socks) s.destroy();
    });
    // open in batches: at most 200 handshakes in flight
    for (let i = 0; i < N_IDLE; i += 200) {
      const batch = Array.from({ length: Math.min(200, N_IDLE - i) }, () => {
        const s = net.connect({ port: srv.port, host: '127.0.0.1' });
        socks.push(s);
        return once(s, 'connect');
      });
      await Promise.all(batch);
    }
    // the server has accepted them all once its fd table holds them
    await until(() => fdCount(pid) >= N_IDLE, 20_000, `${N_IDLE} descriptors open`);
    const after = rssKb(pid);
    const perConn = Math.round(((after - before) * 1024) / N_IDLE);
    report(`RSS per idle connection (${N_IDLE} held)`, `${perConn} B`);
    expect(perConn).toBeLessThan(16 * 1024);
    for (const s of socks) s.destroy();
    srv.child.kill('SIGTERM');
    expect((await srv.exit).code).toBe(0);
  });

  it(`survives ${N_RESET} clients resetting mid-stream while others echo byte-exact; no fd leaks`, {
    timeout: 120_000,
  }, async () => {
    const srv = await spawnServer();
    const pid = srv.child.pid!;
    await until(() => fdCount(pid) > 0, 20_000, 'descriptors open');
    const fdsBefore = fdCount(pid);
    // steady clients: echo continuously during the storm
    let stop = false;
    const steady = Array.from({ length: 5 }, async () => {
      const s = net.connect({ port: srv.port, host: '127.0.0.1' });
      await once(s, 'connect');
      let rounds = 0;
      const chunks: Buffer[] = [];
      s.on('data', (d: Buffer) => chunks.push(d));
      while (!stop || rounds < 20) {
        const msg = randomBytes(4096);
        chunks.length = 0;
        s.write(msg);
        await until(() => chunks.reduce((n, c) => n + c.length, 0) >= msg.length, 10_000);
        expect(Buffer.concat(chunks).equals(msg)).toBe(true);
        rounds++;
      }
      s.destroy();
      return rounds;
    });
    // the storm: connect, send a little, reset (RST) — in bursts of 100
    for (let i = 0; i < N_RESET; i += 100) {
      await Promise.all(
        Array.from({ length: Math.min(100, N_RESET - i) }, async () => {
          const s = net.connect({ port: srv.port, host: '127.0.0.1' });
          s.on('error', () => {});
          await once(s, 'connect');
          s.write(randomBytes(8192));
          s.resetAndDestroy();
        }),
      );
    }
    stop = true;
    const rounds = await Promise.all(steady);
    expect(rounds.every((r) => r > 0)).toBe(true);
    // every reset connection is gone from the server's fd table
    await until(
      () => fdCount(pid) === fdsBefore,
      20_000,
      () => `descriptors back to ${fdsBefore} (${fdCount(pid)})`,
    );
    report(
      `reset storm (${N_RESET} resets)`,
      `server alive, ${rounds.reduce((a, b) => a + b)} steady echoes exact, fds back to ${fdsBefore}`,
    );
    srv.child.kill('SIGTERM');
    expect((await srv.exit).code).toBe(0);
    const totals = jsonLines(srv.stderr()).at(-1)!;
    expect(totals.connections).toBe(N_RESET + 5);
  });

  it(`a client that sends ${NONREADER_MB} MB and never reads: server RSS stays bounded`, {
    timeout: 120_000,
  }, async () => {
    const srv = await spawnServer();
    const pid = srv.child.pid!;
    const before = rssKb(pid);
    const s = net.connect({ port: srv.port, host: '127.0.0.1' });
    onTestFinished(() => {
      s.destroy();
    });
    await once(s, 'connect');
    s.pause();
    const chunk = randomBytes(1024 * 1024);
    let written = 0;
    // write until the client's own buffer holds the rest: the server has stopped reading
    while (written < NONREADER_MB) {
      s.write(chunk);
      written++;
    }
    let peak = 0;
    const end = Date.now() + 3000;
    while (Date.now() < end) {
      peak = Math.max(peak, rssKb(pid) - before);
      await new Promise((r) => setTimeout(r, 50));
    }
    report(
      `non-reader (${NONREADER_MB} MB sent)`,
      `server RSS grew ${Math.round(peak / 1024)} MB at most; client still holds ${Math.round(s.writableLength / 2 ** 20)} MB`,
    );
    expect(peak).toBeLessThan(32 * 1024); // KB: kernel buffers are outside RSS; the server holds a write queue
    expect(s.writableLength).toBeGreaterThan((NONREADER_MB - 16) * 2 ** 20);
    s.destroy();
    srv.child.kill('SIGTERM');
    expect((await srv.exit).code).toBe(0);
  });

  it(`SIGTERM while ${N_STREAMS} clients stream: every byte the server read is echoed before it exits`, {
    timeout: 120_000,
  }, async () => {
    const srv = await spawnServer();
    let echoing = 0;
    let t0 = 0;
    const streams = await Promise.all(
      Array.from({ length: N_STREAMS }, () =>
        streamUntilServerCloses(srv.port, {
          payloadBytes: 4 * 1024 * 1024,
          chunkBytes: 16 * 1024,
          threshold: 1,
          onEchoing: () => {
            if (++echoing === N_STREAMS) {
              t0 = Date.now();
              srv.child.kill('SIGTERM');
            }
          },
        }),
      ),
    );
    const results = streams.map((r) => (r.exact ? r.length : -1));
    expect(results.every((r) => r > 0)).toBe(true);
    expect((await srv.exit).code).toBe(0);
    const drainMs = Date.now() - t0;
    const totals = jsonLines(srv.stderr()).at(-1)!;
    expect(totals.bytesOut).toBe(totals.bytesIn);
    expect(totals.bytesIn).toBe(results.reduce((a, b) => a + b, 0));
    report(
      `SIGTERM with ${N_STREAMS} streams`,
      `${totals.bytesIn} B read, all echoed; drained and exited in ${drainMs} ms`,
    );
  });
});
