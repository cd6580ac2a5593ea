/*  heartbeat.h — peer liveness and reconnect backoff (Paranoid Pirate).

    keel_peer_clock_t tracks one connection: any message received counts as
    a heartbeat; we owe the peer a heartbeat when we have sent nothing for
    one interval; the peer is lost after `liveness` intervals of silence
    (3 by default, DESIGN §4). All times are monotonic milliseconds
    (zclock_mono); the caller passes `now` so tests can drive time.

    keel_backoff_t is capped exponential backoff with jitter: an initial delay
    doubling to a cap the caller chooses (engines: 1 s to 3 s between rounds
    of their broker list), reset after a successful login.
*/
#ifndef KEEL_HEARTBEAT_H
#define KEEL_HEARTBEAT_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    int64_t interval_ms;
    int liveness; // intervals of silence before the peer is lost
    int64_t last_recv;
    int64_t last_send;
} keel_peer_clock_t;

void keel_peer_clock_init (keel_peer_clock_t *pc, int64_t interval_ms, int liveness, int64_t now);
void keel_peer_clock_received (keel_peer_clock_t *pc, int64_t now);
void keel_peer_clock_sent (keel_peer_clock_t *pc, int64_t now);
// True when we have sent nothing for one interval.
bool keel_peer_clock_heartbeat_due (const keel_peer_clock_t *pc, int64_t now);
// True when the peer has been silent for liveness intervals.
bool keel_peer_clock_lost (const keel_peer_clock_t *pc, int64_t now);
// The earliest time something must happen (heartbeat due or loss), for poll timeouts.
int64_t keel_peer_clock_next_deadline (const keel_peer_clock_t *pc);

typedef struct {
    int64_t initial_ms;
    int64_t max_ms;
    int64_t current_ms;
    uint32_t rng; // xorshift state for jitter
} keel_backoff_t;

void keel_backoff_init (keel_backoff_t *b, int64_t initial_ms, int64_t max_ms, uint32_t seed);
// Returns the next delay (current ± up to 20% jitter) and doubles current up to max.
int64_t keel_backoff_next (keel_backoff_t *b);
void keel_backoff_reset (keel_backoff_t *b);

#endif
