/*  test_driver_session_pair.c — the driver session with a resilient broker
    pair (DESIGN §6): pair peers named by welcomes, Passive, epochs. Driven
    with invented times (no sockets), as test_driver_session.c. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "driver_session_fake.h"

static void
s_welcome (keel_session_t *s, const char *pair_peer, int64_t now, keel_session_out_t *out)
{
    keel_session_input_t in = { .event = KEEL_SESSION_EV_WELCOME,
                                .heartbeat_ms = 1000,
                                .pair_peer = pair_peer };
    keel_session_apply (s, &in, now, out);
}

static void
s_passive (keel_session_t *s, keel_session_event_t event, const char *active, int64_t now,
           keel_session_out_t *out)
{
    keel_session_input_t in = { .event = event, .active = active, .reason = "passive member" };
    keel_session_apply (s, &in, now, out);
}

//  READY on the primary, whose welcome named pair_peer.
static keel_session_t *
s_ready_on_a (int nbrokers, const char *pair_peer)
{
    keel_session_out_t out;
    keel_session_t *s = s_session (nbrokers, 0);
    keel_session_step (s, KEEL_SESSION_EV_START, 0, 0, &out);
    s_welcome (s, pair_peer, 0, &out);
    cr_assert_eq (keel_session_state (s), KEEL_SESSION_READY);
    keel_session_received (s, 0);
    return s;
}

static const char *
s_status_text (const keel_session_out_t *out, keel_session_status_t *kind)
{
    int i = s_find (out, KEEL_SESSION_DO_STATUS);
    cr_assert_geq (i, 0, "a status is reported");
    *kind = out->actions[i].status;
    return out->actions[i].text;
}

// ---------------------------------------------------------------- pair peer

Test (driver_session_pair, remembers_a_configured_pair_peer_named_by_the_welcome)
{
    keel_session_t *s = s_ready_on_a (2, " " S_B " ");
    cr_assert_eq (keel_session_pair_peer (s, 0), 1, "compared without surrounding blanks");
    cr_assert_eq (keel_session_pair_peer (s, 1), -1, "B has said nothing yet");
    keel_session_destroy (&s);
}

Test (driver_session_pair, turns_to_the_pair_peer_at_once_when_a_pair_broker_goes_silent)
{
    keel_session_out_t out;
    keel_session_t *s = s_ready_on_a (2, S_B);
    keel_session_step (s, KEEL_SESSION_EV_TICK, 0, 2900, &out);
    cr_assert_eq (keel_session_state (s), KEEL_SESSION_READY);
    keel_session_step (s, KEEL_SESSION_EV_TICK, 0, 3000, &out);
    cr_assert_eq (keel_session_state (s), KEEL_SESSION_CONNECTING);
    int connect = s_find (&out, KEEL_SESSION_DO_CONNECT);
    cr_assert_geq (connect, 0);
    cr_assert_eq (out.actions[connect].broker, 1, "the pair peer, not the same broker again");
    cr_assert_not (s_has (&out, KEEL_SESSION_DO_FORGET_ACCEPTED),
                   "the peer mirrors what A accepted");
    keel_session_status_t kind;
    const char *text = s_status_text (&out, &kind);
    cr_assert_eq (kind, KEEL_SESSION_STATUS_FAILOVER);
    cr_assert (strstr (text, "lost " S_A) && strstr (text, "pair peer " S_B), "%s", text);
    cr_assert_eq (keel_session_broker (s), 1);
    keel_session_destroy (&s);
}

Test (driver_session_pair, the_pair_peers_welcome_resyncs_without_forgetting_accepted_tasks)
{
    keel_session_out_t out;
    keel_session_t *s = s_ready_on_a (2, S_B);
    keel_session_step (s, KEEL_SESSION_EV_TICK, 0, 3000, &out);
    s_welcome (s, S_A, 3100, &out);
    cr_assert_eq (keel_session_state (s), KEEL_SESSION_READY);
    cr_assert_eq (keel_session_broker (s), 1);
    cr_assert (s_has (&out, KEEL_SESSION_DO_RESYNC),
               "unknown services resubmitted, the rest resent");
    cr_assert_not (s_has (&out, KEEL_SESSION_DO_FORGET_ACCEPTED));
    keel_session_status_t kind;
    const char *text = s_status_text (&out, &kind);
    cr_assert_eq (kind, KEEL_SESSION_STATUS_FAILOVER);
    cr_assert (strstr (text, "pair peer of " S_A), "%s", text);
    //  And back again when B is lost in turn: A is B's peer.
    keel_session_received (s, 3100);
    keel_session_step (s, KEEL_SESSION_EV_TICK, 0, 6100, &out);
    int connect = s_find (&out, KEEL_SESSION_DO_CONNECT);
    cr_assert_geq (connect, 0);
    cr_assert_eq (out.actions[connect].broker, 0);
    cr_assert_not (s_has (&out, KEEL_SESSION_DO_FORGET_ACCEPTED));
    keel_session_destroy (&s);
}

Test (driver_session_pair, a_pair_peer_that_is_not_configured_is_not_turned_to)
{
    keel_session_out_t out;
    keel_session_t *s = s_ready_on_a (2, "tcp://somewhere-else:1");
    cr_assert_eq (keel_session_pair_peer (s, 0), -1);
    keel_session_step (s, KEEL_SESSION_EV_TICK, 0, 3000, &out);
    int connect = s_find (&out, KEEL_SESSION_DO_CONNECT);
    cr_assert_eq (out.actions[connect].broker, 0, "retries the same broker, as without a pair");
    keel_session_destroy (&s);
}

Test (driver_session_pair, the_move_after_dsbrokertimeout_within_a_pair_keeps_accepted_tasks)
{
    keel_session_out_t out;
    keel_session_t *s = s_ready_on_a (2, S_B);
    keel_session_step (s, KEEL_SESSION_EV_TICK, 0, 3000, &out); // to B at once
    bool moved = false;
    for (int64_t now = 3100; now <= 20000 && !moved; now += 100) {
        keel_session_step (s, KEEL_SESSION_EV_TICK, 0, now, &out);
        int connect = s_find (&out, KEEL_SESSION_DO_CONNECT);
        if (connect >= 0 && out.actions[connect].broker == 0) {
            moved = true;
            cr_assert_geq (now, 13000, "B gets its DSBrokerTimeout");
            cr_assert_not (s_has (&out, KEEL_SESSION_DO_FORGET_ACCEPTED));
        }
    }
    cr_assert (moved);
    keel_session_destroy (&s);
}

// ---------------------------------------------------------------- Passive

Test (driver_session_pair, passive_moves_at_once_to_the_active_broker_it_names)
{
    keel_session_out_t out;
    keel_session_t *s = s_session (3, 0);
    keel_session_step (s, KEEL_SESSION_EV_START, 0, 0, &out);
    s_passive (s, KEEL_SESSION_EV_PASSIVE, "  tcp://third:1\n", 10, &out);
    int connect = s_find (&out, KEEL_SESSION_DO_CONNECT);
    cr_assert_geq (connect, 0, "no wait for an attempt deadline");
    cr_assert_eq (out.actions[connect].broker, 2, "the named active broker, not the next one");
    cr_assert_not (s_has (&out, KEEL_SESSION_DO_FORGET_ACCEPTED),
                   "the passive member and its active one are a pair");
    keel_session_status_t kind;
    const char *text = s_status_text (&out, &kind);
    cr_assert (strstr (text, S_A " is passive (passive member)") && strstr (text, "tcp://third:1"),
               "%s", text);
    cr_assert_eq (keel_session_state (s), KEEL_SESSION_CONNECTING);
    cr_assert_eq (keel_session_broker (s), 2);
    keel_session_destroy (&s);
}

Test (driver_session_pair, passive_naming_no_configured_broker_moves_to_the_next_and_forgets)
{
    keel_session_out_t out;
    keel_session_t *s = s_ready_on_a (2, NULL);
    s_passive (s, KEEL_SESSION_EV_PASSIVE, "tcp://not-configured:9", 100, &out);
    int connect = s_find (&out, KEEL_SESSION_DO_CONNECT);
    cr_assert_geq (connect, 0);
    cr_assert_eq (out.actions[connect].broker, 1);
    int forget = s_find (&out, KEEL_SESSION_DO_FORGET_ACCEPTED);
    cr_assert (forget >= 0 && forget < connect, "no pair known: a new broker gets everything");
    keel_session_destroy (&s);
}

Test (driver_session_pair, passive_from_a_known_pair_member_keeps_accepted_tasks)
{
    keel_session_out_t out;
    keel_session_t *s = s_ready_on_a (2, S_B);
    //  A demoted itself and does not know who is active.
    s_passive (s, KEEL_SESSION_EV_PASSIVE, NULL, 100, &out);
    int connect = s_find (&out, KEEL_SESSION_DO_CONNECT);
    cr_assert_geq (connect, 0);
    cr_assert_eq (out.actions[connect].broker, 1);
    cr_assert_not (s_has (&out, KEEL_SESSION_DO_FORGET_ACCEPTED));
    cr_assert_eq (keel_session_state (s), KEEL_SESSION_CONNECTING);
    keel_session_destroy (&s);
}

Test (driver_session_pair, when_both_brokers_answer_passive_it_backs_off_instead_of_spinning)
{
    keel_session_out_t out;
    keel_session_t *s = s_session (2, 0);
    keel_session_step (s, KEEL_SESSION_EV_START, 0, 0, &out);
    s_passive (s, KEEL_SESSION_EV_PASSIVE, S_B, 10, &out); // A: go to B
    cr_assert_eq (keel_session_broker (s), 1);
    s_passive (s, KEEL_SESSION_EV_PASSIVE, S_A, 20, &out); // B: go to A
    cr_assert_not (s_has (&out, KEEL_SESSION_DO_CONNECT), "both passive: wait");
    keel_session_status_t kind;
    const char *text = s_status_text (&out, &kind);
    cr_assert (strstr (text, "no active broker yet"), "%s", text);
    //  3·H ± 20% (the attempt backoff's jitter).
    cr_assert_geq (keel_session_next_deadline (s), 20 + 2400, "the loop sleeps meanwhile");
    //  Another Passive meanwhile changes nothing.
    s_passive (s, KEEL_SESSION_EV_PASSIVE, S_A, 30, &out);
    cr_assert_eq (out.count, 0);
    //  Ping-pong for a minute: each move waits longer, up to the cap.
    int connects = 0;
    int64_t last = 20;
    for (int64_t now = 100; now <= 60000; now += 100) {
        keel_session_step (s, KEEL_SESSION_EV_TICK, 0, now, &out);
        int connect = s_find (&out, KEEL_SESSION_DO_CONNECT);
        if (connect < 0)
            continue;
        cr_assert_geq (now - last, 2400, "about 3·H at least between two moves");
        cr_assert_not (s_has (&out, KEEL_SESSION_DO_FORGET_ACCEPTED), "A and B are a pair");
        connects++;
        last = now;
        const char *other = out.actions[connect].broker == 0 ? S_B : S_A;
        s_passive (s, KEEL_SESSION_EV_PASSIVE, other, now, &out);
    }
    cr_assert (connects >= 2 && connects <= 15, "bounded (cap: DSBrokerTimeout/2): %d moves",
               connects);
    keel_session_destroy (&s);
}

Test (driver_session_pair, a_welcome_ends_the_passive_backoff)
{
    keel_session_out_t out;
    keel_session_t *s = s_session (2, 0);
    keel_session_step (s, KEEL_SESSION_EV_START, 0, 0, &out);
    s_passive (s, KEEL_SESSION_EV_PASSIVE, S_B, 10, &out);
    s_passive (s, KEEL_SESSION_EV_PASSIVE, S_A, 20, &out);
    //  B took over meanwhile and answers the hello it had.
    s_welcome (s, S_A, 500, &out);
    cr_assert_eq (keel_session_state (s), KEEL_SESSION_READY);
    cr_assert_eq (keel_session_broker (s), 1);
    for (int64_t now = 600; now <= 5000; now += 100) {
        keel_session_received (s, now);
        keel_session_step (s, KEEL_SESSION_EV_TICK, 0, now, &out);
        cr_assert_not (s_has (&out, KEEL_SESSION_DO_CONNECT), "no move left pending");
    }
    //  A later Passive from B moves to A at once again.
    s_passive (s, KEEL_SESSION_EV_PASSIVE, S_A, 5000, &out);
    cr_assert (s_has (&out, KEEL_SESSION_DO_CONNECT));
    keel_session_destroy (&s);
}

Test (driver_session_pair, with_one_broker_a_passive_answer_retries_it_after_a_backoff)
{
    keel_session_out_t out;
    keel_session_t *s = s_session (1, 0);
    keel_session_step (s, KEEL_SESSION_EV_START, 0, 0, &out);
    s_passive (s, KEEL_SESSION_EV_PASSIVE, NULL, 10, &out);
    cr_assert_not (s_has (&out, KEEL_SESSION_DO_CONNECT));
    int64_t now = 100;
    for (; now <= 4000; now += 100) {
        keel_session_step (s, KEEL_SESSION_EV_TICK, 0, now, &out);
        if (s_has (&out, KEEL_SESSION_DO_CONNECT))
            break;
    }
    cr_assert (now >= 2400 && now <= 3700, "3·H ± 20%% later, not at once: %lld", (long long) now);
    int connect = s_find (&out, KEEL_SESSION_DO_CONNECT);
    cr_assert_eq (out.actions[connect].broker, 0);
    keel_session_destroy (&s);
}

//  READY on the failover broker B of two standalone brokers, as
//  driver_session.probes_the_primary_from_a_failover_broker_and_moves_back.
static keel_session_t *
s_ready_on_b (const char *pair_peer, int64_t *now, keel_session_out_t *out)
{
    keel_session_t *s = s_ready_on_a (2, NULL);
    keel_session_step (s, KEEL_SESSION_EV_TICK, 0, 3000, out);
    *now = 13000;
    keel_session_step (s, KEEL_SESSION_EV_TICK, 0, *now, out);
    cr_assert_eq (keel_session_broker (s), 1);
    s_welcome (s, pair_peer, *now, out);
    return s;
}

Test (driver_session_pair, passive_on_the_probe_closes_it_without_failback)
{
    int64_t now;
    keel_session_out_t out;
    keel_session_t *s = s_ready_on_b (NULL, &now, &out);
    bool probed = false;
    for (now += 100; now <= 19000 && !probed; now += 100) {
        keel_session_received (s, now);
        keel_session_step (s, KEEL_SESSION_EV_TICK, 0, now, &out);
        probed = s_has (&out, KEEL_SESSION_DO_PROBE_OPEN);
    }
    cr_assert (probed);
    s_passive (s, KEEL_SESSION_EV_PROBE_PASSIVE, NULL, now, &out);
    cr_assert_eq (out.count, 1);
    cr_assert_eq (out.actions[0].what, KEEL_SESSION_DO_PROBE_CLOSE);
    cr_assert_eq (keel_session_broker (s), 1, "no failback");
    cr_assert_eq (keel_session_state (s), KEEL_SESSION_READY);
    //  A late welcome on the closed probe changes nothing either.
    keel_session_step (s, KEEL_SESSION_EV_PROBE_WELCOME, 0, now, &out);
    cr_assert_eq (out.count, 0);
    keel_session_destroy (&s);
}

Test (driver_session_pair, does_not_probe_the_primary_from_its_pair_peer)
{
    int64_t now;
    keel_session_out_t out;
    keel_session_t *s = s_ready_on_b (S_A, &now, &out);
    for (now += 100; now <= 40000; now += 100) {
        keel_session_received (s, now);
        keel_session_step (s, KEEL_SESSION_EV_TICK, 0, now, &out);
        cr_assert_not (s_has (&out, KEEL_SESSION_DO_PROBE_OPEN), "no failback in a pair");
    }
    keel_session_destroy (&s);
}

Test (driver_session_pair, a_primary_that_names_the_current_broker_on_the_probe_stops_the_probes)
{
    int64_t now;
    keel_session_out_t out;
    keel_session_t *s = s_ready_on_b (NULL, &now, &out);
    int opened = 0;
    for (now += 100; now <= 40000; now += 100) {
        keel_session_received (s, now);
        keel_session_step (s, KEEL_SESSION_EV_TICK, 0, now, &out);
        if (s_has (&out, KEEL_SESSION_DO_PROBE_OPEN)) {
            opened++;
            s_passive (s, KEEL_SESSION_EV_PROBE_PASSIVE, S_B, now, &out);
        }
    }
    cr_assert_eq (opened, 1, "the primary said B is its active peer");
    keel_session_destroy (&s);
}

// ---------------------------------------------------------------- epochs

Test (driver_session_pair, drops_messages_from_a_pair_broker_below_the_pairs_highest_epoch)
{
    keel_session_out_t out;
    keel_session_t *s = s_session (2, 0);
    keel_session_step (s, KEEL_SESSION_EV_START, 0, 0, &out);
    cr_assert (keel_session_admit (s, 0, true, S_B, true, 5));
    s_welcome (s, S_B, 0, &out);
    cr_assert (keel_session_admit (s, 0, false, NULL, true, 5));
    //  A lost; B took over with a higher epoch.
    keel_session_step (s, KEEL_SESSION_EV_TICK, 0, 3000, &out);
    cr_assert (keel_session_admit (s, 1, true, S_A, true, 6));
    s_welcome (s, S_A, 3000, &out);
    //  A, deposed, still talks: its older epoch is dropped, B's is taken.
    cr_assert_not (keel_session_admit (s, 0, false, NULL, true, 5));
    cr_assert_not (keel_session_admit (s, 0, true, S_B, true, 5), "a stale welcome too");
    cr_assert (keel_session_admit (s, 1, false, NULL, true, 6));
    cr_assert_not (keel_session_admit (s, 1, false, NULL, true, 4));
    cr_assert_eq (keel_session_stale_count (s), 3);
    //  A at a newer epoch (it took over again) is heard.
    cr_assert (keel_session_admit (s, 0, false, NULL, true, 7));
    cr_assert_not (keel_session_admit (s, 1, false, NULL, true, 6));
    keel_session_destroy (&s);
}

Test (driver_session_pair, epochs_of_standalone_brokers_are_not_compared)
{
    keel_session_out_t out;
    keel_session_t *s = s_session (2, 0);
    keel_session_step (s, KEEL_SESSION_EV_START, 0, 0, &out);
    cr_assert (keel_session_admit (s, 0, true, NULL, true, 9));
    s_welcome (s, NULL, 0, &out);
    cr_assert (keel_session_admit (s, 0, false, NULL, true, 9));
    cr_assert (keel_session_admit (s, 1, false, NULL, true, 2), "another broker's own epochs");
    cr_assert (keel_session_admit (s, 0, false, NULL, true, 1), "not in a pair: not checked");
    cr_assert_eq (keel_session_stale_count (s), 0);
    keel_session_destroy (&s);
}

Test (driver_session_pair, a_broker_that_leaves_its_pair_is_no_longer_checked)
{
    keel_session_out_t out;
    keel_session_t *s = s_session (2, 0);
    keel_session_step (s, KEEL_SESSION_EV_START, 0, 0, &out);
    cr_assert (keel_session_admit (s, 0, true, S_B, true, 8));
    s_welcome (s, S_B, 0, &out);
    cr_assert_not (keel_session_admit (s, 0, false, NULL, true, 3));
    //  Restarted standalone, with a store of its own.
    cr_assert (keel_session_admit (s, 0, true, NULL, true, 3));
    keel_session_step (s, KEEL_SESSION_EV_RELOGIN, 0, 100, &out);
    s_welcome (s, NULL, 100, &out);
    cr_assert (keel_session_admit (s, 0, false, NULL, true, 3));
    cr_assert_eq (keel_session_pair_peer (s, 0), -1);
    keel_session_destroy (&s);
}

Test (driver_session_pair, messages_without_an_epoch_are_not_checked)
{
    keel_session_out_t out;
    keel_session_t *s = s_session (2, 0);
    keel_session_step (s, KEEL_SESSION_EV_START, 0, 0, &out);
    cr_assert (keel_session_admit (s, 0, true, S_B, true, 8));
    s_welcome (s, S_B, 0, &out);
    cr_assert (keel_session_admit (s, 0, false, NULL, false, 0));
    keel_session_destroy (&s);
}

// ---------------------------------------------------------------- cluster members

// A welcome from a member of a shared store lists the members: the ones
// the driver was not configured with are learned (after the configured
// ones), and the pair peer the welcome names is then one it turns to.
Test (driver_session_pair, learns_cluster_members_and_turns_to_a_learned_peer)
{
    keel_session_out_t out;
    keel_session_t *s = s_session (1, 0);
    keel_session_step (s, KEEL_SESSION_EV_START, 0, 0, &out);
    cr_assert_eq (keel_session_learn (s, S_A), 0, "a configured broker keeps its index");
    cr_assert_eq (keel_session_learn (s, " " S_B " "), 1);
    cr_assert_eq (keel_session_learn (s, S_B), 1, "learned once");
    cr_assert_eq (keel_session_learn (s, "  "), -1, "a blank endpoint is not a broker");
    cr_assert_eq (keel_session_nbrokers (s), 2);
    cr_assert_str_eq (keel_session_endpoint (s, 1), " " S_B " ");
    s_welcome (s, S_B, 0, &out);
    keel_session_received (s, 0);
    cr_assert_eq (keel_session_pair_peer (s, 0), 1);
    keel_session_step (s, KEEL_SESSION_EV_TICK, 0, 3000, &out);
    int connect = s_find (&out, KEEL_SESSION_DO_CONNECT);
    cr_assert_geq (connect, 0);
    cr_assert_eq (out.actions[connect].broker, 1, "turns to the learned member at once");
    cr_assert_not (s_has (&out, KEEL_SESSION_DO_FORGET_ACCEPTED));
    keel_session_destroy (&s);
}

Test (driver_session_pair, learns_at_most_a_bounded_number_of_members)
{
    keel_session_t *s = s_session (1, 0);
    char endpoint[64];
    int learned = 0;
    for (int i = 0; i < 100; i++) {
        snprintf (endpoint, sizeof endpoint, "tcp://member-%d:1", i);
        if (keel_session_learn (s, endpoint) >= 0)
            learned++;
    }
    cr_assert_eq (learned, KEEL_SESSION_LEARNED_MAX);
    cr_assert_eq (keel_session_nbrokers (s), 1 + KEEL_SESSION_LEARNED_MAX);
    keel_session_destroy (&s);
}

// ---------------------------------------------------------------- cluster members

// Members of a shared store's cluster have epochs of their own: a member
// whose epoch is below its successor's is heard (the store fences, not
// epochs), and a Passive from a member naming another member (the owner of
// the service) moves the driver there without forgetting what was accepted.
Test (driver_session_pair, members_of_a_cluster_are_one_store_and_their_epochs_their_own)
{
    keel_session_out_t out;
    keel_session_t *s = s_session (2, 0);
    keel_session_step (s, KEEL_SESSION_EV_START, 0, 0, &out);
    keel_session_member (s, 0);
    keel_session_member (s, 1);
    cr_assert (keel_session_admit (s, 0, true, S_B, true, 7));
    s_welcome (s, S_B, 0, &out);
    keel_session_received (s, 0);
    // A Passive from A naming B (B owns the service): no forgetting.
    s_passive (s, KEEL_SESSION_EV_PASSIVE, S_B, 10, &out);
    int connect = s_find (&out, KEEL_SESSION_DO_CONNECT);
    cr_assert_geq (connect, 0);
    cr_assert_eq (out.actions[connect].broker, 1);
    cr_assert_not (s_has (&out, KEEL_SESSION_DO_FORGET_ACCEPTED),
                   "a move between members forgot what was accepted");
    // B's epoch (3) is below A's (7): still a live member, heard.
    cr_assert (keel_session_admit (s, 1, true, S_A, true, 3));
    cr_assert (keel_session_admit (s, 1, false, NULL, true, 3));
    cr_assert_eq (keel_session_stale_count (s), 0);
    keel_session_destroy (&s);
}

// Without the members marked, the same is a pair's rule: forgetting and
// epoch checks apply (the test above can fail).
Test (driver_session_pair, brokers_not_marked_as_members_keep_the_pair_rules)
{
    keel_session_out_t out;
    keel_session_t *s = s_session (2, 0);
    keel_session_step (s, KEEL_SESSION_EV_START, 0, 0, &out);
    cr_assert (keel_session_admit (s, 0, true, S_B, true, 7));
    s_welcome (s, S_B, 0, &out);
    keel_session_received (s, 0);
    cr_assert_not (keel_session_admit (s, 1, true, S_A, true, 3), "a lower epoch of the pair");
    keel_session_destroy (&s);
}
