// The transport flags: Unix-domain sockets, TLS, the PROXY protocol and dual stack, for the
// commands that listen (echo-server, echo-chat --listen) and those that connect (echo-client,
// its bench, echo-chat). Each combination that cannot work is refused here, naming both flags.

import type { Command } from 'commander';
import type { ClientTransport } from '../client/session.js';
import { type Cidr, parseCidr } from '../core/access.js';
import { parseDuration, UsageError } from '../core/parse.js';
import type { SocketOptions } from '../core/sockopts.js';
import { loadCa, loadServerTls, parseFingerprint, type ServerTls } from '../core/tls.js';
import { conflict } from './flag-groups.js';

// --- listening side -------------------------------------------------------------------------

export function addServerTransportFlags(cmd: Command, { proxy = true } = {}): Command {
  cmd
    .option(
      '--unix <path>',
      'listen on a Unix-domain socket instead of --host/--port (@name: a Linux abstract socket, no file)',
    )
    .option('--unix-mode <mode>', 'with --unix: permissions of the socket file, octal (e.g. 0660)')
    .option(
      '--ipv6-only',
      'with an IPv6 --host such as ::, refuse IPv4 clients (IPV6_V6ONLY); :: alone takes both',
    )
    .option(
      '--tls',
      'TLS: with --cert and --key, or a self-signed certificate made at start (its SHA-256 fingerprint is printed)',
    )
    .option('--cert <file>', 'with --tls: certificate (PEM), chain included')
    .option('--key <file>', 'with --tls: private key (PEM) of --cert')
    .option('--alpn <list>', 'with --tls: ALPN protocols to accept, comma-separated (e.g. echo,h2)');
  if (proxy) {
    cmd.option(
      '--proxy-protocol',
      'each connection starts with a PROXY protocol v1 or v2 header (HAProxy send-proxy): its client address is logged and used by --allow/--deny and --max-connections-per-ip',
    );
    cmd.option(
      '--proxy-from <cidr>',
      'with --proxy-protocol: the proxies whose headers are believed, CIDR[,CIDR…] (repeatable; default 127.0.0.0/8,::1/128); any other peer is refused before it is read',
      (v: string, prev: string[] = []) => [...prev, v],
    );
    cmd.option(
      '--proxy-timeout <dur>',
      'with --proxy-protocol: the header must have come within this, or the connection is closed (default --handshake-timeout if given, else 3s)',
    );
  }
  return cmd.option(
    '--handshake-timeout <dur>',
    'with --tls: the TLS handshake must be done within this (default 10s); with --proxy-protocol: the PROXY header too, unless --proxy-timeout',
  );
}

export interface ServerTransportFlags {
  alpn?: string;
  unix?: string;
  unixMode?: string;
  ipv6Only?: boolean;
  tls?: boolean;
  cert?: string;
  key?: string;
  proxyProtocol?: boolean;
  proxyFrom?: string[];
  proxyTimeout?: string;
  handshakeTimeout?: string;
}

export interface ServerTransport {
  path?: string;
  unixMode?: number;
  ipv6Only?: boolean;
  /** --tls with --cert/--key, read and checked; with --tls alone: undefined and `selfSigned` */
  tls?: ServerTls;
  alpn?: string[];
  selfSigned?: boolean;
  proxyProtocol?: boolean;
  proxyFrom?: Cidr[];
  proxyTimeoutMs?: number;
  handshakeTimeoutMs?: number;
}

/** Socket options that belong to TCP: refused with --unix, naming both flags. */
export function tcpOnlyOptions(o: SocketOptions): [string, unknown][] {
  return [
    ['--keepalive', o.keepAlive],
    ['--user-timeout', o.userTimeoutMs],
    ['--no-delay', o.noDelay],
    ['--linger', o.lingerMs],
    ['--reuse-port', o.reusePort],
    [o.reuseAddr === false ? '--no-reuse-addr' : '--reuse-addr', o.reuseAddr],
  ];
}

export function resolveServerTransport(
  f: ServerTransportFlags,
  ctx: { host: string; hostGiven: boolean; portGiven: boolean; udp: boolean; socket: SocketOptions },
): ServerTransport {
  const t: ServerTransport = {};
  if (f.unix !== undefined) {
    if (f.unix === '' || f.unix === '@') throw new UsageError('--unix', f.unix, 'needs a path (or @name)');
    if (Buffer.byteLength(f.unix) > 107)
      throw new UsageError('--unix', f.unix, 'is longer than the 107 bytes a Unix socket address holds');
    if (ctx.udp)
      throw new UsageError(
        '--unix',
        f.unix,
        "cannot be used with --udp: Node's dgram module has no Unix datagram sockets (socat UNIX-RECVFROM has)",
      );
    if (ctx.hostGiven) throw conflict('--unix', '--host');
    if (ctx.portGiven) throw conflict('--unix', '--port');
    if (f.ipv6Only) throw conflict('--ipv6-only', '--unix');
    for (const [flag, v] of tcpOnlyOptions(ctx.socket)) if (v !== undefined) throw conflict(flag, '--unix');
    t.path = f.unix;
  }
  if (f.unixMode !== undefined) {
    if (f.unix === undefined) throw new UsageError('--unix-mode', f.unixMode, 'needs --unix');
    if (f.unix.startsWith('@'))
      throw new UsageError(
        '--unix-mode',
        f.unixMode,
        'an abstract socket (@name) has no file to set permissions on',
      );
    if (!/^0?[0-7]{3}$/.test(f.unixMode))
      throw new UsageError('--unix-mode', f.unixMode, 'must be an octal mode such as 0660 or 600');
    t.unixMode = Number.parseInt(f.unixMode, 8);
  }
  if (f.ipv6Only) {
    if (!ctx.host.includes(':'))
      throw new UsageError('--ipv6-only', undefined, `needs an IPv6 --host such as :: (not ${ctx.host})`);
    t.ipv6Only = true;
  }
  if ((f.cert !== undefined || f.key !== undefined) && !f.tls)
    throw new UsageError(f.cert !== undefined ? '--cert' : '--key', undefined, 'needs --tls');
  if (f.tls) {
    if (ctx.udp) throw conflict('--tls', '--udp (there is no DTLS here)');
    if (f.cert !== undefined && f.key === undefined) throw new UsageError('--cert', f.cert, 'needs --key');
    if (f.key !== undefined && f.cert === undefined) throw new UsageError('--key', f.key, 'needs --cert');
    if (f.cert !== undefined) t.tls = loadServerTls(f.cert, f.key!);
    else t.selfSigned = true;
  }
  if (f.alpn !== undefined) {
    if (!f.tls) throw new UsageError('--alpn', f.alpn, 'needs --tls');
    t.alpn = parseAlpn(f.alpn);
  }
  if (f.proxyProtocol) {
    if (ctx.udp) throw conflict('--proxy-protocol', '--udp');
    t.proxyProtocol = true;
  }
  if (f.proxyFrom !== undefined) {
    const raw = f.proxyFrom.join(',');
    if (!f.proxyProtocol) throw new UsageError('--proxy-from', raw, 'needs --proxy-protocol');
    // a Unix-socket peer has no address: the socket file's mode (--unix-mode) says who may connect
    if (f.unix !== undefined)
      throw conflict(
        '--proxy-from',
        '--unix (a Unix-socket peer has no address; --unix-mode says who may connect)',
      );
    const list = raw.split(',').filter((c) => c.trim() !== '');
    if (list.length === 0) throw new UsageError('--proxy-from', raw, 'needs at least one address or CIDR');
    t.proxyFrom = list.map((c) => parseCidr('--proxy-from', c));
  }
  if (f.proxyTimeout !== undefined) {
    if (!f.proxyProtocol) throw new UsageError('--proxy-timeout', f.proxyTimeout, 'needs --proxy-protocol');
    t.proxyTimeoutMs = parseDuration('--proxy-timeout', f.proxyTimeout, 1, 3_600_000);
  }
  if (f.handshakeTimeout !== undefined) {
    if (!f.tls && !f.proxyProtocol)
      throw new UsageError('--handshake-timeout', f.handshakeTimeout, 'needs --tls or --proxy-protocol');
    t.handshakeTimeoutMs = parseDuration('--handshake-timeout', f.handshakeTimeout, 1, 3_600_000);
  }
  return t;
}

/** --allow/--deny and per-address limits need a client address: a Unix client has none (PROXY gives one). */
export function checkAddressRulesOnUnix(
  t: ServerTransport,
  f: { allow?: string[]; deny?: string[]; maxConnectionsPerIp?: string },
): void {
  if (t.path === undefined || t.proxyProtocol) return;
  const rules: [string, boolean][] = [
    ['--allow', (f.allow?.length ?? 0) > 0],
    ['--deny', (f.deny?.length ?? 0) > 0],
    ['--max-connections-per-ip', f.maxConnectionsPerIp !== undefined],
  ];
  for (const [flag, given] of rules) {
    if (given)
      throw new UsageError(
        flag,
        undefined,
        'cannot be used with --unix: a Unix-socket client has no IP address (with --proxy-protocol the header gives one)',
      );
  }
}

// --- connecting side ------------------------------------------------------------------------

export function addClientTransportFlags(cmd: Command, { proxy = true } = {}): Command {
  cmd
    .option('--unix <path>', 'connect to a Unix-domain socket instead of HOST PORT (@name: abstract, Linux)')
    .option(
      '--tls',
      "TLS: the server's certificate is checked against the system CAs (or --ca) and the host name",
    )
    .option('--ca <file>', "with --tls: trust this CA (or the server's own self-signed certificate), PEM")
    .option(
      '--insecure',
      "with --tls: check nothing about the server's certificate (anyone on the path can read and change the data)",
    )
    .option('--servername <name>', 'with --tls: the name sent (SNI) and expected in the certificate')
    .option(
      '--fingerprint <sha256>',
      'with --tls: accept only a certificate with this SHA-256 fingerprint (as echo-server --tls prints it), whoever signed it',
    )
    .option('--alpn <list>', 'with --tls: ALPN protocols to offer, comma-separated, in order of preference');
  if (proxy) {
    cmd.option(
      '--send-proxy <version>',
      "start with a PROXY protocol header (v1 or v2) naming this connection's addresses, as HAProxy's send-proxy does",
    );
  }
  return cmd;
}

export interface ClientTransportFlags {
  unix?: string;
  tls?: boolean;
  ca?: string;
  insecure?: boolean;
  servername?: string;
  fingerprint?: string;
  sendProxy?: string;
  alpn?: string;
}

/** What named a TCP target on the command line (refused with --unix): a HOST or PORT argument, or --port. */
export function targetNamedBy(
  hostArg: string | undefined,
  portArg: string | undefined,
  portFlag: string | undefined,
): string | undefined {
  if (hostArg !== undefined) return 'a HOST argument';
  if (portArg !== undefined) return 'a PORT argument';
  return portFlag !== undefined ? '--port' : undefined;
}

export function resolveClientTransport(
  f: ClientTransportFlags,
  ctx: { udp: boolean; targetGiven: string | undefined; socket: SocketOptions; local: string | undefined },
): ClientTransport {
  const t: ClientTransport = {};
  if (f.unix !== undefined) {
    if (f.unix === '' || f.unix === '@') throw new UsageError('--unix', f.unix, 'needs a path (or @name)');
    if (ctx.udp)
      throw new UsageError(
        '--unix',
        f.unix,
        "cannot be used with --udp: Node's dgram module has no Unix datagram sockets",
      );
    if (ctx.targetGiven) throw conflict('--unix', ctx.targetGiven);
    if (ctx.local) throw conflict('--unix', ctx.local);
    for (const [flag, v] of tcpOnlyOptions(ctx.socket)) if (v !== undefined) throw conflict(flag, '--unix');
    t.path = f.unix;
  }
  const tlsOnly: [string, unknown][] = [
    ['--ca', f.ca],
    ['--insecure', f.insecure],
    ['--servername', f.servername],
    ['--fingerprint', f.fingerprint],
    ['--alpn', f.alpn],
  ];
  if (!f.tls) {
    for (const [flag, v] of tlsOnly)
      if (v !== undefined) throw new UsageError(flag, undefined, 'needs --tls');
  } else {
    if (ctx.udp) throw conflict('--tls', '--udp (there is no DTLS here)');
    if (f.insecure && f.ca !== undefined) throw conflict('--insecure', '--ca');
    if (f.insecure && f.fingerprint !== undefined) throw conflict('--insecure', '--fingerprint');
    if (f.servername !== undefined && (f.servername === '' || /[\s/]/.test(f.servername)))
      throw new UsageError('--servername', f.servername, 'must be a host name');
    t.tls = {
      ...(f.ca !== undefined ? { ca: loadCa(f.ca) } : {}),
      ...(f.insecure ? { insecure: true } : {}),
      ...(f.servername !== undefined ? { servername: f.servername } : {}),
      ...(f.fingerprint !== undefined
        ? { fingerprint: parseFingerprint('--fingerprint', f.fingerprint) }
        : {}),
      ...(f.alpn !== undefined ? { alpn: parseAlpn(f.alpn) } : {}),
    };
  }
  if (f.sendProxy !== undefined) {
    if (ctx.udp) throw conflict('--send-proxy', '--udp');
    const v = f.sendProxy.toLowerCase().replace(/^v/, '');
    if (v !== '1' && v !== '2') throw new UsageError('--send-proxy', f.sendProxy, 'must be v1 or v2');
    t.sendProxy = v === '1' ? 1 : 2;
  }
  return t;
}

/** `echo,h2` → ['echo', 'h2']: each 1–255 printable bytes. */
export function parseAlpn(raw: string): string[] {
  const list = raw.split(',').map((x) => x.trim());
  for (const p of list) {
    if (!/^[\x21-\x7e]{1,255}$/.test(p))
      throw new UsageError(
        '--alpn',
        raw,
        'is a comma-separated list of protocol names (1–255 printable bytes each)',
      );
  }
  return list;
}

/** The loud line --insecure earns. */
export const INSECURE_WARNING =
  "--insecure: the server's certificate is NOT checked (neither who signed it nor its name): the connection is encrypted, but anyone on the path can impersonate the server";
