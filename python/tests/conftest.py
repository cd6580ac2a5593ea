"""A real grid on 127.0.0.1 for the tests: keel-broker and keel-engine from
the build tree ($KEEL_BIN_DIR, else <repo>/build/bin) on free ports, in a
temporary directory; every wait is bounded and every process is stopped by
its PID at teardown. The package is imported from the source tree."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "python"))
BIN = os.environ.get("KEEL_BIN_DIR", os.path.join(ROOT, "build", "bin"))
FAST = ["HeartbeatInterval=200ms"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, check, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("timed out after %g s waiting for %s" % (timeout, what))


class Grid:
    def __init__(self, tmp):
        self.tmp = tmp
        self.procs = []

    def spawn(self, name, program, sets):
        args = [os.path.join(BIN, program)]
        for s in sets:
            args += ["--set", s]
        log = open(os.path.join(self.tmp, name + ".log"), "wb")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs.append(proc)
        return proc

    def admin(self, broker, *args):
        return subprocess.run([os.path.join(BIN, "keel-admin"), "-e", broker["admin"],
                               "--timeout", "3s", "--json"] + list(args),
                              capture_output=True, timeout=10)

    def broker(self, name):
        b = {"endpoint": "tcp://127.0.0.1:%d" % free_port(),
             "admin": "tcp://127.0.0.1:%d" % free_port()}
        b["proc"] = self.spawn(name, "keel-broker", [
            "Endpoint=" + b["endpoint"], "AdminEndpoint=" + b["admin"], "Name=" + name,
            "Store=sqlite:%s/%s.db" % (self.tmp, name), "EngineTimeoutMinutes=0.25"] + FAST)
        wait_until(name + " to answer", lambda: self._answers(b), 15)
        return b

    def _answers(self, b):
        assert b["proc"].poll() is None, "broker exited %s" % b["proc"].returncode
        return self.admin(b, "status").returncode == 0

    def engine(self, name, brokers, slots=4):
        state = os.path.join(self.tmp, name + ".state")
        os.mkdir(state)
        return self.spawn(name, "keel-engine", [
            "Brokers=" + ",".join(b["endpoint"] for b in brokers), "Slots=%d" % slots,
            "StateDir=" + state] + FAST)

    def wait_engines(self, broker, n, timeout=15):
        def online():
            r = self.admin(broker, "status")
            return r.returncode == 0 and json.loads(r.stdout)["engines"]["online"] >= n
        wait_until("%d engines online" % n, online, timeout)

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture
def grid(tmp_path):
    g = Grid(str(tmp_path))
    yield g
    g.stop()


@pytest.fixture
def broker(grid):
    """One broker with one engine online; yields the broker's endpoint."""
    b = grid.broker("broker")
    grid.engine("engine", [b])
    grid.wait_engines(b, 1)
    return b["endpoint"]
