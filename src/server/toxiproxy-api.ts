// Toxiproxy 2.x's HTTP API over a ProxyRegistry: the routes, JSON fields, status codes and
// error bodies (`{"error": TEXT, "status": CODE}`) of Toxiproxy's api.go. handleToxiproxyApi()
// answers a request whose route is one of these and returns false for any other, so a server
// with routes of its own (the admin port of echo-server) can chain it; serveToxiproxyApi()
// runs it alone (echo-proxy --api). Toxiproxy refuses every browser (its defence against
// cross-site requests); here a request that names another Origin is refused instead, so a
// page served from the same address can use the API.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Logger, silentLogger } from '../core/log.js';
import { formatAddress, isLoopback } from '../core/parse.js';
import { ApiError, type ProxyRegistry, type ProxyState } from '../core/toxiproxy.js';
import { hostAllowed } from './admin.js';

/** The version /version reports: the Toxiproxy API this one follows. */
export const TOXIPROXY_API_VERSION = '2.12.0';

const BODY_MAX = 1024 * 1024;

type Route =
  | { r: 'version' | 'reset' | 'proxies' | 'populate' }
  | { r: 'proxy' | 'toxics'; proxy: string }
  | { r: 'toxic'; proxy: string; toxic: string };

const METHODS: Record<Route['r'], string[]> = {
  version: ['GET'],
  reset: ['POST'],
  proxies: ['GET', 'POST'],
  populate: ['POST'],
  proxy: ['GET', 'POST', 'PATCH', 'DELETE'],
  toxics: ['GET', 'POST'],
  toxic: ['GET', 'POST', 'PATCH', 'DELETE'],
};

function routeOf(pathname: string): Route | undefined {
  const parts = pathname.split('/').slice(1);
  let dec: string[];
  try {
    dec = parts.map((p) => decodeURIComponent(p));
  } catch {
    return undefined;
  }
  const [a, b, c, d] = dec;
  if (parts.length === 1 && (a === 'version' || a === 'reset' || a === 'proxies' || a === 'populate'))
    return { r: a };
  if (a !== 'proxies' || !b) return undefined;
  if (parts.length === 2) return { r: 'proxy', proxy: b };
  if (c !== 'toxics') return undefined;
  if (parts.length === 3) return { r: 'toxics', proxy: b };
  if (parts.length === 4 && d) return { r: 'toxic', proxy: b, toxic: d };
  return undefined;
}

function send(res: http.ServerResponse, status: number, body?: unknown): void {
  if (body === undefined) {
    res.writeHead(status).end();
    return;
  }
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendError(res: http.ServerResponse, err: unknown): void {
  const e = err instanceof ApiError ? err : new ApiError(500, (err as Error)?.message ?? String(err));
  send(res, e.status, { error: e.message, status: e.status });
}

async function readJson(req: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > BODY_MAX) throw new ApiError(413, 'bad request body: larger than 1 MiB');
    chunks.push(c);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ApiError(400, `bad request body: ${(err as Error).message}`);
  }
}

function obj(v: unknown): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new ApiError(400, 'bad request body: a JSON object is needed');
  return v as Record<string, unknown>;
}

function str(o: Record<string, unknown>, k: string): string | undefined {
  const v = o[k];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new ApiError(400, `bad request body: ${k} must be a string`);
  return v;
}

function bool(o: Record<string, unknown>, k: string): boolean | undefined {
  const v = o[k];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw new ApiError(400, `bad request body: ${k} must be true or false`);
  return v;
}

function proxyOf(reg: ProxyRegistry, name: string) {
  const p = reg.get(name);
  if (!p) throw new ApiError(404, 'proxy not found');
  return p;
}

/** POST /populate: each proxy created, or replaced when its listen, upstream or enabled differ. */
async function populate(reg: ProxyRegistry, body: unknown): Promise<{ status: number; body: unknown }> {
  const list = Array.isArray(body) ? body : undefined;
  if (!list) throw new ApiError(400, 'bad request body: a JSON array of proxies is needed');
  const specs = list.map((x, i) => {
    const o = obj(x);
    const name = str(o, 'name');
    const upstream = str(o, 'upstream');
    if (!name) throw new ApiError(400, `missing required field: name at proxy ${i + 1}`);
    if (!upstream) throw new ApiError(400, `missing required field: upstream at proxy ${i + 1}`);
    return { name, upstream, listen: str(o, 'listen') ?? '', enabled: bool(o, 'enabled') ?? true };
  });
  const done: ProxyState[] = [];
  for (const s of specs) {
    try {
      const old = reg.get(s.name)?.state();
      if (
        old &&
        old.upstream === s.upstream &&
        old.enabled === s.enabled &&
        (!s.listen || old.listen === s.listen)
      ) {
        done.push(old);
        continue;
      }
      if (old) await reg.remove(s.name);
      done.push((await reg.create(s)).state());
    } catch (err) {
      const e = err instanceof ApiError ? err : new ApiError(500, (err as Error).message);
      return { status: e.status, body: { error: e.message, status: e.status, proxies: done } };
    }
  }
  return { status: 201, body: { proxies: done } };
}

async function answer(
  reg: ProxyRegistry,
  route: Route,
  method: string,
  req: http.IncomingMessage,
): Promise<{ status: number; body?: unknown }> {
  const body = method === 'POST' || method === 'PATCH' ? () => readJson(req) : async () => undefined;
  switch (route.r) {
    case 'version':
      return { status: 200, body: { version: TOXIPROXY_API_VERSION } };
    case 'reset':
      reg.reset();
      return { status: 204 };
    case 'proxies': {
      if (method === 'GET')
        return { status: 200, body: Object.fromEntries(reg.list().map((p) => [p.state().name, p.state()])) };
      const o = obj(await body());
      const name = str(o, 'name');
      const upstream = str(o, 'upstream');
      if (!name) throw new ApiError(400, 'missing required field: name');
      if (!upstream) throw new ApiError(400, 'missing required field: upstream');
      const p = await reg.create({
        name,
        upstream,
        listen: str(o, 'listen') ?? '',
        enabled: bool(o, 'enabled') ?? true,
      });
      return { status: 201, body: p.state() };
    }
    case 'populate':
      return populate(reg, await body());
    case 'proxy': {
      const p = proxyOf(reg, route.proxy);
      if (method === 'GET') return { status: 200, body: p.state() };
      if (method === 'DELETE') {
        await reg.remove(route.proxy);
        return { status: 204 };
      }
      const o = obj(await body());
      const patch = { listen: str(o, 'listen'), upstream: str(o, 'upstream'), enabled: bool(o, 'enabled') };
      return { status: 200, body: await p.update(patch) };
    }
    case 'toxics': {
      const p = proxyOf(reg, route.proxy);
      if (method === 'GET') return { status: 200, body: p.state().toxics };
      return { status: 200, body: p.addToxic(obj(await body()) as never) };
    }
    case 'toxic': {
      const p = proxyOf(reg, route.proxy);
      if (method === 'GET') {
        const t = p.state().toxics.find((x) => x.name === route.toxic);
        if (!t) throw new ApiError(404, 'toxic not found');
        return { status: 200, body: t };
      }
      if (method === 'DELETE') {
        p.removeToxic(route.toxic);
        return { status: 204 };
      }
      return { status: 200, body: p.updateToxic(route.toxic, obj(await body()) as never) };
    }
  }
}

/** A request from a page of another origin (a browser's cross-site request): refused. */
function crossOrigin(req: http.IncomingMessage): boolean {
  const origin = req.headers.origin;
  if (!origin) return false;
  try {
    return new URL(origin).host !== req.headers.host;
  } catch {
    return true;
  }
}

/**
 * Answer `req` if its route is one of Toxiproxy's; false (nothing written) when it is not, so
 * the caller can answer it. The answer may be sent after this returns. Bound to loopback
 * (`bound`), a request naming another Host is refused, as the admin page's (DNS rebinding).
 */
export function handleToxiproxyApi(
  reg: ProxyRegistry,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  bound: string,
  logger: Logger = silentLogger,
): boolean {
  const url = new URL(req.url ?? '/', 'http://x');
  const route = routeOf(url.pathname);
  if (!route) return false;
  const method = req.method ?? 'GET';
  if (!METHODS[route.r].includes(method)) {
    res.writeHead(405, { allow: METHODS[route.r].join(', ') }).end();
    return true;
  }
  if (!hostAllowed(req.headers.host, bound)) {
    sendError(res, new ApiError(403, 'Host not allowed'));
    return true;
  }
  if (crossOrigin(req)) {
    sendError(res, new ApiError(403, 'cross-origin request refused'));
    return true;
  }
  answer(reg, route, method, req).then(
    (a) => send(res, a.status, a.body),
    (err) => {
      if (!(err instanceof ApiError))
        logger.warn({ err: (err as Error).message }, `API ${method} ${url.pathname} failed`);
      sendError(res, err);
    },
  );
  return true;
}

/**
 * Serve the API on host:port (echo-proxy --api), and `routes` beside it (a page, metrics); a
 * warning when it is not loopback.
 */
export async function serveToxiproxyApi(
  reg: ProxyRegistry,
  o: {
    host: string;
    port: number;
    logger?: Logger;
    routes?: {
      handle(req: http.IncomingMessage, res: http.ServerResponse, bound: string): boolean;
      close(): void;
    };
  },
): Promise<{ address: AddressInfo; close(): Promise<void> }> {
  const logger = o.logger ?? silentLogger;
  const server = http.createServer((req, res) => {
    if (handleToxiproxyApi(reg, req, res, o.host, logger) || o.routes?.handle(req, res, o.host)) return;
    sendError(res, new ApiError(404, 'not found'));
  });
  server.requestTimeout = 15_000;
  server.headersTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  if (!isLoopback(address.address))
    logger.warn(
      { api: formatAddress(address.address, address.port) },
      `the Toxiproxy API on ${formatAddress(address.address, address.port)} has no authentication: anyone who reaches it can change every proxy; bind it to 127.0.0.1 unless that is meant`,
    );
  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        o.routes?.close();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
