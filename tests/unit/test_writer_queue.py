"""The order of SQLite's writers in one process: requests first, background work delayed but
keeping a share of the turns however many requests wait."""

from __future__ import annotations

import threading
import time

from tidings.db.session import WriterQueue


def wait_for(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline
        time.sleep(0.001)


def patient_queue() -> WriterQueue:
    """A queue whose background writers never run out of patience: the order then depends on
    the share of turns alone, not on how fast a loaded machine starts the test's threads."""
    queue = WriterQueue()
    queue.BACKGROUND_PATIENCE = 3600.0
    return queue


def test_background_work_gets_a_turn_after_a_share_of_requests_not_after_all_of_them() -> None:
    queue = patient_queue()
    order: list[str] = []
    holding = queue.acquire()  # a request holds the writer while the others line up

    def writer(name: str, *, background: bool) -> None:
        ticket = queue.acquire(background=background)
        order.append(name)
        queue.release(ticket)

    worker = threading.Thread(target=writer, args=("worker",), kwargs={"background": True})
    worker.start()
    wait_for(lambda: len(queue._waiting) == 1)
    requests = [
        threading.Thread(target=writer, args=(f"request {i}",), kwargs={"background": False})
        for i in range(3 * WriterQueue.FOREGROUND_SHARE)
    ]
    for thread in requests:
        thread.start()
    wait_for(lambda: len(queue._waiting) == 1 + len(requests))
    queue.release(holding)
    for thread in [worker, *requests]:
        thread.join(timeout=10)
    # Requests came later but went first — up to the share; then the worker's turn.
    assert order.index("worker") == WriterQueue.FOREGROUND_SHARE
    assert len(order) == 1 + len(requests)


def test_a_request_goes_before_background_work_that_came_first() -> None:
    queue = patient_queue()
    order: list[str] = []
    holding = queue.acquire(background=True)

    def writer(name: str, background: bool) -> None:
        ticket = queue.acquire(background=background)
        order.append(name)
        queue.release(ticket)

    first = threading.Thread(target=writer, args=("worker", True))
    first.start()
    wait_for(lambda: len(queue._waiting) == 1)
    second = threading.Thread(target=writer, args=("request", False))
    second.start()
    wait_for(lambda: len(queue._waiting) == 2)
    queue.release(holding)
    first.join(timeout=5)
    second.join(timeout=5)
    assert order == ["request", "worker"]
