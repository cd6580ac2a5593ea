/*  gearman_bench.c — Gearman as a peer row of the Keel benchmarks.

    A client and a worker on libgearman (Debian libgearman-dev) doing the
    work of Keel's W1 and W2 through a private gearmand (Debian
    gearman-job-server, builtin in-memory queue) that scripts/bench/run.sh
    starts on 127.0.0.1 and stops by PID:

      gearman-bench worker HOST PORT                registers `double`
      gearman-bench client-throughput HOST PORT N [BATCH]
                                                    N foreground jobs, tasks/s
      gearman-bench client-latency HOST PORT N      N gearman_client_do, µs

    The work is Keel's built-in `double`: the workload is a decimal integer,
    the result twice it in decimal; the client checks every result. A worker
    holds one job at a time (Gearman's GRAB_JOB / WORK_COMPLETE): two worker
    processes are W1's 2 engines × 1 slot.

    Keeping jobs in flight. libgearman's pipelined client is
    gearman_client_add_task + gearman_client_run_tasks: run_tasks sends every
    added SUBMIT_JOB, then reads JOB_CREATED and WORK_COMPLETE packets until
    all its tasks are done. client-throughput adds BATCH foreground tasks
    (default 1,000), runs them, frees them and adds the next batch, so up to
    BATCH jobs are in the server at once and the pipe drains only at the end
    of each batch. A task is found by a linear search of the client's task
    list for each packet, so much larger batches cost more than they gain
    (measured in docs/benchmarks.md).

    Results go to stdout as one line of key=value pairs in the format of
    relay.c; errors to stderr with exit 1 (2 for usage). Every wait is
    bounded: libgearman's I/O timeout (1 s) and an overall deadline
    (GEARMAN_BENCH_DEADLINE_S, default 600 s).
*/
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <libgearman-1.0/gearman.h>

#define GEARMAN_BENCH_FUNCTION      "double"
#define GEARMAN_BENCH_PAYLOAD       32
#define GEARMAN_BENCH_MAX_TASKS     100000000L
#define GEARMAN_BENCH_MAX_BATCH     1000000L
#define GEARMAN_BENCH_BATCH         1000
#define GEARMAN_BENCH_IO_TIMEOUT_MS 1000

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
    const char *env = getenv ("GEARMAN_BENCH_DEADLINE_S");
    long seconds = env ? strtol (env, NULL, 10) : 600;
    if (seconds <= 0)
        seconds = 600;
    return s_now_us () + (int64_t) seconds * 1000000;
}

// Parses a decimal integer of size bytes (not NUL-terminated); false if it
// is not one.
static bool
s_parse (const void *data, size_t size, long long *value)
{
    char text[GEARMAN_BENCH_PAYLOAD];
    if (!data || size == 0 || size >= sizeof text)
        return false;
    memcpy (text, data, size);
    text[size] = '\0';
    char *end = NULL;
    *value = strtoll (text, &end, 10);
    return *end == '\0';
}

// ---------------------------------------------------------------- worker

// `double`: "<n>" -> "<2n>"; a bad input fails the job.
static gearman_return_t
s_double (gearman_job_st *job, void *context)
{
    (void) context;
    long long value;
    if (!s_parse (gearman_job_workload (job), gearman_job_workload_size (job), &value))
        return GEARMAN_FATAL;
    char out[GEARMAN_BENCH_PAYLOAD];
    int n = snprintf (out, sizeof out, "%lld", value * 2);
    if (gearman_failed (gearman_job_send_complete (job, out, (size_t) n)))
        return GEARMAN_ERROR;
    return GEARMAN_SUCCESS;
}

// Does jobs until the deadline (the bench stops it by PID before then).
// While the server cannot be reached it retries every 100 ms.
static int
s_worker (const char *host, in_port_t port)
{
    gearman_worker_st *worker = gearman_worker_create (NULL);
    if (!worker) {
        fprintf (stderr, "gearman-bench worker: gearman_worker_create failed\n");
        return 1;
    }
    gearman_worker_set_timeout (worker, GEARMAN_BENCH_IO_TIMEOUT_MS);
    gearman_function_t fn = gearman_function_create (s_double);
    if (gearman_failed (gearman_worker_add_server (worker, host, port))
        || gearman_failed (gearman_worker_define_function (
            worker, GEARMAN_BENCH_FUNCTION, strlen (GEARMAN_BENCH_FUNCTION), fn, 0, NULL))) {
        fprintf (stderr, "gearman-bench worker: %s\n", gearman_worker_error (worker));
        gearman_worker_free (worker);
        return 1;
    }
    int64_t deadline = s_deadline_us ();
    while (s_now_us () < deadline) {
        gearman_return_t rc = gearman_worker_work (worker);
        if (rc == GEARMAN_SUCCESS || rc == GEARMAN_TIMEOUT || rc == GEARMAN_IO_WAIT
            || rc == GEARMAN_NO_JOBS)
            continue;
        fprintf (stderr, "gearman-bench worker: %s\n", gearman_worker_error (worker));
        struct timespec pause = { 0, 100 * 1000 * 1000 };
        nanosleep (&pause, NULL);
    }
    gearman_worker_free (worker);
    return 0;
}

// ---------------------------------------------------------------- clients

static gearman_client_st *
s_client (const char *host, in_port_t port)
{
    gearman_client_st *client = gearman_client_create (NULL);
    if (!client) {
        fprintf (stderr, "gearman-bench client: gearman_client_create failed\n");
        return NULL;
    }
    gearman_client_set_timeout (client, GEARMAN_BENCH_IO_TIMEOUT_MS);
    if (gearman_failed (gearman_client_add_server (client, host, port))) {
        fprintf (stderr, "gearman-bench client: %s\n", gearman_client_error (client));
        gearman_client_free (client);
        return NULL;
    }
    return client;
}

// What the complete callback counts, per batch.
typedef struct {
    long completed;
    long bad;
} s_tally_t;

// One job of a batch (its task's context), kept until the batch is done.
typedef struct {
    long input;
    s_tally_t *tally;
    char text[GEARMAN_BENCH_PAYLOAD];
} s_job_t;

// A job finished: its result must be twice its input.
static gearman_return_t
s_complete (gearman_task_st *task)
{
    s_job_t *job = gearman_task_context (task);
    long long output;
    if (s_parse (gearman_task_data (task), gearman_task_data_size (task), &output)
        && output == 2LL * job->input)
        job->tally->completed++;
    else
        job->tally->bad++;
    return GEARMAN_SUCCESS;
}

static int
s_client_throughput (const char *host, in_port_t port, long total, long batch)
{
    gearman_client_st *client = s_client (host, port);
    if (!client)
        return 1;
    s_tally_t tally = { 0, 0 };
    gearman_client_set_complete_fn (client, s_complete);
    s_job_t *jobs = calloc ((size_t) batch, sizeof *jobs);
    if (!jobs) {
        gearman_client_free (client);
        return 1;
    }
    long done = 0;
    int rc = 0;
    int64_t start = s_now_us (), deadline = s_deadline_us ();
    while (done < total && rc == 0) {
        long n = total - done < batch ? total - done : batch;
        tally.completed = 0;
        for (long i = 0; i < n; i++) {
            s_job_t *job = &jobs[i];
            job->input = done + i;
            job->tally = &tally;
            int size = snprintf (job->text, sizeof job->text, "%ld", job->input);
            gearman_return_t ret;
            if (!gearman_client_add_task (client, NULL, job, GEARMAN_BENCH_FUNCTION, NULL,
                                          job->text, (size_t) size, &ret)) {
                fprintf (stderr, "gearman-bench client: add_task: %s\n",
                         gearman_client_error (client));
                rc = 1;
                break;
            }
        }
        // run_tasks returns GEARMAN_TIMEOUT after an idle second: go on
        // until the batch is done or the deadline passes.
        gearman_return_t ret = GEARMAN_TIMEOUT;
        while (rc == 0 && ret == GEARMAN_TIMEOUT && s_now_us () < deadline)
            ret = gearman_client_run_tasks (client);
        if (rc == 0 && ret != GEARMAN_SUCCESS) {
            fprintf (stderr, "gearman-bench client: run_tasks: %s\n",
                     gearman_client_error (client));
            rc = 1;
        }
        if (rc == 0 && (tally.bad || tally.completed != n)) {
            fprintf (stderr, "gearman-bench client: %ld of %ld jobs done, %ld bad results\n",
                     tally.completed, n, tally.bad);
            rc = 1;
        }
        gearman_client_task_free_all (client);
        done += n;
    }
    int64_t elapsed = s_now_us () - start;
    free (jobs);
    gearman_client_free (client);
    if (rc)
        return rc;
    printf ("tasks=%ld batch=%ld seconds=%.6f tasks_per_s=%.1f\n", total, batch, elapsed / 1e6,
            total / (elapsed / 1e6));
    return 0;
}

static int
s_cmp_i64 (const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return (x > y) - (x < y);
}

// N sequential foreground jobs (gearman_client_do); prints the median and
// p99 in microseconds. The first 1% (at least 10) are warm-up.
static int
s_client_latency (const char *host, in_port_t port, long total)
{
    gearman_client_st *client = s_client (host, port);
    if (!client)
        return 1;
    long warmup = total / 100 > 10 ? total / 100 : 10;
    int64_t *lat = calloc ((size_t) total, sizeof *lat);
    if (!lat) {
        gearman_client_free (client);
        return 1;
    }
    char input[GEARMAN_BENCH_PAYLOAD];
    int64_t deadline = s_deadline_us ();
    int rc = 0;
    for (long i = -warmup; i < total && rc == 0; i++) {
        long value = i < 0 ? -i : i;
        int size = snprintf (input, sizeof input, "%ld", value);
        int64_t t0 = s_now_us ();
        if (t0 >= deadline) {
            fprintf (stderr, "gearman-bench client: deadline passed at job %ld\n", i);
            rc = 1;
            break;
        }
        size_t result_size = 0;
        gearman_return_t ret;
        void *result = gearman_client_do (client, GEARMAN_BENCH_FUNCTION, NULL, input,
                                          (size_t) size, &result_size, &ret);
        int64_t t1 = s_now_us ();
        long long output;
        if (ret != GEARMAN_SUCCESS || !s_parse (result, result_size, &output)
            || output != 2LL * value) {
            fprintf (stderr, "gearman-bench client: no or bad result for job %ld: %s\n", i,
                     ret != GEARMAN_SUCCESS ? gearman_client_error (client) : "bad result");
            rc = 1;
        }
        free (result);
        if (i >= 0)
            lat[i] = t1 - t0;
    }
    if (rc == 0) {
        qsort (lat, (size_t) total, sizeof *lat, s_cmp_i64);
        printf ("round_trips=%ld median_us=%" PRId64 " p99_us=%" PRId64 " min_us=%" PRId64
                " max_us=%" PRId64 "\n",
                total, lat[total / 2], lat[(total * 99) / 100], lat[0], lat[total - 1]);
    }
    free (lat);
    gearman_client_free (client);
    return rc;
}

// ---------------------------------------------------------------- main

static long
s_count (const char *text, long max)
{
    char *end = NULL;
    long n = strtol (text, &end, 10);
    return (*end || n < 1 || n > max) ? -1 : n;
}

static int
s_usage (FILE *out, int code)
{
    fprintf (out, "usage: gearman-bench worker HOST PORT |\n"
                  "       client-throughput HOST PORT N [BATCH] | client-latency HOST PORT N\n"
                  "       gearman-bench --help | --version\n"
                  "Gearman peer rows of the Keel benchmarks (scripts/bench/run.sh).\n");
    return code;
}

int
main (int argc, char **argv)
{
    if (argc == 2 && (strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0))
        return s_usage (stdout, 0);
    if (argc == 2 && strcmp (argv[1], "--version") == 0) {
        printf ("gearman-bench (libgearman %s)\n", gearman_version ());
        return 0;
    }
    if (argc < 4)
        return s_usage (stderr, 2);
    long port = s_count (argv[3], 65535);
    if (port < 0)
        return s_usage (stderr, 2);
    const char *host = argv[2];
    if (argc == 4 && strcmp (argv[1], "worker") == 0)
        return s_worker (host, (in_port_t) port);
    long n = argc >= 5 ? s_count (argv[4], GEARMAN_BENCH_MAX_TASKS) : -1;
    if (n < 0)
        return s_usage (stderr, 2);
    if ((argc == 5 || argc == 6) && strcmp (argv[1], "client-throughput") == 0) {
        long batch = argc == 6 ? s_count (argv[5], GEARMAN_BENCH_MAX_BATCH) : GEARMAN_BENCH_BATCH;
        return batch < 0 ? s_usage (stderr, 2)
                         : s_client_throughput (host, (in_port_t) port, n, batch);
    }
    if (argc == 5 && strcmp (argv[1], "client-latency") == 0)
        return s_client_latency (host, (in_port_t) port, n);
    return s_usage (stderr, 2);
}
