/*  cli.h — the command-line contract every Keel program shares (DESIGN §10).

    Every program takes -c FILE, --set KEY=VALUE (repeatable), --help and
    --version. Programs with more options run their own getopt_long and use
    keel_cli_load to build settings from what they collected; programs with
    no other options call keel_cli_parse.
*/
#ifndef KEEL_CLI_H
#define KEEL_CLI_H

#include "settings.h"

typedef struct {
    const char *program; // "keel-broker"
    const char *summary; // one line for --help
    const keel_setting_def_t *table;
} keel_cli_t;

// Builds settings: defaults, then config_path (if not NULL), then the
// environment, then each of sets[0..nsets) ("KEY=VALUE"). Returns NULL and
// fills err on any error.
keel_settings_t *keel_cli_load (const keel_setting_def_t *table, const char *config_path,
                                char **sets, int nsets, keel_error_t *err);

// Parses argc/argv for -c, --set, --help, --version, --log-level LEVEL.
// Returns settings on success. Returns NULL with *exit_code set when the
// program should exit now: 0 after --help/--version (printed), 2 after a
// usage or configuration error (message printed to stderr as
// "PROGRAM: MESSAGE").
keel_settings_t *keel_cli_parse (const keel_cli_t *cli, int argc, char **argv, int *exit_code);

// Prints "PROGRAM VERSION" (KEEL_VERSION).
void keel_cli_print_version (const char *program, FILE *out);

#endif
