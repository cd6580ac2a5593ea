/*  test_pair.h — helpers of the resilient pair's integration tests
    (test_pair*.c): a pair A (primary) + B (backup) planned on free ports,
    started and waited for (A active, B passive in sync), status fields
    read as text, the driver's output checked for exactly-once delivery,
    and a loopback TCP proxy (tcp_proxy.py) a test can stop to cut a link.

    Header-only (static functions) so that each test file stays one
    executable; every wait polls with a deadline.
*/
#ifndef KEEL_TEST_PAIR_H
#define KEEL_TEST_PAIR_H

#include "test_ft.h"

typedef struct {
    harness_broker_t a, b;
    int pair_a, pair_b; // pair link ports
    char sets_a[8][400], sets_b[8][400];
    const char *argv_a[9], *argv_b[9];
} pt_pair_t;

static inline void
pt_sets (pt_pair_t *p, char sets[8][400], const char *argv[9], const char *role, int own, int peer)
{
    int n = 0;
    snprintf (sets[n++], 400, "PairRole=%s", role);
    snprintf (sets[n++], 400, "PairEndpoint=tcp://127.0.0.1:%d", own);
    snprintf (sets[n++], 400, "PairPeer=tcp://127.0.0.1:%d", peer);
    snprintf (sets[n++], 400, "HeartbeatInterval=250ms");
    snprintf (sets[n++], 400, "EngineTimeoutMinutes=0.5");
    // Every pair event appends "EVENT BROKER EPOCH" to <dir>/notify.log.
    snprintf (sets[n++], 400,
              "NotifyCommand=echo \"$KEEL_EVENT $KEEL_BROKER $KEEL_EPOCH\" >> %s/notify.log",
              harness_dir ());
    for (int i = 0; i < n; i++)
        argv[i] = sets[i];
    argv[n] = NULL;
    (void) p;
}

static inline void
pt_plan (pt_pair_t *p)
{
    memset (p, 0, sizeof *p);
    HARNESS_ASSERT (ft_broker_plan (&p->a, "brokerA") && ft_broker_plan (&p->b, "brokerB"),
                    "no ports");
    p->pair_a = harness_free_port ();
    p->pair_b = harness_free_port ();
    HARNESS_ASSERT (p->pair_a && p->pair_b, "no ports for the pair links");
    pt_sets (p, p->sets_a, p->argv_a, "primary", p->pair_a, p->pair_b);
    pt_sets (p, p->sets_b, p->argv_b, "backup", p->pair_b, p->pair_a);
}

// keel-admin --json status field as text ("" when it did not answer).
static inline void
pt_status_str (const harness_broker_t *b, const char *path, char *out, size_t size)
{
    out[0] = 0;
    char *json = ft_admin_json (b, "status", NULL);
    if (json)
        harness_json_get (json, path, out, size);
    free (json);
}

typedef struct {
    const harness_broker_t *b;
    const char *path;
    const char *want;
} pt_field_wait_t;

static inline bool
pt_field_is (void *arg)
{
    pt_field_wait_t *w = arg;
    char value[64];
    pt_status_str (w->b, w->path, value, sizeof value);
    return strcmp (value, w->want) == 0;
}

static inline bool
pt_wait_field (const harness_broker_t *b, const char *path, const char *want, int timeout_ms)
{
    pt_field_wait_t w = { b, path, want };
    return harness_poll_until (pt_field_is, &w, timeout_ms);
}

// Starts both brokers and waits until A is active and B a passive in sync.
static inline void
pt_start_pair (pt_pair_t *p)
{
    HARNESS_ASSERT (ft_broker_spawn (&p->a, p->argv_a), "broker A did not start");
    HARNESS_ASSERT (ft_broker_spawn (&p->b, p->argv_b), "broker B did not start");
    HARNESS_ASSERT (pt_wait_field (&p->a, "role", "active", 15000), "A did not become active");
    HARNESS_ASSERT (pt_wait_field (&p->b, "role", "passive", 15000), "B did not become passive");
    HARNESS_ASSERT (pt_wait_field (&p->b, "pair.synced", "true", 15000), "B never got in sync");
    HARNESS_ASSERT (pt_wait_field (&p->a, "pair.synced", "true", 15000),
                    "A never counted B in sync");
}

// Lines in <dir>/<name>.
static inline long
pt_lines (const char *name)
{
    char path[600];
    harness_path (path, sizeof path, name);
    return harness_count_lines (path);
}

typedef struct {
    const char *name;
    long min;
} pt_lines_wait_t;

static inline bool
pt_lines_at_least (void *arg)
{
    pt_lines_wait_t *w = arg;
    return pt_lines (w->name) >= w->min;
}

// Every task 0..n-1 exactly once with status ok in the driver's output.
static inline void
pt_assert_each_once (const char *name, int n)
{
    harness_assert_each_once (name, n, NULL);
}

typedef struct {
    const harness_broker_t *a, *b;
} pt_brokers_t;

// B's mirror holds everything A has committed (sampled now).
static inline bool
pt_mirror_caught_up (void *arg)
{
    pt_brokers_t *p = arg;
    long long a = ft_status (p->a, "pair.applied_seq");
    return a > 0 && ft_status (p->b, "pair.applied_seq") >= a
           && ft_status (p->a, "store_unsynced") == 0;
}

// 400 tasks of 20 ms on two 1-slot engines, every task accepted and
// mirrored before it returns; the driver's pid.
static inline pid_t
pt_load (pt_pair_t *p)
{
    pid_t e1 = ft_engine_start (&p->a, &p->b, "engine1", 1, NULL);
    pid_t e2 = ft_engine_start (&p->a, &p->b, "engine2", 1, NULL);
    HARNESS_ASSERT (e1 > 0 && e2 > 0 && harness_wait_engines (&p->a, 2, 15000),
                    "engines not online on A");
    const char *submit[] = { "--service", "sleep", "--input", "20", "--count", "400", NULL };
    const char *driver_sets[] = { "DSBrokerTimeout=120s", NULL };
    pid_t driver = ft_driver_start ("driver", &p->a, &p->b, driver_sets, submit);
    HARNESS_ASSERT (driver > 0, "keel-driver did not start");
    HARNESS_ASSERT (ft_wait_status (&p->a, "counters.tasks_submitted", 400, 15000),
                    "A did not get the 400 tasks");
    pt_brokers_t both = { &p->a, &p->b };
    HARNESS_ASSERT (harness_poll_until (pt_mirror_caught_up, &both, 10000),
                    "B's mirror did not catch up with A");
    pt_lines_wait_t some = { "driver.out", 10 };
    HARNESS_ASSERT (harness_poll_until (pt_lines_at_least, &some, 30000), "no results from A");
    return driver;
}

static inline void
pt_finish (pid_t driver)
{
    int code = -1;
    HARNESS_ASSERT (harness_wait_exit (driver, 90000, &code), "keel-driver did not finish");
    HARNESS_ASSERT (code == 0, "keel-driver exited %d", code);
    pt_assert_each_once ("driver.out", 400);
}

// Starts tcp_proxy.py: connections to 127.0.0.1:listen_port go to
// 127.0.0.1:target_port. SIGSTOP cuts the link, SIGCONT mends it.
static inline pid_t
pt_proxy_start (const char *name, int listen_port, int target_port)
{
    char listen[16], target[16];
    snprintf (listen, sizeof listen, "%d", listen_port);
    snprintf (target, sizeof target, "%d", target_port);
    const char *argv[] = { KEEL_SOURCE_DIR "/tests/integration/tcp_proxy.py", listen, target,
                           NULL };
    pid_t pid = harness_spawn (name, "/usr/bin/python3", argv);
    char out[64];
    snprintf (out, sizeof out, "%s.out", name);
    if (pid > 0 && !ft_wait_log (out, "ready", 10000))
        return -1;
    return pid;
}

#endif
