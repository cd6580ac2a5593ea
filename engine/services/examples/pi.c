/*  pi.c — example library service: a Monte-Carlo estimate of pi that
    survives engine loss without repeating work.

    Method  estimate(samples, seed) -> [inside, samples]
        Draws `samples` points in the unit square from a generator seeded
        with `seed` and counts those inside the quarter circle. Every
        `chunk` samples it checkpoints [done, inside, rng_state], so a
        re-run on another engine continues from the last chunk with the
        same random stream: the final count is the same as an
        uninterrupted run.
    Session init data (optional): one msgpack unsigned integer, the chunk
        size (default 1,000,000), read once per worker by keel_service_init.

    Engine configuration:  service.pi.library=/path/to/libkeel_pi.so
    Driver: pi_driver.c (keel-pi).
*/
#include <stdint.h>
#include <stdlib.h>
#include <keel/service.h>

#define S_DEFAULT_CHUNK 1000000u
#define S_MAX_SAMPLES   (UINT64_C (1) << 40)

#define S_EXPORT __attribute__ ((visibility ("default")))

KEEL_SERVICE_DECLARE;

typedef struct {
    uint64_t chunk;
} s_session_t;

static uint64_t
s_next (uint64_t *state)
{
    //  xorshift64*: small, fast, and its whole state fits in a checkpoint.
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * UINT64_C (2685821657736338717);
}

S_EXPORT int
keel_service_init (keel_svc_session_t *session)
{
    s_session_t *s = calloc (1, sizeof *s);
    if (!s)
        return -1;
    s->chunk = S_DEFAULT_CHUNK;
    if (session->init_data) {
        msgpack_unpacked value;
        msgpack_unpacked_init (&value);
        size_t off = 0;
        if (msgpack_unpack_next (&value, (const char *) session->init_data, session->init_data_size,
                                 &off)
                == MSGPACK_UNPACK_SUCCESS
            && value.data.type == MSGPACK_OBJECT_POSITIVE_INTEGER && value.data.via.u64 > 0)
            s->chunk = value.data.via.u64;
        msgpack_unpacked_destroy (&value);
    }
    session->user = s;
    return 0;
}

//  Reads [done, inside, state] from the task's memory.
static int
s_resume (const keel_svc_task_t *task, uint64_t *done, uint64_t *inside, uint64_t *state)
{
    msgpack_unpacked value;
    msgpack_unpacked_init (&value);
    size_t off = 0;
    int ok = msgpack_unpack_next (&value, (const char *) task->memory, task->memory_size, &off)
                 == MSGPACK_UNPACK_SUCCESS
             && value.data.type == MSGPACK_OBJECT_ARRAY && value.data.via.array.size == 3;
    for (uint32_t i = 0; ok && i < 3; i++)
        ok = value.data.via.array.ptr[i].type == MSGPACK_OBJECT_POSITIVE_INTEGER;
    if (ok) {
        *done = value.data.via.array.ptr[0].via.u64;
        *inside = value.data.via.array.ptr[1].via.u64;
        *state = value.data.via.array.ptr[2].via.u64;
    }
    msgpack_unpacked_destroy (&value);
    return ok;
}

static void
s_checkpoint (keel_svc_task_t *task, uint64_t done, uint64_t inside, uint64_t state)
{
    msgpack_sbuffer buf;
    msgpack_sbuffer_init (&buf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buf, msgpack_sbuffer_write);
    msgpack_pack_array (&pk, 3);
    msgpack_pack_uint64 (&pk, done);
    msgpack_pack_uint64 (&pk, inside);
    msgpack_pack_uint64 (&pk, state);
    keel_task_checkpoint (task, buf.data, buf.size);
    msgpack_sbuffer_destroy (&buf);
}

S_EXPORT int
keel_method_estimate (keel_svc_task_t *task)
{
    const msgpack_object_array *args = &task->args.via.array;
    if (args->size != 2 || args->ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER
        || args->ptr[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
        keel_task_error (task, "estimate(samples, seed): expected two unsigned integers");
        return 1;
    }
    uint64_t samples = args->ptr[0].via.u64;
    if (samples > S_MAX_SAMPLES) {
        keel_task_error (task, "estimate: at most %llu samples per task",
                         (unsigned long long) S_MAX_SAMPLES);
        return 1;
    }
    uint64_t done = 0, inside = 0;
    uint64_t state = args->ptr[1].via.u64 * UINT64_C (0x9E3779B97F4A7C15) + 1;
    if (task->has_memory && !s_resume (task, &done, &inside, &state)) {
        keel_task_error (task, "estimate: memory is not [done, inside, state]");
        return 1;
    }
    const s_session_t *session = task->session;
    uint64_t chunk = session ? session->chunk : S_DEFAULT_CHUNK;
    //  One chunk per pass; every pass does `chunk` samples or finishes.
    while (done < samples) {
        if (keel_task_cancelled (task)) {
            keel_task_error (task, "estimate: cancelled after %llu samples",
                             (unsigned long long) done);
            return 1;
        }
        uint64_t end = samples - done > chunk ? done + chunk : samples;
        for (; done < end; done++) {
            double x = (double) (s_next (&state) >> 11) / 9007199254740992.0;
            double y = (double) (s_next (&state) >> 11) / 9007199254740992.0;
            if (x * x + y * y <= 1.0)
                inside++;
        }
        if (done < samples)
            s_checkpoint (task, done, inside, state);
    }
    msgpack_packer *pk = keel_task_packer (task);
    msgpack_pack_array (pk, 2);
    msgpack_pack_uint64 (pk, inside);
    msgpack_pack_uint64 (pk, samples);
    return 0;
}
