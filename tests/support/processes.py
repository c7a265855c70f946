"""Service processes for tests: started as in production, probed over their health endpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from shared.settings import SERVICE_SETTINGS
from shared.supervisor import free_port


def get_json(url: str) -> tuple[int, object]:
    """(status, decoded body) of a GET; (0, None) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, None
    except OSError:
        return 0, None


def scrape(url: str) -> dict[str, float]:
    """The unlabelled samples of a Prometheus ``/metrics`` page, by name."""
    with urllib.request.urlopen(url, timeout=2) as response:
        text = response.read().decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def free_ports_env(*services: str) -> dict[str, str]:
    """Every listening port of these services moved to a free one, so tests run beside anything."""
    env = {}
    for name in services:
        settings = SERVICE_SETTINGS[name]
        for setting in settings.port_settings():
            env[settings.env_name(setting)] = str(free_port())
    return env


def health_url(service: str, env: dict[str, str], path: str = "/readyz") -> str:
    settings = SERVICE_SETTINGS[service]
    setting = "http_port" if service == "api" else "health_port"
    return f"http://127.0.0.1:{env[settings.env_name(setting)]}{path}"


def start_service(service: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """Start ``python -m services.<service>`` and wait until its /readyz answers 200."""
    process = subprocess.Popen(
        [sys.executable, "-m", f"services.{service}"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = health_url(service, env)
    try:
        wait_until(lambda: get_json(url)[0] == 200 or process.poll() is not None, 30, f"{service} ready")
    except AssertionError:
        process.kill()
        raise
    if process.poll() is not None:
        raise AssertionError(f"{service} exited with {process.returncode}: {process.communicate()[0]}")
    return process
