// echo-toolkit library API: echo servers as test fixtures, an echo client, the
// socket-option module and the error explainer. No process.exit anywhere below this file.
//
// Layout:
//   core/    parsing, errors (explainError), logging, socket options (koffi), listenTcp
//   server/  one listener for every mode (listener.ts), one handler (handler.ts), admission,
//            child processes (supervisor.ts, children.ts, fork.ts, workers.ts), startServer() (index.ts)
//   client/  connectTcp, echo client, chat, bench
//   udp/     UDP echo server and client
//   lab/     echo-lab scenarios, shared by the CLI and the tests
//   cli/     the commands: argv, signals and exit codes live only there

export {
  type ChatConnectOptions,
  type ChatListener,
  type ChatListenOptions,
  connectChat,
  listenChat,
} from './client/chat.js';
export { EchoConnection, type EchoOptions, echo, streamThrough } from './client/echo.js';
export { AccessControl, type Cidr, parseCidr } from './core/access.js';
export { type ConnectOptions, connectTcp, withRetry } from './core/connect.js';
export { ERRNO_TABLE, type ExplainedError, errorCode, explainError, unwrapError } from './core/errors.js';
export { type Fault, FaultSet, formatFault, parseFault } from './core/faults.js';
export { listenSocket, listenTcp } from './core/listen.js';
export type { Logger } from './core/log.js';
export { formatAddress, parseDuration, parseHost, parsePort, parseSize, UsageError } from './core/parse.js';
export { buildProxyHeader, type ProxyHeader, parseProxyHeader } from './core/proxy-protocol.js';
export type { ConnectionRecord, ServerTotals } from './core/records.js';
export {
  applySocketOptions,
  formatReport,
  hasNativeReusePort,
  type OptionReport,
  readSocketOptions,
  type SocketOptions,
} from './core/sockopts.js';
export { type TcpEntry, type TcpView, tcpStates } from './core/tcp-states.js';
export {
  type ClientTls,
  describeCertificate,
  parseFingerprint,
  type ServerTls,
  selfSignedTls,
  type TlsInfo,
} from './core/tls.js';
export { findScenario, runScenario, SCENARIOS, type ScenarioInfo, type ScenarioResult } from './lab/index.js';
export type { ServedOptions, ServerConfig } from './server/config.js';
export { startServer } from './server/index.js';
export type { CloseOptions, LiveConnection, ServerHandle } from './server/listener.js';
export {
  type EchoServer,
  type EchoServerOptions,
  startEchoServer,
  type TcpMode,
} from './server/tcp-server.js';
export { MAX_DATAGRAM, type UdpClientOptions, type UdpCounters, UdpEchoClient } from './udp/client.js';
export {
  BLOCKED_SOURCE_PORTS,
  startUdpEchoServer,
  type UdpEchoServer,
  type UdpEchoServerOptions,
  type UdpTotals,
} from './udp/server.js';
