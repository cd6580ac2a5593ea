/*  test_metrics.c — the broker's Prometheus rendering (broker/metrics.h):
    histogram buckets, label escaping, the bound on type labels.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <criterion/criterion.h>

#include "metrics.h"
#include "model.h"
#include "store.h"

typedef struct {
    keel_metrics_t *metrics;
    keel_model_t *model;
    keel_store_t *store;
    keel_counters_t counters;
    keel_admin_view_t view;
} s_fixture_t;

static void
s_setup (s_fixture_t *f)
{
    memset (f, 0, sizeof *f);
    keel_error_t err;
    f->metrics = keel_metrics_new ();
    f->model = keel_model_new ();
    f->store = keel_store_open ("memory:", KEEL_STORE_SYNC_NORMAL, &err);
    cr_assert (f->metrics && f->model && f->store);
    f->view = (keel_admin_view_t) { .name = "b\"1\\",
                                    .role = "standalone",
                                    .epoch = 7,
                                    .model = f->model,
                                    .store = f->store,
                                    .counters = &f->counters };
}

static void
s_teardown (s_fixture_t *f)
{
    keel_metrics_destroy (&f->metrics);
    keel_metrics_destroy (&f->metrics); // idempotent
    keel_model_destroy (&f->model);
    keel_store_destroy (&f->store);
}

Test (metrics, renders_cumulative_buckets_sum_and_count)
{
    s_fixture_t f;
    s_setup (&f);
    keel_metrics_task_run (f.metrics, "double", 500);        // 0.5 ms: le 0.001
    keel_metrics_task_run (f.metrics, "double", 2000000);    // 2 s: le 5
    keel_metrics_task_run (f.metrics, "double", 9000000000); // 2.5 h: +Inf only
    keel_metrics_store_commit (f.metrics, 300);
    f.counters.results_delivered = 42;
    char *text = keel_metrics_render (f.metrics, &f.view);
    cr_assert (text);
    cr_assert (strstr (text, "keel_task_run_seconds_bucket{type=\"double\",le=\"0.001\"} 1\n"));
    cr_assert (strstr (text, "keel_task_run_seconds_bucket{type=\"double\",le=\"1\"} 1\n"));
    cr_assert (strstr (text, "keel_task_run_seconds_bucket{type=\"double\",le=\"5\"} 2\n"));
    cr_assert (strstr (text, "keel_task_run_seconds_bucket{type=\"double\",le=\"3600\"} 2\n"));
    cr_assert (strstr (text, "keel_task_run_seconds_bucket{type=\"double\",le=\"+Inf\"} 3\n"));
    cr_assert (strstr (text, "keel_task_run_seconds_count{type=\"double\"} 3\n"));
    cr_assert (strstr (text, "keel_task_run_seconds_sum{type=\"double\"} 9002.0005\n"), "%s", text);
    cr_assert (strstr (text, "keel_store_commit_seconds_bucket{le=\"0.0005\"} 1\n"));
    cr_assert (strstr (text, "keel_store_commit_seconds_count 1\n"));
    cr_assert (strstr (text, "# TYPE keel_results_delivered_total counter\n"
                             "keel_results_delivered_total 42\n"));
    cr_assert (strstr (text, "keel_broker_epoch 7\n"));
    // No queue wait observed: the family is declared, without samples.
    cr_assert (strstr (text, "# TYPE keel_task_queue_wait_seconds histogram\n"));
    cr_assert_null (strstr (text, "keel_task_queue_wait_seconds_count"));
    free (text);
    s_teardown (&f);
}

Test (metrics, escapes_label_values)
{
    s_fixture_t f;
    s_setup (&f);
    char *text = keel_metrics_render (f.metrics, &f.view);
    cr_assert (strstr (text, "keel_broker_info{name=\"b\\\"1\\\\\",role=\"standalone\""), "%s",
               text);
    free (text);
    s_teardown (&f);
}

Test (metrics, bounds_type_labels_to_twenty_and_other)
{
    s_fixture_t f;
    s_setup (&f);
    char type[32];
    for (int i = 0; i < 100; i++) {
        snprintf (type, sizeof type, "type%d", i);
        keel_metrics_queue_wait (f.metrics, type, 10);
    }
    char *text = keel_metrics_render (f.metrics, &f.view);
    cr_assert (strstr (text, "keel_task_queue_wait_seconds_count{type=\"type19\"} 1\n"));
    cr_assert_null (strstr (text, "type=\"type20\""));
    cr_assert (strstr (text, "keel_task_queue_wait_seconds_count{type=\"other\"} 80\n"), "%s",
               text);
    free (text);
    s_teardown (&f);
}
