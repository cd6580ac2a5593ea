/*  double_lib.c — the built-in `double` as a library service (raw mode),
    for the benchmark row that measures a task in a worker process: the
    engine runs echo/double/fail inline, every library and exec service in
    its pool of worker processes (engine/daemon.h).

    Engine configuration:  service.double_lib.library=/path/to/libkeel_bench_double.so
*/
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <keel/service.h>

KEEL_SERVICE_DECLARE;

__attribute__ ((visibility ("default"))) int
keel_service_run (keel_svc_task_t *task)
{
    char text[32];
    if (task->input_size == 0 || task->input_size >= sizeof text) {
        keel_task_error (task, "input is not a decimal integer");
        return 1;
    }
    memcpy (text, task->input, task->input_size);
    text[task->input_size] = '\0';
    char *end = NULL;
    long long value = strtoll (text, &end, 10);
    if (*end != '\0') {
        keel_task_error (task, "input is not a decimal integer");
        return 1;
    }
    int n = snprintf (text, sizeof text, "%lld", 2 * value);
    return keel_task_output (task, text, (size_t) n) == 0 ? 0 : 1;
}
