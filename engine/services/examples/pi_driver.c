/*  pi_driver.c — keel-pi: estimates pi on a Keel grid with the example
    library service pi.c, calling it like a function with msgpack arguments.

        keel-pi [--broker URL] [--tasks N] [--samples S] [--chunk C]
                [--service TYPE] [--timeout SECONDS]
        keel-pi --help | --version

    Opens a service of type TYPE (default "pi") whose session init data is
    the checkpoint chunk C (msgpack uint, sent once per engine), submits N
    invocations estimate(S, seed=i), combines the [inside, samples] answers
    and prints one line per task and the estimate. Exit codes: 0 every task
    succeeded, 1 some failed, 2 usage, 3 no broker reachable in time.
*/
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "keel/driver.h"
#include "log.h"

typedef struct {
    const char *broker;
    const char *type;
    uint64_t tasks, samples, chunk;
    int timeout_s;
} s_args_t;

static int
s_usage (FILE *out, int code)
{
    fprintf (out, "usage: keel-pi [--broker URL] [--tasks N] [--samples S] [--chunk C]\n"
                  "               [--service TYPE] [--timeout SECONDS]\n"
                  "       keel-pi --help | --version\n"
                  "\n"
                  "Estimates pi with N tasks of S Monte-Carlo samples each on a Keel grid\n"
                  "(library service pi, checkpointing every C samples).\n"
                  "\n"
                  "  -b, --broker URL      broker endpoint (default tcp://127.0.0.1:7070)\n"
                  "  -n, --tasks N         tasks to submit, 1..1000000 (default 8)\n"
                  "  -s, --samples S       samples per task, 1..2^40 (default 2000000)\n"
                  "  -c, --chunk C         samples between checkpoints, 1..2^40 (default 250000)\n"
                  "  -t, --service TYPE    service type offering pi (default pi)\n"
                  "  -T, --timeout SECONDS give up on unanswered tasks after this, 1..86400\n"
                  "                        (default 120)\n"
                  "  -h, --help            this text\n"
                  "  -V, --version         print the version\n"
                  "\n"
                  "Exit: 0 every task succeeded, 1 some failed or timed out, 2 usage error,\n"
                  "3 no broker reachable in time.\n");
    return code;
}

static bool
s_number (const char *text, uint64_t min, uint64_t max, uint64_t *value)
{
    char *end = NULL;
    unsigned long long v = strtoull (text, &end, 10);
    if (!*text || !end || *end || v < min || v > max)
        return false;
    *value = v;
    return true;
}

//  Returns -1 to go on with the run, or the exit code when the program is done
//  (0 after --help / --version, 2 after a usage error, already reported).
static int
s_parse (int argc, char **argv, s_args_t *a)
{
    static const struct option options[] = { { "broker", required_argument, NULL, 'b' },
                                             { "tasks", required_argument, NULL, 'n' },
                                             { "samples", required_argument, NULL, 's' },
                                             { "chunk", required_argument, NULL, 'c' },
                                             { "service", required_argument, NULL, 't' },
                                             { "timeout", required_argument, NULL, 'T' },
                                             { "help", no_argument, NULL, 'h' },
                                             { "version", no_argument, NULL, 'V' },
                                             { NULL, 0, NULL, 0 } };
    *a = (s_args_t) { "tcp://127.0.0.1:7070", "pi", 8, 2000000, 250000, 120 };
    int opt;
    uint64_t v = 0;
    //  getopt_long consumes one option per call and ends at -1.
    while ((opt = getopt_long (argc, argv, "b:n:s:c:t:T:hV", options, NULL)) != -1) {
        switch (opt) {
            case 'b':
                a->broker = optarg;
                break;
            case 't':
                a->type = optarg;
                break;
            case 'n':
                if (!s_number (optarg, 1, 1000000, &a->tasks))
                    return fprintf (stderr, "keel-pi: --tasks: 1..1000000\n"), 2;
                break;
            case 's':
                if (!s_number (optarg, 1, UINT64_C (1) << 40, &a->samples))
                    return fprintf (stderr, "keel-pi: --samples: 1..2^40\n"), 2;
                break;
            case 'c':
                if (!s_number (optarg, 1, UINT64_C (1) << 40, &a->chunk))
                    return fprintf (stderr, "keel-pi: --chunk: 1..2^40\n"), 2;
                break;
            case 'T':
                if (!s_number (optarg, 1, 86400, &v))
                    return fprintf (stderr, "keel-pi: --timeout: 1..86400 seconds\n"), 2;
                a->timeout_s = (int) v;
                break;
            case 'h':
                return s_usage (stdout, 0);
            case 'V':
                return keel_cli_print_version ("keel-pi", stdout), 0;
            default:
                return s_usage (stderr, 2);
        }
    }
    if (optind < argc)
        return s_usage (stderr, 2);
    return -1;
}

//  What the driver library is doing ("connecting to ...", failovers,
//  notices), on stderr as it happens: never a silent wait for a broker.
static void
s_on_status (const keel_status_t *status, void *arg)
{
    (void) arg;
    if (status->kind != KEEL_STATUS_NO_BROKER) // said when the wait fails
        fprintf (stderr, "keel-pi: %s\n", status->text);
}

int
main (int argc, char **argv)
{
    s_args_t a;
    int code = s_parse (argc, argv, &a);
    if (code >= 0)
        return code;

    keel_log_init (KEEL_LOG_WARN);
    char set[600];
    snprintf (set, sizeof set, "DSPrimaryBroker=%s", a.broker);
    char *overrides[] = { set };
    keel_error_t err = { "" };
    keel_driver_t *driver = keel_driver_new (NULL, overrides, 1, &err);
    if (!driver) {
        fprintf (stderr, "keel-pi: %s\n", err.text);
        return 2;
    }
    keel_driver_set_status_handler (driver, s_on_status, NULL);
    //  Session init data: the chunk size, one msgpack value.
    msgpack_sbuffer init;
    msgpack_sbuffer_init (&init);
    msgpack_packer ipk;
    msgpack_packer_init (&ipk, &init, msgpack_sbuffer_write);
    msgpack_pack_uint64 (&ipk, a.chunk);
    keel_service_options_t options;
    keel_service_options_init (&options, a.type);
    options.init_data = init.data;
    options.init_data_size = init.size;
    keel_service_t *service = keel_driver_open_service (driver, &options, &err);
    msgpack_sbuffer_destroy (&init);
    if (!service) {
        fprintf (stderr, "keel-pi: %s\n", err.text);
        keel_driver_destroy (&driver);
        return 2;
    }
    for (uint64_t i = 0; i < a.tasks; i++) {
        msgpack_sbuffer buf;
        msgpack_packer pk;
        if (keel_invocation_begin (&buf, &pk, "estimate", 2, &err) == KEEL_OK) {
            msgpack_pack_uint64 (&pk, a.samples);
            msgpack_pack_uint64 (&pk, i + 1);
            keel_service_submit (service, buf.data, buf.size, NULL, &err);
        }
        msgpack_sbuffer_destroy (&buf);
    }
    keel_service_close (service, NULL);

    uint64_t inside = 0, total = 0, ok = 0, failed = 0;
    int64_t deadline_ms = (int64_t) a.timeout_s * 1000;
    code = 0;
    //  One result per pass; ends when every task has answered or time is up.
    while (ok + failed < a.tasks) {
        keel_result_t *result = NULL;
        keel_err rc = keel_driver_next_result (driver, 1000, &result, &err);
        if (rc == KEEL_ERR_TIMEOUT) {
            fprintf (stderr, "keel-pi: %s\n", err.text);
            code = 3;
            break;
        }
        if (!result) {
            deadline_ms -= 1000;
            if (deadline_ms <= 0) {
                fprintf (stderr, "keel-pi: %" PRIu64 " tasks unanswered after %d s\n",
                         a.tasks - ok - failed, a.timeout_s);
                code = 1;
                break;
            }
            continue;
        }
        msgpack_unpacked value;
        rc = keel_result_unpack (result, &value, &err);
        const msgpack_object *o = &value.data;
        if (rc == KEEL_OK && o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 2
            && o->via.array.ptr[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER
            && o->via.array.ptr[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            uint64_t in = o->via.array.ptr[0].via.u64, n = o->via.array.ptr[1].via.u64;
            inside += in;
            total += n;
            ok++;
            printf ("task %" PRIu64 ": %" PRIu64 "/%" PRIu64 " inside (engine %s, %u attempt%s)\n",
                    result->task_id, in, n, result->engine_id, result->attempts,
                    result->attempts == 1 ? "" : "s");
        }
        else {
            failed++;
            printf ("task %" PRIu64 ": failed: %s\n", result->task_id,
                    rc == KEEL_OK ? "answer is not [inside, samples]" : err.text);
        }
        msgpack_unpacked_destroy (&value);
        keel_result_destroy (&result);
    }
    if (total > 0) {
        double pi = 4.0 * (double) inside / (double) total;
        printf ("pi ~= %.6f from %" PRIu64 " samples in %" PRIu64 " tasks (error %.6f)\n", pi,
                total, ok, fabs (pi - 3.14159265358979));
    }
    if (code == 0 && failed)
        code = 1;
    keel_driver_destroy (&driver);
    return code;
}
