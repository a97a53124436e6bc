import { describe, expect, it } from 'vitest';
import { explainError } from '../src/core/errors.js';
import {
  parseDuration,
  parseHost,
  parseInteger,
  parsePort,
  parseSize,
  UsageError,
} from '../src/core/parse.js';

describe('parse', () => {
  it('ports', () => {
    expect(parsePort('--port', '0')).toBe(0);
    expect(parsePort('--port', '65535')).toBe(65535);
    expect(() => parsePort('--port', '70000')).toThrow('--port 70000: must be 0-65535');
    expect(() => parsePort('--port', 'abc')).toThrow(UsageError);
    expect(() => parsePort('--port', '-1')).toThrow(UsageError);
    expect(() => parsePort('--port', '0', { allowZero: false })).toThrow('must be 1-65535');
  });
  it('sizes', () => {
    expect(parseSize('--s', '512')).toBe(512);
    expect(parseSize('--s', '16k')).toBe(16384);
    expect(parseSize('--s', '1m')).toBe(1048576);
    expect(parseSize('--s', '1.5K')).toBe(1536);
    for (const bad of ['-1', 'x', '1e99', '', '1q']) expect(() => parseSize('--s', bad)).toThrow(UsageError);
    expect(() => parseSize('--s', '2g', 1, 1024 ** 3)).toThrow('--s 2g: must be between 1 and 1g');
  });
  it('durations', () => {
    expect(parseDuration('--d', '500ms')).toBe(500);
    expect(parseDuration('--d', '2s')).toBe(2000);
    expect(parseDuration('--d', '1.5')).toBe(1500);
    expect(parseDuration('--d', '1m')).toBe(60000);
    for (const bad of ['-1s', 'soon', '1 week']) expect(() => parseDuration('--d', bad)).toThrow(UsageError);
  });
  it('hosts', () => {
    expect(parseHost('--host', '127.0.0.1')).toBe('127.0.0.1');
    expect(parseHost('--host', '[::1]')).toBe('::1');
    expect(parseHost('--host', 'localhost')).toBe('localhost');
    expect(() => parseHost('--host', 'a b')).toThrow('--host "a b": not an IP address or host name');
    expect(() => parseHost('--host', '')).toThrow(UsageError);
  });
  it('integers', () => {
    expect(parseInteger('--count', '3', 1, 10)).toBe(3);
    expect(() => parseInteger('--count', '-1', 1, 10)).toThrow('--count -1');
    expect(() => parseInteger('--count', '0', 1, 10)).toThrow('must be 1-10');
  });
});

describe('explainError', () => {
  it('gives the SPEC §5 line for a refused connect', () => {
    const err = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:7007'), {
      code: 'ECONNREFUSED',
      syscall: 'connect',
      address: '127.0.0.1',
      port: 7007,
    });
    expect(explainError(err).line).toBe(
      'connect ECONNREFUSED 127.0.0.1:7007 — nothing is listening on that port (its kernel answered the SYN with RST). Check the host and port, and that the server is running.',
    );
  });
  it('unwraps an AggregateError (IPv4 and IPv6 both tried)', () => {
    const v6 = Object.assign(new Error('x'), {
      code: 'ECONNREFUSED',
      syscall: 'connect',
      address: '::1',
      port: 9,
    });
    const v4 = Object.assign(new Error('y'), {
      code: 'ECONNREFUSED',
      syscall: 'connect',
      address: '127.0.0.1',
      port: 9,
    });
    const agg = Object.assign(new AggregateError([v6, v4]), { code: 'ECONNREFUSED' });
    const e = explainError(agg);
    expect(e.code).toBe('ECONNREFUSED');
    // every address Happy Eyeballs tried is named, and the ::1 / 127.0.0.1 trap explained
    expect(e.summary).toBe(
      'connect ECONNREFUSED [::1]:9 (tried [::1]:9 ECONNREFUSED, 127.0.0.1:9 ECONNREFUSED)',
    );
    expect(e.line).toMatch(/A server on 127\.0\.0\.1 does not answer on ::1/);
  });
  it('keeps unknown errors readable', () => {
    expect(explainError(new Error('boom')).line).toBe('boom');
  });
});
