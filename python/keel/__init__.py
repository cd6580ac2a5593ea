"""keel — submit work to a Keel grid from Python, over libkeeldriver.

    import keel
    with keel.Session("tcp://127.0.0.1:7070") as session:
        service = session.open_service("double")
        for i in range(10):
            service.submit(str(i))
        service.close()
        for result in session.results():
            print(result.task_id, result.output)

    print(keel.map("double", ["1", "2", "3"], broker="tcp://127.0.0.1:7070"))

A thin ctypes layer: the C library does the work (connection, batching,
retries, failover to DSFailoverBrokers, exactly-once delivery), and this
module adds no timeouts of its own. Results arrive in completion order,
each exactly once. One Session is used from one thread (like
keel_driver_t). See docs/python.md.
"""

import ctypes
import logging

from . import _lib
from ._lib import TASK_OK, TASK_FAILED, TASK_CANCELLED

__all__ = ["KeelError", "Result", "Service", "Session", "map"]

_log = logging.getLogger("keel")
_STATUS_NAMES = {TASK_OK: "ok", TASK_FAILED: "failed", TASK_CANCELLED: "cancelled"}
_LEVELS = {0: logging.INFO, 1: logging.WARNING, 2: logging.ERROR}
_POLL_MS = 500  # a slice of waiting, so Ctrl-C is seen; not a deadline


class KeelError(Exception):
    """An error from libkeeldriver; str() is the library's message."""


def _check(rc, err):
    if rc != 0:
        raise KeelError(err.text.decode(errors="replace"))


def _text(value):
    return value.decode(errors="replace") if value else ""


def _bytes(data):
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError("a task input is bytes or str, not %s" % type(data).__name__)


class Result:
    """One task's result: status is "ok", "failed" or "cancelled"; output is
    bytes (b"" unless ok); error is the reason ("" when ok)."""

    __slots__ = ("service", "service_id", "task_id", "status", "output", "error",
                 "engine", "execution", "attempts", "queued_ms", "run_ms")

    def __init__(self, c, service):
        self.service = service
        self.service_id = _text(c.service_id)
        self.task_id = c.task_id
        self.status = _STATUS_NAMES.get(c.status, str(c.status))
        self.output = ctypes.string_at(c.output, c.output_size) if c.output_size else b""
        self.error = _text(c.error)
        self.engine = _text(c.engine_id)
        self.execution = c.execution_id
        self.attempts = c.attempts
        self.queued_ms = c.queued_ms
        self.run_ms = c.run_ms

    @property
    def ok(self):
        return self.status == "ok"

    def __repr__(self):
        what = self.output if self.ok else self.error
        return "<keel.Result task %d %s %r>" % (self.task_id, self.status, what)


class Service:
    """A service (a session of tasks of one type) opened by
    Session.open_service; valid while its Session is open."""

    def __init__(self, session, handle, type_):
        self._session = session
        self._handle = handle
        self.type = type_
        self.id = _text(session._lib.keel_service_id(handle))
        self.closed = False

    def submit(self, data):
        """Submits one task (bytes, or str sent as UTF-8); returns its id
        (0, 1, 2 ... in submit order). Never blocks."""
        data = _bytes(data)
        task_id, err = ctypes.c_uint64(), _lib.Error()
        _check(self._session._lib.keel_service_submit(
            self._session._live(self._handle), data, len(data), ctypes.byref(task_id),
            ctypes.byref(err)), err)
        return task_id.value

    @property
    def submitted(self):
        return self._session._lib.keel_service_submitted(self._session._live(self._handle))

    def close(self):
        """No more tasks; results of submitted tasks still arrive."""
        if not self.closed:
            err = _lib.Error()
            _check(self._session._lib.keel_service_close(self._session._live(self._handle),
                                                         ctypes.byref(err)), err)
            self.closed = True

    def cancel(self):
        """Drops the service's tasks: each one still waiting is delivered
        as "cancelled" (once)."""
        err = _lib.Error()
        _check(self._session._lib.keel_service_cancel(self._session._live(self._handle),
                                                      ctypes.byref(err)), err)
        self.closed = True


class Session:
    """A driver: one client of the grid. broker is DSPrimaryBroker, failover
    a list of failover brokers (DSFailoverBrokers); config a properties
    file; settings more driver keys (DSBrokerTimeout="30s", ...), passed as
    KEY=VALUE like keel_driver_new takes them. status, if given, is called
    with (kind, level, text, broker) for every status event (connected,
    lost, failover, notice, ...); they are logged to the "keel" logger
    either way."""

    def __init__(self, broker=None, failover=(), config=None, status=None, **settings):
        self._lib = _lib.load()
        if isinstance(failover, str):
            failover = [failover]
        pairs = []
        if broker is not None:
            pairs.append("DSPrimaryBroker=%s" % broker)
        if failover:
            pairs.append("DSFailoverBrokers=%s" % ",".join(failover))
        pairs += ["%s=%s" % kv for kv in settings.items()]
        argv = (ctypes.c_char_p * max(len(pairs), 1))(*[p.encode() for p in pairs])
        err = _lib.Error()
        handle = self._lib.keel_driver_new(config.encode() if config else None, argv,
                                           len(pairs), ctypes.byref(err))
        if not handle:
            raise KeelError(err.text.decode(errors="replace"))
        self._handle = ctypes.c_void_p(handle)
        self._services = {}
        self._status = status
        self._status_fn = _lib.STATUS_FN(self._on_status)  # kept: the C side holds it
        self._lib.keel_driver_set_status_handler(self._handle, self._status_fn, None)
        self.id = _text(self._lib.keel_driver_id(self._handle))

    def _live(self, handle):
        if not self._handle:
            raise KeelError("the session is closed")
        return handle

    def _on_status(self, status_p, _arg):
        s = status_p.contents
        kind = _text(self._lib.keel_status_kind_name(s.kind))
        text = _text(s.text)
        _log.log(_LEVELS.get(s.level, logging.INFO), "%s: %s", kind, text)
        if self._status:
            try:
                self._status(kind, s.level, text, _text(s.broker))
            except Exception:  # an exception cannot cross the C frames
                _log.exception("status callback failed")

    def open_service(self, type_, priority=0, max_attempts=0, reschedule_delay_ms=-1,
                     init_data=None, condition=None):
        """Opens a service of type type_ ("double", a command service ...);
        condition: its tasks run only on engines whose properties meet it
        (e.g. 'memory_mb >= 4096 && gpu == "a100"', docs/services.md);
        raises KeelError for invalid options (a bad type name, a malformed
        condition: "condition: column N: ...")."""
        options = _lib.ServiceOptions()
        self._lib.keel_service_options_init(ctypes.byref(options), None)
        # Assigned here, not passed to init: the struct keeps a reference to
        # the bytes (a temporary passed to init could be freed and its
        # memory reused before keel_driver_open_service reads it).
        options.type = type_.encode()
        options.priority = priority
        options.max_attempts = max_attempts
        options.reschedule_delay_ms = reschedule_delay_ms
        if condition:
            options.condition = condition.encode()
        init = _bytes(init_data) if init_data is not None else None
        if init:
            options.init_data = ctypes.cast(ctypes.c_char_p(init), ctypes.c_void_p)
            options.init_data_size = len(init)
        err = _lib.Error()
        handle = self._lib.keel_driver_open_service(self._live(self._handle),
                                                    ctypes.byref(options), ctypes.byref(err))
        if not handle:
            raise KeelError(err.text.decode(errors="replace"))
        service = Service(self, handle, type_)
        self._services[service.id] = service
        return service

    @property
    def outstanding(self):
        """Tasks submitted whose result has not been received yet."""
        return self._lib.keel_driver_outstanding(self._live(self._handle))

    def next_result(self, timeout=None):
        """The next result, or None when timeout seconds (None: forever)
        passed without one. Raises KeelError("no broker reachable ...") when
        no broker answered for a whole pass over the broker list; the
        library keeps trying, so calling again goes on waiting."""
        deadline_ms = None if timeout is None else int(timeout * 1000)
        while True:
            slice_ms = _POLL_MS if deadline_ms is None else max(0, min(_POLL_MS, deadline_ms))
            result = self._next(slice_ms)
            if result is not None or deadline_ms is not None and deadline_ms <= slice_ms:
                return result
            if deadline_ms is not None:
                deadline_ms -= slice_ms

    def _next(self, timeout_ms):
        p, err = ctypes.POINTER(_lib.Result)(), _lib.Error()
        rc = self._lib.keel_driver_next_result(self._live(self._handle), timeout_ms,
                                               ctypes.byref(p), ctypes.byref(err))
        _check(rc, err)
        if not p:
            return None
        try:
            c = p.contents
            return Result(c, self._services.get(_text(c.service_id)))
        finally:
            self._lib.keel_result_destroy(ctypes.byref(p))

    def results(self):
        """Yields every result of the tasks submitted so far (and of any
        submitted while iterating), each exactly once, as they arrive; ends
        when none is outstanding. Waits as long as the library keeps
        trying; raises KeelError when it reports no broker reachable."""
        while True:
            result = self._next(_POLL_MS if self.outstanding else 0)
            if result is not None:
                yield result
            elif not self.outstanding:
                return

    def close(self):
        """Closes every open service and stops the driver. Idempotent.
        Results not taken are dropped; wait for them (results()) first."""
        if not self._handle:
            return
        try:
            for service in self._services.values():
                if not service.closed:
                    service.close()
        finally:
            self._lib.keel_driver_destroy(ctypes.byref(self._handle))
            self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def map(service, inputs, broker=None, failover=(), **settings):
    """Runs one task per input (bytes or str) on service type `service` and
    returns their outputs (bytes) in input order. Raises KeelError naming
    the first task that did not succeed."""
    inputs = list(inputs)
    outputs = [None] * len(inputs)
    with Session(broker, failover, **settings) as session:
        svc = session.open_service(service)
        for data in inputs:
            svc.submit(data)
        svc.close()
        failed = []
        for result in session.results():
            if result.ok:
                outputs[result.task_id] = result.output
            else:
                failed.append(result)
    if failed:
        first = min(failed, key=lambda r: r.task_id)
        raise KeelError("%d of %d tasks of %s failed; task %d: %s: %s"
                        % (len(failed), len(inputs), service, first.task_id, first.status,
                           first.error))
    return outputs
