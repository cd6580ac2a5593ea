/*  test_pair.c — the resilient pair's state machine (broker/pair.h) driven
    with invented times: who becomes active at start, the Binary Star rule
    (peer lost AND a client vote), the mirror-in-sync condition, demotion
    on a higher epoch, links, and the unsure state after a pause.
*/
#include <criterion/criterion.h>

#include "pair.h"

#define H 250
#define T 750 // PairTimeout

static keel_pair_t *
s_new (bool primary, int nlinks, uint64_t seq, uint64_t epoch)
{
    keel_pair_config_t c = {
        .primary = primary, .nlinks = nlinks, .timeout_ms = T, .heartbeat_ms = H
    };
    keel_pair_t *p = keel_pair_new (&c, seq, epoch, 1000);
    cr_assert_not_null (p);
    return p;
}

static keel_pair_peer_t
s_peer (keel_pair_state_t state, uint64_t epoch, uint64_t seq, uint64_t applied_epoch)
{
    return (keel_pair_peer_t) {
        .state = state, .epoch = epoch, .applied_seq = seq, .applied_epoch = applied_epoch
    };
}

static bool
s_has_event (keel_pair_t *p, keel_pair_event_t want)
{
    keel_pair_event_t ev;
    bool found = false;
    while ((ev = keel_pair_next_event (p)) != KEEL_PAIR_EV_NONE)
        found = found || ev == want;
    return found;
}

// A passive in sync with an active peer, at time now.
static keel_pair_t *
s_passive_in_sync (int64_t now)
{
    keel_pair_t *p = s_new (false, 1, 10, 1);
    keel_pair_peer_t active = s_peer (KEEL_PAIR_ACTIVE, 2, 10, 1);
    cr_assert_eq (keel_pair_heard (p, 0, &active, now), KEEL_PAIR_DO_SYNC);
    keel_pair_set_synced (p, true);
    keel_pair_tick (p, now);
    cr_assert_eq (keel_pair_state (p), KEEL_PAIR_PASSIVE);
    return p;
}

Test (pair, the_newer_store_becomes_active_and_ties_go_to_the_primary)
{
    keel_pair_t *a = s_new (true, 1, 5, 1);
    keel_pair_t *b = s_new (false, 1, 5, 1);
    keel_pair_peer_t pb = s_peer (KEEL_PAIR_BACKUP, 0, 5, 1);
    keel_pair_peer_t pa = s_peer (KEEL_PAIR_PRIMARY, 0, 5, 1);
    cr_assert_eq (keel_pair_heard (a, 0, &pb, 1100), KEEL_PAIR_DO_ACTIVATE);
    cr_assert_eq (keel_pair_heard (b, 0, &pa, 1100), KEEL_PAIR_DO_NOTHING);
    cr_assert_eq (keel_pair_state (b), KEEL_PAIR_BACKUP);
    // The backup then hears the primary active: it becomes passive.
    keel_pair_peer_t active = s_peer (KEEL_PAIR_ACTIVE, 2, 6, 2);
    cr_assert_eq (keel_pair_heard (b, 0, &active, 1200), KEEL_PAIR_DO_SYNC);
    cr_assert_eq (keel_pair_state (b), KEEL_PAIR_PASSIVE);
    keel_pair_destroy (&a);
    keel_pair_destroy (&b);

    // The backup's store is newer (it served last): it becomes active.
    a = s_new (true, 1, 5, 1);
    b = s_new (false, 1, 9, 2);
    pb = s_peer (KEEL_PAIR_BACKUP, 0, 9, 2);
    pa = s_peer (KEEL_PAIR_PRIMARY, 0, 5, 1);
    cr_assert_eq (keel_pair_heard (a, 0, &pb, 1100), KEEL_PAIR_DO_NOTHING);
    cr_assert_eq (keel_pair_heard (b, 0, &pa, 1100), KEEL_PAIR_DO_ACTIVATE);
    keel_pair_destroy (&a);
    keel_pair_destroy (&b);
}

Test (pair, a_primary_alone_serves_after_pair_timeout_and_a_client_a_backup_never)
{
    keel_pair_t *a = s_new (true, 1, 0, 0);
    cr_assert_eq (keel_pair_client (a, 1100), KEEL_PAIR_DO_NOTHING, "too early: peer may be there");
    cr_assert_eq (keel_pair_tick (a, 1000 + T - 1), KEEL_PAIR_DO_NOTHING);
    // The vote of 1100 is still fresh when PairTimeout has passed.
    cr_assert_eq (keel_pair_tick (a, 1000 + T), KEEL_PAIR_DO_ACTIVATE);
    cr_assert (keel_pair_serving (a));
    keel_pair_destroy (&a);

    keel_pair_t *b = s_new (false, 1, 0, 0);
    cr_assert_eq (keel_pair_client (b, 1000 + 10 * T), KEEL_PAIR_DO_NOTHING);
    cr_assert_eq (keel_pair_tick (b, 1000 + 11 * T), KEEL_PAIR_DO_NOTHING);
    cr_assert_neq (keel_pair_state (b), KEEL_PAIR_ACTIVE);
    keel_pair_destroy (&b);
}

Test (pair, a_passive_takes_over_only_when_the_peer_is_lost_and_a_client_votes)
{
    keel_pair_t *p = s_passive_in_sync (2000);
    // A client while the active is heard: refused, no takeover.
    cr_assert_eq (keel_pair_client (p, 2100), KEEL_PAIR_DO_NOTHING);
    cr_assert_eq (keel_pair_state (p), KEEL_PAIR_PASSIVE);
    keel_pair_peer_t active = s_peer (KEEL_PAIR_ACTIVE, 2, 10, 1);
    keel_pair_heard (p, 0, &active, 2500);
    // The active goes silent; with no client since, nothing happens
    // however long.
    cr_assert_eq (keel_pair_tick (p, 2500 + T), KEEL_PAIR_DO_NOTHING);
    cr_assert (s_has_event (p, KEEL_PAIR_EV_PEER_LOST));
    cr_assert_eq (keel_pair_tick (p, 2000 + 20 * T), KEEL_PAIR_DO_NOTHING);
    cr_assert_eq (keel_pair_state (p), KEEL_PAIR_PASSIVE);
    // A client turns to it: takeover.
    cr_assert_eq (keel_pair_client (p, 2000 + 20 * T + 1), KEEL_PAIR_DO_ACTIVATE);
    cr_assert_eq (keel_pair_state (p), KEEL_PAIR_ACTIVE);
    cr_assert (s_has_event (p, KEEL_PAIR_EV_TOOK_OVER));
    keel_pair_destroy (&p);
}

Test (pair, a_vote_just_before_the_loss_counts_when_the_loss_is_noticed)
{
    keel_pair_t *p = s_passive_in_sync (2000);
    // The driver noticed the loss a little before the passive did.
    cr_assert_eq (keel_pair_client (p, 2000 + T - 50), KEEL_PAIR_DO_NOTHING);
    cr_assert_eq (keel_pair_tick (p, 2000 + T), KEEL_PAIR_DO_ACTIVATE);
    keel_pair_destroy (&p);
    // A vote older than PairTimeout does not.
    p = s_passive_in_sync (2000);
    keel_pair_client (p, 2001);
    keel_pair_peer_t active = s_peer (KEEL_PAIR_ACTIVE, 2, 10, 1);
    keel_pair_heard (p, 0, &active, 2500);
    cr_assert_eq (keel_pair_tick (p, 2500 + T), KEEL_PAIR_DO_NOTHING);
    keel_pair_destroy (&p);
}

Test (pair, a_passive_out_of_sync_when_the_peer_went_never_takes_over)
{
    keel_pair_t *p = s_new (false, 1, 0, 0);
    keel_pair_peer_t active = s_peer (KEEL_PAIR_ACTIVE, 2, 10, 1);
    keel_pair_heard (p, 0, &active, 2000); // passive, snapshot not installed yet
    keel_pair_tick (p, 2000);
    cr_assert_eq (keel_pair_client (p, 2000 + T), KEEL_PAIR_DO_NOTHING);
    cr_assert_eq (keel_pair_tick (p, 2000 + T + 1), KEEL_PAIR_DO_NOTHING);
    cr_assert_eq (keel_pair_state (p), KEEL_PAIR_PASSIVE);
    // In sync only after the loss: still not (the mirror stopped short).
    keel_pair_set_synced (p, true);
    cr_assert_eq (keel_pair_client (p, 2000 + 2 * T), KEEL_PAIR_DO_NOTHING);
    keel_pair_destroy (&p);
}

Test (pair, the_peer_is_lost_only_when_every_link_is_silent)
{
    keel_pair_t *p = s_new (false, 2, 10, 1);
    keel_pair_peer_t active = s_peer (KEEL_PAIR_ACTIVE, 2, 10, 1);
    keel_pair_heard (p, 0, &active, 2000);
    keel_pair_heard (p, 1, &active, 2000);
    keel_pair_set_synced (p, true);
    cr_assert_eq (keel_pair_links_up (p, 2000), 2);
    // Link 0 is cut; link 1 goes on.
    for (int64_t t = 2000 + H; t <= 2000 + 10 * H; t += H)
        keel_pair_heard (p, 1, &active, t);
    int64_t now = 2000 + 10 * H;
    cr_assert_eq (keel_pair_links_up (p, now), 1);
    cr_assert (keel_pair_peer_up (p, now));
    cr_assert_eq (keel_pair_client (p, now), KEEL_PAIR_DO_NOTHING);
    cr_assert_eq (keel_pair_tick (p, now), KEEL_PAIR_DO_NOTHING);
    cr_assert_not (s_has_event (p, KEEL_PAIR_EV_PEER_LOST));
    cr_assert_eq (keel_pair_state (p), KEEL_PAIR_PASSIVE);
    keel_pair_destroy (&p);
}

Test (pair, an_active_demotes_on_a_higher_epoch_and_ignores_a_lower_one)
{
    keel_pair_t *a = s_new (true, 1, 5, 1);
    keel_pair_peer_t pb = s_peer (KEEL_PAIR_BACKUP, 0, 5, 1);
    cr_assert_eq (keel_pair_heard (a, 0, &pb, 1100), KEEL_PAIR_DO_ACTIVATE);
    keel_pair_set_epoch (a, 3);
    keel_pair_peer_t lower = s_peer (KEEL_PAIR_ACTIVE, 2, 5, 1);
    cr_assert_eq (keel_pair_heard (a, 0, &lower, 1200), KEEL_PAIR_DO_NOTHING);
    cr_assert_eq (keel_pair_state (a), KEEL_PAIR_ACTIVE);
    keel_pair_peer_t higher = s_peer (KEEL_PAIR_ACTIVE, 4, 6, 4);
    cr_assert_eq (keel_pair_heard (a, 0, &higher, 1300), KEEL_PAIR_DO_DEMOTE);
    cr_assert_eq (keel_pair_state (a), KEEL_PAIR_PASSIVE);
    cr_assert (s_has_event (a, KEEL_PAIR_EV_DEMOTED));
    keel_pair_destroy (&a);
}

Test (pair, after_a_long_pause_the_active_serves_nothing_until_it_hears_the_peer)
{
    keel_pair_t *a = s_new (true, 1, 5, 1);
    keel_pair_peer_t passive = s_peer (KEEL_PAIR_PASSIVE, 1, 5, 1);
    keel_pair_heard (a, 0, &passive, 1100);
    keel_pair_set_epoch (a, 2);
    cr_assert (keel_pair_serving (a));
    keel_pair_paused (a, 5000, 6100); // SIGSTOP for 5 s
    cr_assert_not (keel_pair_serving (a));
    // The peer took over meanwhile: its heartbeat demotes us before we serve.
    keel_pair_peer_t active = s_peer (KEEL_PAIR_ACTIVE, 3, 7, 3);
    cr_assert_eq (keel_pair_heard (a, 0, &active, 6110), KEEL_PAIR_DO_DEMOTE);
    cr_assert_not (keel_pair_serving (a));
    keel_pair_destroy (&a);

    // Nobody answers within PairTimeout: serve alone again.
    a = s_new (true, 1, 5, 1);
    keel_pair_heard (a, 0, &passive, 1100);
    keel_pair_paused (a, 5000, 6100);
    keel_pair_tick (a, 6100 + T - 1);
    cr_assert_not (keel_pair_serving (a));
    keel_pair_tick (a, 6100 + T);
    cr_assert (keel_pair_serving (a));
    // A short pause changes nothing.
    keel_pair_paused (a, T - 1, 7000);
    cr_assert (keel_pair_serving (a));
    keel_pair_destroy (&a);
}

Test (pair, a_passive_whose_peer_restarts_becomes_active_when_its_store_is_newer_or_equal)
{
    keel_pair_t *p = s_passive_in_sync (2000);
    keel_pair_set_applied (p, 12, 2);
    // The old active restarted with an older store: we serve.
    keel_pair_peer_t restarted = s_peer (KEEL_PAIR_PRIMARY, 0, 11, 2);
    cr_assert_eq (keel_pair_heard (p, 0, &restarted, 3000), KEEL_PAIR_DO_ACTIVATE);
    keel_pair_destroy (&p);
    // Its store is newer (commits it never streamed): it serves; we wait.
    p = s_passive_in_sync (2000);
    keel_pair_set_applied (p, 12, 2);
    restarted = s_peer (KEEL_PAIR_PRIMARY, 0, 14, 2);
    cr_assert_eq (keel_pair_heard (p, 0, &restarted, 3000), KEEL_PAIR_DO_NOTHING);
    cr_assert_eq (keel_pair_state (p), KEEL_PAIR_PASSIVE);
    keel_pair_destroy (&p);
}
