// Test helpers: servers on port 0 closed after each test, the built CLIs spawned with their
// stderr watched line by line, and small socket utilities. No sleeps: everything waits on events.

import { AsyncLocalStorage } from 'node:async_hooks';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import http from 'node:http';
import net, { type Socket } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Command, CommanderError } from 'commander';
import getPort from 'get-port';
import { aroundEach, expect, onTestFinished, vi } from 'vitest';
import { type BenchFlags, resolveBenchOptions } from '../src/cli/bench-cli.js';
import { checkLogFlags, reportFatal } from '../src/cli/common.js';
import { buildChatProgram, type ChatFlags, resolveChatConfig } from '../src/cli/echo-chat.js';
import { buildClientProgram, type ClientFlags, resolveClientConfig } from '../src/cli/echo-client.js';
import { buildServerProgram, resolveServerConfig, type ServerFlags } from '../src/cli/echo-server.js';
import { normalizeTraceArg, resolveTrace } from '../src/cli/flag-groups.js';
import { interceptAccept, LightSocket, lightPathWorks, type OnRead } from '../src/core/internals.js';
import { UsageError } from '../src/core/parse.js';
import { type EchoServerOptions, startEchoServer } from '../src/index.js';
import { refusingPort } from '../src/lab/util.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const bin = (name: string) => path.join(ROOT, 'bin', `${name}.js`);

/** Every TCP server mode, as echo-server arguments: the cross product the mode tests run. */
/**
 * `npm run test:e2e` (ECHO_TEST_FULL=1) runs every row of the long mode matrices and the
 * slowest whole-command runs; `npm test` runs the rows named in `matrix(…, always)`: the same
 * checks, in fewer modes. CI runs both.
 */
export const FULL_MATRIX = process.env.ECHO_TEST_FULL === '1';

/** The rows of a mode matrix this run covers: all of them under test:e2e, else those named. */
export function matrix<T extends [string, ...unknown[]]>(rows: T[], always: string[]): T[] {
  return FULL_MATRIX ? rows : rows.filter((r) => always.includes(r[0]));
}

type TestHooks = { onTestFinished: typeof onTestFinished };
const running = new AsyncLocalStorage<TestHooks>();

// every test of a file that imports these helpers runs with its own context at hand, so that
// the cleanups below are the test's own under describe.concurrent as well (vitest's global
// onTestFinished knows one test only: the one that started last)
aroundEach(async (runTest, ctx) => {
  await running.run(ctx, runTest);
});

/** Run `fn` after the current test, also when tests run concurrently. */
export function afterTest(fn: () => unknown): void {
  (running.getStore()?.onTestFinished ?? onTestFinished)(async () => {
    await fn();
  });
}

/** Is process `pid` still there (signal 0)? */
export const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

export const SERVER_MODES: [string, string[]][] = [
  ['evented', []],
  ['iterative', ['--mode', 'iterative']],
  ['workers', ['--mode', 'workers', '--workers', '2']],
  ['fork', ['--mode', 'fork']],
];

export async function echoServer(opts: EchoServerOptions = {}) {
  const srv = await startEchoServer({ port: 0, ...opts });
  afterTest(async () => {
    srv.forceClose();
    await srv.close({ graceMs: 0 });
  });
  return srv;
}

export async function connect(
  port: number,
  host = '127.0.0.1',
  opts: net.NetConnectOpts = {} as any,
): Promise<Socket> {
  const s = net.connect({ port, host, allowHalfOpen: true, ...(opts as object) });
  afterTest(() => {
    s.destroy();
  });
  await once(s, 'connect');
  return s;
}

/** Read until the peer's FIN; resolves with every byte. */
export function readAll(s: Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    // a FIN that came before anyone listened: Node emitted 'end' already (net reads EOF with
    // push(null) + read(0)), and it is not emitted again; nothing was left unread
    if (s.readableEnded) return resolve(Buffer.alloc(0));
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.once('end', () => resolve(Buffer.concat(chunks)));
    s.once('error', reject);
  });
}

/** Read exactly n bytes (or fail on EOF). */
export function readN(s: Socket, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    if (s.readableEnded) return reject(new Error(`EOF before any of ${n} bytes`));
    const chunks: Buffer[] = [];
    let got = 0;
    const onData = (c: Buffer) => {
      chunks.push(c);
      got += c.length;
      if (got >= n) {
        cleanup();
        const all = Buffer.concat(chunks);
        if (all.length > n) s.unshift(all.subarray(n));
        resolve(all.subarray(0, n));
      }
    };
    const onEnd = () => {
      cleanup();
      reject(new Error(`EOF after ${got} of ${n} bytes`));
    };
    const cleanup = () => {
      s.off('data', onData);
      s.off('end', onEnd);
      s.off('error', reject);
    };
    s.on('data', onData);
    s.once('end', onEnd);
    s.once('error', reject);
  });
}

export interface Spawned {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** resolves with the first regexp match on stderr (lines so far and to come) */
  waitStderr(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** the same on stdout */
  waitStdout(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Spawn a built CLI; killed after the test if still running. */
export function spawnCli(
  name: string,
  args: string[],
  opts: {
    stdin?: 'pipe' | 'ignore';
    env?: NodeJS.ProcessEnv;
    /** a command that runs ours, e.g. ['prlimit', '--nofile=32'] */
    prefix?: string[];
    /** in concurrent tests, the test's own context (the global hook cannot tell them apart) */
    ctx?: { onTestFinished: typeof onTestFinished };
    /** its own process group (pid = pgid), to signal the group as systemd does */
    detached?: boolean;
  } = {},
): Spawned {
  const argv = [process.execPath, bin(name), ...args];
  const [cmd, ...rest] = opts.prefix ? [...opts.prefix, ...argv] : argv;
  const child = spawn(cmd!, rest, {
    stdio: [opts.stdin ?? 'ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...opts.env },
    detached: opts.detached === true,
  });
  const text = { out: '', err: '' };
  const waiters: { which: 'out' | 'err'; re: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  const collect = (which: 'out' | 'err') => (d: string) => {
    text[which] += d;
    for (const w of [...waiters]) {
      const m = w.which === which ? text[which].match(w.re) : null;
      if (m) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  };
  child.stdout!.setEncoding('utf8').on('data', collect('out'));
  child.stderr!.setEncoding('utf8').on('data', collect('err'));
  const waitText = (which: 'out' | 'err', re: RegExp, timeoutMs = 15_000) => {
    const m = text[which].match(re);
    if (m) return Promise.resolve(m);
    return new Promise<RegExpMatchArray>((resolve, reject) => {
      const t = setTimeout(
        () =>
          reject(
            new Error(`no ${re} on std${which} within ${timeoutMs} ms:\n${text[which]}\nstderr: ${text.err}`),
          ),
        timeoutMs,
      );
      const onExit = () => {
        clearTimeout(t);
        // the last output may still be in flight when 'close' fires: look once more
        const last = text[which].match(re);
        if (last) resolve(last);
        else
          reject(
            new Error(
              `process exited before ${re} appeared on std${which}:\n${text[which]}\nstderr: ${text.err}`,
            ),
          );
      };
      child.once('close', onExit);
      waiters.push({
        which,
        re,
        resolve: (mm) => {
          clearTimeout(t);
          child.off('close', onExit);
          resolve(mm);
        },
      });
    });
  };
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  (opts.ctx?.onTestFinished ?? afterTest)(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    if (opts.detached) {
      try {
        process.kill(-child.pid!, 'SIGKILL'); // whatever is left of its group
      } catch {}
    }
  });
  return {
    child,
    stdout: () => text.out,
    stderr: () => text.err,
    exit,
    waitStderr: (re, timeoutMs) => waitText('err', re, timeoutMs),
    waitStdout: (re, timeoutMs) => waitText('out', re, timeoutMs),
  };
}

/** Start the echo-server CLI on port 0 with JSON logs and resolve with its port. */
export async function spawnServer(args: string[] = [], opts: Parameters<typeof spawnCli>[2] = {}) {
  const p = spawnCli('echo-server', ['--port', '0', '--log-format', 'json', ...args], opts);
  const m = await p.waitStderr(/listening on (?:\[([^\]]+)\]|([\d.]+)):(\d+)/);
  return { ...p, port: Number(m[3]) };
}

/** JSON log lines from a spawned process' stderr. */
export function jsonLines(text: string): Record<string, any>[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l));
}

/**
 * Stream a bounded random payload to an echo server until it closes its side (a shutdown),
 * reading the echo all along. `onEchoing` runs once `threshold` bytes are back. Resolves with
 * whether the echo is an exact prefix of what was sent, and its length.
 */
export async function streamUntilServerCloses(
  port: number,
  {
    payloadBytes = 16 * 1024 * 1024,
    chunkBytes = 64 * 1024,
    threshold = 64 * 1024,
    onEchoing = () => {},
  } = {},
): Promise<{ exact: boolean; length: number }> {
  const s = await connect(port);
  const payload = randomBytes(payloadBytes);
  const got: Buffer[] = [];
  let n = 0;
  let signalled = false;
  let ended = false;
  s.on('data', (c: Buffer) => {
    got.push(c);
    n += c.length;
    if (!signalled && n >= threshold) {
      signalled = true;
      onEchoing();
    }
  });
  const end = new Promise<void>((r) =>
    s.once('end', () => {
      ended = true; // the server's FIN: stop sending, close our side
      s.end();
      r();
    }),
  );
  let off = 0;
  const pump = () => {
    while (!ended && off < payload.length) {
      const chunk = payload.subarray(off, off + chunkBytes);
      off += chunk.length;
      if (!s.write(chunk)) return void s.once('drain', pump);
    }
  };
  pump();
  await end;
  const back = Buffer.concat(got);
  return { exact: back.equals(payload.subarray(0, back.length)), length: back.length };
}

/** `socat … ADDRESS` listening on a kernel-chosen loopback port; resolves with the port. */
export async function socatListen(other: string, extra = ''): Promise<{ port: number; child: ChildProcess }> {
  const child = spawn('socat', ['-d', '-d', `TCP-LISTEN:0,bind=127.0.0.1,reuseaddr${extra}`, other], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  afterTest(() => {
    child.kill('SIGKILL');
  });
  let err = '';
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', () => reject(new Error(`socat exited: ${err}`)));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      err += d;
      const m = /listening on .*?:(\d+)/.exec(err);
      if (m) resolve(Number(m[1]));
    });
  });
  return { port, child };
}

/**
 * A loopback TCP port that nothing listens on for the whole test: bound by a socket that never
 * listens (a connect there gets RST: ECONNREFUSED). Held, not released: a released port can be
 * handed by the kernel to another test's server meanwhile, and a "refused" connect then lands
 * on that server and takes one of its slots.
 */
export function closedPort(): Promise<number> {
  return Promise.resolve(refusingPort({ add: (fn) => afterTest(() => void fn()) }));
}

/** A loopback TCP port free right now, for a program that must bind it itself (get-port). */
export function freePort(): Promise<number> {
  return getPort({ host: '127.0.0.1' });
}

/** A plain net server on a loopback port 0 (a peer that is not ours), closed after the test. */
export async function plainServer(
  handler?: (s: Socket) => void,
  { allowHalfOpen = true } = {},
): Promise<{ server: net.Server; port: number }> {
  const server = net.createServer({ allowHalfOpen }, handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  afterTest(() => {
    server.close();
  });
  return { server, port: (server.address() as net.AddressInfo).port };
}

/**
 * Wait (bounded) for a condition that no event announces, such as a kernel state, a pid's exit or
 * a metrics page: checked every 10 ms (an async condition is awaited each time). `what` names it
 * in the timeout error; a function is called then, to describe the state it was left in.
 */
export async function until(
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
  what: string | (() => string) = 'condition',
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end)
      throw new Error(`${typeof what === 'function' ? what() : what} not reached within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Resolves when the socket has been closed by the peer (its FIN: 'end'), collecting what it sent. */
export function watchEnd(s: Socket): { ended: () => boolean; end: Promise<Buffer> } {
  let ended = false;
  const end = readAll(s).then((b) => {
    ended = true;
    return b;
  });
  end.catch(() => {});
  return { ended: () => ended, end };
}

export const hasCommand = (cmd: string, arg = '--version') =>
  spawnSync(cmd, [arg], { stdio: 'ignore' }).status === 0;

/** A command of ours on a pseudo-terminal (util-linux `script`): type into it, read its screen bytes. */
export function onPty(name: string, args: string[]) {
  const quoted = [process.execPath, bin(name), ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
  const child = spawn('script', ['-qfec', quoted, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
  afterTest(() => {
    child.kill('SIGKILL');
  });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  const exit = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  return {
    child,
    out: () => out,
    type: (text: string) => child.stdin!.write(text),
    exit,
    waitFor(re: RegExp, timeoutMs = 15_000): Promise<void> {
      return new Promise((resolve, reject) => {
        const t = setTimeout(
          () => reject(new Error(`no ${re} on the terminal within ${timeoutMs} ms:\n${out}`)),
          timeoutMs,
        );
        const check = () => {
          if (re.test(out)) {
            clearTimeout(t);
            child.stdout!.off('data', check);
            resolve();
          }
        };
        child.stdout!.on('data', check);
        check();
      });
    },
  };
}

/** Run a command with `input` on stdin; stdout as bytes, stderr as text. Killed after the test if still running. */
export function runCommand(
  cmd: string,
  args: string[],
  input?: Buffer | string,
): Promise<{ code: number | null; out: Buffer; err: string; child: ChildProcess }> {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  afterTest(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const out: Buffer[] = [];
  let err = '';
  child.stdout!.on('data', (d: Buffer) => out.push(d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    err += d;
  });
  child.stdin!.on('error', () => {});
  child.stdin!.end(input);
  return new Promise((resolve) => {
    child.once('close', (code) => resolve({ code, out: Buffer.concat(out), err, child }));
  });
}

/** echo-client with these arguments and `input` on stdin. */
export const runEchoClient = (args: string[], input?: Buffer | string) =>
  runCommand(process.execPath, [bin('echo-client'), ...args], input);

/** Whether something listens on this TCP port now (ss, as a person would check). */
export const tcpListening = (port: number) =>
  spawnSync('ss', ['-ltnH', `sport = :${port}`], { encoding: 'utf8' }).stdout.includes(String(port));

export type CliName = 'echo-server' | 'echo-client' | 'echo-chat';

/**
 * What a command prints on stderr and exits with for `argv` when its flags are refused, checked
 * in-process: a fresh commander program parses argv and the command's own validators run, the
 * same steps its run function takes before it opens anything; an error goes through
 * reportFatal, as runCli does (2 for a UsageError or a commander error, with its one line).
 * Nothing is opened: echo-client's actions are replaced by their validators. Flags that pass
 * give code 0 and no lines; an error that is not a refusal is thrown (a crash, not exit 2).
 */
export async function refusal(
  name: CliName,
  argv: string[],
): Promise<{ code: number; stderr: string; lines: string[] }> {
  let printed = '';
  const capture = {
    writeErr: (t: string) => {
      printed += t;
    },
    writeOut: () => {},
  };
  const each = (c: Command, fn: (c: Command) => void) => {
    fn(c);
    for (const sub of c.commands) each(sub, fn);
  };
  const args = normalizeTraceArg(argv);
  try {
    if (name === 'echo-server') {
      const program = buildServerProgram();
      each(program, (c) => c.configureOutput(capture));
      program.parse(args, { from: 'user' });
      checkLogFlags(program.opts<ServerFlags>());
      resolveServerConfig(program.opts<ServerFlags>(), program.processedArgs as string[]);
    } else if (name === 'echo-client') {
      const program = buildClientProgram().action(
        (h: string | undefined, p: string | undefined, f: ClientFlags) => {
          resolveClientConfig(h, p, f);
        },
      );
      program.commands
        .find((c) => c.name() === 'bench')!
        .action((h: string | undefined, p: string | undefined, f: BenchFlags) => {
          resolveBenchOptions(f, h, p);
        });
      each(program, (c) => c.configureOutput(capture));
      await program.parseAsync(args, { from: 'user' });
    } else {
      const program = buildChatProgram();
      each(program, (c) => c.configureOutput(capture));
      program.parse(args, { from: 'user' });
      const [h, p] = program.processedArgs as [string | undefined, string | undefined];
      resolveChatConfig(h, p, program.opts<ChatFlags>());
      resolveTrace(program.opts<ChatFlags>());
    }
  } catch (err) {
    if (!(err instanceof UsageError || err instanceof CommanderError)) throw err;
    const write = process.stderr.write;
    process.stderr.write = ((t: string) => {
      printed += t;
      return true;
    }) as typeof process.stderr.write;
    let code: number;
    try {
      code = reportFatal(name, err);
    } finally {
      process.stderr.write = write;
    }
    return { code, stderr: printed, lines: printed.trim().split('\n') };
  }
  return { code: 0, stderr: printed, lines: [] };
}

/** GET `url`: status, content type and body as text. */
export function get(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (d: string) => {
          body += d;
        });
        res.on('end', () =>
          resolve({ status: res.statusCode!, type: String(res.headers['content-type']), body }),
        );
      })
      .on('error', reject);
  });
}

/** An open /events stream: every snapshot pushed, and a wait for one that satisfies `cond`. */
export async function watch(url: string) {
  const snaps: any[] = [];
  const waiters: { cond: (s: any) => boolean; resolve: (s: any) => void }[] = [];
  const req = http.get(`${url}events`);
  afterTest(() => {
    req.destroy();
  });
  const [res] = (await once(req, 'response')) as [http.IncomingMessage];
  expect(res.headers['content-type']).toMatch(/text\/event-stream/);
  let buf = '';
  res.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    for (let cut = buf.indexOf('\n\n'); cut >= 0; cut = buf.indexOf('\n\n')) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (!data) continue;
      const s = JSON.parse(data);
      snaps.push(s);
      for (const w of [...waiters])
        if (w.cond(s)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(s);
        }
    }
  });
  return {
    snaps,
    close: () => req.destroy(),
    /** the first snapshot (already pushed from index `from` on, or to come) for which `cond` holds */
    next(cond: (s: any) => boolean, from = 0, timeoutMs = 15_000): Promise<any> {
      const seen = snaps.slice(from).find(cond);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const t = setTimeout(
          () =>
            reject(
              new Error(`no such snapshot within ${timeoutMs} ms; last: ${JSON.stringify(snaps.at(-1))}`),
            ),
          timeoutMs,
        );
        waiters.push({
          cond,
          resolve: (s) => {
            clearTimeout(t);
            resolve(s);
          },
        });
      });
    },
  };
}

/** An /events request made to admin routes without a socket: what they wrote, and the page leaving. */
export function fakeEvents(routes: {
  handle(req: http.IncomingMessage, res: http.ServerResponse, bound: string): boolean;
}): { handled: boolean; written: string[]; leave(): void } {
  const written: string[] = [];
  const res = Object.assign(new EventEmitter(), {
    writeHead: () => res,
    write: (t: string) => written.push(t),
    end: () => res.emit('close'),
  });
  const req = { url: '/events', method: 'GET', headers: { host: '127.0.0.1:9100' } };
  const handled = routes.handle(req as any, res as any, '127.0.0.1');
  return { handled, written, leave: () => res.emit('close') };
}

/**
 * `routes` read the server (`reads()` counts how often) only while an /events stream is open,
 * send nothing more while nothing changes, and leave no timer behind (under fake timers).
 */
export function expectReadsOnlyWhileWatched(
  routes: Parameters<typeof fakeEvents>[0] & { watchers(): number },
  reads: () => number,
): void {
  vi.useFakeTimers();
  afterTest(() => {
    vi.useRealTimers();
  });
  vi.advanceTimersByTime(60_000);
  expect(reads()).toBe(0);
  expect(vi.getTimerCount()).toBe(0);
  const { handled, written, leave } = fakeEvents(routes);
  expect(handled).toBe(true);
  expect(written).toHaveLength(1);
  vi.advanceTimersByTime(5_000);
  expect(reads()).toBeGreaterThan(5);
  // nothing changed: nothing more was sent
  expect(written).toHaveLength(1);
  leave();
  expect(routes.watchers()).toBe(0);
  expect(vi.getTimerCount()).toBe(0);
  const after = reads();
  vi.advanceTimersByTime(60_000);
  expect(reads()).toBe(after);
}

/** The second round trip of a new connection to `port` (the first warms it up), in ms. */
export async function roundTripMs(port: number): Promise<number> {
  const s = await connect(port);
  try {
    s.write('warm');
    await readN(s, 4);
    const t0 = performance.now();
    s.write('ping');
    await readN(s, 4);
    return performance.now() - t0;
  } finally {
    s.destroy();
  }
}

/** echo-proxy with one proxy `a` in front of an echo server, and the URL of its API port. */
export async function proxyWithPage() {
  const up = await echoServer();
  const p = spawnCli('echo-proxy', [
    '--api',
    '127.0.0.1:0',
    '--proxy',
    `a=127.0.0.1:0,127.0.0.1:${up.address.port}`,
  ]);
  const api = await p.waitStderr(/admin page at (http:\/\/127\.0\.0\.1:\d+\/)/);
  const listen = /proxy a: listening on 127\.0\.0\.1:(\d+)/.exec(p.stderr())!;
  return { ...p, url: api[1]!, port: Number(listen[1]), upstream: up.address.port };
}

/**
 * A light connection (core/internals.ts LightSocket) accepted with `onread` by a fresh loopback
 * server, and the client connected to it; the three are closed when the test ends.
 */
export async function lightAccepted(
  onread: OnRead,
): Promise<{ server: net.Server; light: LightSocket; client: Socket }> {
  expect((await lightPathWorks()).ok).toBe(true);
  const server = net.createServer({ allowHalfOpen: true });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  onTestFinished(() => {
    server.close();
  });
  const accepted = new Promise<LightSocket>((resolve) => {
    interceptAccept(
      server,
      { allowHalfOpen: true, pauseOnCreate: false, light: true, onread: () => onread },
      (s) => resolve(s as unknown as LightSocket),
    );
  });
  const client = net.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1' });
  onTestFinished(() => {
    client.destroy();
  });
  const light = await accepted;
  expect(light).toBeInstanceOf(LightSocket);
  onTestFinished(() => {
    light.destroy();
  });
  return { server, light, client };
}

/** A light connection (lightAccepted) that echoes each read from a buffer of its own, and its client. */
export function lightEcho(): ReturnType<typeof lightAccepted> {
  const own = Buffer.alloc(64 * 1024);
  return lightAccepted({
    buffer: () => own,
    callback(n, buf) {
      this.write(Buffer.from(buf.subarray(0, n)));
    },
  });
}
