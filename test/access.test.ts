import { spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import net from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { AccessControl, parseCidr } from '../src/core/access.js';
import type { Logger } from '../src/core/log.js';
import { startUdpEchoServer } from '../src/index.js';
import { echoServer, spawnCli } from './helpers.js';

/** Connect from a chosen loopback address; resolves with what came back before the server closed. */
function tryEcho(port: number, localAddress: string, msg = 'hi'): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress, allowHalfOpen: true });
    let got = '';
    s.on('data', (d: Buffer) => {
      got += d.toString();
    });
    s.once('connect', () => s.end(msg));
    s.once('end', () => resolve(got));
    s.once('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' ? resolve(got) : reject(e)));
  });
}

const hasPrlimit = spawnSync('prlimit', ['--version'], { stdio: 'ignore' }).status === 0;
if (!hasPrlimit) console.warn('skipped the EMFILE test: prlimit (util-linux) is not installed');

function captureLogger() {
  const lines: string[] = [];
  const l: Logger = { debug() {}, info() {}, error() {}, warn: (_o, m) => lines.push(m ?? '') };
  return { logger: l, lines };
}

describe('access control', () => {
  it('parses and matches CIDRs, IPv4-mapped peers against IPv4 rules', () => {
    const ac = new AccessControl(
      [parseCidr('--allow', '127.0.0.0/24'), parseCidr('--allow', '::1')],
      [parseCidr('--deny', '127.0.0.9')],
    );
    expect(ac.check('127.0.0.5')).toEqual({ ok: true });
    expect(ac.check('::ffff:127.0.0.5')).toEqual({ ok: true });
    expect(ac.check('::1')).toEqual({ ok: true });
    expect(ac.check('127.0.0.9')).toEqual({ ok: false, why: 'matches --deny' });
    expect(ac.check('10.1.2.3')).toEqual({ ok: false, why: 'not in --allow' });
    for (const bad of ['10.0.0.0/33', 'x/8', '10.0.0.0/8/1', '::1/129', ''])
      expect(() => parseCidr('--allow', bad)).toThrow(/--allow/);
  });

  it('--allow / --deny: refused peers are closed without an echo; refusals are logged once per interval', async () => {
    const { logger, lines } = captureLogger();
    const srv = await echoServer({
      logger,
      access: new AccessControl([parseCidr('--allow', '127.0.0.0/8')], [parseCidr('--deny', '127.0.0.3/32')]),
    });
    expect(await tryEcho(srv.address.port, '127.0.0.2')).toBe('hi');
    for (let i = 0; i < 20; i++) expect(await tryEcho(srv.address.port, '127.0.0.3')).toBe('');
    expect(srv.stats().refused).toBe(20);
    expect(lines.filter((l) => l.startsWith('refused 127.0.0.3'))).toHaveLength(1);
  });

  it('--max-connections-per-ip limits one address, not the others', async () => {
    const srv = await echoServer({ maxConnectionsPerIp: 2 });
    const held: net.Socket[] = [];
    onTestFinished(() => {
      for (const s of held) s.destroy();
    });
    for (let i = 0; i < 2; i++) {
      const s = net.connect({ port: srv.address.port, host: '127.0.0.1', localAddress: '127.0.0.4' });
      held.push(s);
      await once(s, 'connect');
      s.write('x');
      await once(s, 'data');
    }
    expect(await tryEcho(srv.address.port, '127.0.0.4')).toBe('');
    expect(await tryEcho(srv.address.port, '127.0.0.5')).toBe('hi');
    held[0]!.destroy();
    await once(held[0]!, 'close');
    // the freed slot is counted back once the server has seen the close
    let ok = '';
    for (let i = 0; i < 50 && ok !== 'hi'; i++) ok = await tryEcho(srv.address.port, '127.0.0.4');
    expect(ok).toBe('hi');
  });

  it('UDP: datagrams from refused sources are dropped and counted', async () => {
    const srv = await startUdpEchoServer({
      port: 0,
      access: new AccessControl([], [parseCidr('--deny', '127.0.0.6')]),
    });
    onTestFinished(() => srv.close().then(() => {}));
    const bad = dgram.createSocket('udp4');
    bad.bind(0, '127.0.0.6');
    await once(bad, 'listening');
    onTestFinished(() => {
      bad.close();
    });
    bad.send('no', srv.address.port, '127.0.0.1');
    const good = dgram.createSocket('udp4');
    good.bind(0, '127.0.0.7');
    await once(good, 'listening');
    onTestFinished(() => {
      good.close();
    });
    good.send('yes', srv.address.port, '127.0.0.1');
    const [m] = await once(good, 'message');
    expect(m.toString()).toBe('yes');
    expect(srv.stats().dropped.access).toBe(1);
  });

  it('binding a non-loopback address says the server is reachable from the network', async () => {
    const p = spawnCli('echo-server', ['--host', '0.0.0.0', '--port', '0', '--log-format', 'json']);
    await p.waitStderr(/"msg":"listening on 0\.0\.0\.0: this server is reachable from the network"/);
    // said after the listening line: only a server that did listen is reachable
    expect(p.stderr().indexOf('reachable')).toBeGreaterThan(p.stderr().indexOf('(tcp, evented)'));
    p.child.kill('SIGTERM');
    expect((await p.exit).code).toBe(0);
  });

  it('a metrics port on a non-loopback address is said to have no authentication', async () => {
    const p = spawnCli('echo-server', ['--port', '0', '--metrics', '0.0.0.0:0', '--log-format', 'json']);
    await p.waitStderr(
      /"msg":"listening on 0\.0\.0\.0: the metrics port \(no authentication\) is reachable from the network"/,
    );
    expect(p.stderr()).not.toMatch(/this server is reachable/); // the echo port is on loopback
    p.child.kill('SIGTERM');
    expect((await p.exit).code).toBe(0);
  });

  it('a loopback alias (127.0.0.2) is not reachable from the network, and a failed listen warns of nothing', async () => {
    const p = spawnCli('echo-server', ['--host', '127.0.0.2', '--port', '0', '--log-format', 'json']);
    const m = await p.waitStderr(/listening on 127\.0\.0\.2:(\d+)/);
    // the same port on 0.0.0.0 cannot be bound (a specific address holds it): exit 1, no warning
    const q = spawnCli('echo-server', ['--host', '0.0.0.0', '--port', m[1]!, '--log-format', 'json']);
    expect((await q.exit).code).toBe(1);
    expect(q.stderr()).toMatch(/EADDRINUSE/);
    expect(q.stderr()).not.toMatch(/reachable/);
    p.child.kill('SIGTERM');
    expect((await p.exit).code).toBe(0);
    expect(p.stderr()).not.toMatch(/reachable/);
  });

  it.skipIf(!hasPrlimit)(
    'near the fd limit (EMFILE): refused with a log line, not fatal, serving again once fds are free',
    async () => {
      // 48: Node's own start-up (the module loader reads files in parallel) needs a few dozen
      const p = spawnCli('echo-server', ['--port', '0', '--log-format', 'json'], {
        prefix: ['prlimit', '--nofile=48'],
      });
      const m = await p.waitStderr(/listening on 127\.0\.0\.1:(\d+)/);
      const port = Number(m[1]);
      const socks: net.Socket[] = [];
      onTestFinished(() => {
        for (const s of socks) s.destroy();
      });
      for (let i = 0; i < 60; i++) {
        const s = net.connect({ port, host: '127.0.0.1' });
        s.on('error', () => {});
        socks.push(s);
      }
      // refused politely before libuv's own EMFILE handling would drop connections unannounced
      await p.waitStderr(/the file-descriptor limit \(48\) is nearly reached; raise ulimit -n/);
      for (const s of socks) s.destroy();
      let back = '';
      for (let i = 0; i < 50 && back !== 'hi'; i++) back = await tryEcho(port, '127.0.0.1').catch(() => '');
      expect(back).toBe('hi');
      p.child.kill('SIGTERM');
      expect((await p.exit).code).toBe(0);
    },
  );
});
