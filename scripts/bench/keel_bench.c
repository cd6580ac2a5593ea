/*  keel_bench.c — the Keel side of the benchmarks that keel-driver (a batch
    CLI) cannot measure, written against the public libkeeldriver API.

      keel-bench latency BROKER N [KEY=VALUE]...
          N sequential round trips of one `double` task each: submit one,
          wait for its result, repeat. Prints median and p99 in µs. The
          first 1% (at least 10) are warm-up and not counted.

      keel-bench failover PRIMARY FAILOVER|- PID [KEY=VALUE]...
          Keeps `sleep 50` tasks flowing (8 in flight), and once 20 results
          are in, sends SIGKILL to PID (a broker the calling script started)
          and measures the time from the kill to the next result. Prints
          "killed wall_ms=..." on stdout when it has killed (so the script
          can restart the broker, and time the failover broker's log lines
          from the kill), then gap_ms=... Status events go to stderr with
          their time since the kill.

      keel-bench submit BROKER N [KEY=VALUE]...
          Submits N `double` tasks (inputs 0..N-1) at once, without the
          result window keel-driver keeps, then keeps the connection until
          the deadline or SIGTERM: W4 fills a broker that has no engines.

    KEY=VALUE arguments are driver settings (DSBrokerTimeout=2s ...).
    Output is one line of key=value pairs on stdout; exit 1 when the work
    failed, 2 on usage errors. Every wait is bounded (KEEL_BENCH_DEADLINE_S,
    default 600 s).
*/
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include "cli.h"
#include "keel/driver.h"
#include "log.h"

#define KB_MAX_TASKS     10000000L
#define KB_FLOW_WINDOW   8
#define KB_FLOW_WARM     20
#define KB_FLOW_AFTER    5
#define KB_MAX_OVERRIDES 16

static int64_t
s_now_us (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t
s_deadline_us (void)
{
    const char *env = getenv ("KEEL_BENCH_DEADLINE_S");
    long seconds = env ? strtol (env, NULL, 10) : 600;
    if (seconds <= 0)
        seconds = 600;
    return s_now_us () + (int64_t) seconds * 1000000;
}

static int
s_cmp_i64 (const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return (x > y) - (x < y);
}

// Builds a driver on `primary` (and `failover` unless NULL) with the extra
// KEY=VALUE settings of argv[0..argc).
static keel_driver_t *
s_driver (const char *primary, const char *failover, int argc, char **argv)
{
    static char primary_kv[512], failover_kv[512];
    char *overrides[KB_MAX_OVERRIDES + 2];
    int n = 0;
    snprintf (primary_kv, sizeof primary_kv, "DSPrimaryBroker=%s", primary);
    overrides[n++] = primary_kv;
    if (failover) {
        snprintf (failover_kv, sizeof failover_kv, "DSFailoverBrokers=%s", failover);
        overrides[n++] = failover_kv;
    }
    for (int i = 0; i < argc && i < KB_MAX_OVERRIDES; i++)
        overrides[n++] = argv[i];
    keel_error_t err = { { 0 } };
    keel_driver_t *driver = keel_driver_new (NULL, overrides, n, &err);
    if (!driver)
        fprintf (stderr, "keel-bench: %s\n", err.text);
    return driver;
}

static keel_service_t *
s_service (keel_driver_t *driver, const char *type)
{
    keel_service_options_t options;
    keel_service_options_init (&options, type);
    keel_error_t err = { { 0 } };
    keel_service_t *service = keel_driver_open_service (driver, &options, &err);
    if (!service)
        fprintf (stderr, "keel-bench: open service: %s\n", err.text);
    return service;
}

// ---------------------------------------------------------------- latency

static int
s_latency (const char *broker, long total, int argc, char **argv)
{
    keel_driver_t *driver = s_driver (broker, NULL, argc, argv);
    keel_service_t *service = driver ? s_service (driver, "double") : NULL;
    int64_t *lat = calloc ((size_t) total, sizeof *lat);
    if (!service || !lat) {
        keel_driver_destroy (&driver);
        free (lat);
        return 1;
    }
    long warmup = total / 100 > 10 ? total / 100 : 10;
    int64_t deadline = s_deadline_us ();
    int rc = 0;
    for (long i = -warmup; i < total && rc == 0; i++) {
        char input[32];
        long value = i < 0 ? -i : i;
        int n = snprintf (input, sizeof input, "%ld", value);
        keel_error_t err = { { 0 } };
        int64_t t0 = s_now_us ();
        if (keel_service_submit (service, input, (size_t) n, NULL, &err) != KEEL_OK) {
            fprintf (stderr, "keel-bench: submit: %s\n", err.text);
            rc = 1;
            break;
        }
        keel_result_t *result = NULL;
        while (!result && s_now_us () < deadline) {
            if (keel_driver_next_result (driver, 1000, &result, &err) != KEEL_OK) {
                fprintf (stderr, "keel-bench: %s\n", err.text);
                break;
            }
        }
        int64_t elapsed = s_now_us () - t0;
        char expect[32];
        int m = snprintf (expect, sizeof expect, "%ld", 2 * value);
        if (!result || result->status != KEEL_TASK_OK || result->output_size != (size_t) m
            || memcmp (result->output, expect, (size_t) m) != 0) {
            fprintf (stderr, "keel-bench: task %ld: no or wrong result\n", i);
            rc = 1;
        }
        else if (i >= 0)
            lat[i] = elapsed;
        keel_result_destroy (&result);
    }
    if (rc == 0) {
        qsort (lat, (size_t) total, sizeof *lat, s_cmp_i64);
        printf ("round_trips=%ld median_us=%" PRId64 " p99_us=%" PRId64 " min_us=%" PRId64
                " max_us=%" PRId64 "\n",
                total, lat[total / 2], lat[(total * 99) / 100], lat[0], lat[total - 1]);
    }
    free (lat);
    keel_driver_destroy (&driver);
    return rc;
}

// ---------------------------------------------------------------- failover

typedef struct {
    int64_t killed_at; // 0 until the kill
} s_flow_t;

static void
s_on_status (const keel_status_t *status, void *arg)
{
    s_flow_t *flow = arg;
    double since = flow->killed_at ? (s_now_us () - flow->killed_at) / 1000.0 : 0;
    fprintf (stderr, "keel-bench: +%.0f ms status %s: %s\n", since,
             keel_status_kind_name (status->kind), status->text);
}

static int
s_failover (const char *primary, const char *failover, pid_t victim, int argc, char **argv)
{
    keel_driver_t *driver = s_driver (primary, failover, argc, argv);
    keel_service_t *service = driver ? s_service (driver, "sleep") : NULL;
    if (!service) {
        keel_driver_destroy (&driver);
        return 1;
    }
    s_flow_t flow = { 0 };
    keel_driver_set_status_handler (driver, s_on_status, &flow);
    long results = 0, after_kill = 0;
    int64_t gap_us = -1, deadline = s_deadline_us ();
    int rc = 0;
    while (after_kill < KB_FLOW_AFTER && s_now_us () < deadline) {
        keel_error_t err = { { 0 } };
        while (keel_driver_outstanding (driver) < KB_FLOW_WINDOW)
            if (keel_service_submit (service, "50", 2, NULL, &err) != KEEL_OK) {
                fprintf (stderr, "keel-bench: submit: %s\n", err.text);
                keel_driver_destroy (&driver);
                return 1;
            }
        keel_result_t *result = NULL;
        keel_err e = keel_driver_next_result (driver, 200, &result, &err);
        if (e != KEEL_OK && e != KEEL_ERR_TIMEOUT) {
            fprintf (stderr, "keel-bench: %s\n", err.text);
            rc = 1;
            break;
        }
        if (!result)
            continue;
        if (result->status != KEEL_TASK_OK)
            fprintf (stderr, "keel-bench: task %" PRIu64 " failed: %s\n", result->task_id,
                     result->error);
        keel_result_destroy (&result);
        results++;
        if (flow.killed_at) {
            if (after_kill++ == 0) {
                gap_us = s_now_us () - flow.killed_at;
                fprintf (stderr, "keel-bench: +%.0f ms first result after the kill\n",
                         gap_us / 1000.0);
            }
        }
        else if (results >= KB_FLOW_WARM) {
            if (kill (victim, SIGKILL) != 0) {
                perror ("keel-bench: kill");
                rc = 1;
                break;
            }
            flow.killed_at = s_now_us ();
            struct timespec wall;
            clock_gettime (CLOCK_REALTIME, &wall);
            printf ("killed wall_ms=%lld\n",
                    (long long) wall.tv_sec * 1000 + wall.tv_nsec / 1000000);
            fflush (stdout);
        }
    }
    if (rc == 0 && gap_us < 0) {
        fprintf (stderr, "keel-bench: no result after the kill before the deadline\n");
        rc = 1;
    }
    if (rc == 0)
        printf ("gap_ms=%.1f results=%ld\n", gap_us / 1000.0, results);
    fflush (stdout);
    keel_driver_destroy (&driver);
    return rc;
}

// ---------------------------------------------------------------- submit

static volatile sig_atomic_t s_stop;

static void
s_on_term (int sig)
{
    (void) sig;
    s_stop = 1;
}

static int
s_submit (const char *broker, long total, int argc, char **argv)
{
    signal (SIGTERM, s_on_term);
    signal (SIGINT, s_on_term);
    keel_driver_t *driver = s_driver (broker, NULL, argc, argv);
    keel_service_t *service = driver ? s_service (driver, "double") : NULL;
    if (!service) {
        keel_driver_destroy (&driver);
        return 1;
    }
    for (long i = 0; i < total; i++) {
        char input[32];
        int n = snprintf (input, sizeof input, "%ld", i);
        keel_error_t err = { { 0 } };
        if (keel_service_submit (service, input, (size_t) n, NULL, &err) != KEEL_OK) {
            fprintf (stderr, "keel-bench: submit: %s\n", err.text);
            keel_driver_destroy (&driver);
            return 1;
        }
    }
    int64_t deadline = s_deadline_us ();
    while (!s_stop && s_now_us () < deadline) {
        keel_error_t err = { { 0 } };
        keel_driver_poll (driver, 200, &err);
    }
    keel_driver_destroy (&driver);
    return 0;
}

// ---------------------------------------------------------------- main

static int
s_usage (FILE *out, int code)
{
    fprintf (out, "usage: keel-bench latency BROKER N [KEY=VALUE]...\n"
                  "       keel-bench failover PRIMARY FAILOVER|- PID [KEY=VALUE]...\n"
                  "       keel-bench submit BROKER N [KEY=VALUE]...\n"
                  "       keel-bench --help | --version\n"
                  "Latency and failover probes of the Keel benchmarks (scripts/bench/run.sh).\n");
    return code;
}

int
main (int argc, char **argv)
{
    if (argc == 2 && (strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0))
        return s_usage (stdout, 0);
    if (argc == 2 && strcmp (argv[1], "--version") == 0) {
        keel_cli_print_version ("keel-bench", stdout);
        return 0;
    }
    keel_log_init (KEEL_LOG_WARN);
    if (argc >= 4 && strcmp (argv[1], "latency") == 0) {
        char *end = NULL;
        long n = strtol (argv[3], &end, 10);
        if (*end || n < 1 || n > KB_MAX_TASKS)
            return s_usage (stderr, 2);
        return s_latency (argv[2], n, argc - 4, argv + 4);
    }
    if (argc >= 4 && strcmp (argv[1], "submit") == 0) {
        char *end = NULL;
        long n = strtol (argv[3], &end, 10);
        if (*end || n < 1 || n > KB_MAX_TASKS)
            return s_usage (stderr, 2);
        return s_submit (argv[2], n, argc - 4, argv + 4);
    }
    if (argc >= 5 && strcmp (argv[1], "failover") == 0) {
        char *end = NULL;
        long pid = strtol (argv[4], &end, 10);
        if (*end || pid <= 1)
            return s_usage (stderr, 2);
        const char *failover = strcmp (argv[3], "-") == 0 ? NULL : argv[3];
        return s_failover (argv[2], failover, (pid_t) pid, argc - 5, argv + 5);
    }
    return s_usage (stderr, 2);
}
