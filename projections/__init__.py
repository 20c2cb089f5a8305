"""Read side: views of the ledger's notification log. Imports ``ledger`` only.

``runner`` keeps the bitemporal fact tables of the projections ``orgs``, ``pupils`` and ``cases``
exactly once (``worker`` is the ``pupil-ledger project run`` process). The views fold those facts at
a moment (``context``): ``placements``, ``unregistered``, ``roll``, ``exclusions`` and
``ap_performance`` each define their metrics (docs/metrics.md) and ``metrics`` rolls them up to
school, trust, LA and England; ``queries`` assembles what the API serves.
"""
