"""Where the published DfE statistics live: ``data/dfe/`` of the repository (its README says which
publication each file comes from; Open Government Licence v3.0 in ``data/dfe/LICENCE``).

They ship beside ``schemas/`` and are found the same way (from this file), so an editable install
and the command line find them wherever they are run from. ``PUPIL_LEDGER_DFE_DATA`` names another
folder holding the same files (a newer release, say). A missing file is an error naming the path:
the simulation, the demo and the views never fall back to figures of their own.

That variable is looked up when a file is (not once into ``Settings``): the readers are plain functions of
the simulation and the published comparators, with no settings in reach, and it only says where read-only
reference files are, never how the ledger behaves.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "dfe"
ENVIRONMENT = "PUPIL_LEDGER_DFE_DATA"

AP_PLACEMENTS_BY_SETTING = "spc_ap_setting.csv"  # school census 2022/23: placements by LA x setting type
AP_PLACEMENTS_BY_REASON = "spc_school_ap_placement.csv"  # the same release: pupils by LA x placement reason x setting type
SEN2 = "sen2_mi.csv"  # SEN2 2014-2022: EHC plans per LA and year
USED = (AP_PLACEMENTS_BY_SETTING, AP_PLACEMENTS_BY_REASON, SEN2)


class MissingPublishedData(FileNotFoundError):
    """A published statistics file the product needs is not where it is looked for."""


def data_dir() -> Path:
    return Path(os.environ.get(ENVIRONMENT) or DATA_DIR)


def data_file(name: str) -> Path:
    """The path of one published file, or ``MissingPublishedData`` naming where it was looked for."""
    path = data_dir() / name
    if not path.is_file():
        raise MissingPublishedData(
            f"published DfE statistics file not found: {path} (the repository ships it in data/dfe/; "
            f"{ENVIRONMENT} names another folder holding {', '.join(USED)})"
        )
    return path


def check() -> None:
    """Every file the product reads is present (called before work that would need one later)."""
    for name in USED:
        data_file(name)
