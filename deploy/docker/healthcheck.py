"""Container health check: GET the service's /healthz on the port its settings name.

Used by the images' HEALTHCHECK (``python healthcheck.py <service>``). It reads the port from the
same settings class the service does, so an image run with ``ECHODESK_MEDIA_HEALTH_PORT=9200`` is
checked on 9200; the api serves its health on its HTTP port. Exit 0 when healthy, 1 otherwise.
Kubernetes does not use this: its probes call /healthz and /readyz directly (deploy/k8s).
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from shared.settings import SERVICE_SETTINGS, ApiSettings

_ANY_ADDRESS = ("", "0.0.0.0", "::")


def health_url(service: str) -> str:
    settings = SERVICE_SETTINGS[service]()
    if isinstance(settings, ApiSettings):  # health and metrics on its HTTP port
        host, port = settings.http_host, settings.http_port
    else:
        host, port = settings.health_host, settings.health_port
    if host in _ANY_ADDRESS:
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/healthz"


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in SERVICE_SETTINGS:
        print(f"usage: healthcheck.py {{{','.join(SERVICE_SETTINGS)}}}", file=sys.stderr)
        return 2
    url = health_url(argv[0])
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            healthy = response.status == 200
    except (urllib.error.URLError, OSError) as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
