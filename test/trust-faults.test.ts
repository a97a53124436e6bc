import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { parseFault } from '../src/core/faults.js';
import {
  bin,
  hasCommand,
  matrix,
  readAll,
  runCommand,
  runEchoClient,
  SERVER_MODES,
  spawnCli,
  spawnServer,
  until,
} from './helpers.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'echo-trust-faults-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('fault durations need a unit', () => {
  it.each([
    ['latency=50', '50'],
    ['latency=50ms,jitter=10', '10'],
    ['slice=1,delay=5', '5'],
    ['accept-delay=2', '2'],
    ['latency=1.5', '1.5'],
  ])('parseFault(%j) is refused: "%s: add a unit"', (spec, bare) => {
    expect(() => parseFault(spec)).toThrow(`${bare}: add a unit, e.g. ${bare}ms`);
  });

  it('durations with a unit still parse', () => {
    expect(parseFault('latency=50ms,jitter=10ms')).toMatchObject({ delayMs: 50, jitterMs: 10 });
    expect(parseFault('latency=2s')).toMatchObject({ delayMs: 2000 });
    expect(parseFault('slice=1,delay=500us')).toMatchObject({ delayMs: 0.5 });
    expect(parseFault('accept-delay=1m')).toMatchObject({ delayMs: 60_000 });
  });

  it('echo-server --fault latency=50 exits 2 naming --fault', async () => {
    const r = await runCommand(process.execPath, [
      bin('echo-server'),
      '--port',
      '0',
      '--fault',
      'latency=50',
    ]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--fault .*50: add a unit, e\.g\. 50ms/);
    expect(r.err).not.toMatch(/\n\s+at /);
  });
});

describe('--cert and --key of different key types', () => {
  const openssl = (...args: string[]) => {
    const r = spawnSync('openssl', args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
  };
  const pair = (name: string, keyArgs: string[]) => {
    const key = path.join(dir, `${name}.key`);
    const cert = path.join(dir, `${name}.crt`);
    openssl(
      'req',
      '-x509',
      '-newkey',
      ...keyArgs,
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
    );
    return { key, cert };
  };

  it.each([
    ['an EC certificate with an RSA key', 'ec', 'rsa'],
    ['an RSA certificate with an EC key', 'rsa', 'ec'],
  ])('%s: exit 2 naming --cert/--key, before any fingerprint', async (_what, certType, keyType) => {
    const ec = pair(`ec-${certType}-${keyType}`, ['ec', '-pkeyopt', 'ec_paramgen_curve:P-256']);
    const rsa = pair(`rsa-${certType}-${keyType}`, ['rsa:2048']);
    const cert = certType === 'ec' ? ec.cert : rsa.cert;
    const key = keyType === 'ec' ? ec.key : rsa.key;
    const r = await runCommand(process.execPath, [
      bin('echo-server'),
      '--port',
      '0',
      '--tls',
      '--cert',
      cert,
      '--key',
      key,
    ]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--key .*: does not belong to the certificate in --cert /);
    expect(r.err).toContain(`an ${keyType.toUpperCase()} key, an ${certType.toUpperCase()} certificate`);
    expect(r.err).not.toMatch(/SHA-256|listening/);
    expect(r.err).not.toMatch(/\n\s+at /);
  });
});

let seq = 0;
const sockPath = (name: string) => path.join(dir, `${name}-${process.pid}-${++seq}.sock`);

/** echo-server on a Unix socket, once it says it listens. */
async function spawnUnixServer(args: string[]) {
  const p = spawnCli('echo-server', ['--log-format', 'json', ...args]);
  await p.waitStderr(/listening on unix:/);
  return p;
}

describe('--unix removes only the socket it made', () => {
  // every mode under test:e2e
  it.each(matrix(SERVER_MODES, ['evented', 'fork']))(
    '%s: a regular file put at the path meanwhile stays',
    async (_mode, args) => {
      const p = sockPath('replaced-by-file');
      const srv = await spawnUnixServer([...args, '--unix', p]);
      unlinkSync(p);
      writeFileSync(p, 'not yours');
      srv.child.kill('SIGTERM');
      expect((await srv.exit).code).toBe(0);
      expect(readFileSync(p, 'utf8')).toBe('not yours');
    },
  );

  it("another server's socket that replaced ours stays and keeps answering; its own is removed", async () => {
    const p = sockPath('replaced-by-server');
    const ours = await spawnUnixServer(['--unix', p]);
    renameSync(p, `${p}.old`);
    const theirs = await spawnUnixServer(['--unix', p]);
    const before = statSync(p).ino;
    ours.child.kill('SIGTERM');
    expect((await ours.exit).code).toBe(0);
    expect(statSync(p).ino).toBe(before);
    expect(statSync(`${p}.old`).isSocket()).toBe(true); // moved away: not at the path we bound
    expect((await runEchoClient(['--unix', p, '-m', 'still here'])).out.toString()).toBe('still here\n');
    theirs.child.kill('SIGTERM');
    expect((await theirs.exit).code).toBe(0);
    expect(() => statSync(p)).toThrow(/ENOENT/);
  });
});

describe.runIf(process.platform === 'linux')('abstract Unix sockets (@name) with their exact length', () => {
  const hasSocat = hasCommand('socat', '-V');

  it('echo-server --unix @name: ss -xl shows the exact name, socat ABSTRACT-CONNECT reaches it', async () => {
    const name = `echo-abs-${process.pid}-${++seq}`;
    await spawnUnixServer(['--unix', `@${name}`]);
    const ss = spawnSync('ss', ['-xlH'], { encoding: 'utf8' }).stdout;
    const ours = ss.split('\n').filter((l) => l.includes(name));
    expect(ours).toHaveLength(1);
    expect(ours[0]).toMatch(new RegExp(`\\s@${name}\\s`));
    if (!hasSocat) return;
    const r = await runCommand('socat', ['-t', '5', '-', `ABSTRACT-CONNECT:${name}`], 'via socat\n');
    expect(r.code).toBe(0);
    expect(r.out.toString()).toBe('via socat\n');
  });

  it.runIf(hasSocat)('echo-client and echo-chat --unix @name reach socat ABSTRACT-LISTEN', async () => {
    const name = `echo-abs-listen-${process.pid}-${++seq}`;
    const socat = spawn('socat', [`ABSTRACT-LISTEN:${name},fork`, 'EXEC:cat'], { stdio: 'ignore' });
    onTestFinished(() => {
      socat.kill('SIGKILL');
    });
    await until(
      () => spawnSync('ss', ['-xlH'], { encoding: 'utf8' }).stdout.includes(`@${name} `),
      10_000,
      'socat listening',
    );
    const r = await runEchoClient(['--unix', `@${name}`, '-m', 'to socat']);
    expect(r.err).toBe('');
    expect(r.out.toString()).toBe('to socat\n');
    const chat = await runCommand(process.execPath, [bin('echo-chat'), '--unix', `@${name}`], 'chat line\n');
    expect(chat.code).toBe(0);
    expect(chat.out.toString()).toContain('chat line');
  });

  it('a name nobody listens on: ECONNREFUSED, one line, exit 1', async () => {
    const r = await runEchoClient(['--unix', `@echo-nobody-${process.pid}-${++seq}`, '-m', 'x']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/ECONNREFUSED|refused/);
    expect(r.err).not.toMatch(/\n\s+at /);
  });
});

describe('scheduled faults hold bounded memory against a client that never reads', () => {
  const rssMB = (pid: number) =>
    Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

  it
    .runIf(process.platform === 'linux')
    .each([
      [['slice=1,delay=1ms']],
      [['bandwidth=50']],
      [['latency=20ms,jitter=5ms']],
      [['slice=1,delay=1ms', 'latency=20ms']],
    ])('--fault %j: 8 MB sent, none read: the server grows < 25 MB', { timeout: 60_000 }, async (faults) => {
    const srv = await spawnServer(faults.flatMap((f) => ['--fault', f]));
    const before = rssMB(srv.child.pid!);
    const s = net.connect({ port: srv.port, host: '127.0.0.1' });
    onTestFinished(() => {
      s.destroy();
    });
    await new Promise((r) => s.once('connect', r));
    s.pause(); // never reads its echo
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    let sent = 0;
    const write = () => {
      while (sent < 8 * 1024 * 1024) {
        sent += chunk.length;
        if (!s.write(chunk)) return;
      }
    };
    s.on('drain', write);
    write();
    // until the server stops reading: what the client handed to its kernel stays put for 2 s
    let handed = -1;
    let since = Date.now();
    let peak = before;
    await until(
      () => {
        peak = Math.max(peak, rssMB(srv.child.pid!));
        const now = sent - s.writableLength;
        if (now !== handed) {
          handed = now;
          since = Date.now();
        }
        return Date.now() - since > 2000;
      },
      45_000,
      'the server to stop reading',
    );
    expect(handed).toBeGreaterThan(0);
    expect(peak - before).toBeLessThan(25);
  });

  it.each([
    [['slice=1,delay=0ms'], 32 * 1024],
    [['slice=3,delay=0ms', 'latency=5ms,jitter=4ms'], 96 * 1024],
    [['latency=3ms,jitter=2ms'], 1024 * 1024],
    [['bandwidth=4m', 'latency=2ms'], 300 * 1024],
    [['slice=1000,delay=1ms', 'bandwidth=2m'], 300 * 1024],
  ])(
    '--fault %j: a client that reads gets its %i bytes back byte-exact',
    { timeout: 60_000 },
    async (faults, size) => {
      const srv = await spawnServer(faults.flatMap((f) => ['--fault', f]));
      const data = Buffer.alloc(size);
      for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 9)) & 0xff;
      const s = net.connect({ port: srv.port, host: '127.0.0.1' });
      onTestFinished(() => {
        s.destroy();
      });
      const all = readAll(s);
      for (let off = 0; off < data.length; off += 10_000) s.write(data.subarray(off, off + 10_000));
      s.end();
      const back = await all;
      expect(back.length).toBe(data.length);
      expect(back.equals(data)).toBe(true);
    },
  );
});

describe('--fault accept-delay never blocks the process', () => {
  it('with no client waiting, the server still answers its metrics port and ends on SIGTERM', async () => {
    const srv = await spawnServer(['--fault', 'accept-delay=20ms', '--metrics', '0']);
    const m = await srv.waitStderr(/metrics on http:\/\/127\.0\.0\.1:(\d+)\/metrics/);
    // several accept-delay ticks pass with nothing in the accept queue
    await until(() => /faults injected on purpose/.test(srv.stderr()), 5000, 'the fault warning');
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`http://127.0.0.1:${m[1]}/metrics`, { signal: AbortSignal.timeout(3000) });
      expect(res.status).toBe(200);
      await res.text();
    }
    const a = await readAll(net.connect(srv.port, '127.0.0.1').end('late'));
    expect(a.toString()).toBe('late');
    srv.child.kill('SIGTERM');
    const t0 = Date.now();
    expect((await srv.exit).code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(3000);
  });
});

describe('--fault: a value is the whole text after its "="', () => {
  it.each([
    'latency=5ms=3',
    'latency=5ms,jitter=1ms=2',
    'close-after=10=3',
    'drop=0.5=1',
    'corrupt=0.1,p=0.5=1',
  ])('%s is refused, not cut at the second "="', (spec) => {
    expect(() => parseFault(spec)).toThrow(/--fault/);
  });
});
