"""Read side: views of the ledger's notification log. Imports ``ledger`` only.

``runner`` keeps the bitemporal fact tables (views ``orgs``, ``pupils``, ``cases``) exactly once,
``metrics`` defines every metric (docs/metrics.md), ``queries`` the read models the API serves
(placements register, unregistered provision watch, accountability cases and metrics), ``worker`` the
``pupil-ledger project run`` process.
"""
