// A log-linear histogram of integer values (nanoseconds), HDR-style: values below 2^(B+1)
// are exact, above that every power of two is split into 2^B equal buckets, so a recorded value
// is known to 1/2^B (0.8 % with B = 7). Counts per bucket are what it stores, so two histograms
// merge by adding counts, and percentiles of a merge are those of one histogram that recorded
// every value (not an average of percentiles). The JSON form lists only the non-empty buckets.

const BITS = 7;
const SUB = 1 << BITS;
/** buckets up to 2^53 ns (104 days): more than any run can take */
const SIZE = (53 - BITS + 2) * SUB;

export interface HistogramJson {
  /** values are nanoseconds; bucket i covers [low(i), high(i)] as defined by `sub_bucket_bits` */
  unit: 'ns';
  sub_bucket_bits: number;
  count: number;
  min: number;
  max: number;
  sum: number;
  /** [bucket index, count] for each non-empty bucket, ascending */
  buckets: [number, number][];
}

function msb(v: number): number {
  return v < 2 ** 32 ? 31 - Math.clz32(v) : 63 - Math.clz32(Math.floor(v / 2 ** 32));
}

export function bucketOf(v: number): number {
  const shift = Math.max(0, msb(v) - BITS);
  return shift * SUB + Math.floor(v / 2 ** shift);
}

/** Lowest and highest value that land in bucket `i`. */
export function bucketRange(i: number): [number, number] {
  if (i < 2 * SUB) return [i, i];
  const shift = Math.floor(i / SUB) - 1;
  const sub = i - shift * SUB;
  return [sub * 2 ** shift, (sub + 1) * 2 ** shift - 1];
}

export class LogHistogram {
  counts = new Float64Array(SIZE);
  count = 0;
  min = 0;
  max = 0;
  sum = 0;

  record(ns: number): void {
    const v = Math.max(1, Math.round(ns));
    const i = bucketOf(v);
    this.counts[i < SIZE ? i : SIZE - 1]!++;
    if (this.count === 0 || v < this.min) this.min = v;
    if (v > this.max) this.max = v;
    this.count++;
    this.sum += v;
  }

  reset(): void {
    this.counts.fill(0);
    this.count = 0;
    this.min = 0;
    this.max = 0;
    this.sum = 0;
  }

  add(o: LogHistogram): this {
    for (let i = 0; i < SIZE; i++) if (o.counts[i]) this.counts[i]! += o.counts[i]!;
    if (o.count > 0) {
      if (this.count === 0 || o.min < this.min) this.min = o.min;
      if (o.max > this.max) this.max = o.max;
    }
    this.count += o.count;
    this.sum += o.sum;
    return this;
  }

  get mean(): number {
    return this.count ? this.sum / this.count : 0;
  }

  /**
   * The value at percentile `p` (0-100): the highest value of the bucket where the cumulative
   * count reaches p % (as HDR reports it), clamped to the recorded min and max; 0 when empty.
   */
  percentile(p: number): number {
    if (this.count === 0) return 0;
    const want = Math.max(1, Math.ceil((p / 100) * this.count));
    let seen = 0;
    for (let i = 0; i < SIZE; i++) {
      seen += this.counts[i]!;
      if (seen >= want) return Math.min(this.max, Math.max(this.min, bucketRange(i)[1]));
    }
    return this.max;
  }

  toJSON(): HistogramJson {
    const buckets: [number, number][] = [];
    for (let i = 0; i < SIZE; i++) if (this.counts[i]) buckets.push([i, this.counts[i]!]);
    return {
      unit: 'ns',
      sub_bucket_bits: BITS,
      count: this.count,
      min: this.min,
      max: this.max,
      sum: this.sum,
      buckets,
    };
  }

  static fromJSON(j: HistogramJson): LogHistogram {
    if (j.unit !== 'ns' || j.sub_bucket_bits !== BITS || !Array.isArray(j.buckets))
      throw new Error(
        `not a histogram this version reads (unit ${j.unit}, sub_bucket_bits ${j.sub_bucket_bits})`,
      );
    const h = new LogHistogram();
    for (const [i, c] of j.buckets) {
      if (!Number.isInteger(i) || i < 0 || i >= SIZE || !(c >= 0)) throw new Error(`bad bucket [${i}, ${c}]`);
      h.counts[i] = c;
      h.count += c;
    }
    h.min = j.min;
    h.max = j.max;
    h.sum = j.sum;
    return h;
  }

  /**
   * Text buckets for a terminal: one row per 1-2-5 step (1 µs, 2 µs, 5 µs, 10 µs …) between
   * the lowest and highest recorded value, with its count, a bar and the cumulative percentage.
   */
  text(): string {
    if (this.count === 0) return '(no values)\n';
    const edges: number[] = [];
    for (let d = 1000; d <= this.max * 10; d *= 10) for (const m of [1, 2, 5]) edges.push(d * m);
    const rows: { hi: number; n: number }[] = [];
    let lo = 0;
    for (const hi of edges) {
      let n = 0;
      for (let i = bucketOf(Math.max(1, lo)); i < SIZE; i++) {
        const [a] = bucketRange(i);
        if (a >= hi) break;
        if (a >= lo) n += this.counts[i]!;
      }
      rows.push({ hi, n });
      lo = hi;
      if (lo > this.max) break;
    }
    while (rows.length > 1 && rows[0]!.n === 0 && rows[1]!.n === 0) rows.shift();
    while (rows.length > 1 && rows[rows.length - 1]!.n === 0) rows.pop();
    const top = Math.max(...rows.map((r) => r.n));
    let cum = 0;
    return rows
      .map(({ hi, n }) => {
        cum += n;
        const bar = '#'.repeat(Math.round((n / top) * 40));
        return `  < ${fmtNs(hi).padStart(8)} ${String(n).padStart(10)} ${((cum / this.count) * 100).toFixed(2).padStart(7)} % ${bar}`;
      })
      .join('\n')
      .concat('\n');
  }
}

/** 1500 → "1.5µs", 2e6 → "2ms": short labels for histogram rows and threshold messages. */
/** ns as µs, to 0.01 µs */
export const us = (ns: number) => Math.round(ns / 10) / 100;

/** A result's latency figures (µs, to 0.01) from its histogram of ns. */
export function latencySummary(h: LogHistogram) {
  return {
    p50: us(h.percentile(50)),
    p90: us(h.percentile(90)),
    p99: us(h.percentile(99)),
    p999: us(h.percentile(99.9)),
    max: us(h.max),
    mean: us(h.mean),
  };
}

export function fmtNs(ns: number): string {
  if (ns >= 1e9) return `${+(ns / 1e9).toPrecision(4)}s`;
  if (ns >= 1e6) return `${+(ns / 1e6).toPrecision(4)}ms`;
  if (ns >= 1e3) return `${+(ns / 1e3).toPrecision(4)}µs`;
  return `${ns}ns`;
}
