// The PROXY protocol (HAProxy, versions 1 and 2): a proxy that accepted a client prepends one
// header to the connection it opens to the server, naming the client's real address.
//   v1  text, one line of at most 107 bytes:  PROXY TCP4 203.0.113.7 192.0.2.1 51234 7007\r\n
//   v2  binary: 12-byte signature, version/command, family/transport, a 16-bit length, then
//       the addresses (IPv4 12 bytes, IPv6 36, Unix 216) and optional TLVs.
// parseProxyHeader() is given the bytes received so far and says: need more, a header of N
// bytes, or invalid (and why). It never reads past the header: what follows is the client's.

import { isIPv4, isIPv6 } from 'node:net';
import { ipv6Bytes } from './parse.js';

export const V2_SIGNATURE = Buffer.from([
  0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
]);
const V1_PREFIX = Buffer.from('PROXY ');
/** the longest v1 line, CRLF included (the specification's bound) */
export const V1_MAX = 107;
/** v2 address block plus TLVs we accept; the 16-bit length allows 65535, HAProxy's default buffer far less */
export const V2_MAX_PAYLOAD = 4096;

export interface ProxyAddress {
  address: string;
  port: number;
}

export interface ProxyHeader {
  version: 1 | 2;
  /** 'proxy': relayed for a client; 'local': the proxy's own connection (health check), no addresses */
  command: 'proxy' | 'local';
  /** 'unknown' (v1 UNKNOWN, v2 UNSPEC): the proxy did not say; use the connection's own addresses */
  family: 'tcp4' | 'tcp6' | 'udp4' | 'udp6' | 'unix' | 'unix-dgram' | 'unknown';
  source?: ProxyAddress;
  destination?: ProxyAddress;
  /** the whole header's length: the client's bytes start here */
  length: number;
}

export type ProxyParse =
  | { state: 'more' }
  | { state: 'done'; header: ProxyHeader }
  | { state: 'invalid'; why: string };

const MORE: ProxyParse = { state: 'more' };
const invalid = (why: string): ProxyParse => ({ state: 'invalid', why });

/** Is `got` a prefix of `want` (or `want` a prefix of `got`)? */
function prefixMatches(got: Buffer, want: Buffer): boolean {
  const n = Math.min(got.length, want.length);
  return got.subarray(0, n).equals(want.subarray(0, n));
}

export function parseProxyHeader(buf: Buffer): ProxyParse {
  if (buf.length === 0) return MORE;
  if (prefixMatches(buf, V2_SIGNATURE)) return buf.length < 16 ? MORE : parseV2(buf);
  if (prefixMatches(buf, V1_PREFIX)) return buf.length < V1_PREFIX.length ? MORE : parseV1(buf);
  return invalid('it does not start with "PROXY " (v1) or the v2 signature');
}

function parseV1(buf: Buffer): ProxyParse {
  const end = buf.indexOf('\r\n');
  if (end < 0) return buf.length >= V1_MAX ? invalid(`no CRLF within ${V1_MAX} bytes (v1)`) : MORE;
  if (end + 2 > V1_MAX) return invalid(`longer than ${V1_MAX} bytes (v1)`);
  const line = buf.subarray(0, end).toString('latin1');
  if (!/^[\x20-\x7e]*$/.test(line)) return invalid('a v1 header is printable ASCII');
  const parts = line.split(' ');
  const length = end + 2;
  if (parts[1] === 'UNKNOWN')
    return { state: 'done', header: { version: 1, command: 'proxy', family: 'unknown', length } };
  if (parts.length !== 6) return invalid(`v1 has 6 fields, this has ${parts.length}`);
  const [, proto, src, dst, sport, dport] = parts as [string, string, string, string, string, string];
  if (proto !== 'TCP4' && proto !== 'TCP6') return invalid(`unknown v1 protocol ${JSON.stringify(proto)}`);
  const okIp = proto === 'TCP4' ? isIPv4 : isIPv6;
  if (!okIp(src) || !okIp(dst)) return invalid(`v1 addresses are not ${proto === 'TCP4' ? 'IPv4' : 'IPv6'}`);
  const port = (p: string) => (/^(0|[1-9]\d{0,4})$/.test(p) && Number(p) <= 65535 ? Number(p) : -1);
  const sp = port(sport);
  const dp = port(dport);
  if (sp < 0 || dp < 0) return invalid('v1 ports are 0–65535 without leading zeros');
  return {
    state: 'done',
    header: {
      version: 1,
      command: 'proxy',
      family: proto === 'TCP4' ? 'tcp4' : 'tcp6',
      source: { address: src, port: sp },
      destination: { address: dst, port: dp },
      length,
    },
  };
}

function ipv6(b: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  // the canonical short form, as Node prints addresses (longest run of zero groups → ::)
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

function parseV2(buf: Buffer): ProxyParse {
  const verCmd = buf[12]!;
  if (verCmd >> 4 !== 2) return invalid(`v2 version nibble is ${verCmd >> 4}, not 2`);
  const cmd = verCmd & 0x0f;
  if (cmd > 1) return invalid(`unknown v2 command ${cmd}`);
  const fam = buf[13]!;
  const len = buf.readUInt16BE(14);
  if (len > V2_MAX_PAYLOAD)
    return invalid(`v2 header of ${len} bytes is more than the ${V2_MAX_PAYLOAD} accepted`);
  if (buf.length < 16 + len) return MORE;
  const length = 16 + len;
  const body = buf.subarray(16, length);
  if (cmd === 0)
    return { state: 'done', header: { version: 2, command: 'local', family: 'unknown', length } };
  const af = fam >> 4;
  const tp = fam & 0x0f;
  if (af === 0) return { state: 'done', header: { version: 2, command: 'proxy', family: 'unknown', length } };
  if (tp !== 1 && tp !== 2) return invalid(`unknown v2 transport ${tp}`);
  // the source and destination addresses, then their ports (2 bytes each) at `portAt`
  const proxied = (family: ProxyHeader['family'], src: string, dst: string, portAt: number): ProxyParse => ({
    state: 'done',
    header: {
      version: 2,
      command: 'proxy',
      family,
      source: { address: src, port: body.readUInt16BE(portAt) },
      destination: { address: dst, port: body.readUInt16BE(portAt + 2) },
      length,
    },
  });
  if (af === 1) {
    if (len < 12) return invalid('v2 IPv4 addresses need 12 bytes');
    const ip = (o: number) => `${body[o]}.${body[o + 1]}.${body[o + 2]}.${body[o + 3]}`;
    return proxied(tp === 1 ? 'tcp4' : 'udp4', ip(0), ip(4), 8);
  }
  if (af === 2) {
    if (len < 36) return invalid('v2 IPv6 addresses need 36 bytes');
    return proxied(tp === 1 ? 'tcp6' : 'udp6', ipv6(body.subarray(0, 16)), ipv6(body.subarray(16, 32)), 32);
  }
  if (af === 3) {
    if (len < 216) return invalid('v2 Unix addresses need 216 bytes');
    const path = (b: Buffer) => {
      const z = b.indexOf(0);
      return b.subarray(0, z < 0 ? b.length : z).toString('utf8');
    };
    return {
      state: 'done',
      header: {
        version: 2,
        command: 'proxy',
        family: tp === 1 ? 'unix' : 'unix-dgram',
        source: { address: path(body.subarray(0, 108)), port: 0 },
        destination: { address: path(body.subarray(108, 216)), port: 0 },
        length,
      },
    };
  }
  return invalid(`unknown v2 address family ${af}`);
}

/** The header a proxy would send for a connection from `source` to `destination`. */
export function buildProxyHeader(version: 1 | 2, source?: ProxyAddress, destination?: ProxyAddress): Buffer {
  const fam =
    source && destination
      ? isIPv4(source.address) && isIPv4(destination.address)
        ? 4
        : isIPv6(source.address) && isIPv6(destination.address)
          ? 6
          : 0
      : 0;
  if (version === 1) {
    if (!fam) return Buffer.from('PROXY UNKNOWN\r\n');
    return Buffer.from(
      `PROXY TCP${fam} ${source!.address} ${destination!.address} ${source!.port} ${destination!.port}\r\n`,
    );
  }
  const addrLen = fam === 4 ? 12 : fam === 6 ? 36 : 0;
  const b = Buffer.alloc(16 + addrLen);
  V2_SIGNATURE.copy(b, 0);
  b[12] = 0x21; // version 2, PROXY
  b[13] = fam === 4 ? 0x11 : fam === 6 ? 0x21 : 0x00;
  b.writeUInt16BE(addrLen, 14);
  if (fam === 4) {
    Buffer.from(source!.address.split('.').map(Number)).copy(b, 16);
    Buffer.from(destination!.address.split('.').map(Number)).copy(b, 20);
    b.writeUInt16BE(source!.port, 24);
    b.writeUInt16BE(destination!.port, 26);
  } else if (fam === 6) {
    ipv6Bytes(source!.address).copy(b, 16);
    ipv6Bytes(destination!.address).copy(b, 32);
    b.writeUInt16BE(source!.port, 48);
    b.writeUInt16BE(destination!.port, 50);
  }
  return b;
}
