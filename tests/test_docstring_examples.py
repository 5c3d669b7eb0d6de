"""The examples in the losses' docstrings run and give the values they show (doctest)."""

import doctest
import importlib
import pkgutil

import pytest

import dcl_cstp_ext.losses

MODULES = sorted(m.name for m in pkgutil.iter_modules(dcl_cstp_ext.losses.__path__, "dcl_cstp_ext.losses."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_every_loss_has_an_example():
    losses = [getattr(dcl_cstp_ext.losses, n) for n in dcl_cstp_ext.losses.__all__]
    classes = [c for c in losses if isinstance(c, type)]
    assert classes and all(">>>" in (c.__doc__ or "") for c in classes), [c.__name__ for c in classes
                                                                          if ">>>" not in (c.__doc__ or "")]
