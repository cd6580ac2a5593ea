/*  engine_metrics.c — the text exposition of an engine's metrics
    (engine_metrics.h).
*/

#include "engine_metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// A label value as the text format wants it: \ " and newline escaped.
static void
s_label (FILE *f, const char *value)
{
    for (const char *p = value ? value : ""; *p; p++) {
        if (*p == '\\' || *p == '"')
            fputc ('\\', f);
        if (*p == '\n')
            fputs ("\\n", f);
        else
            fputc (*p, f);
    }
}

static void
s_metric (FILE *f, const char *name, const char *type, const char *help, double value)
{
    fprintf (f, "# HELP %s %s\n# TYPE %s %s\n%s %.15g\n", name, help, name, type, name, value);
}

char *
keel_engine_metrics_render (const keel_engine_metrics_t *m)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream (&buf, &len);
    if (!f)
        return NULL;
    fputs ("# HELP keel_engine_info The engine's ids and the broker it is with (the value is 1)\n"
           "# TYPE keel_engine_info gauge\nkeel_engine_info{engine=\"",
           f);
    s_label (f, m->engine_id);
    fputs ("\",session=\"", f);
    s_label (f, m->session_id);
    fputs ("\",broker=\"", f);
    s_label (f, m->broker);
    fputs ("\",version=\"" KEEL_VERSION "\"} 1\n", f);
    fputs ("# HELP keel_engine_state The session's state (1 for the current one)\n"
           "# TYPE keel_engine_state gauge\n",
           f);
    static const char *states[] = { "offline", "logging-in", "online" };
    for (int i = 0; i < 3; i++)
        fprintf (f, "keel_engine_state{state=\"%s\"} %d\n", states[i],
                 strcmp (m->state, states[i]) == 0);
    s_metric (f, "keel_engine_slots", "gauge", "Task slots (Slots)", m->slots);
    s_metric (f, "keel_engine_running", "gauge", "Executions running in a worker",
              (double) m->running);
    s_metric (f, "keel_engine_held_results", "gauge",
              "Finished executions whose results no broker has acknowledged yet",
              (double) m->held_results);
    s_metric (f, "keel_engine_offline_seconds", "gauge",
              "Seconds without a broker in the current stretch (0 when online)",
              m->offline_seconds);
    s_metric (f, "keel_engine_offline_seconds_total", "counter",
              "Seconds without a broker since the engine started", m->offline_seconds_total);
    s_metric (f, "keel_engine_uptime_seconds", "gauge", "Seconds since the engine started",
              m->uptime_seconds);
    s_metric (f, "keel_engine_malformed_messages_total", "counter",
              "Messages from brokers that did not decode, dropped", (double) m->malformed_messages);
    s_metric (f, "keel_engine_stale_messages_total", "counter",
              "Messages from a deposed broker of a pair (stale epoch), dropped",
              (double) m->stale_messages);
    if (fclose (f) != 0) {
        free (buf);
        return NULL;
    }
    return buf;
}
