"""Offline evaluation: the real loop replayed on a simulated world, and off-policy estimates.

``clickrouter replay`` (:mod:`clickrouter.replay.loop`) runs the trainer, model
store, bank and policy the service uses on a world's traffic in simulated
time; ``clickrouter evaluate`` (:mod:`clickrouter.replay.offpolicy`) estimates
what a candidate would earn on logged records. See docs/explanation/replay.md.

Part of the lab: any module of this package raises
:class:`~clickrouter.extras.MissingExtra` unless the ``demo`` extra is installed.
"""

from clickrouter.extras import require_extra

require_extra("demo", "clickrouter.replay", modules=("pyarrow", "rich"))
