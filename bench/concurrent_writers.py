"""Concurrent writers against a real ``tidings serve --demo`` (its embedded worker and the
WhatsApp simulator included): API clients, signed webhooks and web sessions for a fixed time.

Prints requests/s, p50/p99 latency, server errors (which must be 0) and the server's CPU time
per request, first with one writer (the baseline: no one to wait for), then with the chosen
number of writers, on the database given.

    python -m bench.concurrent_writers                      # SQLite, 20 writers, 30 s
    python -m bench.concurrent_writers --database-url postgresql://postgres@127.0.0.1:5432/test
    python -m bench.concurrent_writers --import-rows 200000  # + a third run beside an import

With ``--import-rows``, a third run repeats the load while the embedded worker imports a CSV
of that many rows sent to ``/contacts/imports``: the writers' latency beside the second run's
tells whether a large import holds anyone up.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from bench.common import BENCH_DB, fresh_installation, machine
from tidings.channels.whatsapp.webhook import sign
from tidings.simulator.server import SimulatorConfig

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    server_errors: int = 0
    other_errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def timed(
        self, send: Callable[..., httpx.Response], *args: object, **kwargs: object
    ) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            response = send(*args, **kwargs)
        except httpx.TransportError:
            with self.lock:
                self.server_errors += 1
            return None
        with self.lock:
            self.latencies.append(time.perf_counter() - started)
            if response.status_code >= 500:
                self.server_errors += 1
            elif response.status_code >= 400:
                self.other_errors += 1
        return response


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def api_writer(base: str, key: str, tally: Tally, until: float, index: int) -> None:
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
        serial = 0
        while time.monotonic() < until:
            serial += 1
            body = {"name": f"Bench {index}-{serial}", "tags": ["bench"]}
            created = tally.timed(c.post, "/api/v1/contacts", json=body)
            if created is not None and created.status_code == 201:
                path = f"/api/v1/contacts/{created.json()['id']}"
                tally.timed(c.patch, path, json={"score": serial})


def webhook_sender(url: str, tally: Tally, until: float, index: int) -> None:
    config = SimulatorConfig()
    with httpx.Client(timeout=60) as c:
        serial = 0
        while time.monotonic() < until:
            serial += 1
            phone = f"6681{index:02d}{serial:05d}"
            raw = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "1",
                "changes": [{"field": "messages", "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": config.display_phone_number,
                                 "phone_number_id": config.phone_number_id},
                    "contacts": [{"profile": {"name": f"Bench {phone}"}, "wa_id": phone}],
                    "messages": [{"from": phone, "id": f"wamid.bench-{index}-{serial}",
                                  "timestamp": str(int(time.time())), "type": "text",
                                  "text": {"body": "มีไซส์ M ไหม"}}]}}]}]}).encode()  # fmt: skip
            headers = {"content-type": "application/json",
                       "x-hub-signature-256": sign(config.app_secret, raw)}  # fmt: skip
            tally.timed(c.post, url, content=raw, headers=headers)


def web_agent(base: str, tally: Tally, until: float, _index: int) -> None:
    with httpx.Client(base_url=base, timeout=60, follow_redirects=False) as web:
        web.post(
            "/app/login",
            data={"workspace": "demo", "email": "mei@demo-shop.example",
                  "password": "tidings-demo"},
        )  # fmt: skip
        page = web.get("/app/inbox").text
        csrf = {"X-CSRF-Token": page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]}
        serial = 0
        while time.monotonic() < until:
            serial += 1
            listed = tally.timed(web.get, "/api/v1/conversations?limit=3")
            items = listed.json()["items"] if listed is not None and listed.is_success else []
            for conversation in items[:1]:
                note = {"body": f"note {serial}"}
                path = f"/api/v1/conversations/{conversation['id']}/notes"
                tally.timed(web.post, path, json=note, headers=csrf)


def background_import(base: str, key: str, rows: int) -> tuple[str, float]:
    """Send a CSV of ``rows`` new contacts to ``/contacts/imports``; its address, and how
    long the answer took."""
    body = "phone,name,tags\n" + "".join(f"+88696{i:07d},Imported {i},csv\n" for i in range(rows))
    started = time.perf_counter()
    answer = httpx.post(
        f"{base}/api/v1/contacts/imports",
        content=body.encode(),
        headers={"Authorization": f"Bearer {key}", "content-type": "text/csv"},
        timeout=300,
    )
    answer.raise_for_status()
    return base + answer.headers["location"], time.perf_counter() - started


def import_progress(location: str, key: str) -> dict[str, object]:
    found: dict[str, object] = httpx.get(
        location, headers={"Authorization": f"Bearer {key}"}, timeout=60
    ).json()
    return found


def run_load(base: str, key: str, webhook: str, writers: int, seconds: float, pid: int) -> None:
    tally = Tally()
    until = time.monotonic() + seconds
    kinds = [api_writer, webhook_sender, web_agent]
    threads = []
    for index in range(writers):
        kind = kinds[index % 3] if writers > 1 else api_writer
        target = webhook if kind is webhook_sender else base
        args = (
            (target, key, tally, until, index)
            if kind is api_writer
            else (target, tally, until, index)
        )
        threads.append(threading.Thread(target=kind, args=args))  # type: ignore[arg-type]
    cpu_before, wall_before = cpu_seconds(pid), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall, cpu = time.perf_counter() - wall_before, cpu_seconds(pid) - cpu_before
    done = len(tally.latencies)
    ordered = sorted(tally.latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else float("nan")
    p50 = statistics.median(ordered) if ordered else float("nan")
    print(
        f"{writers:>3} writers  {done / wall:8.1f} req/s  p50 {p50 * 1000:7.1f} ms"
        f"  p99 {p99 * 1000:8.1f} ms  5xx {tally.server_errors}  4xx {tally.other_errors}"
        f"  server CPU {cpu / max(done, 1) * 1000:6.2f} ms/req  ({done} requests in {wall:.1f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--writers", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--import-rows", type=int, default=0)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="tidings-bench-"))
    port = free_port()
    env = {**os.environ, "TIDINGS_DATA_DIR": str(folder / "data"), "TIDINGS_LOG_LEVEL": "WARNING"}
    if args.database_url:  # a fresh, migrated tidings_bench database on that server
        fresh_installation(args.database_url).close()
        env["TIDINGS_DATABASE_URL"] = (
            make_url(args.database_url).set(database=BENCH_DB).render_as_string(False)
        )
    log = (folder / "serve.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "tidings", "serve", "--demo", "--port", str(port)],
        env=env, cwd=folder, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        key = (folder / "data" / "demo-api-key.txt").read_text().strip()
        numbers = httpx.get(
            f"{base}/api/v1/whatsapp-numbers", headers={"Authorization": f"Bearer {key}"}
        ).json()
        webhook = base + "/webhooks/whatsapp/" + numbers[0]["webhook_url"].rsplit("/", 1)[1]
        database = args.database_url.split(":", 1)[0] if args.database_url else "sqlite"
        print(f"tidings serve --demo on {database}; {machine()}; {args.seconds:g} s each")
        run_load(base, key, webhook, 1, args.seconds, server.pid)
        run_load(base, key, webhook, args.writers, args.seconds, server.pid)
        if args.import_rows:
            location, answered = background_import(base, key, args.import_rows)
            started = time.perf_counter()
            print(
                f"a {args.import_rows:,}-row CSV sent to /contacts/imports: 202 in {answered:.2f} s"
            )
            run_load(base, key, webhook, args.writers, args.seconds, server.pid)
            during = import_progress(location, key)
            while (progress := import_progress(location, key))["status"] in ("queued", "running"):
                time.sleep(0.5)
            took = time.perf_counter() - started
            print(
                f"the import: {during['rows']:,} rows read during the load; {progress['status']}"
                f" with {progress['created']:,} created, {progress['failed']} refused,"
                f" {took:.1f} s from the answer to the end"
            )
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
        log.close()


if __name__ == "__main__":
    main()
