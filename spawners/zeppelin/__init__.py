"""The Zeppelin spawner: per-user Zeppelin pods with Spark executors on Kubernetes."""
