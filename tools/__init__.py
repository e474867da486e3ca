"""Tools around the streaming worker: the demo, replay, tail, worker process control and
the prequential evaluation of a bundle on its stream.

Not part of the worker: ``stream/`` never imports this package. Its dependency on
``training`` (datasets for replay, training a bundle for the demo) is allowed here
and nowhere else on the serving side (tests/unit/test_import_graph.py).
"""
