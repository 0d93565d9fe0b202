"""Every Kubernetes object of one Zeppelin server, as pure functions (dicts in, dicts out).

Like KubeSpawner's ``objects.py``: no I/O here, so the manifests can be tested, and
printed by ``aglais-hub render-pod``, without a cluster. `ServerSpec` holds every
input; `build_objects` returns the objects in the order the spawner creates them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from aglais_hub.examples import FOLDER as EXAMPLES_FOLDER
from aglais_hub.flavours import flavour as flavour_named
from aglais_hub.offering import (
    AUTH_PROXY,
    ClusterSize,
    Overhead,
    Resources,
    Tier,
    driver_resources,
    footprint,
)
from aglais_hub.quantity import spark_memory
from spawners.sparkconf import format_spark_defaults

PROXY_PORT = 8888
ZEPPELIN_PORT = 8080
SPARK_UI_PORT = 4040
SPARK_CONF_DIR = "/opt/spark/conf"
NOTEBOOK_DIR = "/home/zeppelin/notebook"
HOME_MOUNT = "/home/zeppelin"
HUB_API_PORT = 8081  # JupyterHub's hub_port
EXAMPLES_IN_IMAGE = "/opt/aglais/examples"  # images/zeppelin/Dockerfile copies them there
LABEL_USER = "aglais.io/user"
LABEL_SERVER = "aglais.io/server"
LABEL_COMPONENT = "app.kubernetes.io/component"
SECURITY_CONTEXT = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


@dataclass(frozen=True)
class DataVolume:
    """A read-only science data volume: any Kubernetes volume source, mounted at a path."""

    name: str
    mount_path: str
    source: dict


@dataclass(frozen=True)
class KubernetesSettings:
    """The values file's ``spawner.kubernetes`` section, typed (see the values reference),
    the same for every server; `spawners.zeppelin.spec.kubernetes_settings` reads it once.

    The name templates are not here: they are KubeSpawner's own traits
    (``user_namespace_template``, ``pod_name_template``), which expand them."""

    zeppelin_image: str
    spark_image: str
    storage_class: str = ""
    access_modes: tuple[str, ...] = ("ReadWriteOnce",)
    data_volumes: tuple[DataVolume, ...] = ()
    catalogues: str = ""  # AGLAIS_CATALOGUES: at or under a data volume's mount path
    api_server: str = "https://kubernetes.default.svc:443"
    api_server_cidrs: tuple[str, ...] = ("0.0.0.0/0",)
    data_cidrs: tuple[str, ...] = ()
    hub_selector: dict = field(
        default_factory=lambda: {
            "namespaceSelector": {},
            "podSelector": {"matchLabels": {"component": "proxy"}},
        }
    )
    driver_port: int = 7078
    block_manager_port: int = 7079
    run_as_user: int = 1000
    pod_security: str = "restricted"  # the Pod Security level enforced on the namespace
    activity_interval: int = 60
    reservations_port: int = 0  # the auth proxy asks the reservation service for notices


@dataclass(frozen=True)
class ServerSpec:
    """Everything that decides one server's objects: the platform's settings and this
    server's names, tier, size, flavour and environment."""

    username: str
    server_name: str
    namespace: str
    pod_name: str
    pvc_name: str
    tier: Tier
    size: ClusterSize
    settings: KubernetesSettings
    env: dict[str, str] = field(default_factory=dict)
    flavour: str = "zeppelin"
    pod_labels: dict[str, str] = field(default_factory=dict)  # the hub's own, on the pod
    overhead: Overhead = Overhead()  # Spark's memory overhead on the driver and executors

    @property
    def labels(self) -> dict[str, str]:
        return {
            LABEL_USER: self.username,
            LABEL_SERVER: self.server_name or "default",
            "app.kubernetes.io/name": "aglais",
            "app.kubernetes.io/managed-by": "aglais-hub",
        }

    @property
    def service_account(self) -> str:
        return "spark-driver"

    @property
    def driver_service(self) -> str:
        return f"{self.pod_name}-driver"

    @property
    def config_map(self) -> str:
        return f"{self.pod_name}-spark"


def _meta(
    spec: ServerSpec, name: str, component: str, namespaced: bool = True, shared: bool = False
) -> dict:
    """Metadata; objects ``shared`` by all of a user's servers carry no server label."""
    labels = {**spec.labels, LABEL_COMPONENT: component}
    if shared:
        labels.pop(LABEL_SERVER)
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if namespaced:
        meta["namespace"] = spec.namespace
    return meta


def namespace(spec: ServerSpec) -> dict:
    meta = _meta(spec, spec.namespace, "user-namespace", namespaced=False, shared=True)
    meta["labels"].update(
        {
            "pod-security.kubernetes.io/enforce": spec.settings.pod_security,
            "pod-security.kubernetes.io/enforce-version": "latest",
        }
    )
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def service_account(spec: ServerSpec) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(spec, spec.service_account, "spark-driver", shared=True),
        "automountServiceAccountToken": True,
    }


SPARK_VERBS = ["get", "list", "watch", "create", "delete", "deletecollection", "patch"]


def role(spec: ServerSpec) -> dict:
    """What the Spark driver needs in its own namespace, and nothing cluster-wide."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(spec, "spark-driver", "spark-driver", shared=True),
        "rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": SPARK_VERBS},
            {
                "apiGroups": [""],
                "resources": ["configmaps", "services", "persistentvolumeclaims"],
                "verbs": ["get", "list", "watch", "create", "delete", "deletecollection"],
            },
        ],
    }


def role_binding(spec: ServerSpec) -> dict:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(spec, "spark-driver", "spark-driver", shared=True),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "spark-driver",
        },
        "subjects": [
            {"kind": "ServiceAccount", "name": spec.service_account, "namespace": spec.namespace}
        ],
    }


def resource_quota(spec: ServerSpec) -> dict:
    """The tier's ceiling for the whole namespace: every server and executor together."""
    tier, servers = spec.tier, spec.tier.concurrent_servers
    ceiling = footprint(ClusterSize.from_tier(tier), spec.overhead) * servers
    cpu, memory = ceiling.millicores, ceiling.memory
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": _meta(spec, "tier-quota", "quota", shared=True),
        "spec": {
            "hard": {
                "requests.cpu": f"{cpu}m",
                "limits.cpu": f"{cpu}m",
                "requests.memory": str(memory),
                "limits.memory": str(memory),
                "pods": str(servers * (1 + tier.max_executors)),
                "requests.storage": str(tier.storage),
                "persistentvolumeclaims": "1",
            }
        },
    }


def network_policy(spec: ServerSpec) -> dict:
    """In: the hub's proxy to the auth proxy, and driver ↔ executors inside the namespace.
    Out: DNS, the Kubernetes API, the data services, and the same driver ↔ executor ports."""
    same_namespace = {"podSelector": {}}
    spark_ports = [
        {"protocol": "TCP", "port": spec.settings.driver_port},
        {"protocol": "TCP", "port": spec.settings.block_manager_port},
    ]
    egress = [
        {
            "to": [
                {"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}
            ],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
        },
        {
            "to": [{"ipBlock": {"cidr": c}} for c in spec.settings.api_server_cidrs],
            "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}],
        },
        {"to": [same_namespace], "ports": spark_ports},
        # the auth proxy checks logins and reports activity at the hub's API (and asks
        # the reservation service, one of the platform's pods, for booking notices)
        {"to": [spec.settings.hub_selector], "ports": [{"protocol": "TCP", "port": HUB_API_PORT}]},
    ]
    if spec.settings.reservations_port:
        egress[-1]["ports"].append({"protocol": "TCP", "port": spec.settings.reservations_port})
    if spec.settings.data_cidrs:
        egress.append({"to": [{"ipBlock": {"cidr": c}} for c in spec.settings.data_cidrs]})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(spec, "aglais-user", "network-policy", shared=True),
        "spec": {
            "podSelector": {"matchLabels": {LABEL_USER: spec.username}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [spec.settings.hub_selector],
                    "ports": [{"protocol": "TCP", "port": PROXY_PORT}],
                },
                {"from": [same_namespace], "ports": spark_ports},
            ],
            "egress": egress,
        },
    }


def persistent_volume_claim(spec: ServerSpec) -> dict:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(spec, spec.pvc_name, "user-storage", shared=True),
        "spec": {
            "accessModes": list(spec.settings.access_modes),
            "resources": {"requests": {"storage": str(spec.tier.storage)}},
        },
    }
    if spec.settings.storage_class:
        body["spec"]["storageClassName"] = spec.settings.storage_class
    return body


def _data_mounts(spec: ServerSpec) -> tuple[list[dict], list[dict]]:
    volumes = [{"name": v.name, **v.source} for v in spec.settings.data_volumes]
    mounts = [
        {"name": v.name, "mountPath": v.mount_path, "readOnly": True}
        for v in spec.settings.data_volumes
    ]
    return volumes, mounts


def _pod_security_context(spec: ServerSpec) -> dict:
    """The user's ids for every container of a pod (and the volume's group)."""
    uid = spec.settings.run_as_user
    return {
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def executor_pod_template(spec: ServerSpec) -> dict:
    """The pod template Spark starts its executors from (image, security, data volumes)."""
    volumes, mounts = _data_mounts(spec)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"labels": {**spec.labels, LABEL_COMPONENT: "spark-executor"}},
        "spec": {
            "securityContext": _pod_security_context(spec),
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "spark-kubernetes-executor",
                    "image": spec.settings.spark_image,
                    "securityContext": SECURITY_CONTEXT,
                    "volumeMounts": mounts,
                }
            ],
            "volumes": volumes,
        },
    }


def spark_properties(spec: ServerSpec) -> dict[str, str]:
    size = spec.size
    return {
        "spark.master": f"k8s://{spec.settings.api_server}",
        "spark.submit.deployMode": "client",
        "spark.kubernetes.namespace": spec.namespace,
        "spark.kubernetes.driver.pod.name": spec.pod_name,
        "spark.kubernetes.container.image": spec.settings.spark_image,
        "spark.kubernetes.executor.podNamePrefix": spec.pod_name,
        "spark.kubernetes.executor.podTemplateFile": f"{SPARK_CONF_DIR}/executor-pod-template.yaml",
        "spark.kubernetes.executor.podTemplateContainerName": "spark-kubernetes-executor",
        "spark.driver.host": f"{spec.driver_service}.{spec.namespace}.svc",
        "spark.driver.bindAddress": "0.0.0.0",
        "spark.driver.port": str(spec.settings.driver_port),
        "spark.driver.blockManager.port": str(spec.settings.block_manager_port),
        "spark.blockManager.port": str(spec.settings.block_manager_port),
        "spark.driver.memory": spark_memory(size.driver_memory),
        "spark.executor.cores": str(size.executor_cores),
        # the tier's quota tracks limits.cpu: executors must state one
        "spark.kubernetes.executor.limit.cores": str(size.executor_cores),
        "spark.executor.memory": spark_memory(size.executor_memory),
        # stated, so executor pods are the size the quota and the bookings count
        "spark.executor.memoryOverhead": spark_memory(spec.overhead.extra(size.executor_memory)),
        "spark.dynamicAllocation.enabled": "true",
        "spark.dynamicAllocation.shuffleTracking.enabled": "true",
        "spark.dynamicAllocation.minExecutors": "0",
        "spark.dynamicAllocation.maxExecutors": str(size.executors),
        "spark.dynamicAllocation.executorIdleTimeout": "300s",
        "spark.kubernetes.executor.deleteOnTermination": "true",
        "spark.ui.showConsoleProgress": "false",
        "spark.ui.port": str(SPARK_UI_PORT),  # the auth proxy reads running jobs there
    }


def owned_by_pod(spec: ServerSpec, pod_uid: str) -> list[dict]:
    """ownerReferences to the server's pod: the object goes when the pod does.

    No ``blockOwnerDeletion``: pods are deleted in the background, so it would change
    nothing, and where the API server enforces owner-reference permissions it needs
    ``update`` on ``pods/finalizers``, a right the hub does not have."""
    return [{"apiVersion": "v1", "kind": "Pod", "name": spec.pod_name, "uid": pod_uid}]


def _pod_owned_meta(spec: ServerSpec, name: str, component: str, pod_uid: str | None) -> dict:
    """Metadata of an object the pod owns once it exists (``pod_uid``: its uid)."""
    meta = _meta(spec, name, component)
    if pod_uid:
        meta["ownerReferences"] = owned_by_pod(spec, pod_uid)
    return meta


def spark_config_map(spec: ServerSpec, pod_uid: str | None = None) -> dict:
    """Spark's settings for the driver, owned by the pod once it exists."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _pod_owned_meta(spec, spec.config_map, "spark-config", pod_uid),
        "data": {
            "spark-defaults.conf": format_spark_defaults(spark_properties(spec)),
            "executor-pod-template.yaml": yaml.safe_dump(
                executor_pod_template(spec), sort_keys=False
            ),
        },
    }


def _resources(amount: Resources) -> dict:
    amount = {"cpu": f"{amount.millicores}m", "memory": str(amount.memory)}
    return {"requests": dict(amount), "limits": dict(amount)}


def pod(spec: ServerSpec) -> dict:
    """The server's pod: the auth proxy (the only port reachable) in front of Zeppelin."""
    volumes, data_mounts = _data_mounts(spec)
    volumes = [
        {"name": "home", "persistentVolumeClaim": {"claimName": spec.pvc_name}},
        {"name": "spark-conf", "configMap": {"name": spec.config_map}},
        {"name": "tmp", "emptyDir": {}},
        *volumes,
    ]
    env = [{"name": k, "value": v} for k, v in sorted(spec.env.items())]
    env += [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ]
    prefix = spec.env.get("JUPYTERHUB_SERVICE_PREFIX", f"/user/{spec.username}/")
    notebook_flavour = flavour_named(spec.flavour)  # UnknownFlavour names the known ones
    proxy = {
        "name": "auth-proxy",
        "image": spec.settings.zeppelin_image,
        "command": ["aglais-podproxy"],
        "args": [
            "--port",
            str(PROXY_PORT),
            "--upstream",
            f"http://127.0.0.1:{ZEPPELIN_PORT}",
            "--notebook",
            notebook_flavour.title,
            "--volume",
            HOME_MOUNT,
            "--quota-bytes",
            str(spec.tier.storage),
            "--activity-interval",
            str(spec.settings.activity_interval),
            "--spark-ui",
            f"http://127.0.0.1:{SPARK_UI_PORT}",
        ],
        "ports": [{"name": "notebook-port", "containerPort": PROXY_PORT}],
        "env": env,
        "resources": _resources(AUTH_PROXY),
        "securityContext": SECURITY_CONTEXT,
        "readinessProbe": {
            "httpGet": {"path": f"{prefix.rstrip('/')}/_aglais/health", "port": "notebook-port"},
            "periodSeconds": 1,
            "failureThreshold": 3,
        },
        "volumeMounts": [{"name": "home", "mountPath": HOME_MOUNT, "readOnly": True}],
    }
    zeppelin_env = [
        {"name": "ZEPPELIN_RUN_MODE", "value": "local"},
        {"name": "ZEPPELIN_ADDR", "value": "127.0.0.1"},
        {"name": "ZEPPELIN_PORT", "value": str(ZEPPELIN_PORT)},
        {"name": "ZEPPELIN_SERVER_CONTEXT_PATH", "value": prefix.rstrip("/")},
        {"name": "ZEPPELIN_NOTEBOOK_DIR", "value": NOTEBOOK_DIR},
        {"name": "SPARK_CONF_DIR", "value": SPARK_CONF_DIR},
        {"name": "HOME", "value": HOME_MOUNT},
        {"name": "AGLAIS_FLAVOUR", "value": spec.flavour},
        *([{"name": "AGLAIS_CATALOGUES", "value": c}] if (c := spec.settings.catalogues) else []),
        *env,
    ]
    notebook = {
        "name": notebook_flavour.container,
        "image": spec.settings.zeppelin_image,
        "command": list(notebook_flavour.command),
        "args": list(notebook_flavour.args),
        "env": zeppelin_env,
        "resources": _resources(driver_resources(spec.size, spec.overhead)),
        "securityContext": SECURITY_CONTEXT,
        "volumeMounts": [
            {"name": "home", "mountPath": HOME_MOUNT},
            {"name": "spark-conf", "mountPath": SPARK_CONF_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
            *data_mounts,
        ],
    }
    # the flavour's example notebooks into the user's Examples/ folder at every start
    # (aglais_hub.examples: a note the user changed or deleted is left as it is)
    examples = {
        "name": "examples",
        "image": spec.settings.zeppelin_image,
        "command": ["python3", "-m", "aglais_hub.examples"],
        "args": [
            EXAMPLES_IN_IMAGE,
            f"{HOME_MOUNT}/{notebook_flavour.notebook_root}/{EXAMPLES_FOLDER}",
            notebook_flavour.examples,
        ],
        "resources": _resources(AUTH_PROXY),
        "securityContext": SECURITY_CONTEXT,
        "volumeMounts": [{"name": "home", "mountPath": HOME_MOUNT}],
    }
    meta = _meta(spec, spec.pod_name, "singleuser-server")
    meta["labels"].update(spec.pod_labels)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "serviceAccountName": spec.service_account,
            "automountServiceAccountToken": True,  # the Spark driver talks to the API
            "securityContext": _pod_security_context(spec),
            "restartPolicy": "OnFailure",
            **({"initContainers": [examples]} if notebook_flavour.examples else {}),
            "containers": [proxy, notebook],
            "volumes": volumes,
        },
    }


def driver_service(spec: ServerSpec, pod_uid: str | None = None) -> dict:
    """Headless Service naming the driver for its executors, owned by the pod."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _pod_owned_meta(spec, spec.driver_service, "spark-driver", pod_uid),
        "spec": {
            "clusterIP": "None",
            "selector": {
                LABEL_USER: spec.username,
                LABEL_SERVER: spec.labels[LABEL_SERVER],
                LABEL_COMPONENT: "singleuser-server",
            },
            "ports": [
                {"name": "driver", "port": spec.settings.driver_port},
                {"name": "block-manager", "port": spec.settings.block_manager_port},
            ],
        },
    }


def namespace_objects(spec: ServerSpec) -> list[dict]:
    """Objects shared by all of a user's servers, created before any pod."""
    return [
        namespace(spec),
        service_account(spec),
        role(spec),
        role_binding(spec),
        resource_quota(spec),
        network_policy(spec),
    ]


def build_objects(spec: ServerSpec, pod_uid: str | None = None) -> list[dict]:
    """Every object of one spawn, in creation order, as they stand once the pod exists
    (``pod_uid``: its uid, which the API server gives it)."""
    return [
        *namespace_objects(spec),
        persistent_volume_claim(spec),
        spark_config_map(spec, pod_uid),
        pod(spec),
        driver_service(spec, pod_uid),
    ]
