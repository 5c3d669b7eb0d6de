"""Print the requirements of the MONAI Label environment (``make label-setup``), one a line.

They are the declared requirements of the installed ``monailabel`` and ``dcl-cstp`` distributions (both installed
``--no-deps`` first), less:

- ``sam2``: only MONAI Label's SAM2 apps use it, and pip would build it from source against a second torch;
- ``pydicom``: ``dcl-cstp`` asks for pydicom 3 (its DICOM reader), but monailabel 0.8.5 imports ``pydicom-seg``
  0.4, which needs pydicom 2; the Makefile pins ``pydicom<3`` instead. The app's datastore serves PNG / JPEG
  studies, so the DICOM reader of ``dcl_cstp_ext`` is not used there;
- optional extras (``extra == "dev"`` ...).
"""

from __future__ import annotations

import re
import sys
from importlib.metadata import requires

DROP = {"sam2", "pydicom"}


def label_requirements(dists=("monailabel", "dcl-cstp")) -> list[str]:
    out = []
    for dist in dists:
        for req in requires(dist) or []:
            name = re.split(r"[\s;<>=!~\[(]", req, maxsplit=1)[0].lower().replace("_", "-")
            if name in DROP or "extra ==" in req:
                continue
            out.append(req)
    return out


if __name__ == "__main__":
    sys.stdout.write("\n".join(label_requirements(sys.argv[1:] or ("monailabel", "dcl-cstp"))) + "\n")
