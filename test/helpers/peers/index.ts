/**
 * Spec peers: independent implementations of RFC 8935 push, RFC 8936 poll, pushpull HTTP (with
 * multi-SET push) and pushpull WebSocket, written from the specifications alone. Nothing here
 * imports src/ (ESLint enforces it), so tests of pushpull against these peers are not circular.
 */
export * from './http-util.js'
export * from './judge.js'
export * from './outbox.js'
export * from './poll-transmitter.js'
export * from './push-receiver.js'
export * from './pushpull-http.js'
export * from './pushpull-ledger.js'
export * from './pushpull-ws.js'
export * from './set-token.js'
export * from './wire.js'
