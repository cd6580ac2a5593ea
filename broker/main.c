/*  main.c — keel-broker: parse the command line, run the loop, stop on
    SIGTERM/SIGINT. Exit codes: 0 clean stop, 2 usage/configuration error
    (including a store that cannot be opened), 1 anything else.
*/

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <czmq.h>

#include "broker.h"
#include "cli.h"
#include "config.h"
#include "journal.h"
#include "log.h"
#include "security.h"

int
main (int argc, char **argv)
{
    // CZMQ's own signal handling sets zsys_interrupted on SIGINT/SIGTERM;
    // the loop checks it every turn.
    zsys_init ();
    zsys_set_logident ("keel-broker");
    const keel_cli_t cli = {
        "keel-broker", "the Keel broker: queues tasks from drivers and dispatches them to engines",
        keel_broker_settings
    };
    int code = 0;
    keel_settings_t *settings = keel_cli_parse (&cli, argc, argv, &code);
    if (!settings)
        return code;
    // Security=curve: SIGHUP rereads the authorized keys. It is blocked
    // here, before any thread exists, so every thread inherits the mask and
    // the loop alone takes it from a signalfd (broker_security.c); no wait
    // anywhere is interrupted by it.
    if (strcmp (keel_broker_cfg_Security (settings), "curve") == 0)
        keel_security_block_hup ();
    keel_log_level_t level;
    if (keel_log_level_parse (keel_broker_cfg_LogLevel (settings), &level) == 0)
        keel_log_init (level);

    keel_journal_init ("broker");
    keel_error_t err;
    keel_broker_t *broker = keel_broker_new (settings, &err);
    if (!broker) {
        fprintf (stderr, "keel-broker: %s\n", err.text);
        keel_settings_destroy (&settings);
        return KEEL_EXIT_USAGE;
    }
    keel_err rc = keel_broker_run (broker);
    keel_broker_destroy (&broker);
    keel_settings_destroy (&settings);
    return rc == KEEL_OK ? KEEL_EXIT_OK : KEEL_EXIT_FAILED;
}
