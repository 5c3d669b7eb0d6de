"""dcl_cstp_ext: MONAI extension package for DCL-CsTP (networks, losses, methods, transforms, data, engines)."""

__version__ = "0.1.0"
