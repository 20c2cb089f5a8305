"""Researchers' anonymised exports, the read side (docs/research.md): the log at a signed checkpoint as pupil
rows (``reader``, ``rows``), k-anonymity and l-diversity by generalisation then suppression (``anonymise``),
aggregate tables under disclosure control (``tables``), the reproducible files (``package``), and the build of a
release's files from them (``export``). The use case that checks, keeps and records a release is
``api/research_release.py``."""
