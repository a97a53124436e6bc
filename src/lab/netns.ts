// Two hosts on one machine for the dead-peer and unreachable scenarios: a pair of network
// namespaces joined by a veth, with addresses from the benchmarking range 198.18.0.0/15 that
// exist only inside them (withRouter: three, a forwarding router between client and server).
// Each side runs as a child process (`ip netns exec NS node …`) with an IPC channel; the path
// is cut from here with a blackhole route. Everything is removed
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
 * are removed. withRouter hands it the client's link: `server` and `serverIf` are the router's.
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

/** Run the lab's child program inside a namespace, with an IPC channel; it joins `children`. */
function spawnChild(ns: string, role: object, children: ChildProcess[]): Child {
  const proc = spawn('ip', ['netns', 'exec', ns, process.execPath, childScript, JSON.stringify(role)], {
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  children.push(proc);
  let stderr = '';
  proc.stderr!.on('data', (d) => {
    stderr += d;
  });
  return {
    proc,
    send: (msg) => proc.connected && proc.send(msg),
    next: childMessages(proc, () => stderr),
  };
}

/** A child process's side of an IPC channel, as childMessages reads it. */
export type IpcChild = Pick<ChildProcess, 'on' | 'once' | 'connected'>;

/**
 * The messages of a child with an IPC channel, waited for by type: `next(type)` resolves with
 * the next message of that type, and rejects when the child ends without sending it.
 */
export function childMessages(
  proc: IpcChild,
  stderr: () => string,
): (type: string, timeoutMs?: number) => Promise<Record<string, any>> {
  const inbox: Record<string, any>[] = [];
  const waiters: { type: string; resolve: (m: Record<string, any>) => void }[] = [];
  proc.on('message', (m: Record<string, any>) => {
    const i = waiters.findIndex((w) => w.type === m.type);
    if (i >= 0) waiters.splice(i, 1)[0]!.resolve(m);
    else inbox.push(m);
  });
  return (type, timeoutMs = 30_000) => {
    const i = inbox.findIndex((m) => m.type === type);
    if (i >= 0) return Promise.resolve(inbox.splice(i, 1)[0]!);
    return new Promise((resolve, reject) => {
      const t = setTimeout(
        () => reject(new Error(`child sent no '${type}' within ${timeoutMs} ms`)),
        timeoutMs,
      );
      // the child's last messages may still be in the channel when its exit is seen: give up
      // only once the channel has closed (every message in it was delivered before that)
      proc.once('exit', (code) => {
        const fail = () => {
          clearTimeout(t);
          reject(new Error(`child exited (${code}) before '${type}': ${stderr().trim()}`));
        };
        if (proc.connected) proc.once('disconnect', fail);
        else fail();
      });
      waiters.push({
        type,
        resolve: (m) => {
          clearTimeout(t);
          resolve(m);
        },
      });
    });
  };
}

/**
 * The bookkeeping of a set of namespaces: `ip` run on the host, the children spawned into them,
 * their removal (registered in `pending`, so a signal that ends the process removes them too).
 */
function namespaceSet(names: string[]) {
  const children: ChildProcess[] = [];
  const run = (...args: string[]) =>
    execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const deleteNamespaces = () => {
    for (const ns of names) {
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
  return { children, run, deleteNamespaces, removeNow };
}

/** SIGKILL every child still running and wait for each to exit. */
async function killChildren(children: ChildProcess[]): Promise<void> {
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
}

export async function withTwoHosts<T>(fn: (h: TwoHosts) => Promise<T>): Promise<T> {
  const id = `${process.pid % 100000}${counter++}`;
  const client = `ekC-${id}`;
  const server = `ekS-${id}`;
  const { children, run, deleteNamespaces, removeNow } = namespaceSet([client, server]);
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
    const spawnIn = (ns: string, role: object): Child => spawnChild(ns, role, children);
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
    await killChildren(children);
    deleteNamespaces();
  }
}

/** The router's address on the client's link (the client's gateway, and the ICMP errors' source). */
export const ROUTER_ADDR = '198.18.0.254';
/** The router's address on the server's link. */
export const ROUTER_SERVER_SIDE_ADDR = '198.18.1.254';
/** The server's address behind the router. */
export const ROUTED_SERVER_ADDR = '198.18.1.2';

export interface RoutedHosts extends TwoHosts {
  /** the namespace between them, forwarding (ip_forward 1) */
  router: string;
  /** the router's interfaces: toward the client's link, toward the server's */
  routerIf: { client: string; server: string };
  /**
   * Stop the capture on the client's veth (running since before `fn` was called) and return
   * every TCP segment and ICMP error on it; the same list on every call.
   */
  captured(): Promise<Segment[]>;
}

/**
 * Three hosts: a client 198.18.0.1/24, a router 198.18.0.254/24 + 198.18.1.254/24 that forwards,
 * a server 198.18.1.2/24; each end routes 198.18.0.0/15 through the router. Whatever the router
 * cannot deliver it answers with ICMP, so the client sees real ICMP errors on its link: they are
 * captured there (with the TCP segments) for the whole run, and handed to a traced run as well.
 */
export async function withRouter<T>(fn: (h: RoutedHosts) => Promise<T>): Promise<T> {
  const id = `${process.pid % 100000}${counter++}`;
  const client = `ekC-${id}`;
  const router = `ekR-${id}`;
  const server = `ekS-${id}`;
  const dev = { client: `ekc${id}`, routerC: `ekrc${id}`, routerS: `ekrs${id}`, server: `eks${id}` };
  const { children, run, deleteNamespaces, removeNow } = namespaceSet([client, router, server]);
  const report = nsTrace;
  const unwatch: (() => Promise<void>)[] = [];
  let stopped: Promise<Segment[]> | undefined;
  let capture: Child | undefined;
  const captured = () => {
    stopped ??= (async () => {
      if (!capture) return [];
      capture.send({ type: 'stop' });
      const got = await capture.next('segments', 10_000).catch(() => undefined);
      return (got?.segments as Segment[] | undefined) ?? [];
    })();
    return stopped;
  };
  try {
    for (const ns of [client, router, server]) run('netns', 'add', ns);
    run(
      'link',
      'add',
      dev.client,
      'netns',
      client,
      'type',
      'veth',
      'peer',
      'name',
      dev.routerC,
      'netns',
      router,
    );
    run(
      'link',
      'add',
      dev.routerS,
      'netns',
      router,
      'type',
      'veth',
      'peer',
      'name',
      dev.server,
      'netns',
      server,
    );
    run('-n', client, 'addr', 'add', `${CLIENT_ADDR}/24`, 'dev', dev.client);
    run('-n', router, 'addr', 'add', `${ROUTER_ADDR}/24`, 'dev', dev.routerC);
    run('-n', router, 'addr', 'add', `${ROUTER_SERVER_SIDE_ADDR}/24`, 'dev', dev.routerS);
    run('-n', server, 'addr', 'add', `${ROUTED_SERVER_ADDR}/24`, 'dev', dev.server);
    for (const [ns, d] of [
      [client, dev.client],
      [router, dev.routerC],
      [router, dev.routerS],
      [server, dev.server],
    ] as const) {
      run('-n', ns, 'link', 'set', 'lo', 'up');
      run('-n', ns, 'link', 'set', d, 'up');
    }
    run('-n', client, 'route', 'add', '198.18.0.0/15', 'via', ROUTER_ADDR);
    run('-n', server, 'route', 'add', '198.18.0.0/15', 'via', ROUTER_SERVER_SIDE_ADDR);
    execFileSync('ip', ['netns', 'exec', router, 'sh', '-c', 'echo 1 > /proc/sys/net/ipv4/ip_forward'], {
      stdio: 'pipe',
    });
    const spawnIn = (ns: string, role: object): Child => spawnChild(ns, role, children);
    // the watchers see the client's link: its veth end, and the router on the other end
    const pair = { client, server: router, clientIf: dev.client, serverIf: dev.routerC };
    for (const watch of nsWatchers) unwatch.push(await watch(pair));
    // the datagram that ends the capture goes to the router's discard port, over the veth
    capture = spawnIn(client, {
      role: 'capture',
      ifname: dev.client,
      marker: { host: ROUTER_ADDR, port: 9 },
      icmp: true,
    });
    await capture.next('capturing', 15_000);
    try {
      return await fn({
        client,
        server,
        clientIf: dev.client,
        router,
        routerIf: { client: dev.routerC, server: dev.routerS },
        ip: (ns, ...args) => run('-n', ns, ...args),
        readIn: (ns) => (file) =>
          execFileSync('ip', ['netns', 'exec', ns, 'cat', file], { encoding: 'utf8' }),
        spawnIn,
        captured,
      });
    } finally {
      // the last segments (a FIN's ACK, an RST) may still be on their way
      if (!stopped) await new Promise((res) => setTimeout(res, 30));
      const segments = await captured();
      report?.(segments);
    }
  } finally {
    for (const stop of unwatch.splice(0)) await stop().catch(() => {});
    pending.delete(removeNow);
    await killChildren(children);
    deleteNamespaces();
  }
}
