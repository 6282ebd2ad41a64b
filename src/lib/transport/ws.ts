/**
 * The pushpull WebSocket transport (protocol.md sections 2 and 4): a client (`connectWebSocket`),
 * a server attached to an HTTP server (`attachWebSocketServer`), and the connection both share
 * (`PushpullSocket`). It moves message text; the session layer parses Communication Objects.
 *
 * Options and defaults:
 * | option | default | meaning |
 * |---|---|---|
 * | maxPayload | 1 MiB | largest incoming message; bigger closes with 1009, refused by the frame header |
 * | maxSendBytes | maxPayload | largest outgoing message; bigger rejects with ERR_LIMIT_EXCEEDED |
 * | highWaterMark | 1 MiB | send() waits for the flush while more than this is buffered |
 * | pingIntervalMs | 30 000 | heartbeat period (0 = off) |
 * | maxMissedPongs | 2 | unanswered pings before the peer is terminated as a zombie (1006, "zombie") |
 * | closeTimeoutMs | 5000 | wait for the peer's close frame before dropping the socket |
 * | handshakeTimeoutMs (client) | 10 000 | connect + TLS + upgrade |
 * | maxConnections / maxConnectionsPerAddress (server) | 1000 / 100 | 503 / 429 on the upgrade |
 */
export {
  type CloseCodeValue,
  type CloseInfo,
  type HeartbeatTimers,
  type PushpullSocketEvents,
  type ResolvedSocketOptions,
  type SocketOptions,
  CloseCode,
  closeErrorOf,
  DEFAULT_CLOSE_TIMEOUT_MS,
  DEFAULT_HIGH_WATER_MARK,
  DEFAULT_MAX_MISSED_PONGS,
  DEFAULT_MAX_PAYLOAD,
  DEFAULT_PING_INTERVAL_MS,
  isSendableCloseCode,
  MAX_CLOSE_REASON_BYTES,
  PushpullSocket,
  resolveSocketOptions,
  SUBPROTOCOL,
  truncateCloseReason,
  ZOMBIE_REASON,
} from './ws-socket.js'
export {
  type ConnectOptions,
  connectWebSocket,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_MAX_ERROR_BODY_BYTES,
  displayUrl,
  toWebSocketUrl,
} from './ws-client.js'
export {
  type AttachOptions,
  type WebSocketServerHandle,
  attachWebSocketServer,
  bearerAuthenticator,
  bearerTokenOf,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
  offeredSubprotocols,
  SHUTDOWN_REASON,
} from './ws-server.js'
