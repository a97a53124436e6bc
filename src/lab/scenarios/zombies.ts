// A fork server that never reaps its children: each child that exits stays in the process
// table as a zombie (state Z, `<defunct>` in ps) until its parent calls wait()/waitpid() —
// usually from a SIGCHLD handler — or exits. Shown with a parent that forks two children and
// then never waits (a shell that execs into sleep), beside one that waits; and Node's own
// children, which libuv reaps as they exit (SIGCHLD → waitpid), so a Node server has none.

import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { Cleanup, Recorder, type ScenarioResult } from '../recorder.js';
import { waitFor } from '../util.js';

interface Proc {
  pid: number;
  ppid: number;
  state: string;
  comm: string;
}

/** The children of `ppid`, from /proc/PID/stat (as `ps -o pid,ppid,stat,comm --ppid PPID`). */
function childrenOf(ppid: number): Proc[] {
  const out: Proc[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const [state, pp] = stat.slice(close + 2).split(' ');
      if (Number(pp) === ppid)
        out.push({ pid: Number(d), ppid, state: state!, comm: stat.slice(stat.indexOf('(') + 1, close) });
    } catch {
      // gone while listed
    }
  }
  return out;
}

async function until(fn: () => boolean, ms: number): Promise<boolean> {
  const end = performance.now() + ms;
  while (!fn()) {
    if (performance.now() > end) return false;
    await new Promise((res) => setTimeout(res, 20));
  }
  return true;
}

export async function zombies(): Promise<ScenarioResult> {
  const r = new Recorder(
    'zombies',
    'a fork server that never reaps: zombies; SIGCHLD + waitpid (or Node) reaps them',
    'port reuse and a process-per-client server',
  );
  r.dependsOn(
    [],
    [
      'a zombie holds no memory or descriptors, only its process-table entry and exit status; enough of them exhaust the pid space (kernel.pid_max) or the user’s RLIMIT_NPROC, and fork() fails with EAGAIN',
    ],
  );
  const c = new Cleanup();
  try {
    if (process.platform !== 'linux') return r.result('reads /proc: Linux only');
    const run = (script: string): ChildProcess => {
      const p = spawn('sh', ['-c', script], { stdio: 'ignore' });
      c.add(() => p.kill('SIGKILL'));
      return p;
    };
    // 1. forks two children, never waits: the shell execs into sleep, which never calls wait()
    const neglect = run('sleep 0 & sleep 0 & exec sleep 5');
    const seen = await until(
      () => childrenOf(neglect.pid!).filter((p) => p.state === 'Z').length === 2,
      3000,
    );
    const z = childrenOf(neglect.pid!);
    r.step(
      `a parent (pid ${neglect.pid}) forked two children that exited; it never calls wait(): ${z.map((p) => `${p.pid} ${p.state} (${p.comm}) ${p.state === 'Z' ? '<defunct>' : ''}`.trim()).join('; ') || 'none'}`,
    );
    r.check('without wait() the exited children stay as zombies (state Z)', seen);

    // 2. the same, but the parent waits (what a SIGCHLD handler calling waitpid(-1, …, WNOHANG) does)
    const careful = run('sleep 0 & sleep 0 & wait; exec sleep 5');
    // once it has exec'd into sleep, its wait() has returned for both children
    const commOf = (pid: number) => {
      try {
        return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      } catch {
        return '';
      }
    };
    await until(() => commOf(careful.pid!) === 'sleep', 3000);
    const none = childrenOf(careful.pid!);
    r.step(
      `a parent (pid ${careful.pid}) that calls wait() for its children: ${none.length} left in the process table`,
    );
    r.check('with wait() no zombie is left', none.length === 0);

    // 3. Node's children: libuv reaps each as it exits and reports 'exit'
    const kid = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
    c.add(() => kid.kill('SIGKILL'));
    await waitFor(kid, 'exit', 20_000);
    const mine = childrenOf(process.pid).filter((p) => p.pid === kid.pid);
    r.step(
      `a child of this Node process (pid ${kid.pid}) exited: 'exit' was emitted and it is ${mine.length ? mine[0]!.state : 'gone from the process table'}`,
    );
    r.check("Node reaps its children itself (libuv's SIGCHLD handler calls waitpid)", mine.length === 0);

    // the neglectful parent ends: its zombies are handed to init (or a subreaper), which reaps them
    const zpids = z.map((p) => p.pid);
    neglect.kill('SIGKILL');
    await waitFor(neglect, 'exit', 5000).catch(() => {});
    const cleared = await until(() => zpids.every((p) => !isZombie(p)), 3000);
    r.step('the parent is killed: its zombies are reparented to init, which reaps them');
    r.check('once the parent exits, its zombies are reaped', cleared);
    return r.result();
  } finally {
    await c.run();
  }
}

function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return false;
  }
}
