// The proxies of one echo-proxy process, as the Toxiproxy API sees them: each a listener of
// the server's pipeline (startEchoServer with the forwarding application) and a list of
// toxics that its open connections follow. A disabled proxy, or one with a `down` toxic,
// closes its listener and its connections (the client is refused); enabling it listens on
// the same address again.

import { isIP } from 'node:net';
import { explainError } from '../core/errors.js';
import { type Fault, UDP_FAULTS } from '../core/faults.js';
import { directWriteUsable } from '../core/internals.js';
import { type Logger, silentLogger } from '../core/log.js';
import { formatAddress } from '../core/parse.js';
import { copyTotals, emptyTotals, type ServerTotals } from '../core/records.js';
import type { ClientTls } from '../core/tls.js';
import { normalizeToxic } from '../core/toxics.js';
import {
  ApiError,
  type ProxyControl,
  type ProxyRegistry,
  type ProxyState,
  type Toxic,
} from '../core/toxiproxy.js';
import type { ServerCounts } from '../server/admin.js';
import { type EchoServer, type EchoServerOptions, startEchoServer } from '../server/tcp-server.js';
import { forwardApplication, type Link, type LiveFaults, type UpstreamTarget } from './forward.js';
import { startUdpProxy, type UdpProxy } from './udp.js';

/** What a TCP stream and a datagram proxy can each run. */
const UDP_KINDS: readonly string[] = [...UDP_FAULTS, 'down'];
const DATAGRAM_ONLY: readonly string[] = ['drop', 'duplicate', 'reorder'];

/** HOST:PORT, [V6]:PORT or unix:PATH, as the API and the flags give an address. */
export function parseEndpoint(text: string, what: string): { host: string; port: number } | { path: string } {
  if (text.startsWith('unix:')) {
    const path = text.slice(5);
    if (!path) throw new ApiError(400, `${what}: unix: needs a path`);
    return { path };
  }
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(text) ?? /^([^:\s[\]]*):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[2]) : Number.NaN;
  if (!m || port > 65535) throw new ApiError(400, `${what}: "${text}" is not HOST:PORT`);
  const host = m[1] || '127.0.0.1';
  if (host.includes(':') && isIP(host) !== 6) throw new ApiError(400, `${what}: "${text}" is not HOST:PORT`);
  return { host, port };
}

/** What every proxy of a registry shares: the listening side's pipeline and the upstream side's options. */
export interface RegistryOptions {
  logger?: Logger;
  /** the server pipeline's options for each listener (TLS, PROXY preamble, limits, trace…) */
  server?: Omit<EchoServerOptions, 'host' | 'port' | 'path' | 'application' | 'faults' | 'logger'>;
  /** TLS toward the upstream */
  upstreamTls?: ClientTls;
  /** a PROXY protocol header toward the upstream */
  sendProxy?: 1 | 2;
  /** give up on an upstream connect after this long (ms; default 10 000) */
  connectTimeoutMs?: number;
  /** datagrams: a session per client address, ended after udpIdleTimeoutMs (default 60 000) */
  udp?: boolean;
  udpIdleTimeoutMs?: number;
}

interface Entry {
  toxic: Toxic;
  fault: Fault;
}

class RunningProxy implements ProxyControl {
  private readonly toxics = new Map<string, Entry>();
  readonly links = new Set<Link>();
  private server: EchoServer | UdpProxy | undefined;
  /** the address bound the first time (port 0 resolved), listened on again when re-enabled */
  private bound: string | undefined;
  private queue: Promise<void> = Promise.resolve();

  constructor(
    readonly name: string,
    private listen: string,
    private upstream: string,
    private enabled: boolean,
    private readonly o: RegistryOptions,
  ) {
    parseEndpoint(listen, 'listen');
    parseEndpoint(upstream, 'upstream');
  }

  state(): ProxyState {
    return {
      name: this.name,
      listen: this.bound ?? this.listen,
      upstream: this.upstream,
      enabled: this.enabled,
      toxics: [...this.toxics.values()].map((e) => e.toxic),
    };
  }

  /** what the listeners closed before served */
  private past = emptyTotals();
  /** a listener being closed: still counted until its totals are in `past` */
  private closing: EchoServer | UdpProxy | undefined;

  /** The listener now, or the one closing. */
  private current(): ServerCounts | undefined {
    return this.closing ?? this.server;
  }

  /** What this proxy served over its life, across disable and enable (the admin page, metrics). */
  readonly served: ServerCounts = {
    stats: () => {
      const t = copyTotals(this.past);
      const now = this.current()?.stats();
      if (now) addTotals(t, now);
      return t;
    },
    connections: () => this.current()?.connections() ?? [],
  };

  /** The listener as it should be: running when enabled and no `down` toxic. */
  sync(): Promise<void> {
    this.queue = this.queue.then(() => this.syncNow());
    return this.queue;
  }

  private async syncNow(): Promise<void> {
    const want = this.enabled && ![...this.toxics.values()].some((e) => e.fault.kind === 'down');
    if (want && !this.server) {
      const where = parseEndpoint(this.bound ?? this.listen, 'listen');
      const logger = this.o.logger ?? silentLogger;
      const faults: LiveFaults = {
        current: () =>
          [...this.toxics.values()].map((e) => ({
            name: e.toxic.name,
            fault: e.fault,
            toxicity: e.toxic.toxicity,
          })),
      };
      try {
        if (this.o.udp) {
          if ('path' in where) throw new ApiError(400, 'listen: a UDP proxy listens on HOST:PORT');
          this.server = await startUdpProxy({
            name: this.name,
            listen: where,
            upstream: () => {
              const u = parseEndpoint(this.upstream, 'upstream');
              return 'path' in u ? { host: '127.0.0.1', port: 0 } : u;
            },
            faults,
            idleTimeoutMs: this.o.udpIdleTimeoutMs ?? 60_000,
            logger,
          });
        } else {
          // checked once per process, alongside the start; until it has passed, write() is used
          void directWriteUsable();
          this.server = await startEchoServer({
            ...this.o.server,
            ...('path' in where ? { path: where.path } : { host: where.host, port: where.port }),
            logger,
            logFields: { proxy: this.name },
            application: forwardApplication({
              name: this.name,
              upstream: () => this.target(),
              faults,
              links: this.links,
              logger,
            }),
          });
        }
      } catch (err) {
        if (err instanceof ApiError) throw err;
        throw new ApiError(500, `proxy ${this.name}: ${explainError(err, { role: 'server' }).line}`);
      }
      const a = this.server.address;
      this.bound = a.family === 'unix' ? `unix:${a.address}` : formatAddress(a.address, a.port);
    } else if (!want && this.server) {
      const s = this.server;
      this.server = undefined;
      this.closing = s;
      if ('forceClose' in s) {
        s.forceClose();
        addTotals(this.past, await s.close({ graceMs: 0 }));
      } else {
        await s.close();
        addTotals(this.past, s.stats());
      }
      this.closing = undefined;
    }
  }

  private target(): UpstreamTarget {
    const where = parseEndpoint(this.upstream, 'upstream');
    return {
      text: this.upstream,
      connect: {
        ...('path' in where ? { host: 'localhost', port: 0, path: where.path } : where),
        connectTimeoutMs: this.o.connectTimeoutMs ?? 10_000,
        ...(this.o.upstreamTls ? { tls: this.o.upstreamTls } : {}),
      },
      ...(this.o.sendProxy ? { sendProxy: this.o.sendProxy } : {}),
    };
  }

  private changed(): void {
    for (const l of this.links) l.refresh();
    this.sync().catch((err) =>
      (this.o.logger ?? silentLogger).warn({ proxy: this.name }, `${this.name}: ${(err as Error).message}`),
    );
  }

  /** A toxic this proxy can run (TCP: no datagram faults; UDP: datagram faults only). */
  private checked(t: unknown): Entry {
    const n = normalizeToxic(t);
    if (this.o.udp ? !UDP_KINDS.includes(n.fault.kind) : DATAGRAM_ONLY.includes(n.fault.kind))
      throw new ApiError(400, `a ${this.o.udp ? 'UDP' : 'TCP'} proxy has no toxic "${n.toxic.type}"`);
    return n;
  }

  addToxic(t: Toxic): Toxic {
    const { toxic, fault } = this.checked(t);
    if (this.toxics.has(toxic.name)) throw new ApiError(409, 'toxic already exists');
    this.toxics.set(toxic.name, { toxic, fault });
    this.changed();
    return toxic;
  }

  updateToxic(name: string, patch: Partial<Toxic>): Toxic {
    const e = this.toxics.get(name);
    if (!e) throw new ApiError(404, 'toxic not found');
    if (patch.attributes !== undefined && (typeof patch.attributes !== 'object' || patch.attributes === null))
      throw new ApiError(400, 'bad request body: attributes must be a JSON object');
    const merged = {
      ...e.toxic,
      attributes: { ...e.toxic.attributes, ...(patch.attributes ?? {}) },
      toxicity: patch.toxicity ?? e.toxic.toxicity,
    };
    const next = this.checked(merged);
    this.toxics.set(name, next);
    this.changed();
    return next.toxic;
  }

  removeToxic(name: string): void {
    if (!this.toxics.delete(name)) throw new ApiError(404, 'toxic not found');
    this.changed();
  }

  resetToxics(): void {
    this.toxics.clear();
    this.enabled = true;
    this.changed();
  }

  async update(patch: { listen?: string; upstream?: string; enabled?: boolean }): Promise<ProxyState> {
    if (patch.upstream !== undefined) {
      parseEndpoint(patch.upstream, 'upstream');
      this.upstream = patch.upstream; // connections from now on
    }
    if (patch.listen !== undefined && patch.listen !== (this.bound ?? this.listen)) {
      parseEndpoint(patch.listen, 'listen');
      const was = this.enabled;
      this.enabled = false;
      await this.sync();
      this.listen = patch.listen;
      this.bound = undefined;
      this.enabled = was;
    }
    if (patch.enabled !== undefined) this.enabled = patch.enabled;
    await this.sync();
    return this.state();
  }

  async stop(): Promise<void> {
    this.enabled = false;
    await this.sync();
  }
}

/** `t` added to `into` (its open connections are not: a closed listener has none). */
function addTotals(into: ServerTotals, t: ServerTotals): void {
  into.connections += t.connections;
  into.refused += t.refused;
  into.bytesIn += t.bytesIn;
  into.bytesOut += t.bytesOut;
  for (const [k, v] of Object.entries(t.refusedBy)) into.refusedBy[k] = (into.refusedBy[k] ?? 0) + v;
  for (const [k, v] of Object.entries(t.errors)) into.errors[k] = (into.errors[k] ?? 0) + v;
}

/** The proxies of one process. */
export class Proxies implements ProxyRegistry {
  private readonly byName = new Map<string, RunningProxy>();

  constructor(private readonly o: RegistryOptions = {}) {}

  list(): ProxyControl[] {
    return [...this.byName.values()];
  }

  get(name: string): ProxyControl | undefined {
    return this.byName.get(name);
  }

  /** Each proxy's state and what it served (the admin page, metrics), in creation order. */
  listeners(): { state: ProxyState; udp: boolean; server: ServerCounts }[] {
    return [...this.byName.values()].map((p) => ({
      state: p.state(),
      udp: !!this.o.udp,
      server: p.served,
    }));
  }

  async create(spec: {
    name: string;
    listen: string;
    upstream: string;
    enabled?: boolean;
  }): Promise<ProxyControl> {
    if (!spec.name) throw new ApiError(400, 'missing required field: name');
    if (!spec.upstream) throw new ApiError(400, 'missing required field: upstream');
    if (this.byName.has(spec.name)) throw new ApiError(409, 'proxy already exists');
    const p = new RunningProxy(
      spec.name,
      spec.listen || '127.0.0.1:0',
      spec.upstream,
      spec.enabled ?? true,
      this.o,
    );
    this.byName.set(spec.name, p);
    try {
      await p.sync();
    } catch (err) {
      this.byName.delete(spec.name);
      throw err;
    }
    return p;
  }

  async remove(name: string): Promise<void> {
    const p = this.byName.get(name);
    if (!p) throw new ApiError(404, 'proxy not found');
    this.byName.delete(name);
    await p.stop();
  }

  reset(): void {
    for (const p of this.byName.values()) p.resetToxics();
  }

  /** Every proxy stopped (the process is ending). */
  async close(): Promise<void> {
    await Promise.all([...this.byName.values()].map((p) => p.stop()));
    this.byName.clear();
  }
}
