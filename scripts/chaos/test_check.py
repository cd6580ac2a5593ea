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

    failed = results.count(False)
    print("%d passed, %d failed" % (len(results) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
