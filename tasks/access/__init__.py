"""Reaching Google and the clusters: the clients (the only place they are built), the retry policy and
its budget, the limits shared by every worker, what one run shares (Runtime), the Kubernetes reads, and the
Prefect events client. All I/O; no decisions about clusters here.
"""
