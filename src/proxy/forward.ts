// Forwarding as an application of the server's pipeline: each accepted client (after the
// transport, PROXY preamble and admission stages) is connected to the upstream, and bytes run
// both ways through a fault stage per direction (server/faults.ts FaultStream): client →
// upstream under the `upstream` faults, upstream → client under the `downstream` ones.
// A FIN from either side becomes a shutdown toward the other; a reset from either side is
// passed on as a reset. An upstream that cannot be reached resets the client (the nearest
// thing to the refusal it would have met without the proxy), with one explained log line.

import type { Socket } from 'node:net';
import { type ConnectOptions, connectTcp } from '../core/connect.js';
import { errorCode, explainError } from '../core/errors.js';
import type { Fault } from '../core/faults.js';
import { LightSocket, lightFromSocket, localAddressOf, setNoDelay } from '../core/internals.js';
import type { Logger } from '../core/log.js';
import { buildProxyHeader } from '../core/proxy-protocol.js';
import type { Application } from '../server/application.js';
import { FaultStream, resetSocket } from '../server/faults.js';
import { noteCloseReason } from '../server/handler.js';
import {
  lightUsable,
  readChunk,
  SHARED_READ,
  setReadInUse,
  sharedReadEnabled,
} from '../server/user-buffer.js';

/** Where a proxy forwards to. */
export interface UpstreamTarget {
  /** host:port or unix:PATH, as shown by the API */
  text: string;
  connect: Omit<ConnectOptions, 'sendProxy'>;
  /** send a PROXY protocol header naming the client first */
  sendProxy?: 1 | 2;
}

/** The toxics of a proxy as they are now; a change reaches open connections through Link.refresh(). */
export interface LiveFaults {
  /** the toxics in force: name, fault, toxicity */
  current(): readonly { name: string; fault: Fault; toxicity: number }[];
}

/** One forwarded connection: its two fault stages and its toxicity draws. */
export class Link {
  private readonly rolls = new Map<string, boolean>();
  c2u: FaultStream | undefined;
  u2c: FaultStream | undefined;
  upstream: Socket | undefined;
  private resetTimer: NodeJS.Timeout | undefined;
  resetDone = false;
  /** where the client's next chunk goes: held until the upstream answers, then c2u */
  fromClient: (chunk: Buffer) => void = () => {};

  constructor(
    readonly client: Socket,
    private readonly faults: LiveFaults,
  ) {}

  /** The faults of one direction for this connection: each toxic drawn once, by its toxicity. */
  faultsFor(stream: 'upstream' | 'downstream'): Fault[] {
    const out: Fault[] = [];
    for (const t of this.faults.current()) {
      let on = this.rolls.get(t.name);
      if (on === undefined) {
        // toxicity 0 never fires, 1 always (Math.random() is in [0, 1))
        on = Math.random() < t.toxicity;
        this.rolls.set(t.name, on);
      }
      if (on && (t.fault.stream ?? 'downstream') === stream) out.push({ ...t.fault, fraction: undefined });
    }
    return out;
  }

  /** The proxy's toxics changed: both directions take the new ones, on this open connection. */
  refresh(): void {
    this.c2u?.setFaults(this.faultsFor('upstream'));
    this.u2c?.setFaults(this.faultsFor('downstream'));
    this.armReset();
  }

  /** reset_peer (reset-on-connect): the client is reset at once or after its timeout. */
  armReset(): void {
    const f = [...this.faultsFor('downstream'), ...this.faultsFor('upstream')].find(
      (x) => x.kind === 'reset-on-connect',
    );
    if (!f) {
      clearTimeout(this.resetTimer);
      this.resetTimer = undefined;
      return;
    }
    if (this.resetTimer || this.resetDone) return;
    this.resetTimer = setTimeout(() => {
      this.resetDone = true;
      noteCloseReason(this.client, 'fault reset_peer');
      resetSocket(this.client);
      this.upstream?.destroy();
    }, f.delayMs ?? 0);
  }

  dispose(): void {
    clearTimeout(this.resetTimer);
    this.c2u?.dispose();
    this.u2c?.dispose();
  }
}

const PENDING_MAX = 256 * 1024;

const READ_SIZE = 64 * 1024;
/**
 * The buffer every upstream socket of this thread reads into (net's `onread`): the callback
 * copies out what it keeps, so a small read costs one small copy instead of a 64 KiB
 * allocation and a trip through the Readable stream.
 */
const upstreamRead = Buffer.allocUnsafe(READ_SIZE);
/** A read at least this large makes the upstream read into a buffer of its own (no copies). */
const OWN_FROM = 16 * 1024;

/**
 * The read buffers of one upstream socket: the shared one while its reads are small; while
 * they are large (a bulk stream) one of its own, written to the client as is and reused for
 * the next read once nothing holds it (the client's write done, no fault holding it), else
 * replaced by a new one.
 */
class UpstreamReads {
  own: Buffer | undefined;
  constructor(
    private readonly client: Socket,
    private readonly link: Link,
  ) {}

  /** Called by net before each read: where it goes. */
  next = (): Buffer => {
    if (!this.own) return upstreamRead;
    const u2c = this.link.u2c;
    if (!u2c || u2c.holding || this.client.writableLength > 0) this.own = Buffer.allocUnsafe(READ_SIZE);
    return this.own;
  };

  /** The chunk a read of `n` bytes into `buf` gives, safe to keep until next() says otherwise. */
  chunk(n: number, buf: Buffer): Buffer {
    if (buf === upstreamRead) {
      if (n >= OWN_FROM) this.own = Buffer.allocUnsafe(READ_SIZE); // from the next read on
      return copyOut(n, buf);
    }
    if (n < OWN_FROM) this.own = undefined; // small reads again: the shared buffer from the next read
    return buf.subarray(0, n);
  }
}

/** A copy of the `n` bytes a read left at the start of a reused buffer. */
function copyOut(n: number, buf: Buffer): Buffer {
  const chunk = Buffer.allocUnsafe(n);
  buf.copy(chunk, 0, 0, n);
  return chunk;
}

/** Legs driven as light connections since the process started (for tests): clients, upstreams. */
export const lightLinks = { client: 0, upstream: 0 };

/**
 * The forwarding application of one proxy. `links` holds the open connections, so a change of
 * toxics reaches them (Link.refresh).
 */
export function forwardApplication(o: {
  name: string;
  upstream: () => UpstreamTarget;
  faults: LiveFaults;
  links: Set<Link>;
  logger: Logger;
}): Application {
  const linkOf = new WeakMap<Socket, Link>();
  // TCP upstreams are light connections once lightUsable() said yes (its check runs once per
  // process; ECHO_LIGHT=0 or ECHO_SHARED_READ=0 say no): until then, net.Sockets
  let lightUpstream = false;
  void lightUsable().then((ok) => {
    lightUpstream = ok;
  });
  return {
    name: `forward ${o.name}`,
    // the client leg may be a LightSocket too: what is used of it here and in FaultStream
    // (write, end, pause/resume, events, counters, resetLight, setNoDelay and localAddressOf)
    // is what it has
    light: true,
    serve(client, { peer }) {
      const link = new Link(client, o.faults);
      linkOf.set(client, link);
      // a forwarder passes each chunk on as it was sent: Nagle on either leg only adds a wait
      // for the peer's (maybe delayed) ACK before a small write goes out
      setNoDelay(client);
      if (client instanceof LightSocket) lightLinks.client++;
      o.links.add(link);
      // until the upstream answers, the client's bytes wait here (reading stops past PENDING_MAX)
      const pending: Buffer[] = [];
      let pendingBytes = 0;
      const hold = (d: Buffer) => {
        pending.push(d);
        pendingBytes += d.length;
        if (pendingBytes > PENDING_MAX) client.pause();
      };
      link.fromClient = hold;
      // a client accepted into the shared read buffer has its bytes given to sharedRead below
      if (!(SHARED_READ in client)) client.on('data', (d: Buffer) => link.fromClient(d));
      // a large read from the client goes on as is from the client's own buffer (readChunk):
      // read into again only once the upstream took it and no fault holds it
      else
        setReadInUse(client, () => {
          const up = link.upstream;
          return !up || !link.c2u || link.c2u.holding || up.writableLength > 0;
        });
      let clientEnded = false;
      client.once('end', () => {
        clientEnded = true;
      });
      client.on('error', (err) => {
        // the client reset: so is the upstream
        if (errorCode(err) === 'ECONNRESET' && link.upstream) resetSocket(link.upstream);
      });
      client.once('close', () => {
        o.links.delete(link);
        const up = link.upstream;
        // a clean close (both FINs) lets the upstream finish what it is sending; any other ends it
        if (up && !up.destroyed && client.readableEnded && !client.errored)
          up.once('close', () => link.dispose());
        else {
          link.dispose();
          up?.destroy();
        }
      });
      link.armReset();
      const target = o.upstream();
      // the upstream's bytes: to u2c once it exists (kept until then, though reads begin with the
      // connect and the resolution runs before any later read)
      const early: Buffer[] = [];
      const reads = new UpstreamReads(client, link);
      // TLS reads through its own stream; ECHO_SHARED_READ=0 keeps 'data' on both legs
      const ownReads = !target.connect.tls && sharedReadEnabled();
      let fromUpstream = (d: Buffer): void => {
        early.push(d);
      };
      const upstreamReader = {
        buffer: reads.next,
        callback: (n: number, buf: Buffer) => void fromUpstream(reads.chunk(n, buf)),
      };
      connectTcp({
        ...target.connect,
        allowHalfOpen: true,
        // under TLS the TCP socket is not the one handed back: set on it by connectTcp
        // (whose read-back of the options is a dozen getsockopt calls: plain TCP sets it below)
        ...(target.connect.tls ? { socketOptions: { ...target.connect.socketOptions, noDelay: true } } : {}),
        onread: ownReads ? upstreamReader : undefined,
      }).then(
        ({ socket: connected }) => {
          if (client.destroyed) {
            connected.destroy();
            return;
          }
          if (!target.connect.tls) connected.setNoDelay(true);
          // a TCP upstream read and written through its handle, without a net.Socket (a
          // FaultStream runs on it as well): as the echo's light connections
          const up =
            ownReads && lightUpstream && !target.connect.path
              ? ((lightFromSocket(connected, upstreamReader) as unknown as Socket | undefined) ?? connected)
              : connected;
          if (up !== connected) lightLinks.upstream++;
          link.upstream = up;
          if (target.sendProxy)
            up.write(
              buildProxyHeader(
                target.sendProxy,
                client.remoteAddress
                  ? { address: client.remoteAddress, port: client.remotePort ?? 0 }
                  : undefined,
                localAddressOf(client),
              ),
            );
          const onFault = (why: string) => noteCloseReason(client, why);
          const finish = (how: 'fin' | 'rst' | 'timeout') => {
            if (how === 'fin') {
              client.end();
              up.end();
            } else if (how === 'rst') {
              resetSocket(client);
              up.destroy();
            } else {
              client.destroy();
              up.destroy();
            }
          };
          link.c2u = new FaultStream(client, up, link.faultsFor('upstream'), onFault, finish);
          link.u2c = new FaultStream(up, client, link.faultsFor('downstream'), onFault, finish);
          const c2u = link.c2u;
          const u2c = link.u2c;
          // no fault: each chunk goes through the socket's handle (the read buffers ask `holding`)
          c2u.directWrites = true;
          u2c.directWrites = true;
          link.fromClient = (d) => c2u.data(d);
          fromUpstream = (d) => {
            u2c.data(d);
          };
          if (!ownReads) up.on('data', fromUpstream);
          for (const d of early) u2c.data(d);
          up.on('drain', () => c2u.drained());
          up.on('end', () => {
            noteCloseReason(client, 'upstream closed');
            u2c.end();
          });
          up.on('error', (err) => {
            if (errorCode(err) === 'ECONNRESET') {
              noteCloseReason(client, 'upstream reset');
              resetSocket(client);
            } else {
              noteCloseReason(client, `error upstream ${errorCode(err)}`);
              client.destroy();
            }
          });
          up.on('close', () => {
            // closed without a FIN to pass on (destroyed): the client goes too
            if (!up.readableEnded && !client.destroyed) client.destroy();
          });
          for (const d of pending) c2u.data(d);
          pending.length = 0;
          if (clientEnded) c2u.end();
          client.resume();
        },
        (err) => {
          const line = explainError(err, { role: 'client' }).line;
          o.logger.warn(
            { proxy: o.name, upstream: target.text, peer, code: errorCode(err) },
            `${o.name}: upstream ${target.text} unreachable for ${peer}: ${line}; the client is reset`,
          );
          noteCloseReason(client, `error upstream ${errorCode(err)}`);
          resetSocket(client);
        },
      );
    },
    end(client) {
      const link = linkOf.get(client);
      link?.c2u?.end();
    },
    drain(client) {
      linkOf.get(client)?.u2c?.drained();
    },
    // clients accepted into the process's shared read buffer: their bytes, copied out of it
    // (or, read into a buffer of their own, as they are)
    sharedRead(n, buf) {
      linkOf.get(this)?.fromClient(readChunk(this, n, buf));
    },
  };
}
