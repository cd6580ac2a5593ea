/*  statedir.c — the engine's state directory: lock and identity. */
#include "statedir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "wire.h"

struct _keel_statedir_t {
    char *path;
    int lock_fd;
    char engine_id[KEEL_ID_MAX + 1];
};

static keel_err
s_mkdir (const char *path, keel_error_t *err)
{
    if (mkdir (path, 0755) == 0 || errno == EEXIST) {
        struct stat st;
        if (stat (path, &st) == 0 && S_ISDIR (st.st_mode))
            return KEEL_OK;
        return keel_error_set (err, KEEL_ERR_IO, "StateDir %s: not a directory", path);
    }
    return keel_error_set (err, KEEL_ERR_IO, "StateDir %s: cannot create: %s", path,
                           strerror (errno));
}

static keel_err
s_lock (keel_statedir_t *self, keel_error_t *err)
{
    char file[4096];
    snprintf (file, sizeof file, "%s/lock", self->path);
    self->lock_fd = open (file, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (self->lock_fd < 0)
        return keel_error_set (err, KEEL_ERR_IO, "%s: cannot open: %s", file, strerror (errno));
    if (flock (self->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        char text[32] = "";
        ssize_t n = pread (self->lock_fd, text, sizeof text - 1, 0);
        text[n > 0 ? n : 0] = 0;
        long pid = strtol (text, NULL, 10);
        return keel_error_set (err, KEEL_ERR_STATE,
                               "StateDir %s is in use by another engine (pid %ld); "
                               "give each engine its own StateDir",
                               self->path, pid);
    }
    char text[32];
    int len = snprintf (text, sizeof text, "%ld\n", (long) getpid ());
    if (ftruncate (self->lock_fd, 0) != 0 || pwrite (self->lock_fd, text, (size_t) len, 0) != len)
        return keel_error_set (err, KEEL_ERR_IO, "%s: cannot write: %s", file, strerror (errno));
    return KEEL_OK;
}

static keel_err
s_load_id (keel_statedir_t *self, keel_error_t *err)
{
    char file[4096];
    snprintf (file, sizeof file, "%s/engine-id", self->path);
    FILE *f = fopen (file, "r");
    if (f) {
        char text[128] = "";
        size_t n = fread (text, 1, sizeof text - 1, f);
        fclose (f);
        text[n] = 0;
        while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' ' || text[n - 1] == '\r'))
            text[--n] = 0;
        if (!keel_id_valid (text))
            return keel_error_set (err, KEEL_ERR_INVALID,
                                   "%s: not a valid engine id; remove the file to get a new one",
                                   file);
        memcpy (self->engine_id, text, n + 1); // keel_id_valid: n <= KEEL_ID_MAX
        return KEEL_OK;
    }
    if (errno != ENOENT)
        return keel_error_set (err, KEEL_ERR_IO, "%s: cannot read: %s", file, strerror (errno));
    char uuid[37];
    keel_uuid_new (uuid);
    char tmp[4200];
    snprintf (tmp, sizeof tmp, "%s.tmp", file);
    f = fopen (tmp, "w");
    if (!f || fprintf (f, "%s\n", uuid) < 0 || fflush (f) != 0 || fsync (fileno (f)) != 0) {
        if (f)
            fclose (f);
        return keel_error_set (err, KEEL_ERR_IO, "%s: cannot write: %s", tmp, strerror (errno));
    }
    fclose (f);
    if (rename (tmp, file) != 0)
        return keel_error_set (err, KEEL_ERR_IO, "%s: cannot rename: %s", tmp, strerror (errno));
    snprintf (self->engine_id, sizeof self->engine_id, "%s", uuid);
    return KEEL_OK;
}

keel_statedir_t *
keel_statedir_open (const char *path, keel_error_t *err)
{
    keel_statedir_t *self = calloc (1, sizeof *self);
    if (!self) {
        keel_error_set (err, KEEL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    self->lock_fd = -1;
    self->path = strdup (path);
    if (!self->path || s_mkdir (path, err) != KEEL_OK || s_lock (self, err) != KEEL_OK
        || s_load_id (self, err) != KEEL_OK) {
        keel_statedir_destroy (&self);
        return NULL;
    }
    return self;
}

void
keel_statedir_destroy (keel_statedir_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    keel_statedir_t *self = *self_p;
    if (self->lock_fd >= 0)
        close (self->lock_fd);
    free (self->path);
    free (self);
    *self_p = NULL;
}

const char *
keel_statedir_path (const keel_statedir_t *self)
{
    return self->path;
}

const char *
keel_statedir_engine_id (const keel_statedir_t *self)
{
    return self->engine_id;
}
