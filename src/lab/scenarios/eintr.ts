// A signal caught while a blocking socket call waits, on the real kernel: a child process makes
// a blocking listening socket with libc (not libuv) and blocks its main thread in accept().
// Caught without SA_RESTART, the signal makes accept() fail with EINTR; with SA_RESTART the
// kernel restarts it and it goes on to accept a real connection. A blocking send() into full
// buffers, interrupted after it copied some bytes, returns that short count (SA_RESTART or
// not), and the peer receives exactly that many. Then what Node does instead: libuv's
// listening socket is non-blocking, its signal handler is installed with SA_RESTART, its
// epoll_wait() loop retries EINTR, and a JS signal handler runs on the loop, after the JS
// code that was running when the signal came.

import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import { constants } from 'node:os';
import { closeFd, loadLibc, platformTable, setIntOption, sysError } from '../../core/libc.js';
import { sockaddr } from '../../core/listen.js';
import { Cleanup, Recorder, type ScenarioResult } from '../recorder.js';
import { connectLocal, waitFor } from '../util.js';

// a signal neither Node nor libuv handles by default: SIGUSR1 starts Node's inspector, libuv
// takes SIGCHLD for child_process and ignores SIGPIPE, SIGINT/SIGTERM would end the child
const SIGNAL = 'SIGUSR2';
const SA_RESTART = 0x10000000;
/** bytes the child's blocking send() is asked to send: far more than both (locked) buffers hold */
const SEND_BYTES = 8 << 20;
/** the receive buffer the parent asks for before connecting (the kernel doubles it and stops autotuning) */
const PEER_RCVBUF = 65536;
/** signals sent to the Node server while it accepts */
const NODE_ROUNDS = 10;
// the syscalls the child blocks in, as /proc/PID/syscall numbers them (glibc's send() is sendto)
// and the ones libuv's loop waits in (epoll_wait, epoll_pwait, epoll_pwait2)
const SYSCALL_NR: Record<string, { accept: number; sendto: number; epoll: number[] }> = {
  x64: { accept: 43, sendto: 44, epoll: [232, 281, 441] },
  arm64: { accept: 202, sendto: 206, epoll: [22, 441] },
};

// The child. Its signal handler must be a real C function pointer, safe to run in a signal
// context; a koffi callback into JS is not (the handler would re-enter V8 at an arbitrary
// point). It is abs(3), found with dlsym(RTLD_DEFAULT, "abs"): it takes an int (the signal
// number), reads and writes no memory, sets no errno, and its return value is dropped, so
// running it from a signal changes nothing; what matters is only that the signal is caught
// (an ignored signal never interrupts a call). alarm(60) is a watchdog run by the kernel: if
// the parent vanishes while the child is blocked in a libc call, SIGALRM ends it.
const CHILD = `
'use strict';
const [koffiPath, sigName] = process.argv.slice(1);
const fs = require('fs');
const net = require('net');
const SIG = require('os').constants.signals[sigName];
const koffi = require(koffiPath);
const lib = koffi.load('libc.so.6');
const f = (d) => lib.func(d);
const socket = f('int socket(int, int, int)');
const bind = f('int bind(int, const void *, uint32_t)');
const listen = f('int listen(int, int)');
const accept = f('int accept(int, void *, void *)');
const getsockname = f('int getsockname(int, _Out_ void *, _Inout_ uint32_t *)');
const setsockopt = f('int setsockopt(int, int, int, const void *, uint32_t)');
const send = f('long send(int, const void *, size_t, int)');
const close = f('int close(int)');
const fcntl = f('int fcntl(int, int, ...)');
const poll = f('int poll(_Inout_ void *, unsigned long, int)');
const sigaction = f('int sigaction(int, const void *, _Out_ void *)');
const alarm = f('unsigned int alarm(unsigned int)');
let dlsym;
try { dlsym = f('void *dlsym(void *, const char *)'); }
catch { dlsym = koffi.load('libdl.so.2').func('void *dlsym(void *, const char *)'); }
const SA_RESTART = ${SA_RESTART};
const us = () => Number(process.hrtime.bigint() / 1000n);
const say = (o) => fs.writeSync(1, JSON.stringify(o) + '\\n');
// glibc's struct sigaction (x86-64, arm64): handler at 0, sa_mask (128 bytes) at 8, sa_flags at 136
const handler = koffi.address(dlsym(null, 'abs'));
function install(flags) {
  const act = Buffer.alloc(152);
  act.writeBigUInt64LE(handler, 0);
  act.writeInt32LE(flags, 136);
  if (sigaction(SIG, act, Buffer.alloc(152)) !== 0) throw new Error('sigaction errno ' + koffi.errno());
}
function installed() {
  const old = Buffer.alloc(152);
  sigaction(SIG, null, old);
  return { handler: old.readBigUInt64LE(0), flags: old.readInt32LE(136) };
}
alarm(60);
const fd = socket(2, 1, 0);
const sin = Buffer.alloc(16);
sin.writeUInt16LE(2, 0);
sin.writeUInt32BE(0x7f000001, 4);
if (fd < 0 || bind(fd, sin, 16) !== 0 || listen(fd, 8) !== 0) { say({ phase: 'failed', errno: koffi.errno() }); process.exit(1); }
const name = Buffer.alloc(16);
getsockname(fd, name, [16]);
const blocking = (fcntl(fd, 3, 'int', 0) & 0o4000) === 0;

install(0);
say({ phase: 'A-ready', port: name.readUInt16BE(2), blocking, restart: (installed().flags & SA_RESTART) !== 0 });
let t = us();
let rc = accept(fd, null, null);
say({ phase: 'A', rc, errno: rc < 0 ? koffi.errno() : 0, start: t, end: us() });
if (rc >= 0) close(rc);

install(SA_RESTART);
say({ phase: 'B-ready', restart: (installed().flags & SA_RESTART) !== 0 });
t = us();
const conn = accept(fd, null, null);
say({ phase: 'B', rc: conn, errno: conn < 0 ? koffi.errno() : 0, start: t, end: us() });
close(fd);
if (conn < 0) process.exit(1);

const opt = Buffer.alloc(4);
opt.writeInt32LE(65536);
setsockopt(conn, 1, 7, opt, 4); // SO_SNDBUF: a fixed send buffer (doubled by the kernel)
const big = Buffer.alloc(${SEND_BYTES}, 0x61);
say({ phase: 'C-ready' });
t = us();
const n = Number(send(conn, big, big.length, 0));
say({ phase: 'C', rc: n, errno: n < 0 ? koffi.errno() : 0, start: t, end: us(), size: big.length });
close(conn); // what is still queued is sent, then FIN

let signals = 0;
process.on(sigName, () => {
  signals++;
  say({ phase: 'D-sig', n: signals, at: us() });
});
const h = installed();
const srv = net.createServer((s) => s.end(signals + '\\n'));
srv.listen(0, '127.0.0.1', () => {
  const nonblock = (fcntl(srv._handle.fd, 3, 'int', 0) & 0o4000) !== 0;
  say({ phase: 'D-ready', port: srv.address().port, nonblock, restart: (h.flags & SA_RESTART) !== 0, replaced: h.handler !== handler });
});
process.stdin.on('data', (d) => {
  if (!String(d).includes('busy')) return;
  // a synchronous JS loop, until the parent says (on stdin) that it has sent the signal
  const pfd = Buffer.alloc(8);
  pfd.writeInt32LE(0, 0);
  pfd.writeInt16LE(1, 4);
  const start = us();
  say({ phase: 'D-busy', start });
  while (us() < start + 10e6) if (poll(pfd, 1, 0) > 0) break;
  say({ phase: 'D-busy-done', start, end: us() });
});
`;

/** A child's messages (one JSON object a line), waited for by phase. */
class Lines {
  private readonly seen: Record<string, any>[] = [];
  private waiters: (() => void)[] = [];
  exited: string | undefined;
  constructor(child: ChildProcess) {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d;
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        try {
          this.seen.push(JSON.parse(buf.slice(0, i)));
        } catch {
          // not one of ours
        }
        buf = buf.slice(i + 1);
      }
      this.wake();
    });
    child.once('exit', (code, sig) => {
      this.exited = sig ? `killed by ${sig}` : `exit ${code}`;
      this.wake();
    });
  }
  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
  all(phase: string): Record<string, any>[] {
    return this.seen.filter((m) => m.phase === phase);
  }
  has(phase: string, ok: (m: Record<string, any>) => boolean = () => true): Record<string, any> | undefined {
    return this.seen.find((m) => m.phase === phase && ok(m));
  }
  /** The first message of `phase` (that `ok` accepts); rejects when the child ends or after `ms`. */
  async next(
    phase: string,
    ms = 10_000,
    ok?: (m: Record<string, any>) => boolean,
  ): Promise<Record<string, any>> {
    const end = performance.now() + ms;
    for (;;) {
      const m = this.has(phase, ok);
      if (m) return m;
      if (this.exited) throw new Error(`the child ended (${this.exited}) before “${phase}”`);
      const left = end - performance.now();
      if (left <= 0) throw new Error(`no “${phase}” from the child within ${ms} ms`);
      await new Promise<void>((res) => {
        const t = setTimeout(res, left);
        this.waiters.push(() => {
          clearTimeout(t);
          res();
        });
      });
    }
  }
}

/** What /proc says the child's main thread is doing. */
interface ThreadNow {
  /** the syscall it is blocked in (-1: running) */
  nr: number;
  state: string;
  /** times it has gone to sleep (voluntary context switches) */
  sleeps: number;
  /** signals pending for this thread (SigPnd) or its process (ShdPnd) */
  pending: bigint;
}

function thread(pid: number): ThreadNow {
  const sys = readFileSync(`/proc/${pid}/syscall`, 'utf8').trim().split(' ');
  const stat = readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8');
  const status = readFileSync(`/proc/${pid}/task/${pid}/status`, 'utf8');
  const field = (k: string) => new RegExp(`^${k}:\\s*(\\S+)`, 'm').exec(status)?.[1] ?? '0';
  return {
    nr: sys[0] === 'running' ? -1 : Number(sys[0]),
    state: stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3),
    sleeps: Number(field('voluntary_ctxt_switches')),
    pending: BigInt(`0x${field('SigPnd')}`) | BigInt(`0x${field('ShdPnd')}`),
  };
}

/**
 * Why the child's /proc/PID/syscall cannot be read here (it needs ptrace access to the child,
 * and a kernel that has it), or undefined when it can.
 */
function procUnreadable(pid: number): string | undefined {
  try {
    readFileSync(`/proc/${pid}/syscall`, 'utf8');
    return undefined;
  } catch (err) {
    return `cannot read /proc/${pid}/syscall (${(err as NodeJS.ErrnoException).code}): where the child blocks cannot be seen`;
  }
}

/** Poll /proc (every 2 ms, bounded) until the child's main thread is as `ok` wants it. */
async function until(pid: number, ok: (t: ThreadNow) => boolean, ms = 10_000): Promise<ThreadNow> {
  const end = performance.now() + ms;
  for (;;) {
    const t = thread(pid);
    if (ok(t)) return t;
    if (performance.now() > end)
      throw new Error(
        `the child's thread never reached the expected state (${JSON.stringify({ ...t, pending: String(t.pending) })})`,
      );
    await new Promise((res) => setTimeout(res, 2));
  }
}

/** The child's threads, and how many of them leave `sig` unblocked (any of those may get a kill(pid)). */
function threadMasks(pid: number, sig: number): { threads: number; open: number } {
  const tids = readdirSync(`/proc/${pid}/task`);
  let open = 0;
  for (const tid of tids) {
    try {
      const blk = /^SigBlk:\s*(\S+)/m.exec(readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8'))?.[1];
      if (blk && (BigInt(`0x${blk}`) & (1n << BigInt(sig - 1))) === 0n) open++;
    } catch {
      // the thread ended while listed
    }
  }
  return { threads: tids.length, open };
}

let tgkillFn: ((tgid: number, tid: number, sig: number) => number) | undefined;
/** tgkill(2): a signal to one thread (glibc ≥ 2.30 wraps it; older ones through syscall(2)). */
function tgkill(tgid: number, tid: number, sig: number): void {
  if (!tgkillFn) {
    const koffi = createRequire(import.meta.url)('koffi');
    const lib = koffi.load('libc.so.6');
    try {
      tgkillFn = lib.func('int tgkill(int, int, int)');
    } catch {
      const nr = process.arch === 'arm64' ? 131 : 234;
      const syscall = lib.func('long syscall(long, ...)');
      tgkillFn = (a, b, c) => Number(syscall(nr, 'int', a, 'int', b, 'int', c));
    }
  }
  if (tgkillFn!(tgid, tid, sig) !== 0)
    throw sysError('tgkill', createRequire(import.meta.url)('koffi').errno());
}

/**
 * A blocking connect() from a raw socket whose receive buffer is set before the handshake (so
 * the kernel never grows it): the descriptor, connected.
 */
function connectSmallReceiver(port: number, rcvbuf: number): number {
  const c = loadLibc();
  const { family, addr } = sockaddr('127.0.0.1', port);
  const fd = c.socket(family, platformTable().SOCK_STREAM, 0);
  if (fd < 0) throw sysError('socket', c.errno());
  try {
    setIntOption(fd, 'SO_RCVBUF', rcvbuf);
    if (c.connect(fd, addr, addr.length) !== 0) throw sysError('connect', c.errno());
    return fd;
  } catch (err) {
    closeFd(fd);
    throw err;
  }
}

const nowUs = () => Number(process.hrtime.bigint() / 1000n);
const ms = (us: number) => (us / 1000).toFixed(1);

/** One call the child made, as it reported it: return value, errno, and when it started and returned. */
export interface ChildCall {
  rc: number;
  errno: number;
  /** CLOCK_MONOTONIC, µs (the same clock in both processes) */
  startUs: number;
  endUs: number;
  /** when the parent sent the signal, same clock */
  signalUs: number;
}

/** What the run measured, beside the result (the test asserts on these). */
export interface EintrRun {
  /** the child process (killed when the scenario ends) */
  pid?: number;
  threads?: { threads: number; open: number };
  /** accept() with a handler installed without SA_RESTART */
  plain?: ChildCall;
  /** accept() with SA_RESTART: delivered while it blocked, returned for the connection */
  restarted?: ChildCall & {
    saRestart: boolean;
    /** the child's thread went back to sleep after the signal, and accept() had not returned */
    backInAccept: boolean;
    connectUs: number;
  };
  /** the blocking send() interrupted after it copied some bytes, and what the peer got */
  send?: ChildCall & { size: number; received: number };
  node?: {
    nonblock: boolean;
    saRestart: boolean;
    /** idle, the loop's syscall (/proc/PID/syscall) before a signal and after the loop went back to sleep */
    idleSyscall: { before: number; after: number };
    replies: string[];
    handlerRuns: number;
    busy?: { startUs: number; endUs: number; signalUs: number; handlerUs: number };
  };
}

const call = (m: Record<string, any>, signalUs: number): ChildCall => ({
  rc: m.rc,
  errno: m.errno,
  startUs: m.start,
  endUs: m.end,
  signalUs,
});

export async function eintr(): Promise<ScenarioResult> {
  return (await eintrRun()).result;
}

/** The scenario, with its measurements. */
export async function eintrRun(): Promise<{ result: ScenarioResult; run: EintrRun }> {
  const run: EintrRun = {};
  const r = new Recorder(
    'eintr',
    'a signal interrupts a blocking accept()/send(): EINTR, SA_RESTART, a short count; what Node does',
    'Linux socket programming basics; a first TCP client and server',
  );
  r.dependsOn(
    [],
    [
      'signal(7): a caught signal interrupts a blocking accept(), recv() or send(): with SA_RESTART the kernel restarts the call, without it the call fails with EINTR; a send() or recv() that already moved bytes returns that count instead, SA_RESTART or not; poll(), epoll_wait(), select() and calls on a socket with SO_RCVTIMEO/SO_SNDTIMEO set fail with EINTR even with SA_RESTART',
      'a blocking TCP send() returns only when all was copied, or short when a signal or SO_SNDTIMEO interrupts it after some bytes; 0 only when asked to send 0 bytes',
      'an ignored signal (SIG_IGN, or a default action of ignore) interrupts nothing; only a caught one does; a process-directed kill() goes to any thread that does not block the signal, so a multithreaded program (Node has several threads) names the thread with tgkill() or blocks the signal elsewhere',
      'libuv (Node) uses non-blocking sockets and waits in epoll; epoll_wait() is never restarted, so a signal makes it fail with EINTR, and libuv simply waits again; its own signal handler (installed with SA_RESTART) only writes to a pipe, and the JS handler runs from the loop',
      'the classic case: a fork server whose SIGCHLD handler calls waitpid(), installed without SA_RESTART, sees accept() fail with EINTR each time a child exits, and must loop',
    ],
  );
  const cl = new Cleanup();
  try {
    if (process.platform !== 'linux')
      return { result: r.result('signals and /proc/PID/syscall as Linux has them: Linux only'), run };
    const nrs = SYSCALL_NR[process.arch];
    if (!nrs)
      return {
        result: r.result(`the syscall numbers are known here for x64 and arm64, not ${process.arch}`),
        run,
      };
    const sig = constants.signals[SIGNAL];
    const koffiPath = createRequire(import.meta.url).resolve('koffi');
    const child = spawn(process.execPath, ['-e', CHILD, koffiPath, SIGNAL], {
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    cl.add(() => child.kill('SIGKILL'));
    child.stdin!.on('error', () => {}); // the child may be gone before the parent writes
    const lines = new Lines(child);
    const pid = child.pid!;
    run.pid = pid;
    const unreadable = procUnreadable(pid);
    if (unreadable) return { result: r.result(unreadable), run };

    // 1. no SA_RESTART: accept() fails with EINTR
    const a0 = await lines.next('A-ready');
    const port = a0.port as number;
    r.usePort(port);
    await until(pid, (t) => t.nr === nrs.accept && t.state === 'S');
    const masks = threadMasks(pid, sig);
    run.threads = masks;
    r.step(
      `a child (pid ${pid}) listens on 127.0.0.1:${port} with a ${a0.blocking ? 'blocking' : 'non-blocking'} socket made by libc, catches ${SIGNAL} (handler: abs(), ${a0.restart ? 'with' : 'without'} SA_RESTART), and its main thread blocks in accept() (/proc/${pid}/syscall: ${nrs.accept}, state S)`,
    );
    r.step(
      `the child has ${masks.threads} threads, ${masks.open} of which do not block ${SIGNAL}: a kill(${pid}) goes to one of them (Linux tries the main thread first; POSIX promises none); tgkill(${pid}, ${pid}, ${SIGNAL}) names the main thread`,
    );
    const sentA = nowUs();
    tgkill(pid, pid, sig);
    const a = await lines.next('A');
    run.plain = call(a, sentA);
    const errA = constants.errno.EINTR === a.errno ? 'EINTR' : String(a.errno);
    r.step(
      `tgkill → accept() = ${a.rc}, errno ${errA}, ${ms(a.end - sentA)} ms after the signal (it had blocked ${ms(sentA - a.start)} ms before it)`,
    );
    if (a.rc === -1) r.error(sysError('accept', a.errno));
    r.check(
      'without SA_RESTART, accept() returns -1 with errno EINTR',
      a.rc === -1 && a.errno === constants.errno.EINTR,
    );
    r.check(
      'accept() was blocked before the signal and returned after it (within 5 s)',
      a.start < sentA && a.end >= sentA && a.end - sentA < 5_000_000,
    );

    // 2. SA_RESTART: the kernel restarts accept(); it returns only for a real connection
    const b0 = await lines.next('B-ready');
    const before = await until(pid, (t) => t.nr === nrs.accept && t.state === 'S');
    const sentB = nowUs();
    tgkill(pid, pid, sig);
    // delivered (no longer pending), and the thread went back to sleep in accept()
    const after = await until(
      pid,
      (t) => t.pending === 0n && t.sleeps > before.sleeps && t.nr === nrs.accept && t.state === 'S',
    );
    const returnedEarly = lines.has('B') !== undefined;
    r.step(
      `SA_RESTART ${b0.restart ? 'set' : 'NOT set'}; tgkill → the signal was delivered (nothing pending; the thread slept ${after.sleeps - before.sleeps} more time(s)) and the thread is back in accept(): ${returnedEarly ? 'accept() returned' : 'accept() did not return'}`,
    );
    r.check(
      'with SA_RESTART, the kernel restarts accept(): it does not return on the signal',
      b0.restart && !returnedEarly,
    );
    // connect from a raw socket whose receive buffer is fixed before the handshake (step 3 fills it)
    // the handshake completes inside connect(): accept() may return before connect() does
    const connectAt = nowUs();
    const cfd = connectSmallReceiver(port, PEER_RCVBUF);
    let cfdOpen = true;
    cl.add(() => {
      if (cfdOpen) closeFd(cfd);
    });
    const b = await lines.next('B');
    run.restarted = {
      ...call(b, sentB),
      saRestart: b0.restart,
      backInAccept: !returnedEarly,
      connectUs: connectAt,
    };
    r.step(
      `a real connection → accept() = ${b.rc} (a descriptor), ${ms(b.end - connectAt)} ms after connect() was called and ${ms(b.end - sentB)} ms after the signal`,
    );
    r.check(
      'the restarted accept() returned a descriptor for the connection, after the connect, not for the signal',
      b.rc >= 0 && b.end >= connectAt && b.start < sentB,
    );

    // 3. a blocking send() interrupted after copying some bytes returns the short count
    await lines.next('C-ready');
    await until(pid, (t) => t.nr === nrs.sendto && t.state === 'S');
    r.step(
      `the child send()s ${SEND_BYTES} bytes on the blocking connection; the parent never reads (receive buffer fixed at ${PEER_RCVBUF} × 2): send() blocks with the buffers full (/proc/${pid}/syscall: ${nrs.sendto}, state S)`,
    );
    const sentC = nowUs();
    tgkill(pid, pid, sig);
    const c = await lines.next('C');
    r.step(
      `tgkill → send() = ${c.rc}${c.rc < 0 ? ` errno ${c.errno}` : ''} of ${c.size} asked, ${ms(c.end - sentC)} ms after the signal; it had blocked ${ms(sentC - c.start)} ms`,
    );
    r.check(
      'interrupted after copying some bytes, a blocking send() returns the short count (0 < n < asked), not -1 EINTR, though SA_RESTART is set',
      c.rc > 0 && c.rc < c.size && c.end >= sentC,
    );
    // now read what arrived: exactly the bytes send() said it took, then the FIN of close()
    cfdOpen = false;
    const peer = new net.Socket({ fd: cfd, readable: true, writable: true });
    cl.add(() => peer.destroy());
    let received = 0;
    peer.on('data', (d: Buffer) => {
      received += d.length;
    });
    await waitFor(peer, 'end', 10_000);
    r.step(`the parent reads: ${received} bytes, then FIN`);
    run.send = { ...call(c, sentC), size: c.size, received };
    r.check('the peer received exactly the count send() returned', received === c.rc);
    peer.destroy();

    // 4. Node: a non-blocking listener, libuv's SA_RESTART handler, a JS handler on the loop
    const d0 = await lines.next('D-ready');
    r.usePort(d0.port);
    r.step(
      `the child, now a Node server on 127.0.0.1:${d0.port}, adds process.on('${SIGNAL}'): libuv ${d0.replaced ? 'replaced the handler' : 'kept abs()'}, ${d0.restart ? 'with' : 'without'} SA_RESTART; its listening socket is ${d0.nonblock ? 'non-blocking (O_NONBLOCK): libuv waits in epoll_wait(), never in accept()' : 'blocking'}`,
    );
    r.check(
      "Node's listener is non-blocking and libuv installs its signal handler with SA_RESTART",
      d0.nonblock === true && d0.restart === true && d0.replaced === true,
    );
    // idle, the loop sleeps in epoll_pwait(); a signal wakes it with EINTR and libuv waits again
    const idle = await until(pid, (t) => nrs.epoll.includes(t.nr) && t.state === 'S');
    tgkill(pid, pid, sig);
    const first = await lines.next('D-sig', 10_000, (m) => m.n === 1);
    const back = await until(
      pid,
      (t) => t.pending === 0n && t.sleeps > idle.sleeps && nrs.epoll.includes(t.nr) && t.state === 'S',
    );
    r.step(
      `idle, its main thread waits in epoll (/proc/${pid}/syscall: ${idle.nr}); a signal woke it (epoll never restarts: EINTR), the JS handler ran (count ${first.n}), and the loop went back to waiting (syscall ${back.nr}, ${back.sleeps - idle.sleeps} more sleep(s))`,
    );
    r.check(
      "a signal interrupts libuv's epoll wait, the JS handler runs on the loop, and the loop waits again",
      first.n === 1 && nrs.epoll.includes(back.nr),
    );
    const replies: string[] = [];
    for (let i = 0; i < NODE_ROUNDS; i++) {
      tgkill(pid, pid, sig);
      const s = await connectLocal(d0.port);
      cl.add(() => s.destroy());
      let got = '';
      s.on('data', (x: Buffer) => {
        got += x;
      });
      await waitFor(s, 'end', 10_000);
      replies.push(got.trim());
      s.destroy();
    }
    const counted = await lines.next('D-sig', 10_000, (m) => m.n === NODE_ROUNDS + 1);
    run.node = {
      nonblock: d0.nonblock,
      saRestart: d0.restart,
      idleSyscall: { before: idle.nr, after: back.nr },
      replies,
      handlerRuns: Math.max(0, ...lines.all('D-sig').map((m) => m.n)),
    };
    r.step(
      `${NODE_ROUNDS} rounds of a signal then a connection: ${replies.length} connections answered (signals counted so far: ${replies.join(', ')}); the JS handler has run ${counted.n} times; no call failed: libuv retries epoll_wait() when a signal interrupts it`,
    );
    r.check(
      `the Node server accepted all ${NODE_ROUNDS} connections while ${NODE_ROUNDS} signals arrived, and its JS handler ran for each`,
      replies.length === NODE_ROUNDS &&
        replies.every((x) => /^\d+$/.test(x)) &&
        counted.n === NODE_ROUNDS + 1,
    );
    // a signal while JS runs synchronously: the handler waits for the loop
    child.stdin!.write('busy\n');
    const busy = await lines.next('D-busy');
    const sentD = nowUs();
    tgkill(pid, pid, sig);
    child.stdin!.write('go\n');
    const done = await lines.next('D-busy-done');
    const ran = await lines.next('D-sig', 10_000, (m) => m.n === NODE_ROUNDS + 2);
    run.node.handlerRuns = Math.max(0, ...lines.all('D-sig').map((m) => m.n));
    run.node.busy = { startUs: done.start, endUs: done.end, signalUs: sentD, handlerUs: ran.at };
    r.step(
      `a signal ${ms(sentD - busy.start)} ms into a synchronous JS loop of ${ms(done.end - done.start)} ms: the JS handler ran ${ms(ran.at - done.end)} ms after the loop returned (${ms(ran.at - sentD)} ms after the signal)`,
    );
    r.check(
      'a JS signal handler never interrupts running JS: it ran after the loop that was running when the signal came',
      sentD > done.start && sentD < done.end && ran.at >= done.end,
    );
    return { result: r.result(), run };
  } catch (err) {
    r.check(`the run completed: ${(err as Error).message}`, false);
    return { result: r.result(), run };
  } finally {
    await cl.run();
  }
}
