"""Offline evaluation: the real loop replayed on a simulated world, and off-policy estimates.

``clickrouter replay`` (:mod:`clickrouter.replay.loop`) runs the trainer, model
store, bank and policy the service uses on a world's traffic in simulated
time; ``clickrouter evaluate`` (:mod:`clickrouter.replay.offpolicy`) estimates
what a candidate would earn on logged records. See docs/replay.md.
"""
