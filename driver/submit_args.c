/*  submit_args.c — keel-driver's command line, parsed with getopt_long. */
#include "submit_args.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cond.h"
#include "settings.h"
#include "wire.h"

enum {
    S_OPT_SET = 256,
    S_OPT_HELP,
    S_OPT_VERSION,
    S_OPT_SERVICE,
    S_OPT_INPUT,
    S_OPT_COUNT,
    S_OPT_INPUT_FILE,
    S_OPT_RANGE,
    S_OPT_BROKER,
    S_OPT_FAILOVER,
    S_OPT_PRIORITY,
    S_OPT_MAX_ATTEMPTS,
    S_OPT_OUTPUT_DIR,
    S_OPT_LOG_LEVEL,
    S_OPT_MARKDOWN,
    S_OPT_DETACH,
    S_OPT_ALL,
    S_OPT_TIMEOUT,
    S_OPT_CANCEL_ON_INTERRUPT,
    S_OPT_REQUIRE
};

static const struct option s_options[] = {
    { "config", required_argument, NULL, 'c' },
    { "set", required_argument, NULL, S_OPT_SET },
    { "help", no_argument, NULL, S_OPT_HELP },
    { "version", no_argument, NULL, S_OPT_VERSION },
    { "service", required_argument, NULL, S_OPT_SERVICE },
    { "input", required_argument, NULL, S_OPT_INPUT },
    { "count", required_argument, NULL, S_OPT_COUNT },
    { "input-file", required_argument, NULL, S_OPT_INPUT_FILE },
    { "range", required_argument, NULL, S_OPT_RANGE },
    { "broker", required_argument, NULL, S_OPT_BROKER },
    { "failover", required_argument, NULL, S_OPT_FAILOVER },
    { "priority", required_argument, NULL, S_OPT_PRIORITY },
    { "max-attempts", required_argument, NULL, S_OPT_MAX_ATTEMPTS },
    { "output-dir", required_argument, NULL, S_OPT_OUTPUT_DIR },
    { "log-level", required_argument, NULL, S_OPT_LOG_LEVEL },
    { "config-markdown", no_argument, NULL, S_OPT_MARKDOWN },
    { "detach", no_argument, NULL, S_OPT_DETACH },
    { "all", no_argument, NULL, S_OPT_ALL },
    { "timeout", required_argument, NULL, S_OPT_TIMEOUT },
    { "cancel-on-interrupt", no_argument, NULL, S_OPT_CANCEL_ON_INTERRUPT },
    { "require", required_argument, NULL, S_OPT_REQUIRE },
    { NULL, 0, NULL, 0 }
};

bool
keel_parse_int64 (const char *text, int64_t *value_p)
{
    if (!text || !*text)
        return false;
    char *end = NULL;
    errno = 0;
    long long value = strtoll (text, &end, 10);
    if (errno || *end || end == text)
        return false;
    *value_p = value;
    return true;
}

static bool
s_push (char ***list, int *count, char *value)
{
    char **grown = realloc (*list, (size_t) (*count + 1) * sizeof (char *));
    if (!grown)
        return false;
    grown[(*count)++] = value;
    *list = grown;
    return true;
}

static keel_err
s_parse_range (const char *text, keel_submit_args_t *args, keel_error_t *err)
{
    const char *colon = text ? strchr (text, ':') : NULL;
    if (colon) {
        char from[32];
        size_t len = (size_t) (colon - text);
        if (len < sizeof from) {
            memcpy (from, text, len);
            from[len] = 0;
            if (keel_parse_int64 (from, &args->range_from)
                && keel_parse_int64 (colon + 1, &args->range_to)
                && args->range_from <= args->range_to) {
                int64_t span; // B - A tasks: must fit, or the job silently has none
                if (!__builtin_sub_overflow (args->range_to, args->range_from, &span))
                    return KEEL_OK;
            }
        }
    }
    return keel_error_set (err, KEEL_ERR_INVALID,
                           "--range: expected A:B with integers A <= B, got '%s'",
                           text ? text : "");
}

//  attach and wait: one SERVICE_ID, none of submit's options.
static keel_err
s_check_other (keel_submit_args_t *args, const char *command, const char *id, int sources,
               keel_error_t *err)
{
    if (!id)
        return keel_error_set (err, KEEL_ERR_INVALID, "%s: SERVICE_ID is required", command);
    if (!keel_id_valid (id))
        return keel_error_set (err, KEEL_ERR_INVALID,
                               "%s: '%s' is not a service id (1-%d of [A-Za-z0-9_.:-], e.g. "
                               "the UUID submit printed)",
                               command, id, KEEL_ID_MAX);
    args->service_id = id;
    if (args->service || sources || args->has_priority || args->has_max_attempts || args->detach
        || args->cancel_on_interrupt || args->require)
        return keel_error_set (err, KEEL_ERR_INVALID,
                               "%s: --service, inputs, --priority, --max-attempts, --require, "
                               "--detach and --cancel-on-interrupt go with submit",
                               command);
    if (args->all && args->command != KEEL_COMMAND_ATTACH)
        return keel_error_set (err, KEEL_ERR_INVALID, "--all goes with attach");
    if (args->output_dir && args->command != KEEL_COMMAND_ATTACH)
        return keel_error_set (err, KEEL_ERR_INVALID, "--output-dir goes with submit and attach");
    return KEEL_OK;
}

static keel_err
s_check (keel_submit_args_t *args, const char *command, const char *id, bool count_given,
         int sources, keel_error_t *err)
{
    if (!command)
        return keel_error_set (err, KEEL_ERR_INVALID, "missing command (submit, attach or wait)");
    if (strcmp (command, "attach") == 0 || strcmp (command, "wait") == 0) {
        args->command = command[0] == 'a' ? KEEL_COMMAND_ATTACH : KEEL_COMMAND_WAIT;
        return s_check_other (args, command, id, sources, err);
    }
    if (strcmp (command, "submit") != 0)
        return keel_error_set (err, KEEL_ERR_INVALID,
                               "unknown command '%s' (expected submit, attach or wait)", command);
    if (id)
        return keel_error_set (err, KEEL_ERR_INVALID, "unexpected argument '%s'", id);
    if (args->all)
        return keel_error_set (err, KEEL_ERR_INVALID, "--all goes with attach");
    if (!args->service)
        return keel_error_set (err, KEEL_ERR_INVALID, "submit: --service NAME is required");
    if (!keel_type_name_valid (args->service))
        return keel_error_set (err, KEEL_ERR_INVALID,
                               "--service: '%s' is not a service name (1-%d of [A-Za-z0-9_.-])",
                               args->service, KEEL_TYPE_MAX);
    if (sources == 0)
        return keel_error_set (err, KEEL_ERR_INVALID,
                               "submit: one of --input, --input-file or --range is required");
    if (sources > 1)
        return keel_error_set (err, KEEL_ERR_INVALID,
                               "submit: --input, --input-file and --range exclude each other");
    if (count_given && args->input != KEEL_INPUT_TEXT)
        return keel_error_set (err, KEEL_ERR_INVALID, "--count goes with --input");
    return KEEL_OK;
}

keel_err
keel_submit_args_parse (int argc, char **argv, keel_submit_args_t *args, keel_error_t *err)
{
    memset (args, 0, sizeof *args);
    args->count = 1;
    optind = 0; // full reset of GNU getopt (tests parse many times)
    opterr = 0;
    bool count_given = false;
    int sources = 0;
    //  getopt_long consumes at least one argument per call: bounded by argc.
    for (int guard = 0; guard <= argc; guard++) {
        int opt = getopt_long (argc, argv, ":c:hV", s_options, NULL);
        if (opt == -1)
            break;
        int64_t n = 0;
        switch (opt) {
            case 'c':
                args->config_path = optarg;
                break;
            case S_OPT_SET:
                if (!strchr (optarg, '='))
                    return keel_error_set (err, KEEL_ERR_INVALID,
                                           "--set: expected KEY=VALUE, got '%s'", optarg);
                if (!s_push (&args->sets, &args->nsets, optarg))
                    return keel_error_set (err, KEEL_ERR_NOMEM, "out of memory");
                break;
            case 'h':
            case S_OPT_HELP:
                args->help = true;
                break;
            case 'V':
            case S_OPT_VERSION:
                args->version = true;
                break;
            case S_OPT_MARKDOWN:
                args->config_markdown = true;
                break;
            case S_OPT_SERVICE:
                args->service = optarg;
                break;
            case S_OPT_INPUT:
                args->input = KEEL_INPUT_TEXT;
                args->input_text = optarg;
                sources++;
                break;
            case S_OPT_COUNT:
                if (!keel_parse_int64 (optarg, &args->count) || args->count < 0)
                    return keel_error_set (err, KEEL_ERR_INVALID,
                                           "--count: expected a number >= 0, got '%s'", optarg);
                count_given = true;
                break;
            case S_OPT_INPUT_FILE:
                args->input = KEEL_INPUT_FILE;
                args->input_file = optarg;
                sources++;
                break;
            case S_OPT_RANGE:
                if (s_parse_range (optarg, args, err) != KEEL_OK)
                    return KEEL_ERR_INVALID;
                args->input = KEEL_INPUT_RANGE;
                sources++;
                break;
            case S_OPT_BROKER:
                args->broker = optarg;
                break;
            case S_OPT_FAILOVER:
                if (!s_push (&args->failovers, &args->nfailovers, optarg))
                    return keel_error_set (err, KEEL_ERR_NOMEM, "out of memory");
                break;
            case S_OPT_PRIORITY:
                if (!keel_parse_int64 (optarg, &n) || n < INT32_MIN || n > INT32_MAX)
                    return keel_error_set (err, KEEL_ERR_INVALID,
                                           "--priority: expected an integer, got '%s'", optarg);
                args->has_priority = true;
                args->priority = (int32_t) n;
                break;
            case S_OPT_MAX_ATTEMPTS:
                if (!keel_parse_int64 (optarg, &n) || n < 0 || n > 1000000)
                    return keel_error_set (err, KEEL_ERR_INVALID,
                                           "--max-attempts: expected 0..1000000, got '%s'", optarg);
                args->has_max_attempts = true;
                args->max_attempts = (uint32_t) n;
                break;
            case S_OPT_OUTPUT_DIR:
                args->output_dir = optarg;
                break;
            case S_OPT_REQUIRE: {
                // Checked before anything connects: a malformed condition
                // is a usage error (exit 2) naming its column.
                keel_error_t cerr;
                keel_cond_t *cond = keel_cond_parse (optarg, &cerr);
                if (!cond)
                    return keel_error_set (err, KEEL_ERR_INVALID, "--require: %s", cerr.text);
                keel_cond_destroy (&cond);
                args->require = optarg;
                break;
            }
            case S_OPT_LOG_LEVEL:
                args->log_level = optarg;
                break;
            case S_OPT_DETACH:
                args->detach = true;
                break;
            case S_OPT_ALL:
                args->all = true;
                break;
            case S_OPT_CANCEL_ON_INTERRUPT:
                args->cancel_on_interrupt = true;
                break;
            case S_OPT_TIMEOUT: {
                keel_error_t why = { "" };
                if (keel_duration_parse (optarg, "s", &args->timeout_ms, &why) != KEEL_OK
                    || args->timeout_ms <= 0)
                    return keel_error_set (err, KEEL_ERR_INVALID,
                                           "--timeout: expected a duration above 0 (e.g. 30s, "
                                           "5m, 2h; a bare number is seconds), got '%s'",
                                           optarg);
                break;
            }
            case ':':
                if (optopt && optopt < 256)
                    return keel_error_set (err, KEEL_ERR_INVALID, "option '-%c' needs a value",
                                           optopt);
                return keel_error_set (err, KEEL_ERR_INVALID, "option '%s' needs a value",
                                       argv[optind - 1]);
            default:
                if (optopt)
                    return keel_error_set (err, KEEL_ERR_INVALID, "unknown option '-%c'", optopt);
                return keel_error_set (err, KEEL_ERR_INVALID, "unknown option '%s'",
                                       argv[optind - 1]);
        }
    }
    if (args->help || args->version || args->config_markdown)
        return KEEL_OK;
    const char *command = optind < argc ? argv[optind] : NULL;
    const char *id = optind + 1 < argc ? argv[optind + 1] : NULL;
    if (optind + 2 < argc)
        return keel_error_set (err, KEEL_ERR_INVALID, "unexpected argument '%s'", argv[optind + 2]);
    return s_check (args, command, id, count_given, sources, err);
}

void
keel_submit_args_free (keel_submit_args_t *args)
{
    free (args->sets);
    free (args->failovers);
    args->sets = NULL;
    args->failovers = NULL;
    args->nsets = args->nfailovers = 0;
}

void
keel_submit_args_usage (FILE *out)
{
    fprintf (
        out,
        "usage: keel-driver [-c FILE] [--set KEY=VALUE]... submit --service NAME INPUT [OPTIONS]\n"
        "       keel-driver [-c FILE] [--set KEY=VALUE]... attach SERVICE_ID [--all] [OPTIONS]\n"
        "       keel-driver [-c FILE] [--set KEY=VALUE]... wait SERVICE_ID [OPTIONS]\n"
        "       keel-driver --help | --version\n"
        "\n"
        "submit: submits one service of tasks to a Keel broker and writes one JSON\n"
        "line per task to stdout, in completion order.\n"
        "attach: takes over a service submitted earlier (by submit --detach, an\n"
        "interrupted or killed submit, any process) and writes the same lines for\n"
        "every result no one has collected yet (--all: every result still stored).\n"
        "Each result is collected once: a second attach gets only what the first\n"
        "did not take. The service is closed to new tasks.\n"
        "wait: waits until a service is complete (closed or cancelled, no task\n"
        "queued or running) without taking its results.\n"
        "\n"
        "INPUT (exactly one):\n"
        "  --input TEXT [--count N]   N tasks (default 1) with input TEXT\n"
        "  --input-file FILE          one task per line ('-' = stdin)\n"
        "  --range A:B                tasks with inputs A..B-1 in decimal\n"
        "OPTIONS:\n"
        "  -c, --config FILE          driver.properties\n"
        "  --set KEY=VALUE            override a setting (repeatable)\n"
        "  --broker URL               primary broker (DSPrimaryBroker)\n"
        "  --failover URL             failover broker (repeatable, DSFailoverBrokers)\n"
        "  --priority N               service priority (higher first)\n"
        "  --max-attempts N           task failures before giving up (0: broker default)\n"
        "  --require CONDITION        run tasks only on engines whose properties meet\n"
        "                             CONDITION, e.g. 'memory_mb >= 4096 && gpu == \"a100\"'\n"
        "                             (== != < <= > >=, && || !, parentheses, \"strings\",\n"
        "                             numbers, property names; a missing property makes a\n"
        "                             comparison false; docs/services.md). A malformed one\n"
        "                             exits 2 naming its column, before connecting\n"
        "  --output-dir DIR           write outputs to DIR/<task>.out\n"
        "  --log-level LEVEL          error|warn|info|debug (LogLevel)\n"
        "  --detach                   submit: once every task is stored at the broker,\n"
        "                             print the service id on stdout and exit 0; the\n"
        "                             service runs on with no driver (collect its\n"
        "                             results later with attach)\n"
        "  --timeout DURATION         bound the whole run (30s, 5m, 2h; bare: seconds);\n"
        "                             then submit detaches the service (print its id,\n"
        "                             exit 1) and attach/wait give up (exit 1)\n"
        "  --cancel-on-interrupt      submit: Ctrl-C cancels the service instead of\n"
        "                             detaching it\n"
        "  --all                      attach: every result still stored, collected or not\n"
        "  -h, --help                 this text\n"
        "  -V, --version              print the version\n"
        "\n"
        "Connecting: keel-driver says at once on stderr which broker it connects to,\n"
        "and again every DSBrokerTimeout/3 (1 to 30 s) while none answers. A broker\n"
        "that goes silent is retried until DSBrokerTimeout after its last message,\n"
        "and at least one heartbeat interval + 0.6 s after the loss is noticed\n"
        "(unless DSBrokerTimeout is shorter); then the next broker of the list.\n"
        "DSBrokerTimeout (default 5 min) also bounds the first connection: when no\n"
        "broker answers for that long (each broker of the list in turn), keel-driver\n"
        "exits 3. It must stay below the brokers' Engine Timeout\n"
        "(EngineTimeoutMinutes, default 15 min): otherwise the work engines hold for\n"
        "a lost broker is dropped before the driver reaches the next broker, and\n"
        "is done again (docs/operations.md, section 3).\n"
        "\n"
        "Output: one JSON line per task on stdout, always whole (with stdout and\n"
        "stderr in one file, status lines fall between JSON lines, never inside\n"
        "one); status lines and the summary on stderr; when stderr is a terminal,\n"
        "a progress bar with tasks/s and an ETA, cleared before anything else is\n"
        "written to that terminal.\n"
        "\n"
        "Interrupt: the first Ctrl-C (SIGINT) detaches the service: keel-driver\n"
        "prints the results it has, waits until every task submitted is stored,\n"
        "prints the service id with the keel-driver attach and keel-admin cancel\n"
        "commands for it on stderr, and exits 130 (the input not yet read is not\n"
        "submitted). With --cancel-on-interrupt it cancels the service instead.\n"
        "A second Ctrl-C ends keel-driver at once. A service no driver collects is\n"
        "purged RetentionHours (broker) after its last result.\n"
        "\n"
        "Exit: 0 every task succeeded (submit --detach: every task stored; wait: the\n"
        "service completed and every task succeeded), 1 some failed (or --timeout\n"
        "passed), 2 usage or configuration error (a malformed SERVICE_ID included),\n"
        "3 no broker reachable in time, 4 no such service (attach, wait: the broker\n"
        "does not know SERVICE_ID: never submitted there, or purged), 130\n"
        "interrupted (the service was detached or cancelled).\n");
}
