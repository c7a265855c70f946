"""Each service installs only what it needs, at locked versions."""

from __future__ import annotations

import re
import tomllib

import pytest

from tests.support.tools import REPO_ROOT

GROUPS = ("signaling", "media", "recorder", "api")


def locked(group: str) -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "requirements" / f"{group}.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==(\S+)", line)
        if match:
            pins[match[1].lower().replace("_", "-")] = match[2]
    return pins


@pytest.mark.parametrize("group", [*GROUPS, "dev"])
def test_every_requirement_is_pinned(group: str) -> None:
    lines = [
        line.split("#")[0].strip()
        for line in (REPO_ROOT / "requirements" / f"{group}.txt").read_text().splitlines()
    ]
    loose = [line for line in lines if line and not line.startswith("-") and "==" not in line]
    assert loose == []


def test_images_carry_only_their_service() -> None:
    assert "aiortc" not in locked("api")
    assert "fastapi" not in locked("media")
    assert "aiortc" in locked("media")
    assert {"fastapi", "sqlalchemy"} <= set(locked("api"))
    for group in GROUPS:
        assert {"nats-py", "structlog", "phonenumbers", "pydantic", "uvloop"} <= set(locked(group)), group


def test_locks_agree_with_each_other() -> None:
    dev = locked("dev")
    for group in GROUPS:
        for name, version in locked(group).items():
            assert dev.get(name) == version, (
                f"{name} is {version} in {group}.txt but {dev.get(name)} in dev.txt"
            )


def test_every_declared_dependency_is_locked() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]

    def names(specs: list[str]) -> set[str]:
        return {re.split(r"[\[<>=;! ]", spec, maxsplit=1)[0].lower().replace("_", "-") for spec in specs}

    for group in GROUPS:
        wanted = names(project["dependencies"]) | names(project["optional-dependencies"][group])
        assert wanted <= set(locked(group)), wanted - set(locked(group))
