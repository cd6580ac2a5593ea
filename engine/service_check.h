/*  service_check.h — at engine start, is every configured service runnable here?

    An engine that advertises a service it cannot run makes every task of
    that service fail on it (a command whose program is missing exits 127).
    So at start, before the first login, the engine checks each configured
    service (keel_service_check_all) and drops the ones that fail from its
    configuration, with one error each naming the service, the key, the
    program or library and the reason. A dropped service is not in the
    EngineLogin's service types: the broker never assigns it here. Built-ins
    always run and are not checked.

    service.<name>.exec — the engine runs the value with /bin/sh -c, so the
    check looks at the first word of the command line as the shell would
    run it: leading NAME=value assignments are skipped, and after `exec` the
    next word is checked. A word with a '/' must be an executable regular
    file (relative to the engine's working directory); a bare word must be
    an executable file in a directory of $PATH (the default search path of
    sh when PATH is unset), or a shell built-in or keyword. A script's #!
    interpreter must exist and be executable too. A first word the shell
    would expand (quotes, $, `, globs, ~) is not checked: the check cannot
    know it.

    service.<name>.library — a child process (so that neither a crash in
    the library's constructors nor its symbols reach the engine) loads it
    with dlopen (RTLD_NOW: every symbol it needs must resolve), refuses a
    keel_service_abi other than KEEL_SERVICE_ABI and requires at least one
    entry point (keel/service.h: keel_service_run, keel_service_invoke or a
    keel_method_NAME). The child gets KEEL_SERVICE_CHECK_TIMEOUT_MS.

    A task that fails anyway later (the program removed after start) fails
    with exit status 127, which is a permanent failure (worker.h): one
    attempt, not MaxAttempts.
*/
#ifndef KEEL_ENGINE_SERVICE_CHECK_H
#define KEEL_ENGINE_SERVICE_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include "engine_config.h"
#include "error.h"

#define KEEL_SERVICE_CHECK_TIMEOUT_MS 10000

// Checks that command (a /bin/sh -c command line) names a program that
// resolves, as described above. path is the search path for a bare name
// (NULL: sh's default). Returns true, or false with the reason in why
// ("'render' not found in PATH (/usr/bin:/bin)").
bool keel_service_check_command (const char *command, const char *path, char *why, size_t why_size);

// Checks in a child process that the shared object at path loads and has
// an entry point, as described above. Returns true, or false with the
// reason in why.
bool keel_service_check_library (const char *path, char *why, size_t why_size);

// Called for every service that failed its check, with the whole message
// ("service.render.exec: program 'render' not found ...").
typedef void (keel_service_check_report_fn) (const char *service, const char *message, void *arg);

// Checks every command and library service of cfg (PATH from the
// environment), calls report (may be NULL) for each that fails and removes
// it from cfg. Returns KEEL_OK, or KEEL_ERR_CONFIG with err filled when
// services were configured and none of them passed (the built-ins alone
// are not what the operator asked for). *dropped_p (may be NULL) gets the
// number of services removed.
keel_err keel_service_check_all (keel_engine_config_t *cfg, keel_service_check_report_fn *report,
                                 void *arg, int *dropped_p, keel_error_t *err);

#endif
