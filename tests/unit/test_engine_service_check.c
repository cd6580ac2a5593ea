/*  The engine's start check of its configured services (service_check.h):
    command programs that do not resolve and libraries that do not load are
    reported and not offered. */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "engine_config.h"
#include "service_check.h"

//  A scratch directory for this test process, removed by s_cleanup.
static char s_dir[64];

static void
s_setup (void)
{
    snprintf (s_dir, sizeof s_dir, "/tmp/keel-svccheck-%d", (int) getpid ());
    mkdir (s_dir, 0700);
}

static void
s_cleanup (void)
{
    char cmd[128];
    snprintf (cmd, sizeof cmd, "rm -rf %s", s_dir);
    cr_assert_eq (system (cmd), 0);
}

//  Writes s_dir/name with text and mode; returns its path in buf.
static const char *
s_file (char *buf, size_t size, const char *name, const char *text, mode_t mode)
{
    snprintf (buf, size, "%s/%s", s_dir, name);
    FILE *f = fopen (buf, "w");
    cr_assert (f);
    fputs (text, f);
    fclose (f);
    chmod (buf, mode);
    return buf;
}

static void
s_toolbox (char *path, size_t size)
{
    char exe[PATH_MAX];
    ssize_t n = readlink ("/proc/self/exe", exe, sizeof exe - 1);
    cr_assert_gt (n, 0);
    exe[n] = 0;
    *strrchr (exe, '/') = 0;
    snprintf (path, size, "%s/../lib/libkeel_toolbox.so", exe);
    cr_assert_eq (access (path, R_OK), 0, "%s not built", path);
}

static bool
s_command_ok (const char *command, char *why, size_t size)
{
    return keel_service_check_command (command, "/usr/bin:/bin", why, size);
}

TestSuite (service_check, .init = s_setup, .fini = s_cleanup);

Test (service_check, a_command_whose_program_is_on_path_or_a_shell_word_passes)
{
    const char *good[] = { "cat",
                           "  tr a-z A-Z",
                           "LC_ALL=C sort -n",
                           "exec cat",
                           "A=1 B=2 exec env",
                           "echo hi; exit 3",
                           "exit 127",
                           "test -f x",
                           "$HOME/bin/prog",
                           "\"quoted prog\"",
                           "(cd /tmp && nosuch)",
                           "<in cat",
                           "/bin/sh -c 'x'" };
    char why[512];
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        cr_assert (s_command_ok (good[i], why, sizeof why), "'%s': %s", good[i], why);
}

Test (service_check, a_command_whose_program_is_missing_fails_naming_it)
{
    char why[512];
    cr_assert (!s_command_ok ("keel-no-such-program --flag", why, sizeof why));
    cr_assert_str_eq (why, "program 'keel-no-such-program' not found in PATH (/usr/bin:/bin)");
    cr_assert (!s_command_ok ("X=1 exec keel-no-such-program", why, sizeof why));
    cr_assert (strstr (why, "'keel-no-such-program' not found"), "%s", why);
    cr_assert (!s_command_ok ("/nonexistent/render --fast", why, sizeof why));
    cr_assert (strstr (why, "program '/nonexistent/render' does not exist"), "%s", why);
    cr_assert (!s_command_ok ("/tmp", why, sizeof why));
    cr_assert (strstr (why, "'/tmp' is not a regular file"), "%s", why);
    //  A bare name is not looked up in the working directory.
    cr_assert (!keel_service_check_command ("sh", "/nonexistent", why, sizeof why));
}

Test (service_check, a_script_that_is_not_executable_or_whose_interpreter_is_missing_fails)
{
    char path[256], why[512];
    s_file (path, sizeof path, "plain.sh", "#!/bin/sh\nexit 0\n", 0644);
    cr_assert (!s_command_ok (path, why, sizeof why));
    cr_assert (strstr (why, "is not executable"), "%s", why);
    s_file (path, sizeof path, "orphan.sh", "#!/nonexistent/interp -x\nexit 0\n", 0755);
    cr_assert (!s_command_ok (path, why, sizeof why));
    cr_assert (strstr (why, "interpreter '/nonexistent/interp' of "), "%s", why);
    cr_assert (strstr (why, "orphan.sh' (its #! line) does not exist"), "%s", why);
    s_file (path, sizeof path, "good.sh", "#! /bin/sh\nexit 0\n", 0755);
    cr_assert (s_command_ok (path, why, sizeof why), "%s", why);
    //  Found on the search path, the interpreter is checked too.
    s_file (path, sizeof path, "orphan", "#!/nonexistent/interp\n", 0755);
    cr_assert (!keel_service_check_command ("orphan arg", s_dir, why, sizeof why));
    cr_assert (strstr (why, "interpreter '/nonexistent/interp'"), "%s", why);
}

Test (service_check, a_library_must_load_and_have_an_entry_point)
{
    char lib[PATH_MAX + 32], why[1024];
    s_toolbox (lib, sizeof lib);
    cr_assert (keel_service_check_library (lib, why, sizeof why), "%s", why);
    cr_assert (!keel_service_check_library ("/nonexistent/libcalc.so", why, sizeof why));
    cr_assert (strstr (why, "cannot load library '/nonexistent/libcalc.so': "), "%s", why);
    char path[256];
    s_file (path, sizeof path, "junk.so", "not an ELF file\n", 0644);
    cr_assert (!keel_service_check_library (path, why, sizeof why));
    cr_assert (strstr (why, "cannot load library"), "%s", why);
    //  A real shared object without any keel entry point.
    cr_assert (!keel_service_check_library ("libm.so.6", why, sizeof why));
    cr_assert (strstr (why, "has no entry point"), "%s", why);
}

typedef struct {
    int n;
    char messages[4][1400];
} s_reports_t;

static void
s_report (const char *service, const char *message, void *arg)
{
    (void) service;
    s_reports_t *r = arg;
    if (r->n < 4)
        snprintf (r->messages[r->n++], sizeof r->messages[0], "%s", message);
}

static keel_engine_config_t *
s_config (char **sets, int n)
{
    keel_error_t err = { "" };
    keel_settings_t *settings = keel_cli_load (keel_engine_settings_table (), NULL, sets, n, &err);
    cr_assert (settings, "%s", err.text);
    keel_engine_config_t *cfg = keel_engine_config_new (settings, &err);
    keel_settings_destroy (&settings);
    cr_assert (cfg, "%s", err.text);
    return cfg;
}

Test (service_check, services_that_cannot_run_are_reported_and_not_offered)
{
    char lib[PATH_MAX + 32], toolbox[PATH_MAX + 64];
    s_toolbox (lib, sizeof lib);
    snprintf (toolbox, sizeof toolbox, "service.toolbox.library=%s", lib);
    char *sets[] = { "service.render.exec=keel-no-such-program --fast",
                     "service.upper.exec=tr a-z A-Z",
                     "service.calc.library=/nonexistent/libcalc.so", toolbox };
    keel_engine_config_t *cfg = s_config (sets, 4);
    int before = cfg->n_services;
    s_reports_t reports = { 0 };
    int dropped = -1;
    keel_error_t err = { "" };
    cr_assert_eq (keel_service_check_all (cfg, s_report, &reports, &dropped, &err), KEEL_OK, "%s",
                  err.text);
    cr_assert_eq (dropped, 2);
    cr_assert_eq (cfg->n_services, before - 2);
    cr_assert_null (keel_engine_config_service (cfg, "render"));
    cr_assert_null (keel_engine_config_service (cfg, "calc"));
    cr_assert (keel_engine_config_service (cfg, "upper"));
    cr_assert (keel_engine_config_service (cfg, "toolbox"));
    cr_assert (keel_engine_config_service (cfg, "double"), "built-ins are always offered");
    cr_assert_eq (reports.n, 2);
    bool saw_render = false, saw_calc = false;
    for (int i = 0; i < reports.n; i++) {
        saw_render |= strstr (reports.messages[i], "service.render.exec: program "
                                                   "'keel-no-such-program' not found in PATH")
                          != NULL
                      && strstr (reports.messages[i], "service 'render' is not offered") != NULL;
        saw_calc |= strstr (reports.messages[i], "service.calc.library: cannot load library "
                                                 "'/nonexistent/libcalc.so'")
                        != NULL
                    && strstr (reports.messages[i], "service 'calc' is not offered") != NULL;
    }
    cr_assert (saw_render && saw_calc, "%s | %s", reports.messages[0], reports.messages[1]);
    keel_engine_config_destroy (&cfg);
}

Test (service_check, an_engine_whose_every_configured_service_fails_is_a_config_error)
{
    char *sets[] = { "service.render.exec=/nonexistent/render",
                     "service.calc.library=/nonexistent/libcalc.so" };
    keel_engine_config_t *cfg = s_config (sets, 2);
    keel_error_t err = { "" };
    cr_assert_eq (keel_service_check_all (cfg, NULL, NULL, NULL, &err), KEEL_ERR_CONFIG);
    cr_assert (strstr (err.text, "none of the 2 configured services can run here"), "%s", err.text);
    keel_engine_config_destroy (&cfg);
    //  The built-ins alone, as configured: nothing to refuse.
    cfg = s_config (NULL, 0);
    int dropped = -1;
    cr_assert_eq (keel_service_check_all (cfg, NULL, NULL, &dropped, &err), KEEL_OK);
    cr_assert_eq (dropped, 0);
    keel_engine_config_destroy (&cfg);
}
