// echo-proxy's flags: the program, and the validated config they make.

import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { Cidr } from '../core/access.js';
import { type Fault, PROXY_FAULTS, parseFault, UDP_FAULTS } from '../core/faults.js';
import { parseDuration, parseInteger, UsageError } from '../core/parse.js';
import type { SocketOptions } from '../core/sockopts.js';
import { type ClientTls, loadCa, loadServerTls, type ServerTls } from '../core/tls.js';
import { ApiError } from '../core/toxiproxy.js';
import { parseEndpoint } from '../proxy/registry.js';
import { addListenerFlags, type LogFlags, newProgram } from './common.js';
import {
  addTraceFlags,
  conflict,
  resolveAccess,
  resolveSocketOptions,
  resolveTrace,
  type SocketOptionFlags,
  type TraceFlags,
} from './flag-groups.js';
import { parseAlpn } from './transport.js';

export function buildProxyProgram(): Command {
  const cmd = newProgram(
    'echo-proxy',
    'TCP proxy with faults in front of any service, driven by the Toxiproxy API',
  )
    .option('--listen <addr>', 'where clients connect: HOST:PORT ([V6]:PORT, or unix:PATH); port 0 picks one')
    .option('--upstream <addr>', 'the service: HOST:PORT or unix:PATH')
    .option(
      '--fault <spec>',
      'a fault on the --listen proxy (repeatable): latency=DUR[,jitter=DUR] bandwidth=RATE slice=SIZE[,delay=DUR][,variation=SIZE] slow-close=DUR timeout=DUR (0 = never) limit-data=SIZE stall-after=SIZE close-after=SIZE[,how=fin|rst] reset-on-connect[,after=DUR] blackhole corrupt=P down; each may end in ,stream=upstream|downstream and ,p=FRACTION',
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option(
      '--proxy <spec>',
      'another proxy: NAME=LISTEN,UPSTREAM (repeatable)',
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option('--config <file>', "proxies from a JSON file in Toxiproxy's /populate format")
    .option('--api <addr>', 'the Toxiproxy HTTP API on HOST:PORT (default 127.0.0.1:8474)')
    .option('--no-api', 'no HTTP API')
    .option(
      '--tls',
      'TLS on the listening side: with --cert and --key, or a self-signed certificate made at start',
    )
    .option('--cert <file>', 'with --tls: certificate (PEM), chain included')
    .option('--key <file>', 'with --tls: private key (PEM) of --cert')
    .option('--alpn <list>', 'with --tls: ALPN protocols to accept, comma-separated')
    .option(
      '--upstream-tls',
      'TLS toward the upstream (checked against the system CAs unless --ca/--insecure)',
    )
    .option('--ca <file>', 'with --upstream-tls: the CA (PEM) the upstream certificate must chain to')
    .option('--insecure', "with --upstream-tls: check nothing about the upstream's certificate")
    .option('--servername <name>', 'with --upstream-tls: SNI and the name its certificate must carry')
    .option(
      '--send-proxy [version]',
      'send a PROXY protocol header (v1 or v2, default v1) naming the client to the upstream',
    )
    .option(
      '--proxy-protocol',
      'each client connection starts with a PROXY header (behind HAProxy); only loopback peers are believed',
    )
    .option(
      '--udp',
      'forward UDP datagrams: a session per client address, ended after --idle-timeout (default 60s)',
    )
    .option('--connect-timeout <dur>', 'give up on an upstream connect after this long (default 10s)')
    .option('--idle-timeout <dur>', 'close a client connection idle this long')
    .option('--max-connections <n>', 'per proxy: close new connections at once beyond this many open ones')
    .option('--max-connections-per-ip <n>', 'per proxy: the same, per client address');
  addTraceFlags(cmd);
  addListenerFlags(cmd);
  cmd.addHelpText(
    'after',
    `
Examples:
  echo-proxy --listen 127.0.0.1:6380 --upstream 127.0.0.1:6379 --fault latency=100ms
  echo-proxy --listen :0 --upstream db:5432 --fault timeout=2s,stream=upstream,p=0.1
  echo-proxy                             just the API on 127.0.0.1:8474, as toxiproxy-server
  echo-proxy --config proxies.json       proxies from Toxiproxy's populate format
  curl -X POST localhost:8474/proxies/proxy/toxics -d '{"type":"latency","attributes":{"latency":50}}'`,
  );
  return cmd;
}

export interface ProxyFlags extends LogFlags, TraceFlags, SocketOptionFlags {
  listen?: string;
  upstream?: string;
  fault?: string[];
  proxy?: string[];
  config?: string;
  api?: string | boolean;
  tls?: boolean;
  cert?: string;
  key?: string;
  alpn?: string;
  upstreamTls?: boolean;
  ca?: string;
  insecure?: boolean;
  servername?: string;
  sendProxy?: string | boolean;
  proxyProtocol?: boolean;
  connectTimeout?: string;
  idleTimeout?: string;
  udp?: boolean;
  maxConnections?: string;
  maxConnectionsPerIp?: string;
  allow?: string[];
  deny?: string[];
}

export interface ProxySpec {
  name: string;
  listen: string;
  upstream: string;
  enabled?: boolean;
  faults?: Fault[];
}

export interface ProxyConfig {
  proxies: ProxySpec[];
  api?: { host: string; port: number };
  tls?: ServerTls | 'self-signed';
  alpn?: string[];
  upstreamTls?: ClientTls;
  sendProxy?: 1 | 2;
  proxyProtocol?: boolean;
  connectTimeoutMs?: number;
  idleTimeoutMs?: number;
  udp?: boolean;
  maxConnections?: number;
  maxConnectionsPerIp?: number;
  trace?: { format: 'text' | 'hex'; file?: string };
  socket: SocketOptions;
  allow: Cidr[];
  deny: Cidr[];
}

function endpoint(flag: string, text: string): string {
  try {
    parseEndpoint(text, flag);
  } catch (err) {
    throw new UsageError(
      flag,
      text,
      err instanceof ApiError ? 'must be HOST:PORT or unix:PATH' : String(err),
    );
  }
  return text;
}

function proxiesFromFile(file: string): ProxySpec[] {
  let data: unknown;
  try {
    data = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new UsageError(
      '--config',
      file,
      e.code ? `cannot be read (${e.code})` : `is not JSON: ${e.message}`,
    );
  }
  if (!Array.isArray(data)) throw new UsageError('--config', file, 'must hold a JSON array of proxies');
  return data.map((x, i) => {
    const o = (x ?? {}) as Record<string, unknown>;
    const at = `proxy ${i + 1}`;
    if (typeof o.name !== 'string' || !o.name) throw new UsageError('--config', file, `${at} has no name`);
    if (typeof o.upstream !== 'string' || !o.upstream)
      throw new UsageError('--config', file, `${at} (${o.name}) has no upstream`);
    const listen = typeof o.listen === 'string' && o.listen ? o.listen : '127.0.0.1:0';
    return {
      name: o.name,
      listen: endpoint('--config', listen),
      upstream: endpoint('--config', o.upstream),
      enabled: o.enabled !== false,
    };
  });
}

export function resolveProxyConfig(f: ProxyFlags): ProxyConfig {
  const proxies: ProxySpec[] = [];
  if ((f.listen === undefined) !== (f.upstream === undefined))
    throw new UsageError(
      f.listen === undefined ? '--upstream' : '--listen',
      undefined,
      `needs ${f.listen === undefined ? '--listen' : '--upstream'}`,
    );
  const faults = (f.fault ?? []).map((s) => parseFault(s));
  const kinds: readonly string[] = f.udp ? [...UDP_FAULTS, 'down'] : PROXY_FAULTS;
  for (const x of faults)
    if (!kinds.includes(x.kind))
      throw new UsageError(
        '--fault',
        x.kind,
        `is not a ${f.udp ? 'UDP' : 'TCP'} proxy fault (one of: ${kinds.join(', ')})`,
      );
  if (f.udp) {
    const tcpOnly: [string, unknown][] = [
      ['--tls', f.tls],
      ['--upstream-tls', f.upstreamTls],
      ['--send-proxy', f.sendProxy],
      ['--proxy-protocol', f.proxyProtocol],
      ['--connect-timeout', f.connectTimeout],
    ];
    for (const [flag, v] of tcpOnly) if (v !== undefined && v !== false) throw conflict(flag, '--udp');
    for (const [flag, v] of [
      ['--listen', f.listen],
      ['--upstream', f.upstream],
    ] as const)
      if (v?.startsWith('unix:')) throw conflict(`${flag} unix:`, '--udp (no Unix datagram sockets in Node)');
  }
  if (faults.length && f.listen === undefined)
    throw new UsageError('--fault', undefined, 'needs --listen and --upstream');
  if (f.listen !== undefined)
    proxies.push({
      name: 'proxy',
      listen: endpoint('--listen', f.listen),
      upstream: endpoint('--upstream', f.upstream!),
      faults,
    });
  for (const spec of f.proxy ?? []) {
    const m = /^([^=,\s]+)=([^,]+),(.+)$/.exec(spec);
    if (!m) throw new UsageError('--proxy', spec, 'must be NAME=LISTEN,UPSTREAM');
    proxies.push({ name: m[1]!, listen: endpoint('--proxy', m[2]!), upstream: endpoint('--proxy', m[3]!) });
  }
  if (f.config !== undefined) proxies.push(...proxiesFromFile(f.config));
  const names = new Set<string>();
  for (const p of proxies) {
    if (names.has(p.name)) throw new UsageError('--proxy', p.name, 'names a proxy twice');
    names.add(p.name);
  }
  const cfg: ProxyConfig = { proxies, socket: resolveSocketOptions(f), ...resolveAccess(f) };
  if (f.api !== false) {
    const text = typeof f.api === 'string' ? f.api : '127.0.0.1:8474';
    const e = parseEndpoint(endpoint('--api', text), '--api');
    if ('path' in e) throw new UsageError('--api', text, 'must be HOST:PORT');
    cfg.api = e;
  }
  if ((f.cert !== undefined || f.key !== undefined || f.alpn !== undefined) && !f.tls)
    throw new UsageError(
      f.cert !== undefined ? '--cert' : f.key !== undefined ? '--key' : '--alpn',
      undefined,
      'needs --tls',
    );
  if (f.tls) {
    if ((f.cert === undefined) !== (f.key === undefined))
      throw new UsageError(
        f.cert === undefined ? '--key' : '--cert',
        undefined,
        `needs ${f.cert === undefined ? '--cert' : '--key'}`,
      );
    cfg.tls = f.cert !== undefined ? loadServerTls(f.cert, f.key!) : 'self-signed';
    if (f.alpn !== undefined) cfg.alpn = parseAlpn(f.alpn);
  }
  const tlsOnly: [string, unknown][] = [
    ['--ca', f.ca],
    ['--insecure', f.insecure],
    ['--servername', f.servername],
  ];
  if (!f.upstreamTls) {
    for (const [flag, v] of tlsOnly)
      if (v !== undefined) throw new UsageError(flag, undefined, 'needs --upstream-tls');
  } else {
    if (f.insecure && f.ca !== undefined)
      throw new UsageError('--insecure', undefined, 'cannot be used with --ca');
    cfg.upstreamTls = {
      ...(f.ca !== undefined ? { ca: loadCa(f.ca) } : {}),
      ...(f.insecure ? { insecure: true } : {}),
      ...(f.servername !== undefined ? { servername: f.servername } : {}),
    };
  }
  if (f.sendProxy !== undefined) {
    const v = f.sendProxy === true ? '1' : String(f.sendProxy).toLowerCase().replace(/^v/, '');
    if (v !== '1' && v !== '2') throw new UsageError('--send-proxy', String(f.sendProxy), 'must be v1 or v2');
    cfg.sendProxy = v === '1' ? 1 : 2;
  }
  if (f.proxyProtocol) cfg.proxyProtocol = true;
  if (f.udp) cfg.udp = true;
  if (f.maxConnections !== undefined)
    cfg.maxConnections = parseInteger('--max-connections', f.maxConnections, 1, 1_000_000);
  if (f.maxConnectionsPerIp !== undefined)
    cfg.maxConnectionsPerIp = parseInteger('--max-connections-per-ip', f.maxConnectionsPerIp, 1, 1_000_000);
  if (f.udp && (f.maxConnections !== undefined || f.maxConnectionsPerIp !== undefined))
    throw conflict(
      f.maxConnections !== undefined ? '--max-connections' : '--max-connections-per-ip',
      '--udp',
    );
  if (f.connectTimeout !== undefined)
    cfg.connectTimeoutMs = parseDuration('--connect-timeout', f.connectTimeout, 1, 3_600_000);
  if (f.idleTimeout !== undefined)
    cfg.idleTimeoutMs = parseDuration('--idle-timeout', f.idleTimeout, 1, 2_147_483_647);
  const trace = resolveTrace(f);
  if (trace) cfg.trace = trace;
  return cfg;
}
