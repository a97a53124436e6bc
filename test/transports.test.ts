// Transports: TLS, Unix-domain sockets, the PROXY protocol and dual stack, in every server mode
// and through every client, against peers nobody here wrote (openssl, socat, ncat, HAProxy).
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { generate } from 'selfsigned';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { connectTcp } from '../src/core/connect.js';
import { explainError } from '../src/core/errors.js';
import { buildProxyHeader } from '../src/core/proxy-protocol.js';
import {
  type CliName,
  connect,
  freePort,
  hasCommand,
  jsonLines,
  SERVER_MODES as MODES,
  onPty,
  plainServer,
  readN,
  refusal,
  runCommand,
  runEchoClient,
  spawnCli,
  spawnServer,
  tcpListening,
  until,
  watchEnd,
} from './helpers.js';

const hasSocat = hasCommand('socat', '-V');
const hasOpenssl = hasCommand('openssl', 'version');
const hasHaproxy = hasCommand('haproxy', '-v');
const hasScript = hasCommand('script', '--version');
for (const [ok, what] of [
  [hasSocat, 'socat'],
  [hasOpenssl, 'openssl'],
  [hasHaproxy, 'haproxy'],
] as const) {
  if (!ok) console.warn(`skipped the ${what} interop tests: ${what} is not installed`);
}
const hasIpv6 = (() => {
  const r = spawnSync(process.execPath, [
    '-e',
    "require('net').createServer().listen(0,'::1',function(){this.close()}).on('error',()=>process.exit(1))",
  ]);
  return r.status === 0;
})();
if (!hasIpv6) console.warn('skipped the dual-stack tests: ::1 cannot be bound here');

const MB10 = randomBytes(10 * 1024 * 1024);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'echo-transports-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let seq = 0;
const sockPath = (name = 'echo') => path.join(dir, `${name}-${process.pid}-${++seq}.sock`);

const run = runCommand;
const client = runEchoClient;

/** echo-server on a Unix socket, once it says it listens. */
async function spawnUnixServer(args: string[]) {
  const p = spawnCli('echo-server', ['--log-format', 'json', ...args]);
  await p.waitStderr(/listening on unix:/);
  return p;
}

async function fingerprintOf(srv: { waitStderr: (re: RegExp) => Promise<RegExpMatchArray> }) {
  return (await srv.waitStderr(/SHA-256 ([0-9A-F:]{95})/))[1]!;
}

/** A certificate (and key) written to files; `names`: what it is for. */
async function certFiles(
  name: string,
  names: string[],
  validity: { notBeforeDate?: Date; notAfterDate?: Date } = {},
): Promise<{ cert: string; key: string }> {
  const pems = await generate([{ name: 'commonName', value: names[0] ?? 'x' }], {
    keyType: 'ec',
    algorithm: 'sha256',
    ...validity,
    extensions: [
      {
        name: 'subjectAltName',
        altNames: names.map((n) =>
          net.isIP(n) ? { type: 7 as const, ip: n } : { type: 2 as const, value: n },
        ),
      },
    ],
  });
  const cert = path.join(dir, `${name}.crt`);
  const key = path.join(dir, `${name}.key`);
  writeFileSync(cert, pems.cert);
  writeFileSync(key, pems.private);
  return { cert, key };
}

const closedLines = (stderr: string) => jsonLines(stderr).filter((l) => String(l.msg).startsWith('closed '));
const totals = (stderr: string) => jsonLines(stderr).find((l) => String(l.msg).startsWith('totals:'));

// --- every server mode ------------------------------------------------------------------------

describe.each(MODES)('--mode %s', (mode, args) => {
  it('--tls: 10 MB piped through echo-client --tls --fingerprint come back byte-exact, then FIN', async () => {
    const srv = await spawnServer([...args, '--tls']);
    const fp = await fingerprintOf(srv);
    const r = await client(['--tls', '--fingerprint', fp, '127.0.0.1', String(srv.port)], MB10);
    expect(r.err).not.toMatch(/Error|at /);
    expect(r.code).toBe(0);
    expect(sha(r.out)).toBe(sha(MB10));
    const one = await client([
      '--tls',
      '--fingerprint',
      fp,
      '-m',
      'hello tls',
      '127.0.0.1',
      String(srv.port),
    ]);
    expect(one.out.toString()).toBe('hello tls\n');
    srv.child.kill('SIGTERM');
    expect((await srv.exit).code).toBe(0);
    expect(totals(srv.stderr())).toMatchObject({ connections: 2, bytesIn: MB10.length + 9 });
  });

  it('--unix: 10 MB byte-exact, peers named by pid, the socket file removed at shutdown', async () => {
    const p = sockPath(mode);
    const srv = await spawnUnixServer([...args, '--unix', p, '-v']);
    const r = await client(['--unix', p], MB10);
    expect(r.code).toBe(0);
    expect(sha(r.out)).toBe(sha(MB10));
    expect((await client(['--unix', p, '-m', 'over unix'])).out.toString()).toBe('over unix\n');
    srv.child.kill('SIGTERM');
    expect((await srv.exit).code).toBe(0);
    expect(existsSync(p)).toBe(false);
    expect(closedLines(srv.stderr()).map((l) => l.peer)).toEqual([
      expect.stringMatching(/^unix pid \d+ uid \d+$/),
      expect.stringMatching(/^unix pid \d+ uid \d+$/),
    ]);
  });

  it('--proxy-protocol: the header names the client for logs, --deny and --max-connections-per-ip', async () => {
    const srv = await spawnServer([
      ...args,
      '--proxy-protocol',
      '--handshake-timeout',
      '2s',
      '--max-connections-per-ip',
      '1',
      '--deny',
      '198.51.100.0/24',
      '-v',
    ]);
    const withHeader = async (header: Buffer | string, data: string) => {
      const s = await connect(srv.port);
      const w = watchEnd(s);
      s.write(Buffer.concat([Buffer.from(header), Buffer.from(data)])); // one segment: header and data
      return { s, w };
    };
    const a = await withHeader(`PROXY TCP4 203.0.113.7 127.0.0.1 40000 ${srv.port}\r\n`, 'first');
    const aPort = a.s.localPort;
    expect((await readN(a.s, 5)).toString()).toBe('first');
    // the same client (by its header) again: over --max-connections-per-ip 1
    const b = await withHeader(`PROXY TCP4 203.0.113.7 127.0.0.1 40001 ${srv.port}\r\n`, 'second');
    expect((await b.w.end).length).toBe(0);
    const c = await withHeader(`PROXY TCP4 198.51.100.9 127.0.0.1 40002 ${srv.port}\r\n`, 'denied');
    expect((await c.w.end).length).toBe(0);
    const d = await withHeader('GET / HTTP/1.0\r\n\r\n', '');
    expect((await d.w.end).length).toBe(0);
    // the refused clients close their side too (a shutdown waits for their FIN for up to
    // REFUSED_LINGER_MS)
    for (const x of [b, c, d]) x.s.end();
    a.s.end();
    await a.w.end;
    const v2 = buildProxyHeader(
      2,
      { address: '2001:db8::7', port: 5555 },
      { address: '::1', port: srv.port },
    );
    const e = await withHeader(v2, 'over v2');
    const ePort = e.s.localPort;
    expect((await readN(e.s, 7)).toString()).toBe('over v2');
    e.s.end();
    await e.w.end;
    // our own client's header (its real addresses)
    expect(
      (await client(['--send-proxy', 'v1', '-m', 'v1', '127.0.0.1', String(srv.port)])).out.toString(),
    ).toBe('v1\n');
    srv.child.kill('SIGTERM');
    expect((await srv.exit).code).toBe(0);
    const peers = closedLines(srv.stderr()).map((l) => l.peer);
    expect(peers).toContain(`203.0.113.7:40000 via 127.0.0.1:${aPort}`);
    expect(peers).toContain(`[2001:db8::7]:5555 via 127.0.0.1:${ePort}`);
    expect(srv.stderr()).toMatch(/refused 198\.51\.100\.9: matches --deny/);
    expect(srv.stderr()).toMatch(/refused 127\.0\.0\.1: invalid PROXY header/);
    expect(totals(srv.stderr())).toMatchObject({
      connections: 3,
      refused: 3,
      refusedBy: { 'per-ip': 1, access: 1, proxy: 1 },
    });
  });
});

// --- TLS ----------------------------------------------------------------------------------------

describe('TLS', () => {
  it.skipIf(!hasSocat)(
    'socat OPENSSL: against echo-server --tls: 10 MB byte-exact with half-close',
    async () => {
      const srv = await spawnServer(['--tls']);
      const r = await run('socat', ['-t', '10', '-', `OPENSSL:127.0.0.1:${srv.port},verify=0`], MB10);
      expect(r.code).toBe(0);
      expect(sha(r.out)).toBe(sha(MB10));
    },
  );

  it.skipIf(!hasOpenssl)('openssl s_client against echo-server --tls: 1 MB byte-exact', async () => {
    const srv = await spawnServer(['--tls', '--mode', 'workers', '--workers', '2']);
    const payload = randomBytes(1024 * 1024);
    const child = spawn(
      'openssl',
      ['s_client', '-connect', `127.0.0.1:${srv.port}`, '-quiet', '-no_ign_eof', '-nocommands'],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    onTestFinished(() => {
      child.kill('SIGKILL');
    });
    const out: Buffer[] = [];
    let got = 0;
    // s_client exits at stdin EOF without waiting for the echo: end stdin once it is all back
    child.stdout!.on('data', (d: Buffer) => {
      out.push(d);
      got += d.length;
      if (got >= payload.length) child.stdin!.end();
    });
    child.stdin!.write(payload);
    await once(child, 'close');
    expect(sha(Buffer.concat(out))).toBe(sha(payload));
  });

  it.skipIf(!hasSocat)(
    'echo-client --tls --ca against socat OPENSSL-LISTEN echoing (EXEC:cat): 10 MB byte-exact',
    async () => {
      const { cert, key } = await certFiles('socat', ['127.0.0.1']);
      const port = await freePort();
      const socat = spawn(
        'socat',
        [`OPENSSL-LISTEN:${port},bind=127.0.0.1,reuseaddr,cert=${cert},key=${key},verify=0`, 'EXEC:cat'],
        { stdio: 'ignore' },
      );
      onTestFinished(() => {
        socat.kill('SIGKILL');
      });
      await until(() => tcpListening(port), 10_000, 'socat listening');
      const r = await client(['--tls', '--ca', cert, '127.0.0.1', String(port)], MB10);
      expect(r.err).not.toMatch(/echo-client: /);
      expect(r.code).toBe(0);
      expect(sha(r.out)).toBe(sha(MB10));
    },
  );

  it('what a client checks: CA, name, expiry, pin; each failure one explained line, exit 1', async () => {
    const srv = await spawnServer(['--tls']);
    const port = String(srv.port);
    const fp = await fingerprintOf(srv);
    const selfSigned = await client(['--tls', '-m', 'x', '127.0.0.1', port]);
    expect(selfSigned.code).toBe(1);
    expect(selfSigned.err).toMatch(/^echo-client: self-signed certificate — .*--fingerprint/);
    const wrongPin = await client([
      '--tls',
      '--fingerprint',
      fp.replace(/^../, fp.startsWith('00') ? '11' : '00'),
      '-m',
      'x',
      '127.0.0.1',
      port,
    ]);
    expect(wrongPin.code).toBe(1);
    expect(wrongPin.err).toMatch(/not the pinned one/);
    const insecure = await client(['--tls', '--insecure', '-m', 'x', '127.0.0.1', port]);
    expect(insecure.code).toBe(0);
    expect(insecure.err).toMatch(/--insecure: the server's certificate is NOT checked/);

    const named = await certFiles('named', ['example.test']);
    const other = await spawnServer(['--tls', '--cert', named.cert, '--key', named.key]);
    const mismatch = await client(['--tls', '--ca', named.cert, '-m', 'x', '127.0.0.1', String(other.port)]);
    expect(mismatch.code).toBe(1);
    expect(mismatch.err).toMatch(/not for the name or address connected to.*--servername/);
    const byName = await client([
      '--tls',
      '--ca',
      named.cert,
      '--servername',
      'example.test',
      '-m',
      'ok',
      '127.0.0.1',
      String(other.port),
    ]);
    expect(byName.out.toString()).toBe('ok\n');

    const old = await certFiles('expired', ['127.0.0.1'], {
      notBeforeDate: new Date(Date.now() - 10 * 86_400_000),
      notAfterDate: new Date(Date.now() - 86_400_000),
    });
    const expired = await spawnServer(['--tls', '--cert', old.cert, '--key', old.key]);
    const r = await client(['--tls', '--ca', old.cert, '-m', 'x', '127.0.0.1', String(expired.port)]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/certificate has expired — /);
  });

  it('--alpn: the protocol both sides agree on is shown with -v (and to openssl s_client)', async () => {
    const srv = await spawnServer(['--tls', '--alpn', 'echo']);
    const r = await client([
      '--tls',
      '--insecure',
      '--alpn',
      'h2,echo',
      '-v',
      '-m',
      'x',
      '127.0.0.1',
      String(srv.port),
    ]);
    expect(r.code).toBe(0);
    expect(r.err).toMatch(/TLS: TLSv1\.3 \S+, ALPN echo, certificate NOT verified/);
    if (hasOpenssl) {
      const o = await run('openssl', ['s_client', '-connect', `127.0.0.1:${srv.port}`, '-alpn', 'echo'], '');
      expect(o.out.toString()).toMatch(/ALPN protocol: echo/);
    }
  });

  it('plain on one side, TLS on the other: both sides say so', async () => {
    const srv = await spawnServer(['--tls']);
    const plain = await client(['-m', 'hello', '127.0.0.1', String(srv.port)]);
    expect(plain.code).toBe(1);
    expect(plain.err).toMatch(/[Aa]dd --tls/);
    await srv.waitStderr(/refused 127\.0\.0\.1: plain bytes on a TLS port/);

    const { port } = await plainServer((s) => {
      s.on('error', () => {}); // the TLS client resets it when it gives up
      s.pipe(s);
    }); // a plain echo server
    const tlsToPlain = await client(['--tls', '--insecure', '-m', 'x', '127.0.0.1', String(port)]);
    expect(tlsToPlain.code).toBe(1);
    expect(tlsToPlain.err).toMatch(/does not speak TLS: drop --tls/);

    const silent = await plainServer((s) => s.on('error', () => {})); // accepts and says nothing
    const t0 = Date.now();
    const hung = await client([
      '--tls',
      '--insecure',
      '--connect-timeout',
      '500ms',
      '-m',
      'x',
      '127.0.0.1',
      String(silent.port),
    ]);
    expect(hung.code).toBe(1);
    expect(hung.err).toMatch(/TLS handshake with 127\.0\.0\.1 timed out — /);
    expect(Date.now() - t0).toBeLessThan(8000);
  });

  it('--handshake-timeout: a client that never starts TLS is closed and logged', async () => {
    const srv = await spawnServer(['--tls', '--handshake-timeout', '300ms']);
    const s = await connect(srv.port);
    const w = watchEnd(s);
    await w.end.catch(() => {}); // closed by the server, without a byte
    await srv.waitStderr(/ERR_TLS_HANDSHAKE_TIMEOUT — .*--handshake-timeout/);
  });

  it('bench --tls (ping-pong and connect) and echo-chat --tls', async () => {
    const srv = await spawnServer(['--tls']);
    const fp = await fingerprintOf(srv);
    for (const mode of ['pingpong', 'connect']) {
      const b = await client([
        'bench',
        '--tls',
        '--fingerprint',
        fp,
        '--mode',
        mode,
        '-c',
        '2',
        '--requests',
        '50',
        '--warmup',
        '0',
        '--json',
        '127.0.0.1',
        String(srv.port),
      ]);
      expect(b.err).toBe('');
      const r = JSON.parse(b.out.toString());
      expect(r).toMatchObject({ mismatches: 0, errors: {} });
      expect(r.count).toBeGreaterThanOrEqual(50);
    }
    const a = spawnCli('echo-chat', ['--listen', '--port', '0', '--tls'], { stdin: 'pipe' });
    const port = (await a.waitStderr(/listening on 127\.0\.0\.1:(\d+) \(TLS\)/))[1]!;
    const chatFp = (await a.waitStderr(/SHA-256 ([0-9A-F:]{95})/))[1]!;
    const b = spawnCli('echo-chat', ['--tls', '--fingerprint', chatFp, '127.0.0.1', port], { stdin: 'pipe' });
    await b.waitStderr(/connected to 127\.0\.0\.1:\d+ \(TLS\)/);
    a.child.stdin!.write('hello from A\n');
    b.child.stdin!.end('hello from B\n');
    await a.waitStdout(/hello from B/);
    await b.waitStdout(/hello from A/);
    a.child.stdin!.end();
    expect((await a.exit).code).toBe(0);
    expect((await b.exit).code).toBe(0);
  });

  it.skipIf(!hasScript)('interactive over TLS: the prompt, the echo, Q', async () => {
    const srv = await spawnServer(['--tls']);
    const fp = await fingerprintOf(srv);
    const t = onPty('echo-client', ['--tls', '--fingerprint', fp, '127.0.0.1', String(srv.port)]);
    await t.waitFor(/Input message \(Q to quit\): /);
    t.type('secret line\n');
    await t.waitFor(/from server: secret line/);
    t.type('Q\n');
    expect(await t.exit).toBe(0);
  });
});

// --- Unix-domain sockets --------------------------------------------------------------------

describe('Unix-domain sockets', () => {
  it.skipIf(!hasSocat)(
    'socat on both sides: UNIX-CONNECT to echo-server, echo-client to UNIX-LISTEN EXEC:cat',
    async () => {
      const p = sockPath();
      await spawnUnixServer(['--unix', p]);
      const r = await run('socat', ['-t', '10', '-', `UNIX-CONNECT:${p}`], MB10);
      expect(r.code).toBe(0);
      expect(sha(r.out)).toBe(sha(MB10));

      const q = sockPath('socat');
      // EXEC:cat, not PIPE: socat's PIPE (a datagram socketpair here) stalls on bulk data
      const socat = spawn('socat', [`UNIX-LISTEN:${q},fork`, 'EXEC:cat'], { stdio: 'ignore' });
      onTestFinished(() => {
        socat.kill('SIGKILL');
      });
      await until(() => existsSync(q), 10_000, 'socat socket file');
      const back = await client(['--unix', q], MB10);
      expect(back.code).toBe(0);
      expect(sha(back.out)).toBe(sha(MB10));
    },
  );

  it('a stale socket file is removed (and said so); a live one and a non-socket are left alone', async () => {
    const p = sockPath('stale');
    const first = await spawnUnixServer(['--unix', p]);
    first.child.kill('SIGKILL'); // no chance to remove its file
    await first.exit;
    expect(statSync(p).isSocket()).toBe(true);
    const second = await spawnUnixServer(['--unix', p]);
    expect(second.stderr()).toMatch(/removed the stale socket file .*a connect to it was refused/);
    expect((await client(['--unix', p, '-m', 'again'])).out.toString()).toBe('again\n');

    const third = spawnCli('echo-server', ['--unix', p]);
    expect((await third.exit).code).toBe(1);
    expect(third.stderr()).toMatch(/another process is listening on this Unix socket/);
    expect((await client(['--unix', p, '-m', 'still'])).out.toString()).toBe('still\n');

    const file = path.join(dir, 'not-a-socket');
    writeFileSync(file, 'keep me');
    const fourth = spawnCli('echo-server', ['--unix', file]);
    expect((await fourth.exit).code).toBe(1);
    expect(fourth.stderr()).toMatch(/exists and is not a socket; it was left alone/);
    expect(readFileSync(file, 'utf8')).toBe('keep me');
  });

  it('--unix-mode sets the file permissions; @name is an abstract socket with no file', async () => {
    const p = sockPath('mode');
    await spawnUnixServer(['--unix', p, '--unix-mode', '0600']);
    expect(statSync(p).mode & 0o777).toBe(0o600);
    if (process.platform === 'linux') {
      const name = `@echo-test-${process.pid}-${++seq}`;
      const srv = await spawnUnixServer(['--unix', name]);
      expect(srv.stderr()).toMatch(new RegExp(`listening on unix:${name} `));
      expect((await client(['--unix', name, '-m', 'abstract'])).out.toString()).toBe('abstract\n');
    }
  });

  it('echo-chat and bench over a Unix socket', async () => {
    const p = sockPath('chat');
    const a = spawnCli('echo-chat', ['--listen', '--unix', p], { stdin: 'pipe' });
    await a.waitStderr(/listening on unix:/);
    const b = spawnCli('echo-chat', ['--unix', p], { stdin: 'pipe' });
    await a.waitStderr(/peer unix pid \d+ uid \d+ connected/);
    b.child.stdin!.end('over the socket file\n');
    await a.waitStdout(/over the socket file/);
    a.child.stdin!.end();
    expect((await a.exit).code).toBe(0);
    expect((await b.exit).code).toBe(0);

    const q = sockPath('bench');
    await spawnUnixServer(['--unix', q]);
    const r = await client(['bench', '--unix', q, '-c', '2', '--requests', '100', '--warmup', '0', '--json']);
    expect(JSON.parse(r.out.toString())).toMatchObject({ mismatches: 0, errors: {} });
  });
});

// --- PROXY protocol through HAProxy ----------------------------------------------------------------

describe.skipIf(!hasHaproxy)('HAProxy in front (send-proxy, send-proxy-v2)', () => {
  it.each(['send-proxy', 'send-proxy-v2'])('%s: the server sees and limits the real client', async (how) => {
    const srv = await spawnServer(['--proxy-protocol', '--deny', '127.0.0.6', '-v']);
    const front = await freePort();
    const cfg = path.join(dir, `haproxy-${how}.cfg`);
    writeFileSync(
      cfg,
      `global\n  maxconn 100\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\nlisten echo\n  bind 127.0.0.1:${front}\n  server s1 127.0.0.1:${srv.port} ${how}\n`,
    );
    const hap = spawn('haproxy', ['-db', '-f', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
    onTestFinished(() => {
      hap.kill('SIGKILL');
    });
    await until(() => tcpListening(front), 10_000, 'haproxy listening');
    const s = await connect(front, '127.0.0.1', { localAddress: '127.0.0.5' } as net.NetConnectOpts);
    const sPort = s.localPort;
    s.write('through haproxy');
    expect((await readN(s, 15)).toString()).toBe('through haproxy');
    s.end();
    const denied = await connect(front, '127.0.0.1', { localAddress: '127.0.0.6' } as net.NetConnectOpts);
    const w = watchEnd(denied);
    denied.write('x');
    await w.end.catch(() => {});
    await srv.waitStderr(/refused 127\.0\.0\.6: matches --deny/);
    await srv.waitStderr(
      new RegExp(`closed 127\\.0\\.0\\.5:${sPort} via 127\\.0\\.0\\.1:\\d+: in 15 B, out 15 B`),
    );
  });
});

// --- dual stack and Happy Eyeballs ------------------------------------------------------------------

describe.skipIf(!hasIpv6)('dual stack', () => {
  it('--host :: takes IPv4 and IPv6 clients; --ipv6-only refuses IPv4', async () => {
    const dual = await spawnServer(['--host', '::']);
    expect(dual.stderr()).toMatch(/dual-stack: IPv4 clients too/);
    expect((await client(['-m', 'v4', '127.0.0.1', String(dual.port)])).out.toString()).toBe('v4\n');
    expect((await client(['-m', 'v6', '::1', String(dual.port)])).out.toString()).toBe('v6\n');
    const only = await spawnServer(['--host', '::', '--ipv6-only']);
    expect((await client(['-m', 'v6', '::1', String(only.port)])).out.toString()).toBe('v6\n');
    const v4 = await client(['-m', 'v4', '127.0.0.1', String(only.port)]);
    expect(v4.code).toBe(1);
    expect(v4.err).toMatch(/ECONNREFUSED/);
  });

  it('a name that resolves to ::1 then 127.0.0.1 reaches a server on 127.0.0.1; when none answers, every address is named', async () => {
    const both: net.LookupFunction = (_h, _o, cb) =>
      (cb as (e: null, a: { address: string; family: number }[]) => void)(null, [
        { address: '::1', family: 6 },
        { address: '127.0.0.1', family: 4 },
      ]);
    const { port } = await plainServer((s) => {
      s.on('error', () => {});
      s.pipe(s);
    });
    const { socket } = await connectTcp({ host: 'localhost', port, lookup: both, connectTimeoutMs: 5000 });
    expect(socket.remoteAddress).toBe('127.0.0.1');
    socket.destroy();
    const nobody = await freePort();
    const err = await connectTcp({
      host: 'localhost',
      port: nobody,
      lookup: both,
      connectTimeoutMs: 5000,
    }).catch((e) => e);
    const line = explainError(err, { role: 'client' }).line;
    expect(line).toContain(`(tried [::1]:${nobody} ECONNREFUSED, 127.0.0.1:${nobody} ECONNREFUSED)`);
    expect(line).toMatch(/A server on 127\.0\.0\.1 does not answer on ::1/);
  });
});

// --- bad input: exit 2 naming the flag --------------------------------------------------------------

describe('bad transport flags exit 2 naming the flag', () => {
  it.each([
    [
      'echo-server',
      ['--tls', '--cert', '/nonexistent.pem', '--key', '/nonexistent.key'],
      /--cert .*no such file/,
    ],
    ['echo-server', ['--tls', '--cert', '/tmp', '--key', '/tmp'], /--cert .*is a directory/],
    ['echo-server', ['--cert', 'x.pem'], /--cert: needs --tls/],
    ['echo-server', ['--tls', '--udp'], /--tls: cannot be used with --udp/],
    ['echo-server', ['--unix', '/tmp/x.sock', '--port', '7'], /--unix: cannot be used with --port/],
    ['echo-server', ['--unix', '/tmp/x.sock', '--keepalive'], /--keepalive: cannot be used with --unix/],
    ['echo-server', ['--unix', '/tmp/x.sock', '--udp'], /--unix .*no Unix datagram sockets/],
    [
      'echo-server',
      ['--unix', '/tmp/x.sock', '--allow', '10.0.0.0/8'],
      /--allow: cannot be used with --unix/,
    ],
    ['echo-server', ['--unix-mode', '0600'], /--unix-mode .*needs --unix/],
    ['echo-server', ['--unix', '/tmp/x.sock', '--unix-mode', '999'], /--unix-mode .*octal/],
    ['echo-server', ['--ipv6-only'], /--ipv6-only: needs an IPv6 --host/],
    ['echo-server', ['--handshake-timeout', '1s'], /--handshake-timeout .*needs --tls or --proxy-protocol/],
    ['echo-client', ['--tls', '--fingerprint', 'abc', '-m', 'x'], /--fingerprint .*64 hex digits/],
    ['echo-client', ['--ca', '/etc/hostname', '-m', 'x'], /--ca: needs --tls/],
    [
      'echo-client',
      ['--tls', '--insecure', '--fingerprint', 'AA'.repeat(32), '-m', 'x'],
      /--insecure: cannot be used with --fingerprint/,
    ],
    [
      'echo-client',
      ['--unix', '/tmp/x.sock', '127.0.0.1', '-m', 'x'],
      /--unix: cannot be used with a HOST argument/,
    ],
    ['echo-client', ['--send-proxy', 'v3', '-m', 'x'], /--send-proxy .*v1 or v2/],
    ['echo-chat', ['--listen', '--fingerprint', 'AA'.repeat(32)], /--fingerprint: checks the peer/],
    ['echo-chat', ['--cert', 'x', '127.0.0.1', '7'], /--cert: needs --listen/],
  ] as [CliName, string[], RegExp][])('%s %j', async (cmd, args, re) => {
    const r = await refusal(cmd, args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(re);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('a key that does not belong to the certificate', async () => {
    const a = await certFiles('a', ['127.0.0.1']);
    const b = await certFiles('b', ['127.0.0.1']);
    const r = await refusal('echo-server', ['--tls', '--cert', a.cert, '--key', b.key]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--key .*does not belong to the certificate/);
  });
});
