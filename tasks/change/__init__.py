"""The change, waves and verification: what to change (plan) and which wave (waves) are pure decisions;
sending changes and waiting for operations (apply), one cluster's turn (rollout), the pipelined wave (pipeline),
verification (verify) and approval between waves (approval) do the I/O.
"""
