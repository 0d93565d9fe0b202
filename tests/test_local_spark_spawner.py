"""LocalSparkSpawner choices that need no running hub."""

from __future__ import annotations

import pytest

from spawners.local_spark import choose_notebook


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
