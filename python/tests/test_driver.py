"""The Python driver against a real broker and engine (conftest.py)."""

import os
import signal

import pytest

import keel
from keel import _lib
from conftest import free_port


def test_session_delivers_each_of_200_double_results_exactly_once(broker):
    with keel.Session(broker) as session:
        service = session.open_service("double")
        ids = [service.submit(str(i)) for i in range(200)]
        assert ids == list(range(200))
        service.close()
        seen = {}
        for result in session.results():
            assert result.task_id not in seen, "task %d delivered twice" % result.task_id
            seen[result.task_id] = result
        assert session.outstanding == 0
    assert sorted(seen) == list(range(200))
    for task_id, result in seen.items():
        assert result.ok and result.output == str(2 * task_id).encode(), result
        assert result.service is service and result.service_id == service.id
        assert result.engine and result.attempts == 1 and result.error == ""


def test_map_returns_outputs_in_input_order(broker):
    inputs = [str(i) for i in range(50, 0, -1)]
    assert keel.map("double", inputs, broker=broker) == [b"%d" % (2 * int(i)) for i in inputs]


def test_map_accepts_bytes_and_raises_with_the_failed_tasks_error(broker):
    with pytest.raises(keel.KeelError, match=r"1 of 3 tasks of double failed; task 1: failed: .+"):
        keel.map("double", [b"1", b"abc", "3"], broker=broker)


def test_unreachable_broker_raises_no_broker_reachable():
    dead = "tcp://127.0.0.1:%d" % free_port()
    with keel.Session(dead, DSBrokerTimeout="1s") as session:
        session.open_service("double").submit("1")
        with pytest.raises(keel.KeelError, match="no broker reachable"):
            next(session.results())


def test_malformed_broker_endpoint_raises_the_librarys_message():
    with pytest.raises(keel.KeelError, match="DSPrimaryBroker"):
        keel.Session("not-an-endpoint")


def test_unknown_setting_raises_the_librarys_message():
    with pytest.raises(keel.KeelError, match="NoSuchKey"):
        keel.Session("tcp://127.0.0.1:1", NoSuchKey="1")


def test_invalid_service_type_raises(broker):
    with keel.Session(broker) as session:
        with pytest.raises(keel.KeelError, match="type"):
            session.open_service("no such type!")


def test_malformed_condition_raises_naming_its_column(broker):
    with keel.Session(broker) as session:
        with pytest.raises(keel.KeelError, match="condition: column 6: expected a value after '>='"):
            session.open_service("double", condition="a >= ")


def test_a_condition_every_engine_meets_runs_the_tasks(broker):
    with keel.Session(broker) as session:
        service = session.open_service("double", condition='os == "linux" && cores >= 1')
        service.submit("1")
        service.submit("2")
        service.close()
        outputs = sorted(result.output for result in session.results())
    assert outputs == [b"2", b"4"]


def test_service_no_engine_offers_is_reported_and_cancel_ends_it(broker):
    events = []
    with keel.Session(broker, status=lambda *e: events.append(e)) as session:
        service = session.open_service("nosuchservice")
        service.submit("1")
        for _ in range(100):  # 100 x 0.1 s at most
            if any("no engine online offers" in e[2] for e in events):
                break
            assert session.next_result(timeout=0.1) is None, "a result for nosuchservice"
        assert any("no engine online offers" in e[2] for e in events), events
        service.cancel()
        results = list(session.results())
    assert [(r.task_id, r.status) for r in results] == [(0, "cancelled")]


def test_submit_refuses_other_types_and_a_closed_session(broker):
    session = keel.Session(broker)
    service = session.open_service("double")
    with pytest.raises(TypeError):
        service.submit(42)
    session.close()
    session.close()
    with pytest.raises(keel.KeelError, match="closed"):
        service.submit("1")


def test_missing_library_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(_lib, "_lib", None)
    monkeypatch.setenv(_lib.ENV_VAR, "/nonexistent/libkeeldriver.so")
    with pytest.raises(OSError, match="libkeeldriver not found; tried /nonexistent"):
        keel.Session("tcp://127.0.0.1:1")


def test_results_survive_kill_9_of_the_primary_broker_exactly_once(grid):
    a, b = grid.broker("brokerA"), grid.broker("brokerB")
    grid.engine("engine", [a, b])
    grid.wait_engines(a, 1)
    events = []
    with keel.Session(a["endpoint"], failover=[b["endpoint"]], DSBrokerTimeout="2s",
                      status=lambda *e: events.append(e)) as session:
        service = session.open_service("double")
        for i in range(200):
            service.submit(str(i))
        seen = {}
        first = session.next_result()
        seen[first.task_id] = first
        os.kill(a["proc"].pid, signal.SIGKILL)
        a["proc"].wait(timeout=10)
        for i in range(200, 300):
            service.submit(str(i))
        service.close()
        for result in session.results():
            assert result.task_id not in seen, "task %d delivered twice" % result.task_id
            seen[result.task_id] = result
    assert sorted(seen) == list(range(300))
    assert all(r.ok and r.output == str(2 * t).encode() for t, r in seen.items())
    assert any(kind == "failover" for kind, *_ in events), events
