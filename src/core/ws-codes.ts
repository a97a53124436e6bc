// WebSocket close codes (RFC 6455 §7.4.1, and the IANA registry) in words, for the server's
// close lines and the client's explanations.

const MEANINGS: Readonly<Record<number, string>> = {
  1000: 'normal closure',
  1001: 'going away',
  1002: 'protocol error',
  1003: 'unsupported data',
  1005: 'no status code',
  1006: 'abnormal closure: the connection ended without a close frame',
  1007: 'invalid payload (text that is not UTF-8)',
  1008: 'policy violation',
  1009: 'message too big',
  1010: 'a required extension was not negotiated',
  1011: 'internal error on the server',
  1012: 'service restart',
  1013: 'try again later',
  1014: 'bad gateway',
  1015: 'TLS handshake failed',
};

/** `1009 (message too big)`; 4000–4999 are the application's own. */
export function describeCloseCode(code: number | undefined): string {
  if (code === undefined || code === 1005) return 'no status code';
  const m = MEANINGS[code] ?? (code >= 4000 && code <= 4999 ? 'application code' : 'unregistered code');
  return `${code} (${m})`;
}
