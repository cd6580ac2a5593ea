/*  The engine ↔ broker session with a resilient broker pair (DESIGN §6):
    LoginReply.pair_peer, Passive, epochs. Fake ops record the actions; the
    test passes the time in, as test_engine_session.c. */
#include <criterion/criterion.h>
#include <string.h>

#include "engine_config.h"
#include "engine_session.h"

#include "engine_session_fake.h"

#define S_A "tcp://primary:1"
#define S_B "tcp://failover:2"

static void
setup (void)
{
    memset (&s_cfg, 0, sizeof s_cfg);
    s_cfg.brokers[0] = S_A;
    s_cfg.brokers[1] = S_B;
    s_cfg.n_brokers = 2;
    s_cfg.slots = 2;
    s_cfg.timeout_action = KEEL_TIMEOUT_ACTION_RESTART;
    s_cfg.primary_retry_ms = 10000;
    s_cfg.heartbeat_ms = 1000;
    s_cfg.default_engine_timeout_ms = 900000;
    memset (&s_fake, 0, sizeof s_fake);
    s_fake.connect_ok = s_fake.login_ok = s_fake.probe_ok = true;
    s_fake.listening = ~0u;
    s_session = keel_engine_session_new (&s_cfg, &s_ops, &s_fake, 0);
    cr_assert (s_session);
}

static void
teardown (void)
{
    keel_engine_session_destroy (&s_session);
}

TestSuite (engine_session_pair, .init = setup, .fini = teardown);

//  Feeds a LoginReply{ok, H = 500 ms} with this pair peer (NULL: none),
//  cluster members and envelope epoch; returns whether the session took it.
static bool
s_login_reply_members (const char *pair_peer, char **members, size_t n, uint64_t epoch, int64_t now)
{
    Keel__LoginReply reply = KEEL__LOGIN_REPLY__INIT;
    reply.has_ok = reply.ok = true;
    reply.has_heartbeat_ms = reply.has_engine_timeout_ms = true;
    reply.heartbeat_ms = 500;
    reply.engine_timeout_ms = 60000;
    reply.broker_name = "b";
    reply.pair_peer = (char *) pair_peer;
    reply.cluster_members = members;
    reply.n_cluster_members = n;
    keel_env_t env;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.has_epoch = true;
    env.epoch = epoch;
    env.body_case = KEEL__ENVELOPE__BODY_LOGIN_REPLY;
    env.login_reply = &reply;
    return keel_engine_session_on_message (s_session, &env, now);
}

static bool
s_login_reply (const char *pair_peer, uint64_t epoch, int64_t now)
{
    return s_login_reply_members (pair_peer, NULL, 0, epoch, now);
}

static bool
s_heartbeat (uint64_t epoch, int64_t now)
{
    Keel__Heartbeat heartbeat = KEEL__HEARTBEAT__INIT;
    keel_env_t env;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.has_epoch = true;
    env.epoch = epoch;
    env.body_case = KEEL__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &heartbeat;
    return keel_engine_session_on_message (s_session, &env, now);
}

static bool
s_passive (const char *active, int64_t now)
{
    Keel__Passive passive = KEEL__PASSIVE__INIT;
    passive.active = (char *) active;
    passive.reason = "passive member of the pair";
    keel_env_t env;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.has_epoch = true;
    env.epoch = 1; // whatever its epoch, Passive is obeyed
    env.body_case = KEEL__ENVELOPE__BODY_PASSIVE;
    env.passive = &passive;
    return keel_engine_session_on_message (s_session, &env, now);
}

//  Logs in to the broker the session tries at now.
static void
s_online_at (const char *pair_peer, uint64_t epoch, int64_t now)
{
    keel_engine_session_tick (s_session, now);
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_LOGGING_IN);
    cr_assert (s_login_reply (pair_peer, epoch, now));
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_ONLINE);
}

// ---------------------------------------------------------------- Passive

Test (engine_session_pair, passive_while_logging_in_goes_to_the_named_active_broker_at_once)
{
    keel_engine_session_tick (s_session, 0);
    cr_assert_eq (s_fake.last_connect, 0);
    cr_assert (s_passive (" " S_B " ", 10));
    cr_assert_eq (keel_engine_session_broker (s_session), 1);
    cr_assert_eq (keel_engine_session_next_deadline (s_session), 10, "at once");
    keel_engine_session_tick (s_session, 10);
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_LOGGING_IN);
    cr_assert_eq (s_fake.last_connect, 1);
    cr_assert (s_login_reply (S_A, 2, 20));
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_ONLINE);
    cr_assert_eq (s_fake.timeouts + s_fake.new_sessions, 0, "tasks and results are kept");
}

Test (engine_session_pair, passive_naming_no_configured_broker_tries_the_next_one_at_once)
{
    keel_engine_session_tick (s_session, 0);
    cr_assert (s_passive ("tcp://unknown:9", 10));
    keel_engine_session_tick (s_session, 10);
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_LOGGING_IN);
    cr_assert_eq (s_fake.last_connect, 1);
}

Test (engine_session_pair, passive_while_online_moves_to_the_active_broker_keeping_its_tasks)
{
    s_online_at (S_B, 3, 0);
    int logged_in = s_fake.logged_in;
    cr_assert (s_passive (S_B, 1000)); // A demoted itself
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_OFFLINE);
    cr_assert_geq (s_fake.disconnects, 1);
    keel_engine_session_tick (s_session, 1000);
    cr_assert_eq (s_fake.last_connect, 1, "to B at once");
    cr_assert (s_login_reply (S_A, 4, 1100));
    cr_assert_eq (s_fake.logged_in, logged_in + 1, "the login there claims the tasks");
    cr_assert_eq (s_fake.timeouts + s_fake.new_sessions, 0);
    cr_assert_eq (s_fake.logoffs, 0, "no Logoff: the tasks stay claimed by this engine");
}

Test (engine_session_pair, passive_naming_nothing_while_online_on_the_last_broker_goes_to_the_first)
{
    keel_engine_session_tick (s_session, 0);
    cr_assert (s_passive (S_B, 0));
    s_online_at (NULL, 3, 0);
    cr_assert_eq (keel_engine_session_broker (s_session), 1);
    cr_assert (s_passive (NULL, 1000)); // B demoted itself, active unknown
    cr_assert_eq (keel_engine_session_broker (s_session), 0);
    cr_assert_eq (keel_engine_session_next_deadline (s_session), 1000, "at once, no backoff");
    keel_engine_session_tick (s_session, 1000);
    cr_assert_eq (s_fake.last_connect, 0);
}

Test (engine_session_pair, the_engine_timeout_counts_from_a_passive_that_ends_online)
{
    s_online_at (S_B, 3, 0);
    cr_assert (s_passive (S_B, 5000));
    cr_assert_eq (keel_engine_session_next_deadline (s_session), 5000);
    s_fake.login_ok = false; // nobody answers from now on
    keel_engine_session_tick (s_session, 5000 + 60000 - 1);
    cr_assert_eq (s_fake.timeouts, 0);
    for (int64_t t = 5000 + 60000 - 1; t <= 5000 + 60000 && !s_fake.timeouts; t++)
        keel_engine_session_tick (s_session, t);
    cr_assert_eq (s_fake.timeouts, 1, "the login's Engine Timeout (60 s) after the Passive");
}

Test (engine_session_pair, two_passive_brokers_cost_one_round_and_a_backoff_not_a_spin)
{
    keel_engine_session_tick (s_session, 0);
    int tries = 0;
    for (int i = 0; i < 20; i++) {
        if (keel_engine_session_state (s_session) != KEEL_ENGINE_SESSION_LOGGING_IN)
            break;
        tries++;
        int here = keel_engine_session_broker (s_session);
        cr_assert (s_passive (here == 0 ? S_B : S_A, 0));
        keel_engine_session_tick (s_session, 0);
    }
    cr_assert_leq (tries, 4, "%d tries at once", tries);
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_OFFLINE);
    int64_t next = keel_engine_session_next_deadline (s_session);
    cr_assert (next >= 800 && next <= 1200, "the round's backoff, got %lld", (long long) next);
    cr_assert_eq (keel_engine_session_broker (s_session), 0,
                  "the next round starts at the primary");
}

// ---------------------------------------------------------------- pair peer

Test (engine_session_pair, a_silent_pair_broker_is_followed_by_its_pair_peer_at_once)
{
    s_online_at (S_B, 3, 0);
    cr_assert_eq (keel_engine_session_pair_peer (s_session, 0), 1);
    keel_engine_session_tick (s_session, 1500); // silent for 3·H
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_OFFLINE);
    cr_assert_eq (keel_engine_session_broker (s_session), 1, "the peer first, not the primary");
    keel_engine_session_tick (s_session, 1500);
    cr_assert_eq (s_fake.last_connect, 1);
    cr_assert_eq (s_fake.timeouts, 0);
}

Test (engine_session_pair, a_pair_peer_that_is_not_configured_changes_nothing)
{
    s_online_at ("tcp://elsewhere:7", 3, 0);
    cr_assert_eq (keel_engine_session_pair_peer (s_session, 0), -1);
    keel_engine_session_tick (s_session, 1500);
    cr_assert_eq (keel_engine_session_broker (s_session), 0, "the primary first, as always");
}

Test (engine_session_pair, the_primary_is_not_probed_from_its_pair_peer)
{
    keel_engine_session_tick (s_session, 0);
    cr_assert (s_passive (S_B, 0));
    s_online_at (S_A, 4, 0);
    cr_assert_eq (keel_engine_session_broker (s_session), 1);
    for (int64_t t = 0; t <= 40000; t += 250) {
        cr_assert (s_heartbeat (4, t));
        keel_engine_session_tick (s_session, t);
    }
    cr_assert_eq (s_fake.probes_opened, 0, "no failback in a pair");
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_ONLINE);
}

Test (engine_session_pair, a_passive_answer_to_the_probe_closes_it_without_moving)
{
    //  On B, a standalone failover broker as far as the engine knows.
    s_fake.listening = 1u << 1;
    int64_t t = 0;
    for (; t < 5000 && keel_engine_session_broker (s_session) != 1; t += 100)
        keel_engine_session_tick (s_session, t);
    s_fake.listening = ~0u;
    s_online_at (NULL, 4, t);
    int64_t probe_due = t + 10000;
    for (; t <= probe_due; t += 250) {
        cr_assert (s_heartbeat (4, t));
        keel_engine_session_tick (s_session, t);
    }
    cr_assert_eq (s_fake.probes_opened, 1);
    keel_engine_session_on_probe_passive (s_session, S_B, t);
    cr_assert_eq (s_fake.probes_closed, 1);
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_ONLINE);
    cr_assert_eq (keel_engine_session_broker (s_session), 1);
    cr_assert_eq (s_fake.logoffs, 0);
    //  The primary named B as its active peer: no more probes.
    for (int64_t end = t + 40000; t <= end; t += 250) {
        cr_assert (s_heartbeat (4, t));
        keel_engine_session_tick (s_session, t);
    }
    cr_assert_eq (s_fake.probes_opened, 1);
}

// ---------------------------------------------------------------- epochs

Test (engine_session_pair, drops_a_deposed_pair_brokers_messages_by_epoch)
{
    //  On B (epoch 7), whose peer is A.
    keel_engine_session_tick (s_session, 0);
    cr_assert (s_passive (S_B, 0));
    s_online_at (S_A, 7, 0);
    //  B lost: A first, which answers from its old epoch (deposed).
    keel_engine_session_tick (s_session, 1500);
    keel_engine_session_tick (s_session, 1500);
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_LOGGING_IN);
    cr_assert_eq (keel_engine_session_broker (s_session), 0);
    cr_assert_not (s_login_reply (S_B, 5, 1600), "epoch 5 < 7 seen from the pair");
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_LOGGING_IN);
    cr_assert (s_login_reply (S_B, 8, 1700), "A took over with a higher epoch");
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_ONLINE);
    cr_assert_not (s_heartbeat (7, 1800));
    cr_assert (s_heartbeat (8, 1800));
}

Test (engine_session_pair, a_stale_heartbeat_is_no_sign_of_life)
{
    keel_engine_session_tick (s_session, 0);
    cr_assert (s_passive (S_B, 0));
    s_online_at (S_A, 7, 0);
    keel_engine_session_tick (s_session, 1500);
    keel_engine_session_tick (s_session, 1500);
    cr_assert (s_login_reply (S_B, 8, 1500)); // on A at epoch 8
    for (int64_t t = 1500; t <= 3000; t += 250) {
        cr_assert_not (s_heartbeat (6, t));
        keel_engine_session_tick (s_session, t);
    }
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_OFFLINE,
                  "silent for 3·H despite the stale heartbeats");
}

Test (engine_session_pair, epochs_of_standalone_brokers_are_not_compared)
{
    s_online_at (NULL, 9, 0);
    keel_engine_session_tick (s_session, 1500); // lost: the primary again
    keel_engine_session_tick (s_session, 1500);
    cr_assert_eq (keel_engine_session_broker (s_session), 0);
    cr_assert (s_login_reply (NULL, 3, 1600), "a restarted standalone broker");
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_ONLINE);
}

//  A LoginReply from a member of a shared store lists the members: those
//  the engine was not configured with are learned, and a learned pair
//  peer is followed at once when the broker goes silent.
Test (engine_session_pair, learns_cluster_members_from_the_login_reply_and_follows_them)
{
    keel_engine_session_tick (s_session, 0);
    char *members[] = { S_A, "tcp://member-c:3", S_B, "  " };
    cr_assert (s_login_reply_members ("tcp://member-c:3", members, 4, 3, 0));
    cr_assert_str_eq (keel_engine_session_endpoint (s_session, 2), "tcp://member-c:3");
    cr_assert_str_eq (keel_engine_session_endpoint (s_session, 3), "?", "blank: not learned");
    cr_assert_eq (keel_engine_session_pair_peer (s_session, 0), 2);
    keel_engine_session_tick (s_session, 1500); // silent for 3·H
    cr_assert_eq (keel_engine_session_broker (s_session), 2, "the learned peer at once");
}
