// The one table of errors people meet with sockets: code → what happened, what to do.
// Every command and every echo-lab scenario explains errors through explainError(), so a
// message reads the same wherever it appears.

import { formatAddress } from './parse.js';

export interface ErrnoEntry {
  /** What the kernel (or Node) is telling you, in one line. */
  meaning: string;
  /** What to do about it. */
  hint: string;
  /** where the same code means something else over UDP */
  udp?: { meaning?: string; hint?: string };
  /** …or on a Unix-domain socket (the address is a path) */
  unix?: { meaning?: string; hint?: string };
  /** a hint that fits a failed connect() better than the general one */
  connect?: string;
  /** hints that fit one command better than the general one */
  client?: string;
  chat?: string;
  server?: string;
}

/** Who is explaining: the command, and the protocol when the error does not say. */
export interface ErrorContext {
  role?: 'server' | 'client' | 'chat';
  proto?: 'tcp' | 'udp' | 'unix';
}

export const ERRNO_TABLE: Readonly<Record<string, ErrnoEntry>> = {
  EADDRINUSE: {
    meaning:
      'another socket holds that address and port: a listening server, or any connection still on the port (TIME_WAIT, FIN_WAIT2, CLOSE_WAIT, or one a child process kept) unless both the old and the new socket set SO_REUSEADDR',
    hint: 'Stop the other process (ss -tanp | grep PORT), pick another port, or use --port 0.',
    udp: {
      meaning:
        'another UDP socket is bound to that address and port (two can share it only when both set SO_REUSEADDR or SO_REUSEPORT)',
      hint: 'Stop the other process (ss -uanp), pick another port, or use --port 0.',
    },
    client: 'Another socket holds that local port: choose another --local-port, or leave it out.',
    unix: {
      meaning:
        'a file exists at that path: a server listening there, or the socket file of one that is gone (a Unix socket file outlives a killed process)',
      hint: 'If a connect to it is refused nobody listens: remove the file (echo-server --unix does that itself, and says so). Otherwise stop the other server or choose another path.',
    },
  },
  EADDRNOTAVAIL: {
    meaning:
      'that local address and port cannot be used: the address is not on this machine, no ephemeral port is free, or (connect from a fixed --local-port) the same pair of ports is still in TIME_WAIT and TCP timestamps are off',
    hint: 'Bind an address this host owns (ip addr), leave --local-port out, or wait out TIME_WAIT (60 s).',
  },
  EACCES: {
    meaning: 'permission denied: ports below 1024 need root or CAP_NET_BIND_SERVICE, or a route prohibits it',
    hint: 'Use a port above 1023 (the default is 7007).',
    connect:
      'A "prohibit" route in this host\'s table forbids that address (ip route get ADDRESS); over UDP, a broadcast address needs SO_BROADCAST.',
  },
  EPERM: {
    meaning: 'the operation is not permitted for this process (a capability is missing)',
    hint: 'Run with the needed capability, or choose an option that does not need it.',
  },
  ECONNREFUSED: {
    meaning: 'nothing is listening on that port (its kernel answered the SYN with RST)',
    hint: 'Check the host and port, and that the server is running.',
    udp: {
      meaning: 'nothing is listening on that UDP port (its kernel answered with ICMP port unreachable)',
      hint: 'Check the host and port, and that the server runs with --udp.',
    },
    client: 'Start echo-server (or another echo server) there, or check the host and port.',
    chat: 'Start the other side first (echo-chat --listen, nc -l), or check the host and port.',
    unix: {
      meaning:
        'the socket file exists but nothing accepts on it: its server is gone and left the file (stale), or its accept queue is full',
      hint: 'Start the server (echo-server --unix removes a stale file itself).',
    },
  },
  ENOENT: {
    meaning: 'no such file or directory',
    hint: 'Check the path.',
    unix: {
      meaning: 'no socket file at that path: no server has listened there (or it was removed)',
      hint: 'Check the path, and that the server runs with --unix on it.',
    },
  },
  ECONNRESET: {
    meaning:
      'the peer reset the connection (RST): it closed with data of ours unread, set SO_LINGER 0, had no socket for this connection any more, or lost its state (a reboot); a process that crashes sends FIN, not RST',
    hint: 'Data in flight may be lost; reconnect if you need to go on.',
  },
  EPIPE: {
    meaning:
      'write to a connection the peer has already closed (its kernel answered an earlier write with RST)',
    hint: 'Stop writing once the peer has closed; watch for EOF before sending more.',
  },
  EINTR: {
    meaning:
      'a signal was caught while the call waited, and the call was not restarted: its handler was installed without SA_RESTART, or the call is one the kernel never restarts (poll, epoll_wait, select, a socket with SO_RCVTIMEO/SO_SNDTIMEO); a send() or recv() that had already moved bytes returns that count instead',
    hint: 'Call it again (C code loops on EINTR); libuv retries it itself, so Node code never meets it.',
  },
  ETIMEDOUT: {
    meaning:
      'no answer in time: the SYN or data was never acknowledged (full backlog, silent host, dead peer, keepalive or user timeout)',
    hint: 'Check that the host is up and reachable; raise the timeout if the path is slow.',
  },
  EHOSTUNREACH: {
    meaning:
      'no route to that host: a router or this host said it cannot be reached (ICMP host unreachable or administratively prohibited, an "unreachable" route, or ARP got no answer)',
    hint: 'Check the address and that the host is up and on the network.',
  },
  ENETUNREACH: {
    meaning:
      'the network is unreachable: this host has no route to that address, or a router answered ICMP net unreachable',
    hint: 'Check the address and the routing table (ip route).',
  },
  ENODEV: {
    meaning: 'no such network interface (the zone after % in an IPv6 address, fe80::1%eth0, names one)',
    hint: 'List the interfaces with ip link and use one of their names.',
  },
  ENOTFOUND: {
    meaning: 'the host name could not be resolved (DNS or /etc/hosts has no such name)',
    hint: 'Check the spelling, or use an IP address such as 127.0.0.1.',
  },
  EAI_AGAIN: {
    meaning: 'name resolution failed for now (no DNS answer)',
    hint: 'Use an IP address, or try again when DNS is reachable.',
  },
  EMFILE: {
    meaning: 'this process has run out of file descriptors (every socket is one)',
    hint: 'Raise the limit (ulimit -n) or lower --max-connections.',
  },
  ENFILE: {
    meaning: 'the whole system has run out of file descriptors',
    hint: 'Close other programs or raise fs.file-max.',
  },
  EINVAL: {
    meaning:
      'the kernel rejected an argument (an option value out of range, or a blackhole route on connect)',
    hint: 'Check the option values and the route to the host.',
  },
  EMSGSIZE: {
    meaning: 'the datagram is larger than the socket or the path allows',
    hint: 'Send at most 65507 bytes over IPv4 (65527 over IPv6), or less than the path MTU to avoid fragments.',
  },
  ENOBUFS: {
    meaning:
      'the kernel could not get memory for the operation; a full TCP send buffer never gives this, it gives EAGAIN or blocks; a UDP datagram meeting a full interface queue is dropped silently on Linux (ENOBUFS only with IP_RECVERR set)',
    hint: 'Send more slowly; check the system memory.',
  },
  ENOPROTOOPT: {
    meaning: 'this platform does not have that socket option',
    hint: 'Leave the option out on this platform.',
  },
  ECONNABORTED: {
    meaning: 'the connection was aborted by this host before it was accepted',
    hint: 'The client gave up; it can simply reconnect.',
  },
  ERR_SOCKET_CLOSED: {
    meaning: 'the socket was already closed when it was used',
    hint: 'This is a bug in the caller: do not use a socket after close.',
  },
  ERR_STREAM_DESTROYED: {
    meaning: 'write after the connection was destroyed',
    hint: 'Stop writing once the connection has closed.',
  },
  ERR_STREAM_WRITE_AFTER_END: {
    meaning: 'write after this side already half-closed (sent FIN)',
    hint: 'Do not write after end().',
  },
  ERR_SOCKET_BAD_PORT: {
    meaning: 'the port is not a number from 0 to 65535',
    hint: 'Give a port from 1 to 65535 (0 picks a free one).',
  },
  ERR_SOCKET_BUFFER_SIZE: {
    meaning: 'the buffer size could not be set on this UDP socket (set it only after bind)',
    hint: 'Pass a positive size; the kernel caps it at net.core.[rw]mem_max.',
  },
  ERR_SOCKET_DGRAM_NOT_RUNNING: {
    meaning: 'the UDP socket is not bound or already closed',
    hint: 'Bind before sending, and do not use it after close.',
  },
  ERR_SOCKET_CONNECTION_TIMEOUT: {
    meaning: 'no connection attempt (IPv4 or IPv6) succeeded in time',
    hint: 'Check that the server is up; connect to 127.0.0.1 rather than localhost to try one family.',
  },
  ERR_ECHO_MISMATCH: {
    meaning: 'the bytes that came back differ from the bytes sent',
    hint: 'The peer is not an echo server, or something on the path altered the data.',
  },
  ERR_PEER_SPEAKS_TLS: {
    meaning: 'the server speaks TLS and this connection is plain TCP',
    hint: 'Add --tls (with --ca, --fingerprint or --insecure for a self-signed certificate).',
  },
  ERR_ECHO_SHORT: {
    meaning: 'the connection ended before every byte sent had come back',
    hint: 'The server closed early (shutdown, limit or idle timeout; or it speaks TLS and got plain bytes: then add --tls); see its log.',
  },
  ERR_HEARTBEAT_TIMEOUT: {
    meaning:
      'a heartbeat echo did not come back in time: the peer, or the path to it, is gone (no FIN or RST ever came)',
    hint: 'Reconnect when the peer is back; raise --heartbeat-timeout if the path is only slow.',
  },
  // --- TLS: the codes Node and OpenSSL give, as measured on Node 20 and 24 (OpenSSL 3) ---
  DEPTH_ZERO_SELF_SIGNED_CERT: {
    meaning: "the server's certificate is self-signed and this client does not trust it",
    hint: "Trust it with --ca FILE (the server's certificate), or pin it with --fingerprint (echo-server --tls prints it at start); --insecure skips every check.",
  },
  SELF_SIGNED_CERT_IN_CHAIN: {
    meaning: "the server's certificate chain ends in a self-signed CA this client does not trust",
    hint: 'Trust that CA with --ca FILE.',
  },
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: {
    meaning: "the server's certificate was issued by a CA this client does not trust",
    hint: 'Trust the issuing CA with --ca FILE.',
  },
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: {
    meaning:
      "the server's certificate was issued by a CA this client does not trust (and the server sent no chain)",
    hint: 'Trust the issuing CA with --ca FILE.',
  },
  CERT_HAS_EXPIRED: {
    meaning: "the server's certificate has expired",
    hint: 'Renew it (echo-server --tls without --cert makes a fresh one each start); check both clocks.',
  },
  CERT_NOT_YET_VALID: {
    meaning: "the server's certificate is not valid yet: its notBefore date is in the future",
    hint: 'Check the clocks of both machines.',
  },
  ERR_TLS_CERT_ALTNAME_INVALID: {
    meaning: 'the certificate is valid but not for the name or address connected to',
    hint: 'Connect with a name or address it lists (openssl x509 -noout -ext subjectAltName -in CERT), or name the one it has with --servername.',
  },
  ERR_TLS_FINGERPRINT_MISMATCH: {
    meaning:
      "the server's certificate is not the pinned one: another server, a new certificate, or someone in between",
    hint: 'Compare with the fingerprint echo-server printed at start (a self-signed one is new at each start unless --cert/--key are given).',
  },
  ERR_TLS_HANDSHAKE_TIMEOUT: {
    meaning: 'the TCP connection was made but the TLS handshake did not finish in time',
    hint: 'The peer may not speak TLS.',
    client:
      'The server may not speak TLS (a plain server waits for a line): drop --tls, or raise --connect-timeout for a slow path.',
    server:
      'A plain-TCP client waits for the server to speak first, or the client is slow; raise --handshake-timeout for slow paths.',
  },
  ERR_SSL_UNEXPECTED_MESSAGE: {
    meaning:
      'the peer answered the TLS handshake with something else (a plain echo server sends the ClientHello back)',
    hint: 'The server does not speak TLS: drop --tls, or start it with --tls.',
  },
  ERR_SSL_WRONG_VERSION_NUMBER: {
    meaning: "the peer's bytes are not TLS: a plain-TCP peer on a TLS connection",
    hint: 'Use TLS on both sides or on neither.',
    client: 'The server does not speak TLS: drop --tls, or start it with --tls.',
    server: 'The client is not using TLS: use echo-client --tls, openssl s_client or ncat --ssl.',
  },
  ERR_SSL_HTTP_REQUEST: {
    meaning: 'a plain HTTP request arrived where TLS was expected',
    hint: 'Use https://, or a TLS client.',
  },
  ERR_SSL_PACKET_LENGTH_TOO_LONG: {
    meaning: 'bytes that are not TLS arrived where a TLS record was expected (a plain-TCP client)',
    hint: 'The client is not using TLS: use echo-client --tls, openssl s_client or ncat --ssl.',
  },
  ERR_SSL_DATA_LENGTH_TOO_LONG: {
    meaning: 'bytes that are not TLS arrived where a TLS record was expected (a plain-TCP client)',
    hint: 'The client is not using TLS: use echo-client --tls, openssl s_client or ncat --ssl.',
  },
  ERR_SSL_TLSV1_ALERT_UNKNOWN_CA: {
    meaning: 'the peer rejected our certificate: it does not trust its issuer',
    hint: 'Give the client the certificate (--ca) or its fingerprint (--fingerprint).',
  },
  ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE: {
    meaning: 'the peer rejected our certificate',
    hint: 'Give the client the certificate (--ca) or its fingerprint (--fingerprint).',
  },
  ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN: {
    meaning: 'the peer rejected our certificate',
    hint: 'Give the client the certificate (--ca) or its fingerprint (--fingerprint).',
  },
  ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION: {
    meaning: 'the two sides have no TLS version in common',
    hint: 'Both sides need TLS 1.2 or 1.3.',
  },
  ERR_SSL_UNSUPPORTED_PROTOCOL: {
    meaning: 'the peer offered a TLS version this side does not accept',
    hint: 'Both sides need TLS 1.2 or 1.3.',
  },
  ERR_PROXY_HEADER: {
    meaning: 'the connection did not start with a valid PROXY protocol header (v1 or v2)',
    hint: 'Only a proxy that sends one (HAProxy send-proxy / send-proxy-v2, echo-client --send-proxy) may connect to a --proxy-protocol server.',
  },
  ERR_NO_ECHO: {
    meaning: 'not one echo came back while the bench ran, so nothing was measured or verified',
    hint: 'The server is not an echo server, drops what it gets (a firewall, a rate limit) or stalled; check it with echo-client -m hello.',
  },
  ERR_REPLY_TIMEOUT: {
    meaning:
      'the echo did not come back within --timeout (over TCP: no byte moved either way for that long while an echo was owed)',
    hint: 'The server is slow, stalled (it stopped reading or echoing) or not an echo server; raise --timeout if the path is slow.',
  },
};

export interface ExplainedError {
  /** errno name or Node error code, e.g. ECONNREFUSED; 'UNKNOWN' if none. */
  code: string;
  /** What the syscall said, e.g. `connect ECONNREFUSED 127.0.0.1:7007`. */
  summary: string;
  meaning: string;
  hint: string;
  /** `summary — meaning. hint` — the line a command prints after `prog: `. */
  line: string;
}

type ErrLike = Error & {
  code?: unknown;
  syscall?: unknown;
  address?: unknown;
  port?: unknown;
  errors?: unknown;
  hostname?: unknown;
  /** advice the code that saw the error adds to the table's hint */
  extraHint?: unknown;
};

/**
 * Node wraps connect errors in an AggregateError when several addresses were tried
 * (IPv4 and IPv6 for `localhost`): pick the most telling inner error.
 */
export function unwrapError(err: unknown): unknown {
  const e = err as ErrLike;
  if (e && Array.isArray(e.errors) && e.errors.length > 0 && !e.code) {
    const inner = e.errors as ErrLike[];
    return inner.find((x) => x?.code && x.code !== 'ECONNREFUSED') ?? inner[0];
  }
  if (e && Array.isArray(e.errors) && e.errors.length > 0 && e.code === 'ECONNREFUSED') return e.errors[0];
  return err;
}

export function errorCode(err: unknown): string {
  const e = unwrapError(err) as ErrLike;
  return typeof e?.code === 'string' ? e.code : 'UNKNOWN';
}

/** One explained line for any error a socket can raise; `ctx` picks the text that fits the command. */
export function explainError(err: unknown, ctx: ErrorContext = {}): ExplainedError {
  const e = unwrapError(err) as ErrLike & { proto?: unknown };
  const code = typeof e?.code === 'string' ? e.code : 'UNKNOWN';
  let summary: string;
  if (typeof e?.syscall === 'string') {
    const where =
      typeof e.address === 'string'
        ? ` ${typeof e.port === 'number' && e.port >= 0 && !isUnixAddress(e.address) ? formatAddress(e.address, e.port) : e.address}`
        : '';
    summary = `${e.syscall} ${code}${where}`;
    // a failed name lookup says which name (Node's message has it; the summary would not)
    if (e.syscall === 'getaddrinfo' && typeof e.hostname === 'string')
      summary = `cannot resolve ${e.hostname}: ${summary}`;
  } else {
    // Node 24 adds advice about its own --use-system-ca flag to certificate errors: ours is in the hint
    summary =
      e instanceof Error ? e.message.replace(/; if the root CA is installed locally, .*$/, '') : String(e);
  }
  const entry = ERRNO_TABLE[code];
  const proto = ctx.proto ?? e?.proto ?? (isUnixAddress(e?.address) ? 'unix' : undefined);
  const udp = proto === 'udp' ? entry?.udp : proto === 'unix' ? entry?.unix : undefined;
  const meaning =
    udp?.meaning ??
    entry?.meaning ??
    (e instanceof Error && summary !== e.message ? e.message : 'unexpected error');
  const roleHint =
    ctx.role === 'client'
      ? entry?.client
      : ctx.role === 'chat'
        ? entry?.chat
        : ctx.role === 'server'
          ? entry?.server
          : undefined;
  const connectHint = e?.syscall === 'connect' ? entry?.connect : undefined;
  const hint = udp?.hint ?? connectHint ?? roleHint ?? entry?.hint ?? '';
  const tried = triedAddresses(err);
  if (tried) summary += ` (tried ${tried})`;
  let fullHint = hint;
  if (typeof e?.extraHint === 'string') fullHint += ` ${e.extraHint}`;
  if (code === 'ECONNREFUSED' && (e?.address === '::1' || tried))
    fullHint += ` A server on 127.0.0.1 does not answer on ::1, nor the reverse: localhost may mean either; echo-server --host :: listens on both.`;
  const line = entry ? `${summary} — ${meaning}. ${fullHint.trim()}`.trimEnd() : summary;
  return { code, summary, meaning, hint: fullHint.trim(), line };
}

/** A Unix socket's address is a path (or an abstract @name), never an IP. */
function isUnixAddress(a: unknown): boolean {
  return (
    typeof a === 'string' &&
    (a.startsWith('/') || a.startsWith('@') || a.startsWith('\0') || a.startsWith('.'))
  );
}

/** Happy Eyeballs tried several addresses: `::1:7007 ECONNREFUSED, 127.0.0.1:7007 ECONNREFUSED`. */
function triedAddresses(err: unknown): string | undefined {
  const list = (err as ErrLike)?.errors;
  if (!Array.isArray(list) || list.length < 2) return undefined;
  return (list as ErrLike[])
    .map((x) =>
      typeof x?.address === 'string'
        ? `${typeof x.port === 'number' ? formatAddress(x.address, x.port) : x.address} ${String(x.code ?? '?')}`
        : String(x?.message ?? x),
    )
    .join(', ');
}

/** Count an error (or a code) in a per-code tally, as every totals object keeps them. */
export function countError(errors: Record<string, number>, err: unknown, n = 1): void {
  const code = typeof err === 'string' ? err : errorCode(err);
  errors[code] = (errors[code] ?? 0) + n;
}

/** Mark an error as a UDP socket's, so it is explained in UDP's terms. */
export function asUdpError<T>(err: T): T {
  if (err && typeof err === 'object') Object.assign(err, { proto: 'udp' });
  return err;
}

/** An error with a code from the table, for failures we detect ourselves (short echo, mismatch). */
export function codedError(code: string, message: string): Error & { code: string } {
  const err = new Error(message) as Error & { code: string };
  err.code = code;
  return err;
}
