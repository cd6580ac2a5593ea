#!/usr/bin/env python3
"""check.py - judges a chaos campaign from its journals alone.

Usage: check.py JOURNAL_DIR [--json]

Reads every *.jsonl in JOURNAL_DIR: the journals the drivers, engines and
brokers wrote (common/journal.h) and the nemesis's own. Trusts nothing
else: not the programs' exit codes, not their logs, not their counters.

Reports, and fails (exit 1) on any of:
  lost           a task submitted by a driver that ended normally
                 ("driver_closed") but never delivered to its application
  duplicate      a task delivered to the application more than once
  wrong          an output that is not what the service computes from the
                 input (double: 2*input; sleep: the input; count "N MS":
                 "first-last" with last = N-1), or a task that failed
  phantom        a delivery of a task its driver never submitted
  stale          a broker record (accepted, dispatched, result stored) made
                 under an epoch older than one another broker process had
                 already started serving on the same store (the two
                 stores of a resilient pair count as one)
  split_brain, unwanted_takeover, no_demotion, pair_check
                 the resilient pair's own (pair_checks below)
and, for information:
  exits          a broker or engine that exited when the nemesis did not
                 kill or stop it (a crash, a fatal store error, a signal
                 from outside the campaign)
  re-runs        executions beyond the first of a task, split into those a
                 fault explains (one was under way, or ended less than
                 RERUN_SLACK_MS before, between the task's first dispatch
                 and its delivery) and those none does
  recovery       the time from each fault to the next delivered result
                 (p50, p99, max)
"""
import glob
import json
import os
import sys

RERUN_SLACK_MS = 5000


def proc_of(r):
    """The process incarnation that wrote r: pids are reused over a long
    campaign, so "run" (pid and start time) when present."""
    return r.get("run") or r.get("pid")


def load(journal_dir):
    records = []
    bad = 0
    for path in sorted(glob.glob(os.path.join(journal_dir, "*.jsonl"))):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    records.append(json.loads(line))
                except ValueError:
                    bad += 1        # a line cut by kill -9 mid-write cannot happen
                                    # (one write per line), but never trust it
    records.sort(key=lambda r: r.get("t", 0))
    return records, bad


def expected_output(kind, data):
    """What the service returns for input `data`, as a predicate on output."""
    if kind == "double":
        try:
            n = int(data)
        except ValueError:
            return None
        return lambda out: out == str(2 * n)
    if kind == "sleep" or kind == "echo":
        return lambda out: out == data
    if kind == "count":
        parts = data.split()
        try:
            steps = int(parts[0])
        except (ValueError, IndexError):
            return None

        def ok(out):
            try:
                first, last = (int(x) for x in out.split("-"))
            except ValueError:
                return False
            return last == steps - 1 and 0 <= first <= last
        return ok
    return None


def percentile(values, p):
    if not values:
        return None
    values = sorted(values)
    k = min(len(values) - 1, max(0, int(round(p / 100.0 * (len(values) - 1)))))
    return values[k]


# Faults of the pair topology during which no broker may start serving:
# the links between the brokers fail while the clients stay at the active,
# or the passive fails. (chaos.py runs these one at a time, never with a
# client link fault, so the clients never vote for the passive.)
PAIR_QUIET = ("pair_link_cut", "pair_link_pause", "kill_passive", "pause_passive")
PAIR_MOVES = ("kill_active", "pause_active", "takeover", "kill_broker", "pause")
TAKEOVER_SLACK_MS = 2000    # a takeover decided in a fault shows up this late at most
DEMOTE_MS = 5000            # a resumed active hears the new one within PairTimeout


def pair_checks(nemesis, turns, last_t, group):
    """The resilient pair's own invariants, from the brokers' "serving" and
    "passive" records and the nemesis's faults. Returns lists of examples:
      split_brain        two broker processes serving the same epoch of one
                         store (or pair) at the same time
      unwanted_takeover  a broker started serving during a fault that must
                         not move the pair (a pair link cut or paused while
                         the clients stay at the active; the passive killed
                         or paused)
      no_demotion        an active paused past PairTimeout while the other
                         broker took over did not journal "passive" within
                         DEMOTE_MS of its SIGCONT
      pair_check         the nemesis saw the pair not settle as it must
                         after a fault (keel-admin status: one active, one
                         passive in sync; a restarted or resumed broker
                         passive when its peer had taken over; the active
                         unchanged after a fault that must not move it)
    and the epochs served by more than one process (for information)."""
    deaths = [(r["t"], r["pid"]) for r in nemesis
              if r.get("ev") == "fault" and r.get("pid") and r.get("kind", "").startswith("kill_")]
    stop_t = min((r["t"] for r in nemesis if r.get("ev") == "stopping"), default=None)
    pid_of = {proc_of(r): r.get("pid") for r in turns}
    spans = []          # (start, end, run, group, epoch)
    for r in turns:
        if r.get("ev") != "serving":
            continue
        run, t0 = proc_of(r), r["t"]
        ends = [x["t"] for x in turns if x.get("ev") == "passive" and proc_of(x) == run
                and x["t"] >= t0]
        ends += [t for t, pid in deaths if pid == pid_of[run] and t >= t0]
        if stop_t is not None and stop_t >= t0:
            ends.append(stop_t)
        end = min(ends) if ends else last_t.get(run, t0)
        spans.append((t0, end, run, group.get(r.get("output"), r.get("output")), r.get("epoch", 0)))
    split_brain, reused = [], set()
    for i, a in enumerate(spans):
        for b in spans[i + 1:]:
            if a[2] == b[2] or a[3] != b[3] or a[4] != b[4]:
                continue
            reused.add((a[3], a[4]))
            if a[0] < b[1] and b[0] < a[1]:
                split_brain.append({"epoch": a[4], "runs": [a[2], b[2]],
                                    "from": max(a[0], b[0]), "to": min(a[1], b[1])})

    def end_of(f):
        for r in nemesis:
            if (r.get("ev") == "fault_end" and r["t"] >= f["t"] and r.get("kind") == f.get("kind")
                    and r.get("target") == f.get("target")):
                return r["t"]
        return None

    unwanted, no_demotion = [], []
    servings = [r for r in turns if r.get("ev") == "serving"]
    for f in nemesis:
        if f.get("ev") != "fault":
            continue
        kind = f.get("kind")
        if kind in PAIR_QUIET:
            end = end_of(f)
            end = (end if end is not None else f["t"]) + TAKEOVER_SLACK_MS
            # ... but not past the start of the next fault that may move the pair
            moves = [r["t"] for r in nemesis if r.get("ev") == "fault" and r["t"] > f["t"]
                     and r.get("kind") in PAIR_MOVES]
            end = min([end] + moves)
            for r in servings:
                if f["t"] <= r["t"] <= end:
                    unwanted.append({"fault": kind, "target": f.get("target"), "at": f["t"],
                                     "serving": r.get("text"), "epoch": r.get("epoch")})
        elif kind == "pause_active" and f.get("pid"):
            end = end_of(f)
            if end is None:
                continue
            mine = [r for r in servings if r.get("pid") == f["pid"] and r["t"] < f["t"]]
            if not mine:
                continue
            run = proc_of(mine[-1])
            took = [r for r in servings if proc_of(r) != run and f["t"] <= r["t"] <= end]
            if not took:
                continue
            demoted = [r for r in turns if r.get("ev") == "passive" and proc_of(r) == run
                       and f["t"] <= r["t"] <= end + DEMOTE_MS]
            if not demoted:
                no_demotion.append({"target": f.get("target"), "at": f["t"], "resumed": end,
                                    "took_over": took[0].get("text"),
                                    "epoch": took[0].get("epoch")})
    checks = [{k: r.get(k) for k in ("after", "target", "want", "got", "t")}
              for r in nemesis if r.get("ev") == "pair_check" and r.get("ok") is False]
    return {"split_brain": split_brain, "unwanted_takeover": unwanted,
            "no_demotion": no_demotion, "pair_check": checks,
            "epochs_reused": sorted(reused)}


def check(journal_dir):
    records, bad_lines = load(journal_dir)
    services = {}           # service id -> {"type", "pid"}
    submitted = {}          # (service, task) -> input
    delivered = {}          # (service, task) -> [record]
    closed = {}             # driver pid -> undelivered count it reported
    execs = {}              # (service, task) -> set(execution)
    first_exec_t = {}       # (service, task) -> t of its first dispatch or execution
    serving = []            # (t, pid, store, epoch)
    broker_writes = []      # records from brokers with an epoch
    faults = []             # fault records
    deliveries_t = []       # times of every delivery
    campaign = {}           # the nemesis's "campaign" record
    nemesis = []            # every nemesis record
    turns = []              # broker "serving" / "passive" records
    last_t = {}             # broker run -> t of its last record

    for r in records:
        ev = r.get("ev")
        who = r.get("who")
        key = (r.get("service"), r.get("task"))
        if who == "nemesis":
            if ev == "fault":
                faults.append(r)
            elif ev == "campaign":
                campaign = r
            nemesis.append(r)
            continue
        if who == "driver":
            if ev == "service_opened":
                services[r["service"]] = {"type": r.get("text"), "pid": proc_of(r)}
            elif ev == "submitted":
                submitted[key] = r.get("output", "")
            elif ev == "delivered":
                delivered.setdefault(key, []).append(r)
                deliveries_t.append(r["t"])
            elif ev == "driver_closed":
                closed[proc_of(r)] = r.get("n", 0)
        elif who == "engine":
            if ev == "exec_start":
                execs.setdefault(key, set()).add(r.get("execution"))
                first_exec_t.setdefault(key, r["t"])
        elif who == "broker":
            if ev == "dispatched":
                first_exec_t.setdefault(key, r["t"])
            if ev == "serving":
                serving.append((r["t"], proc_of(r), r.get("output"), r.get("epoch", 0)))
            elif ev in ("accepted", "dispatched", "result_stored"):
                broker_writes.append(r)
            if ev in ("serving", "passive"):
                turns.append(r)
            last_t[proc_of(r)] = r["t"]

    report = {"records": len(records), "unreadable_lines": bad_lines,
              "services": len(services), "submitted": len(submitted),
              "delivered": sum(len(v) for v in delivered.values())}

    # lost: every task of a driver that ended normally must have been delivered.
    lost = []
    closed_pids = set(closed)
    for key, data in submitted.items():
        svc = services.get(key[0])
        if svc and svc["pid"] in closed_pids and key not in delivered:
            lost.append(key)
    # duplicate deliveries to the application
    duplicate = [key for key, recs in delivered.items() if len(recs) > 1]
    # phantom: delivered, never submitted
    phantom = [key for key in delivered if key not in submitted]
    # wrong outputs, and failures (no task in a campaign is meant to fail)
    wrong = []
    for key, recs in delivered.items():
        if key not in submitted:
            continue
        kind = services.get(key[0], {}).get("type")
        pred = expected_output(kind, submitted[key])
        for rec in recs:
            if rec.get("status") != "ok":
                wrong.append((key, "status %s: %s" % (rec.get("status"), rec.get("text"))))
            elif pred is not None and not pred(rec.get("output", "")):
                wrong.append((key, "input %r output %r" % (submitted[key], rec.get("output"))))
    # stale epochs: a write by a broker process whose epoch is below that of
    # another process already serving the same store at that time.
    # The two stores of a resilient pair are one store (the passive's
    # mirrors the active's): the nemesis names them in its "campaign" record.
    group = {}
    for store in campaign.get("pair_stores") or []:
        group[store] = "pair"
    serving = [(t, pid, group.get(store, store), epoch) for t, pid, store, epoch in serving]
    pid_epoch = {pid: (store, epoch) for _, pid, store, epoch in serving}
    stale = []
    for w in broker_writes:
        store, epoch = pid_epoch.get(proc_of(w), (None, 0))
        epoch = w.get("epoch", epoch)   # a broker of a pair serves several epochs in its life
        newer = [s for s in serving if s[2] == store and s[3] > epoch and s[0] < w["t"]
                 and s[1] != proc_of(w)]
        if newer:
            stale.append((w.get("ev"), w.get("service"), w.get("task"), epoch, newer[0][3]))
    pair = pair_checks(nemesis, turns, last_t, group)
    # re-runs, and whether a fault explains them
    fault_times = sorted(f["t"] for f in faults)
    # A fault is felt from its start until a while after it ends: a pause
    # or a cut link is noticed after 3 heartbeats, a restarted broker waits
    # EngineLoginWindow for its engines.
    fault_spans = [(f["t"], f["t"] + int(1000 * float(f.get("duration", 0))) + RERUN_SLACK_MS)
                   for f in faults]
    reruns_explained = reruns_unexplained = 0
    unexplained = []
    for key, ids in execs.items():
        extra = len(ids) - 1
        if extra <= 0:
            continue
        start = first_exec_t[key]
        end = max((r["t"] for r in delivered.get(key, [])), default=float("inf"))
        if any(f_start <= end and start <= f_end for f_start, f_end in fault_spans):
            reruns_explained += extra
        else:
            reruns_unexplained += extra
            unexplained.append(key)
    # recovery: fault -> next delivered result
    deliveries_t.sort()
    recovery = []
    j = 0
    for t in fault_times:
        while j < len(deliveries_t) and deliveries_t[j] <= t:
            j += 1
        if j < len(deliveries_t):
            recovery.append(deliveries_t[j] - t)
    kinds = {}
    for f in faults:
        kinds[f.get("kind")] = kinds.get(f.get("kind"), 0) + 1

    report.update({
        "lost": len(lost), "duplicate": len(duplicate), "wrong": len(wrong),
        "phantom": len(phantom), "stale": len(stale),
        "split_brain": len(pair["split_brain"]),
        "unwanted_takeover": len(pair["unwanted_takeover"]),
        "no_demotion": len(pair["no_demotion"]), "pair_check": len(pair["pair_check"]),
        "epochs_reused": len(pair["epochs_reused"]),
        "pair": bool(campaign.get("pair_stores")),
        "takeovers": sum(1 for r in turns if r.get("ev") == "serving"),
        "exits": [{k: r.get(k) for k in ("target", "pid", "code", "t")} for r in nemesis
                  if r.get("ev") == "process_exit"],
        "demotions": sum(1 for r in turns if r.get("ev") == "passive"),
        "drivers_closed": len(closed), "drivers_gave_up": sum(1 for n in closed.values() if n),
        "executions": sum(len(v) for v in execs.values()),
        "reruns_explained": reruns_explained, "reruns_unexplained": reruns_unexplained,
        "faults": len(faults), "fault_kinds": kinds,
        "recovery_ms": {"p50": percentile(recovery, 50), "p99": percentile(recovery, 99),
                        "max": max(recovery) if recovery else None},
        "examples": {"lost": lost[:5], "duplicate": duplicate[:5], "wrong": wrong[:5],
                     "phantom": phantom[:5], "stale": stale[:5], "unexplained": unexplained[:5],
                     "split_brain": pair["split_brain"][:5],
                     "unwanted_takeover": pair["unwanted_takeover"][:5],
                     "no_demotion": pair["no_demotion"][:5], "pair_check": pair["pair_check"][:5],
                     "epochs_reused": pair["epochs_reused"][:5]},
    })
    ok = (not (lost or duplicate or wrong or phantom or stale or pair["split_brain"]
               or pair["unwanted_takeover"] or pair["no_demotion"] or pair["pair_check"])
          and report["delivered"] > 0)
    return ok, report


def main():
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(sys.argv) >= 2 else 2
    ok, report = check(sys.argv[1])
    if "--json" in sys.argv[2:]:
        print(json.dumps(report, indent=2))
    else:
        print("check: %(records)d records, %(services)d services, %(submitted)d tasks submitted, "
              "%(delivered)d delivered, %(executions)d executions" % report)
        print("check: lost=%(lost)d duplicate=%(duplicate)d wrong=%(wrong)d phantom=%(phantom)d "
              "stale=%(stale)d" % report)
        if report["pair"] or report["split_brain"] or report["unwanted_takeover"]:
            print("check: pair: split_brain=%(split_brain)d "
                  "unwanted_takeover=%(unwanted_takeover)d no_demotion=%(no_demotion)d "
                  "pair_check=%(pair_check)d; serving records=%(takeovers)d "
                  "passive records=%(demotions)d, epochs served by two processes="
                  "%(epochs_reused)d" % report)
        for e in report["exits"]:
            print("check: %(target)s (pid %(pid)s) exited by itself, code %(code)s, at t=%(t)s"
                  % e)
        print("check: drivers closed=%(drivers_closed)d (gave up with tasks left: "
              "%(drivers_gave_up)d)" % report)
        print("check: re-runs explained by a fault=%(reruns_explained)d, "
              "unexplained=%(reruns_unexplained)d" % report)
        rec = report["recovery_ms"]
        print("check: %d faults %s; fault -> next delivery ms: p50=%s p99=%s max=%s"
              % (report["faults"], json.dumps(report["fault_kinds"], sort_keys=True),
                 rec["p50"], rec["p99"], rec["max"]))
        for name, items in report["examples"].items():
            if items:
                print("check: %s e.g. %s" % (name, items))
        if report["delivered"] == 0:
            print("check: nothing was delivered: the campaign proves nothing")
        print("check: %s" % ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
