"""LocalSparkSpawner: each user's server as a local process with local-mode Spark.

For the demo and for tests on one machine. It gives no isolation between users:
never run it where users do not trust each other.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from jupyterhub.spawner import SimpleLocalProcessSpawner, SpawnException
from traitlets import Int, List, Unicode, default

from aglais_hub.examples import EXAMPLES_DIR, FOLDER, sync_examples
from aglais_hub.flavours import AUTO, FLAVOURS, Flavour, LocalStart, UnknownFlavour, auto_flavour
from aglais_hub.flavours import flavour as flavour_named
from aglais_hub.offering import ClusterSize, ProfileRefused, Tier, local_spark_cores, with_size
from aglais_hub.quantity import spark_memory

from .base import AglaisSpawnerMixin, SpawnRefused
from .sparkconf import format_spark_defaults, local_spark_defaults


def choose_notebook(setting: str, environ: Mapping[str, str]) -> str:
    """Which notebook to run: the setting, with ``auto`` meaning the registry's choice
    for the hub's environment ``environ`` (`auto_flavour`: Zeppelin if installed, else
    JupyterLab)."""
    if setting != AUTO:
        return setting
    return auto_flavour(environ).name


def local_start(flavour: Flavour) -> LocalStart:
    """How this spawner runs ``flavour``; SpawnException for one without a hub login of
    its own (Zeppelin): it must sit behind the auth proxy, which the Zeppelin spawner
    brings. Never expose it bare."""
    if flavour.local is not None:
        return flavour.local
    runnable = " or ".join(f.name for f in FLAVOURS.values() if f.local is not None)
    unset = f" (or unset {flavour.auto_env})" if flavour.auto_env else ""
    raise SpawnRefused(
        f"{flavour.title} needs the Aglais auth proxy, which this hub does not run yet. "
        f"Set spawner.localSpark.notebook to {runnable}{unset}.",
        reason="config",
    )


class LocalSparkSpawner(AglaisSpawnerMixin, SimpleLocalProcessSpawner):
    """Run JupyterLab with PySpark in local mode, sized by the user's tier.

    Each user works in ``<data_dir>/users/<name>/``, so notebooks survive restarts.
    Spark reads a ``spark-defaults.conf`` written for each server from the tier:
    ``local[n]`` with n = max executors × executor cores (capped by the machine),
    driver memory from the tier.
    """

    data_dir = Unicode(
        "data",
        config=True,
        help="Directory of users' work (users/<name>/); relative to the hub's working directory.",
    )
    notebook = Unicode(
        "auto",
        config=True,
        help="jupyterlab, zeppelin, or auto (zeppelin when ZEPPELIN_HOME is set).",
    )
    max_cores = Int(0, config=True, help="Cap on local[n] cores per server; 0 means no cap.")
    catalogues = Unicode(
        "",
        config=True,
        help="Directory of the science catalogues, given to notebooks as AGLAIS_CATALOGUES "
        "(the example notebooks read it); relative to the hub's working directory; empty "
        "means none.",
    )
    env_keep = List(
        [
            "PATH",
            "PYTHONPATH",
            "VIRTUAL_ENV",
            "LANG",
            "LC_ALL",
            "JAVA_HOME",
            "JUPYTERHUB_SINGLEUSER_APP",
        ],
        config=True,
        help="Environment variables passed from the hub to user servers.",
    )

    launch_summary: str = ""
    profile_size: ClusterSize | None = None  # the spawn's named size (the tier's by default)

    def notebook_flavour(self) -> Flavour:
        """The flavour this spawner runs: ``notebook``, with ``auto`` decided here."""
        return flavour_named(choose_notebook(self.notebook, os.environ))

    def _planned_start(self) -> LocalStart:
        """The flavour's LocalStart, for the defaults of ``cmd`` and ``default_url``; for
        a flavour that cannot run here any that can (start() refuses it before a run)."""
        try:
            return local_start(self.notebook_flavour())
        except (UnknownFlavour, SpawnException):
            return auto_flavour({}).local  # type: ignore[return-value]

    @default("cmd")
    def _cmd_default(self) -> list[str]:
        # The hub's own interpreter, so the server and its kernel see pyspark.
        return [sys.executable, "-m", self._planned_start().module]

    @default("args")
    def _args_default(self) -> list[str]:
        # Jupyter Server refuses to run as root unless told; the demo may run as root.
        return ["--ServerApp.allow_root=True"] if os.geteuid() == 0 else []

    @default("default_url")
    def _default_url_default(self) -> str:
        return self._planned_start().url

    @default("home_dir")
    def _default_home_dir(self) -> str:
        return str(Path(self.data_dir).resolve() / "users" / self.user.name)

    @property
    def spark_conf_dir(self) -> Path:
        server = self.name or "default"
        return Path(self.data_dir).resolve() / "spark-conf" / self.user.name / server

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        env.update(
            SPARK_CONF_DIR=str(self.spark_conf_dir),
            SPARK_LOCAL_IP="127.0.0.1",
            PYSPARK_PYTHON=sys.executable,
            PYSPARK_DRIVER_PYTHON=sys.executable,
        )
        if self.tier:
            env["AGLAIS_TIER"] = self.tier.name
        if self.catalogues:
            env["AGLAIS_CATALOGUES"] = str(Path(self.catalogues).resolve())
        return env

    def check_options(self, tier: Tier) -> None:
        """The named size (``profile``) this tier may use, as the Zeppelin spawner: the
        spawn gate counts that size, so that size is what runs."""
        try:
            profile = self.user_options.get("profile")
            self.profile_size, _ = self.offering.server_size(tier, profile)
        except ProfileRefused as refused:
            raise SpawnRefused(str(refused), reason="profile", status_code=403) from None

    async def start(self) -> tuple[str, int]:
        self.launch_summary = ""
        tier = await self.prepare_start()
        try:
            flavour = self.notebook_flavour()
        except UnknownFlavour as unknown:
            raise SpawnRefused(str(unknown), reason="config") from None
        local_start(flavour)  # refuses a flavour this spawner cannot run
        if self.gate_size is not None:  # a booking (or the gate's fallback) sets the size
            tier = with_size(tier, self.gate_size)
        elif self.profile_size is not None:
            tier = with_size(tier, self.profile_size)
        cores = local_spark_cores(tier, os.cpu_count() or 1, self.max_cores)
        self.spark_conf_dir.mkdir(parents=True, exist_ok=True)
        (self.spark_conf_dir / "spark-defaults.conf").write_text(
            format_spark_defaults(local_spark_defaults(tier, cores))
        )
        Path(self.home_dir).mkdir(parents=True, exist_ok=True)
        self.notebook_dir = self.home_dir
        try:  # the local server's root is the home directory itself
            examples = sync_examples(EXAMPLES_DIR, Path(self.home_dir) / FOLDER, flavour.examples)
            self.log.info("examples for %s: %s", self._log_name, examples.summary())
        except OSError as error:  # a convenience: never the reason a server does not start
            self.log.warning("examples for %s not copied: %s", self._log_name, error)
        self.launch_summary = (
            f"Starting {flavour.title} with Spark local[{cores}] and "
            f"{spark_memory(tier.driver_memory)} driver memory (tier {tier.display_name})"
        )
        self.log.info("%s for %s", self.launch_summary, self._log_name)
        return await self.launch(super().start())

    async def progress(self) -> AsyncIterator[dict]:
        async for event in self.gate_progress():
            yield event
        for _ in range(60):
            if self.launch_summary:
                yield {"progress": 50, "message": self.launch_summary}
                return
            await asyncio.sleep(0.5)
