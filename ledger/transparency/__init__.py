"""The transparency log: the sealer and stored tree, witnesses, and offline verification."""
