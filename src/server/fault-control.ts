// echo-server as one proxy of the Toxiproxy API: named "echo-server", its listening address
// as `listen`, no upstream, and its faults (--fault) as its toxics. Adding, changing or
// removing a toxic replaces the server's faults through its handle (every mode: the handle
// passes them to worker processes), and connections already open take them too, as in
// Toxiproxy, each keeping its own draw of every toxic's toxicity.

import { type Fault, TCP_FAULTS, UDP_FAULTS } from '../core/faults.js';
import { formatAddress } from '../core/parse.js';
import { faultToToxic, normalizeToxic } from '../core/toxics.js';
import {
  ApiError,
  type ProxyControl,
  type ProxyRegistry,
  type ProxyState,
  type Toxic,
} from '../core/toxiproxy.js';
import type { ServerHandle } from './listener.js';

export const ECHO_SERVER_PROXY = 'echo-server';

/** The registry of the admin port: echo-server alone. */
export function echoServerProxies(h: ServerHandle, o: { udp: boolean; faults?: Fault[] }): ProxyRegistry {
  const allowed = o.udp ? UDP_FAULTS : TCP_FAULTS.filter((k) => k !== 'accept-delay');
  const toxics = new Map<string, { toxic: Toxic; fault: Fault }>();
  for (const f of o.faults ?? []) {
    const t = faultToToxic(f);
    if (!t) continue; // accept-delay is about the listening socket: not a toxic
    let name = t.name;
    for (let i = 2; toxics.has(name); i++) name = `${t.name}_${i}`;
    toxics.set(name, { toxic: { ...t, name }, fault: f });
  }
  // faults the API cannot name (accept-delay) stay as they are
  const fixed = (o.faults ?? []).filter((f) => !faultToToxic(f));
  const apply = () => h.setFaults([...fixed, ...[...toxics.values()].map((e) => e.fault)]);
  const checked = (input: unknown) => {
    const n = normalizeToxic(input);
    if (!allowed.includes(n.fault.kind))
      throw new ApiError(400, `echo-server${o.udp ? ' --udp' : ''} has no toxic "${n.toxic.type}"`);
    if (n.fault.kind === 'reset-on-connect' && n.fault.delayMs)
      throw new ApiError(400, 'bad request body: echo-server resets at once: attributes.timeout must be 0');
    return n;
  };
  const control: ProxyControl = {
    state(): ProxyState {
      const a = h.address;
      return {
        name: ECHO_SERVER_PROXY,
        listen: a.family === 'unix' ? `unix:${a.address}` : formatAddress(a.address, a.port),
        upstream: '',
        enabled: true,
        toxics: [...toxics.values()].map((e) => e.toxic),
      };
    },
    addToxic(t) {
      const n = checked(t);
      if (toxics.has(n.toxic.name)) throw new ApiError(409, 'toxic already exists');
      toxics.set(n.toxic.name, n);
      apply();
      return n.toxic;
    },
    updateToxic(name, patch) {
      const e = toxics.get(name);
      if (!e) throw new ApiError(404, 'toxic not found');
      const n = checked({
        ...e.toxic,
        attributes: { ...e.toxic.attributes, ...(patch.attributes ?? {}) },
        toxicity: patch.toxicity ?? e.toxic.toxicity,
      });
      toxics.set(name, n);
      apply();
      return n.toxic;
    },
    removeToxic(name) {
      if (!toxics.delete(name)) throw new ApiError(404, 'toxic not found');
      apply();
    },
    async update(patch) {
      if (patch.listen !== undefined || patch.upstream !== undefined || patch.enabled === false)
        throw new ApiError(400, 'echo-server cannot be moved, given an upstream or disabled through the API');
      return control.state();
    },
  };
  const one = (): never => {
    throw new ApiError(400, 'echo-server is one proxy, itself: proxies are made with echo-proxy');
  };
  return {
    list: () => [control],
    get: (name) => (name === ECHO_SERVER_PROXY ? control : undefined),
    create: async () => one(),
    remove: async (name) => {
      if (name !== ECHO_SERVER_PROXY) throw new ApiError(404, 'proxy not found');
      one();
    },
    reset() {
      toxics.clear();
      apply();
    },
  };
}
