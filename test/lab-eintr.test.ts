// echo-lab eintr: a signal interrupting blocking socket calls in a child process, read from the
// run's own measurements (what the child's calls returned, their errno, and when, on the
// monotonic clock both processes share), not from the printed text.

import { constants } from 'node:os';
import { describe, expect, it } from 'vitest';
import { eintrRun } from '../src/lab/scenarios/eintr.js';
import { alive, spawnCli, until } from './helpers.js';

const linux = process.platform === 'linux';
const knownArch = ['x64', 'arm64'].includes(process.arch);
if (!linux) console.warn('skipping echo-lab eintr: it needs Linux (tgkill, /proc/PID/syscall)');

describe.runIf(linux && knownArch)('echo-lab eintr, from the run', () => {
  it('EINTR without SA_RESTART, a restarted accept() with it, a short send(), and Node never sees one', async () => {
    const { result: r, run } = await eintrRun();
    expect(r.skipped).toBeUndefined();
    expect(r.checks.filter((c) => !c.ok)).toEqual([]);
    expect(r.checks.length).toBe(10);
    expect(r.ok).toBe(true);

    // Node has more threads than the main one, and some of them leave the signal unblocked:
    // why the parent names the thread with tgkill()
    expect(run.threads!.threads).toBeGreaterThan(1);
    expect(run.threads!.open).toBeGreaterThan(1);

    // 1. no SA_RESTART: accept() was blocked when the signal came, then failed with EINTR
    const plain = run.plain!;
    expect(plain.rc).toBe(-1);
    expect(plain.errno).toBe(constants.errno.EINTR);
    expect(plain.startUs).toBeLessThan(plain.signalUs);
    expect(plain.endUs).toBeGreaterThanOrEqual(plain.signalUs);
    expect(plain.endUs - plain.signalUs).toBeLessThan(5_000_000);
    expect(r.errors.map((e) => e.code)).toEqual(['EINTR']);
    expect(r.errors[0]!.line).toMatch(/^accept EINTR — .*SA_RESTART.*\.$/);

    // 2. SA_RESTART: delivered while blocked, accept() restarted, returned for the connection
    const again = run.restarted!;
    expect(again.saRestart).toBe(true);
    expect(again.backInAccept).toBe(true);
    expect(again.startUs).toBeLessThan(again.signalUs);
    expect(again.signalUs).toBeLessThan(again.connectUs);
    expect(again.endUs).toBeGreaterThanOrEqual(again.connectUs);
    expect(again.rc).toBeGreaterThanOrEqual(0);

    // 3. the blocking send() interrupted after copying: a short count, exactly what arrived
    const send = run.send!;
    expect(send.startUs).toBeLessThan(send.signalUs);
    expect(send.endUs).toBeGreaterThanOrEqual(send.signalUs);
    expect(send.rc).toBeGreaterThan(0);
    expect(send.rc).toBeLessThan(send.size);
    expect(send.received).toBe(send.rc);

    // 4. Node: non-blocking listener, libuv's handler with SA_RESTART, every connection served,
    // the JS handler once per signal (one idle, ten with connections, one during busy JS),
    // and only after the JS that was running
    const node = run.node!;
    expect(node.nonblock).toBe(true);
    expect(node.saRestart).toBe(true);
    // woken out of its epoll wait by a signal, the idle loop went back to the same wait
    expect(node.idleSyscall.after).toBe(node.idleSyscall.before);
    expect(node.replies).toHaveLength(10);
    for (const x of node.replies) expect(x).toMatch(/^\d+$/);
    expect(node.handlerRuns).toBe(12);
    const busy = node.busy!;
    expect(busy.signalUs).toBeGreaterThan(busy.startUs);
    expect(busy.signalUs).toBeLessThan(busy.endUs);
    expect(busy.handlerUs).toBeGreaterThanOrEqual(busy.endUs);

    // the child is killed when the scenario ends
    await until(() => !alive(run.pid!), 10_000, 'the child gone');
  });

  it('echo-lab eintr --json: the same run through the CLI, exit 0', async () => {
    const p = spawnCli('echo-lab', ['eintr', '--json']);
    const { code } = await p.exit;
    expect(p.stderr()).toBe('');
    expect(code).toBe(0);
    const r = JSON.parse(p.stdout());
    expect(r.name).toBe('eintr');
    expect(r.ok).toBe(true);
    expect(r.errors.map((e: { code: string }) => e.code)).toEqual(['EINTR']);
  });
});
