/*  test_pair_faults.c — the resilient pair against split brain (DESIGN §6):
    an active paused longer than PairTimeout while its clients move to the
    passive demotes itself when it resumes, and no result is delivered
    twice; a pair whose links are all cut while the clients stay at the
    active does not take over; with two links, cutting one changes nothing
    but links_up. Links run through tcp_proxy.py, which the test stops
    (SIGSTOP) to cut a link.
*/
#include <time.h>

#include "test_pair.h"

// Pair A/B whose links run through proxies: link i of A sends to
// proxy ab[i] (-> B's PairEndpoint i), B's to proxy ba[i] (-> A's).
typedef struct {
    pt_pair_t p;
    int nlinks;
    pid_t ab[2], ba[2];
} s_proxied_t;

static void
s_proxied_sets (char sets[8][400], const char *argv[9], const char *role, const int *own,
                const int *peer, int nlinks)
{
    int n = 0;
    snprintf (sets[n++], 400, "PairRole=%s", role);
    if (nlinks == 1) {
        snprintf (sets[n++], 400, "PairEndpoint=tcp://127.0.0.1:%d", own[0]);
        snprintf (sets[n++], 400, "PairPeer=tcp://127.0.0.1:%d", peer[0]);
    }
    else {
        snprintf (sets[n++], 400, "PairEndpoint=tcp://127.0.0.1:%d,tcp://127.0.0.1:%d", own[0],
                  own[1]);
        snprintf (sets[n++], 400, "PairPeer=tcp://127.0.0.1:%d,tcp://127.0.0.1:%d", peer[0],
                  peer[1]);
    }
    snprintf (sets[n++], 400, "PairName=test-pair");
    snprintf (sets[n++], 400, "HeartbeatInterval=250ms");
    snprintf (sets[n++], 400, "EngineTimeoutMinutes=0.5");
    for (int i = 0; i < n; i++)
        argv[i] = sets[i];
    argv[n] = NULL;
}

static void
s_proxied_start (s_proxied_t *x, int nlinks)
{
    memset (x, 0, sizeof *x);
    x->nlinks = nlinks;
    pt_pair_t *p = &x->p;
    HARNESS_ASSERT (ft_broker_plan (&p->a, "brokerA") && ft_broker_plan (&p->b, "brokerB"),
                    "no ports");
    int own_a[2], own_b[2], via_ab[2], via_ba[2];
    for (int i = 0; i < nlinks; i++) {
        own_a[i] = harness_free_port ();
        own_b[i] = harness_free_port ();
        via_ab[i] = harness_free_port ();
        via_ba[i] = harness_free_port ();
        char name[32];
        snprintf (name, sizeof name, "proxyAB%d", i);
        x->ab[i] = pt_proxy_start (name, via_ab[i], own_b[i]);
        snprintf (name, sizeof name, "proxyBA%d", i);
        x->ba[i] = pt_proxy_start (name, via_ba[i], own_a[i]);
        HARNESS_ASSERT (x->ab[i] > 0 && x->ba[i] > 0, "a link proxy did not start");
    }
    s_proxied_sets (p->sets_a, p->argv_a, "primary", own_a, via_ab, nlinks);
    s_proxied_sets (p->sets_b, p->argv_b, "backup", own_b, via_ba, nlinks);
    pt_start_pair (p);
}

// Cuts (SIGSTOP) or mends (SIGCONT) link i in both directions.
static void
s_link (s_proxied_t *x, int i, int sig)
{
    harness_signal (x->ab[i], sig);
    harness_signal (x->ba[i], sig);
}

static void
s_assert_role (const harness_broker_t *b, const char *want)
{
    char role[32];
    pt_status_str (b, "role", role, sizeof role);
    HARNESS_ASSERT (strcmp (role, want) == 0, "%s is %s, expected %s", b->name, role, want);
}

Test (pair_faults, an_active_paused_past_pairtimeout_demotes_itself_when_it_resumes,
      .init = harness_setup, .fini = harness_teardown, .timeout = 240)
{
    pt_pair_t p;
    pt_plan (&p);
    pt_start_pair (&p);
    pid_t driver = pt_load (&p);
    long long epoch_a = ft_status (&p.a, "epoch");
    harness_signal (p.a.pid, SIGSTOP);
    // The clients lose A and turn to B, which takes over.
    HARNESS_ASSERT (pt_wait_field (&p.b, "role", "active", 10000), "B did not take over");
    HARNESS_ASSERT (ft_status (&p.b, "epoch") > epoch_a, "B's epoch is not above A's");
    // 5 s after the stop, A resumes: it must demote at once.
    pt_lines_wait_t later = { "driver.out", pt_lines ("driver.out") + 1 };
    HARNESS_ASSERT (harness_poll_until (pt_lines_at_least, &later, 10000),
                    "no result from B while A is stopped");
    struct timespec pause = { 4, 0 };
    nanosleep (&pause, NULL); // the fault itself: A stays stopped for ~5 s
    harness_signal (p.a.pid, SIGCONT);
    HARNESS_ASSERT (pt_wait_field (&p.a, "role", "passive", 3000),
                    "A did not demote after it resumed");
    HARNESS_ASSERT (ft_status (&p.a, "pair.counters.demotions") == 1, "A demoted %lld times",
                    ft_status (&p.a, "pair.counters.demotions"));
    pt_finish (driver);
    s_assert_role (&p.b, "active");
    HARNESS_ASSERT (pt_wait_field (&p.a, "pair.synced", "true", 20000),
                    "A never got in sync with B after it demoted");
}

Test (pair_faults, with_every_link_cut_the_passive_does_not_take_over, .init = harness_setup,
      .fini = harness_teardown, .timeout = 240)
{
    s_proxied_t x;
    s_proxied_start (&x, 1);
    pid_t driver = pt_load (&x.p);
    long long snapshots = ft_status (&x.p.a, "pair.counters.snapshots_sent");
    long long catch_ups = ft_status (&x.p.a, "pair.counters.catch_ups");
    s_link (&x, 0, SIGSTOP);
    HARNESS_ASSERT (pt_wait_field (&x.p.a, "pair.peer_state", "lost", 10000),
                    "A did not lose its peer");
    HARNESS_ASSERT (pt_wait_field (&x.p.b, "pair.peer_state", "lost", 10000),
                    "B did not lose its peer");
    // The clients stay at A: the batch finishes there, B stays passive.
    pt_finish (driver);
    s_assert_role (&x.p.a, "active");
    s_assert_role (&x.p.b, "passive");
    HARNESS_ASSERT (ft_status (&x.p.b, "pair.counters.takeovers") == 0, "B took over");
    // The links come back: B gets in sync again.
    s_link (&x, 0, SIGCONT);
    HARNESS_ASSERT (pt_wait_field (&x.p.b, "pair.synced", "true", 20000),
                    "B did not get back in sync once the link was mended");
    s_assert_role (&x.p.a, "active");
    // From its last update (catch-up), not from a second snapshot.
    HARNESS_ASSERT (ft_status (&x.p.a, "pair.counters.catch_ups") > catch_ups
                        && ft_status (&x.p.a, "pair.counters.snapshots_sent") == snapshots,
                    "B resynced with %lld more catch-ups and %lld more snapshots",
                    ft_status (&x.p.a, "pair.counters.catch_ups") - catch_ups,
                    ft_status (&x.p.a, "pair.counters.snapshots_sent") - snapshots);
}

Test (pair_faults, with_two_links_cutting_one_changes_nothing_but_links_up, .init = harness_setup,
      .fini = harness_teardown, .timeout = 240)
{
    s_proxied_t x;
    s_proxied_start (&x, 2);
    HARNESS_ASSERT (ft_wait_status (&x.p.a, "pair.links_up", 2, 5000), "A has not 2 links up");
    pid_t driver = pt_load (&x.p);
    s_link (&x, 0, SIGSTOP);
    HARNESS_ASSERT (pt_wait_field (&x.p.a, "pair.links_up", "1", 10000),
                    "A still counts link 0 up");
    pt_finish (driver);
    s_assert_role (&x.p.a, "active");
    s_assert_role (&x.p.b, "passive");
    char text[16];
    pt_status_str (&x.p.a, "pair.peer_state", text, sizeof text);
    HARNESS_ASSERT (strcmp (text, "up") == 0, "A's peer is %s with one link left", text);
    pt_status_str (&x.p.a, "pair.synced", text, sizeof text);
    HARNESS_ASSERT (strcmp (text, "true") == 0, "A's mirror is not in sync over link 1");
    // The mirror kept up over link 1.
    pt_brokers_t both = { &x.p.a, &x.p.b };
    HARNESS_ASSERT (harness_poll_until (pt_mirror_caught_up, &both, 10000),
                    "B's mirror fell behind with one link cut");
    s_link (&x, 0, SIGCONT);
    HARNESS_ASSERT (pt_wait_field (&x.p.a, "pair.links_up", "2", 10000),
                    "link 0 did not come back");
}

Test (pair_faults, with_two_links_an_active_paused_past_pairtimeout_demotes_and_stays_passive,
      .init = harness_setup, .fini = harness_teardown, .timeout = 240)
{
    s_proxied_t x;
    s_proxied_start (&x, 2);
    pid_t driver = pt_load (&x.p);
    harness_signal (x.p.a.pid, SIGSTOP);
    HARNESS_ASSERT (pt_wait_field (&x.p.b, "role", "active", 10000), "B did not take over");
    long long epoch_b = ft_status (&x.p.b, "epoch");
    struct timespec pause = { 4, 0 };
    nanosleep (&pause, NULL); // the fault: A stays stopped while B serves
    harness_signal (x.p.a.pid, SIGCONT);
    HARNESS_ASSERT (pt_wait_field (&x.p.a, "role", "passive", 3000), "A did not demote");
    pt_finish (driver);
    // Heartbeats B sent on the second link while A was stopped must not
    // make A take the pair back: B stays active on its epoch.
    s_assert_role (&x.p.b, "active");
    s_assert_role (&x.p.a, "passive");
    HARNESS_ASSERT (ft_status (&x.p.b, "epoch") == epoch_b, "B's epoch moved");
    HARNESS_ASSERT (ft_status (&x.p.b, "pair.counters.demotions") == 0, "B was demoted");
}
