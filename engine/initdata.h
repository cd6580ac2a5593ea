/*  initdata.h — the engine's copy of each service's session init data.

    A broker sends a service's init data to an engine once (in the first
    Assign of that service to the engine process, protocol.md); the engine
    keeps it here and hands it to every task of the service it runs. Entries
    live for the engine session (a new session — restart or Engine Timeout —
    starts empty, and the broker sends the data again because the session
    id changed). At most KEEL_INITDATA_MAX services are kept; past that the
    least recently used one is forgotten with a warning (its later tasks run
    without init data), which bounds the engine's memory.

    The table owns every byte in it.
*/
#ifndef KEEL_ENGINE_INITDATA_H
#define KEEL_ENGINE_INITDATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KEEL_INITDATA_MAX 4096

typedef struct _keel_initdata_t keel_initdata_t;

keel_initdata_t *keel_initdata_new (void);
// Frees every entry and the table; nulls *self_p. Idempotent.
void keel_initdata_destroy (keel_initdata_t **self_p);

// Stores (or replaces) the init data of service_id. Returns false when out
// of memory. *evicted_p (may be NULL) is set when another service had to go.
bool keel_initdata_put (keel_initdata_t *self, const char *service_id, const uint8_t *data,
                        size_t size, bool *evicted_p);

// The init data of service_id (NULL and *size_p = 0 when there is none).
// The pointer stays valid until the next put or clear.
const uint8_t *keel_initdata_get (keel_initdata_t *self, const char *service_id, size_t *size_p);

// Number of services with init data.
size_t keel_initdata_size (const keel_initdata_t *self);

// Forgets everything (a new session).
void keel_initdata_clear (keel_initdata_t *self);

#endif
