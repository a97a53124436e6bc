import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseFault } from '../src/server/faults.js';
import { bin, runCommand } from './helpers.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'echo-trust-faults-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('fault durations need a unit', () => {
  it.each([
    ['latency=50', '50'],
    ['latency=50ms,jitter=10', '10'],
    ['slice=1,delay=5', '5'],
    ['accept-delay=2', '2'],
    ['latency=1.5', '1.5'],
  ])('parseFault(%j) is refused: "%s: add a unit"', (spec, bare) => {
    expect(() => parseFault(spec)).toThrow(`${bare}: add a unit, e.g. ${bare}ms`);
  });

  it('durations with a unit still parse', () => {
    expect(parseFault('latency=50ms,jitter=10ms')).toMatchObject({ delayMs: 50, jitterMs: 10 });
    expect(parseFault('latency=2s')).toMatchObject({ delayMs: 2000 });
    expect(parseFault('slice=1,delay=500us')).toMatchObject({ delayMs: 0.5 });
    expect(parseFault('accept-delay=1m')).toMatchObject({ delayMs: 60_000 });
  });

  it('echo-server --fault latency=50 exits 2 naming --fault', async () => {
    const r = await runCommand(process.execPath, [
      bin('echo-server'),
      '--port',
      '0',
      '--fault',
      'latency=50',
    ]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--fault .*50: add a unit, e\.g\. 50ms/);
    expect(r.err).not.toMatch(/\n\s+at /);
  });
});

describe('--cert and --key of different key types', () => {
  const openssl = (...args: string[]) => {
    const r = spawnSync('openssl', args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
  };
  const pair = (name: string, keyArgs: string[]) => {
    const key = path.join(dir, `${name}.key`);
    const cert = path.join(dir, `${name}.crt`);
    openssl(
      'req',
      '-x509',
      '-newkey',
      ...keyArgs,
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
    );
    return { key, cert };
  };

  it.each([
    ['an EC certificate with an RSA key', 'ec', 'rsa'],
    ['an RSA certificate with an EC key', 'rsa', 'ec'],
  ])('%s: exit 2 naming --cert/--key, before any fingerprint', async (_what, certType, keyType) => {
    const ec = pair(`ec-${certType}-${keyType}`, ['ec', '-pkeyopt', 'ec_paramgen_curve:P-256']);
    const rsa = pair(`rsa-${certType}-${keyType}`, ['rsa:2048']);
    const cert = certType === 'ec' ? ec.cert : rsa.cert;
    const key = keyType === 'ec' ? ec.key : rsa.key;
    const r = await runCommand(process.execPath, [
      bin('echo-server'),
      '--port',
      '0',
      '--tls',
      '--cert',
      cert,
      '--key',
      key,
    ]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--key .*: does not belong to the certificate in --cert /);
    expect(r.err).toContain(`an ${keyType.toUpperCase()} key, an ${certType.toUpperCase()} certificate`);
    expect(r.err).not.toMatch(/SHA-256|listening/);
    expect(r.err).not.toMatch(/\n\s+at /);
  });
});
