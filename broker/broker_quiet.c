/*  broker_quiet.c — the loop's quiet sockets (broker_int.h, keel_quiet_t):
    the rarely busy sockets it polls by their ZMQ_FD descriptors.

    The poller holds a quiet socket's ZMQ_FD, a plain descriptor that turns
    readable when the socket's mailbox gets commands (a message arrived,
    the peer went away), not its ZMQ_EVENTS. Any call on the socket may
    read those commands, a send included, and leave messages waiting with
    the descriptor quiet: so a socket used since ZMQ_EVENTS last said
    "nothing" is `touched`, and the loop asks it before it waits (and
    waits not at all when it has a message). One poll of the descriptors
    after each wait says which were signalled.
*/
#include "broker_int.h"

#include <poll.h>
#include <stdlib.h>

bool
keel_broker_quiet_new (keel_quiet_t *q)
{
    q->sock = NULL;
    q->touched = false;
    q->fd = calloc (1, KEEL_FD_BOX);
    if (q->fd)
        *q->fd = -1;
    return q->fd != NULL;
}

// Points q at sock (NULL: none), in the poller when there is one.
int
keel_broker_quiet_set (keel_quiet_t *q, zsock_t *sock, zpoller_t *poller)
{
    if (q->sock && poller)
        zpoller_remove (poller, q->fd);
    q->sock = sock;
    *q->fd = sock ? zsock_fd (sock) : -1;
    q->touched = sock != NULL;
    return sock && poller ? zpoller_add (poller, q->fd) : 0;
}

bool
keel_broker_quiet_readable (keel_quiet_t *q)
{
    if (!q->sock || !q->touched)
        return false;
    if (zsock_events (q->sock) & ZMQ_POLLIN)
        return true;
    q->touched = false;
    return false;
}

// Before a wait: whether a quiet socket has a message (then no wait).
bool
keel_broker_quiet_pending (keel_broker_t *self)
{
    bool admin = keel_broker_quiet_readable (&self->admin_q);
    bool syncer = keel_broker_quiet_readable (&self->syncer_q);
    bool zap = keel_broker_quiet_readable (&self->zap_q);
    return admin || syncer || zap;
}

// After a wait: the quiet sockets whose descriptors were signalled.
void
keel_broker_quiet_look (keel_broker_t *self)
{
    keel_quiet_t *all[] = { &self->admin_q, &self->syncer_q, &self->zap_q };
    struct pollfd fds[3];
    keel_quiet_t *which[3];
    nfds_t n = 0;
    for (size_t i = 0; i < 3; i++)
        if (all[i]->sock && !all[i]->touched) {
            fds[n] = (struct pollfd) { .fd = *all[i]->fd, .events = POLLIN };
            which[n++] = all[i];
        }
    if (n && poll (fds, n, 0) > 0)
        for (nfds_t i = 0; i < n; i++)
            if (fds[i].revents)
                which[i]->touched = true;
}
