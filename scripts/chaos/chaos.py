#!/usr/bin/env python3
"""chaos.py - a seeded fault campaign against a real Keel grid on 127.0.0.1.

Starts brokers, engines and drivers (the real programs), a TCP proxy in
front of each broker endpoint, and a nemesis that injects faults at times
drawn from the seed: kill -9 and restart of a broker, an engine or a
driver; SIGSTOP/SIGCONT of any of them (pauses longer than every timeout
included); a link paused, cut or reset at a proxy; a full disk under a
broker's store (a small tmpfs, when this process may mount one). In the
pair topology (a resilient pair, its pair links behind proxies too) the
faults on the brokers are the pair's own: the active or the passive
killed or paused, a planned handover (keel-admin takeover), pair links cut
or paused; one at a time, each followed by a check that the pair settled
as it must (inject_pair). Every
program writes a journal (KEEL_JOURNAL, common/journal.h); the nemesis
writes its own. When the campaign ends the faults stop, everything is
healed, the drivers finish their last batch, and check.py reads the
journals and decides. See docs/reliability.md.

The schedule of faults (kind, target, time, duration) and the drivers'
workloads are drawn from the seed; the interleaving of real processes is
not, so a seed replays the same faults, not the same run.

Stdlib only. Every loop is bounded in count and time; only processes this
script started are signalled, by PID; all traffic stays on 127.0.0.1.
"""
import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HOST = "127.0.0.1"

# One workload a driver runs: service, keel-driver input arguments.
JOBS = [
    ("double", ["--range", "0:300"]),               # tiny tasks
    ("sleep", ["--input", "50", "--count", "40"]),  # 50 ms tasks
    ("sleep", ["--input", "1500", "--count", "6"]),  # multi-second-ish tasks
    ("count", ["--input", "8 250", "--count", "4"]),  # 2 s, checkpointed each step
]

FAULT_KINDS = ["kill_broker", "kill_engine", "kill_driver", "pause", "link_pause", "link_cut",
               "link_reset", "disk_full", "clock_jump"]


def now_ms():
    return int(time.time() * 1000)


_USED_PORTS = set()


def free_port():
    """A loopback port nobody listens on, below the kernel's ephemeral range
    (32768 and up on Linux): a port taken from bind(0) is an ephemeral one
    that an outgoing connection, or another bind(0) in this very process
    (a proxy), may take before the broker binds it."""
    pick = random.SystemRandom()
    for _ in range(1000):
        port = pick.randrange(20000, 32000)
        if port in _USED_PORTS:
            continue
        with socket.socket() as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
        _USED_PORTS.add(port)
        return port
    raise RuntimeError("no free loopback port in 20000-31999")


# ---------------------------------------------------------------- proxy

class Proxy:
    """A loopback TCP proxy in front of one broker endpoint.

    normal: bytes flow both ways. paused: nothing is read or written (the
    connections stay open, bytes wait in the kernel). cut: every connection
    is reset and new ones are reset at once, until healed. reset: every
    current connection is reset once; new ones are served.
    """

    def __init__(self, target_port):
        self.target_port = target_port
        self.port = None
        self.server = None
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.cut = False
        self.conns = set()

    async def start(self):
        for _ in range(100):
            self.port = free_port()
            try:
                self.server = await asyncio.start_server(self._accept, HOST, self.port)
                return
            except OSError:
                continue
        raise RuntimeError("the proxy found no port")

    @staticmethod
    def _rst(writer):
        sock = writer.get_extra_info("socket")
        try:
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        writer.close()

    async def _pipe(self, reader, writer):
        try:
            for _ in range(10 ** 9):
                await self.flowing.wait()
                data = await reader.read(65536)
                if not data:
                    break
                await self.flowing.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            self._rst(writer)

    async def _accept(self, reader, writer):
        if self.cut:
            self._rst(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            self._rst(writer)
            return
        pair = (writer, up_writer)
        self.conns.add(pair)
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self.conns.discard(pair)

    def reset_all(self):
        for a, b in list(self.conns):
            self._rst(a)
            self._rst(b)

    def pause(self):
        self.flowing.clear()

    def set_cut(self, cut):
        self.cut = cut
        if cut:
            self.reset_all()

    def heal(self):
        self.cut = False
        self.flowing.set()

    def close(self):
        self.heal()
        self.reset_all()
        if self.server:
            self.server.close()


# ---------------------------------------------------------------- processes

class Child:
    """A process of the campaign's, signalled by PID only while it lives."""

    proc = None

    def alive(self):
        return self.proc is not None and self.proc.returncode is None

    def signal(self, sig):
        if self.alive():
            os.kill(self.proc.pid, sig)


class Proc(Child):
    """One daemon the campaign runs (and may kill and restart)."""

    def __init__(self, grid, name, argv, kind):
        self.grid = grid
        self.clock = None           # its libfaketime timestamp file, when clocks can jump
        self.name = name
        self.argv = argv
        self.kind = kind            # broker | engine
        self.proc = None
        self.stopped = False        # SIGSTOPped by the nemesis
        self.starts = 0

    async def start(self):
        self.starts += 1
        self.ending = False         # True once the campaign itself ends this process
        self.proc = await self.grid.spawn(self.name, self.argv, clock=self.clock)
        self.watch = asyncio.ensure_future(self._watch(self.proc))

    async def _watch(self, proc):
        """Journals an exit the campaign did not cause (a crash, a fatal
        store error, a signal from outside): the checker reports it."""
        code = await proc.wait()
        if not self.ending and proc is self.proc:
            self.grid.journal("process_exit", target=self.name, pid=proc.pid, code=code)

    async def kill9(self):
        if self.alive():
            self.ending = True
            os.kill(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()
        self.stopped = False

    async def stop(self, timeout=15):
        if not self.alive():
            return None
        self.ending = True
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except asyncio.TimeoutError:
            await self.kill9()
            return -9


class DriverLoop(Child):
    """A driver slot: runs keel-driver batches one after another; a batch
    killed by the nemesis is run again (a new service: keel-driver cannot
    attach to the old one yet)."""

    def __init__(self, grid, name, rng):
        self.grid = grid
        self.name = name
        self.rng = rng
        self.proc = None
        self.stopped = False
        self.batches = 0
        self.exits = []             # (job, exit code)
        self.finishing = False

    async def kill9(self):
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
        self.stopped = False

    async def run(self):
        job = None
        for _ in range(100000):
            if self.finishing and job is None:
                return
            if job is None:
                job = self.rng.choice(JOBS)
            service, args = job
            argv = self.grid.driver_args() + ["submit", "--service", service] + args
            self.batches += 1
            self.proc = await self.grid.spawn(self.name, argv, stdout=subprocess.DEVNULL)
            code = await self.proc.wait()
            self.exits.append((service, code))
            if code == -signal.SIGKILL and not self.finishing:
                continue        # killed by the nemesis: the same batch again
            if code == -signal.SIGKILL:
                job = None
                continue
            job = None


# ---------------------------------------------------------------- grid

class Grid:
    def __init__(self, args, out):
        self.args = args
        self.out = out
        self.bin = args.bin
        self.topology = args.topology
        self.brokers = []           # Proc
        self.proxies = []           # Proxy per broker, same order
        self.engines = []
        self.drivers = []
        self.stores = []            # directory per broker
        self.mounts = []
        self.can_fill = False
        self.locks = {}             # fault target -> asyncio.Lock
        self.pair_links = []        # pair topology: (proxy A->B, proxy B->A) per pair link
        self.pair_lock = None       # pair topology: one fault on the brokers at a time
        self.open = None            # pair topology: cleared during a fault that runs alone
        self.inflight = 0           # faults under way
        self.faketime = find_faketime(self.bin)
        os.makedirs(os.path.join(out, "journal"), exist_ok=True)
        os.makedirs(os.path.join(out, "logs"), exist_ok=True)
        self.nemesis_log = open(os.path.join(out, "journal", "nemesis.jsonl"), "a")

    def journal(self, ev, **fields):
        rec = {"t": now_ms(), "who": "nemesis", "ev": ev}
        rec.update(fields)
        self.nemesis_log.write(json.dumps(rec) + "\n")
        self.nemesis_log.flush()

    async def spawn(self, name, argv, stdout=None, clock=None):
        env = dict(os.environ)
        if clock:
            # Only the wall clock moves (NTP steps it; nothing steps the
            # monotonic clock, which every Keel timer uses).
            env.update({"LD_PRELOAD": self.faketime, "FAKETIME_TIMESTAMP_FILE": clock,
                        "FAKETIME_DONT_FAKE_MONOTONIC": "1", "FAKETIME_CACHE_DURATION": "1"})
        env["KEEL_JOURNAL"] = os.path.join(self.out, "journal", name + ".jsonl")
        err = open(os.path.join(self.out, "logs", name + ".err"), "ab")
        if stdout is None:
            stdout = open(os.path.join(self.out, "logs", name + ".out"), "ab")
        prog = os.path.join(self.bin, argv[0])
        try:
            return await asyncio.create_subprocess_exec(prog, *argv[1:], stdin=subprocess.DEVNULL,
                                                        stdout=stdout, stderr=err, env=env)
        finally:
            err.close()
            if hasattr(stdout, "close"):
                stdout.close()

    async def wait_listening(self, broker, timeout=15.0):
        """Waits until the broker accepts connections (it is serving); a
        broker that exits or does not listen in time ends the campaign."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not broker.alive():
                break
            try:
                socket.create_connection((HOST, broker.port), timeout=0.5).close()
                return
            except OSError:
                await asyncio.sleep(0.05)
        with open(os.path.join(self.out, "logs", broker.name + ".err"), errors="replace") as f:
            tail = f.read()[-2000:]
        raise RuntimeError("%s did not start:\n%s" % (broker.name, tail))

    def clock_file(self, name):
        """The file that sets a process's wall-clock offset, or None when
        clocks cannot jump in this run."""
        if not self.faketime:
            return None
        path = os.path.join(self.out, "clock-" + name)
        with open(path, "w") as f:
            f.write("+0\n")
        return path

    def _mount_store(self, path):
        """A 256 MiB tmpfs under the store, so the nemesis can fill it.
        Needs root (CAP_SYS_ADMIN); without it the store is a plain
        directory and disk_full is left out of the schedule."""
        os.makedirs(path, exist_ok=True)
        if os.geteuid() != 0:
            return False
        rc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m,mode=0755", "tmpfs", path],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if rc.returncode == 0:
            self.mounts.append(path)
            return True
        return False

    def driver_args(self):
        primary = "tcp://%s:%d" % (HOST, self.proxies[0].port)
        argv = ["keel-driver", "--broker", primary]
        for p in self.proxies[1:]:
            argv += ["--failover", "tcp://%s:%d" % (HOST, p.port)]
        timeout = "60s" if len(self.proxies) == 1 else "3s"
        argv += ["--set", "DSBrokerTimeout=" + timeout, "--set", "DSPrimaryRetryInterval=2s",
                 "--set", "DSHeartbeatInterval=250ms", "--set", "LogLevel=info"]
        return argv

    async def start(self, rng):
        if self.topology == "pair":
            await self._start_pair()
        else:
            await self._start_brokers()
        await self._start_clients(rng)

    async def _start_brokers(self):
        names = ["A"] if self.topology == "single" else ["A", "B"]
        fills = []
        for name in names:
            port, admin = free_port(), free_port()
            store_dir = os.path.join(self.out, "store-" + name)
            fills.append(self._mount_store(store_dir))
            self.stores.append(store_dir)
            argv = self._broker_argv(name, port, admin, store_dir)
            broker = Proc(self, "broker-" + name, argv, "broker")
            broker.clock = self.clock_file(broker.name)
            broker.port, broker.admin = port, admin
            await broker.start()
            await self.wait_listening(broker)
            self.brokers.append(broker)
            proxy = Proxy(port)
            await proxy.start()
            self.proxies.append(proxy)
        self.can_fill = all(fills)

    def _broker_argv(self, name, port, admin, store_dir):
        return ["keel-broker", "--set", "Name=" + name,
                "--set", "Endpoint=tcp://%s:%d" % (HOST, port),
                "--set", "AdminEndpoint=tcp://%s:%d" % (HOST, admin),
                "--set", "Store=sqlite:%s/broker.db" % store_dir,
                "--set", "HeartbeatInterval=250ms", "--set", "EngineTimeoutMinutes=2",
                "--set", "EngineLoginWindow=2s", "--set", "RetentionHours=0"]

    async def _start_pair(self):
        """A resilient pair: A primary, B backup, each on its own store
        (StoreSync default), two pair links (--pair-links). Every endpoint a peer or a
        client connects to is one of the campaign's proxies: the client
        endpoints (AdvertisedEndpoint names the proxy, so that the Passive
        and welcome messages send clients through it) and each direction of
        each pair link (PairName set: the peer is recognised by name, not
        by the endpoint it connects from)."""
        names = ["A", "B"]
        nlinks = self.args.pair_links
        ports = {n: (free_port(), free_port(), [free_port() for _ in range(nlinks)])
                 for n in names}
        for n in names:
            proxy = Proxy(ports[n][0])
            await proxy.start()
            self.proxies.append(proxy)
        for link in range(nlinks):
            ab, ba = Proxy(ports["B"][2][link]), Proxy(ports["A"][2][link])
            await ab.start()
            await ba.start()
            self.pair_links.append((ab, ba))
        fills = []
        for i, name in enumerate(names):
            port, admin, own = ports[name]
            store_dir = os.path.join(self.out, "store-" + name)
            fills.append(self._mount_store(store_dir))
            self.stores.append(store_dir)
            peer = [self.pair_links[k][0 if name == "A" else 1].port for k in range(nlinks)]
            argv = self._broker_argv(name, port, admin, store_dir) + [
                "--set", "PairRole=" + ("primary" if name == "A" else "backup"),
                "--set", "PairEndpoint=" + ",".join("tcp://%s:%d" % (HOST, p) for p in own),
                "--set", "PairPeer=" + ",".join("tcp://%s:%d" % (HOST, p) for p in peer),
                "--set", "PairName=chaos",
                "--set", "AdvertisedEndpoint=tcp://%s:%d" % (HOST, self.proxies[i].port)]
            broker = Proc(self, "broker-" + name, argv, "broker")
            broker.clock = self.clock_file(broker.name)
            broker.port, broker.admin = port, admin
            await broker.start()
            await self.wait_listening(broker)
            self.brokers.append(broker)
        self.can_fill = all(fills)
        self.pair_lock = asyncio.Lock()
        self.open = asyncio.Event()
        self.open.set()
        ok, roles, _ = await pair_settle(self, 30)
        if not ok or roles.get("broker-A", {}).get("role") != "active":
            raise RuntimeError("the pair did not start (A active, B passive in sync): %s" % roles)

    def store_uris(self):
        return ["sqlite:%s/broker.db" % d for d in self.stores]

    async def _start_clients(self, rng):
        endpoints = ",".join("tcp://%s:%d" % (HOST, p.port) for p in self.proxies)
        for i in range(self.args.engines):
            argv = ["keel-engine", "--set", "Brokers=" + endpoints, "--set", "Slots=2",
                    "--set", "StateDir=%s/engine-%d.state" % (self.out, i + 1),
                    "--set", "PrimaryRetryInterval=2s", "--set", "HeartbeatInterval=250ms"]
            engine = Proc(self, "engine-%d" % (i + 1), argv, "engine")
            engine.clock = self.clock_file(engine.name)
            await engine.start()
            self.engines.append(engine)
        for i in range(self.args.drivers):
            self.drivers.append(DriverLoop(self, "driver-%d" % (i + 1),
                                           random.Random(rng.random())))

    async def heal(self):
        """Everything back: links flowing, no process stopped, none dead,
        the disks empty."""
        for p in self.proxies + [p for link in self.pair_links for p in link]:
            p.heal()
        for d in self.drivers:
            d.signal(signal.SIGCONT)
            d.stopped = False
        for p in self.brokers + self.engines:
            if p.clock:
                with open(p.clock, "w") as f:
                    f.write("+0\n")
            p.signal(signal.SIGCONT)
            p.stopped = False
            if not p.alive():
                await p.start()
        for s in self.stores:
            try:
                os.unlink(os.path.join(s, "filler"))
            except FileNotFoundError:
                pass

    async def stop(self):
        # The end of every broker's serving, for the checker.
        self.journal("stopping", pids=[b.proc.pid for b in self.brokers if b.alive()])
        for d in self.drivers:
            await d.kill9()
        for p in self.engines + self.brokers:
            await p.stop()
        for p in self.proxies + [p for link in self.pair_links for p in link]:
            p.close()
        self.nemesis_log.close()
        for m in self.mounts:
            subprocess.run(["umount", "-l", m], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# ---------------------------------------------------------------- nemesis

def find_faketime(bin_dir):
    """libfaketime's path, when clock jumps can be injected: the library is
    installed (Debian's faketime) and the programs are not built with
    AddressSanitizer (which must come first among the loaded libraries, so
    it refuses an LD_PRELOAD)."""
    import glob
    libs = glob.glob("/usr/lib/*/faketime/libfaketime.so.1")
    if not libs:
        return None
    try:
        ldd = subprocess.run(["ldd", os.path.join(bin_dir, "keel-broker")], capture_output=True,
                             text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return None if "libasan" in ldd else libs[0]


def fill_disk(path):
    """Fills the file system under path to the last byte."""
    filler = os.path.join(path, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        chunk = b"\0" * (1 << 20)
        for _ in range(4096):               # 4 GiB bound; the tmpfs is 256 MiB
            try:
                os.write(fd, chunk)
            except OSError:
                break
        for _ in range(1 << 20):            # then byte by byte-ish to the end
            try:
                if os.write(fd, chunk[:4096]) < 4096:
                    break
            except OSError:
                break
    finally:
        os.close(fd)


def schedule(rng, seconds, can_fill, can_jump):
    """The faults of a campaign: (start offset s, kind, target index, duration s)."""
    kinds = [k for k in FAULT_KINDS if (can_fill or k != "disk_full")
             and (can_jump or k != "clock_jump")]
    weights = {"kill_broker": 3, "kill_engine": 3, "kill_driver": 2, "pause": 4,
               "link_pause": 2, "link_cut": 2, "link_reset": 2, "disk_full": 2, "clock_jump": 2}
    faults = []
    t = rng.uniform(1.0, 2.0)
    for _ in range(10000):
        if t >= seconds:
            break
        kind = rng.choices(kinds, [weights[k] for k in kinds])[0]
        if kind == "pause":
            # Pauses longer than every timeout (heartbeat 250 ms -> lost
            # after 0.75 s) are included on purpose.
            duration = rng.choice([rng.uniform(0.2, 0.7), rng.uniform(1.0, 6.0)])
        elif kind in ("kill_broker", "kill_engine"):
            duration = rng.uniform(0.2, 3.0)    # down time before the restart
        elif kind == "kill_driver":
            duration = 0.0
        else:
            duration = rng.uniform(0.5, 4.0)
        faults.append((t, kind, rng.randrange(1 << 30), duration))
        # Faults overlap (on different targets): a new one every 0.5-2.5 s
        # whatever the last one's length, so a minute holds at least 20.
        t += rng.uniform(0.5, 2.5)
    return faults


def target_of(grid, kind, pick):
    """The thing a fault acts on: (lock key, object)."""
    if kind == "kill_broker":
        t = grid.brokers[pick % len(grid.brokers)]
    elif kind == "kill_engine":
        t = grid.engines[pick % len(grid.engines)]
    elif kind == "kill_driver":
        t = grid.drivers[pick % len(grid.drivers)]
    elif kind == "pause":
        targets = grid.brokers + grid.engines + grid.drivers
        if grid.topology == "pair":     # the brokers' pauses are pause_active/_passive
            targets = grid.engines + grid.drivers
        t = targets[pick % len(targets)]
    elif kind == "clock_jump":
        targets = grid.brokers + grid.engines
        t = targets[pick % len(targets)]
    elif kind.startswith("link_"):
        i = pick % len(grid.proxies)
        return "link-" + grid.brokers[i].name, (grid.proxies[i], grid.brokers[i].name)
    else:       # disk_full
        i = pick % len(grid.stores)
        return "disk-" + grid.brokers[i].name, (grid.stores[i], grid.brokers[i].name)
    return t.name, t


async def inject(grid, kind, pick, duration):
    """One fault, from its start to its end (the restart, the SIGCONT...).
    Faults overlap, but never two on the same target: a fault waits for
    the one before it on its target to end (a broker is not restarted
    twice, a paused process is not killed mid-pause by another fault)."""
    key, t = target_of(grid, kind, pick)
    lock = grid.locks.setdefault(key, asyncio.Lock())
    async with lock:
        fields = {"kind": kind, "target": key, "duration": duration}
        if kind in ("kill_broker", "kill_engine"):
            if t.alive():
                fields["pid"] = t.proc.pid      # the checker ends a broker's serving here
            grid.journal("fault", **fields)
            await t.kill9()
            await asyncio.sleep(duration)       # down this long
            await t.start()
        elif kind == "kill_driver":
            grid.journal("fault", **dict(fields, duration=0))
            await t.kill9()                     # its loop runs the batch again
        elif kind == "pause":
            grid.journal("fault", **fields)
            t.signal(signal.SIGSTOP)
            t.stopped = True
            await asyncio.sleep(duration)
            t.signal(signal.SIGCONT)
            t.stopped = False
        elif kind == "clock_jump":
            jump = ["+2h", "-2h", "+1d", "-10m", "+90s"][(pick >> 8) % 5]
            grid.journal("fault", jump=jump, **fields)
            with open(t.clock, "w") as f:
                f.write(jump + "\n")
            await asyncio.sleep(duration)
            with open(t.clock, "w") as f:
                f.write("+0\n")
        elif kind.startswith("link_"):
            proxy = t[0]
            grid.journal("fault", **fields)
            if kind == "link_pause":
                proxy.pause()
                await asyncio.sleep(duration)
                proxy.heal()
            elif kind == "link_cut":
                proxy.set_cut(True)
                await asyncio.sleep(duration)
                proxy.heal()
            else:
                proxy.reset_all()
        elif kind == "disk_full":
            grid.journal("fault", **fields)
            await asyncio.get_running_loop().run_in_executor(None, fill_disk, t[0])
            await asyncio.sleep(duration)
            os.unlink(os.path.join(t[0], "filler"))
        grid.journal("fault_end", kind=kind, target=key)
        return True


# ---------------------------------------------------------------- the pair's nemesis

# Faults of the pair topology and their weights. Those on the brokers and
# their links (PAIR_KINDS, and the client link faults) run one at a time
# (Grid.pair_lock; one that finds another under way is skipped), each
# followed by a wait until the pair has settled again: Binary Star survives
# one fault at a time, not a partition that lets clients vote on both
# sides. Engine and driver faults run beside them as in the other
# topologies.
PAIR_KINDS = ["kill_active", "kill_passive", "pause_active", "pause_passive", "takeover",
              "pair_link_cut", "pair_link_pause"]
PAIR_WEIGHTS = {"kill_active": 2, "kill_passive": 1, "pause_active": 2, "pause_passive": 1,
                "takeover": 2, "pair_link_cut": 2, "pair_link_pause": 1,
                "link_pause": 1, "link_cut": 1, "link_reset": 1, "disk_full": 1,
                "kill_engine": 3, "kill_driver": 2, "pause": 3, "clock_jump": 1}
SETTLE_S = 30           # a pair settles (resync included) this fast after a fault, or fails
DEMOTE_S = 5            # a resumed active demotes this fast once its peer took over


def schedule_pair(rng, seconds, can_fill, can_jump):
    """The faults of a pair campaign: (start offset s, kind, pick, duration s)."""
    kinds = [k for k in PAIR_WEIGHTS if (can_fill or k != "disk_full")
             and (can_jump or k != "clock_jump")]
    faults = []
    t = rng.uniform(3.0, 4.0)
    for _ in range(10000):
        if t >= seconds:
            break
        kind = rng.choices(kinds, [PAIR_WEIGHTS[k] for k in kinds])[0]
        if kind == "pause_active":
            # Mostly past PairTimeout (750 ms): the clients move and the
            # peer takes over; sometimes below it: nothing may move.
            duration = rng.choice([rng.uniform(1.5, 6.0), rng.uniform(1.5, 6.0),
                                   rng.uniform(0.2, 0.5)])
        elif kind in ("pause", "pause_passive"):
            duration = rng.choice([rng.uniform(0.2, 0.7), rng.uniform(1.0, 6.0)])
        elif kind in ("kill_active", "kill_passive", "kill_engine"):
            duration = rng.uniform(0.2, 3.0)
        elif kind in ("kill_driver", "takeover"):
            duration = 0.0
        else:
            duration = rng.uniform(0.5, 4.0)
        faults.append((t, kind, rng.randrange(1 << 30), duration))
        t += rng.uniform(0.5, 2.5)
    return faults


async def admin(grid, broker, *command, timeout=5.0):
    """keel-admin --json COMMAND on broker: (exit code, parsed JSON or None);
    (None, None) when it did not answer in time (then killed, by PID)."""
    env = {k: v for k, v in os.environ.items() if k != "KEEL_JOURNAL"}
    proc = await asyncio.create_subprocess_exec(
        os.path.join(grid.bin, "keel-admin"), "-e", "tcp://%s:%d" % (HOST, broker.admin),
        "--json", *command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=env)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        if proc.returncode is None:
            os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
        return None, None
    try:
        return proc.returncode, json.loads(out.decode("utf-8", "replace") or "null")
    except ValueError:
        return proc.returncode, {"error": (out + err).decode("utf-8", "replace")[-300:]}


async def pair_roles(grid):
    """{broker name: {role, epoch, synced, peer_state, links_up}} of the
    brokers that answer (a stopped or dead one does not)."""
    roles = {}
    for b in grid.brokers:
        if not b.alive() or b.stopped:
            continue
        code, st = await admin(grid, b, "status", timeout=2.0)
        if code == 0 and isinstance(st, dict):
            pair = st.get("pair") or {}
            roles[b.name] = {"role": st.get("role"), "epoch": st.get("epoch"),
                             "synced": pair.get("synced"), "peer_state": pair.get("peer_state"),
                             "links_up": pair.get("links_up")}
    return roles


def active_of(roles):
    names = [n for n, r in roles.items() if r.get("role") == "active"]
    return names[0] if len(names) == 1 else None


def settled(roles):
    """One active and one passive, each saying the mirror is in sync."""
    if len(roles) != 2:
        return False
    states = sorted(r.get("role") for r in roles.values())
    return states == ["active", "passive"] and all(r.get("synced") for r in roles.values())


async def pair_settle(grid, timeout):
    """Waits (bounded) until the pair is settled: (ok, roles, waited s)."""
    start = time.monotonic()
    roles = {}
    for _ in range(int(timeout / 0.2) + 1):
        roles = await pair_roles(grid)
        if settled(roles):
            return True, roles, time.monotonic() - start
        if time.monotonic() - start >= timeout:
            break
        await asyncio.sleep(0.2)
    return False, roles, time.monotonic() - start


async def wait_role(grid, broker, role, timeout):
    """Waits (bounded) until broker says role: its status, or None."""
    start = time.monotonic()
    st = None
    for _ in range(int(timeout / 0.1) + 1):
        st = (await pair_roles(grid)).get(broker.name)
        if st and st.get("role") == role:
            return st
        if time.monotonic() - start >= timeout:
            break
        await asyncio.sleep(0.1)
    return st


async def run_alone(grid):
    """Closes the gate to new faults and waits (bounded) until this one is
    the only fault under way; False (gate open again) if it is not."""
    grid.open.clear()
    for _ in range(600):
        if grid.inflight <= 1:
            return True
        await asyncio.sleep(0.05)
    grid.open.set()
    return False


async def inject_pair(grid, kind, pick, duration):
    """One fault of the pair topology. Engine and driver faults are those
    of inject(); the rest act on the brokers, one at a time, and end with a
    check that the pair settled as it must (journaled as "pair_check")."""
    if kind in ("kill_engine", "kill_driver", "pause", "clock_jump"):
        return await inject(grid, kind, pick, duration)
    if grid.pair_lock.locked():
        grid.journal("fault_skipped", kind=kind, why="another fault on the pair is under way")
        return False
    async with grid.pair_lock:
        before = await pair_roles(grid)
        act = active_of(before)
        if not settled(before) or act is None:
            ok, before, _ = await pair_settle(grid, SETTLE_S)
            act = active_of(before)
            if not ok or act is None:
                grid.journal("pair_check", after="(before %s)" % kind, ok=False,
                             want="one active, one passive in sync", got=before)
                return False
        a = next(b for b in grid.brokers if b.name == act)
        p = next(b for b in grid.brokers if b.name != act)
        want = {}           # broker name -> role it must have once settled
        keep_epoch = None   # the active's epoch must not change
        if kind in ("link_pause", "link_cut", "link_reset", "disk_full"):
            await inject(grid, kind, pick, duration)
        elif kind in ("kill_active", "kill_passive"):
            t = a if kind == "kill_active" else p
            grid.journal("fault", kind=kind, target=t.name, duration=duration, pid=t.proc.pid,
                         epoch=before[act]["epoch"])
            await t.kill9()
            await asyncio.sleep(duration)
            other = p if t is a else a
            st = (await pair_roles(grid)).get(other.name) or {}
            await t.start()
            await grid.wait_listening(t)
            grid.journal("fault_end", kind=kind, target=t.name, peer_role=st.get("role"))
            if st.get("role") == "active":
                # The peer serves: the restarted broker must come back
                # passive and resync.
                want = {t.name: "passive", other.name: "active"}
                keep_epoch = st.get("epoch")
        elif kind in ("pause_active", "pause_passive"):
            t = a if kind == "pause_active" else p
            grid.journal("fault", kind=kind, target=t.name, duration=duration, pid=t.proc.pid,
                         epoch=before[act]["epoch"])
            t.signal(signal.SIGSTOP)
            t.stopped = True
            await asyncio.sleep(duration)
            t.signal(signal.SIGCONT)
            t.stopped = False
            grid.journal("fault_end", kind=kind, target=t.name)
            # Asked after the SIGCONT (a question asked before it would
            # lengthen the pause): a peer active now took over.
            other = p if t is a else a
            st = (await pair_roles(grid)).get(other.name) or {}
            if kind == "pause_passive":
                want, keep_epoch = {a.name: "active", p.name: "passive"}, before[act]["epoch"]
            elif st.get("role") == "active" or (st.get("epoch") or 0) > before[act]["epoch"]:
                # The peer took over (it may have been made to yield again
                # by now: the journals tell): the resumed broker must demote.
                got = await wait_role(grid, t, "passive", DEMOTE_S)
                if not got or got.get("role") != "passive":
                    grid.journal("pair_check", after=kind, target=t.name, ok=False,
                                 want={t.name: "passive within %ds of SIGCONT" % DEMOTE_S},
                                 got={t.name: got})
                want, keep_epoch = {t.name: "passive", other.name: "active"}, st.get("epoch")
        elif kind == "takeover":
            grid.journal("fault", kind=kind, target=p.name, duration=0,
                         epoch=before[act]["epoch"])
            code, answer = await admin(grid, p, "takeover", timeout=10.0)
            grid.journal("fault_end", kind=kind, target=p.name, code=code,
                         answer=answer if code else None)
            if code == 0:
                want = {p.name: "active", a.name: "passive"}
                got = await wait_role(grid, p, "active", 15)
                if not got or got.get("role") != "active":
                    grid.journal("pair_check", after=kind, target=p.name, ok=False,
                                 want={p.name: "active within 15 s of keel-admin takeover"},
                                 got={p.name: got})
        elif kind in ("pair_link_cut", "pair_link_pause"):
            # Every link only while the primary (A) is active: clients
            # (re)start at A, so a restarted engine or driver that found A
            # passive would vote for it while it cannot hear B, and Binary
            # Star then rightly serves on both sides. Every link cut runs
            # alone, so that no client is paused or cut from the active.
            nlinks = len(grid.pair_links)
            every = nlinks == 1 or (pick >> 4) % 2 == 0
            if every and act != "broker-A":
                if nlinks == 1:
                    grid.journal("fault_skipped", kind=kind,
                                 why="the only pair link is cut only while A is active")
                    return False
                every = False
            links = list(range(nlinks)) if every else [pick % nlinks]
            if every and not await run_alone(grid):
                if nlinks == 1:
                    grid.journal("fault_skipped", kind=kind, why="other faults under way")
                    return False
                every, links = False, links[:1]
            try:
                grid.journal("fault", kind=kind, target="pair-links",
                             links="all" if every else str(links[0]), duration=duration,
                             epoch=before[act]["epoch"])
                for i in links:
                    for proxy in grid.pair_links[i]:
                        if kind == "pair_link_cut":
                            proxy.set_cut(True)
                        else:
                            proxy.pause()
                await asyncio.sleep(duration)
                for i in links:
                    for proxy in grid.pair_links[i]:
                        proxy.heal()
                grid.journal("fault_end", kind=kind, target="pair-links")
            finally:
                grid.open.set()
            want, keep_epoch = {a.name: "active", p.name: "passive"}, before[act]["epoch"]
        ok, after, waited = await pair_settle(grid, SETTLE_S)
        wrong = {n: (after.get(n) or {}).get("role") for n, role in want.items()
                 if (after.get(n) or {}).get("role") != role}
        if keep_epoch is not None and ok:
            now_act = active_of(after)
            if now_act and after[now_act].get("epoch") != keep_epoch:
                wrong["epoch"] = after[now_act].get("epoch")
        grid.journal("pair_check", after=kind, ok=ok and not wrong, settled_s=round(waited, 2),
                     want=dict(want, epoch=keep_epoch) if keep_epoch is not None else want,
                     got=after)
        return True


async def run_fault(grid, kind, pick, duration):
    """A fault of the campaign, counted while under way; in the pair
    topology it waits while a fault that must run alone runs."""
    if grid.open is not None:
        await grid.open.wait()
    grid.inflight += 1
    try:
        if grid.topology == "pair":
            return await inject_pair(grid, kind, pick, duration)
        return await inject(grid, kind, pick, duration)
    finally:
        grid.inflight -= 1


async def campaign(args, out):
    rng = random.Random(args.seed)
    grid = Grid(args, out)
    counts = {}
    try:
        await grid.start(rng)
        plan = schedule_pair if args.topology == "pair" else schedule
        faults = plan(random.Random(rng.random()), args.minutes * 60, grid.can_fill,
                      grid.faketime is not None)
        extra = {"pair_stores": grid.store_uris()} if args.topology == "pair" else {}
        grid.journal("campaign", seed=args.seed, topology=args.topology, minutes=args.minutes,
                     planned=len(faults), disk_full=grid.can_fill,
                     clock_jump=grid.faketime is not None, **extra)
        loops = [asyncio.ensure_future(d.run()) for d in grid.drivers]
        start = time.monotonic()
        running = []
        for offset, kind, pick, duration in faults:
            delay = start + offset - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            running.append((kind, asyncio.ensure_future(run_fault(grid, kind, pick, duration))))
            for loop in loops:
                if loop.done() and loop.exception():
                    raise loop.exception()
        for kind, task in running:
            if await task:
                counts[kind] = counts.get(kind, 0) + 1
        # The end: no more faults; heal; let each driver finish its batch.
        await grid.heal()
        grid.journal("healed")
        for d in grid.drivers:
            d.finishing = True
        done, pending = await asyncio.wait(loops, timeout=args.drain)
        for task in pending:
            task.cancel()
        stragglers = [d.name for d, t in zip(grid.drivers, loops) if t in pending]
        grid.journal("drained", stragglers=stragglers)
    finally:
        await grid.stop()
    exits = {d.name: d.exits for d in grid.drivers}
    return counts, stragglers, exits


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap = argparse.ArgumentParser(description="A seeded fault campaign against a Keel grid "
                                             "on 127.0.0.1, checked by check.py.")
    ap.add_argument("--seed", type=int, required=True, help="seed of the fault schedule")
    ap.add_argument("--minutes", type=float, default=1.0, help="length of the fault phase")
    ap.add_argument("--topology", choices=["single", "failover", "pair"], default="single",
                    help="single: one broker; failover: a primary and a failover broker; "
                         "pair: a resilient pair (cluster: not built yet)")
    ap.add_argument("--bin", default=os.path.join(root, "build", "bin"),
                    help="directory of keel-broker, keel-engine, keel-driver")
    ap.add_argument("--out", help="directory for journals and logs (default: a new one "
                                  "under $TMPDIR; removed when the run passes)")
    ap.add_argument("--pair-links", type=int, default=2, choices=[1, 2, 3, 4],
                    help="pair topology: pair links between the brokers")
    ap.add_argument("--engines", type=int, default=3)
    ap.add_argument("--drivers", type=int, default=2)
    ap.add_argument("--drain", type=float, default=180, help="seconds the drivers get to "
                                                             "finish after the faults")
    ap.add_argument("--keep", action="store_true", help="keep the directory when the run passes")
    args = ap.parse_args()
    for prog in ("keel-broker", "keel-engine", "keel-driver"):
        if not os.access(os.path.join(args.bin, prog), os.X_OK):
            sys.exit("chaos: %s/%s not found (build first, or --bin DIR)" % (args.bin, prog))
    args.bin = os.path.abspath(args.bin)
    out = args.out or tempfile.mkdtemp(prefix="keel-chaos-%d-" % args.seed)
    os.makedirs(out, exist_ok=True)
    replay = "scripts/chaos/run.sh --seed %d --minutes %g --topology %s" % (
        args.seed, args.minutes, args.topology)
    print("chaos: seed=%d topology=%s minutes=%g dir=%s" % (args.seed, args.topology,
                                                             args.minutes, out), flush=True)
    counts, stragglers, exits = asyncio.run(campaign(args, out))
    total = sum(counts.values())
    print("chaos: %d faults: %s" % (total, ", ".join("%s=%d" % kv for kv in sorted(counts.items()))),
          flush=True)
    for name, runs in sorted(exits.items()):
        codes = {}
        for _, code in runs:
            codes[code] = codes.get(code, 0) + 1
        print("chaos: %s ran %d batches, exit codes %s" % (name, len(runs), codes), flush=True)
    checker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "check.py")
    rc = subprocess.run([sys.executable, checker, os.path.join(out, "journal")]).returncode
    if stragglers:
        print("chaos: FAIL: drivers still running %ds after the faults ended: %s"
              % (args.drain, ", ".join(stragglers)), flush=True)
        rc = rc or 1
    if total < 20 and args.minutes >= 1:
        print("chaos: FAIL: only %d faults injected (at least 20 expected)" % total, flush=True)
        rc = rc or 1
    if rc == 0:
        print("chaos: PASS", flush=True)
        if not args.keep and not args.out:
            shutil.rmtree(out, ignore_errors=True)
    else:
        print("chaos: FAIL: journals and logs kept in %s" % out, flush=True)
        print("chaos: replay with: %s --keep" % replay, flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
