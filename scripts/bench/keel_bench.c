/*  keel_bench.c — the Keel side of the benchmarks that keel-driver (a batch
    CLI) cannot measure, written against the public libkeeldriver API.

      keel-bench latency BROKER N [KEY=VALUE]...
          N sequential round trips of one `double` task each: submit one,
          wait for its result, repeat. Prints median and p99 in µs. The
          first 1% (at least 10) are warm-up and not counted.
          KEEL_BENCH_LATENCIES=FILE writes every counted round trip's µs
          to FILE, in order.

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

      keel-bench driver-failover PID AFTER N LOG -- PROGRAM [ARG]...
          W3 of a pair: runs PROGRAM (keel-driver ... submit --service
          double --range 0:N) on a pseudo-terminal, so that it writes each
          result line when it has the result (keel-driver buffers 64 KiB of
          stdout when it is not a terminal), its stderr to LOG. Stamps each
          line on the monotonic clock; after AFTER result lines sends
          SIGKILL to PID (the active broker) and prints "killed wall_ms=...".
          At the end checks that every task 0..N-1 came exactly once, ok,
          with twice its input, and prints gap_ms: from the kill to the
          first line after the silence (lines that follow the kill with no
          silence of KB_LEFTOVER_MS are results the killed broker had
          already sent); also first_line_ms, leftovers, done_ms (kill to
          the last line), stall_ms (the longest silence after the gap) and
          retried (results with attempts > 1).

    KEY=VALUE arguments are driver settings (DSBrokerTimeout=2s ...).
    Output is one line of key=value pairs on stdout; exit 1 when the work
    failed, 2 on usage errors. Every wait is bounded (KEEL_BENCH_DEADLINE_S,
    default 600 s).
*/
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include "cli.h"
#include "keel/driver.h"
#include "log.h"

#define KB_MAX_TASKS     10000000L
#define KB_FLOW_WINDOW   8
#define KB_FLOW_WARM     20
#define KB_FLOW_AFTER    5
#define KB_MAX_OVERRIDES 16
// A line this soon after the kill or the line before it is one the killed
// broker had sent (a failover takes at least PairTimeout, 3 heartbeats).
#define KB_LEFTOVER_MS   50

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
    //  KEEL_BENCH_LATENCIES=FILE: every counted round trip in µs, in order,
    //  one a line (to see when the slow ones come, not only how many).
    const char *dump = getenv ("KEEL_BENCH_LATENCIES");
    FILE *out = rc == 0 && dump && *dump ? fopen (dump, "w") : NULL;
    if (out) {
        for (long i = 0; i < total; i++)
            fprintf (out, "%" PRId64 "\n", lat[i]);
        fclose (out);
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

// ---------------------------------------------------------------- driver-failover

typedef struct {
    long total;          // tasks 0..total-1
    unsigned char *seen; // times each task came
    long lines, bad, retried;
    int64_t killed_at; // 0 until the kill
    int64_t *after;    // stamps of the lines after the kill
    long nafter;
} s_watch_t;

// The unsigned integer after `"key":` in line, -1 when absent.
static long long
s_json_uint (const char *line, const char *key)
{
    char pattern[32];
    snprintf (pattern, sizeof pattern, "\"%s\":", key);
    const char *at = strstr (line, pattern);
    if (!at)
        return -1;
    char *end = NULL;
    long long value = strtoll (at + strlen (pattern), &end, 10);
    return end == at + strlen (pattern) ? -1 : value;
}

static void
s_watch_line (s_watch_t *w, const char *line, int64_t now)
{
    w->lines++;
    // Lines read in the same chunk as the kill were read before it.
    if (w->killed_at && w->nafter < w->total)
        w->after[w->nafter++] = now > w->killed_at ? now : w->killed_at;
    long long task = s_json_uint (line, "task");
    char expect[48];
    snprintf (expect, sizeof expect, "\"status\":\"ok\",\"output\":\"%lld\"", 2 * task);
    if (task < 0 || task >= w->total || !strstr (line, expect)) {
        if (w->bad++ < 5)
            fprintf (stderr, "keel-bench: bad result line: %.200s\n", line);
        return;
    }
    if (w->seen[task] < 255)
        w->seen[task]++;
    if (s_json_uint (line, "attempts") > 1)
        w->retried++;
}

// Child side: stderr to log, then PROGRAM.
static void
s_exec_driver (const char *log, char **argv)
{
    int fd = open (log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        dup2 (fd, STDERR_FILENO);
        close (fd);
    }
    execvp (argv[0], argv);
    fprintf (stderr, "keel-bench: cannot run %s: %s\n", argv[0], strerror (errno));
    _exit (127);
}

static int
s_driver_failover (pid_t victim, long after, long total, const char *log, char **argv)
{
    s_watch_t w = { .total = total };
    w.seen = calloc ((size_t) total, 1);
    w.after = calloc ((size_t) total, sizeof *w.after);
    char *buf = malloc (1 << 16);
    if (!w.seen || !w.after || !buf) {
        free (w.seen);
        free (w.after);
        free (buf);
        return 1;
    }
    // Raw: no CR before LF, no echo.
    struct termios raw;
    memset (&raw, 0, sizeof raw);
    cfmakeraw (&raw);
    int master = -1;
    pid_t child = forkpty (&master, NULL, &raw, NULL);
    if (child < 0) {
        perror ("keel-bench: forkpty");
        return 1;
    }
    if (child == 0)
        s_exec_driver (log, argv);

    int64_t deadline = s_deadline_us ();
    size_t used = 0;
    int rc = 0;
    bool eof = false;
    while (!eof) {
        if (s_now_us () >= deadline) {
            fprintf (stderr, "keel-bench: deadline: %ld lines of %ld\n", w.lines, total);
            kill (child, SIGKILL);
            rc = 1;
            break;
        }
        struct pollfd pfd = { .fd = master, .events = POLLIN };
        if (poll (&pfd, 1, 200) <= 0)
            continue;
        ssize_t n = read (master, buf + used, (1 << 16) - used);
        if (n <= 0) { // EIO: the driver's side of the terminal is closed
            if (n < 0 && errno == EINTR)
                continue;
            eof = true;
            n = 0;
        }
        int64_t now = s_now_us ();
        used += (size_t) n;
        size_t start = 0;
        for (size_t i = 0; i < used; i++) {
            if (buf[i] != '\n')
                continue;
            buf[i] = 0;
            s_watch_line (&w, buf + start, now);
            start = i + 1;
            if (!w.killed_at && w.lines >= after) {
                if (kill (victim, SIGKILL) != 0) {
                    perror ("keel-bench: kill");
                    rc = 1;
                }
                w.killed_at = s_now_us ();
                struct timespec wall;
                clock_gettime (CLOCK_REALTIME, &wall);
                printf ("killed wall_ms=%lld lines=%ld\n",
                        (long long) wall.tv_sec * 1000 + wall.tv_nsec / 1000000, w.lines);
                fflush (stdout);
            }
        }
        memmove (buf, buf + start, used - start);
        used -= start;
        if (used == (1 << 16)) { // a line longer than the buffer: not a result
            w.bad++;
            used = 0;
        }
    }
    close (master);
    int status = 0;
    waitpid (child, &status, 0);
    int code = WIFEXITED (status) ? WEXITSTATUS (status) : 128 + WTERMSIG (status);

    long dups = 0, missing = 0;
    for (long i = 0; i < total; i++) {
        missing += w.seen[i] == 0;
        dups += w.seen[i] > 1 ? w.seen[i] - 1 : 0;
    }
    if (!w.killed_at) {
        fprintf (stderr, "keel-bench: the driver finished before %ld results\n", after);
        rc = 1;
    }
    else if (w.nafter == 0) {
        fprintf (stderr, "keel-bench: no result after the kill\n");
        rc = 1;
    }
    else {
        // The first line after a silence of KB_LEFTOVER_MS since the kill
        // or the line before it; then the longest silence after it.
        long first = 0;
        int64_t prev = w.killed_at;
        while (first < w.nafter && w.after[first] - prev < KB_LEFTOVER_MS * 1000)
            prev = w.after[first++];
        int64_t stall = 0;
        for (long i = first + 1; i < w.nafter; i++)
            if (w.after[i] - w.after[i - 1] > stall)
                stall = w.after[i] - w.after[i - 1];
        char gap[32] = "none";
        if (first < w.nafter)
            snprintf (gap, sizeof gap, "%.1f", (w.after[first] - w.killed_at) / 1000.0);
        else {
            fprintf (stderr, "keel-bench: no result after the failover (only %ld leftovers)\n",
                     first);
            rc = 1;
        }
        printf ("gap_ms=%s first_line_ms=%.1f leftovers=%ld done_ms=%.1f stall_ms=%.1f "
                "lines=%ld missing=%ld duplicated=%ld bad=%ld retried=%ld exit=%d\n",
                gap, (w.after[0] - w.killed_at) / 1000.0, first,
                (w.after[w.nafter - 1] - w.killed_at) / 1000.0, stall / 1000.0, w.lines, missing,
                dups, w.bad, w.retried, code);
        if (missing || dups || w.bad || w.lines != total || code != 0) {
            fprintf (stderr,
                     "keel-bench: %ld lines for %ld tasks: %ld missing, %ld duplicated, %ld bad; "
                     "driver exit %d\n",
                     w.lines, total, missing, dups, w.bad, code);
            rc = 1;
        }
    }
    fflush (stdout);
    free (w.seen);
    free (w.after);
    free (buf);
    return rc;
}

// ---------------------------------------------------------------- main

static int
s_usage (FILE *out, int code)
{
    fprintf (out, "usage: keel-bench latency BROKER N [KEY=VALUE]...\n"
                  "       keel-bench failover PRIMARY FAILOVER|- PID [KEY=VALUE]...\n"
                  "       keel-bench submit BROKER N [KEY=VALUE]...\n"
                  "       keel-bench driver-failover PID AFTER N LOG -- PROGRAM [ARG]...\n"
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
    if (argc >= 8 && strcmp (argv[1], "driver-failover") == 0 && strcmp (argv[6], "--") == 0) {
        char *end1 = NULL, *end2 = NULL, *end3 = NULL;
        long pid = strtol (argv[2], &end1, 10);
        long after = strtol (argv[3], &end2, 10);
        long n = strtol (argv[4], &end3, 10);
        if (*end1 || *end2 || *end3 || pid <= 1 || after < 1 || n <= after || n > KB_MAX_TASKS)
            return s_usage (stderr, 2);
        return s_driver_failover ((pid_t) pid, after, n, argv[5], argv + 7);
    }
    return s_usage (stderr, 2);
}
