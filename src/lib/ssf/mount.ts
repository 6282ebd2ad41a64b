/**
 * `listen --ssf`: the SSF transmitter handler mounted on the listener.
 *
 * - The issuer is the listener's own URL (`http(s)://host:port`), so the metadata is served at
 *   `<url>/.well-known/ssf-configuration` and the API under `<url>/ssf/...` (see transmitter.ts).
 * - Management requests are authenticated like every other listener request (`listener.peerOf`:
 *   one of the `--token`s, or anyone when the listener has none).
 * - Delivery is poll only, and the poll endpoint every stream is given is the listener's own
 *   RFC 8936 `/poll`: the SETs the transmitter emits (verification, stream-updated, queued events)
 *   go into the listener's outbox through `listener.emit`, for every peer, and are redelivered
 *   until acked. So `pushpull poll`, `pushpull ssf verify` and any RFC 8936 receiver read them.
 * - Signed with a key whose public JWKS is served at `<url>/ssf/jwks.json`.
 */
import {shortNameOf} from '../events.js'
import {decodeToken} from '../set.js'
import type {Listener} from '../server.js'
import {describeSubject} from '../subject.js'
import {DELIVERY_POLL} from './metadata.js'
import {createSsfTransmitter, type EmittedEvent, type SsfTransmitter, type SsfTransmitterOptions} from './transmitter.js'

export type MountSsfOptions = Omit<SsfTransmitterOptions, 'authorize' | 'deliveryMethods' | 'issuer' | 'onEvent' | 'pollUrl' | 'token'> & {
  /** Default the listener's URL. Must be reachable by receivers (it is where they discover the metadata). */
  issuer?: string
  /** Also told of every SET emitted (after it was queued on the listener). */
  onEvent?: (event: EmittedEvent) => void
}

/** Create the transmitter and mount it on a listener that is already bound (`await listener.listen()`). */
export function mountSsfTransmitter(listener: Listener, options: MountSsfOptions): SsfTransmitter {
  const pollUrl = `${listener.url}${listener.paths.poll}`
  const transmitter = createSsfTransmitter({
    ...options,
    authorize: (req) => {
      listener.peerOf(req)
    },
    deliveryMethods: [DELIVERY_POLL],
    issuer: options.issuer ?? listener.url,
    onEvent: (event) => {
      const claims = decodeToken(event.token).payload
      const events = claims.events !== null && typeof claims.events === 'object' ? Object.keys(claims.events) : []
      const uri = events[0]
      listener.emit([
        {
          event: uri === undefined ? undefined : (shortNameOf(uri) ?? uri),
          jti: event.jti,
          subject: claims.sub_id === undefined ? undefined : describeSubject(claims.sub_id),
          token: event.token,
        },
      ])
      options.onEvent?.(event)
    },
    pollUrl: () => pollUrl,
  })
  listener.addRoutes(async (req, res, url) => transmitter.handle(req, res, url))
  return transmitter
}
