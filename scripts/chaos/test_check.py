#!/usr/bin/env python3
"""test_check.py - the checker must catch what it claims to catch.

Writes small invented journals, one per kind of violation, and asserts
that check.py fails each (and names it), and passes a clean one. A
campaign that passes proves something only if its checker can fail.
Run by ctest (chaos_checker_catches_every_violation).
"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
S = "11111111-2222-3333-4444-555555555555"


def rec(t, who, pid, ev, **kw):
    r = {"t": t, "who": who, "pid": pid, "ev": ev}
    r.update(kw)
    return r


def clean():
    """One broker, one engine, one driver, two double tasks, all well."""
    j = [rec(1, "broker", 10, "serving", epoch=1, output="sqlite:/s.db", text="A"),
         rec(2, "driver", 30, "service_opened", service=S, task=0, text="double")]
    for task, (inp, out) in enumerate([("3", "6"), ("5", "10")]):
        j += [rec(3, "driver", 30, "submitted", service=S, task=task, output=inp),
              rec(4, "broker", 10, "accepted", service=S, task=task, epoch=1),
              rec(5, "broker", 10, "dispatched", service=S, task=task, execution=100 + task,
                  epoch=1),
              rec(6, "engine", 20, "exec_start", service=S, task=task, execution=100 + task),
              rec(7, "engine", 20, "exec_end", service=S, task=task, execution=100 + task,
                  status="ok"),
              rec(8, "broker", 10, "result_stored", service=S, task=task, execution=100 + task,
                  epoch=1, status="ok"),
              rec(9, "driver", 30, "delivered", service=S, task=task, execution=100 + task,
                  status="ok", output=out)]
    j.append(rec(10, "driver", 30, "driver_closed"))
    return j


def nem(t, ev, **kw):
    """A record of the nemesis's (pid: the process a fault acts on)."""
    r = {"t": t, "who": "nemesis", "ev": ev}
    r.update(kw)
    return r


def pair_clean():
    """A resilient pair: A (pid 10) serves epoch 1 and runs the clean tasks;
    paused past PairTimeout, B (pid 11) takes over with epoch 2 and A
    demotes when it resumes; later both pair links are cut and nothing
    moves."""
    j = [nem(0, "campaign", topology="pair",
             pair_stores=["sqlite:/a.db", "sqlite:/b.db"])]
    for r in clean():
        if r["ev"] == "serving":
            r["output"] = "sqlite:/a.db"
        j.append(r)
    j += [nem(20, "fault", kind="pause_active", target="broker-A", pid=10,
              duration=4.0),
          rec(21, "broker", 11, "serving", epoch=2, output="sqlite:/b.db", text="B"),
          nem(4020, "fault_end", kind="pause_active", target="broker-A"),
          rec(4030, "broker", 10, "passive", epoch=1, output="sqlite:/a.db", text="A"),
          nem(4100, "pair_check", after="pause_active", target="broker-A",
              ok=True),
          nem(10000, "fault", kind="pair_link_cut", target="pair-links",
              links="all", duration=2.0),
          nem(12000, "fault_end", kind="pair_link_cut", target="pair-links"),
          nem(20000, "stopping")]
    return j


def run(journal):
    d = tempfile.mkdtemp(prefix="keel-check-test-")
    with open(os.path.join(d, "all.jsonl"), "w") as f:
        for r in journal:
            f.write(json.dumps(r) + "\n")
    p = subprocess.run([sys.executable, os.path.join(HERE, "check.py"), d, "--json"],
                       capture_output=True, text=True)
    for name in os.listdir(d):
        os.unlink(os.path.join(d, name))
    os.rmdir(d)
    return p.returncode, json.loads(p.stdout)


def expect(name, journal, field, code=1):
    rc, report = run(journal)
    ok = rc == code and (field is None or report[field] >= 1)
    print("%s %s: exit %d, %s=%s" % ("ok  " if ok else "FAIL", name, rc, field,
                                     report.get(field) if field else "-"))
    return ok


def main():
    results = []
    results.append(expect("a clean journal passes", clean(), None, code=0))

    j = [r for r in clean() if not (r["ev"] == "delivered" and r["task"] == 1)]
    results.append(expect("a task never delivered is lost", j, "lost"))

    j = clean() + [rec(11, "driver", 30, "delivered", service=S, task=0, execution=100,
                       status="ok", output="6")]
    results.append(expect("a task delivered twice is a duplicate", j, "duplicate"))

    j = clean()
    for r in j:
        if r["ev"] == "delivered" and r["task"] == 1:
            r["output"] = "11"
    results.append(expect("a wrong output is caught", j, "wrong"))

    j = clean()
    for r in j:
        if r["ev"] == "delivered" and r["task"] == 0:
            r["status"], r["text"] = "failed", "boom"
            del r["output"]
    results.append(expect("a failed task is caught", j, "wrong"))

    j = clean() + [rec(11, "driver", 30, "delivered", service=S, task=7, execution=9,
                       status="ok", output="0")]
    results.append(expect("a delivery never submitted is a phantom", j, "phantom"))

    # A second broker process took the store over with epoch 2 at t=5;
    # the first one (epoch 1) still stored a result at t=8: stale.
    j = clean() + [rec(5, "broker", 11, "serving", epoch=2, output="sqlite:/s.db", text="A")]
    results.append(expect("a write under a superseded epoch is stale", j, "stale"))

    # A driver killed (no driver_closed) owes nothing: not lost.
    j = [r for r in clean() if r["ev"] not in ("driver_closed",)
         and not (r["ev"] == "delivered" and r["task"] == 1)]
    results.append(expect("a killed driver's undelivered task is not lost", j, None, code=0))

    # The pid of a killed driver is reused by a later one that ends
    # normally: the killed one's tasks are still not owed.
    S2 = "99999999-2222-3333-4444-555555555555"
    j = [dict(r, run="30.1") for r in clean() if r["ev"] != "driver_closed"
         and not (r["ev"] == "delivered" and r["task"] == 1)]
    j += [rec(20, "driver", 30, "service_opened", service=S2, task=0, text="double", run="30.2"),
          rec(21, "driver", 30, "driver_closed", run="30.2")]
    results.append(expect("a reused pid does not make a killed driver's task lost", j, None,
                          code=0))

    # The resilient pair (topology pair).
    results.append(expect("a pair that takes over and demotes cleanly passes", pair_clean(), None,
                          code=0))

    j = pair_clean() + [rec(5, "broker", 11, "serving", epoch=1, output="sqlite:/b.db",
                            text="B")]
    results.append(expect("two brokers serving one epoch at once is split brain", j,
                          "split_brain"))

    # B took over (epoch 2) at t=5 while A was not paused; A still stored a
    # result under epoch 1 at t=8: its store is not B's, but they are a pair.
    j = pair_clean() + [rec(5, "broker", 11, "serving", epoch=2, output="sqlite:/b.db",
                            text="B")]
    results.append(expect("a write under an epoch the pair's peer superseded is stale", j,
                          "stale"))

    j = pair_clean() + [rec(11000, "broker", 10, "serving", epoch=3, output="sqlite:/a.db",
                            text="A")]
    results.append(expect("a takeover while only the pair links are cut is unwanted", j,
                          "unwanted_takeover"))

    # A takeover 1 s after a pair link cut, caused by a pause of the active
    # that started after the cut ended, is wanted.
    j = pair_clean() + [nem(12500, "fault", kind="pause_active", target="broker-A", pid=10,
                            duration=4.0),
                        rec(13000, "broker", 11, "serving", epoch=3, output="sqlite:/b.db",
                            text="B"),
                        nem(16500, "fault_end", kind="pause_active", target="broker-A")]
    j = [r for r in j if not (r["ev"] == "passive" and r["t"] == 4030)] + [
        rec(16510, "broker", 10, "passive", epoch=1, output="sqlite:/a.db", text="A")]
    j = [r for r in j if not (r["ev"] == "serving" and r.get("epoch") == 2)]
    results.append(expect("a takeover after a quiet fault, by the next fault, is wanted", j, None,
                          code=0))

    j = [r for r in pair_clean() if r["ev"] != "passive"]
    results.append(expect("a resumed active that never demotes is caught", j, "no_demotion"))
    j = [dict(r, t=4020 + 6000) if r["ev"] == "passive" else r for r in pair_clean()]
    results.append(expect("a resumed active that demotes too late is caught", j, "no_demotion"))

    j = pair_clean() + [nem(13000, "pair_check", after="kill_active",
                            target="broker-A", ok=False, want={"broker-A": "passive"},
                            got={"broker-A": "active"})]
    results.append(expect("a pair that does not settle as it must is caught", j, "pair_check"))

    failed = results.count(False)
    print("%d passed, %d failed" % (len(results) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
