// Toxiproxy's toxics as our faults and back: the attribute names and units of Toxiproxy 2.x's
// API (milliseconds; bandwidth in KB/s of 1000 bytes; slicer's delay in microseconds), and our
// faults Toxiproxy lacks as extra toxic types. A toxic that cannot be a fault is an ApiError
// 400 with Toxiproxy's error text.

import type { Fault, FaultKind } from './faults.js';
import { ApiError, type Toxic } from './toxiproxy.js';

type Attrs = Record<string, number | string | boolean>;

interface ToxicType {
  kind: FaultKind;
  /** attribute name → default (Toxiproxy's zero values) */
  attrs: Record<string, number | string>;
  toFault(a: Attrs): Fault;
  toAttrs(f: Fault): Attrs;
}

const n = (a: Attrs, k: string) => a[k] as number;

/** Every toxic type the API takes, by Toxiproxy name. */
export const TOXIC_TYPES: Record<string, ToxicType> = {
  latency: {
    kind: 'latency',
    attrs: { latency: 0, jitter: 0 },
    toFault: (a) => ({
      kind: 'latency',
      delayMs: n(a, 'latency'),
      ...(n(a, 'jitter') ? { jitterMs: n(a, 'jitter') } : {}),
    }),
    toAttrs: (f) => ({ latency: f.delayMs ?? 0, jitter: f.jitterMs ?? 0 }),
  },
  bandwidth: {
    kind: 'bandwidth',
    attrs: { rate: 0 },
    toFault: (a) => {
      if (n(a, 'rate') <= 0) throw badToxic('attributes.rate must be more than 0 (KB/s)');
      return { kind: 'bandwidth', rate: n(a, 'rate') * 1000 };
    },
    toAttrs: (f) => ({ rate: (f.rate ?? 0) / 1000 }),
  },
  slow_close: {
    kind: 'slow-close',
    attrs: { delay: 0 },
    toFault: (a) => ({ kind: 'slow-close', delayMs: n(a, 'delay') }),
    toAttrs: (f) => ({ delay: f.delayMs ?? 0 }),
  },
  timeout: {
    kind: 'timeout',
    attrs: { timeout: 0 },
    toFault: (a) => ({ kind: 'timeout', delayMs: n(a, 'timeout') }),
    toAttrs: (f) => ({ timeout: f.delayMs ?? 0 }),
  },
  reset_peer: {
    kind: 'reset-on-connect',
    attrs: { timeout: 0 },
    toFault: (a) => ({ kind: 'reset-on-connect', ...(n(a, 'timeout') ? { delayMs: n(a, 'timeout') } : {}) }),
    toAttrs: (f) => ({ timeout: f.delayMs ?? 0 }),
  },
  slicer: {
    kind: 'slice',
    attrs: { average_size: 0, size_variation: 0, delay: 0 },
    toFault: (a) => {
      if (n(a, 'average_size') < 1) throw badToxic('attributes.average_size must be at least 1');
      if (n(a, 'size_variation') >= n(a, 'average_size'))
        throw badToxic('attributes.size_variation must be smaller than average_size');
      return {
        kind: 'slice',
        bytes: n(a, 'average_size'),
        delayMs: n(a, 'delay') / 1000,
        ...(n(a, 'size_variation') ? { variation: n(a, 'size_variation') } : {}),
      };
    },
    toAttrs: (f) => ({
      average_size: f.bytes ?? 0,
      size_variation: f.variation ?? 0,
      delay: Math.round((f.delayMs ?? 0) * 1000),
    }),
  },
  limit_data: {
    kind: 'limit-data',
    attrs: { bytes: 0 },
    toFault: (a) => ({ kind: 'limit-data', bytes: n(a, 'bytes') }),
    toAttrs: (f) => ({ bytes: f.bytes ?? 0 }),
  },
  // ours
  stall_after: {
    kind: 'stall-after',
    attrs: { bytes: 0 },
    toFault: (a) => ({ kind: 'stall-after', bytes: n(a, 'bytes') }),
    toAttrs: (f) => ({ bytes: f.bytes ?? 0 }),
  },
  close_after: {
    kind: 'close-after',
    attrs: { bytes: 0, how: 'fin' },
    toFault: (a) => {
      if (a.how !== 'fin' && a.how !== 'rst') throw badToxic('attributes.how is "fin" or "rst"');
      return { kind: 'close-after', bytes: n(a, 'bytes'), how: a.how };
    },
    toAttrs: (f) => ({ bytes: f.bytes ?? 0, how: f.how ?? 'fin' }),
  },
  blackhole: { kind: 'blackhole', attrs: {}, toFault: () => ({ kind: 'blackhole' }), toAttrs: () => ({}) },
  down: { kind: 'down', attrs: {}, toFault: () => ({ kind: 'down' }), toAttrs: () => ({}) },
  ...Object.fromEntries(
    (['corrupt', 'drop', 'duplicate', 'reorder'] as const).map((k) => [
      k,
      {
        kind: k,
        attrs: { probability: k === 'reorder' ? 0.5 : 1 },
        toFault: (a: Attrs) => {
          const p = n(a, 'probability');
          if (p > 1) throw badToxic('attributes.probability must be between 0 and 1');
          return { kind: k, chance: p };
        },
        toAttrs: (f: Fault) => ({ probability: f.chance ?? 0 }),
      } satisfies ToxicType,
    ]),
  ),
};

const TYPE_OF_KIND = new Map(Object.entries(TOXIC_TYPES).map(([name, t]) => [t.kind, name]));

function badToxic(why: string): ApiError {
  return new ApiError(400, `bad request body: ${why}`);
}

/**
 * A toxic from the API's JSON (a POST body, or an update merged over the toxic it changes):
 * Toxiproxy's defaults filled in (stream downstream, toxicity 1, name TYPE_STREAM, missing
 * attributes 0), checked, with the fault it runs. ApiError 400 when it is not valid.
 */
export function normalizeToxic(input: unknown): { toxic: Toxic; fault: Fault } {
  if (typeof input !== 'object' || input === null || Array.isArray(input))
    throw new ApiError(400, 'bad request body: a toxic is a JSON object');
  const o = input as Record<string, unknown>;
  const stream = o.stream ?? 'downstream';
  if (stream !== 'upstream' && stream !== 'downstream')
    throw new ApiError(400, 'stream was invalid, can be either upstream or downstream');
  const type = TOXIC_TYPES[String(o.type)];
  if (typeof o.type !== 'string' || !type || !Object.hasOwn(TOXIC_TYPES, o.type))
    throw new ApiError(400, 'invalid toxic type');
  const toxicity = o.toxicity ?? 1;
  if (typeof toxicity !== 'number' || !(toxicity >= 0 && toxicity <= 1))
    throw badToxic('toxicity must be a number from 0 to 1');
  if (o.name !== undefined && typeof o.name !== 'string') throw badToxic('name must be a string');
  const given = o.attributes ?? {};
  if (typeof given !== 'object' || given === null || Array.isArray(given))
    throw badToxic('attributes must be a JSON object');
  const attributes: Attrs = {};
  for (const [k, dflt] of Object.entries(type.attrs)) {
    const v = (given as Record<string, unknown>)[k] ?? dflt;
    if (typeof dflt === 'number') {
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0)
        throw badToxic(`attributes.${k} must be a number ≥ 0`);
      if (v > 2_147_483_647) throw badToxic(`attributes.${k} is too large`);
    } else if (typeof v !== 'string') throw badToxic(`attributes.${k} must be a string`);
    attributes[k] = v as number | string;
  }
  const fault = type.toFault(attributes);
  fault.stream = stream;
  if (toxicity < 1) fault.fraction = toxicity;
  const name = (o.name as string | undefined) || `${o.type}_${stream}`;
  return { toxic: { name, type: o.type, stream, toxicity, attributes }, fault };
}

/** A fault as a toxic (echo-server's faults, shown through the API); `name` defaults to TYPE_STREAM. */
export function faultToToxic(f: Fault, name?: string): Toxic | undefined {
  const type = TYPE_OF_KIND.get(f.kind);
  if (!type) return undefined;
  const stream = f.stream ?? 'downstream';
  return {
    name: name ?? `${type}_${stream}`,
    type,
    stream,
    toxicity: f.fraction ?? 1,
    attributes: TOXIC_TYPES[type]!.toAttrs(f),
  };
}
