"""LocalSparkSpawner choices that need no running hub."""

from __future__ import annotations

import asyncio

import pytest

from spawners.base import LaunchTimeout
from spawners.local_spark import LocalSparkSpawner, choose_notebook


@pytest.mark.parametrize(
    ("setting", "zeppelin_home", "chosen"),
    [
        ("auto", None, "jupyterlab"),
        ("auto", "", "jupyterlab"),
        ("auto", "/opt/zeppelin", "zeppelin"),
        ("jupyterlab", "/opt/zeppelin", "jupyterlab"),
        ("zeppelin", None, "zeppelin"),
    ],
)
def test_choose_notebook(setting, zeppelin_home, chosen):
    assert choose_notebook(setting, {"ZEPPELIN_HOME": zeppelin_home or ""}) == chosen


def test_the_start_after_the_gate_is_bounded_by_the_launch_timeout_and_says_so():
    spawner = LocalSparkSpawner(launch_timeout=0.2)

    async def api_gave_up() -> None:
        raise TimeoutError("the API retries gave up")

    async def run() -> None:
        with pytest.raises(LaunchTimeout, match="did not start within 0.2 seconds"):
            await spawner.launch(asyncio.sleep(5))
        # a timeout of the start's own is not the launch timeout's: it passes as it is
        with pytest.raises(TimeoutError, match="API retries gave up") as raised:
            await spawner.launch(api_gave_up())
        assert not isinstance(raised.value, LaunchTimeout)
        assert await spawner.launch(asyncio.sleep(0.01, result="up")) == "up"

    asyncio.run(run())
