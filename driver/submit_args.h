/*  submit_args.h — keel-driver's command line (DESIGN §10), parsed and
    validated without side effects so tests can check every error.

      keel-driver [-c FILE] [--set KEY=VALUE]... submit --service NAME
                  (--input TEXT [--count N] | --input-file FILE | --range A:B)
                  [--broker URL] [--failover URL]... [--priority N]
                  [--max-attempts N] [--output-dir DIR] [--log-level LEVEL]
                  [--detach] [--timeout DURATION] [--cancel-on-interrupt]
      keel-driver [...] attach SERVICE_ID [--all] [--output-dir DIR] [--timeout DURATION]
      keel-driver [...] wait SERVICE_ID [--timeout DURATION]
      keel-driver --help | --version

    Strings in keel_submit_args_t point into argv; the arrays are owned by
    the struct (keel_submit_args_free).
*/
#ifndef KEEL_DRIVER_SUBMIT_ARGS_H
#define KEEL_DRIVER_SUBMIT_ARGS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "error.h"

typedef enum {
    KEEL_INPUT_NONE = 0,
    KEEL_INPUT_TEXT, // --input TEXT [--count N]
    KEEL_INPUT_FILE, // --input-file FILE ("-" = stdin), one task per line
    KEEL_INPUT_RANGE // --range A:B, inputs A..B-1 in decimal
} keel_input_kind_t;

typedef enum {
    KEEL_COMMAND_SUBMIT = 0,
    KEEL_COMMAND_ATTACH, // collect a service's results (keel_session_attach)
    KEEL_COMMAND_WAIT    // wait until a service is complete (keel_session_watch)
} keel_command_t;

// keel-driver's exit code for a service id the broker does not know (never
// submitted there, or purged after RetentionHours): attach and wait.
#define KEEL_EXIT_NO_SERVICE  4
// ... and after an interrupt (SIGINT) that detached or cancelled the service.
#define KEEL_EXIT_INTERRUPTED 130

typedef struct {
    bool help;
    keel_command_t command;
    const char *service_id; // attach, wait: the SERVICE_ID argument
    bool detach;            // submit --detach
    bool all;               // attach --all
    bool cancel_on_interrupt;
    int64_t timeout_ms; // --timeout; 0: none
    bool version;
    bool config_markdown;    // hidden: print the settings as Markdown (docs/configuration.md)
    const char *config_path; // -c
    char **sets;             // --set values ("KEY=VALUE"), in order
    int nsets;
    const char *service; // --service
    keel_input_kind_t input;
    const char *input_text;
    int64_t count; // --count (default 1)
    const char *input_file;
    int64_t range_from, range_to;
    const char *broker; // --broker
    char **failovers;   // --failover, in order
    int nfailovers;
    bool has_priority;
    int32_t priority;
    bool has_max_attempts;
    uint32_t max_attempts;
    const char *output_dir;
    const char *log_level; // --log-level
    const char *require;   // --require CONDITION (checked here: keel_cond_parse)
} keel_submit_args_t;

// Parses argv. Returns KEEL_OK (check help/version first), or
// KEEL_ERR_INVALID with a message naming the problem (exit code 2).
// Resets getopt (optind) itself.
keel_err keel_submit_args_parse (int argc, char **argv, keel_submit_args_t *args,
                                 keel_error_t *err);

void keel_submit_args_free (keel_submit_args_t *args);

// Prints the usage text (without the settings table).
void keel_submit_args_usage (FILE *out);

// Parses a decimal int64 (all of text). Returns false when it is not one.
bool keel_parse_int64 (const char *text, int64_t *value_p);

#endif
