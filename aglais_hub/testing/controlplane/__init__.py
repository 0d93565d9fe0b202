"""The testing cluster's real Kubernetes control plane.

``build`` builds etcd, kube-apiserver, kube-controller-manager and kube-scheduler from the
Go modules pinned here (``make cluster-bin``); ``cluster.ControlPlane`` runs them on
loopback. This package imports nothing itself, so ``build`` stays standard-library only.
"""
