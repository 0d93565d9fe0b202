"""Which container images run as local processes, and how (ours: the node agent's
stand-in for a container runtime and an image registry).

A registry maps image name patterns (fnmatch) to command builders. A builder gets
the container's context (resolved env, args, pod IP, volume directories) and
returns the local command that stands for the container. Unmapped images run as
inert containers: Running, no process.

Test images every registry knows (by their tag, on any image name):

- ``<image>:unpullable`` cannot be pulled: the container stays Waiting (ErrImagePull,
  then ImagePullBackOff) and the pod Pending, as with an image that does not exist;
- ``<image>:crashing`` pulls and starts, prints a line and exits 1 at once, so it
  restarts with a back-off (CrashLoopBackOff);
- ``*aglais/zeppelin:slow`` is the Aglais notebook image whose Zeppelin starts
  listening only after ``SLOW_START_SECONDS`` (as its JVM takes its time); its auth
  proxy starts at once.

The chart's own images run from this checkout: ``*aglais/hub*`` (the hub, the reservation
service and the development identity provider: the manifest's command with this venv's
``jupyterhub``/``aglais-hub``, the repo's ``node`` programs, and the image's own files,
``HUB_IMAGE_FILES``, at their places in the repo) and ``*configurable-http-proxy*`` (the
repo's ``node_modules`` proxy, with the manifest's arguments). In the notebook image a
``python3`` command (the ``examples`` init container) runs with this interpreter, its
paths under volumes and among ``NOTEBOOK_IMAGE_FILES`` at their host places.

Tests may register more builders (``register``, or the agent's ``--image``) and more
unpullable patterns (``unpullable``). What is real: the processes (the auth proxy,
PySpark, executor JVMs from pyspark's jars, JupyterLab); what is ours: the mapping, the
translation of container paths to host directories, and the Zeppelin stand-in.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from spawners.zeppelin.objects import EXAMPLES_IN_IMAGE

from ...flavours import ENTRYPOINT, FLAVOURS, ZEPPELIN, Flavour

UNPULLABLE_TAG = "unpullable"
CRASHING_TAG = "crashing"
SLOW_TAG = "slow"
SLOW_START_SECONDS = 6
# where the ServiceAccount admission plugin mounts the pod's projected token and CA
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@dataclass
class ContainerContext:
    """What a container would see, translated to this machine."""

    pod: dict
    container: dict
    pod_ip: str
    env: dict[str, str]
    mounts: dict[str, Path]  # mountPath → host directory
    pod_dir: Path

    @property
    def command(self) -> list[str]:
        return [self.expand(a) for a in self.container.get("command") or []]

    @property
    def args(self) -> list[str]:
        return [self.expand(a) for a in self.container.get("args") or []]

    def expand(self, text: str) -> str:
        """Kubernetes $(VAR) expansion from the container's env; $$ escapes."""
        return re.sub(
            r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
            lambda m: "$" if m.group(0) == "$$" else self.env.get(m.group(1), m.group(0)),
            text,
        )

    def host_path(self, container_path: str) -> Path | None:
        """The host directory behind a path inside the container, if a volume covers it."""
        for mount, directory in sorted(self.mounts.items(), key=lambda m: -len(m[0])):
            if container_path == mount or container_path.startswith(mount.rstrip("/") + "/"):
                return directory / container_path[len(mount) :].lstrip("/")
        return None

    def local_paths(self, text: str, image_files: dict[str, Path] | None = None) -> str:
        """Container paths under a volume mount (or among the image's own ``image_files``),
        rewritten to their host paths (in one pass, so a rewritten path is never rewritten
        again)."""
        places = {**(image_files or {}), **self.mounts}
        if not places:
            return text
        mounts = sorted((m.rstrip("/") or "/" for m in places), key=len, reverse=True)
        directories = {m.rstrip("/") or "/": d for m, d in places.items()}
        # only where a mount path starts a path (not inside a longer path)
        pattern = (
            r"(?<![\w./-])(" + "|".join(re.escape(m) for m in mounts) + r")(?=/|$|\s|:|;|'|\")"
        )
        return re.sub(pattern, lambda match: str(directories[match.group(1)]), text)

    def bind_here(self, text: str) -> str:
        """Pods have no network namespace here: a bind to all addresses binds the pod IP."""
        return text.replace("0.0.0.0", self.pod_ip)

    def host_env(self, *keep: str) -> dict[str, str]:
        """The container's env over the few host variables a local process needs."""
        base = {
            k: os.environ[k]
            for k in ("PATH", "LANG", "LC_ALL", "JAVA_HOME", *keep)
            if k in os.environ
        }
        return {**base, **self.env}


@dataclass
class LocalCommand:
    """A process that stands for a container."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path | None = None


Builder = Callable[[ContainerContext], "LocalCommand | None"]  # None: an inert container


@dataclass
class ImageRegistry:
    """Image patterns → builders; the pattern registered last wins. ``unpullable``:
    patterns of images no pull ever gets (see ``pull_error``)."""

    rules: list[tuple[str, Builder]] = field(default_factory=list)
    unpullable: list[str] = field(default_factory=list)

    def register(self, pattern: str, builder: Builder) -> None:
        self.rules.insert(0, (pattern, builder))

    def builder_for(self, image: str) -> Builder | None:
        for pattern, builder in self.rules:
            if fnmatch.fnmatchcase(image, pattern):
                return builder
        return None

    def pull_error(self, image: str) -> str | None:
        """Why ``image`` cannot be pulled, worded as containerd tells a kubelet (None:
        it can; images "are present on the machine", nothing is ever fetched)."""
        if not any(fnmatch.fnmatchcase(image, pattern) for pattern in self.unpullable):
            return None
        return (
            f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": '
            f'failed to resolve reference "{image}": {image}: not found'
        )


def run_as_given(ctx: ContainerContext) -> LocalCommand:
    """command + args run on this machine ("python" is this interpreter); paths under
    volume mounts in args and env point at the volumes' host directories."""
    argv = [ctx.local_paths(ctx.bind_here(a)) for a in ctx.command + ctx.args]
    if not argv:
        raise ValueError("a locally run image needs a command")
    if argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    env = {k: ctx.local_paths(v) for k, v in ctx.env.items()}
    env = {**ctx.host_env(), **env, "HOME": str(ctx.host_path("/home") or ctx.pod_dir)}
    workdir = ctx.host_path(ctx.container.get("workingDir") or "") or ctx.pod_dir
    return LocalCommand(argv, env, workdir)


def jupyterhub_singleuser(ctx: ContainerContext) -> LocalCommand:
    """A Jupyter single-user image: this machine's jupyterhub-singleuser, bound to the pod IP."""
    args = ctx.command + ctx.args
    if args and args[0].endswith("jupyterhub-singleuser"):
        args = args[1:]
    env = {k: ctx.bind_here(v) for k, v in ctx.host_env().items()}
    home = ctx.host_path("/home/jovyan") or ctx.pod_dir / "home"
    home.mkdir(parents=True, exist_ok=True)
    env["HOME"] = str(home)
    extra = ["--ServerApp.allow_root=True"] if os.geteuid() == 0 else []
    return LocalCommand([sys.executable, "-m", "jupyterhub.singleuser", *args, *extra], env, home)


def notebook_flavour(ctx: ContainerContext) -> Flavour | None:
    """The flavour a notebook-image container runs: the one whose command and args (as
    objects.pod renders them) it was given, or the image's entrypoint with its name;
    None for the auth proxy or anything else."""
    command = ctx.container.get("command") or []
    args = ctx.container.get("args") or []
    for candidate in FLAVOURS.values():
        if args[: len(candidate.args)] != list(candidate.args):
            continue
        if command == list(candidate.command) or (
            not command and candidate.command == (ENTRYPOINT,) and candidate.args
        ):
            return candidate
    return None


def flavour_builder(flavour: Flavour) -> Builder:
    """The builder of a flavour's local command: its ``stand_in``, else `flavour_as_given`."""
    if not flavour.stand_in:
        return flavour_as_given
    module, _, name = flavour.stand_in.partition(":")
    return getattr(importlib.import_module(module), name)


def aglais_notebook(ctx: ContainerContext) -> LocalCommand | None:
    """The Aglais notebook image: its auth proxy runs for real; each flavour's notebook as
    its registration says (``Flavour.stand_in``): Zeppelin, which cannot be installed here,
    is the project's stand-in (aglais_hub.testing.zeppelin_standin) with real PySpark,
    JupyterLab this machine's, another flavour its own command as given."""
    flavour = notebook_flavour(ctx)
    if flavour is not None:
        return flavour_builder(flavour)(ctx)
    if (ctx.command or [""])[0] in ("python", "python3"):  # e.g. the examples' init container
        argv = [ctx.local_paths(a, NOTEBOOK_IMAGE_FILES) for a in ctx.command + ctx.args]
        return LocalCommand([sys.executable, *argv[1:]], ctx.host_env(), ctx.pod_dir)
    if (ctx.command or [""])[0] != "aglais-podproxy":
        return None
    # inside a pod 127.0.0.1 is the pod's own address; here that is the pod IP
    args = [a.replace("127.0.0.1", ctx.pod_ip) for a in ctx.args]
    args = [ctx.local_paths(a) for a in args]
    env = {**ctx.host_env(), "AGLAIS_PROXY_IP": ctx.pod_ip, "HOME": str(ctx.pod_dir)}
    account = ctx.host_path(SERVICE_ACCOUNT_DIR)
    if account is not None:  # its own token and CA, where they are on this machine
        env["AGLAIS_SERVICE_ACCOUNT_DIR"] = str(account)
    return LocalCommand([sys.executable, "-m", "aglais_hub.podproxy", *args], env, ctx.pod_dir)


def jupyterlab_flavour(ctx: ContainerContext) -> LocalCommand:
    """The JupyterLab branch of the notebook entrypoint, with this machine's JupyterLab."""
    command = zeppelin_standin(ctx)  # the same environment and Spark configuration
    env = command.env
    root = Path(env["HOME"]) / "notebooks"
    root.mkdir(parents=True, exist_ok=True)
    extra = ["--ServerApp.allow_root=True"] if os.geteuid() == 0 else []
    argv = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        f"--ip={ctx.pod_ip}",
        f"--port={env.get('ZEPPELIN_PORT', '8080')}",
        f"--ServerApp.base_url={env.get('ZEPPELIN_SERVER_CONTEXT_PATH', '/')}",
        f"--ServerApp.root_dir={root}",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        # as entrypoint.sh: the auth proxy makes the cross-site and origin checks
        "--ServerApp.disable_check_xsrf=True",
        "--ServerApp.allow_origin=*",
        *extra,
    ]
    return LocalCommand(argv, env, root)


def flavour_as_given(ctx: ContainerContext) -> LocalCommand:
    """A flavour with no stand-in of its own: its container's command and args as given
    (``python`` is this interpreter), in the notebook environment made to work here as for
    Zeppelin's stand-in: Spark's configuration, and $(ZEPPELIN_ADDR) the pod IP."""
    prepared = zeppelin_standin(ctx)
    here = replace(ctx, env=prepared.env)  # $(VAR) in the args expands from this env
    argv = [here.local_paths(a) for a in here.command + here.args]
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    return LocalCommand(argv, prepared.env, prepared.cwd)


# This checkout: the hub image is built from it (images/hub/Dockerfile).
REPO = Path(__file__).resolve().parents[3]
# The hub image's own files (images/hub/Dockerfile, WORKDIR /srv/aglais) where this checkout
# has them; tests/test_nodeagent_images.py keeps the two in step.
HUB_IMAGE_FILES = {
    "/srv/aglais/jupyterhub_config.py": REPO / "config" / "jupyterhub_config.py",
    "/srv/aglais/devidp": REPO / "aglais_hub" / "devidp",
    "/srv/aglais/node_modules": REPO / "node_modules",
}
# The notebook image's own files (images/zeppelin/Dockerfile) where this checkout has them
NOTEBOOK_IMAGE_FILES = {EXAMPLES_IN_IMAGE: REPO / "notebooks" / "examples"}
HUB_IMAGE_CMD = ["jupyterhub", "-f", "/srv/aglais/jupyterhub_config.py"]
# The hub image's PATH (its Python environment, then node_modules/.bin) on this machine
HUB_IMAGE_PATH = (Path(sys.executable).parent, REPO / "node_modules" / ".bin")


def image_program(name: str) -> str:
    """A program of the hub image's PATH (its Python environment, then node_modules/.bin)
    as this machine has it: this venv's, then the repo's node_modules, then PATH."""
    if "/" in name:
        return name
    for directory in HUB_IMAGE_PATH:
        if (directory / name).exists():
            return str(directory / name)
    return name


def service_account_kubeconfig(ctx: ContainerContext) -> Path | None:
    """The pod's own service-account token and CA as a kubeconfig (None without a token).

    In a pod, in-cluster clients find the token at SERVICE_ACCOUNT_DIR; that directory does
    not exist on this machine, so the same two files (read from the volume, so a rotated
    token is seen) are named in a kubeconfig that the clients' fallback reads."""
    account = ctx.host_path(SERVICE_ACCOUNT_DIR)
    if account is None or not (account / "token").is_file():
        return None
    host = ctx.env.get("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    port = ctx.env.get("KUBERNETES_SERVICE_PORT", "443")
    namespace = ctx.pod["metadata"]["namespace"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "pod",
        "clusters": [
            {
                "name": "cluster",
                "cluster": {
                    "server": f"https://{host}:{port}",
                    "certificate-authority": str(account / "ca.crt"),
                },
            }
        ],
        "users": [{"name": "pod", "user": {"tokenFile": str(account / "token")}}],
        "contexts": [
            {
                "name": "pod",
                "context": {"cluster": "cluster", "user": "pod", "namespace": namespace},
            }
        ],
    }
    path = ctx.pod_dir / f"{ctx.container['name']}.serviceaccount.kubeconfig"
    path.write_text(json.dumps(config))
    return path


def hub_image(ctx: ContainerContext) -> LocalCommand:
    """The hub image: the manifest's command and args (the image's CMD without one) with
    its programs and files from this checkout; binds to all addresses bind the pod IP."""
    argv = ctx.command + ctx.args or list(HUB_IMAGE_CMD)
    argv = [ctx.local_paths(ctx.bind_here(a), HUB_IMAGE_FILES) for a in argv]
    argv[0] = image_program(argv[0])
    env = {k: ctx.local_paths(ctx.bind_here(v), HUB_IMAGE_FILES) for k, v in ctx.env.items()}
    env = {**ctx.host_env(), **env, "HOME": str(ctx.pod_dir), "PYTHONUNBUFFERED": "1"}
    env["PATH"] = os.pathsep.join([*map(str, HUB_IMAGE_PATH), env.get("PATH", "")])
    env.setdefault("AGLAIS_VALUES", ctx.local_paths("/etc/aglais/values.yaml"))
    kubeconfig = service_account_kubeconfig(ctx)
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    workdir = ctx.host_path(ctx.container.get("workingDir") or "") or ctx.pod_dir
    workdir.mkdir(parents=True, exist_ok=True)
    return LocalCommand(argv, env, workdir)


def http_proxy_image(ctx: ContainerContext) -> LocalCommand:
    """configurable-http-proxy's image: the repo's proxy with the manifest's arguments; an
    empty --ip/--api-ip (all addresses) is the pod IP here."""
    argv = ctx.command + ctx.args or ["configurable-http-proxy"]
    argv = [re.sub(r"^(--(?:api-)?ip)=$", rf"\1={ctx.pod_ip}", ctx.bind_here(a)) for a in argv]
    argv[0] = image_program(argv[0])
    env = {**ctx.host_env(), "HOME": str(ctx.pod_dir)}
    return LocalCommand(argv, env, ctx.pod_dir)


def spark_api_properties(ctx: ContainerContext) -> dict[str, str]:
    """Where and as whom a Spark driver in this container reaches the API server.

    With the pod's service-account token mounted (the real control plane): over https
    to KUBERNETES_SERVICE_HOST/PORT, verified with the mount's ca.crt and authenticated
    with the mount's token, the container's own files at their host paths. In production
    fabric8 finds those two files by itself at SERVICE_ACCOUNT_DIR; here that directory
    does not exist on the host, so Spark's documented client-mode properties name them.
    Never the admin's kubeconfig. Without a token (automountServiceAccountToken off):
    https with no credentials, so the API server refuses the driver as it would in a pod.

    Spark 3.5 reads ``oauthTokenFile`` once, when it creates its Kubernetes client
    (SparkKubernetesClientFactory passes the file's contents to fabric8 as a fixed
    oauthToken), so a rotated token is not picked up by a running driver. The
    kube-apiserver's --service-account-extend-token-expiration (on by default) keeps
    a pod's admission-default token valid for a year, which is what carries it.
    """
    host = ctx.env.get("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    port = ctx.env.get("KUBERNETES_SERVICE_PORT", "443")
    account = ctx.host_path(SERVICE_ACCOUNT_DIR)
    master = {"spark.master": f"k8s://https://{host}:{port}"}
    if account is None or not (account / "token").is_file():
        return master
    return {
        **master,
        "spark.kubernetes.authenticate.caCertFile": str(account / "ca.crt"),
        "spark.kubernetes.authenticate.oauthTokenFile": str(account / "token"),
    }


def zeppelin_standin(ctx: ContainerContext) -> LocalCommand:
    """The Zeppelin stand-in, with the pod's Spark configuration made to work here:
    the API server is the testing cluster's, as the pod's ServiceAccount
    (``spark_api_properties``), and the driver is reached at the pod IP (cluster DNS
    does not resolve here)."""
    env = {k: ctx.local_paths(v) for k, v in ctx.env.items()}
    env = {**ctx.host_env(), **env}
    env["ZEPPELIN_ADDR"] = ctx.pod_ip
    conf_dir = Path(env.get("SPARK_CONF_DIR", ctx.pod_dir))
    local_conf = ctx.pod_dir / "spark-conf"
    local_conf.mkdir(parents=True, exist_ok=True)
    lines = []
    defaults = conf_dir / "spark-defaults.conf"
    overrides = {
        **spark_api_properties(ctx),
        "spark.driver.host": ctx.pod_ip,
        "spark.driver.bindAddress": ctx.pod_ip,
    }
    for line in defaults.read_text().splitlines() if defaults.exists() else []:
        key, _, value = line.partition(" ")
        if key.startswith("#") or not key:
            continue
        lines.append(f"{key} {overrides.pop(key, ctx.local_paths(value))}")
    lines += [f"{k} {v}" for k, v in overrides.items()]
    (local_conf / "spark-defaults.conf").write_text("\n".join(lines) + "\n")
    env.update(
        SPARK_CONF_DIR=str(local_conf),
        SPARK_LOCAL_IP=ctx.pod_ip,
        PYSPARK_PYTHON=sys.executable,
        KUBECONFIG=str(ctx.pod_dir / "no-kubeconfig"),
    )
    for key in [k for k in env if "proxy" in k.lower()]:
        del env[key]
    home = Path(env.get("HOME", ctx.pod_dir))
    return LocalCommand([sys.executable, "-m", "aglais_hub.testing.zeppelin_standin"], env, home)


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def spark_executor(ctx: ContainerContext) -> LocalCommand:
    """The `executor` branch of the Spark image's entrypoint.sh, with pyspark's jars."""
    if (ctx.args or ["executor"])[0] != "executor":
        return run_as_given(ctx)
    env = ctx.host_env()
    opts = [
        env[k]
        for k in sorted(
            (k for k in env if k.startswith("SPARK_JAVA_OPT_")),
            key=lambda k: int(k.rsplit("_", 1)[1]),
        )
    ]
    memory = env.get("SPARK_EXECUTOR_MEMORY", "1g")
    home = spark_home()
    java = str(Path(env["JAVA_HOME"]) / "bin" / "java") if env.get("JAVA_HOME") else "java"
    local_dirs = ctx.pod_dir / "spark-local"
    local_dirs.mkdir(parents=True, exist_ok=True)
    env.update(
        SPARK_HOME=str(home),
        SPARK_LOCAL_DIRS=str(local_dirs),
        PYSPARK_PYTHON=sys.executable,
        SPARK_LOCAL_IP=ctx.pod_ip,
        HOME=str(ctx.pod_dir),
    )
    argv = [
        java,
        *opts,
        f"-Xms{memory}",
        f"-Xmx{memory}",
        "-cp",
        f"{home}/conf:{home}/jars/*",
        "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend",
        "--driver-url",
        env["SPARK_DRIVER_URL"],
        "--executor-id",
        env["SPARK_EXECUTOR_ID"],
        "--cores",
        env.get("SPARK_EXECUTOR_CORES", "1"),
        "--app-id",
        env["SPARK_APPLICATION_ID"],
        "--hostname",
        ctx.pod_ip,
        "--resourceProfileId",
        env.get("SPARK_RESOURCE_PROFILE_ID", "0"),
        "--podName",
        ctx.pod["metadata"]["name"],
    ]
    return LocalCommand(argv, env, ctx.pod_dir)


def slow_notebook(ctx: ContainerContext) -> LocalCommand | None:
    """The notebook image with Zeppelin listening only after SLOW_START_SECONDS."""
    command = aglais_notebook(ctx)
    if command is not None and notebook_flavour(ctx) == ZEPPELIN:  # its JVM's slow start
        command.argv = [
            "/bin/sh",
            "-c",
            f'sleep {SLOW_START_SECONDS}; exec "$@"',
            "slow",
            *command.argv,
        ]
    return command


def crashing(ctx: ContainerContext) -> LocalCommand:
    """A container that fails at once, every time (exit 1)."""
    image = ctx.container.get("image", "")
    code = f"import sys; print('{image} crashed at start (a test image)', flush=True); sys.exit(1)"
    return LocalCommand([sys.executable, "-c", code], ctx.host_env(), ctx.pod_dir)


def exec_command(
    ctx: ContainerContext, argv: list[str], env: dict[str, str], cwd: Path | None
) -> LocalCommand:
    """``kubectl exec``'s command in a container, as a local process in its environment:
    container paths under its volumes point at their host directories, ``python`` is this
    interpreter, and ``tar`` names what it archives by the container paths (so that
    ``kubectl cp``, which runs ``tar cf - PATH``, finds the names it asked for)."""
    args = [ctx.local_paths(a) for a in argv]
    if args[0] in ("python", "python3"):
        args[0] = sys.executable
    if args[0] == "tar":
        places = sorted(ctx.mounts.items(), key=lambda m: -len(str(m[1])))
        # after the rest: tar's first argument may be old-style bundled options ("cf")
        args += [
            f"--transform=s|^{str(host).lstrip('/')}|{mount.strip('/')}|" for mount, host in places
        ]
    return LocalCommand(args, dict(env), cwd)


def default_registry() -> ImageRegistry:
    """Mappings every testing cluster starts with (tests may register more), and the
    test images of the module docstring."""
    registry = ImageRegistry(unpullable=[f"*:{UNPULLABLE_TAG}"])
    registry.register("local/*", run_as_given)
    registry.register("*spark*", spark_executor)
    registry.register("*singleuser*", jupyterhub_singleuser)
    registry.register("*aglais/hub*", hub_image)
    registry.register("*configurable-http-proxy*", http_proxy_image)
    registry.register("*aglais/zeppelin*", aglais_notebook)
    registry.register(f"*aglais/zeppelin:{SLOW_TAG}", slow_notebook)
    registry.register(f"*:{CRASHING_TAG}", crashing)
    return registry
