/*  main.c — keel-engine: parse the command line, run the engine, exit.

    Exit codes (DESIGN §10): 0 clean stop (SIGTERM/SIGINT), 2 usage or
    configuration error (including a StateDir held by another engine, and
    service.* entries none of which can run here: service_check.h),
    3 Engine Timeout with EngineTimeoutAction=exit.
*/
#include <czmq.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "engine_config.h"
#include "daemon.h"
#include "journal.h"
#include "log.h"
#include "service_check.h"

//  The one piece of process-wide state: set by the signal handler.
static volatile sig_atomic_t s_stop = 0;

static void
s_on_signal (int signum)
{
    (void) signum;
    s_stop = 1;
}

//  A configured service that cannot run here (service_check.h).
static void
s_report_bad_service (const char *service, const char *message, void *arg)
{
    (void) service, (void) arg;
    KEEL_ERROR ("engine", "%s", message);
}

static void
s_install_signals (void)
{
    zsys_handler_set (NULL); // CZMQ must not install its own SIGINT/SIGTERM handler
    struct sigaction sa;
    memset (&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigemptyset (&sa.sa_mask);
    sigaction (SIGTERM, &sa, NULL);
    sigaction (SIGINT, &sa, NULL);
    signal (SIGPIPE, SIG_IGN);
}

int
main (int argc, char **argv)
{
    keel_cli_t cli = { "keel-engine", "run tasks for a Keel broker (a compute-node daemon)",
                       keel_engine_settings_table () };
    int exit_code = KEEL_EXIT_OK;
    keel_settings_t *settings = keel_cli_parse (&cli, argc, argv, &exit_code);
    if (!settings)
        return exit_code;

    bool level_on_command_line = false;
    for (int i = 1; i < argc; i++)
        if (strncmp (argv[i], "--log-level", 11) == 0)
            level_on_command_line = true;
    keel_log_level_t level;
    if (!level_on_command_line
        && keel_log_level_parse (keel_engine_cfg_LogLevel (settings), &level) == 0)
        keel_log_init (level);

    keel_error_t err = { "" };
    keel_engine_config_t *cfg = keel_engine_config_new (settings, &err);
    if (!cfg) {
        fprintf (stderr, "keel-engine: %s\n", err.text);
        keel_settings_destroy (&settings);
        return KEEL_EXIT_USAGE;
    }
    //  Before the daemon starts anything: the check forks to load libraries.
    if (keel_service_check_all (cfg, s_report_bad_service, NULL, NULL, &err) != KEEL_OK) {
        fprintf (stderr, "keel-engine: %s\n", err.text);
        keel_engine_config_destroy (&cfg);
        keel_settings_destroy (&settings);
        return KEEL_EXIT_USAGE;
    }
    keel_journal_init ("engine");
    s_install_signals ();
    keel_daemon_t *engine = keel_daemon_new (cfg, &err);
    if (!engine) {
        fprintf (stderr, "keel-engine: %s\n", err.text);
        keel_engine_config_destroy (&cfg);
        keel_settings_destroy (&settings);
        return KEEL_EXIT_USAGE;
    }
    exit_code = keel_daemon_run (engine, &s_stop);
    keel_daemon_destroy (&engine);
    keel_engine_config_destroy (&cfg);
    keel_settings_destroy (&settings);
    return exit_code;
}
