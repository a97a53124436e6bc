// echo-server's WebSocket flags (--ws and --ws-*): their options and their resolution into the
// config's `app: 'ws'` and `ws` options.

import type { Command } from 'commander';
import { parseSize, UsageError } from '../core/parse.js';
import type { ServerConfig } from '../server/config.js';
import { type WebSocketOptions, WS_REFUSED_FAULTS } from '../server/websocket.js';
import { conflict } from './flag-groups.js';

export interface WsServerFlags {
  ws?: boolean | string;
  wsMaxMessage?: string;
  wsCompress?: boolean;
  wsProtocol?: string[];
  wsOrigin?: string[];
}

export function addWsServerFlags(cmd: Command): void {
  cmd
    .option(
      '--ws [path]',
      'WebSocket echo: answer HTTP upgrades (on PATH only, e.g. /echo; default any path) and echo every message as it came; a plain GET gets 426',
    )
    .option('--ws-max-message <size>', 'with --ws: close with 1009 on a larger message (default 16M)')
    .option('--ws-compress', 'with --ws: permessage-deflate when the client offers it (off by default)')
    .option(
      '--ws-protocol <name...>',
      'with --ws: subprotocols accepted (the first the client offers); default: the first it offers',
    )
    .option(
      '--ws-origin <origin...>',
      "with --ws: browser origins allowed (e.g. https://example.org, or '*' for any); default: clients without an Origin header and pages from this machine (localhost, loopback); others get 403",
    );
}

/** The config's WebSocket part; throws UsageError naming the flag. */
export function resolveWs(
  f: WsServerFlags & { udp?: boolean; banner?: boolean | string },
  faults: { kind: string }[],
): Pick<ServerConfig, 'app' | 'ws'> {
  if (f.ws === undefined) {
    for (const [flag, given] of [
      ['--ws-max-message', f.wsMaxMessage],
      ['--ws-compress', f.wsCompress],
      ['--ws-protocol', f.wsProtocol],
      ['--ws-origin', f.wsOrigin],
    ] as const)
      if (given !== undefined) throw new UsageError(flag, undefined, 'needs --ws');
    return {};
  }
  if (f.udp) throw conflict('--ws', '--udp (WebSocket runs over TCP)');
  if (f.banner !== undefined) throw conflict('--banner', '--ws (a banner would come before the HTTP answer)');
  for (const x of faults)
    if ((WS_REFUSED_FAULTS as readonly string[]).includes(x.kind))
      throw conflict(`--fault ${x.kind}`, '--ws (faults apply per message: latency, corrupt, close-after)');
  const path = typeof f.ws === 'string' ? f.ws : undefined;
  if (path !== undefined && !/^\/[\x21-\x7e]*$/.test(path))
    throw new UsageError('--ws', path, 'is a path starting with / (printable, no spaces)');
  for (const p of f.wsProtocol ?? [])
    if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(p))
      throw new UsageError('--ws-protocol', p, "is an HTTP token (letters, digits, !#$%&'*+-.^_`|~)");
  for (const o of f.wsOrigin ?? [])
    if (o !== '*' && o !== 'null' && !/^[a-z][a-z0-9+.-]*:\/\/[^/\s]+$/i.test(o))
      throw new UsageError('--ws-origin', o, "is scheme://host[:port] (as browsers send it), 'null' or '*'");
  const ws: WebSocketOptions = {
    ...(path !== undefined ? { path } : {}),
    ...(f.wsMaxMessage !== undefined
      ? { maxMessage: parseSize('--ws-max-message', f.wsMaxMessage, 1, 1024 ** 3) }
      : {}),
    ...(f.wsCompress ? { compress: true } : {}),
    ...(f.wsProtocol?.length ? { protocols: f.wsProtocol } : {}),
    ...(f.wsOrigin?.length ? { origins: f.wsOrigin } : {}),
  };
  return { app: 'ws', ws };
}

/** echo-client bench --ws [PATH]: the path upgraded, or undefined without --ws. */
export function resolveBenchWs(f: {
  ws?: boolean | string;
  udp?: boolean;
  mode: string;
}): { path: string } | undefined {
  if (f.ws === undefined) return undefined;
  if (f.udp) throw conflict('--ws', '--udp (WebSocket runs over TCP)');
  if (f.mode === 'stream') throw conflict('--ws', '--mode stream (a WebSocket bench is pingpong or connect)');
  const path = typeof f.ws === 'string' ? f.ws : '/';
  if (!/^\/[\x21-\x7e]*$/.test(path))
    throw new UsageError('--ws', path, 'is a path starting with / (printable, no spaces)');
  return { path };
}
