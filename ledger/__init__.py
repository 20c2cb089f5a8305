"""Write side of the Pupil Movement Ledger: envelopes, catalogue, rules, store, submission.

Nothing here imports ``projections`` or ``api``; the pure modules (``jcs``, ``envelope``,
``identifiers``, ``catalogue``, ``rules``, ``schooltime``) do no I/O.
"""
