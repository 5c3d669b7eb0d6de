"""dcl_cstp_ext: MONAI extension package for DCL-CsTP (networks, losses, methods, transforms, data, engines, metrics, reports).

Bundle configs import it once (``"$import dcl_cstp_ext"``) and reach every sub-package from there.
"""

__version__ = "0.1.0"

from . import data, engines, losses, methods, metrics, networks, reports, settings, transforms, utils  # noqa: E402

__all__ = ["data", "engines", "losses", "methods", "metrics", "networks", "reports", "settings", "transforms", "utils",
           "__version__"]
