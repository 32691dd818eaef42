"""``conveyor conformance run`` against the Python subjects (clients/python/conformance): the
reference consumer passes every case, and the deliberately naive one fails the cases that
catch its faults, which shows the suite can tell them apart.

The runner is the Rust binary: ``CONVEYOR_BIN``, else ``<repo>/target/debug/conveyor``
(``scripts/test-python`` sets it). It makes its own vhost, broker users and database per run,
so the two tests may run in parallel. Without the binary the tests fail: build it with
``cargo build -p conveyor-cli``.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parents[3]
CLIENT = Path(__file__).resolve().parents[1]
#: A run drives its subject through every case, retry tiers and all, then a dropped connection
#: and a kill; a subject that loses events waits out the runner's limits (a minute for the
#: cases' outcomes, up to two for each fault), so the naive run is the longer one.
TIMEOUT = 600
#: What the naive subject must fail, at least: it keeps no inbox, sends no dead letters and
#: has no retry tiers.
NAIVE_FAILURES = {"duplicate-together", "duplicate-after-commit", "permanent", "retries-exhausted", "malformed"}


def runner() -> Path:
    path = Path(os.environ.get("CONVEYOR_BIN") or REPO / "target" / "debug" / "conveyor").resolve()
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"the conformance runner {path} does not exist: build it with "
            "`cargo build -p conveyor-cli` (or point CONVEYOR_BIN at a conveyor binary)",
            pytrace=False,
        )
    return path


def runner_environment() -> dict[str, str]:
    """The environment, with the broker and the server this suite's other tests use where
    ``CONVEYOR_TEST_*`` name them (see conftest.py) given to the runner as its own variables:
    ``AMQP_URL`` (its administrator), ``RABBITMQ_MANAGEMENT_URL`` and
    ``CONFORMANCE_POSTGRES_URL``. Unset, the runner's defaults are the same local services."""
    env = dict(os.environ)
    if os.environ.get("CONVEYOR_TEST_AMQP"):
        env["AMQP_URL"] = os.environ["CONVEYOR_TEST_AMQP"].rstrip("/") + "/%2f"
    if os.environ.get("CONVEYOR_TEST_MANAGEMENT"):
        parts = urlsplit(os.environ["CONVEYOR_TEST_MANAGEMENT"])
        env["RABBITMQ_MANAGEMENT_URL"] = f"{parts.scheme}://{parts.hostname}:{parts.port or 15672}"
    if os.environ.get("CONVEYOR_TEST_DATABASE"):
        env["CONFORMANCE_POSTGRES_URL"] = os.environ["CONVEYOR_TEST_DATABASE"]
    return env


def tail(text: str, limit: int = 6000) -> str:
    return text if len(text) <= limit else "…" + text[-limit:]


def run_conformance(script: str) -> tuple[int, dict[str, Any], str]:
    """Runs the runner on ``conformance/<script>`` from ``clients/python``: its exit status,
    its JSON report, and a description of the run for failure messages."""
    subject = f"{shlex.quote(sys.executable)} conformance/{script}"
    command = [str(runner()), "conformance", "run", "--subject", subject, "--json"]
    # A session of its own; on a timeout the runner gets SIGTERM first, so that one which
    # handles it can stop its subject and remove its vhost and database, then SIGKILL.
    process = subprocess.Popen(
        command,
        cwd=CLIENT,
        env=runner_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    timed_out = False
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        timed_out = True
        process.send_signal(signal.SIGTERM)
        try:
            stdout, stderr = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
    if timed_out:
        pytest.fail(
            f"{shlex.join(command)} did not finish within {TIMEOUT}s\n"
            f"stdout:\n{tail(stdout)}\nstderr:\n{tail(stderr)}",
            pytrace=False,
        )
    described = f"{shlex.join(command)} exited with {process.returncode}\nstderr:\n{tail(stderr)}"
    unreadable = ""
    try:
        report = json.loads(stdout)
    except json.JSONDecodeError as error:
        report, unreadable = None, f" ({error})"
    if not isinstance(report, dict) or not isinstance(report.get("cases"), list) or not report["cases"]:
        pytest.fail(
            f"{described}\nits stdout is not a JSON report naming its cases{unreadable}:\n{tail(stdout)}",
            pytrace=False,
        )
    log = report.get("subject_log")
    if isinstance(log, str) and Path(log).is_file():
        lines = Path(log).read_text(errors="replace").splitlines()[-40:]
        described += f"\nthe subject's output ({log}), last lines:\n" + "\n".join(lines)
    return process.returncode, report, described


def failing(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [case for case in report["cases"] if case.get("ok") is not True]


def listed(cases: list[dict[str, Any]]) -> str:
    return "\n".join(f"- {case.get('name')}: {case.get('detail', '')}" for case in cases) or "(none)"


def test_the_reference_consumer_passes_every_case() -> None:
    status, report, described = run_conformance("subject.py")
    failed = failing(report)
    assert status == 0 and report.get("passed") is True and not failed, (
        f"{described}\nfailing cases:\n{listed(failed)}"
    )


def test_the_naive_consumer_fails_the_cases_that_catch_it() -> None:
    status, report, described = run_conformance("naive_subject.py")
    failed = failing(report)
    names = {case.get("name") for case in report["cases"]}
    missing = NAIVE_FAILURES - names
    assert not missing, f"{described}\nthe report has no case {sorted(missing)}; its cases: {sorted(map(str, names))}"
    caught = {case.get("name") for case in failed}
    passed_wrongly = NAIVE_FAILURES - caught
    assert not passed_wrongly, (
        f"{described}\nthe naive subject passed {sorted(passed_wrongly)}, which it breaks; "
        f"failing cases:\n{listed(failed)}"
    )
    assert status == 1 and report.get("passed") is False, (
        f"{described}\nexpected exit status 1 and passed=false for a failing run; report passed="
        f"{report.get('passed')!r}"
    )
