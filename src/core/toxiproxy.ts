// What a Toxiproxy-compatible API drives: proxies and their toxics, in the JSON shapes of
// Toxiproxy 2.x's HTTP API. echo-proxy's proxies implement ProxyControl, and so does
// echo-server (one proxy whose toxics are its own faults), so one API changes either.

/** A toxic as Toxiproxy's API takes and returns it. */
export interface Toxic {
  name: string;
  /** Toxiproxy's types (latency, bandwidth, slow_close, timeout, reset_peer, slicer, limit_data) and ours */
  type: string;
  stream: 'upstream' | 'downstream';
  /** the chance, 0 to 1, that the toxic applies to a connection */
  toxicity: number;
  attributes: Record<string, number | string | boolean>;
}

/** A proxy as Toxiproxy's API returns it. */
export interface ProxyState {
  name: string;
  /** the address bound, HOST:PORT (the real port when 0 was asked for) */
  listen: string;
  upstream: string;
  enabled: boolean;
  toxics: Toxic[];
}

/** An API failure: the HTTP status Toxiproxy answers with, and its `error` text. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** One running proxy. Toxic changes act on connections already open. */
export interface ProxyControl {
  state(): ProxyState;
  /** ApiError 409 when the name exists, 400 when the toxic is not valid */
  addToxic(t: Toxic): Toxic;
  /** ApiError 404 when there is no such toxic, 400 when the result is not valid */
  updateToxic(name: string, patch: Partial<Toxic>): Toxic;
  /** ApiError 404 when there is no such toxic */
  removeToxic(name: string): void;
  /** Toxiproxy's POST /proxies/{name}: a new listen address or upstream, enabled or not */
  update(patch: { listen?: string; upstream?: string; enabled?: boolean }): Promise<ProxyState>;
}

/** The proxies one API serves. */
export interface ProxyRegistry {
  list(): ProxyControl[];
  get(name: string): ProxyControl | undefined;
  /** ApiError 409 on a duplicate name, 400 on a bad field; a bind failure is an ApiError too */
  create(spec: { name: string; listen: string; upstream: string; enabled?: boolean }): Promise<ProxyControl>;
  /** ApiError 404 when there is no such proxy */
  remove(name: string): Promise<void>;
  /** Toxiproxy's POST /reset: every proxy enabled, every toxic removed */
  reset(): void;
}
