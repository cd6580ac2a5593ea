/*  session.h — the driver ↔ broker session state machine (DESIGN §4,
    "Driver loses its broker").

    This module decides *when* to connect, hello, heartbeat, retry, fail over,
    probe the primary and fail back; it owns no socket and reads no clock.
    The driver actor (actor.c) feeds it events with the current monotonic
    time and carries out the actions it returns. Tests drive it the same way,
    with invented times.

    Brokers are numbered 0 (the primary) .. n-1 (the failover brokers in the
    order configured). States:

      CONNECTING  a fresh DEALER to broker `current` has sent DriverHello
                  and waits for DriverWelcome. With no answer by the attempt
                  deadline (3·H, growing with backoff) it reconnects with a
                  fresh socket and hellos again. After DSBrokerTimeout on this
                  broker it moves to the next one (FAILOVER). When a whole
                  pass over the list has gone unanswered it reports GIVE_UP
                  once per pass (the application's wait call fails with "no
                  broker reachable") and keeps cycling.
      READY       DriverWelcome received: tasks flow. Heartbeat when idle for
                  H; the broker silent for 3·H → CONNECTING on the same broker
                  (RETRYING). Its DSBrokerTimeout then counts from its last
                  message, not from the loss: the move to the next broker
                  comes at keel_session_move_at (deviation from DESIGN §4,
                  see docs/operations.md §3, issue 12).
                  On a failover broker the primary is probed every
                  DSPrimaryRetryInterval; a probe's DriverWelcome → the probe
                  socket becomes the session (FAILBACK), the failover broker
                  gets Detach.

    Resilient pair (DESIGN §6). A DriverWelcome may name the broker's
    pair_peer; when that is one of the configured brokers (compared
    without surrounding blanks) the session remembers it for that broker,
    and so does a Passive that names a configured broker as the active
    one (its sender is that broker's pair peer). Two brokers are "a pair"
    when either named the other. Between the two members of a pair:
      - READY and the broker silent for 3·H: CONNECT(its peer) at once,
        no DSBrokerTimeout wait, no retry of the same broker first, and no
        FORGET_ACCEPTED (the peer mirrors what the lost one accepted; the
        welcome's unknown_services still cause full resubmissions);
      - no move between them ever emits FORGET_ACCEPTED (Passive, the
        DSBrokerTimeout move, a probe's welcome);
      - the primary is not probed from its pair peer (no automatic
        failback in a pair: a returning primary comes back passive), and
        a probe's welcome from it sends no Detach (the pair would mirror it).
    Passive on the session socket (CONNECTING or READY): CONNECT at once
    to the active broker it names when configured, else to the next one.
    Once the target too has answered Passive since the last welcome (no
    active broker yet: both just started), the move waits a backoff (3·H
    doubling to the attempt cap) in CONNECTING on the same socket: no spin.
    Passive on the probe socket: the probe failed (PROBE_CLOSE).
    Epochs: keel_session_admit drops any message from a broker whose last
    welcome named a pair peer when its Envelope.epoch is below the highest
    epoch seen from that broker or its pair peer. Standalone brokers are
    not checked (their epochs are independent). Passive is never dropped
    (it changes no state; it only sends the driver elsewhere).

      state       event              actions                         next
      ----------  -----------------  ------------------------------  ----------
      (new)       START              CONNECT(0), STATUS(connecting)  CONNECTING
      CONNECTING  WELCOME            RESYNC, TELL_DELIVERED, STATUS  READY
      CONNECTING  TICK attempt due   CONNECT(same)                   CONNECTING
      CONNECTING  TICK progress due  STATUS(still connecting)        CONNECTING
      CONNECTING  TICK broker t/o    FORGET_ACCEPTED, STATUS(trying) CONNECTING
                                     CONNECT(next)
                                     [GIVE_UP after a whole pass]
      CONNECTING  RELOGIN            HELLO                           CONNECTING
      READY       TICK idle H        HEARTBEAT                       READY
      READY       TICK silent 3·H    STATUS(lost: time left),        CONNECTING
                                     CONNECT(same)
      READY       RELOGIN            HELLO                           CONNECTING
      READY       WELCOME            RESYNC, TELL_DELIVERED          READY
      READY       TICK silent 3·H,   STATUS(failover: pair peer      CONNECTING
                  broker in a pair   takes over), CONNECT(peer)
      CONNECTING  PASSIVE            STATUS(trying), [FORGET_ACCEPTED CONNECTING
      or READY                       unless within a pair],
                                     CONNECT(named active or next)
      CONNECTING  PASSIVE, target    STATUS(trying ... in T)         CONNECTING
      or READY    said Passive too   (CONNECT at attempt deadline)
      any         PROBE_PASSIVE      PROBE_CLOSE                     same
      any         TICK probe due     PROBE_OPEN (not on primary      same
                                     nor on its pair peer)
      any         TICK probe t/o     PROBE_CLOSE                     same
      any         PROBE_WELCOME      ADOPT_PROBE, FORGET_ACCEPTED,   READY
                                     RESYNC, TELL_DELIVERED,
                                     DETACH_OLD, CLOSE_OLD,
                                     STATUS(back on primary)
      any         PROBE_WELCOME from ADOPT_PROBE, RESYNC,             READY
                  the current one's  TELL_DELIVERED, CLOSE_OLD,
                  pair peer          STATUS(failover)

    Resync (actor): services in DriverWelcome.unknown_services are
    resubmitted with every outstanding task; for the others only tasks the
    broker has not Accepted are resent. FORGET_ACCEPTED precedes a change of
    broker, so on a new broker every outstanding task is resent.

    Which results the driver holds: every DriverHello lists, per open
    service, the task ids whose results the driver has (as ranges, cut at
    a size cap); TELL_DELIVERED, right after each welcome and before any
    task is resent, sends the whole current set in ResultAck.delivered
    messages — what the hello could not carry and what arrived since it
    was built (a probe's hello may be DSPrimaryRetryInterval old). So a
    primary the driver returns to runs again only the tasks still in
    flight, and sends again only their results.
*/
#ifndef KEEL_DRIVER_SESSION_H
#define KEEL_DRIVER_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "heartbeat.h"

typedef enum { KEEL_SESSION_CONNECTING = 0, KEEL_SESSION_READY } keel_session_state_t;

typedef enum {
    KEEL_SESSION_EV_START = 0,     // first step after keel_session_new
    KEEL_SESSION_EV_TICK,          // time passed; check timers
    KEEL_SESSION_EV_WELCOME,       // DriverWelcome on the session socket
    KEEL_SESSION_EV_RELOGIN,       // Relogin on the session socket
    KEEL_SESSION_EV_PROBE_WELCOME, // DriverWelcome on the primary probe socket
    KEEL_SESSION_EV_PASSIVE,       // Passive on the session socket
    KEEL_SESSION_EV_PROBE_PASSIVE  // Passive on the primary probe socket
} keel_session_event_t;

typedef enum {
    KEEL_SESSION_DO_CONNECT =
        0, // close the session socket, open a fresh DEALER to `broker`, send DriverHello
    KEEL_SESSION_DO_HELLO,           // send DriverHello on the session socket
    KEEL_SESSION_DO_HEARTBEAT,       // send Heartbeat on the session socket
    KEEL_SESSION_DO_FORGET_ACCEPTED, // every outstanding task counts as not Accepted (new broker)
    KEEL_SESSION_DO_RESYNC,          // apply the DriverWelcome just received (resubmit / resend)
    KEEL_SESSION_DO_TELL_DELIVERED, // tell the session's broker which task results the driver holds
    KEEL_SESSION_DO_PROBE_OPEN,     // open a DEALER to broker 0 and send DriverHello on it
    KEEL_SESSION_DO_PROBE_CLOSE,    // close the probe socket
    KEEL_SESSION_DO_ADOPT_PROBE, // the probe socket becomes the session socket; the old one is kept for DETACH_OLD
    KEEL_SESSION_DO_DETACH_OLD, // send Detach{open services} on the old session socket (READY or not)
    KEEL_SESSION_DO_CLOSE_OLD, // close the old session socket
    KEEL_SESSION_DO_STATUS,    // tell the application: `status` kind with `text`
    KEEL_SESSION_DO_GIVE_UP    // no broker answered in a whole pass over the list
} keel_session_do_t;

// Kinds of status the session reports (mirrors keel_status_kind_t in driver.h).
typedef enum {
    KEEL_SESSION_STATUS_CONNECTED = 0, // first welcome from a broker
    KEEL_SESSION_STATUS_LOST,          // the broker went silent; retrying it
    KEEL_SESSION_STATUS_RECONNECTED,   // the same broker answered again
    KEEL_SESSION_STATUS_FAILOVER,      // now on a failover broker
    KEEL_SESSION_STATUS_FAILBACK,      // back on the primary
    KEEL_SESSION_STATUS_TRYING,        // moved on to try the next broker
    KEEL_SESSION_STATUS_CONNECTING,    // START: connecting to the primary, for how long
    KEEL_SESSION_STATUS_STILL_CONNECTING // progress while CONNECTING: for how long already, how long more
} keel_session_status_t;

#define KEEL_SESSION_MAX_ACTIONS 12
#define KEEL_SESSION_TEXT_MAX    300

typedef struct {
    keel_session_do_t what;
    int broker;                   // CONNECT: which broker
    keel_session_status_t status; // STATUS: kind
    char text[KEEL_SESSION_TEXT_MAX];
} keel_session_action_t;

typedef struct {
    int count;
    keel_session_action_t actions[KEEL_SESSION_MAX_ACTIONS];
} keel_session_out_t;

typedef struct {
    int nbrokers;               // >= 1
    const char *const *brokers; // endpoints, for status texts; copied
    int64_t broker_timeout_ms;  // DSBrokerTimeout
    int64_t primary_retry_ms;   // DSPrimaryRetryInterval
    int64_t heartbeat_ms;       // DSHeartbeatInterval, until the broker says otherwise
    uint32_t seed;              // backoff jitter seed
} keel_session_config_t;

// One event with what the session needs of its message.
typedef struct {
    keel_session_event_t event;
    uint64_t heartbeat_ms; // WELCOME, PROBE_WELCOME: DriverWelcome.heartbeat_ms (0 = keep H)
    const char *pair_peer; // WELCOME, PROBE_WELCOME: DriverWelcome.pair_peer (NULL: none)
    const char *active;    // PASSIVE, PROBE_PASSIVE: Passive.active (NULL: not known)
    const char *reason;    // PASSIVE: Passive.reason, for the status text (NULL: none)
} keel_session_input_t;

typedef struct _keel_session_t keel_session_t;

// Creates a session in CONNECTING (nothing done yet: step START next).
// Returns NULL on allocation failure or an empty broker list.
keel_session_t *keel_session_new (const keel_session_config_t *config, int64_t now);
void keel_session_destroy (keel_session_t **self_p);

// Applies one event at monotonic time now; out receives the actions to
// carry out, in order (out->count is reset first). For WELCOME and
// PROBE_WELCOME, heartbeat_ms is DriverWelcome.heartbeat_ms (0 = keep H).
void keel_session_step (keel_session_t *self, keel_session_event_t event, uint64_t heartbeat_ms,
                        int64_t now, keel_session_out_t *out);
// The same with everything an event may carry (keel_session_step is this
// with no pair_peer, active or reason).
void keel_session_apply (keel_session_t *self, const keel_session_input_t *in, int64_t now,
                         keel_session_out_t *out);

// The epoch rule, asked before a broker message is used (not for Passive).
// broker: the index the message came from (the session socket's broker,
// or 0 for the probe). welcome: the message is a DriverWelcome, pair_peer
// its pair_peer. Returns false (and counts it) when the broker takes part
// in a pair (this welcome, or its last one, named a pair peer) and
// has_epoch with an epoch below the highest seen from it or its pair
// peer: drop the message, and do not count it as a sign of life. True
// otherwise, recording the epoch.
bool keel_session_admit (keel_session_t *self, int broker, bool welcome, const char *pair_peer,
                         bool has_epoch, uint64_t epoch);
// Messages keel_session_admit dropped so far.
uint64_t keel_session_stale_count (const keel_session_t *self);
// The configured broker known as the pair peer of `broker`; -1: none.
int keel_session_pair_peer (const keel_session_t *self, int broker);
// The configured broker whose endpoint is `endpoint` once leading and
// trailing blanks are trimmed from both; -1: none.
int keel_session_find_broker (const keel_session_t *self, const char *endpoint);

// A member of a shared store listed in a welcome (cluster_members): added
// after the brokers known so far, so that the session may turn to it (as
// a failover broker, or as a pair peer the welcome names), and returned
// with its index; an endpoint already known returns its index. -1 for a
// blank or over-long endpoint, or past KEEL_SESSION_LEARNED_MAX learned
// brokers (or out of memory). Call before applying the welcome.
#define KEEL_SESSION_LEARNED_MAX 16
int keel_session_learn (keel_session_t *self, const char *endpoint);
// Broker i is a member of a shared store's cluster (a welcome listed the
// members): a move between two members keeps the accepted flags (one
// store holds them), and a member's epochs are not checked against
// another's (each member has its own; the store fences a member that lost
// its work). Call before admitting the welcome.
void keel_session_member (keel_session_t *self, int broker);
// Endpoint of broker i ("?" out of range), and how many brokers there are
// (configured plus learned).
const char *keel_session_endpoint (const keel_session_t *self, int broker);
int keel_session_nbrokers (const keel_session_t *self);

// Liveness bookkeeping: any message received on the session socket, and
// any message sent on it.
void keel_session_received (keel_session_t *self, int64_t now);
void keel_session_sent (keel_session_t *self, int64_t now);

// When a session that noticed at lost_at the loss of a broker whose last
// message came at last_recv moves on to the next broker: DSBrokerTimeout
// after that last message, so the move does not wait for the 3·H it took
// to notice; but never sooner than min(DSBrokerTimeout, H + 0.6 s) after
// the loss was noticed. That floor gives the same broker a fresh hello
// with time to answer (a restart on the same store is back within a
// heartbeat or two) and lets engines reach the failover broker first:
// they notice up to H after the driver (each heard the broker at most H
// before it died) and try the primary for 0.5 s before the failover
// broker. Never later than lost_at + DSBrokerTimeout (the rule before).
int64_t keel_session_move_at (int64_t last_recv, int64_t lost_at, int64_t broker_timeout_ms,
                              int64_t heartbeat_ms);

// The earliest time a TICK may have something to do (for poll timeouts).
int64_t keel_session_next_deadline (const keel_session_t *self);

keel_session_state_t keel_session_state (const keel_session_t *self);
// Index of the broker the session socket talks to.
int keel_session_broker (const keel_session_t *self);
// The heartbeat interval in use.
int64_t keel_session_heartbeat_ms (const keel_session_t *self);
const char *keel_session_state_name (keel_session_state_t state);

// Writes ms as a person reads it ("250 ms", "1.5 s", "2 s", "5 min",
// "4 min 30 s", "1 h 30 min", "1 d 2 h": two units at most) into buf and
// returns buf. Negative counts as 0.
char *keel_session_duration_text (int64_t ms, char *buf, size_t size);

#endif
