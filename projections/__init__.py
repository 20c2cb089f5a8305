"""Read side: views folded from the ledger's notification log (placements register, unregistered
provision watch, roll integrity, AP performance, accountability). Imports ``ledger`` only.

The views themselves arrive with their own issue; the write side already stores everything they
need (each stored event carries its envelope, ``received_at`` and flags).
"""
