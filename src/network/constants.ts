/**
 * Protocol ids are `/${PREFIX}/${name}/${version}`; bump the version on any
 * incompatible change. A node compares a peer's protocols with its own by the
 * `/${PREFIX}/${name}/` prefix (versions.ts): a peer that lists another
 * version only is reported as incompatible, naming both.
 */
export const PROTOCOL_PREFIX = 'syncmesh'
export const AUTH_PROTOCOL = `/${PROTOCOL_PREFIX}/auth/1.0.0`
/**
 * Sync protocol version 2 (protocols/sync/completeness.md): batches carry the
 * origin's attestations of which entries are live, so a relay cannot leave a
 * live entry or a run out. A version 2 node speaks version 2 only: a version
 * 1 peer is reported as SYNC_PROTOCOL_MISMATCH (versions.ts), see
 * docs/upgrading.md.
 */
export const SYNC_PROTOCOL = `/${PROTOCOL_PREFIX}/sync/2.1.0`
/**
 * The sync protocol of a node that carries rules by rule streams (the
 * experimental node option `streams`, protocols/sync/streams.md): such a
 * node and one of SYNC_PROTOCOL do not open sessions with each other, and
 * say so (versions.ts), instead of syncing registries but no records.
 */
export const SYNC_PROTOCOL_STREAMS = `/${PROTOCOL_PREFIX}/sync/3.0.0-streams`
export const SYNC_PROTOCOL_VERSION = 2

/**
 * A connection that has not proved the mesh key by then is closed. An idle
 * node proves it in a few ms; the margin is for overloaded ones (30 nodes on
 * 2 cores took over 2 s, and every failure costs a reconnect and a re-sync).
 */
export const AUTH_TIMEOUT_MS = 10_000
/** Auth messages are tiny. */
export const AUTH_MAX_MESSAGE = 1024
/** A peer that failed authentication is refused for this long. */
export const AUTH_BAN_MS = 30_000

/** Largest sync frame accepted; larger frames abort the stream. */
export const MAX_FRAME_BYTES = 4 * 1024 * 1024
/** A batch is cut at this many entries or bytes, whichever comes first. */
export const BATCH_MAX_ENTRIES = 512
export const BATCH_MAX_BYTES = 512 * 1024
/** Batches a receiver accepts in flight (credit); bounds its read buffer to ~credit × batch bytes. */
export const INITIAL_CREDIT = 16
/** Each side restates its version vector this often (anti-entropy and keep-alive). */
export const ANTI_ENTROPY_INTERVAL_MS = 15_000
/** How often authenticated connections without a sync session get one. */
export const SESSION_MAINTAIN_MS = 2_000
/** The dialer gives up opening its sync stream after this long (and drops the connection: it is dead). */
export const SYNC_OPEN_TIMEOUT_MS = 10_000
/** Max sync streams a peer may open per connection. */
export const MAX_SYNC_STREAMS = 2

/** Redial backoff for known peers. */
export const REDIAL_MIN_MS = 500
export const REDIAL_MAX_MS = 60_000
export const DIAL_TIMEOUT_MS = 5_000

/** Connections a node seeks through registry discovery. */
export const DEFAULT_TARGET_CONNECTIONS = 6
/** Hard cap on open connections (libp2p refuses and prunes beyond it). */
export const DEFAULT_MAX_CONNECTIONS = 16
/** A full node (at the cap) that knows unconnected peers drops a random connection about this often. */
export const SHUFFLE_INTERVAL_MS = 10_000
/** A peer that sends invalid (forged, tampered) data this often within the window is refused for OFFENCE_BAN_MS. */
export const OFFENCE_LIMIT = 3
export const OFFENCE_WINDOW_MS = 10 * 60_000
export const OFFENCE_BAN_MS = 10 * 60_000
/**
 * A sync peer that sends nothing (not even its periodic vector) for this long
 * is dropped, with its connection: this, not libp2p's ping, decides that a
 * link is dead (see createHost).
 */
export const SILENT_PEER_MS = 4 * ANTI_ENTROPY_INTERVAL_MS
/** Most control frames (hello, vector, have, credit) a peer may send per second. */
export const MAX_CONTROL_FRAMES_PER_SECOND = 5_000
/** Most bytes per second one peer can make this node ingest (batches beyond wait for credit). */
export const MAX_PEER_BYTES_PER_SECOND = 64 * 1024 * 1024
/** Unread bytes a sync stream may hold: credit × batch size plus slack; beyond that the peer ignored its credit. */
export const MAX_READ_BUFFER_BYTES = INITIAL_CREDIT * (BATCH_MAX_BYTES + 1024 * 1024) + MAX_FRAME_BYTES

/**
 * The door: an inbound connection is "at the door" from the moment its TCP
 * socket is accepted until it has proved the mesh key (Noise, yamux and the
 * auth exchange). Connections at the door have their own budget, so they
 * never take the places of connections that have proved the key.
 */
/** Most inbound connections at the door at once, from all addresses together. */
export const DOOR_MAX_PENDING = 64
/** Most inbound connections at the door at once from one remote IP address. */
export const DOOR_MAX_PER_ADDRESS = 8
/** Noise and yamux must be up within this long of the socket being accepted (an honest peer needs a few ms). */
export const DOOR_HANDSHAKE_TIMEOUT_MS = 5_000
/** An address whose connections fail (handshake or auth) this often within DOOR_FAILURE_WINDOW_MS ... */
export const DOOR_FAILURE_LIMIT = 10
export const DOOR_FAILURE_WINDOW_MS = 60_000
/** ... is refused, whatever peer id it uses, for this long. */
export const DOOR_REFUSE_MS = 60_000
/** Addresses (failure counts, refusals) remembered at most; the oldest are forgotten first. */
export const DOOR_MAX_ADDRESSES = 4096
/** Peer ids refused after failed authentication remembered at most (the oldest refusal is dropped first). */
export const AUTH_MAX_BANNED = 4096
/** Warnings about failed authentication logged per remote address per minute at most (then one summary). */
export const AUTH_WARNINGS_PER_MINUTE = 5

/**
 * Origins a sync session tracks for its peer (what the peer holds, what it
 * announced) beyond those this node knows (in its log or its registry): an
 * origin nobody registered costs at most this many entries per session.
 */
export const SESSION_MAX_UNKNOWN_ORIGINS = 256
