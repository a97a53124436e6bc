import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { bin, freePort, plainServer, refusal, socatListen, spawnCli, until } from './helpers.js';

const has = (cmd: string, arg = '-V') => spawnSync(cmd, [arg], { stdio: 'ignore' }).status === 0;
const hasTmux = has('tmux');
const hasNcat = has('ncat', '--version');
const hasSocat = has('socat');
if (!hasTmux) console.warn('skipped the terminal test: tmux is not installed');
if (!hasNcat) console.warn('skipped the ncat interop test: ncat is not installed (apt-get install ncat)');
if (!hasSocat) console.warn('skipped the socat interop test: socat is not installed (apt-get install socat)');

/** echo-chat --listen on port 0 with piped stdin; resolves once it prints its port. */
async function listener(extra: string[] = []) {
  const p = spawnCli('echo-chat', ['--listen', '--port', '0', ...extra], { stdin: 'pipe' });
  const m = await p.waitStderr(/listening on 127\.0\.0\.1:(\d+)/);
  return { ...p, port: Number(m[1]) };
}

describe('echo-chat', () => {
  it('two processes exchange lines both ways; the peer closing ends both with exit 0', async () => {
    const a = await listener();
    const b = spawnCli('echo-chat', ['127.0.0.1', String(a.port)], { stdin: 'pipe' });
    await a.waitStderr(/peer 127\.0\.0\.1:\d+ connected/);
    a.child.stdin!.write('hello from A\n');
    b.child.stdin!.write('hello from B\n');
    await Promise.all([b.waitStdout(/hello from A\n/), a.waitStdout(/hello from B\n/)]);
    // Ctrl-D on A: A half-closes; B sees the close, sends the rest of its input, closes at its
    // end and exits; then A sees B's close
    a.child.stdin!.end();
    await b.waitStderr(/peer closed the connection/);
    b.child.stdin!.end('last words from B\n');
    await a.waitStdout(/last words from B\n/);
    const [ea, eb] = await Promise.all([a.exit, b.exit]);
    expect(eb.code).toBe(0);
    expect(ea.code).toBe(0);
    expect(b.stderr()).toMatch(/peer closed the connection/);
    expect(a.stderr()).toMatch(/peer closed the connection/);
  });

  it('after Ctrl-D (half-close) it keeps printing until the peer closes', async () => {
    let peerSawFin!: () => void;
    const fin = new Promise<void>((r) => {
      peerSawFin = r;
    });
    const { port } = await plainServer((s) => {
      s.resume();
      s.on('end', () => {
        peerSawFin();
        s.end('still here after your FIN\n');
      });
    });
    const b = spawnCli('echo-chat', ['127.0.0.1', String(port)], {
      stdin: 'pipe',
    });
    await b.waitStderr(/connected/);
    b.child.stdin!.end('bye\n');
    await fin;
    expect((await b.exit).code).toBe(0);
    expect(b.stdout()).toBe('still here after your FIN\n');
    expect(b.stderr()).toMatch(/peer closed the connection/);
  });

  it('the listener stops listening once its peer is in (seed 004)', async () => {
    const a = await listener();
    const b = spawnCli('echo-chat', ['127.0.0.1', String(a.port)], { stdin: 'pipe' });
    await a.waitStderr(/connected/);
    const third = net.connect({ port: a.port, host: '127.0.0.1' });
    const [err] = await once(third, 'error');
    expect((err as NodeJS.ErrnoException).code).toBe('ECONNREFUSED');
    b.child.stdin!.end();
    a.child.stdin!.end();
    await Promise.all([a.exit, b.exit]);
  });

  it('Ctrl-C (SIGINT) closes and exits 130; the other side sees the close and exits 0', async () => {
    const a = await listener();
    const b = spawnCli('echo-chat', ['127.0.0.1', String(a.port)], { stdin: 'pipe' });
    await a.waitStderr(/connected/);
    await b.waitStderr(/connected/);
    b.child.kill('SIGINT');
    const eb = await b.exit;
    expect(eb, b.stderr()).toEqual({ code: 130, signal: null });
    await a.waitStderr(/peer closed the connection/);
    a.child.stdin!.end(); // piped: A sends its input to the end, then closes
    expect((await a.exit).code).toBe(0);
  });

  it('a reset prints the explained ECONNRESET and exits 1', async () => {
    const { port } = await plainServer(
      (s) => {
        s.once('data', () => s.resetAndDestroy());
      },
      { allowHalfOpen: false },
    );
    const b = spawnCli('echo-chat', ['127.0.0.1', String(port)], {
      stdin: 'pipe',
    });
    await b.waitStderr(/connected/);
    b.child.stdin!.write('anyone?\n');
    expect((await b.exit).code).toBe(1);
    expect(b.stderr()).toMatch(/echo-chat: read ECONNRESET — the peer reset the connection/);
  });

  it('bad flags exit 2 naming the flag', async () => {
    const p = await refusal('echo-chat', ['127.0.0.1', '99999']);
    expect(p.code).toBe(2);
    expect(p.stderr).toMatch(/PORT 99999: must be 0-65535/);
    const q = await refusal('echo-chat', []);
    expect(q.code).toBe(2);
  });

  it.skipIf(!hasNcat)('interoperates with ncat as the other side (raw bytes, no framing)', async () => {
    const a = await listener();
    const nc = spawn('ncat', ['127.0.0.1', String(a.port)], { stdio: ['pipe', 'pipe', 'ignore'] });
    const ncClosed = once(nc, 'close');
    onTestFinished(() => {
      nc.kill('SIGKILL');
    });
    let ncOut = '';
    nc.stdout.setEncoding('utf8').on('data', (d: string) => {
      ncOut += d;
    });
    await a.waitStderr(/connected/);
    a.child.stdin!.write('to ncat\n');
    nc.stdin.write('from ncat\n');
    await a.waitStdout(/from ncat\n/);
    nc.stdin.end(); // ncat half-closes on stdin EOF
    await a.waitStderr(/peer closed the connection/);
    a.child.stdin!.end();
    expect((await a.exit).code).toBe(0);
    expect((await ncClosed)[0]).toBe(0);
    expect(ncOut).toBe('to ncat\n');
  });

  it.skipIf(!hasNcat)(
    'piped: after the peer half-closes, the rest of stdin is still sent (1,000,000 bytes to ncat)',
    async () => {
      const port = await freePort();
      // ncat listening with no input: it half-closes at once and writes what it receives to stdout
      const nc = spawn('ncat', ['-l', '127.0.0.1', String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
      onTestFinished(() => {
        nc.kill('SIGKILL');
      });
      const got: Buffer[] = [];
      nc.stdout.on('data', (d: Buffer) => got.push(d));
      const ncClosed = once(nc, 'close');
      let ncErr = '';
      nc.stderr.setEncoding('utf8').on('data', (d: string) => {
        ncErr += d;
      });
      // ncat says nothing once it listens: echo-chat retries a refused connect until it does
      const payload = randomBytes(1_000_000);
      const b = spawnCli('echo-chat', ['127.0.0.1', String(port), '--retry', '8'], { stdin: 'pipe' });
      b.child.stdin!.write(payload.subarray(0, 1000));
      await b.waitStderr(/peer closed the connection/);
      b.child.stdin!.end(payload.subarray(1000));
      expect((await b.exit).code).toBe(0);
      await ncClosed;
      const all = Buffer.concat(got);
      expect(all.length, ncErr).toBe(payload.length);
      expect(all.equals(payload)).toBe(true);
    },
  );

  it.skipIf(!hasSocat)('interoperates with socat listening (echo-chat connects)', async () => {
    const { port, child: s } = await socatListen('STDIO');
    const socatClosed = once(s, 'close');
    let out = '';
    s.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
    });
    const b = spawnCli('echo-chat', ['127.0.0.1', String(port), '--name', 'bob'], { stdin: 'pipe' });
    await b.waitStderr(/connected/);
    s.stdin!.write('hi bob\n');
    await b.waitStdout(/hi bob\n/);
    b.child.stdin!.end('hi socat\n');
    await socatClosed;
    expect(out).toBe('bob: hi socat\n');
    expect((await b.exit).code).toBe(0);
  });

  it.skipIf(!hasTmux)('on a terminal, an incoming line does not corrupt a half-typed one', async () => {
    const a = await listener(['--name', 'bob']);
    const session = `echochat${process.pid}${Date.now() % 100000}`;
    const tmux = (...args: string[]) =>
      execFileSync('tmux', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    // remain-on-exit: the last screen can still be read after echo-chat exits
    tmux(
      'new-session',
      '-d',
      '-s',
      session,
      '-x',
      '100',
      '-y',
      '15',
      `${process.execPath} ${bin('echo-chat')} 127.0.0.1 ${a.port} --name alice`,
      ';',
      'set-option',
      '-t',
      session,
      'remain-on-exit',
      'on',
    );
    onTestFinished(() => {
      spawnSync('tmux', ['kill-session', '-t', session]);
    });
    const screen = () => {
      try {
        return tmux('capture-pane', '-t', session, '-p');
      } catch {
        throw new Error(`the tmux session ended; listener said: ${a.stderr()}`);
      }
    };
    // tmux has no event for a changed pane: the screen is looked at until it shows `re`
    const shows = (re: RegExp) =>
      until(
        () => re.test(screen()),
        10_000,
        () => `screen matching ${re}:\n${screen()}\nlistener: ${a.stderr()}\n`,
      );
    await shows(/alice> ?$/m);
    tmux('send-keys', '-t', session, 'half typ');
    await shows(/alice> half typ$/m);
    a.child.stdin!.write('incoming while you type\n');
    await shows(/bob: incoming while you type\n(.*\n)*alice> half typ$/m);
    // the incoming line sits above; the prompt line holds exactly the half-typed text
    const lines = screen().split('\n');
    expect(lines.filter((l) => l.includes('incoming while you type'))).toEqual([
      'bob: incoming while you type',
    ]);
    tmux('send-keys', '-t', session, 'ed text', 'Enter');
    await a.waitStdout(/alice: half typed text\n/);
    a.child.stdin!.end();
    await shows(/peer closed the connection/);
    expect((await a.exit).code).toBe(0);
  });
});
