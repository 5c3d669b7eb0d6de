"""The model zoo's unit-test pattern (``ci/unit_tests`` of Project-MONAI/model-zoo): each workflow is built with
``monai.bundle.ConfigWorkflow``, initialised and its MONAI properties checked (``check_properties() == []``), for
every bundle and every workflow type, on the built-in data at a tiny size. The runs themselves are the
``test_bundle_*`` / ``test_ldm_*`` tests. Inference configs must initialise without trained weights on disk: they load
them when they run (a ``CheckpointLoader`` handler, or the first step of ``run``)."""

from __future__ import annotations

import logging

import pytest
from conftest import BUNDLES

TINY = {"device": "cpu", "num_workers": 0, "image_size": 32}
DATA = {"kvasir_seg": "kvasir_seg", "isic_seg": "isic2018", "pneumonia_cls": "covid_radiography",
        "dcl_pretrain": "kvasir_seg", "ldm_synthesis": "kvasir_seg"}
#: (bundle, workflow type, config files, extra overrides); every one must pass MONAI's property check
WORKFLOWS = [
    ("kvasir_seg", "train", ["train.json"], {"backbone": "resnet18"}),
    ("kvasir_seg", "train", ["train.json", "evaluate.json"], {"backbone": "resnet18"}),  # the zoo's evaluate case
    ("kvasir_seg", "infer", ["inference.json"], {}),
    ("isic_seg", "train", ["train.json"], {"backbone": "resnet18"}),
    ("isic_seg", "train", ["train.json", "evaluate.json"], {"backbone": "resnet18"}),
    ("isic_seg", "infer", ["inference.json"], {}),
    ("pneumonia_cls", "train", ["train.json"], {"backbone": "resnet18"}),
    ("pneumonia_cls", "train", ["train.json", "evaluate.json"], {"backbone": "resnet18"}),
    ("pneumonia_cls", "infer", ["inference.json"], {}),
    ("dcl_pretrain", "train", ["train.json"], {"backbone": "resnet18", "queue_size": 16}),
    ("dcl_pretrain", "infer", ["inference.json"], {}),
    ("ldm_synthesis", "train", ["train_autoencoder.json"], {}),
    ("ldm_synthesis", "train", ["train_autoencoder.json", "train_diffusion.json"], {}),
]
#: inference configs the zoo itself runs with ``check_properties=False``: a generative model's inference has no
#: input data set (the zoo's brats_mri_*_generative_diffusion tests); it must still initialise without weights
NO_PROPERTY_CHECK = [("ldm_synthesis", "infer", ["inference.json"], {})]


def _workflow(bundle, workflow_type, configs, overrides, data, tmp_path):
    from monai.bundle import ConfigWorkflow

    root = BUNDLES / bundle
    files = [str(root / "configs" / c) for c in configs]
    return ConfigWorkflow(
        config_file=files if len(files) > 1 else files[0], meta_file=str(root / "configs" / "metadata.json"),
        logging_file=str(root / "configs" / "logging.conf"), workflow_type=workflow_type, bundle_root=str(root),
        dataset_dir=str(data), output_dir=str(tmp_path / "eval"), ckpt_dir=str(tmp_path / "models"),
        **{k: v for k, v in TINY.items() if not (bundle == "ldm_synthesis" and workflow_type == "infer"
                                                 and k == "num_workers")},
        **overrides,
    )


@pytest.mark.parametrize("bundle,workflow_type,configs,overrides", WORKFLOWS,
                         ids=[f"{b}-{'+'.join(c)}" for b, _, c, _ in WORKFLOWS])
def test_workflow_has_the_zoo_properties(bundle, workflow_type, configs, overrides, demo_data, tmp_path):
    wf = _workflow(bundle, workflow_type, configs, overrides, demo_data[DATA[bundle]], tmp_path)
    wf.initialize()  # no weights in ckpt_dir: nothing is loaded before run
    try:
        assert wf.check_properties() == []
        if workflow_type == "train":  # the zoo's key names, present and referenced
            for key in ("train#dataset#data", "train#preprocessing", "train#inferer", "train#key_metric"):
                assert key in wf.parser, key
    finally:
        wf.finalize()


def test_generative_inference_initialises_without_weights(demo_data, tmp_path, caplog):
    (bundle, workflow_type, configs, overrides), = NO_PROPERTY_CHECK
    wf = _workflow(bundle, workflow_type, configs, overrides, demo_data[DATA[bundle]], tmp_path)
    with caplog.at_level(logging.WARNING):
        wf.initialize()
    with pytest.raises(RuntimeError) as err:  # the weights are read by run, and named when missing
        wf.run()
    chain, e = [], err.value
    while e is not None:
        chain.append(str(e))
        e = e.__cause__
    assert any("autoencoder.pt" in m for m in chain), chain
