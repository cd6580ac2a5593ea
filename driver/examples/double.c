/*  double.c — the smallest Keel driver: doubles 0..9 on the grid with the
    built-in service "double" and prints each result as it arrives.

        cc double.c $(pkg-config --cflags --libs keeldriver) -o double
        ./double [KEY=VALUE ...]        e.g. DSPrimaryBroker=tcp://broker:7070

    Arguments are driver settings (man keel-driver). Exit 0 when every task
    succeeded, 1 when one failed, 3 when no broker answered in time.
*/
#include <stdio.h>
#include <string.h>

#include <keel/driver.h>

static void
s_print (const keel_result_t *result, void *failed)
{
    if (result->status != KEEL_TASK_OK)
        ++*(int *) failed;
    printf ("task %llu: %.*s\n", (unsigned long long) result->task_id,
            result->status == KEEL_TASK_OK ? (int) result->output_size
                                           : (int) strlen (result->error),
            result->status == KEEL_TASK_OK ? (const char *) result->output : result->error);
}

int
main (int argc, char **argv)
{
    keel_error_t err;
    keel_driver_t *driver = keel_driver_new (NULL, argv + 1, argc - 1, &err);
    if (!driver) {
        fprintf (stderr, "double: %s\n", err.text);
        return 2;
    }
    int failed = 0;
    keel_driver_set_result_handler (driver, s_print, &failed);
    keel_service_options_t options;
    keel_service_options_init (&options, "double");
    keel_service_t *service = keel_driver_open_service (driver, &options, &err);
    for (int i = 0; service && i < 10; i++) {
        char input[16];
        int size = snprintf (input, sizeof input, "%d", i);
        keel_service_submit (service, input, (size_t) size, NULL, &err);
    }
    if (service)
        keel_service_close (service, &err);
    keel_err rc = service ? keel_driver_wait_all (driver, -1, &err) : KEEL_ERR_INVALID;
    if (rc != KEEL_OK)
        fprintf (stderr, "double: %s\n", err.text);
    keel_driver_destroy (&driver);
    return rc == KEEL_ERR_TIMEOUT ? 3 : rc != KEEL_OK || failed ? 1 : 0;
}
