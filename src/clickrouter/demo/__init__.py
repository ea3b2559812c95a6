"""The whole system on one machine: world, predictor, traffic, consumer, trainer, report.

``clickrouter demo`` (see :mod:`clickrouter.cli.demo`) runs every stage as its
own process on embedded defaults (:class:`~clickrouter.demo.config.DemoConfig`),
shows a live view and writes ``report.html`` / ``report.json`` built from the
event log and the world's oracle (:mod:`clickrouter.demo.report`).
"""

from clickrouter.demo.config import DemoConfig

__all__ = ["DemoConfig"]
