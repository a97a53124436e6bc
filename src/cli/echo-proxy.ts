// echo-proxy: flags (echo-proxy-flags.ts) → the proxies (src/proxy) and the Toxiproxy API
// (server/toxiproxy-api.ts). The only code that touches argv, signals and the exit code for
// the proxy.

import { AccessControl } from '../core/access.js';
import { formatFault } from '../core/faults.js';
import { formatAddress } from '../core/parse.js';
import { describeCertificate, selfSignedTls } from '../core/tls.js';
import { faultToToxic } from '../core/toxics.js';
import { ApiError } from '../core/toxiproxy.js';
import { proxyAdmin } from '../proxy/admin.js';
import { Proxies } from '../proxy/registry.js';
import { serveToxiproxyApi } from '../server/toxiproxy-api.js';
import { checkLogFlags, loggerFromFlags, onSignals, runCli, warnIfReachable } from './common.js';
import { buildProxyProgram, type ProxyFlags, resolveProxyConfig } from './echo-proxy-flags.js';
import { normalizeTraceArg } from './flag-groups.js';

export { buildProxyProgram, type ProxyFlags, resolveProxyConfig } from './echo-proxy-flags.js';

export async function runProxyCli(argv: string[]): Promise<void> {
  await runCli('echo-proxy', async () => {
    const program = buildProxyProgram();
    program.parse(normalizeTraceArg(argv), { from: 'user' });
    const flags = program.opts<ProxyFlags>();
    checkLogFlags(flags);
    const cfg = resolveProxyConfig(flags);
    const logger = loggerFromFlags('echo-proxy', flags);
    const tls = cfg.tls === 'self-signed' ? await selfSignedTls('localhost') : cfg.tls;
    const reg = new Proxies({
      logger,
      server: {
        ...(tls ? { tls: { cert: tls.cert, key: tls.key, ...(cfg.alpn ? { alpn: cfg.alpn } : {}) } } : {}),
        ...(cfg.proxyProtocol ? { proxyProtocol: true } : {}),
        ...(cfg.idleTimeoutMs ? { idleTimeoutMs: cfg.idleTimeoutMs } : {}),
        ...(cfg.maxConnections ? { maxConnections: cfg.maxConnections } : {}),
        ...(cfg.maxConnectionsPerIp ? { maxConnectionsPerIp: cfg.maxConnectionsPerIp } : {}),
        ...(cfg.trace ? { trace: cfg.trace } : {}),
        socket: cfg.socket,
        access: new AccessControl(cfg.allow, cfg.deny),
        logOptions: flags.verbose === true,
      },
      ...(cfg.upstreamTls ? { upstreamTls: cfg.upstreamTls } : {}),
      ...(cfg.sendProxy ? { sendProxy: cfg.sendProxy } : {}),
      ...(cfg.connectTimeoutMs ? { connectTimeoutMs: cfg.connectTimeoutMs } : {}),
      ...(cfg.udp
        ? { udp: true, ...(cfg.idleTimeoutMs ? { udpIdleTimeoutMs: cfg.idleTimeoutMs } : {}) }
        : {}),
    });
    let api: Awaited<ReturnType<typeof serveToxiproxyApi>> | undefined;
    let done!: (code: number) => void;
    const finished = new Promise<number>((resolve) => {
      done = resolve;
    });
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, `${signal}: closing every proxy`);
      Promise.all([reg.close(), api?.close()]).then(
        () => done(0),
        () => done(1),
      );
    };
    onSignals(stop, () => {
      void reg.close();
    });
    try {
      for (const p of cfg.proxies) {
        const proxy = await reg.create(p);
        for (const f of p.faults ?? []) {
          const t = faultToToxic(f);
          if (t) proxy.addToxic(t);
        }
        const s = proxy.state();
        logger.info(
          { proxy: s.name, listen: s.listen, upstream: s.upstream, enabled: s.enabled },
          `proxy ${s.name}: listening on ${s.listen}${cfg.udp ? ' (udp)' : ''}, forwarding to ${s.upstream}${s.enabled ? '' : ' (disabled)'}${tls ? ' (tls)' : ''}`,
        );
        const host = s.listen.startsWith('unix:') ? '127.0.0.1' : s.listen.replace(/^\[?(.*?)\]?:\d+$/, '$1');
        warnIfReachable(logger, host, `proxy ${s.name}`);
        if (p.faults?.length)
          logger.warn(
            { proxy: s.name },
            `faults injected on purpose: ${p.faults.map(formatFault).join('; ')}`,
          );
      }
      if (cfg.api) {
        const admin = proxyAdmin(reg);
        api = await serveToxiproxyApi(reg, { ...cfg.api, logger, routes: admin });
        const where = formatAddress(api.address.address, api.address.port);
        admin.listening(where);
        logger.info(
          { api: where },
          `Toxiproxy API on http://${where}; admin page at http://${where}/, metrics at http://${where}/metrics`,
        );
      }
    } catch (err) {
      await reg.close();
      await api?.close();
      if (err instanceof ApiError) {
        logger.error({ status: err.status }, err.message);
        return 1;
      }
      throw err;
    }
    if (tls && cfg.tls === 'self-signed') {
      const c = describeCertificate(tls.cert);
      logger.info(
        { fingerprint: c.fingerprint },
        `TLS certificate (self-signed, made at start): SHA-256 ${c.fingerprint}`,
      );
    }
    return finished;
  });
}
