/*  no_room.h — for tests whose store must fail to write as on a full disk:
    a 1-byte RLIMIT_FSIZE (SIGXFSZ ignored) makes every write that would
    grow a file fail with EFBIG, in every thread of the test's process.
    Header-only, static inline.
*/
#ifndef KEEL_TEST_NO_ROOM_H
#define KEEL_TEST_NO_ROOM_H

#include <criterion/criterion.h>
#include <signal.h>
#include <sys/resource.h>

// Returns the limit s_room_again restores.
static inline struct rlimit
s_no_room (void)
{
    signal (SIGXFSZ, SIG_IGN);
    struct rlimit old, tiny = { 1, 1 };
    cr_assert_eq (getrlimit (RLIMIT_FSIZE, &old), 0);
    tiny.rlim_max = old.rlim_max;
    cr_assert_eq (setrlimit (RLIMIT_FSIZE, &tiny), 0);
    return old;
}

static inline void
s_room_again (struct rlimit old)
{
    cr_assert_eq (setrlimit (RLIMIT_FSIZE, &old), 0);
}

#endif
