"""What the deployment files (Dockerfile, deploy/k8s) must agree with, read from shared.settings.

There is one list of ports and environment variables, the settings classes; the deployment tests
derive everything they compare against from them, never from a list of their own.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import AliasChoices

from shared.settings import SERVICE_SETTINGS, ApiSettings, CommonSettings

SERVICES = tuple(SERVICE_SETTINGS)


def protocol(settings: type[CommonSettings], setting: str) -> str:
    """UDP for a port setting whose description says so (SIP over UDP, WebRTC), else TCP."""
    description = settings.model_fields[setting].description or ""
    return "UDP" if "UDP" in description else "TCP"


def listening_ports(settings: CommonSettings) -> set[tuple[int, str]]:
    """(port, protocol) of every port this configured service listens on."""
    cls = type(settings)
    return {(int(getattr(settings, name)), protocol(cls, name)) for name in cls.port_settings()}


def default_ports(service: str) -> set[tuple[int, str]]:
    cls = SERVICE_SETTINGS[service]
    return {(port, protocol(cls, name)) for name, port in cls.port_settings().items()}


def health_port(settings: CommonSettings) -> int:
    """The port of /healthz and /readyz: the api serves them on its HTTP port."""
    if isinstance(settings, ApiSettings):
        return settings.http_port
    return settings.health_port


def env_fields(settings: type[CommonSettings]) -> dict[str, str]:
    """Every environment variable that sets one of the class's settings -> that setting.

    Shared settings are read from ``ECHODESK_<NAME>`` (their alias), a service's own from
    ``env_name()`` (``ECHODESK_<SERVICE>_<NAME>``).
    """
    names: dict[str, str] = {}
    for field, info in settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            for choice in alias.choices:
                if isinstance(choice, str) and choice.startswith("ECHODESK_"):
                    names[choice] = field
        else:
            names[settings.env_name(field)] = field
    return names


def configured(service: str, environment: Mapping[str, str]) -> CommonSettings:
    """The service's settings as a process with exactly ``environment`` would read them.

    Raises ``KeyError`` naming a variable that no setting of the service reads, and pydantic's
    ``ValidationError`` for a value its setting refuses.
    """
    cls = SERVICE_SETTINGS[service]
    fields = env_fields(cls)
    values: dict[str, str] = {}
    for name, value in environment.items():
        if name.startswith("ECHODESK_"):
            if name not in fields:
                raise KeyError(f"{name} is not a setting of {service} (shared/settings.py)")
            values[fields[name]] = value
    # By field name, so the machine's own ECHODESK_* variables cannot leak in for these; the
    # others keep their defaults (pydantic-settings still reads the environment for them).
    return cls(**values)
