// The clients and the chat as a user of nc, ncat or socat runs them: piped bytes unchanged,
// honest exits on a terminal and in pipes, the flags those users reach for.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { once } from 'node:events';
import net from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { tcpStates } from '../src/core/tcp-states.js';
import { startUdpEchoServer } from '../src/index.js';
import { timeWaitOverflows } from '../src/lab/recorder.js';
import {
  bin,
  closedPort,
  connect,
  echoServer,
  freePort,
  hasCommand,
  jsonLines,
  onPty,
  plainServer,
  readN,
  refusal,
  spawnCli,
  spawnServer,
  until,
} from './helpers.js';

const hasScript = hasCommand('script');
/** readline's cursor move (ESC [ n G), as a regular expression source */
const CURSOR = `${String.fromCharCode(27)}\\[\\d+G`;
const hasSocat = hasCommand('socat', '-V');
if (!hasScript) console.warn('skipped the terminal tests: `script` (util-linux) is not installed');
if (!hasSocat)
  console.warn('skipped the socat UDP peer test: socat is not installed (apt-get install socat)');

/** Run echo-client with `input` on stdin; resolves with its stdout bytes, stderr and exit code. */
async function pipeThrough(args: string[], input: Buffer) {
  const child = spawn(process.execPath, [bin('echo-client'), ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  onTestFinished(() => {
    child.kill('SIGKILL');
  });
  const out: Buffer[] = [];
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => out.push(d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  child.stdin.end(input);
  const [code] = await once(child, 'close');
  return { code: code as number, out: Buffer.concat(out), stderr };
}

async function udpServer() {
  const srv = await startUdpEchoServer({ port: 0 });
  onTestFinished(() => srv.close().then(() => {}));
  return srv;
}

/** `socat` as a UDP echo server on a free port (one child per datagram). */
async function socatUdpEcho(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise<void>((r) => s.close(() => r()));
  const child = spawn('socat', ['-d', '-d', `UDP4-RECVFROM:${port},bind=127.0.0.1,fork`, 'PIPE'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  onTestFinished(() => {
    child.kill('SIGKILL');
  });
  // with -d -d socat says `receiving on …` once its socket is bound
  let err = '';
  await new Promise<void>((resolve, reject) => {
    child.once('exit', () => reject(new Error(`socat exited: ${err}`)));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      err += d;
      if (/ receiving on /.test(err)) resolve();
    });
  });
  return port;
}

describe('echo-client --udp piped: byte-exact', () => {
  const odd = Buffer.from('a\xff\x00b\nno newline at the end', 'latin1');

  it('NUL, 0xff and a last line without newline come back unchanged (our server)', async () => {
    const srv = await udpServer();
    const r = await pipeThrough(['--udp', '127.0.0.1', String(srv.address.port)], odd);
    expect(r.code, r.stderr).toBe(0);
    expect(r.out.equals(odd)).toBe(true);
    expect(srv.stats().bytesIn).toBe(odd.length); // nothing added, nothing re-encoded
  });

  it.skipIf(!hasSocat)('the same against socat as the UDP echo peer', async () => {
    const port = await socatUdpEcho();
    const r = await pipeThrough(['--udp', '127.0.0.1', String(port)], odd);
    expect(r.code, r.stderr).toBe(0);
    expect(r.out.equals(odd)).toBe(true);
  });

  it('200 KB of random bytes in --datagram-size 1400 pieces, verified', async () => {
    const srv = await udpServer();
    const payload = randomBytes(200_000);
    const r = await pipeThrough(
      ['--udp', '127.0.0.1', String(srv.address.port), '--datagram-size', '1400'],
      payload,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.out.equals(payload)).toBe(true);
    expect(srv.stats().datagramsIn).toBe(Math.ceil(200_000 / 1400));
  });

  it('a second echo-server --udp on a port in use fails with EADDRINUSE', async () => {
    const a = spawnCli('echo-server', ['--udp', '--port', '0', '--log-format', 'json']);
    const m = await a.waitStderr(/listening on 127\.0\.0\.1:(\d+) \(udp\)/);
    const b = spawnCli('echo-server', ['--udp', '--port', m[1]!]);
    expect((await b.exit).code).toBe(1);
    expect(b.stderr()).toMatch(/bind EADDRINUSE .* another UDP socket is bound to that address and port/);
    a.child.kill('SIGTERM');
    expect((await a.exit).code).toBe(0);
  });
});

describe('honest exits', () => {
  it.skipIf(!hasScript)('UDP interactive: ECONNREFUSED exits 1 at once', async () => {
    const port = await closedPort();
    const t = onPty('echo-client', ['--udp', '127.0.0.1', String(port)]);
    await t.waitFor(/Input message \(Q to quit\): /);
    t.type('anyone?\n');
    expect(await t.exit).toBe(1);
    expect(t.out()).toMatch(/ECONNREFUSED/);
  });

  it.skipIf(!hasScript)('interactive: a server that closes is reported when it happens, exit 1', async () => {
    let close!: () => void;
    const { port } = await plainServer((s) => {
      s.on('error', () => {});
      s.pipe(s);
      close = () => s.end();
    });
    const t = onPty('echo-client', ['127.0.0.1', String(port)]);
    await t.waitFor(/Input message \(Q to quit\): /);
    close(); // nothing typed: the client must notice by itself
    expect(await t.exit).toBe(1);
    // the prompt's line is ended first, then one line says why (readline moves the cursor: ESC [ n G)
    expect(t.out()).toMatch(
      new RegExp(
        `Input message \\(Q to quit\\): (${CURSOR})?\r\necho-client: the server closed the connection\r\n$`,
      ),
    );
  });

  it.skipIf(!hasScript)('interactive: Ctrl-C exits 130 and ends the prompt line', async () => {
    const srv = await echoServer();
    const t = onPty('echo-client', ['127.0.0.1', String(srv.address.port)]);
    await t.waitFor(/Input message \(Q to quit\): /);
    t.type('\x03');
    expect(await t.exit).toBe(130);
    expect(t.out()).toMatch(new RegExp(`Input message \\(Q to quit\\): (${CURSOR})?\r\n$`));
  });

  it.skipIf(!hasScript)(
    'interactive: what the server sends back is shown escaped on the terminal',
    async () => {
      // a peer that answers each line with terminal escapes instead of an echo of the same length
      const evil = '\x1b]0;TITLE\x07\x1b[2J\n';
      const { port } = await plainServer((s) => {
        s.on('data', (d: Buffer) => s.write(Buffer.from(evil.padEnd(d.length, 'x').slice(0, d.length))));
      });
      const t = onPty('echo-client', ['127.0.0.1', String(port)]);
      await t.waitFor(/Input message \(Q to quit\): /);
      t.type('0123456789abc\n'); // 14 bytes with the newline, as many as `evil`
      expect(await t.exit).toBe(1); // not an echo: the client says so
      expect(t.out()).not.toContain('\x1b]0;');
      expect(t.out()).toMatch(/echo differs from what was sent at offset 0/);
    },
  );

  it.skipIf(!hasScript)(
    '--heartbeat: a peer that stops answering is found while the prompt waits',
    async () => {
      const { port } = await plainServer((s) => s.resume()); // accepts, reads, never echoes: as good as dead
      const t = onPty('echo-client', [
        '127.0.0.1',
        String(port),
        '--heartbeat',
        '200ms',
        '--heartbeat-timeout',
        '500ms',
      ]);
      await t.waitFor(/Input message \(Q to quit\): /);
      expect(await t.exit).toBe(1); // nothing typed
      expect(t.out()).toMatch(/ERR_HEARTBEAT_TIMEOUT|no heartbeat echo within 500 ms/);
    },
  );

  it('piped into `head -c 1`: echo-client stops quietly, no stack trace', async () => {
    const srv = await echoServer();
    const p = spawnCli('echo-client', ['127.0.0.1', String(srv.address.port)], { stdin: 'pipe' });
    p.child.stdout!.once('data', () => p.child.stdout!.destroy()); // the reader leaves
    p.child.stdin!.on('error', () => {});
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    const pump = () => {
      while (p.child.stdin!.writable && p.child.stdin!.write(chunk)) {}
    };
    p.child.stdin!.on('drain', pump);
    pump();
    const { code } = await p.exit;
    expect(code).toBe(0);
    expect(p.stderr()).not.toMatch(/\n\s+at |EPIPE/);
  });

  it('--timeout: a silent peer does not hang -m', async () => {
    const { port } = await plainServer((s) => s.resume()); // reads, never answers
    const t0 = Date.now();
    const c = spawnCli('echo-client', ['127.0.0.1', String(port), '-m', 'hello', '--timeout', '300ms']);
    expect((await c.exit).code).toBe(1);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(c.stderr()).toMatch(/0 of 5 bytes came back within 300 ms/);
  });

  it('--count 3: one ping-style line per echo and a summary', async () => {
    const srv = await echoServer();
    const c = spawnCli('echo-client', ['127.0.0.1', String(srv.address.port), '-m', 'ping', '--count', '3']);
    expect((await c.exit).code).toBe(0);
    expect(c.stdout()).toMatch(
      /^(4 bytes from 127\.0\.0\.1:\d+: seq=[123] time=[\d.]+ ms\n){3}3 sent, 3 echoed; rtt min\/avg\/max = [\d.]+\/[\d.]+\/[\d.]+ ms\n$/,
    );
  });

  it('a reset peer is logged with the address saved at accept (iterative, reset while waiting)', async () => {
    const srv = await spawnServer(['--mode', 'iterative']);
    const a = await connect(srv.port);
    a.write('a');
    await readN(a, 1);
    const b = await connect(srv.port); // waits behind a, unread
    const bPort = b.localPort;
    b.write('b');
    await srv.waitStderr(/new clients wait, unread/); // accepted: its address is known
    b.resetAndDestroy();
    a.end();
    await srv.waitStderr(new RegExp(`closed 127\\.0\\.0\\.1:${bPort}: .*reset by peer`));
    expect(srv.stderr()).not.toMatch(/\?:0|undefined/);
  });
});

describe('bench', () => {
  it('against a closed port: one explained ECONNREFUSED line, exit 1, no table', async () => {
    const port = await closedPort();
    const b = spawnCli('echo-client', ['bench', '127.0.0.1', String(port), '-d', '1s']);
    expect((await b.exit).code).toBe(1);
    expect(b.stdout()).toBe('');
    expect(b.stderr()).toMatch(/^echo-client: connect ECONNREFUSED 127\.0\.0\.1:\d+ — nothing is listening/);
    expect(b.stderr().trim().split('\n')).toHaveLength(1);
  });

  it('--requests 100 stops at exactly 100', async () => {
    const srv = await echoServer();
    const b = spawnCli('echo-client', [
      'bench',
      `127.0.0.1:${srv.address.port}`,
      '--requests',
      '100',
      '-c',
      '4',
      '--pipeline',
      '4',
      '--warmup',
      '0',
      '--json',
    ]);
    expect((await b.exit).code).toBe(0);
    expect(JSON.parse(b.stdout()).count).toBe(100);
  });

  it('--udp that sees drops says the server may be rate-limiting', async () => {
    const srv = await spawnServer(['--udp', '--rate-limit', '50', '--rate-burst', '10']);
    const b = spawnCli('echo-client', [
      'bench',
      '--udp',
      '127.0.0.1',
      String(srv.port),
      '-c',
      '32',
      '-d',
      '500ms',
    ]);
    await b.exit;
    expect(b.stderr()).toMatch(/--udp --rate-limit 0/);
  });
});

describe('flags a socat/ncat user reaches for', () => {
  it.each([
    [(p: number) => [`127.0.0.1:${p}`, '-m', 'x']],
    [(p: number) => [String(p), '-m', 'x']],
    [(p: number) => ['--port', String(p), '-m', 'x']],
    [(p: number) => ['-4', 'localhost', String(p), '-m', 'x']],
  ])('%#: HOST:PORT, a lone PORT, --port, -4', async (args) => {
    const srv = await echoServer();
    const c = spawnCli('echo-client', args(srv.address.port));
    expect((await c.exit).code, c.stderr()).toBe(0);
    expect(c.stdout()).toBe('x\n');
  });

  it('[::1]:PORT', async () => {
    const srv = await echoServer({ host: '::1' });
    const c = spawnCli('echo-client', [`[::1]:${srv.address.port}`, '-m', 'six']);
    expect((await c.exit).code, c.stderr()).toBe(0);
    expect(c.stdout()).toBe('six\n');
  });

  it('--version on every command, help bench shows bench', async () => {
    const version = JSON.parse((await import('node:fs')).readFileSync('package.json', 'utf8')).version;
    for (const cmd of ['echo-server', 'echo-client', 'echo-chat', 'echo-lab']) {
      const p = spawnCli(cmd, ['--version']);
      expect((await p.exit).code).toBe(0);
      expect(p.stdout().trim()).toBe(version);
    }
    const h = spawnCli('echo-client', ['help', 'bench']);
    expect((await h.exit).code).toBe(0);
    expect(h.stdout()).toMatch(/Usage: echo-client bench/);
  });

  it.each([
    [['-m', 'x', '--resend', '2'], /--resend 2: needs --udp/],
    [['--udp', '-m', 'x', '--retry', '2'], /--retry: cannot be used with --udp/],
    [['-m', 'x', '--retries', '2'], /unknown option '--retries'/],
    [['-m', 'x', '-v', '-q'], /--verbose: cannot be used with --quiet/],
    [['-m', 'x', '--local-address', 'localhost'], /--local-address "localhost": must be an IP address/],
    [['--udp', '-m', 'x', '--keepalive'], /--keepalive: cannot be used with --udp/],
  ])('%j exits 2 naming both', async (args, re) => {
    const p = await refusal('echo-client', args);
    expect(p.code).toBe(2);
    expect(p.stderr).toMatch(re);
  });

  it('hints fit the command: echo-chat to a closed port does not say "start echo-server"', async () => {
    const port = await closedPort();
    const p = spawnCli('echo-chat', ['127.0.0.1', String(port)], { stdin: 'pipe' });
    expect((await p.exit).code).toBe(1);
    expect(p.stderr()).toMatch(/Start the other side first \(echo-chat --listen, nc -l\)/);
    expect(p.stderr()).not.toMatch(/echo-server/);
  });

  it('echo-client --local-port in use: the hint is about the local port, not --port 0', async () => {
    const srv = await echoServer();
    const held = net.createServer();
    await new Promise<void>((r) => held.listen(0, '127.0.0.1', r));
    onTestFinished(() => {
      held.close();
    });
    const local = (held.address() as net.AddressInfo).port;
    const c = spawnCli('echo-client', [
      '127.0.0.1',
      String(srv.address.port),
      '-m',
      'x',
      '--local-port',
      String(local),
    ]);
    expect((await c.exit).code).toBe(1);
    expect(c.stderr()).toMatch(/EADDRINUSE.*choose another --local-port/);
    expect(c.stderr()).not.toMatch(/--port 0/);
  });
});

describe('echo-client --local-port --no-reuse-addr', () => {
  it('reproduces the tutorial’s bind error on a port in TIME_WAIT; without the flag the reconnect works', async (ctx) => {
    const srv = await echoServer();
    const local = await freePort();
    const args = ['127.0.0.1', String(srv.address.port), '-m', 'x', '--local-port', String(local)];
    const overflowsBefore = timeWaitOverflows();
    const first = spawnCli('echo-client', args);
    expect((await first.exit).code).toBe(0); // the client closes first: its port goes to TIME_WAIT
    // unless the kernel's TIME_WAIT table is full (tcp_max_tw_buckets, filled by connect loads of
    // other programs on this host): then the close skips TIME_WAIT and the port binds freely
    const overflowsAfter = timeWaitOverflows();
    if (overflowsBefore !== undefined && overflowsAfter !== undefined && overflowsAfter > overflowsBefore)
      ctx.skip(
        `the kernel's TIME_WAIT table overflowed during this test (TcpExtTCPTimeWaitOverflow +${overflowsAfter - overflowsBefore}): no TIME_WAIT to bind against`,
      );
    const plain = spawnCli('echo-client', [...args, '--no-reuse-addr']);
    expect((await plain.exit).code).toBe(1);
    expect(plain.stderr()).toMatch(
      new RegExp(`bind EADDRINUSE 0\\.0\\.0\\.0:${local} — another socket holds`),
    );
    const again = spawnCli('echo-client', args); // Node's bind sets SO_REUSEADDR
    expect((await again.exit).code, again.stderr()).toBe(0);
  });

  it('--no-reuse-addr without --local-port exits 2', async () => {
    const p = await refusal('echo-client', ['-m', 'x', '--no-reuse-addr']);
    expect(p.code).toBe(2);
    expect(p.stderr).toMatch(/--no-reuse-addr: needs --local-port/);
  });
});

describe('echo-chat', () => {
  it('-q keeps stderr for problems; --log-format json makes status lines JSON', async () => {
    const a = spawnCli('echo-chat', ['--listen', '--port', '0', '--log-format', 'json'], { stdin: 'pipe' });
    const m = await a.waitStderr(/"msg":"listening on 127\.0\.0\.1:(\d+)"/);
    const b = spawnCli('echo-chat', ['-q', '127.0.0.1', m[1]!], { stdin: 'pipe' });
    await a.waitStderr(/"msg":"peer 127\.0\.0\.1:\d+ connected"/);
    b.child.stdin!.end('hi\n');
    await a.waitStdout(/hi\n/);
    a.child.stdin!.end();
    expect((await b.exit).code).toBe(0);
    expect((await a.exit).code).toBe(0);
    expect(b.stderr()).toBe('');
    expect(jsonLines(a.stderr()).map((l) => l.msg)).toContain('peer closed the connection');
  });

  it('--keep-open: when a peer leaves, the next one is taken', async () => {
    // no input (stdin at EOF): each conversation ends when its peer closes
    const a = spawnCli('echo-chat', ['--listen', '--keep-open', '--port', '0']);
    const port = Number((await a.waitStderr(/listening on 127\.0\.0\.1:(\d+)/))[1]);
    for (const who of ['first', 'second']) {
      const s = await connect(port);
      s.resume(); // read the chat's FIN, or 'close' never comes
      const closed = once(s, 'close');
      s.end(`${who}\n`);
      await a.waitStdout(new RegExp(`${who}\\n`));
      await closed;
    }
    expect(a.stderr().match(/peer 127\.0\.0\.1:\d+ connected/g)).toHaveLength(2);
    a.child.kill('SIGINT');
    expect((await a.exit).code).toBe(130);
  });

  it('--keep-open: Ctrl-C during a conversation, with a peer waiting, ends the command (130)', async () => {
    const a = spawnCli('echo-chat', ['--listen', '--keep-open', '--port', '0'], { stdin: 'pipe' });
    const port = Number((await a.waitStderr(/listening on 127\.0\.0\.1:(\d+)/))[1]);
    const talking = await connect(port); // half-open allowed: the conversation stays open
    talking.resume();
    talking.write('hi\n');
    await a.waitStdout(/hi\n/);
    const waiting = await connect(port); // queued for the next conversation
    waiting.resume();
    a.child.kill('SIGINT');
    expect((await a.exit).code).toBe(130);
  });

  it('--keep-open: a peer that resets costs that conversation only; the next peer is taken', async () => {
    const a = spawnCli('echo-chat', ['--listen', '--keep-open', '--port', '0']);
    const port = Number((await a.waitStderr(/listening on 127\.0\.0\.1:(\d+)/))[1]);
    const rude = await connect(port);
    rude.write('one\n');
    await a.waitStdout(/one\n/);
    rude.resetAndDestroy();
    await a.waitStderr(/ECONNRESET/);
    const s = await connect(port);
    s.resume();
    const closed = once(s, 'close');
    s.end('two\n');
    await a.waitStdout(/two\n/);
    await closed;
    a.child.kill('SIGINT');
    expect((await a.exit).code).toBe(130);
    expect(a.stderr().match(/peer 127\.0\.0\.1:\d+ connected/g)).toHaveLength(2);
    expect(a.stderr()).not.toMatch(/\n\s+at /);
  });

  it.skipIf(!hasScript)(
    'on a terminal, Ctrl-C exits 130: connecting, and listening with --keep-open',
    async () => {
      const { port } = await plainServer(() => {});
      const c = onPty('echo-chat', ['127.0.0.1', String(port)]);
      await c.waitFor(/> /);
      c.type('\x03');
      expect(await c.exit).toBe(130);

      const l = onPty('echo-chat', ['--listen', '--keep-open', '--port', '0']);
      await l.waitFor(/listening on 127\.0\.0\.1:(\d+)/);
      const lport = Number(l.out().match(/listening on 127\.0\.0\.1:(\d+)/)![1]);
      const s = await connect(lport);
      s.resume();
      await l.waitFor(/> /);
      l.type('\x03');
      expect(await l.exit).toBe(130);
    },
  );

  it('--keep-open piped into `head -c 1`: the reader left, so the command ends (0)', async () => {
    const a = spawnCli('echo-chat', ['--listen', '--keep-open', '--port', '0'], { stdin: 'pipe' });
    const port = Number((await a.waitStderr(/listening on 127\.0\.0\.1:(\d+)/))[1]);
    a.child.stdout!.once('data', () => a.child.stdout!.destroy());
    const s = await connect(port);
    s.on('error', () => {});
    s.resume();
    s.write(Buffer.alloc(4 * 1024 * 1024, 0x62));
    expect((await a.exit).code).toBe(0);
    expect(a.stderr()).not.toMatch(/\n\s+at |EPIPE/);
  });

  it('--listen --host 0.0.0.0 warns that it is reachable from the network', async () => {
    const a = spawnCli('echo-chat', ['--listen', '--host', '0.0.0.0', '--port', '0'], { stdin: 'pipe' });
    await a.waitStderr(/listening on 0\.0\.0\.0: this server is reachable from the network/);
    a.child.kill('SIGTERM');
    expect((await a.exit).code).toBe(143);
  });

  it('piped into `head -c 1`: stops quietly', async () => {
    const { port } = await plainServer((s) => {
      s.on('error', () => {});
      s.write(Buffer.alloc(4 * 1024 * 1024, 0x62));
    });
    const p = spawnCli('echo-chat', ['127.0.0.1', String(port)], { stdin: 'pipe' });
    p.child.stdout!.once('data', () => p.child.stdout!.destroy());
    expect((await p.exit).code).toBe(0);
    expect(p.stderr()).not.toMatch(/\n\s+at |EPIPE/);
  });

  it.skipIf(!hasScript)(
    'on a terminal, OSC/CSI sequences from the peer are shown escaped and a split "é" is whole',
    async () => {
      let peer!: net.Socket;
      const { port } = await plainServer((s) => {
        peer = s;
      });
      const t = onPty('echo-chat', ['127.0.0.1', String(port)]);
      await t.waitFor(/> /);
      await new Promise<void>((r) =>
        peer.write('\x1b]0;TITLE\x07\x1b[2J\x1b]52;c;aGVsbG8=\x07 caf\xc3', 'latin1', () => r()),
      );
      // the second byte of é in its own segment, once the first is read: the kernel took it (the
      // write callback) and echo-chat's socket has nothing left in its receive queue
      const chatPort = peer.remotePort!;
      await until(
        () =>
          tcpStates([chatPort]).entries.find((e) => e.localPort === chatPort && e.remotePort === port)
            ?.rxQueue === 0,
        5000,
        'echo-chat reading the first segment',
      );
      peer.end('\xa9!\n', 'latin1');
      await t.waitFor(/peer closed the connection/);
      const screen = t.out();
      // é whole, on one line — or, when the machine was slow enough for the 200 ms hold of an
      // unfinished line to show "caf" first, continued on the next line, still whole (the
      // prompt drawn under "caf" is cleared by a carriage return before "é!" is printed)
      const plain = screen
        .split('\x1b')
        .map((part, i) => (i ? part.replace(/^\[[0-9;]*[A-Za-z]/, '') : part))
        .join('');
      expect(plain, JSON.stringify(plain)).toMatch(
        /\^\[\]0;TITLE\^G\^\[\[2J\^\[\]52;c;aGVsbG8=\^G caf([\r\n]+> \r)?é!\r?\n/,
      );
      expect(screen).not.toContain('\x1b]0;');
      expect(screen).not.toContain('\x1b]52;');
      expect(screen).not.toContain('\ufffd');
    },
  );

  it.skipIf(!hasScript)(
    'on a terminal, a character split across a held line that was already shown stays whole',
    async () => {
      let peer!: net.Socket;
      const { port } = await plainServer((s) => {
        peer = s;
      });
      const t = onPty('echo-chat', ['127.0.0.1', String(port)]);
      await t.waitFor(/> /);
      peer.write('held caf\xc3', 'latin1');
      // a line without its newline is shown after a short hold: the first byte of é is still unread
      await t.waitFor(/held caf/);
      peer.end('\xa9!\n', 'latin1');
      await t.waitFor(/peer closed the connection/);
      expect(t.out()).toMatch(/held caf\r\n[^\n]*é!\r\n/);
      expect(t.out()).not.toContain('\ufffd');
    },
  );
});

describe('packaging', () => {
  it('LICENSE matches package.json; npm pack ships bin, dist, the web pages and no source maps', () => {
    const pkg = JSON.parse(spawnSync('cat', ['package.json'], { encoding: 'utf8' }).stdout);
    const license = spawnSync('head', ['-1', 'LICENSE'], { encoding: 'utf8' }).stdout;
    expect(license).toMatch(new RegExp(`^${pkg.license} License`));
    const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { encoding: 'utf8' });
    const files: string[] = JSON.parse(r.stdout)[0].files.map((f: { path: string }) => f.path);
    expect(files).toContain('LICENSE');
    expect(files).toContain('bin/echo-server.js');
    expect(files).toContain('dist/index.js');
    expect(files.filter((f) => f.endsWith('.map'))).toEqual([]);
    expect(files).toContain('web/lab/index.html');
    expect(files).toContain('web/admin/index.html');
    expect(files.filter((f) => !/^(bin|dist|web)\/|^(LICENSE|README\.md|package\.json)$/.test(f))).toEqual(
      [],
    );
  });
});
