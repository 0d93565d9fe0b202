"""The notebook flavours a server can run (Zeppelin, JupyterLab, ...), in one registry.

A flavour is the notebook program in the notebook container of a server's pod, behind
the auth proxy, with the same Spark wiring whichever it is. What differs between
flavours is in its `Flavour`, and every place that cares looks it up here: the pod
(``spawners/zeppelin/objects.py``), the values schema's enums (``aglais_hub.config``),
the spawn page's messages (``spawners/zeppelin/podstatus.py``), the local spawner
(``spawners/local_spark.py``) and the testing cluster's node agent
(``aglais_hub.testing.nodeagent.images``). Adding a flavour is one `register` call.

Here, not under ``spawners/``: the values loader validates flavour names and must not
import a spawner. Nothing but the standard library is imported, so the hub, the pod
image and the node agent can all load it.

What every flavour shares, so that no field says it:

- the pod tells the notebook where to listen and under which path:
  ``$ZEPPELIN_ADDR:$ZEPPELIN_PORT`` (127.0.0.1:8080, where the auth proxy forwards) and
  ``$ZEPPELIN_SERVER_CONTEXT_PATH`` (the hub's prefix for the server); its Spark
  configuration is in ``$SPARK_CONF_DIR`` and ``$HOME`` is the user's volume;
- readiness: the pod is ready when its auth proxy is; the proxy lets users through to
  the notebook once ``<prefix>/api/version`` answers with any status below 500, and
  shows its "starting" page until then;
- activity: the auth proxy reports forwarded requests, WebSocket frames and the Spark
  driver's running jobs to the hub, whose culler acts on that; no flavour has a rule
  of its own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

# The notebook image's start script (images/zeppelin/entrypoint.sh): one branch per
# flavour that names it as its command.
ENTRYPOINT = "/opt/aglais/entrypoint.sh"
# The pod's other container: no flavour's container may take its name.
AUTH_PROXY_CONTAINER = "auth-proxy"
# spawner.localSpark.notebook's word for "let the local spawner choose"
AUTO = "auto"
_DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")


class UnknownFlavour(LookupError):
    """A flavour name no registration gave; the message names the known ones."""


@dataclass(frozen=True)
class LocalStart:
    """How the local spawner runs a flavour: ``python -m <module>`` with the hub's own
    interpreter (so the server and its kernel see pyspark), opened at ``url``.

    The local spawner has no auth proxy, so the module must check the hub's login
    itself, as ``jupyterhub.singleuser`` does."""

    module: str
    url: str = "/"


@dataclass(frozen=True)
class Flavour:
    """One notebook flavour: everything that differs between the notebooks a server runs.

    ``command`` and ``args`` start the pod's notebook container (``$(VAR)`` expands from
    the container's env, as Kubernetes does). Zeppelin and JupyterLab use the image's
    `ENTRYPOINT` with their name; another flavour names its own command (a program of
    the notebook image) and so needs no branch in the entrypoint.
    """

    name: str  # as values name it (sizes.<name>.flavour, spawner.localSpark.notebook)
    title: str  # as people read it ("JupyterLab")
    command: tuple[str, ...]
    args: tuple[str, ...] = ()
    container: str = ""  # the notebook container's name in the pod; the name by default
    starting: str = ""  # the spawn page's line once it started; "<title> is starting"
    local: LocalStart | None = None  # None: the local spawner refuses it (no hub login)
    auto_env: str = ""  # the local spawner's "auto" picks it when this variable is set
    # "module:function", the node agent's builder of its local command; "": its
    # container's command and args as given (aglais_hub.testing.nodeagent.images)
    stand_in: str = ""
    # the suffix of its example notebooks in notebooks/examples/ (aglais_hub.examples
    # copies them into each user's Examples/ folder); "": it has none
    examples: str = ""
    # its notebook folder under $HOME in a pod (JupyterLab's root, Zeppelin's notebook dir)
    notebook_root: str = "notebook"

    def __post_init__(self) -> None:
        # frozen: defaults that derive from other fields are filled in once, here
        if not self.container:
            object.__setattr__(self, "container", self.name)
        if not self.starting:
            object.__setattr__(self, "starting", f"{self.title} is starting")


# By name, in registration order (the order the values schema lists them in).
FLAVOURS: dict[str, Flavour] = {}


def register(flavour: Flavour) -> Flavour:
    """Add ``flavour`` to the registry (and return it); ValueError if it cannot be told
    apart from the pod's other containers or from a flavour already registered."""
    for what, value in (("name", flavour.name), ("container", flavour.container)):
        if not _DNS_LABEL.fullmatch(value):
            raise ValueError(f"flavour {what} {value!r} is not a DNS label (a-z, 0-9, -)")
    if flavour.name == AUTO:
        raise ValueError(f"flavour name {AUTO!r} means 'choose one' in spawner.localSpark")
    if flavour.container == AUTH_PROXY_CONTAINER:
        raise ValueError(f"container {AUTH_PROXY_CONTAINER!r} is the auth proxy's")
    if not flavour.command:
        raise ValueError(f"flavour {flavour.name!r} has no command")
    if flavour.stand_in and ":" not in flavour.stand_in:
        raise ValueError(f"stand_in {flavour.stand_in!r} is not 'module:function'")
    for other in FLAVOURS.values():
        if other.name == flavour.name:
            raise ValueError(f"flavour {flavour.name!r} is already registered")
        if other.container == flavour.container:
            raise ValueError(f"flavour {other.name!r} already has container {flavour.container!r}")
    FLAVOURS[flavour.name] = flavour
    return flavour


def names() -> tuple[str, ...]:
    """Every registered flavour's name, in registration order."""
    return tuple(FLAVOURS)


def flavour(name: str) -> Flavour:
    """The flavour called ``name``; UnknownFlavour naming the known ones if none is."""
    try:
        return FLAVOURS[name]
    except KeyError:
        known = ", ".join(FLAVOURS) or "none"
        raise UnknownFlavour(f"unknown notebook flavour {name!r} (flavours: {known})") from None


def auto_flavour(environ: Mapping[str, str]) -> Flavour:
    """The local spawner's ``auto`` choice: the first flavour whose ``auto_env`` is set
    in ``environ`` (Zeppelin where ZEPPELIN_HOME says it is installed), else the first
    one the local spawner can run."""
    for candidate in FLAVOURS.values():
        if candidate.auto_env and environ.get(candidate.auto_env):
            return candidate
    for candidate in FLAVOURS.values():
        if candidate.local is not None:
            return candidate
    raise UnknownFlavour("no registered notebook flavour runs in the local spawner")


ZEPPELIN = register(
    Flavour(
        name="zeppelin",
        title="Zeppelin",
        command=(ENTRYPOINT,),
        args=("zeppelin",),
        starting="Zeppelin is starting (its Java server takes up to a minute)",
        auto_env="ZEPPELIN_HOME",
        stand_in="aglais_hub.testing.nodeagent.images:zeppelin_standin",
    )
)
JUPYTERLAB = register(
    Flavour(
        name="jupyterlab",
        title="JupyterLab",
        command=(ENTRYPOINT,),
        args=("jupyterlab",),
        local=LocalStart("jupyterhub.singleuser", "/lab"),
        stand_in="aglais_hub.testing.nodeagent.images:jupyterlab_flavour",
        examples=".ipynb",
        notebook_root="notebooks",
    )
)
