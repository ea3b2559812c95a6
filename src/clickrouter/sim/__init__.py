"""A synthetic ad world with known ground truth: traffic, campaigns, pages, delayed sales.

``World`` is the oracle (true P(sale) and eligibility of every offer, a
campaign with one of its landing pages; request sampling; delays);
``generate_events`` writes a logged click/sale stream; ``TrafficDriver`` sends
the world's traffic to a running predictor over HTTP and posts the sales back.
See docs/explanation/simulator.md.
"""

from clickrouter.sim.config import DelayConfig, WorldConfig
from clickrouter.sim.driver import DriverReport, SimClock, TrafficDriver
from clickrouter.sim.eventgen import EventGenerator, GenerationReport, generate_events
from clickrouter.sim.world import World

__all__ = [
    "DelayConfig",
    "DriverReport",
    "EventGenerator",
    "GenerationReport",
    "SimClock",
    "TrafficDriver",
    "World",
    "WorldConfig",
    "generate_events",
]
