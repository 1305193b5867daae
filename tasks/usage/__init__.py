"""Usage evidence and the verdict: the kubelet metrics parser (metrics) and the culprit finder (culprits) are
pure; the scan (scan) and the Autopilot probe (probe) read the clusters.
"""
