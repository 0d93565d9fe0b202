"""The testing cluster's real control plane (aglais_hub.testing.controlplane).

The binaries come from `make cluster-bin` (or AGLAIS_CLUSTER_BIN / KUBEBUILDER_ASSETS);
without them these tests skip, and under CI=true they fail. One control plane serves the
module; each test works in namespaces of its own. The first tests (no marks) check the
build module itself and need no binaries.
"""

from __future__ import annotations

import os
import socket
import ssl
import stat
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aglais_hub.testing.controlplane import build

# -- the build module, without binaries -------------------------------------------------------


def test_every_staging_module_is_replaced_by_the_pinned_release():
    version = build.kubernetes_version()
    minor_patch = version.removeprefix("v1.")
    go_mod = (build.KUBE_MODULE / "go.mod").read_text()
    replaces = [line.split() for line in go_mod.splitlines() if "=>" in line]
    assert len(replaces) >= 30
    for old, _, new, new_version in replaces:
        assert old.startswith("k8s.io/") and new == old
        assert new_version == f"v0.{minor_patch}", old
    assert build.etcd_version().startswith("v3.6.")


def test_kube_ldflags_report_the_release():
    flags = build.kube_ldflags("v1.37.2", "2026-10-27T12:01:04Z")
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        assert f"-X '{package}.gitVersion=v1.37.2'" in flags
        assert f"-X '{package}.gitMajor=1'" in flags
        assert f"-X '{package}.gitMinor=37'" in flags
        assert f"-X '{package}.buildDate=2026-10-27T12:01:04Z'" in flags
    assert flags.startswith("-s -w ")


def test_the_cache_key_follows_both_modules(tmp_path, monkeypatch):
    for module in ("kube", "etcd"):
        (tmp_path / module).mkdir()
        for name in ("go.mod", "go.sum"):
            (tmp_path / module / name).write_text(f"{module} {name}\n")
    monkeypatch.setattr(build, "KUBE_MODULE", tmp_path / "kube")
    monkeypatch.setattr(build, "ETCD_MODULE", tmp_path / "etcd")
    monkeypatch.setenv("AGLAIS_CACHE", str(tmp_path / "cache"))
    first = build.cache_bin_dir()
    assert first.parent == tmp_path / "cache" / "cluster-bin"
    (tmp_path / "etcd" / "go.sum").write_text("changed\n")
    assert build.cache_bin_dir() != first


def _fake_bin_dir(path: Path, names: tuple[str, ...] = build.BINARIES) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name in names:
        (path / name).write_text("#!/bin/sh\n")
        (path / name).chmod(stat.S_IRWXU)
    return path


def test_prebuilt_directories_and_the_stamp(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AGLAIS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AGLAIS_CLUSTER_BIN", raising=False)
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    assert build.find_binaries() is None
    assert build.main(["--print-dir"]) == 1
    assert capsys.readouterr().out.strip() == str(build.cache_bin_dir())

    # envtest's directory usually has etcd and kube-apiserver only: not used then
    envtest = _fake_bin_dir(tmp_path / "envtest", ("etcd", "kube-apiserver", "kubectl"))
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(envtest))
    assert build.find_binaries() is None
    _fake_bin_dir(envtest)
    assert build.find_binaries() == envtest

    # ours wins, and must be complete
    ours = _fake_bin_dir(tmp_path / "ours", ("etcd",))
    monkeypatch.setenv("AGLAIS_CLUSTER_BIN", str(ours))
    with pytest.raises(build.BuildError, match="lacks kube-apiserver"):
        build.find_binaries()
    _fake_bin_dir(ours)
    assert build.find_binaries() == ours
    monkeypatch.delenv("AGLAIS_CLUSTER_BIN")
    monkeypatch.delenv("KUBEBUILDER_ASSETS")

    # a complete build is reused without running go at all (no go on PATH here)
    built = _fake_bin_dir(build.cache_bin_dir())
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert build.main([]) == 1  # no stamp yet: it would build, and there is no go
    assert "Go >= 1.26 is needed" in capsys.readouterr().err
    (built / build.STAMP).write_text("done\n")
    assert build.main([]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(built)


# -- the control plane -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def control_plane(cluster_bin, tmp_path_factory):
    from aglais_hub.testing.controlplane.cluster import ControlPlane

    with ControlPlane(tmp_path_factory.mktemp("controlplane"), cluster_bin) as plane:
        yield plane


@pytest.fixture(scope="module")
def api(control_plane):
    from kubernetes import config

    client = config.new_client_from_config(str(control_plane.kubeconfig))
    yield client
    client.close()


def eventually(check: Callable[[], object], what: str, timeout: float = 60) -> object:
    """Poll ``check`` until it returns something truthy (exceptions count as not yet)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
            last = result
        except Exception as error:  # noqa: BLE001 - any failure means "not yet"
            last = error
        time.sleep(0.25)
    raise AssertionError(f"{what} did not happen within {timeout}s (last: {last!r})")


def fresh_namespace(api, prefix: str = "t") -> Iterator[str]:  # noqa: ANN001
    """A fresh namespace, once its `default` ServiceAccount exists (pods need it);
    deleted afterwards."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    eventually(
        lambda: core.read_namespaced_service_account("default", name), "the default ServiceAccount"
    )
    yield name
    core.delete_namespace(name)


@pytest.fixture
def namespace(api) -> Iterator[str]:
    """A fresh namespace, once its `default` ServiceAccount exists (pods need it)."""
    yield from fresh_namespace(api)


def _pod(name: str, cpu: str | None = None, **container: object) -> dict:
    spec: dict = {"name": "main", "image": "registry.invalid/none:1", **container}
    if cpu:
        spec["resources"] = {"requests": {"cpu": cpu}, "limits": {"cpu": cpu}}
    return {"metadata": {"name": name}, "spec": {"containers": [spec]}}


@pytest.mark.e2e
@pytest.mark.controlplane
def test_version_is_the_pinned_release(api, control_plane, cluster_bin):
    from kubernetes import client

    reported = subprocess.run(
        [str(cluster_bin / "kube-apiserver"), "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[-1]
    code = client.VersionApi(api).get_code()
    assert code.git_version == reported
    if cluster_bin == build.cache_bin_dir():  # built from our pins, not someone's prebuilt
        pinned = build.kubernetes_version()
        assert code.git_version == pinned
        assert (code.major, code.minor) == ("1", pinned.split(".")[1])
        etcd = subprocess.run(
            [str(cluster_bin / "etcd"), "--version"], capture_output=True, text=True, check=True
        ).stdout
        assert f"etcd Version: {build.etcd_version().removeprefix('v')}" in etcd


@pytest.mark.e2e
@pytest.mark.controlplane
def test_resource_quota_status_comes_from_the_controller(api, namespace):
    from kubernetes import client

    core = client.CoreV1Api(api)
    hard = {"pods": "2", "configmaps": "5"}
    core.create_namespaced_resource_quota(
        namespace, {"metadata": {"name": "counts"}, "spec": {"hard": hard}}
    )

    def status() -> object:
        return core.read_namespaced_resource_quota("counts", namespace).status

    # kube-root-ca.crt is the namespace's one ConfigMap
    eventually(
        lambda: status().hard == hard and status().used == {"pods": "0", "configmaps": "1"},
        "status.hard and status.used filled in",
    )
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "extra"}})
    assert status().used["configmaps"] == "2"  # charged by admission, at once
    core.delete_namespaced_config_map("extra", namespace)
    # given back by the controller's replenishment
    eventually(lambda: status().used["configmaps"] == "1", "usage replenished")


@pytest.mark.e2e
@pytest.mark.controlplane
def test_a_new_namespace_gets_its_service_account_and_root_ca(api, control_plane):
    from kubernetes import client

    core = client.CoreV1Api(api)
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    try:
        eventually(lambda: core.read_namespaced_service_account("default", name), "default SA")
        root_ca = eventually(
            lambda: core.read_namespaced_config_map("kube-root-ca.crt", name), "kube-root-ca.crt"
        )
        assert root_ca.data["ca.crt"] == control_plane.ca_file.read_text()
    finally:
        core.delete_namespace(name)
    # the namespace controller empties it and takes it away
    eventually(
        lambda: name not in [n.metadata.name for n in core.list_namespace().items],
        "the namespace to be deleted",
    )


@pytest.mark.e2e
@pytest.mark.controlplane
def test_rbac_is_enforced_for_a_service_account_token(api, control_plane, namespace):
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api)
    rbac = client.RbacAuthorizationV1Api(api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "reader"}})
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "get-pods"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "reader-gets-pods"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "get-pods",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        },
    )
    core.create_namespaced_pod(namespace, _pod("existing"))
    token = core.create_namespaced_service_account_token(
        "reader", namespace, {"spec": {"audiences": [], "expirationSeconds": 600}}
    ).status.token

    configuration = client.Configuration(
        host=control_plane.server,
        ssl_ca_cert=str(control_plane.ca_file),
        api_key={"BearerToken": token},
        api_key_prefix={"BearerToken": "Bearer"},
    )
    with client.ApiClient(configuration) as as_reader:
        review = client.AuthenticationV1Api(as_reader).create_self_subject_review({})
        assert review.status.user_info.username == f"system:serviceaccount:{namespace}:reader"
        reader = client.CoreV1Api(as_reader)
        assert reader.read_namespaced_pod("existing", namespace).metadata.name == "existing"
        for forbidden in (
            lambda: reader.create_namespaced_pod(namespace, _pod("mine")),
            lambda: reader.list_namespaced_pod(namespace),
            lambda: reader.read_namespaced_pod("existing", "default"),
        ):
            with pytest.raises(ApiException) as refused:
                forbidden()
            assert refused.value.status == 403
            assert f"system:serviceaccount:{namespace}:reader" in refused.value.body


@pytest.mark.e2e
@pytest.mark.controlplane
def test_admission_refuses_a_pod_over_quota(api, namespace):
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api)
    core.create_namespaced_resource_quota(
        namespace,
        {
            "metadata": {"name": "compute"},
            "spec": {"hard": {"requests.cpu": "1", "limits.cpu": "1"}},
        },
    )
    eventually(
        lambda: core.read_namespaced_resource_quota("compute", namespace).status.hard,
        "the quota's status",
    )

    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(namespace, _pod("big", cpu="2"))
    assert refused.value.status == 403
    assert "exceeded quota: compute" in refused.value.body
    assert "requested: limits.cpu=2,requests.cpu=2" in refused.value.body
    with pytest.raises(ApiException) as unbounded:
        core.create_namespaced_pod(namespace, _pod("unbounded"))
    assert "must specify limits.cpu" in unbounded.value.body

    core.create_namespaced_pod(namespace, _pod("small", cpu="500m"))
    used = core.read_namespaced_resource_quota("compute", namespace).status.used
    assert used["requests.cpu"] == "500m"


@pytest.mark.e2e
@pytest.mark.controlplane
def test_admission_enforces_pod_security_labels(api, namespace):
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api)
    core.patch_namespace(
        namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(namespace, _pod("root", securityContext={"privileged": True}))
    assert refused.value.status == 403
    assert "violates PodSecurity" in refused.value.body


@pytest.mark.e2e
@pytest.mark.controlplane
def test_garbage_collector_deletes_dependents(api, namespace):
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    core.create_namespaced_config_map(
        namespace,
        {
            "metadata": {
                "name": "dependent",
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "name": "owner",
                        "uid": owner.metadata.uid,
                    }
                ],
            }
        },
    )
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "bystander"}})
    core.delete_namespaced_config_map("owner", namespace, body={"propagationPolicy": "Background"})

    def dependent_gone() -> bool:
        try:
            core.read_namespaced_config_map("dependent", namespace)
        except ApiException as error:
            return error.status == 404
        return False

    eventually(dependent_gone, "the garbage collector to delete the dependent")
    assert core.read_namespaced_config_map("bystander", namespace).metadata.name == "bystander"


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.e2e
@pytest.mark.controlplane
def test_stop_leaves_no_process_behind(cluster_bin, tmp_path):
    from aglais_hub.testing.controlplane.cluster import COMPONENTS, ControlPlane

    with ControlPlane(tmp_path / "cp", cluster_bin) as plane:
        assert sorted(plane.processes) == sorted(COMPONENTS)
        pids, ports = plane.pids, dict(plane.ports)
        context = ssl.create_default_context(cafile=str(plane.ca_file))
        context.load_cert_chain(plane.pki / "admin.crt", plane.pki / "admin.key")
        with urllib.request.urlopen(f"{plane.server}/readyz", context=context) as ready:
            assert ready.status == 200
        assert all((plane.logs / f"{name}.log").stat().st_size > 0 for name in COMPONENTS)
    assert len(plane.started) == len(pids) == 4
    assert all(process.returncode is not None for process in plane.started)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not [name for name, port in ports.items() if _listening(port)]
    assert plane.processes == {}


@pytest.mark.e2e
@pytest.mark.controlplane
def test_a_port_taken_meanwhile_is_given_up_for_another(cluster_bin, tmp_path, monkeypatch):
    from aglais_hub.testing.controlplane import cluster

    real_free_ports = cluster.free_ports
    calls = []

    def first_with_a_taken_apiserver_port(count: int) -> list[int]:
        ports = real_free_ports(count)
        if not calls:
            ports[2] = taken.getsockname()[1]  # etcd-client, etcd-peer, kube-apiserver, …
        calls.append(ports)
        return ports

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setattr(cluster, "free_ports", first_with_a_taken_apiserver_port)
        with cluster.ControlPlane(tmp_path / "cp", cluster_bin) as plane:
            assert len(calls) == 2
            assert plane.ports["kube-apiserver"] == calls[1][2] != taken.getsockname()[1]
    assert "address already in use" in (plane.logs / "kube-apiserver.log").read_text()


def test_a_directory_without_binaries_is_refused(tmp_path):
    pytest.importorskip("cryptography")
    from aglais_hub.testing.controlplane.cluster import ControlPlane, ControlPlaneError

    _fake_bin_dir(tmp_path / "bin", ("etcd",))
    with pytest.raises(ControlPlaneError, match="lacks kube-apiserver, kube-controller-manager"):
        ControlPlane(tmp_path / "cp", tmp_path / "bin")
