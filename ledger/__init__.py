"""Write side of the Pupil Movement Ledger, in layers: ``core`` (pure: canonical JSON, envelopes, catalogue,
rules, policy, Merkle maths, notes, tiles), ``storage`` (the event store and its adapters), ``transparency``
(the log, witnesses, verification), the use cases at this level (the ``Ledger`` facade in ``service``, the
submission pipeline, reads, access audit, erasure, tokens), and ``tools`` (operator actions, simulator, GIAS).

Nothing here imports ``projections`` or ``api``; the layers' imports are checked by import-linter (pyproject).
"""
