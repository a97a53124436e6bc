// TLS for every command: the server's certificate (files, or a self-signed one made at start
// by the `selfsigned` library), the client's checks (CA, name, pinned SHA-256 fingerprint, or
// none with --insecure), and what was negotiated. Socket options stay on the TCP socket
// underneath; TLS wraps it once connected (client) or accepted (server).

import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { isIP, type Socket } from 'node:net';
import tls from 'node:tls';
import { codedError } from './errors.js';
import { UsageError } from './parse.js';

/** A server's certificate and key (PEM), with what a client needs to pin it. */
export interface ServerTls {
  cert: string;
  key: string;
  /** SHA-256 of the certificate (DER), `AB:CD:…` as openssl prints it */
  fingerprint: string;
  subject: string;
  validTo: string;
  /** made at start, not read from --cert/--key */
  selfSigned: boolean;
}

/** What a TLS client checks. With none of ca/insecure/fingerprint: the system's CAs and the name. */
export interface ClientTls {
  /** PEM of the CA (or the server's own self-signed certificate) to trust instead of the system's */
  ca?: string;
  /** check nothing about the server's certificate */
  insecure?: boolean;
  /** SNI and the name the certificate must carry (default: the host, when it is a name) */
  servername?: string;
  /** pin: the server's certificate must have this SHA-256 fingerprint (`AB:CD:…`) */
  fingerprint?: string;
  /** ALPN protocols to offer */
  alpn?: string[];
}

/** What a TLS connection negotiated, for --verbose and the library. */
export interface TlsInfo {
  protocol: string;
  cipher: string;
  alpn: string | false;
  /** the peer's certificate fingerprint (SHA-256), when it sent one */
  peerFingerprint?: string;
  peerSubject?: string;
  /** the certificate chain and name were verified */
  authorized: boolean;
  authorizationError?: string;
  /** accepted because its fingerprint matched --fingerprint */
  pinned?: boolean;
}

function readPem(flag: string, path: string): string {
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(
      flag,
      path,
      code === 'ENOENT'
        ? 'no such file'
        : code === 'EACCES'
          ? 'permission denied'
          : `cannot read it (${code})`,
    );
  }
  if (st.isDirectory()) throw new UsageError(flag, path, 'is a directory, not a PEM file');
  try {
    const text = readFileSync(path, 'utf8');
    if (!text.includes('-----BEGIN '))
      throw new UsageError(flag, path, 'is not a PEM file (no -----BEGIN line)');
    return text;
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(flag, path, `cannot read it (${(err as NodeJS.ErrnoException).code})`);
  }
}

function describeCert(pem: string, flag: string, path: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch {
    throw new UsageError(flag, path, 'holds no certificate OpenSSL can read');
  }
}

/** Read --cert and --key; bad input is a UsageError naming the flag. */
export function loadServerTls(certPath: string, keyPath: string): ServerTls {
  const cert = readPem('--cert', certPath);
  const key = readPem('--key', keyPath);
  const x = describeCert(cert, '--cert', certPath);
  try {
    tls.createSecureContext({ cert, key });
  } catch (err) {
    const msg = (err as Error).message;
    if (/KEY_VALUES_MISMATCH|key values mismatch/i.test(`${(err as NodeJS.ErrnoException).code} ${msg}`))
      throw new UsageError('--key', keyPath, `does not belong to the certificate in ${certPath}`);
    throw new UsageError('--key', keyPath, `OpenSSL cannot use it: ${msg.replace(/^.*:/, '').trim()}`);
  }
  // OpenSSL compares a key with the certificate only when both are of one type: an RSA key
  // with an EC certificate (or the reverse) loads, and every handshake then fails
  // (ERR_SSL_NO_SUITABLE_SIGNATURE_ALGORITHM). The certificate checks its key itself.
  const certType = x.publicKey.asymmetricKeyType;
  let keyType: string | undefined;
  let matches: boolean;
  try {
    const k = createPrivateKey(key);
    keyType = k.asymmetricKeyType;
    matches = x.checkPrivateKey(k);
  } catch {
    matches = true; // createSecureContext took it: nothing more to say here
  }
  if (!matches) {
    const types =
      keyType && certType && keyType !== certType
        ? ` (an ${keyType.toUpperCase()} key, an ${certType.toUpperCase()} certificate)`
        : '';
    throw new UsageError(
      '--key',
      keyPath,
      `does not belong to the certificate in --cert ${certPath}${types}`,
    );
  }
  return {
    cert,
    key,
    fingerprint: x.fingerprint256,
    subject: x.subject.replace(/\n/g, ', '),
    validTo: x.validTo,
    selfSigned: false,
  };
}

/**
 * A self-signed certificate (EC P-256, SHA-256, 30 days) for the names a client may use:
 * the listening host plus localhost, 127.0.0.1 and ::1.
 */
export async function selfSignedTls(host: string): Promise<ServerTls> {
  const { generate } = await import('selfsigned');
  const names = new Set(['localhost', '127.0.0.1', '::1']);
  if (host && host !== '0.0.0.0' && host !== '::') names.add(host);
  const altNames = [...names].map((n) =>
    isIP(n) ? { type: 7 as const, ip: n } : { type: 2 as const, value: n },
  );
  const now = Date.now();
  const pems = await generate([{ name: 'commonName', value: 'echo-server' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate: new Date(now - 60_000),
    notAfterDate: new Date(now + 30 * 86_400_000),
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames },
    ],
  });
  const x = new X509Certificate(pems.cert);
  return {
    cert: pems.cert,
    key: pems.private,
    fingerprint: x.fingerprint256,
    subject: x.subject.replace(/\n/g, ', '),
    validTo: x.validTo,
    selfSigned: true,
  };
}

/** The first certificate of a PEM: its SHA-256 fingerprint, subject and end of validity. */
export function describeCertificate(pem: string): { fingerprint: string; subject: string; validTo: string } {
  const x = new X509Certificate(pem);
  return { fingerprint: x.fingerprint256, subject: x.subject.replace(/\n/g, ', '), validTo: x.validTo };
}

/** `--ca FILE`: the PEM text, checked to hold a certificate. */
export function loadCa(path: string): string {
  const pem = readPem('--ca', path);
  describeCert(pem, '--ca', path);
  return pem;
}

/**
 * A SHA-256 fingerprint as people paste it: `AB:CD:…` (openssl x509 -fingerprint -sha256),
 * plain hex, optionally after `sha256:` / `SHA256=`. Normalised to `AB:CD:…`.
 */
export function parseFingerprint(flag: string, raw: string): string {
  const hex = raw
    .trim()
    .replace(/^sha-?256\s*(fingerprint)?\s*[:=]?\s*/i, '')
    .replace(/[:\s]/g, '');
  if (!/^[0-9a-fA-F]{64}$/.test(hex))
    throw new UsageError(flag, raw, 'must be a SHA-256 fingerprint: 64 hex digits, colons allowed');
  return hex.toUpperCase().match(/../g)!.join(':');
}

export function serverSecureContext(t: Pick<ServerTls, 'cert' | 'key'>): tls.SecureContext {
  return tls.createSecureContext({ cert: t.cert, key: t.key });
}

/**
 * Wrap an accepted TCP socket in TLS (server side). The handshake must finish within
 * `handshakeTimeoutMs`, or the socket is destroyed with ERR_TLS_HANDSHAKE_TIMEOUT.
 */
export function acceptTls(
  socket: Socket,
  context: tls.SecureContext,
  { handshakeTimeoutMs = 10_000, alpn }: { handshakeTimeoutMs?: number; alpn?: string[] } = {},
): tls.TLSSocket {
  const t = new tls.TLSSocket(socket, {
    isServer: true,
    secureContext: context,
    ...(alpn ? { ALPNProtocols: alpn } : {}),
  });
  // a TLS socket made from an accepted one keeps the echo's half-close: TLS 1.3 allows it
  t.allowHalfOpen = true;
  const timer = setTimeout(
    () => t.destroy(codedError('ERR_TLS_HANDSHAKE_TIMEOUT', 'TLS handshake timed out')),
    handshakeTimeoutMs,
  );
  timer.unref();
  t.once('secure', () => clearTimeout(timer));
  t.once('close', () => clearTimeout(timer));
  return t;
}

/** Start TLS on a connected TCP socket (client side); resolves once the server is checked. */
export function connectTls(
  socket: Socket,
  host: string,
  o: ClientTls,
  { timeoutMs, allowHalfOpen = true }: { timeoutMs?: number; allowHalfOpen?: boolean } = {},
): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const name = o.servername ?? (isIP(host) ? undefined : host);
    const t = tls.connect({
      socket,
      host,
      ...(name ? { servername: name } : {}),
      ...(o.ca ? { ca: o.ca } : {}),
      ...(o.alpn ? { ALPNProtocols: o.alpn } : {}),
      // a pin replaces the chain check (a self-signed certificate has no chain); with --ca both apply
      rejectUnauthorized: !(o.insecure || (o.fingerprint && !o.ca)),
      allowHalfOpen,
    } as tls.ConnectionOptions);
    let timer: NodeJS.Timeout | undefined;
    const fail = (err: Error) => {
      clearTimeout(timer);
      t.destroy();
      socket.destroy();
      reject(err);
    };
    t.once('error', fail);
    if (timeoutMs !== undefined) {
      timer = setTimeout(
        () => fail(codedError('ERR_TLS_HANDSHAKE_TIMEOUT', `TLS handshake with ${host} timed out`)),
        timeoutMs,
      );
    }
    t.once('secureConnect', () => {
      clearTimeout(timer);
      if (o.fingerprint) {
        const got = t.getPeerX509Certificate()?.fingerprint256;
        if (got !== o.fingerprint) {
          return fail(
            codedError(
              'ERR_TLS_FINGERPRINT_MISMATCH',
              `the server's certificate has SHA-256 fingerprint ${got ?? '(none)'}, not the pinned ${o.fingerprint}`,
            ),
          );
        }
      }
      t.off('error', fail);
      resolve(t);
    });
  });
}

export function tlsInfo(t: tls.TLSSocket): TlsInfo {
  const peer = t.getPeerX509Certificate?.();
  const err = t.authorizationError as unknown;
  return {
    protocol: t.getProtocol() ?? '?',
    cipher: t.getCipher()?.name ?? '?',
    alpn: t.alpnProtocol ?? false,
    ...(peer ? { peerFingerprint: peer.fingerprint256, peerSubject: peer.subject.replace(/\n/g, ', ') } : {}),
    authorized: t.authorized,
    ...(err ? { authorizationError: String((err as Error).message ?? err) } : {}),
  };
}

/** `TLSv1.3 TLS_AES_256_GCM_SHA384, ALPN none, certificate verified` */
export function formatTlsInfo(i: TlsInfo): string {
  const check = i.authorized
    ? 'certificate verified'
    : `certificate NOT verified (${i.authorizationError ?? 'not checked'})`;
  return `${i.protocol} ${i.cipher}, ALPN ${i.alpn || 'none'}, ${check}${i.peerFingerprint ? `, SHA-256 ${i.peerFingerprint}` : ''}`;
}

/** True when these bytes start a TLS record (alert 0x15 or handshake 0x16, version 3.x). */
export function looksLikeTls(b: Buffer): boolean {
  return b.length >= 2 && (b[0] === 0x15 || b[0] === 0x16) && b[1] === 0x03;
}
