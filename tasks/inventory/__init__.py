"""Inventory and the version gate: finding every project and cluster (discovery, I/O), a cluster's facts
read from GKE's messages (state), GKE versions (versions), the version gate (eligibility) and the inventory
record (records). Everything but discovery is pure.
"""
