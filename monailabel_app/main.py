"""MONAI Label app serving this collection's 2-D bundles: pneumonia_cls (classification), kvasir_seg and
isic_seg (segmentation).

    monailabel start_server --app monailabel_app --studies IMAGES_FOLDER [--conf bundles DIR] [--conf models a,b]

``--conf`` options:

- ``bundles``: folder holding the bundles (default: ``bundles/`` of the repository this app lies in);
- ``models``: comma-separated bundles to serve (default: all of ``pneumonia_cls,kvasir_seg,isic_seg``);
- ``preset``: a preset of the bundles' ``configs/presets/`` (``cpu``, ``paper``) whose architecture a segmentation
  model was trained with (its ``model.pt`` does not record it; a classifier's does, so presets leave it alone);
- ``<model>#<config id>``: one ``inference.json`` value of one bundle, JSON or a plain string, e.g.
  ``--conf 'kvasir_seg#backbone' resnet18 --conf 'kvasir_seg#image_size' 128`` (as ``--backbone resnet18`` would
  be given to ``python -m monai.bundle run``);
- ``preload``: ``true`` loads the networks at start-up (MONAI Label's own option).

A bundle is served when ``<bundles>/<name>/models/model.pt`` exists (trained with the bundle's
``configs/train.json``); the others are skipped with a warning. See README.md.
"""

from __future__ import annotations

import json
import logging
import os

from lib.infers import BUNDLE_TYPES, Bundle2DInferTask
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferTask

logger = logging.getLogger(__name__)

APP_DIR = os.path.dirname(os.path.abspath(__file__))
DEFAULT_BUNDLES = os.path.join(os.path.dirname(APP_DIR), "bundles")


class DclCstpBundlesApp(MONAILabelApp):
    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        self.bundles_dir = os.path.abspath(os.path.expanduser(conf.get("bundles") or DEFAULT_BUNDLES))
        wanted = conf.get("models", "all")
        names = list(BUNDLE_TYPES) if wanted in ("", "all") else [n.strip() for n in wanted.split(",") if n.strip()]
        unknown = sorted(set(names) - set(BUNDLE_TYPES))
        if unknown:
            raise ValueError(f"unknown models {unknown}: this app serves {sorted(BUNDLE_TYPES)}")
        self.model_names = names
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="DCL-CsTP bundles",
            description="2-D chest X-ray classification and polyp / skin lesion segmentation (DCL-CsTP downstream bundles)",
            version="0.1.0",
        )

    def init_infers(self) -> dict[str, InferTask]:
        infers: dict[str, InferTask] = {}
        for name in self.model_names:
            path = os.path.join(self.bundles_dir, name)
            if not os.path.isdir(path):
                logger.warning("skip %s: no bundle folder %s", name, path)
                continue
            task = Bundle2DInferTask(path, self.conf, type=BUNDLE_TYPES[name], overrides=self.overrides(name, path))
            if not task.is_valid():
                logger.warning("skip %s: %s has no models/model.pt (train the bundle first, see README.md)", name, path)
                continue
            infers[name] = task
            logger.info("serving %s (%s) from %s", name, BUNDLE_TYPES[name], path)
        if not infers:
            logger.warning("no model served: none of %s has models/model.pt under %s", self.model_names, self.bundles_dir)
        return infers

    def overrides(self, name: str, path: str) -> dict:
        """``inference.json`` values for bundle ``name`` from ``--conf preset P`` and ``--conf '<name>#<id>' V``."""
        out = {}
        preset = self.conf.get("preset")
        if preset and BUNDLE_TYPES[name] == "segmentation":
            preset_file = os.path.join(path, "configs", "presets", f"{preset}.json")
            if not os.path.isfile(preset_file):
                raise FileNotFoundError(f"{name}: no preset {preset!r} ({preset_file})")
            with open(preset_file) as f:
                out.update(json.load(f))
        for key, value in self.conf.items():
            if key.startswith(f"{name}#"):
                try:
                    value = json.loads(value)
                except ValueError:
                    pass  # a plain string, e.g. resnet18
                out[key[len(name) + 1:]] = value
        return out
