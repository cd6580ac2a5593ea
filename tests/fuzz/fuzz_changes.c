/*  fuzz_changes.c — libFuzzer target for the pair stream's change batches
    (broker/changes.c keel_changes_decode): what a passive broker reads
    from its active peer in every PairUpdate before it applies the records
    to its own store.

    Decoding must never crash or leak, and must refuse with nothing
    appended. Invariants when it accepts:
      - every record has a known kind;
      - the batch encodes again, and that encoding decodes to the same
        records, which encode to the very same bytes (a fixed point: a
        passive that relays or re-encodes a batch changes nothing).
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "changes.h"
#include "log.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    keel_changes_t *changes = keel_changes_new ();
    if (!changes)
        abort ();
    uint64_t seq = 0;
    keel_error_t err;
    if (keel_changes_decode (changes, data, size, &seq, &err) != KEEL_OK) {
        if (keel_changes_size (changes) != 0)
            abort (); // refused, yet something was appended
        keel_changes_destroy (&changes);
        return 0;
    }
    for (size_t i = 0; i < keel_changes_size (changes); i++) {
        const keel_change_t *c = keel_changes_at (changes, i);
        if (c->kind < 1 || c->kind > KEEL_CHANGE_KIND_MAX
            || strcmp (keel_change_kind_name (c->kind), "?") == 0)
            abort ();
    }
    size_t size1 = 0, size2 = 0;
    uint8_t *bytes1 = keel_changes_encode (changes, seq, &size1);
    if (!bytes1)
        abort ();
    keel_changes_t *again = keel_changes_new ();
    uint64_t seq2 = 0;
    if (!again || keel_changes_decode (again, bytes1, size1, &seq2, &err) != KEEL_OK || seq2 != seq
        || keel_changes_size (again) != keel_changes_size (changes))
        abort ();
    uint8_t *bytes2 = keel_changes_encode (again, seq2, &size2);
    if (!bytes2 || size2 != size1 || memcmp (bytes1, bytes2, size1) != 0)
        abort ();
    free (bytes1);
    free (bytes2);
    keel_changes_destroy (&again);
    keel_changes_destroy (&changes);
    return 0;
}
