/*  test_syncer.c — broker/syncer.h: fdatasync off the loop, merged
    requests, and a failed flush reported (never retried or hidden).
*/
#include <criterion/criterion.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "syncer.h"

// Waits (bounded) for the syncer's answer and reads it.
static keel_err
s_wait (keel_syncer_t *syncer, uint64_t *synced, keel_error_t *err)
{
    zpoller_t *poller = zpoller_new (keel_syncer_actor (syncer), NULL);
    cr_assert_not_null (poller);
    void *which = zpoller_wait (poller, 10000);
    zpoller_destroy (&poller);
    cr_assert_not_null (which, "the syncer did not answer within 10 s");
    return keel_syncer_recv (syncer, synced, err);
}

Test (syncer, flushes_a_file_and_merges_requests_made_meanwhile, .timeout = 30)
{
    char path[] = "/tmp/keel-syncer-XXXXXX";
    int fd = mkstemp (path);
    cr_assert_geq (fd, 0);
    cr_assert_eq (write (fd, "x", 1), 1);
    keel_syncer_t *syncer = keel_syncer_new (fd);
    cr_assert_not_null (syncer);
    cr_expect_not (keel_syncer_busy (syncer));

    keel_syncer_request (syncer, 1);
    cr_expect (keel_syncer_busy (syncer));
    // While 1 is in flight, 2..5 are merged into one more flush.
    for (uint64_t seq = 2; seq <= 5; seq++)
        keel_syncer_request (syncer, seq);
    keel_syncer_request (syncer, 3); // older than asked: no-op
    uint64_t synced = 0;
    keel_error_t err = { "" };
    cr_assert_eq (s_wait (syncer, &synced, &err), KEEL_OK, "%s", err.text);
    if (synced < 5)
        cr_assert_eq (s_wait (syncer, &synced, &err), KEEL_OK, "%s", err.text);
    cr_expect_eq (synced, 5);
    cr_expect_eq (keel_syncer_flushes (syncer), 2, "expected 2 flushes for 5 requests, got %llu",
                  (unsigned long long) keel_syncer_flushes (syncer));
    cr_expect_not (keel_syncer_busy (syncer));

    keel_syncer_destroy (&syncer);
    cr_expect_null (syncer);
    close (fd);
    unlink (path);
}

Test (syncer, a_failed_flush_is_reported_with_its_reason, .timeout = 30)
{
    int fds[2];
    cr_assert_eq (pipe (fds), 0);
    // fdatasync on a pipe fails (EINVAL): the same path as a disk's EIO.
    keel_syncer_t *syncer = keel_syncer_new (fds[0]);
    cr_assert_not_null (syncer);
    keel_syncer_request (syncer, 1);
    uint64_t synced = 0;
    keel_error_t err = { "" };
    cr_expect_eq (s_wait (syncer, &synced, &err), KEEL_ERR_STORE);
    cr_expect (strstr (err.text, "fdatasync"), "%s", err.text);
    cr_expect_eq (synced, 0, "a failed flush reported commits durable");
    keel_syncer_destroy (&syncer);
    close (fds[0]);
    close (fds[1]);
}

static volatile sig_atomic_t s_usr1;

static void
s_on_usr1 (int sig)
{
    (void) sig;
    s_usr1++;
}

// A signal that can only land on the syncer's thread (every other thread
// blocks it) must not end that thread: the broker's SIGTERM once did, and
// the loop then blocked forever handing it the next commit.
Test (syncer, a_signal_does_not_end_the_thread, .timeout = 20)
{
    char path[] = "/tmp/keel-syncer-XXXXXX";
    int fd = mkstemp (path);
    cr_assert_geq (fd, 0);
    struct sigaction sa = { 0 };
    sa.sa_handler = s_on_usr1; // no SA_RESTART: interrupts system calls
    cr_assert_eq (sigaction (SIGUSR1, &sa, NULL), 0);
    keel_syncer_t *syncer = keel_syncer_new (fd);
    cr_assert_not_null (syncer);
    sigset_t usr1;
    sigemptyset (&usr1);
    sigaddset (&usr1, SIGUSR1);
    cr_assert_eq (pthread_sigmask (SIG_BLOCK, &usr1, NULL), 0);
    for (int i = 0; i < 5; i++) {
        kill (getpid (), SIGUSR1);
        zclock_sleep (20);
    }
    keel_syncer_request (syncer, 1);
    cr_expect_not (keel_syncer_failed (syncer), "the syncer thread is gone after a signal");
    uint64_t synced = 0;
    keel_error_t err = { "" };
    if (!keel_syncer_failed (syncer))
        cr_expect_eq (s_wait (syncer, &synced, &err), KEEL_OK, "%s", err.text);
    cr_expect_eq (synced, 1);
    cr_assert_eq (pthread_sigmask (SIG_UNBLOCK, &usr1, NULL), 0); // the handler runs here
    keel_syncer_destroy (&syncer);
    close (fd);
    unlink (path);
}
