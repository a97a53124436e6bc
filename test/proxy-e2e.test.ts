// echo-proxy end to end (the long runs only under npm run test:e2e; npm test runs TLS and Unix): the built command between real clients and real
// services — echo-server, redis-server with redis-cli — each fault measured from the client's
// side; TLS on both sides, a Unix-socket upstream and a PROXY header toward the upstream.

import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { generate } from 'selfsigned';
import { describe, expect, it, onTestFinished } from 'vitest';
import {
  connect,
  FULL_MATRIX,
  hasCommand,
  readAll,
  readN,
  runCommand,
  runEchoClient,
  spawnCli,
  spawnServer,
  until,
} from './helpers.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const MB10 = randomBytes(10 * 1024 * 1024);

/** echo-proxy in front of `upstream`; resolves with its listening port and API URL. */
async function proxy(upstream: string, extra: string[] = []) {
  const p = spawnCli('echo-proxy', [
    '--listen',
    '127.0.0.1:0',
    '--upstream',
    upstream,
    '--api',
    '127.0.0.1:0',
    '--log-format',
    'json',
    ...extra,
  ]);
  const api = await p.waitStderr(/Toxiproxy API on http:\/\/127\.0\.0\.1:(\d+)/);
  const listen = /listening on 127\.0\.0\.1:(\d+)/.exec(p.stderr())!;
  const url = `http://127.0.0.1:${api[1]}`;
  return {
    ...p,
    port: Number(listen[1]),
    url,
    toxic: async (body: object) => {
      const r = await fetch(`${url}/proxies/proxy/toxics`, { method: 'POST', body: JSON.stringify(body) });
      expect(r.status).toBe(200);
    },
    untoxic: async (name: string) => {
      expect((await fetch(`${url}/proxies/proxy/toxics/${name}`, { method: 'DELETE' })).status).toBe(204);
    },
  };
}

/** Whether a TCP connect to the port succeeds now. */
function reachable(port: number): Promise<boolean> {
  return connect(port).then(
    (s) => {
      s.destroy();
      return true;
    },
    () => false,
  );
}

/**
 * The fastest of up to `tries` pings, stopping at the first under `underMs`: a latency toxic
 * still in place makes every ping at least its latency, while one scheduling hiccup of a
 * loaded machine slows one ping only.
 */
async function fastestPing(port: number, underMs: number, tries = 10): Promise<number> {
  let best = Number.POSITIVE_INFINITY;
  for (let i = 0; i < tries && best >= underMs; i++) best = Math.min(best, await pingTime(port));
  return best;
}

async function pingTime(port: number): Promise<number> {
  const s = await connect(port);
  const t0 = performance.now();
  s.write('ping');
  await readN(s, 4);
  const ms = performance.now() - t0;
  s.destroy();
  return ms;
}

describe('in front of echo-server', () => {
  it.skipIf(!FULL_MATRIX)(
    '10 MB byte-exact both ways with half-close (echo-client sends, FINs, reads to the end)',
    async () => {
      const srv = await spawnServer();
      const px = await proxy(`127.0.0.1:${srv.port}`);
      const r = await runEchoClient(['127.0.0.1', String(px.port)], MB10);
      expect(r.code).toBe(0);
      expect(sha(r.out)).toBe(sha(MB10));
    },
    120_000,
  );

  it.skipIf(!FULL_MATRIX)(
    'latency, upstream vs downstream; bandwidth bounds the rate; timeout; limit_data; slow_close; reset_peer; down',
    async () => {
      const srv = await spawnServer();
      const px = await proxy(`127.0.0.1:${srv.port}`);
      // latency: each direction observed on its own
      await px.toxic({ name: 'up', type: 'latency', stream: 'upstream', attributes: { latency: 150 } });
      expect(await pingTime(px.port)).toBeGreaterThanOrEqual(145);
      await px.toxic({ name: 'down', type: 'latency', stream: 'downstream', attributes: { latency: 150 } });
      expect(await pingTime(px.port)).toBeGreaterThanOrEqual(295);
      await px.untoxic('up');
      await px.untoxic('down');
      // both removed: a ping faster than either toxic's 150 ms (one left would hold every ping)
      expect(await fastestPing(px.port, 145)).toBeLessThan(145);
      // bandwidth: 200 kB at 100 KB/s take ≥ 1.8 s (the first 1/50 s may go at once)
      await px.toxic({ name: 'bw', type: 'bandwidth', attributes: { rate: 100 } });
      {
        const s = await connect(px.port);
        const t0 = performance.now();
        const back = readAll(s);
        s.end(Buffer.alloc(200_000, 3));
        expect((await back).length).toBe(200_000);
        expect(performance.now() - t0).toBeGreaterThanOrEqual(1800);
      }
      await px.untoxic('bw');
      // timeout: the bytes vanish, then the client sees the close after ≥ timeout
      await px.toxic({ name: 't', type: 'timeout', attributes: { timeout: 300 } });
      {
        const s = await connect(px.port);
        const t0 = performance.now();
        s.write('lost');
        const got = await readAll(s).catch(() => Buffer.from('x'));
        expect(got.length).toBe(0);
        expect(performance.now() - t0).toBeGreaterThanOrEqual(290);
      }
      await px.untoxic('t');
      // limit_data: the client gets exactly N bytes back, then the close
      await px.toxic({ name: 'l', type: 'limit_data', attributes: { bytes: 10_000 } });
      {
        const s = await connect(px.port);
        const back = readAll(s);
        s.write(Buffer.alloc(50_000, 1));
        expect((await back).length).toBe(10_000);
      }
      await px.untoxic('l');
      // slow_close: the FIN comes ≥ delay after the data
      await px.toxic({ name: 'sc', type: 'slow_close', attributes: { delay: 400 } });
      {
        const s = await connect(px.port);
        const back = readAll(s);
        const t0 = performance.now();
        s.end('abc');
        expect((await back).toString()).toBe('abc');
        expect(performance.now() - t0).toBeGreaterThanOrEqual(390);
      }
      await px.untoxic('sc');
      // reset_peer: ECONNRESET after its timeout
      await px.toxic({ name: 'r', type: 'reset_peer', attributes: { timeout: 200 } });
      {
        const s = await connect(px.port);
        const t0 = performance.now();
        const [err] = await once(s, 'error');
        expect((err as NodeJS.ErrnoException).code).toBe('ECONNRESET');
        expect(performance.now() - t0).toBeGreaterThanOrEqual(190);
      }
      await px.untoxic('r');
      // down: refused; removed: served again on the same port
      await px.toxic({ name: 'd', type: 'down' });
      await until(async () => !(await reachable(px.port)), 10_000, 'refused');
      await px.untoxic('d');
      await until(() => reachable(px.port), 10_000, 'served again');
      // and with none of the toxics above left on it
      expect(await fastestPing(px.port, 145)).toBeLessThan(145);
    },
    120_000,
  );

  it('TLS on both sides: echo-client --tls → echo-proxy --tls → --upstream-tls → echo-server --tls', async () => {
    const srv = await spawnServer(['--tls']);
    const px = await proxy(`127.0.0.1:${srv.port}`, ['--tls', '--upstream-tls', '--insecure']);
    const data = randomBytes(1024 * 1024);
    const r = await runEchoClient(['--tls', '--insecure', '127.0.0.1', String(px.port)], data);
    expect(r.code).toBe(0);
    expect(sha(r.out)).toBe(sha(data));
  }, 60_000);

  it('--upstream-tls checks the certificate: --ca and --servername pass; untrusted, one explained line and a reset', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'echo-proxy-tls-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const pems = await generate([{ name: 'commonName', value: 'svc.test' }], {
      keyType: 'ec',
      algorithm: 'sha256',
      extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: 'svc.test' }] }],
    });
    const cert = path.join(dir, 'svc.crt');
    const key = path.join(dir, 'svc.key');
    writeFileSync(cert, pems.cert);
    writeFileSync(key, pems.private);
    const srv = await spawnServer(['--tls', '--cert', cert, '--key', key]);
    const good = await proxy(`127.0.0.1:${srv.port}`, [
      '--upstream-tls',
      '--ca',
      cert,
      '--servername',
      'svc.test',
    ]);
    const s = await connect(good.port);
    const back = readAll(s);
    s.end('checked');
    expect((await back).toString()).toBe('checked');
    const bad = await proxy(`127.0.0.1:${srv.port}`, ['--upstream-tls']);
    const s2 = await connect(bad.port);
    const [err] = await once(s2, 'error');
    expect((err as NodeJS.ErrnoException).code).toBe('ECONNRESET');
    const line = await bad.waitStderr(/upstream 127\.0\.0\.1:\d+ unreachable[^"]*/);
    expect(line[0]).toMatch(/certificate/);
  });

  it('a Unix-socket upstream, and a PROXY header toward it naming the client', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'echo-proxy-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const sock = path.join(dir, 'echo.sock');
    const srv = spawnCli('echo-server', [
      '--unix',
      sock,
      '--proxy-protocol',
      '--verbose',
      '--log-format',
      'json',
    ]);
    await srv.waitStderr(/listening on unix:/);
    const px = await proxy(`unix:${sock}`, ['--send-proxy', 'v2']);
    const s = await connect(px.port);
    const local = s.localPort;
    const back = readAll(s);
    s.end('hi');
    expect((await back).toString()).toBe('hi');
    await srv.waitStderr(new RegExp(`127\\.0\\.0\\.1:${local} via`));
  });
});

const hasRedis = hasCommand('redis-server') && hasCommand('redis-cli');

describe('in front of a service that is not ours: redis-server', () => {
  it.skipIf(!hasRedis || !FULL_MATRIX)(
    '10 MB SET and GET byte-exact through a TCP proxy to its Unix socket; latency adds ≥ its value to each command',
    async () => {
      const dir = mkdtempSync(path.join(tmpdir(), 'echo-proxy-redis-'));
      onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
      // redis-server cannot report a port 0 it chose: it listens on a Unix socket only (port 0: no TCP)
      const sock = path.join(dir, 'redis.sock');
      const child = spawn(
        'redis-server',
        ['--port', '0', '--unixsocket', sock, '--save', '', '--appendonly', 'no', '--dir', dir],
        {
          stdio: 'ignore',
        },
      );
      onTestFinished(() => {
        child.kill('SIGKILL');
      });
      await until(
        async () => (await runCommand('redis-cli', ['-s', sock, 'PING'])).out.toString().includes('PONG'),
        15_000,
      );
      const px = await proxy(`unix:${sock}`);
      const cli = (args: string[], input?: Buffer) =>
        runCommand('redis-cli', ['-h', '127.0.0.1', '-p', String(px.port), ...args], input);
      const value = randomBytes(7.5 * 1024 * 1024).toString('base64'); // 10 MB each way
      const set = await cli(['-x', 'SET', 'k'], Buffer.from(value));
      expect(set.out.toString().trim()).toBe('OK');
      const get = await cli(['--raw', 'GET', 'k']);
      expect(get.out.toString().replace(/\n$/, '')).toBe(value);
      // the baseline, redis-cli's start-up included: the fastest of three, as one start-up
      // slowed by a loaded machine could outlast the toxic's 300 ms
      let base = Number.POSITIVE_INFINITY;
      for (let i = 0; i < 3; i++) {
        const t0 = performance.now();
        expect((await cli(['PING'])).out.toString().trim()).toBe('PONG');
        base = Math.min(base, performance.now() - t0);
      }
      await px.toxic({ type: 'latency', attributes: { latency: 300 } });
      const t1 = performance.now();
      expect((await cli(['PING'])).out.toString().trim()).toBe('PONG');
      expect(performance.now() - t1).toBeGreaterThanOrEqual(300);
      expect(performance.now() - t1).toBeGreaterThan(base);
    },
    120_000,
  );
});
