// A Unix-domain socket is a file. A server that exits cleanly removes it (Node's close()
// unlinks it); one that is killed leaves it behind, and the next bind() to that path fails
// with EADDRINUSE although nobody listens. A connect tells the two apart: a stale file refuses
// (ECONNREFUSED), a live one accepts. Only a stale file may be removed. Linux's abstract
// names (@name) have no file: the name is freed with the last socket.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { errorCode } from '../../core/errors.js';
import { Cleanup, Recorder, type ScenarioResult } from '../recorder.js';
import { closeServer, waitFor } from '../util.js';

// listens on argv[1] and says so; killed with SIGKILL, it cannot remove its file
const CHILD = `
const arg = process.argv[1];
const srv = require('net').createServer(() => {});
srv.listen(arg.startsWith('@') ? '\\0' + arg.slice(1) : arg, () => process.stdout.write('listening\\n'));
`;

function listenPath(server: net.Server, p: string): Promise<unknown> {
  return new Promise((resolve) => {
    server.once('error', resolve);
    server.listen(p, () => resolve(undefined));
  });
}

function connectPath(p: string): Promise<unknown> {
  return new Promise((resolve) => {
    const s = net.connect(p);
    s.once('connect', () => {
      s.destroy();
      resolve(undefined);
    });
    s.once('error', resolve);
  });
}

export async function staleUnixSocket(): Promise<ScenarioResult> {
  const r = new Recorder(
    'stale-unix-socket',
    'a killed server leaves its Unix socket file: EADDRINUSE on restart; tell stale from live with a connect',
    'Unix-domain stream sockets: bind(), unlink() before bind, abstract names',
  );
  r.dependsOn(
    [],
    ['a Unix socket file is removed by close() (Node, libuv), not by the kernel when a process dies'],
  );
  const c = new Cleanup();
  const dir = mkdtempSync(path.join(tmpdir(), 'echo-lab-unix-'));
  c.add(() => rmSync(dir, { recursive: true, force: true }));
  const p = path.join(dir, 'echo.sock');
  try {
    const child = spawn(process.execPath, ['-e', CHILD, p], { stdio: ['ignore', 'pipe', 'ignore'] });
    c.add(() => child.kill('SIGKILL'));
    await waitFor(child.stdout, 'data');
    r.step(`a server (pid ${child.pid}) listens on ${p}`);
    child.kill('SIGKILL');
    await waitFor(child, 'close');
    const left = existsSync(p) && statSync(p).isSocket();
    r.step(`killed with SIGKILL: the socket file ${left ? 'is still there' : 'is gone'}`);
    r.check('the killed server left its socket file behind', left);

    const again = net.createServer();
    c.add(() => closeServer(again));
    const bindErr = await listenPath(again, p);
    if (bindErr) r.error(bindErr);
    r.step(`a new server binds the same path: ${bindErr ? errorCode(bindErr) : 'listening'}`);
    r.check('binding a path whose file exists fails with EADDRINUSE', errorCode(bindErr) === 'EADDRINUSE');

    const probe = await connectPath(p);
    if (probe) r.error(probe);
    r.step(
      `connect to the file: ${probe ? errorCode(probe) : 'accepted'} — nobody listens, the file is stale`,
    );
    r.check('a connect to a stale socket file is refused', errorCode(probe) === 'ECONNREFUSED');

    unlinkSync(p);
    const third = net.createServer();
    const err3 = await listenPath(third, p);
    r.step(`unlink() the stale file, bind again: ${err3 ? errorCode(err3) : 'listening'}`);
    r.check('after removing the stale file the bind succeeds', err3 === undefined);
    const live = await connectPath(p);
    r.step(
      `a connect now: ${live ? errorCode(live) : 'accepted'} — a live socket, which must not be removed`,
    );
    r.check('a connect to a live socket file is accepted', live === undefined);
    await closeServer(third);
    r.step(`close() the server: the file ${existsSync(p) ? 'is still there' : 'is removed'}`);
    r.check('a server that closes removes its socket file', !existsSync(p));

    if (process.platform === 'linux') {
      const at = `@echo-lab-${process.pid}-${Date.now()}`;
      const name = `\0${at.slice(1)}`;
      const a = spawn(process.execPath, ['-e', CHILD, at], { stdio: ['ignore', 'pipe', 'ignore'] });
      c.add(() => a.kill('SIGKILL'));
      await waitFor(a.stdout, 'data');
      a.kill('SIGKILL');
      await waitFor(a, 'close');
      const b = net.createServer();
      const errB = await listenPath(b, name);
      await closeServer(b);
      r.step(
        `abstract name ${at}: its server killed, a new bind ${errB ? `fails: ${errorCode(errB)}` : 'succeeds at once (no file to leave behind)'}`,
      );
      r.check('an abstract name is freed with its last socket', errB === undefined);
    }
    return r.result();
  } finally {
    await c.run();
  }
}
