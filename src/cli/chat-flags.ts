// echo-chat's flags: one program that listens (--listen) or connects, its transport flags
// (a listening side's and a connecting side's in one set) and their resolution into a config,
// refusing bad input with exit 2 naming the flag.

import type { Command } from 'commander';
import type { ClientTransport } from '../client/session.js';
import { AccessControl } from '../core/access.js';
import { parseDuration, parseHost, parseInteger, parsePort, parseTarget, UsageError } from '../core/parse.js';
import type { SocketOptions } from '../core/sockopts.js';
import {
  addListenerFlags,
  checkLogFlags,
  checkRedirects,
  type LogFlags,
  newProgram,
  redirectOption,
} from './common.js';
import {
  addFamilyFlags,
  addTraceFlags,
  conflict,
  type FamilyFlags,
  hostForFamily,
  listenArgs,
  resolveAccess,
  resolveFamily,
  resolveSocketOptions,
  type SocketOptionFlags,
  type TraceFlags,
} from './flag-groups.js';
import {
  type ClientTransportFlags,
  checkAddressRulesOnUnix,
  resolveClientTransport,
  resolveServerTransport,
  type ServerTransport,
  type ServerTransportFlags,
} from './transport.js';

export function addChatTransportFlags(cmd: Command): Command {
  return cmd
    .option('--unix <path>', 'a Unix-domain socket (with --listen: listen on it) instead of host and port')
    .option('--unix-mode <mode>', 'with --listen --unix: permissions of the socket file, octal (e.g. 0600)')
    .option('--tls', 'TLS (with --listen: --cert/--key, or a self-signed certificate made at start)')
    .option('--cert <file>', 'with --listen --tls: certificate (PEM)')
    .option('--key <file>', 'with --listen --tls: private key (PEM)')
    .option(
      '--handshake-timeout <dur>',
      'with --listen --tls: the TLS handshake must be done within this (default 10s)',
    )
    .option('--ca <file>', "with --tls: trust this CA (or the peer's own self-signed certificate), PEM")
    .option('--insecure', "with --tls: check nothing about the peer's certificate")
    .option('--servername <name>', 'with --tls: the name sent (SNI) and expected in the certificate')
    .option('--fingerprint <sha256>', 'with --tls: accept only a certificate with this SHA-256 fingerprint');
}

export type ChatTransportFlags = ServerTransportFlags & ClientTransportFlags;

export function resolveChatTransport(
  f: ChatTransportFlags,
  listen: boolean,
  ctx: {
    host: string;
    hostGiven: boolean;
    portGiven: boolean;
    targetGiven?: string;
    socket: SocketOptions;
    local?: string;
  },
): { server?: ServerTransport; client?: ClientTransport } {
  if (listen) {
    for (const [flag, v] of [
      ['--ca', f.ca],
      ['--insecure', f.insecure],
      ['--servername', f.servername],
      ['--fingerprint', f.fingerprint],
    ] as const) {
      if (v !== undefined)
        throw new UsageError(flag, undefined, 'checks the peer you connect to: not with --listen');
    }
    return { server: resolveServerTransport(f, { ...ctx, udp: false }) };
  }
  for (const [flag, v] of [
    ['--cert', f.cert],
    ['--key', f.key],
    ['--unix-mode', f.unixMode],
    ['--handshake-timeout', f.handshakeTimeout],
  ] as const) {
    if (v !== undefined) throw new UsageError(flag, undefined, 'needs --listen');
  }
  return {
    client: resolveClientTransport(f, {
      udp: false,
      targetGiven: ctx.targetGiven,
      socket: ctx.socket,
      local: ctx.local,
    }),
  };
}

export interface ChatFlags extends SocketOptionFlags, LogFlags, FamilyFlags, ChatTransportFlags, TraceFlags {
  allow?: string[];
  deny?: string[];
  listen?: boolean;
  keepOpen?: boolean;
  host?: string;
  port?: string;
  name?: string;
  connectTimeout: string;
  retry: string;
  /** -w: nc's connect and idle timeout; refused here, naming --connect-timeout */
  w?: string;
}

export function buildChatProgram() {
  const cmd = newProgram(
    'echo-chat',
    'Chat between two terminals over one TCP connection (nc can be the other side)',
  )
    .argument(
      '[host]',
      'peer to connect to (HOST, HOST:PORT, [v6]:PORT); with --listen, PORT or HOST PORT as in nc -l',
    )
    .argument('[port]', 'peer port')
    .option('-l, --listen', 'wait for one peer instead of connecting')
    .addOption(redirectOption('-w <seconds>'))
    .option('-k, --keep-open', 'with --listen: when a peer leaves (or resets), wait for the next one')
    .option('-H, --host <addr>', 'with --listen: address to listen on (default 127.0.0.1)')
    .option(
      '-p, --port <port>',
      'port: with --listen, where to listen (0 picks one and prints it; default 7007)',
    )
    .option('--name <name>', 'prefix your lines with `name: `')
    .option('--connect-timeout <dur>', 'give up on a connect after this long', '10s')
    .option('--retry <n>', 'retry a refused or timed-out connect, with backoff', '0');
  addFamilyFlags(cmd);
  addChatTransportFlags(cmd);
  addTraceFlags(cmd);
  addListenerFlags(cmd);
  cmd.addHelpText(
    'after',
    `
Examples:
  terminal 1:  echo-chat --listen --port 7008   (or as nc: echo-chat -l 7008)
  terminal 2:  echo-chat 127.0.0.1 7008        (or 127.0.0.1:7008)
  or with nc:  nc 127.0.0.1 7008   /   ncat -l 7008  +  echo-chat 127.0.0.1 7008
  dead peers:  echo-chat --keepalive 10s --keepalive-interval 2s --keepalive-count 3 HOST PORT
  TLS:         echo-chat --listen --tls   +   echo-chat --tls --fingerprint SHA256 127.0.0.1 7007
  Unix:        echo-chat --listen --unix /tmp/chat.sock   +   echo-chat --unix /tmp/chat.sock

Piped, bytes pass raw both ways; after the peer's FIN the rest of stdin is still sent, then
the connection is closed (as ncat does).`,
  );
  return cmd;
}

/** Validate every flag up front; throws UsageError naming the flag. */
export function resolveChatConfig(hostArg: string | undefined, portArg: string | undefined, f: ChatFlags) {
  checkLogFlags(f);
  checkRedirects(f, [
    [
      'w',
      '-w',
      (v) =>
        `is nc's connect and idle timeout; echo-chat has no idle timeout (an idle conversation is fine): for the connect type --connect-timeout ${/^\d+(\.\d+)?$/.test(v) ? `${v}s` : v}`,
    ],
  ]);
  const common = {
    sock: resolveSocketOptions(f),
    family: resolveFamily(f),
    connectTimeoutMs: parseDuration('--connect-timeout', f.connectTimeout, 1),
    retries: parseInteger('--retry', f.retry, 0, 1000),
  };
  if (f.listen) {
    const given = listenArgs(f, hostArg, portArg);
    const { allow, deny } = resolveAccess(f);
    const host = parseHost(
      given.hostFlag,
      hostForFamily(common.family, given.host, given.hostFlag, { names: false }) ?? '127.0.0.1',
    );
    const { server } = resolveChatTransport(f, true, {
      host,
      hostGiven: given.host !== undefined,
      portGiven: given.port !== undefined,
      socket: common.sock,
    });
    if (server!.path !== undefined && common.family)
      throw conflict(common.family === 4 ? '-4' : '-6', '--unix');
    checkAddressRulesOnUnix(server!, f);
    return {
      ...common,
      connect: undefined,
      transport: server!,
      listen: {
        host,
        port: parsePort('--port', given.port ?? '7007'),
        access: new AccessControl(allow, deny),
      },
    };
  }
  if (f.keepOpen) throw new UsageError('--keep-open', undefined, 'needs --listen');
  if (f.host !== undefined)
    throw new UsageError('--host', f.host, 'needs --listen (give the peer as HOST PORT)');
  if (f.allow?.length || f.deny?.length)
    throw new UsageError(f.allow?.length ? '--allow' : '--deny', undefined, 'needs --listen');
  const { client } = resolveChatTransport(f, false, {
    host: '',
    hostGiven: false,
    portGiven: false,
    targetGiven:
      hostArg !== undefined
        ? 'a HOST argument'
        : portArg !== undefined || f.port !== undefined
          ? '--port'
          : undefined,
    socket: common.sock,
    local: common.family ? `-${common.family}` : undefined,
  });
  if (client!.path !== undefined) {
    return {
      ...common,
      listen: undefined,
      clientTransport: client!,
      connect: { host: 'localhost', port: 0 },
    };
  }
  if (hostArg === undefined) throw new UsageError('HOST PORT', undefined, 'give both, or use --listen');
  if (portArg !== undefined && f.port !== undefined) throw conflict('--port', 'a PORT argument');
  const connect = parseTarget(hostArg, portArg ?? f.port, { host: '127.0.0.1' });
  hostForFamily(common.family, connect.host, 'HOST');
  return { ...common, listen: undefined, clientTransport: client!, connect };
}
