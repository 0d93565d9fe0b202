"""End to end: the real `jupyterhub`, configurable-http-proxy and npm oidc-provider.

Users log in through the provider's own login and consent pages, start servers
through the hub's spawn page, and run PySpark in a real kernel of their server.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aglais_hub.examples import EXAMPLES_DIR, example_files
from aglais_hub.flavours import JUPYTERLAB
from aglais_hub.testing.hubclient import HubClient, LoginRefused

pytestmark = pytest.mark.e2e

SPARK_SUM = """
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
print(spark.range(10**6).selectExpr('sum(id)').collect()[0][0])
print(spark.sparkContext.master, spark.conf.get('spark.driver.memory'))
spark.stop()
"""


def logged_in(platform, name: str) -> HubClient:
    client = HubClient(platform.url)
    client.login(name, name)
    return client


def admin_api(platform, path: str):
    admin = logged_in(platform, "admin")
    response = admin.get(f"hub/api/{path}")
    response.raise_for_status()
    return response.json()


def test_alice_logs_in_starts_her_server_and_runs_spark(platform):
    alice = HubClient(platform.url)
    landing = alice.login("alice", "alice")
    assert landing.url == platform.url + "hub/home"
    assert alice.whoami()["groups"] == ["users"]

    event = alice.start_server()
    assert event.get("ready"), event
    messages = [e.get("message", "") for e in event["events"]]
    assert any("Starting JupyterLab with Spark local[2]" in m for m in messages), messages

    lab = alice.open_server("user/alice/")
    assert lab.status_code == 200 and lab.url.endswith("/user/alice/lab")
    output = alice.run_code("user/alice/", SPARK_SUM)
    lines = output.strip().splitlines()
    assert "499999500000" in lines
    # the standard tier: 2 executors × 1 core, 1 GiB driver
    assert "local[2] 1024m" in lines

    bob = logged_in(platform, "bob")
    assert bob.get("user/alice/lab").status_code == 403


def test_a_new_user_finds_the_examples_in_her_folder_and_the_catalogue_they_read(platform):
    platform.set_user("erin", ["users"])
    erin = logged_in(platform, "erin")
    assert erin.start_server().get("ready")
    erin.open_server("user/erin/")
    shipped = sorted(example_files(EXAMPLES_DIR, JUPYTERLAB.examples))
    assert shipped
    listing = erin.get("user/erin/api/contents/Examples").json()["content"]
    assert sorted(item["name"] for item in listing) == shipped
    where = erin.run_code("user/erin/", "import os; print(os.environ['AGLAIS_CATALOGUES'])")
    assert (Path(where.strip()) / "gaia_source").is_dir()


def test_admin_gets_the_admin_panel_and_alice_does_not(platform):
    admin = logged_in(platform, "admin")
    assert admin.whoami()["admin"] is True
    page = admin.get("hub/admin")
    assert page.status_code == 200 and "admin" in page.text.lower()
    alice = logged_in(platform, "alice")
    assert alice.whoami()["admin"] is False
    assert alice.get("hub/admin").status_code == 403


def test_mallory_in_no_allowed_group_is_refused_with_a_reason(platform):
    mallory = HubClient(platform.url)
    with pytest.raises(LoginRefused) as refused:
        mallory.login("mallory", "mallory")
    page = refused.value.response
    assert page.status_code == 403
    assert "mallory may not use this hub" in page.text
    assert "you are in no group" in page.text
    assert mallory.get("hub/api/user").status_code == 403


def test_hub_groups_and_tier_follow_the_provider(platform):
    platform.set_user("carol", ["users"])
    assert logged_in(platform, "carol").whoami()["groups"] == ["users"]
    carol = admin_api(platform, "users/carol")
    assert carol["auth_state"]["aglais"]["tier"] == "standard"

    platform.set_user("carol", ["users", "power"])
    assert sorted(logged_in(platform, "carol").whoami()["groups"]) == ["power", "users"]
    carol = admin_api(platform, "users/carol")
    assert carol["auth_state"]["aglais"]["tier"] == "power"
    assert "carol" in admin_api(platform, "groups/power")["users"]

    platform.set_user("carol", ["power"])
    assert logged_in(platform, "carol").whoami()["groups"] == ["power"]
    assert "carol" not in admin_api(platform, "groups/users")["users"]


def test_a_second_server_over_the_tier_limit_is_refused_on_the_spawn_page(platform):
    # guests are allowed in but map to no tier: the default (basic) allows one server
    platform.set_user("gus", ["guests"])
    gus = logged_in(platform, "gus")
    first = gus.start_server()
    assert first.get("ready"), first
    page = gus.get("hub/spawn/gus/extra")
    assert page.status_code == 429
    assert (
        "Your tier &#39;Basic&#39; allows 1 running server at a time, "
        "and your default server is already running." in page.text
    )
    progress = gus.follow_progress("gus", "extra")
    assert progress.get("failed") and "allows 1 running server" in progress["message"]
    # stopping the first server frees the slot
    response = gus.session.delete(gus.url("hub/api/users/gus/server"), headers=gus.xsrf_headers())
    assert response.status_code in (202, 204)
    gus.wait_stopped("gus")
    assert gus.start_server("extra").get("ready")


def test_tier_is_refreshed_from_the_provider_before_a_spawn(platform):
    platform.set_user("dave", ["users"])
    dave = logged_in(platform, "dave")
    # promoted at the provider while logged in: no new login needed for the new tier
    platform.set_user("dave", ["users", "power"])
    event = dave.start_server()
    assert event.get("ready"), event
    messages = " ".join(e.get("message", "") for e in event["events"])
    assert "(tier Power)" in messages
    assert "2048m driver memory" in messages
    assert sorted(dave.whoami()["groups"]) == ["power", "users"]
