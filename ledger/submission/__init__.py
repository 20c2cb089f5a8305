"""The submission pipeline (``pipeline``: its docstring states the checks in order), its stages' parts and the
speed-ups below them."""
