/*  heartbeat.c — peer liveness clock and capped exponential backoff.

    See heartbeat.h. Pure arithmetic on caller-supplied monotonic times, so
    tests drive `now` directly.
*/
#include "heartbeat.h"

#include <assert.h>

void
keel_peer_clock_init (keel_peer_clock_t *pc, int64_t interval_ms, int liveness, int64_t now)
{
    assert (pc);
    pc->interval_ms = interval_ms > 0 ? interval_ms : 1;
    pc->liveness = liveness > 0 ? liveness : 1;
    pc->last_recv = now;
    pc->last_send = now;
}

void
keel_peer_clock_received (keel_peer_clock_t *pc, int64_t now)
{
    pc->last_recv = now;
}

void
keel_peer_clock_sent (keel_peer_clock_t *pc, int64_t now)
{
    pc->last_send = now;
}

bool
keel_peer_clock_heartbeat_due (const keel_peer_clock_t *pc, int64_t now)
{
    return now - pc->last_send >= pc->interval_ms;
}

static int64_t
s_lost_at (const keel_peer_clock_t *pc)
{
    return pc->last_recv + pc->interval_ms * (int64_t) pc->liveness;
}

bool
keel_peer_clock_lost (const keel_peer_clock_t *pc, int64_t now)
{
    return now >= s_lost_at (pc);
}

int64_t
keel_peer_clock_next_deadline (const keel_peer_clock_t *pc)
{
    int64_t due = pc->last_send + pc->interval_ms;
    int64_t lost = s_lost_at (pc);
    return due < lost ? due : lost;
}

//  xorshift32 (Marsaglia); the state must never be 0.
static uint32_t
s_xorshift32 (uint32_t *state)
{
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return x;
}

void
keel_backoff_init (keel_backoff_t *b, int64_t initial_ms, int64_t max_ms, uint32_t seed)
{
    assert (b);
    b->initial_ms = initial_ms > 0 ? initial_ms : 1;
    b->max_ms = max_ms >= b->initial_ms ? max_ms : b->initial_ms;
    b->current_ms = b->initial_ms;
    b->rng = seed ? seed : 0x9E3779B9u;
}

int64_t
keel_backoff_next (keel_backoff_t *b)
{
    int64_t base = b->current_ms;
    int64_t spread = base / 5; // ±20%
    int64_t delay = base;
    if (spread > 0) {
        uint32_t r = s_xorshift32 (&b->rng);
        delay += (int64_t) ((uint64_t) r % (uint64_t) (2 * spread + 1)) - spread;
    }
    if (b->current_ms < b->max_ms)
        b->current_ms = b->current_ms > b->max_ms / 2 ? b->max_ms : b->current_ms * 2;
    return delay > 0 ? delay : 1;
}

void
keel_backoff_reset (keel_backoff_t *b)
{
    b->current_ms = b->initial_ms;
}
