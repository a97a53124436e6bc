// echo-server's flags: the program, its options and their help.

import type { Command } from 'commander';
import { Option } from 'commander';
import { DEFAULT_HOST, DEFAULT_PORT } from '../server/tcp-server.js';
import { addListenerFlags, type LogFlags, newProgram, redirectOption } from './common.js';
import { addTraceFlags, type FamilyFlags, type SocketOptionFlags, type TraceFlags } from './flag-groups.js';
import { addServerTransportFlags, type ServerTransportFlags } from './transport.js';
import { addWsServerFlags, type WsServerFlags } from './ws-flags.js';

export function buildServerProgram(): Command {
  const cmd = newProgram('echo-server', 'TCP (RFC 862) and UDP echo server on real sockets')
    .argument('[addr]', 'PORT to listen on (as nc -l PORT), or HOST followed by PORT (as nc -l HOST PORT)')
    .argument('[port]', 'after HOST: the port')
    .option(
      '-H, --host <addr>',
      `address to listen on (default ${DEFAULT_HOST}; 0.0.0.0 or :: opens it to the network, :: to both IPv4 and IPv6)`,
    )
    .option(
      '-p, --port <port>',
      `port to listen on (default ${DEFAULT_PORT}); 0 picks a free one and prints it`,
    )
    .option('-4', 'IPv4: listen on 127.0.0.1 by default; an IPv6 --host is refused')
    .option('-6', 'IPv6: listen on ::1 by default; an IPv4 --host is refused')
    .option('-l, --listen', 'accepted as in nc -l (echo-server always listens)')
    .option(
      '-k, --keep-open',
      'accepted as in nc -k (echo-server always keeps listening when a client leaves)',
    )
    .addOption(redirectOption('-m <value>'))
    .addOption(redirectOption('-w <seconds>'))
    .addOption(
      new Option('--mode <mode>', 'concurrency model')
        .choices(['evented', 'iterative', 'workers', 'fork'])
        .default('evented'),
    )
    .option('-u, --udp', 'UDP echo instead of TCP')
    .option('--workers <n>', 'workers mode: number of worker processes (default: CPU count)')
    .option(
      '--exclusive',
      'workers mode: each worker opens its own listening socket (needs --reuse-port to share)',
    )
    .option('--max-children <n>', 'fork mode: at most this many children; later clients wait')
    .option('--max-connections <n>', 'close new connections at once beyond this many open ones')
    .option(
      '--max-connections-per-ip <n>',
      'close new connections from an address beyond this many open ones',
    )
    .option('--idle-timeout <dur>', 'close a connection idle this long (e.g. 30s)')
    .option(
      '--min-rate <bytes>',
      'close a connection whose client sends less than this per second (e.g. 100 or 1k), judged per --min-rate-window: stops a slow drip',
    )
    .option('--min-rate-window <dur>', 'with --min-rate: the window the rate is judged over (default 10s)')
    .option('--max-lifetime <dur>', 'close every connection this long after it was accepted (e.g. 1h)')
    .option(
      '--grace <dur>',
      'TCP: on SIGINT/SIGTERM, how long in-flight echoes may take before connections are cut (default 5s)',
    )
    .option(
      '--rate-limit <n>',
      'UDP: datagrams per second allowed per source (token bucket; 0 = no limit; default 1000)',
    )
    .option('--rate-burst <n>', 'UDP: burst size per source (default 200)')
    .option('--instance-name <name>', 'name of this instance in every log line and metric (default HOST:PID)')
    .option(
      '--banner [text]',
      'send a line to each client on connect, before any echo (default: the instance name); off by default: RFC 862 echo stays byte-exact',
    )
    .option(
      '--metrics <[host:]port>',
      'serve Prometheus metrics at http://HOST:PORT/metrics (host 127.0.0.1 unless given; port 0 picks one and prints it)',
    )
    .option(
      '--fault <spec>',
      'misbehave on purpose (repeatable): latency=DUR[,jitter=DUR] bandwidth=RATE slice=SIZE[,delay=DUR] stall-after=SIZE close-after=SIZE[,how=fin|rst] reset-on-connect blackhole corrupt=P accept-delay=DUR; UDP: latency corrupt drop=P duplicate=P reorder[=P]; each may end in ,p=FRACTION or ,every=N',
      (v: string, prev: string[] = []) => [...prev, v],
    );
  addServerTransportFlags(cmd);
  addWsServerFlags(cmd);
  addTraceFlags(cmd);
  addListenerFlags(cmd);
  cmd.addHelpText(
    'after',
    `
Examples:
  echo-server                          listen on 127.0.0.1:7007, evented
  echo-server --port 0                 pick a free port and print it
  echo-server -l 7007                  as nc -l 7007 (also: echo-server 7007, -l -p 7007, -k)
  echo-server -6 7007                  on [::1]:7007
  echo-server --mode iterative         one client at a time, as a plain accept() loop
  echo-server --mode workers --workers 4
  echo-server --mode fork --max-children 50
  echo-server --udp --port 7007
  echo-server --tls                    TLS with a self-signed certificate; its fingerprint is printed
  echo-server --tls --cert c.pem --key k.pem --mode workers
  echo-server --unix /tmp/echo.sock --unix-mode 0660
  echo-server --proxy-protocol         behind HAProxy (send-proxy / send-proxy-v2)
  echo-server --host :: --ipv6-only    IPv6 clients only
  echo-server --fault latency=50ms,jitter=10ms --fault close-after=64k,how=rst,p=0.05
  echo-server --no-reuse-addr --verbose   show what the kernel reports for each option
  echo-server --host 0.0.0.0 --allow 10.0.0.0/8 --max-connections-per-ip 20
  echo-server --ws /echo --tls         WebSocket echo at wss://127.0.0.1:7007/echo`,
  );
  return cmd;
}

export interface ServerFlags
  extends SocketOptionFlags,
    LogFlags,
    ServerTransportFlags,
    TraceFlags,
    FamilyFlags,
    WsServerFlags {
  listen?: boolean;
  keepOpen?: boolean;
  /** -m: echo-client's --message; refused here, naming --mode */
  m?: string;
  /** -w: nc's client timeout; refused here, naming --idle-timeout */
  w?: string;
  host?: string;
  port?: string;
  mode: string;
  udp?: boolean;
  workers?: string;
  exclusive?: boolean;
  maxChildren?: string;
  maxConnections?: string;
  maxConnectionsPerIp?: string;
  allow?: string[];
  deny?: string[];
  idleTimeout?: string;
  minRate?: string;
  minRateWindow?: string;
  maxLifetime?: string;
  grace?: string;
  rateLimit?: string;
  rateBurst?: string;
  fault?: string[];
  metrics?: string;
  instanceName?: string;
  banner?: boolean | string;
}
