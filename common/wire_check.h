/*  wire_check.h — what a valid Keel message is: the validation table.

    Owns the protocol's limits (below) and one table with a row per body:
    which sender kinds may send it and the check of what it must carry —
    required fields present, ids well formed (keel_id_valid), service type
    names well formed, every enum in range, texts, repeated fields and
    batches within their caps. Nothing decoded from the wire is used before
    keel_wire_validate has accepted it (wire_codec.c calls it on every
    frame); locally built envelopes (wire_build.h) pass the same checks.

    Embedded NULs are refused by the decoder before the checks run
    (wire_codec.h), so the checks see whole strings. No state, no I/O.
*/
#ifndef KEEL_WIRE_CHECK_H
#define KEEL_WIRE_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "keel.pb-c.h"
#include "error.h"

#define KEEL_PROTOCOL_VERSION     1
#define KEEL_ID_MAX               64     // service, driver, engine ids and sessions
#define KEEL_TYPE_MAX             64     // service type names
#define KEEL_TEXT_MAX             4096   // error texts, notices, reasons
#define KEEL_LIST_MAX             100000 // entries in any repeated field
#define KEEL_BATCH_MAX            4096   // Assigns in an AssignBatch, Results in a ResultBatch
#define KEEL_DEFAULT_MAX_MSG_SIZE (64 * 1024 * 1024)
#define KEEL_MEMBERS_MAX          16  // cluster_members in a welcome
#define KEEL_ENDPOINT_MAX         255 // an endpoint's length
#define KEEL_PROPERTIES_MAX       64  // properties in an EngineLogin

typedef Keel__Envelope keel_env_t;

// Validates a decoded (or locally built) envelope: version, sender kind,
// exactly one body, the body allowed from that sender, and the body's own
// check. Returns KEEL_OK or KEEL_ERR_INVALID with a reason that names the
// field ("submit_tasks: tasks[3]: missing task_id").
keel_err keel_wire_validate (const keel_env_t *env, keel_error_t *err);

// Name of the envelope's body ("submit_tasks"), for logs; "none" if unset
// or env is NULL.
const char *keel_wire_body_name (const keel_env_t *env);

// Ids: 1..KEEL_ID_MAX characters of [A-Za-z0-9_.:-].
bool keel_id_valid (const char *id);
// Service type names: 1..KEEL_TYPE_MAX characters of [A-Za-z0-9_.-].
bool keel_type_name_valid (const char *name);

#endif
