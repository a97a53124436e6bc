// Two hosts on one machine for the dead-peer and unreachable scenarios: a pair of network
// namespaces joined by a veth, with addresses from the benchmarking range 198.18.0.0/15 that
// exist only inside them. Each side runs as a child process (`ip netns exec NS node …`) with
// an IPC channel; the path is cut from here with a blackhole route. Everything is removed
// on every exit path (children first: a namespace with a live process outlives its name).

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Segment } from './capture.js';

export const CLIENT_ADDR = '198.18.0.1';
export const SERVER_ADDR = '198.18.0.2';

let counter = 0;

/** Set while a traced run wants the namespaces' segments: they are captured on the client's veth. */
let nsTrace: ((segments: Segment[]) => void) | undefined;
export function traceNamespaces(fn: ((segments: Segment[]) => void) | undefined): void {
  nsTrace = fn;
}

/** Where a pair of namespaces is: each one's name and its end of the veth between them. */
export interface NamespacePair {
  client: string;
  server: string;
  clientIf: string;
  serverIf: string;
}

/**
 * A witness of a pair's traffic (tcpdump in a test): called once the veth is up, before any
 * scenario traffic, and awaited; the function it resolves to is awaited before the namespaces
 * are removed.
 */
export type NamespaceWatcher = (ns: NamespacePair) => Promise<() => Promise<void>>;
const nsWatchers = new Set<NamespaceWatcher>();

/** Hear of every pair of namespaces as it is made; returns the function that stops it. */
export function onNamespaces(fn: NamespaceWatcher): () => void {
  nsWatchers.add(fn);
  return () => nsWatchers.delete(fn);
}

/** Removal of every pair of namespaces in use, for a process that must exit now (a signal). */
const pending = new Set<() => void>();
export function removeNamespacesNow(): void {
  for (const remove of pending) remove();
}

/** Why namespaces cannot be used here, or undefined when they can. */
export function netnsUnavailable(): string | undefined {
  if (process.platform !== 'linux') return `network namespaces are Linux-only (this is ${process.platform})`;
  const name = `ekprobe-${process.pid}-${counter++}`;
  try {
    execFileSync('ip', ['netns', 'add', name], { stdio: 'pipe' });
    execFileSync('ip', ['netns', 'del', name], { stdio: 'pipe' });
    return undefined;
  } catch (err) {
    const msg = String((err as { stderr?: Buffer }).stderr ?? (err as Error).message).trim();
    if ((err as NodeJS.ErrnoException).code === 'ENOENT')
      return 'the `ip` command (iproute2) is not installed';
    return `cannot create a network namespace (needs root or CAP_NET_ADMIN): ${msg.split('\n')[0]}`;
  }
}

export interface Child {
  proc: ChildProcess;
  /** the next IPC message of this type (rejects if the child exits first) */
  next(type: string, timeoutMs?: number): Promise<Record<string, any>>;
  send(msg: object): void;
}

export interface TwoHosts {
  client: string;
  server: string;
  /** the client's end of the veth (every segment of the pair passes it) */
  clientIf: string;
  /** `ip -n NS …` */
  ip(ns: string, ...args: string[]): string;
  /** run the lab's child program inside a namespace */
  spawnIn(ns: string, role: object): Child;
  /** /proc/net/tcp of a namespace, for tcpStates() */
  readIn(ns: string): (file: string) => string;
}

// the built child program (when this module runs from src/ under a TS loader, use dist/)
const here = path.dirname(fileURLToPath(import.meta.url));
const childScript = existsSync(path.join(here, 'netns-child.js'))
  ? path.join(here, 'netns-child.js')
  : path.join(here, '..', '..', 'dist', 'lab', 'netns-child.js');

export async function withTwoHosts<T>(fn: (h: TwoHosts) => Promise<T>): Promise<T> {
  const id = `${process.pid % 100000}${counter++}`;
  const client = `ekC-${id}`;
  const server = `ekS-${id}`;
  const children: ChildProcess[] = [];
  const run = (...args: string[]) =>
    execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const deleteNamespaces = () => {
    for (const ns of [client, server]) {
      try {
        run('netns', 'del', ns);
      } catch {
        // not created (setup failed early), or removed already
      }
    }
  };
  const removeNow = () => {
    pending.delete(removeNow);
    for (const p of children) p.kill('SIGKILL');
    deleteNamespaces();
  };
  pending.add(removeNow);
  const unwatch: (() => Promise<void>)[] = [];
  try {
    run('netns', 'add', client);
    run('netns', 'add', server);
    run(
      'link',
      'add',
      `ekc${id}`,
      'netns',
      client,
      'type',
      'veth',
      'peer',
      'name',
      `eks${id}`,
      'netns',
      server,
    );
    run('-n', client, 'addr', 'add', `${CLIENT_ADDR}/24`, 'dev', `ekc${id}`);
    run('-n', server, 'addr', 'add', `${SERVER_ADDR}/24`, 'dev', `eks${id}`);
    for (const [ns, dev] of [
      [client, `ekc${id}`],
      [server, `eks${id}`],
    ] as const) {
      run('-n', ns, 'link', 'set', 'lo', 'up');
      run('-n', ns, 'link', 'set', dev, 'up');
    }
    const spawnIn = (ns: string, role: object): Child => {
      const proc = spawn('ip', ['netns', 'exec', ns, process.execPath, childScript, JSON.stringify(role)], {
        stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      });
      children.push(proc);
      const inbox: Record<string, any>[] = [];
      const waiters: { type: string; resolve: (m: Record<string, any>) => void }[] = [];
      proc.on('message', (m: Record<string, any>) => {
        const i = waiters.findIndex((w) => w.type === m.type);
        if (i >= 0) waiters.splice(i, 1)[0]!.resolve(m);
        else inbox.push(m);
      });
      let stderr = '';
      proc.stderr!.on('data', (d) => {
        stderr += d;
      });
      return {
        proc,
        send: (msg) => proc.connected && proc.send(msg),
        next(type, timeoutMs = 30_000) {
          const i = inbox.findIndex((m) => m.type === type);
          if (i >= 0) return Promise.resolve(inbox.splice(i, 1)[0]!);
          return new Promise((resolve, reject) => {
            const t = setTimeout(
              () => reject(new Error(`child sent no '${type}' within ${timeoutMs} ms`)),
              timeoutMs,
            );
            proc.once('exit', (code) => {
              clearTimeout(t);
              reject(new Error(`child exited (${code}) before '${type}': ${stderr.trim()}`));
            });
            waiters.push({
              type,
              resolve: (m) => {
                clearTimeout(t);
                resolve(m);
              },
            });
          });
        },
      };
    };
    const pair = { client, server, clientIf: `ekc${id}`, serverIf: `eks${id}` };
    for (const watch of nsWatchers) unwatch.push(await watch(pair));
    const report = nsTrace;
    let capture: Child | undefined;
    if (report) {
      capture = spawnIn(client, {
        role: 'capture',
        ifname: `ekc${id}`,
        marker: { host: SERVER_ADDR, port: 9 },
      });
      await capture.next('capturing', 15_000);
    }
    try {
      return await fn({
        client,
        server,
        clientIf: pair.clientIf,
        ip: (ns, ...args) => run('-n', ns, ...args),
        readIn: (ns) => (file) =>
          execFileSync('ip', ['netns', 'exec', ns, 'cat', file], { encoding: 'utf8' }),
        spawnIn,
      });
    } finally {
      if (capture && report) {
        // the last segments (a FIN's ACK, an RST) may still be on their way
        await new Promise((res) => setTimeout(res, 30));
        capture.send({ type: 'stop' });
        const got = await capture.next('segments', 10_000).catch(() => undefined);
        report((got?.segments as Segment[] | undefined) ?? []);
      }
    }
  } finally {
    for (const stop of unwatch.splice(0)) await stop().catch(() => {});
    pending.delete(removeNow);
    await Promise.all(
      children.map(
        (p) =>
          new Promise<void>((res) => {
            if (p.exitCode !== null || p.signalCode !== null) return res();
            p.once('exit', () => res());
            p.kill('SIGKILL');
          }),
      ),
    );
    deleteNamespaces();
  }
}
