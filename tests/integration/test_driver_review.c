/*  test_driver_review.c — keel-driver input and output checks found in review:
    a job keel-driver cannot read or cannot write is a usage error (exit 2)
    found before any work, not an empty "successful" job or a job whose
    outputs are silently lost.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"

//  --input-file naming a directory: fopen succeeds, getline fails, and the
//  job ran zero tasks with exit 0.
Test (driver_review, input_file_that_is_a_directory_is_a_usage_error, .init = harness_setup,
      .fini = harness_teardown, .timeout = 60)
{
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", harness_free_port ());
    const char *argv[] = { "--broker",  endpoint, "--set",        "DSBrokerTimeout=1", "submit",
                           "--service", "echo",   "--input-file", harness_dir (),      NULL };
    harness_result_t res;
    harness_run (&res, 30000, "keel-driver", argv);
    cr_assert_eq (res.code, 2, "keel-driver exited %d for a directory as --input-file; stderr:\n%s",
                  res.code, res.err);
    cr_assert (strstr (res.err, "--input-file"), "stderr does not name --input-file:\n%s", res.err);
    harness_result_free (&res);
}

//  --output-dir that exists but takes no files (/proc, even for root): the
//  whole job ran, every output was lost, each line still claimed an
//  "output_file", and the exit code was 1 (or 3 with no broker), not 2.
Test (driver_review, unwritable_output_dir_is_a_usage_error_before_any_work, .init = harness_setup,
      .fini = harness_teardown, .timeout = 60)
{
    struct stat st;
    if (stat ("/proc", &st) != 0 || !S_ISDIR (st.st_mode))
        cr_skip_test ("no /proc here");
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", harness_free_port ());
    const char *argv[] = { "--broker", endpoint,       "--set", "DSBrokerTimeout=1",
                           "submit",   "--service",    "echo",  "--input",
                           "x",        "--output-dir", "/proc", NULL };
    harness_result_t res;
    harness_run (&res, 30000, "keel-driver", argv);
    cr_assert_eq (res.code, 2, "keel-driver exited %d for an unwritable --output-dir; stderr:\n%s",
                  res.code, res.err);
    cr_assert (strstr (res.err, "--output-dir"), "stderr does not name --output-dir:\n%s", res.err);
    harness_result_free (&res);
}
