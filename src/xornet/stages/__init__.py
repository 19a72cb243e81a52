"""One module per pipeline stage: load inputs, make one library call, write outputs.

Stage functions take validated :class:`~xornet.config.schema.Params`, explicit
paths and a :class:`~xornet.stages.common.RunLogger` (the outbox recorder of
:mod:`xornet.tracking.outbox` when tracking is on, ``NullLogger`` otherwise).
Every output is written atomically, after the computation has succeeded, so a
failing stage run by hand leaves the previous outputs untouched. ``stages/*.py``
at the project root are the Click commands that call them.
"""
