"""Researchers' anonymised exports (design.md 8, docs/research.md): projects approved and revoked as events,
releases recorded in the ledger. The de-identification itself is read-side work: ``projections/research``."""
