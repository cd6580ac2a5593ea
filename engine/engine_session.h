/*  engine_session.h — the engine ↔ broker session: one explicit state machine.

    States
      OFFLINE     no broker connection; waiting until retry_at to try the
                  current broker. The broker list is tried in ROUNDS,
                  primary first: a failed try moves to the next broker at
                  once; after the last one the next round starts after a
                  backoff (1 s doubling to 3 s, ± 20%). The first round
                  starts at once when ONLINE is left (or at process start).
      LOGGING_IN  a fresh DEALER (ZMQ_IMMEDIATE) is connecting; EngineLogin
                  leaves once the connection is made (the socket becomes
                  writable). Not sent within the connect time (0.5 s in the
                  first round, then 1, 2, 4 s; never more than 3·H): that
                  broker is skipped. Sent: its LoginReply is awaited for
                  3·H. So an engine tries its failover broker at most 0.5 s
                  after losing its primary (plus 3·H if the primary still
                  accepts connections but does not answer), sooner than any
                  driver with DSBrokerTimeout >= 2 s moves there.
      ONLINE      logged in; work messages are accepted; heartbeats flow; on
                  a non-primary broker the primary is probed every
                  PrimaryRetryInterval
      STOPPED     the session is over (clean stop, or Engine Timeout with
                  EngineTimeoutAction=exit): keel_engine_session_exit_code says how

    Resilient pair (DESIGN §6)
      - LoginReply.pair_peer names the broker's peer; when it is one of the
        configured brokers (compared without surrounding blanks) the
        session remembers it for that broker. ONLINE and that broker
        silent for 3·H: the round starts at the pair peer, at once (it
        takes over with the mirrored store), not at the primary. The
        primary is not probed from its pair peer (no automatic failback
        in a pair).
      - Passive from the broker being logged in to (LOGGING_IN) or logged
        in to (ONLINE): disconnect and try, at once, the active broker it
        names when that is configured and no Passive sent the session there
        in this round yet (from ONLINE, naming none: the next broker, at
        once); otherwise it counts as a failed try (the next
        broker at once, the backoff after the round's last), so two passive
        brokers cost one round and one backoff, not a spin. Tasks keep
        running and results are kept: the next login claims them. From
        ONLINE the Engine Timeout counts from the Passive.
      - Passive on the probe socket: the probe failed (closed; no move).
      - Epochs: a message from a broker whose LoginReply named a pair peer
        is dropped (not even counted as a sign of life) when its
        Envelope.epoch is below the highest epoch seen from that broker or
        its pair peer (keel_engine_session_stale). Standalone brokers are
        not compared (independent epochs). Passive is never dropped.

    Events come from three calls: keel_engine_session_tick (timers: retry due,
    login timeout, heartbeat due, broker silent, probe due/timeout, Engine
    Timeout; the socket became writable), keel_engine_session_on_message (a
    validated broker message: LoginReply, Relogin, work) and
    keel_engine_session_on_probe_reply / keel_engine_session_stop. Every transition is in
    one switch in engine_session.c.

    The session owns no socket and no task: it acts through keel_engine_session_ops_t,
    which the engine implements (and unit tests fake). Everything not
    ONLINE counts as offline for the Engine Timeout, which runs from process
    start or from the moment ONLINE was left.
*/
#ifndef KEEL_ENGINE_SESSION_H
#define KEEL_ENGINE_SESSION_H

#include <stdbool.h>
#include <stdint.h>
#include "engine_config.h"
#include "wire.h"

typedef enum {
    KEEL_ENGINE_SESSION_OFFLINE,
    KEEL_ENGINE_SESSION_LOGGING_IN,
    KEEL_ENGINE_SESSION_ONLINE,
    KEEL_ENGINE_SESSION_STOPPED
} keel_engine_session_state_t;

typedef enum {
    KEEL_ENGINE_SEV_RETRY_DUE,      // OFFLINE: time to try the current broker
    KEEL_ENGINE_SEV_WRITABLE,       // LOGGING_IN: the login could not be sent yet; try again
    KEEL_ENGINE_SEV_LOGIN_OK,       // LoginReply{ok=true}
    KEEL_ENGINE_SEV_LOGIN_REFUSED,  // LoginReply{ok=false}
    KEEL_ENGINE_SEV_LOGIN_TIMEOUT,  // not connected in time, or no LoginReply within 3·H
    KEEL_ENGINE_SEV_WORK,           // Assign, Cancel, ResultAck, Heartbeat from the broker
    KEEL_ENGINE_SEV_RELOGIN,        // Relogin{reason}
    KEEL_ENGINE_SEV_PASSIVE,        // Passive{active, reason}: LOGGING_IN or ONLINE
    KEEL_ENGINE_SEV_HEARTBEAT_DUE,  // nothing sent for one interval
    KEEL_ENGINE_SEV_BROKER_SILENT,  // nothing received for 3 intervals
    KEEL_ENGINE_SEV_PROBE_DUE,      // on a failover broker: time to probe the primary
    KEEL_ENGINE_SEV_PROBE_ANSWERED, // the primary answered the probe
    KEEL_ENGINE_SEV_PROBE_TIMEOUT,  // the primary did not answer
    KEEL_ENGINE_SEV_PROBE_PASSIVE,  // the primary answered the probe with Passive
    KEEL_ENGINE_SEV_ENGINE_TIMEOUT, // offline longer than the Engine Timeout
    KEEL_ENGINE_SEV_STOP            // SIGTERM / SIGINT
} keel_engine_session_event_t;

typedef struct {
    // Opens a fresh DEALER to broker number index. False if it cannot.
    bool (*connect) (void *arg, int index);
    // Destroys the broker DEALER (no-op if none).
    void (*disconnect) (void *arg);
    // Sends EngineLogin with every held task. False if it could not be sent now.
    bool (*send_login) (void *arg);
    // Sends Heartbeat{running}. False if it could not be sent.
    bool (*send_heartbeat) (void *arg);
    // Sends Logoff{reason} (best effort).
    void (*send_logoff) (void *arg, const char *reason);
    // Login accepted: apply verdicts, (re)send results.
    void (*logged_in) (void *arg, const Keel__LoginReply *reply);
    // ONLINE work message (Assign, Cancel, ResultAck, Heartbeat).
    void (*work) (void *arg, const keel_env_t *env);
    // Opens a probe DEALER to the primary and sends a Heartbeat on it.
    bool (*probe_open) (void *arg);
    void (*probe_close) (void *arg);
    // Engine Timeout: kill every task, drop every held result.
    void (*engine_timeout) (void *arg);
    // Start over as a fresh session (new session id, empty state).
    void (*new_session) (void *arg);
} keel_engine_session_ops_t;

typedef struct _keel_engine_session_t keel_engine_session_t;

// Creates a session in OFFLINE with the first try due at `now`. cfg (broker
// list, heartbeat, timeouts) and ops/arg must outlive the session.
keel_engine_session_t *keel_engine_session_new (const keel_engine_config_t *cfg,
                                                const keel_engine_session_ops_t *ops, void *arg,
                                                int64_t now);
void keel_engine_session_destroy (keel_engine_session_t **self_p);

keel_engine_session_state_t keel_engine_session_state (const keel_engine_session_t *self);
const char *keel_engine_session_state_name (keel_engine_session_state_t state);
// Index of the broker tried or logged in to (0 = primary).
int keel_engine_session_broker (const keel_engine_session_t *self);
int64_t keel_engine_session_heartbeat_ms (const keel_engine_session_t *self);
int64_t keel_engine_session_engine_timeout_ms (const keel_engine_session_t *self);
// While it moves home (logged off a failover broker to log in to its
// primary, carrying its tasks): that broker's name, for EngineLogin.moved_from;
// "" otherwise (cleared by the next login).
const char *keel_engine_session_moved_from (const keel_engine_session_t *self);
// Process exit code once STOPPED: 0 clean stop, 3 Engine Timeout (exit).
int keel_engine_session_exit_code (const keel_engine_session_t *self);
// True while LOGGING_IN with the login not yet sent: poll the socket for POLLOUT.
bool keel_engine_session_wants_writable (const keel_engine_session_t *self);
// True while a probe of the primary is open.
bool keel_engine_session_probing (const keel_engine_session_t *self);

// Raises every timer event that is due at now. Call once per loop turn.
void keel_engine_session_tick (keel_engine_session_t *self, int64_t now);

// The earliest time keel_engine_session_tick has something to do.
int64_t keel_engine_session_next_deadline (const keel_engine_session_t *self);

// A LoginReply that logs in must carry timers the session can adopt: the
// wire validator checks their lower bounds, this their upper ones (beyond
// them the timer arithmetic would overflow). True for any other message;
// false with err filled for one the engine must drop as malformed.
bool keel_engine_session_reply_usable (const keel_env_t *env, keel_error_t *err);

// A validated message from the broker DEALER. Returns true if it was
// expected in this state; false when dropped (the caller counts it).
bool keel_engine_session_on_message (keel_engine_session_t *self, const keel_env_t *env,
                                     int64_t now);

// Any valid message on the probe socket: the primary is alive.
void keel_engine_session_on_probe_reply (keel_engine_session_t *self, int64_t now);
// Passive on the probe socket (active: Passive.active, NULL: unknown): the
// primary is the passive member of a pair; the probe failed.
void keel_engine_session_on_probe_passive (keel_engine_session_t *self, const char *active,
                                           int64_t now);

// True when env, from the current broker, falls under the epoch rule and
// its epoch is below the highest seen from that broker's pair: the caller
// drops it (keel_engine_session_on_message also refuses it).
bool keel_engine_session_stale (const keel_engine_session_t *self, const keel_env_t *env);
// The configured broker its LoginReply named as pair peer of broker; -1: none.
int keel_engine_session_pair_peer (const keel_engine_session_t *self, int broker);

// A member of a shared store a LoginReply listed (cluster_members): added
// after the brokers known so far (up to KEEL_ENGINE_MAX_BROKERS in all), so
// the engine may turn to it; returns its index (an endpoint already known:
// its index), -1 when blank, over-long or no room. The session learns the
// members of every LoginReply itself; this is for tests and the daemon.
int keel_engine_session_learn (keel_engine_session_t *self, const char *endpoint);
// Endpoint of broker i, configured or learned ("?" out of range).
const char *keel_engine_session_endpoint (const keel_engine_session_t *self, int broker);
// The configured broker whose endpoint is `endpoint` once both are trimmed
// of leading and trailing blanks; -1: none.
int keel_engine_session_find_broker (const keel_engine_session_t *self, const char *endpoint);

// Records that something was sent to the broker (resets the heartbeat timer).
void keel_engine_session_sent (keel_engine_session_t *self, int64_t now);

// Stop request: log off if ONLINE, go STOPPED (exit code 0).
void keel_engine_session_stop (keel_engine_session_t *self, int64_t now);

// Feeds one event to the state machine (the calls above use it; tests too).
void keel_engine_session_event (keel_engine_session_t *self, keel_engine_session_event_t event,
                                const keel_env_t *env, int64_t now);

#endif
