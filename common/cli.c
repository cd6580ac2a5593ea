/*  cli.c — the shared command line: -c, --set, --log-level, --help, --version.

    Settings are built in precedence order (defaults, file, environment,
    --set) by keel_cli_load; keel_cli_parse collects the options with
    getopt_long and reports every problem as "PROGRAM: MESSAGE" on stderr.
*/
#include "cli.h"
#include "log.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#ifndef KEEL_VERSION
#define KEEL_VERSION "0.0.0"
#endif

keel_settings_t *
keel_cli_load (const keel_setting_def_t *table, const char *config_path, char **sets, int nsets,
               keel_error_t *err)
{
    keel_settings_t *settings = keel_settings_new (table, err);
    if (!settings)
        return NULL;
    keel_err rc = KEEL_OK;
    if (config_path)
        rc = keel_settings_load_file (settings, config_path, err);
    if (rc == KEEL_OK)
        rc = keel_settings_load_env (settings, err);
    for (int i = 0; rc == KEEL_OK && i < nsets; i++)
        rc = keel_settings_set_pair (settings, sets[i], err);
    if (rc != KEEL_OK)
        keel_settings_destroy (&settings);
    return settings;
}

void
keel_cli_print_version (const char *program, FILE *out)
{
    fprintf (out, "%s %s\n", program, KEEL_VERSION);
}

static void
s_print_help (const keel_cli_t *cli, FILE *out)
{
    fprintf (out, "Usage: %s [-c FILE] [--set KEY=VALUE]... [--log-level LEVEL]\n", cli->program);
    if (cli->summary)
        fprintf (out, "%s\n", cli->summary);
    fprintf (out, "\nOptions:\n"
                  "  -c, --config FILE     read settings from a properties file\n"
                  "  --set KEY=VALUE       set one key (repeatable; beats file and environment)\n"
                  "  --log-level LEVEL     error, warn, info (default) or debug\n"
                  "  -h, --help            print this help and exit\n"
                  "  --version             print the version and exit\n\n");
    keel_settings_print_help (cli->table, out);
}

enum { S_OPT_SET = 256, S_OPT_LOG_LEVEL, S_OPT_VERSION, S_OPT_MARKDOWN };

//  Prints "PROGRAM: MESSAGE" and returns NULL with the usage exit code.
static keel_settings_t *
s_usage_error (const keel_cli_t *cli, int *exit_code, const char *message)
{
    fprintf (stderr, "%s: %s\n", cli->program, message);
    *exit_code = KEEL_EXIT_USAGE;
    return NULL;
}

keel_settings_t *
keel_cli_parse (const keel_cli_t *cli, int argc, char **argv, int *exit_code)
{
    static const struct option options[] = {
        { "config", required_argument, NULL, 'c' },
        { "set", required_argument, NULL, S_OPT_SET },
        { "log-level", required_argument, NULL, S_OPT_LOG_LEVEL },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, S_OPT_VERSION },
        { "config-markdown", no_argument, NULL, S_OPT_MARKDOWN },
        { NULL, 0, NULL, 0 },
    };
    int dummy;
    if (!exit_code)
        exit_code = &dummy;
    *exit_code = KEEL_EXIT_OK;

    char **sets = calloc ((size_t) (argc > 0 ? argc : 1), sizeof *sets);
    if (!sets)
        return s_usage_error (cli, exit_code, "out of memory");
    int nsets = 0;
    const char *config_path = NULL, *log_level = NULL;
    char message[512];
    opterr = 0;
    optind = 0; // glibc: full re-initialisation, so tests may parse twice
    int opt;
    while ((opt = getopt_long (argc, argv, ":c:h", options, NULL)) != -1) {
        switch (opt) {
            case 'c':
                config_path = optarg;
                break;
            case S_OPT_SET:
                sets[nsets++] = optarg;
                break;
            case S_OPT_LOG_LEVEL: {
                keel_log_level_t level;
                if (keel_log_level_parse (optarg, &level) != 0) {
                    snprintf (message, sizeof message,
                              "--log-level: expected error, warn, info or debug, got '%s'", optarg);
                    free (sets);
                    return s_usage_error (cli, exit_code, message);
                }
                keel_log_init (level);
                log_level = optarg;
                break;
            }
            case 'h':
                s_print_help (cli, stdout);
                free (sets);
                return NULL;
            case S_OPT_VERSION:
                keel_cli_print_version (cli->program, stdout);
                free (sets);
                return NULL;
            case S_OPT_MARKDOWN:
                keel_settings_print_markdown (cli->table, stdout);
                free (sets);
                return NULL;
            case ':':
                snprintf (message, sizeof message, "option '%s' needs an argument (try --help)",
                          argv[optind - 1]);
                free (sets);
                return s_usage_error (cli, exit_code, message);
            default:
                if (optopt)
                    snprintf (message, sizeof message, "unknown option '-%c' (try --help)", optopt);
                else
                    snprintf (message, sizeof message, "unknown option '%s' (try --help)",
                              argv[optind - 1]);
                free (sets);
                return s_usage_error (cli, exit_code, message);
        }
    }
    if (optind < argc) {
        snprintf (message, sizeof message, "unexpected argument '%s' (try --help)", argv[optind]);
        free (sets);
        return s_usage_error (cli, exit_code, message);
    }
    keel_error_t err = { "" };
    keel_settings_t *settings = keel_cli_load (cli->table, config_path, sets, nsets, &err);
    free (sets);
    if (!settings)
        return s_usage_error (cli, exit_code, err.text);
    // Programs that also read a LogLevel key see --log-level there too.
    if (log_level && keel_settings_def (settings, "LogLevel")
        && keel_settings_set (settings, "LogLevel", log_level, "--log-level", &err) != KEEL_OK) {
        keel_settings_destroy (&settings);
        return s_usage_error (cli, exit_code, err.text);
    }
    return settings;
}
