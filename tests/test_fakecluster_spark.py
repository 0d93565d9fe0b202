"""Real Spark executors on the testing cluster.

A PySpark 3.5 driver in client mode (this machine) asks the testing cluster
(aglais_hub.testing.fakecluster, the stand-in for Kubernetes) for executor pods;
the kubelet runs them as real executor JVMs from pyspark's jars.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from aglais_hub.testing.fakecluster.controllers import R

pytestmark = pytest.mark.e2e

DRIVER = textwrap.dedent(
    """
    import sys, time
    from pyspark.sql import SparkSession
    spark = (SparkSession.builder.master("k8s://{url}")
        .config("spark.submit.deployMode", "client")
        .config("spark.kubernetes.container.image", "aglais/spark:3.5.9")
        .config("spark.kubernetes.namespace", "spark")
        .config("spark.kubernetes.driver.pod.name", "driver")
        .config("spark.kubernetes.executor.podNamePrefix", "alice-spark")
        .config("spark.executor.instances", "2")
        .config("spark.executor.memory", "512m")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.scheduler.minRegisteredResourcesRatio", "1.0")
        .config("spark.scheduler.maxRegisteredResourcesWaitingTime", "120s")
        .getOrCreate())
    total = spark.range(0, 10**6, numPartitions=8).selectExpr("sum(id)").collect()[0][0]
    hosts = sorted({{e.host() for e in
        spark.sparkContext._jsc.sc().statusTracker().getExecutorInfos()}} - {{"127.0.0.1"}})
    print("RESULT", total, ",".join(hosts), flush=True)
    time.sleep(600)  # keep the executors while the test inspects them
    """
)


def executor_pods(cluster) -> list[dict]:
    items, _ = cluster.call(cluster.cluster.store.list, R["pods"], "spark", "spark-role=executor")
    return items


def test_spark_executors_are_pods_owned_by_the_driver_pod(cluster, tmp_path):
    store = cluster.cluster.store
    cluster.call(store.create, R["namespaces"], "", {"metadata": {"name": "spark"}})
    driver_pod = cluster.call(
        store.create,
        R["pods"],
        "spark",
        {"metadata": {"name": "driver"},
         "spec": {"containers": [{"name": "notebook", "image": "inert/notebook"}]}},
    )  # fmt: skip
    log = (tmp_path / "driver.log").open("w")
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER.format(url=cluster.url)],
        stdout=subprocess.PIPE, stderr=log, text=True,
        # hermetic: no kubeconfig or proxy of the machine may reach fabric8
        env={**{k: v for k, v in os.environ.items() if "proxy" not in k.lower()},
             "SPARK_LOCAL_IP": "127.0.0.1", "KUBECONFIG": str(tmp_path / "no-kubeconfig"),
             "HOME": str(tmp_path)},
    )  # fmt: skip
    try:
        line = driver.stdout.readline()
        assert line.startswith("RESULT"), (tmp_path / "driver.log").read_text()[-3000:]
        _, total, hosts = line.split()
        assert total == "499999500000"

        pods = executor_pods(cluster)
        assert sorted(p["metadata"]["name"] for p in pods) == [
            "alice-spark-exec-1", "alice-spark-exec-2",
        ]  # fmt: skip
        for pod in pods:
            assert pod["status"]["phase"] == "Running"
            (owner,) = pod["metadata"]["ownerReferences"]
            assert (owner["kind"], owner["name"], owner["uid"]) == (
                "Pod", "driver", driver_pod["metadata"]["uid"],
            )  # fmt: skip
        # the executors that ran the tasks are those pods, at their pod addresses
        assert sorted(hosts.split(",")) == sorted(p["status"]["podIP"] for p in pods)
        runs = [r for r in cluster.cluster.kubelet.runs.values() if r.namespace == "spark"]
        executor_pids = [c.process.pid for r in runs for c in r.containers.values() if c.process]
        assert len(executor_pids) == 2

        # deleting the driver's pod garbage-collects the executors and their JVMs
        cluster.call(store.delete, R["pods"], "spark", "driver")
        deadline = time.monotonic() + 60
        while executor_pods(cluster) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert executor_pods(cluster) == []
        for pid in executor_pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        driver.kill()
        driver.wait()
