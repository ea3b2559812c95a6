"""What the tests (and the benchmarks) build on that the library does not ship.

* :mod:`reference.attribution`: the line-by-line click/sale join, the executable
  specification that :class:`~clickrouter.stream.join.BatchAttributor` is checked
  against;
* :mod:`reference.sample_models`: model directories of real fitted sklearn pipelines;
* :mod:`reference.sample_events`: a reproducible event stream exercising every
  path of the consumer.
"""
