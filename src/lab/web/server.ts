// echo-lab --web: a page that runs the real scenarios on this machine and draws what happened.
// GET /                     the page (web/lab/ in the package: plain HTML, CSS and JS)
// GET /api/scenarios        the scenarios as `echo-lab list --json`, with each one's group, the
//                           tutorials' claim, and why it cannot run here (namespaces, capture)
// GET /api/run/NAME         runs NAME now; the document `echo-lab NAME --trace --json` prints
// GET /api/stream/NAME      runs NAME now, as Server-Sent Events: each step, error, TCP-state
//                           snapshot and check as the scenario records it (events step,
//                           errno, states, check), then `result` (the
//                           same document) or `failure`
// Runs are one at a time (they share lo's capture and the process): a second waits its turn.

import { readFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { explainError } from '../../core/errors.js';
import { formatAddress } from '../../core/parse.js';
import { hostAllowed } from '../../server/admin.js';
import { captureUnavailable } from '../capture.js';
import { findScenario, type ScenarioResult, traced } from '../index.js';
import { netnsUnavailable } from '../netns.js';
import { type RecorderEvent, recorderListeners } from '../recorder.js';
import { catalog } from './catalog.js';

export interface LabWeb {
  readonly address: AddressInfo;
  /** http://HOST:PORT/ */
  readonly url: string;
  close(): Promise<void>;
}

/** The page's files, shipped in the package beside dist/ (the same path from src/ and dist/). */
const ASSETS = new URL('../../../web/lab/', import.meta.url);
const TYPES: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'diagram.js': 'text/javascript; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
};

/** Headers every answer carries: nothing is fetched from elsewhere, nothing framed elsewhere. */
const SAFE = {
  'content-security-policy':
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'cache-control': 'no-store',
};

let queue: Promise<unknown> = Promise.resolve();

/** Run `name` after the runs before it, telling `onEvent` what it records as it does. */
function runQueued(name: string, onEvent?: (e: RecorderEvent) => void): Promise<ScenarioResult> {
  const s = findScenario(name)!;
  const run = queue.then(async () => {
    if (onEvent) recorderListeners.add(onEvent);
    try {
      return await traced(s);
    } finally {
      if (onEvent) recorderListeners.delete(onEvent);
    }
  });
  queue = run.catch(() => {});
  return run;
}

let netnsWhy: string | undefined | null = null;

function scenarioList() {
  // probing for namespaces creates one: once per process
  if (netnsWhy === null) netnsWhy = netnsUnavailable();
  const captureWhy = captureUnavailable();
  return catalog().map((e) => ({
    ...e,
    ...(e.netns && netnsWhy ? { unavailable: netnsWhy } : {}),
    ...(captureWhy ? { noLadder: captureWhy } : {}),
  }));
}

function send(res: http.ServerResponse, status: number, type: string, body: string | Buffer): void {
  res.writeHead(status, { 'content-type': type, ...SAFE }).end(body);
}

const json = (res: http.ServerResponse, status: number, v: unknown) =>
  send(res, status, 'application/json; charset=utf-8', `${JSON.stringify(v)}\n`);

async function stream(res: http.ServerResponse, name: string): Promise<void> {
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', ...SAFE });
  const event = (kind: string, data: unknown) => {
    if (!res.destroyed) res.write(`event: ${kind}\ndata: ${JSON.stringify(data)}\n\n`);
  };
  event('started', { name });
  try {
    // `errno`, not `error`: EventSource gives the name `error` to its own connection failures
    const r = await runQueued(name, (e) => event(e.kind === 'error' ? 'errno' : e.kind, e));
    event('result', r);
  } catch (err) {
    event('failure', { line: explainError(err).line });
  }
  res.end();
}

async function handle(req: http.IncomingMessage, res: http.ServerResponse, bound: string): Promise<void> {
  if (!hostAllowed(req.headers.host, bound)) return send(res, 403, 'text/plain', 'Host not allowed\n');
  if (req.method !== 'GET') return send(res, 405, 'text/plain', 'GET only\n');
  const url = new URL(req.url ?? '/', 'http://x');
  const path = url.pathname;
  if (path === '/api/scenarios') return json(res, 200, scenarioList());
  const run = /^\/api\/(run|stream)\/([a-z0-9-]+)$/.exec(path);
  if (run) {
    const name = run[2]!;
    if (!findScenario(name)) return json(res, 404, { error: `no scenario named ${name}` });
    if (run[1] === 'stream') return stream(res, name);
    try {
      return json(res, 200, await runQueued(name));
    } catch (err) {
      return json(res, 500, { error: explainError(err).line });
    }
  }
  const file = path === '/' ? 'index.html' : path.slice(1);
  const type = TYPES[file];
  if (!type) return send(res, 404, 'text/plain', 'not found\n');
  try {
    send(res, 200, type, await readFile(new URL(file, ASSETS)));
  } catch (err) {
    send(res, 500, 'text/plain', `${explainError(err).line}\n`);
  }
}

/** Serve the lab's page on host:port (port 0: any free one; `url` says which). */
export async function startLabWeb(host: string, port: number): Promise<LabWeb> {
  const server = http.createServer({ headersTimeout: 10_000, requestTimeout: 10_000 }, (req, res) => {
    handle(req, res, host).catch((err) => {
      if (!res.headersSent) send(res, 500, 'text/plain', `${explainError(err).line}\n`);
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  return {
    address,
    url: `http://${formatAddress(address.address, address.port)}/`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
