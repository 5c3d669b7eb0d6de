"""``dcl-cstp`` command line (python-fire).

    dcl-cstp demo [--out runs/demo]
    dcl-cstp pipeline --task kvasir_seg --data-root DIR --preset {demo,cpu,paper} --out RUN_DIR \
        [--launcher {local-locks,local,slurm} --slurm-partition gpu --slurm-gpus 1]
    dcl-cstp report RUN_DIR
    dcl-cstp make-demo-data --out DIR [--seed 0]
    dcl-cstp bench pretrain --methods dcl_cstp,simsiam,mocov2,simclr --backbone resnet18 --image-size 64 \
        --batch-size 16 --steps 10 --json out.json
    dcl-cstp bench infer --preset cpu --threads 1 --json infer.json
    dcl-cstp bench sample --preset cpu --ckpt-dir MODELS --samplers ddpm:1000,dpm_solver:20 [--dataset-dir DIR]
    dcl-cstp package --out DIST [--bundles kvasir_seg,pneumonia_cls] [--bundles-dir bundles] [--base-url URL]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import fire

__all__ = ["main"]


class Bench:
    """Benchmarks."""

    def pretrain(self, methods="dcl_cstp,simsiam,mocov2,simclr", backbone="resnet18", image_size=64,
                 batch_size=16, steps=10, warmup=2, channels=3, device=None, amp=None, channels_last=False,
                 queue_size=4096, seed=0, threads=None, json=None, bn_splits=1, compile=False, optimizer_impl=None,
                 head_dim=None, paired_rounds=0):
        """Images/s and peak memory of a training step per method, and each method's ratio to SimSiam
        (``--bn-splits``: split BatchNorm of MoCo-v2 and DCL-CsTP, as the bundle's ``bn_splits``; ``--head-dim``: the
        CsTP head's token width, as the bundle's ``head_kwargs.dim``, 256 in the ``cpu`` preset; ``--paired-rounds N``:
        also the ratios measured in N rounds of one step per method in one process). The fast paths,
        as the bundles' settings: ``--amp``, ``--channels-last``, ``--compile`` (torch.compile; the compilation
        is timed apart), ``--optimizer-impl for_loop|foreach|fused``."""
        from .bench.pretrain import bench_pretrain

        bench_pretrain(methods=methods, backbone=backbone, image_size=image_size, batch_size=batch_size,
                       steps=steps, warmup=warmup, channels=channels, device=device, amp=amp,
                       channels_last=channels_last, queue_size=queue_size, seed=seed, threads=threads,
                       json_path=json, bn_splits=bn_splits, compile=_bool(compile, "compile"), optimizer_impl=optimizer_impl,
                       head_dim=head_dim, paired_rounds=paired_rounds)

    def sample(self, ckpt_dir=None, preset=None, samplers="ddpm:1000,ddim:50,dpm_solver:20", num_images=64,
               batch_size=32, seed=0, device=None, threads=None, dataset_dir=None, num_real=None,
               feature_encoder=None, bootstrap=200, out_dir=None, json=None, progress=True, bundle_root=None):
        """Seconds per image of each LDM sampler on one trained ``ldm_synthesis`` model (``ckpt_dir`` holds its
        autoencoder.pt and model.pt; ``preset`` must match its training), speed-ups against the first sampler, and
        with ``--dataset-dir`` the Frechet distance, k-NN precision/recall and MS-SSIM of each sampler's images."""
        from .bench.sample import bench_sample

        bench_sample(bundle_root=bundle_root, preset=preset, ckpt_dir=ckpt_dir, samplers=samplers,
                     num_images=num_images, batch_size=batch_size, seed=seed, device=device, threads=threads,
                     dataset_dir=dataset_dir, num_real=num_real, feature_encoder=feature_encoder, bootstrap=bootstrap,
                     out_dir=out_dir, json_path=json, progress=progress)


    def infer(self, bundles="pneumonia_cls,isic_seg,kvasir_seg", preset="cpu", batch_size=1, steps=20, warmup=3,
              device=None, channels_last=False, threads=None, json=None):
        """Latency of each downstream bundle's network (configs/inference.json + preset), eager and exported to
        TorchScript with MONAI's ckpt_export; trained weights from models/model.pt when present."""
        from .bench.infer import bench_infer

        bench_infer(bundles=bundles, preset=preset, batch_size=batch_size, steps=steps, warmup=warmup, device=device,
                    channels_last=channels_last, threads=threads, json_path=json)


class CLI:
    """DCL-CsTP: latent-diffusion synthesis, dual-stream contrastive pre-training, fine-tuning (MONAI bundles)."""

    def __init__(self) -> None:
        self.bench = Bench()

    def make_demo_data(self, out: str, seed: int = 0):
        """Write the built-in procedurally generated data sets (COVID-19 Radiography, ISIC 2018 and Kvasir-SEG
        layouts) under ``out``."""
        from .data.demo_data import make_demo_data

        roots = make_demo_data(out, seed=seed)
        for name, path in roots.items():
            print(f"{name}: {path}")

    def pipeline(self, task: str, data_root: str, out: str, preset: str = "demo",
                 methods="random,simclr,mocov2,simsiam,dcl_cstp,dcl_cstp_syn", synthetic_ratio: float = 0.5,
                 ratios=(), ablations: bool = False, label_fractions=(1.0,), seeds=(0,), device: str | None = None,
                 overrides=None, keep_checkpoints: bool = False, rerun_changed: bool = False, report: bool = True,
                 probe: bool = True, launcher: str = "local-locks",
                 local_jobs: int = 1, slurm_partition: str | None = None, slurm_timeout_min: int | None = None,
                 slurm_gpus: int | None = None, slurm_cpus: int | None = None, slurm_mem_gb: float | None = None,
                 slurm_extra=None):
        """Run (or resume) the three stages for one task and write RUN_DIR/report.md and report.html.

        --methods: initialisations to compare (random, simclr, mocov2, simsiam, dcl_cstp, dcl_cstp_syn; also
        dcl_cstp_synonly: pre-trained on the kept synthetic images alone); --ratios 0.1,0.5,1: extra DCL-CsTP +
        synthetic runs (the ratio table); --ablations: no_global, no_local, mlp_head, plain_attention (the paper's) and centred_target (ours);
        --label-fractions 1,0.1: fine-tune on 100% and 10% of the training labels; --seeds 0,1,2: fine-tuning seeds (mean +- std); --overrides '{"pretrain": {"max_epochs": 5}, "finetune":
        {"datalist_kwargs": {"num_classes": 3}}}': bundle overrides per stage kind (ldm, pretrain, finetune) after the
        preset's (a JSON string or file), and per LDM stage after "ldm" ("ldm/autoencoder", "ldm/diffusion",
        "ldm/samples", "ldm/curation": the two training stages share the names max_epochs, batch_size, lr; "probe");
        --probe false: no frozen-encoder probe (by default each pre-trained encoder's frozen features are probed
        against a random encoder's on every labelled image, the report's "Frozen features" table);
        --keep-checkpoints: keep finished stages' resume checkpoints (by default
        only their exported weights stay). Re-running the same command skips finished stages and
        resumes an interrupted one; a finished stage asked for with other settings (new --overrides, another preset)
        is refused, naming the settings, unless --rerun-changed, which runs it and everything downstream again.
        The same command started more than once on one --out (say once per GPU,
        with --device cuda:0, cuda:1) shares the stages: each runs a stage no other process holds, and waits
        for the stages it needs (--launcher local-locks, the default).

        --launcher slurm: submit each stage as a SLURM job (submitit; pip install submitit) that starts once the
        jobs of the stages it reads have succeeded, and a last job that writes the report; the command returns
        after submitting. --slurm-partition, --slurm-timeout-min, --slurm-gpus, --slurm-cpus, --slurm-mem-gb: each
        job's resources (unset: the cluster's defaults); --slurm-extra '{"account": "proj"}': further sbatch
        options. --launcher local: the same jobs as processes on this machine, at most --local-jobs at once; the
        command waits for them. submitit's logs: RUN_DIR/submitit/.
        """
        from .pipeline import PipelineConfig, run_pipeline

        cfg = PipelineConfig(
            task=task, data_root=data_root, out=out, preset=preset, methods=_tuple(methods, str),
            synthetic_ratio=float(synthetic_ratio), ratios=_tuple(ratios, float),
            ablations=_bool(ablations, "ablations"), label_fractions=_tuple(label_fractions, float),
            seeds=_tuple(seeds, int), device=device, overrides=_json_arg(overrides),
            keep_checkpoints=_bool(keep_checkpoints, "keep_checkpoints"),
            rerun_changed=_bool(rerun_changed, "rerun_changed"), probe=_bool(probe, "probe"),
        )
        _log_to_stdout()
        if launcher == "local-locks":
            path = run_pipeline(cfg, report=_bool(report, "report"))
        else:
            from .pipeline.launcher import FINAL, KINDS, launch_pipeline, make_executor, wait_all

            if launcher not in KINDS:
                raise ValueError(f"--launcher must be local-locks, local or slurm, got {launcher!r}")
            resources = {"timeout_min": _int(slurm_timeout_min), "gpus_per_node": _int(slurm_gpus),
                         "cpus_per_task": _int(slurm_cpus), "partition": slurm_partition,
                         "mem_gb": None if slurm_mem_gb is None else float(slurm_mem_gb),
                         "slurm_extra": _json_arg(slurm_extra, "--slurm-extra") or None}
            executor = make_executor(launcher, Path(out) / "submitit", **(resources if launcher == "slurm" else {}))
            jobs = launch_pipeline(cfg, executor, report=_bool(report, "report"), max_running=int(local_jobs))
            if launcher == "slurm":
                print(f"submitted {len(jobs) - 1} stage job(s) and the report job {jobs[FINAL].job_id} "
                      f"(squeue --me); logs: {executor.folder}")
                return
            path = wait_all(jobs)[FINAL]
        print(f"report: {path}" + (f" and {Path(path).with_suffix('.html')}" if report else ""))

    def report(self, run_dir: str):
        """(Re)write the report of a pipeline run folder."""
        from .reports.pipeline_report import write_report

        _log_to_stdout()
        print(f"report: {write_report(run_dir)}")

    def download(self, name: str, index: str, bundle_dir: str = "bundles", version: str | None = None,
                 overwrite: bool = False):
        """The checked download of a released bundle into --bundle-dir/NAME: --index is the release's index.json
        (a URL or a path; `dcl-cstp package` writes it). The zip's sha256 is compared with the index's, unsafe or
        damaged zips are refused, all before anything is extracted; the bundle is extracted into a temporary folder
        and moved into place only when complete. --version: one release of NAME (default: the index's);
        --overwrite: replace an existing copy (once the new one is complete)."""
        from .download import download_bundle

        _log_to_stdout()
        print(download_bundle(name, index, bundle_dir=bundle_dir, version=version,
                              overwrite=_bool(overwrite, "overwrite")))

    def package(self, out: str = "dist", bundles=None, bundles_dir: str = "bundles", base_url: str | None = None,
                require_weights: bool = False, python_package: bool = True, package_source: str | None = None):
        """Release packaging: one reproducible ``<name>_v<version>.zip`` per bundle (the bundle folder at its top,
        the weights of ``models/`` inside, the configs' defaults set to what the weights were trained with, and
        refused when the weights do not fit), each weights file beside it as ``<name>_v<version>_<file>`` (listed in
        the zipped large_files.yml), the dcl-cstp wheel and sdist, ``index.json`` and ``SHA256SUMS`` in --out.
        --bundles: a comma-separated subset (default: all of --bundles-dir); --base-url: where the files will be
        uploaded (the urls of the index and of large_files.yml); --require-weights: fail for a bundle without
        weights in models/; --python-package False: no wheel / sdist; --package-source: the repository to build them
        from (default: this installation's, when it is a clone)."""
        from .release import package_bundles

        index = package_bundles(out, bundles=_tuple(bundles, str) if bundles else None, bundles_dir=bundles_dir,
                                require_weights=_bool(require_weights, "require_weights"), base_url=base_url,
                                python_package=_bool(python_package, "python_package"), package_source=package_source)
        for e in index["bundles"]:
            weights = ", ".join(e["weights"]) or "no weights"
            print(f"{Path(out) / e['file']}  {e['size']} bytes  sha256 {e['sha256']}  ({weights})")
            for change in e["changes"]:
                print(f"  set to match the weights: {change}")
        for f in index.get("python_package", []):
            print(f"{Path(out) / f['file']}  {f['size']} bytes  sha256 {f['sha256']}")
        print(f"index: {Path(out) / 'index.json'} and {Path(out) / 'SHA256SUMS'}")

    def demo(self, out: str = "runs/demo", tasks="kvasir_seg,pneumonia_cls", device: str | None = None):
        """The main job on the built-in data: generate the demo data sets, then run the pipeline (demo preset) for
        each task in --tasks and print where the reports are."""
        from .data.demo_data import make_demo_data
        from .pipeline import PipelineConfig, run_pipeline

        _log_to_stdout()
        data = Path(out) / "data"
        roots = make_demo_data(str(data), seed=0) if not (data / ".dcl_cstp_demo_done").is_file() else None
        if roots is not None:
            (data / ".dcl_cstp_demo_done").write_text(json.dumps(roots))
        roots = json.loads((data / ".dcl_cstp_demo_done").read_text())
        data_for = {"kvasir_seg": roots["kvasir_seg"], "isic_seg": roots["isic2018"],
                    "pneumonia_cls": roots["covid_radiography"]}
        reports = []
        for task in _tuple(tasks, str):
            cfg = PipelineConfig(task=task, data_root=data_for[task], out=str(Path(out) / task), preset="demo",
                                 device=device)
            reports.append(run_pipeline(cfg))
        print("\nDemo finished. Reports:")
        for r in reports:
            print(f"  {r}  (and {Path(r).with_suffix('.html')})")


def _json_arg(value, name: str = "--overrides") -> dict:
    """A dict given on the command line (option ``name``): fire's parsed dict, a JSON string, or a JSON file path."""
    if value is None or isinstance(value, dict):
        return dict(value or {})
    text = str(value)
    if Path(text).is_file():
        text = Path(text).read_text()
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{name} must be a JSON object or a JSON file, got {value!r}: {err}") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"{name} must be a JSON object, got {value!r}")
    return parsed


def _int(value) -> int | None:
    return None if value is None else int(value)


def _bool(value, name: str) -> bool:
    """A yes/no option as fire hands it over: a bool, or the text true/false (any case), yes/no, 1/0. fire gives
    ``--probe false`` as the string 'false', which ``bool()`` would read as True."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1"):
        return True
    if text in ("false", "no", "0"):
        return False
    raise ValueError(f"--{name.replace('_', '-')}: expected true or false, got {value!r}")


def _tuple(value, cast) -> tuple:
    """fire gives "a,b" as a str or a tuple; accept both."""
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    elif not isinstance(value, (list, tuple)):
        value = [value]
    return tuple(cast(v.strip() if isinstance(v, str) else v) for v in value)


def _log_to_stdout() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(name)s - %(levelname)s - %(message)s")


#: options whose value is a JSON object (:func:`_json_arg`)
JSON_OPTIONS = ("--overrides",)


def keep_json_text(argv: list[str], options=JSON_OPTIONS) -> list[str]:
    """``argv`` with the JSON object given to each of ``options`` quoted, so that fire hands it over as text and
    :func:`_json_arg` reads it as JSON: fire would parse ``{"amp": true}`` itself, as Python, into ``{"amp": "true"}``
    (JSON's ``true``, ``false`` and ``null`` become strings, and a string 'true' is truthy)."""
    out, quote_next = [], False
    for arg in argv:
        if quote_next and arg.lstrip().startswith("{"):
            arg = json.dumps(arg)
        elif "=" in arg and arg.split("=", 1)[0] in options and arg.split("=", 1)[1].lstrip().startswith("{"):
            key, value = arg.split("=", 1)
            arg = f"{key}={json.dumps(value)}"
        quote_next = arg in options
        out.append(arg)
    return out


def main() -> None:
    from .short_errors import install

    install()
    fire.Fire(CLI, command=keep_json_text(sys.argv[1:]), name="dcl-cstp")


if __name__ == "__main__":
    main()
