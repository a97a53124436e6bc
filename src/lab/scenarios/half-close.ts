// The server closes first. Its side waits in FIN_WAIT2, the client's in CLOSE_WAIT — the
// client has read 0 bytes (EOF) but may still send — until the client closes too; then the
// client (the passive closer) waits in LAST_ACK for the ACK of its FIN, and the server side
// goes to TIME_WAIT.
import { LINUX_FACTS } from '../../core/sysctl.js';
import { CLIENT_ADDR, netnsUnavailable, SERVER_ADDR, withTwoHosts } from '../netns.js';
import { Cleanup, Recorder, type ScenarioResult } from '../recorder.js';
import { connectedPair, waitFor } from '../util.js';

export async function halfClose(): Promise<ScenarioResult> {
  const r = new Recorder(
    'half-close',
    'server closes first: FIN_WAIT2, CLOSE_WAIT, LAST_ACK, TIME_WAIT',
    'bind errors in a one-to-one client/server; Linux socket programming basics',
  );
  r.needsTimeWait();
  r.dependsOn(['tcp_fin_timeout'], [LINUX_FACTS.timeWait, LINUX_FACTS.closeWait]);
  const c = new Cleanup();
  try {
    const { port, client, peer } = await connectedPair(c, { allowHalfOpen: true });
    const got: Buffer[] = [];
    peer.on('data', (d: Buffer) => got.push(d));
    client.resume();
    const eof = waitFor(client, 'end');
    peer.end();
    r.step('server calls shutdown(SHUT_WR) / end(): sends FIN');
    await eof;
    r.step('client read returns 0 (EOF): the FIN arrived');
    const stateIn = (es: { localPort: number; remotePort: number; state: string }[], local: boolean) =>
      es.find((e) => (local ? e.localPort === port : e.remotePort === port) && e.state !== 'LISTEN')?.state;
    const s1 = await r.settle(
      'half-closed',
      [port],
      (es) => stateIn(es, true) === 'FIN_WAIT2' && stateIn(es, false) === 'CLOSE_WAIT',
    );
    const state = (local: boolean) => stateIn(s1, local);
    r.check('server side in FIN_WAIT2', state(true) === 'FIN_WAIT2');
    r.check('client side in CLOSE_WAIT', state(false) === 'CLOSE_WAIT');
    const arrived = waitFor(peer, 'data');
    client.write('still talking\n');
    await arrived;
    r.step(`client can still send: the server read "${Buffer.concat(got).toString().trim()}" in FIN_WAIT2`);
    r.check(
      'data still flows client → server while half-closed',
      Buffer.concat(got).toString() === 'still talking\n',
    );
    const closed = waitFor(peer, 'close');
    client.end();
    await closed;
    r.step('client closes too (FIN): the server side moves to TIME_WAIT');
    const s2 = await r.settle(
      'both closed',
      [port],
      (es) => es.some((e) => e.localPort === port && e.state === 'TIME_WAIT'),
      (e) => e.state !== 'LISTEN',
    );
    r.check(
      'server side in TIME_WAIT',
      s2.some((e) => e.localPort === port && e.state === 'TIME_WAIT'),
    );
    await lastAck(r);
    return r.result();
  } finally {
    await c.run();
  }
}

/**
 * The passive closer's LAST_ACK: between its FIN and the ACK of it. On loopback the ACK is back
 * before anyone can look; in two namespaces with the server's replies cut, it stays there,
 * retransmitting its FIN. Skipped (and said) without the capability for namespaces.
 */
async function lastAck(r: Recorder): Promise<void> {
  const why = netnsUnavailable();
  if (why) {
    r.step(`LAST_ACK part skipped: ${why}`);
    return;
  }
  await withTwoHosts(async (h) => {
    const server = h.spawnIn(h.server, { role: 'server', host: SERVER_ADDR, closeFirst: true });
    const { port } = await server.next('listening');
    const client = h.spawnIn(h.client, {
      role: 'client',
      host: SERVER_ADDR,
      port,
      options: {},
      mode: 'close-on-start',
    });
    await client.next('peer-fin');
    r.step(`two hosts: the server (${SERVER_ADDR}:${port}) closes first; the client reads EOF (CLOSE_WAIT)`);
    h.ip(h.server, 'route', 'add', 'blackhole', `${CLIENT_ADDR}/32`);
    client.send({ type: 'start' });
    r.step("the server's replies are cut; the client closes too: its FIN's ACK never arrives");
    const la = await r.settle(
      'the passive closer, waiting for the ACK of its FIN',
      [port],
      (es) => es.some((e) => e.state === 'LAST_ACK'),
      (e) => e.remotePort === port,
      3000,
      h.readIn(h.client),
    );
    r.check(
      'the passive side sits in LAST_ACK',
      la.some((e) => e.state === 'LAST_ACK'),
    );
  });
}
