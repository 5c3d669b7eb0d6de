"""The pipeline report reads as a page: ``Document`` renders its blocks and inline Markdown, and ``report.html`` of a
small run, shown in headless Chromium, has every picture loaded at a readable size and no raw Markdown."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import torch
from browser import assert_reads_as_a_page, require_browser, screenshot
from PIL import Image

from dcl_cstp_ext.reports.document import Document


def test_document_renders_inline_markdown_and_embeds_other_documents(tmp_path):
    small = tmp_path / "sub" / "small.png"
    small.parent.mkdir()
    Image.fromarray(np.zeros((20, 40), np.uint8)).save(small)
    part = Document(tmp_path / "sub")
    part.heading(1, "Part")
    part.table(["reason", "n"], [["**kept**", "3"]])
    part.image(small, "a *small* grid")
    doc = Document(tmp_path)
    doc.heading(1, "Report")
    doc.paragraph("Kept **3** of `a<b>`, see [the docs](https://example.org/?a=1&b=2); a/*/b* stays.")
    doc.bullets(["*one*", "two"])
    doc.code("x = 1 < 2")
    doc.extend(part, shift=2)
    doc.image(tmp_path / "missing.png", "left out of the page")

    md = doc.markdown()
    assert "### Part" in md and "| **kept** | 3 |" in md and "- *one*" in md and "```\nx = 1 < 2\n```" in md
    assert "![a *small* grid](sub/small.png)" in md  # relative to the document's folder
    page = doc.html("t")
    assert "<h3>Part</h3>" in page and "<li><em>one</em></li>" in page
    assert "<pre><code>x = 1 &lt; 2</code></pre>" in page
    assert ("Kept <strong>3</strong> of <code>a&lt;b&gt;</code>, see <a href='https://example.org/?a=1&amp;b=2'>the "
            "docs</a>; a/*/b* stays.") in page
    assert "<td><strong>kept</strong></td><td class=num>3</td>" in page
    # a 40 px picture is scaled up by a whole factor (12 x 40 = 480 px), pixelated; a missing one is left out
    assert "class='px' style='width:480px'" in page and "<figcaption>a <em>small</em> grid</figcaption>" in page
    assert page.count("<figure>") == 1


def _tiny_run(root):
    """A run folder with what the report reads: fine-tuning results, run_info.json, a contact sheet of 32 px
    samples, and a real curation of random 32 px images (curation.json, curation.md and its picture grids)."""
    from dcl_cstp_ext.generative import curate
    from dcl_cstp_ext.reports.images import save_grid
    from dcl_cstp_ext.utils import record_run

    run = root / "run"
    for init, seed, dice in [("random", 0, 0.4), ("random", 1, 0.42), ("dcl_cstp", 0, 0.5), ("dcl_cstp", 1, 0.55)]:
        out = run / "finetune" / init / "lf1" / f"seed{seed}" / "evaluate"
        out.mkdir(parents=True)
        (out / "metrics.json").write_text(json.dumps({"dice": {"mean": dice}, "split": "test", "n": 20}))
    (run / "pipeline.json").write_text(json.dumps({
        "task": "kvasir_seg", "preset": "demo", "data_root": "data", "methods": ["random", "dcl_cstp"],
        "synthetic_ratio": 0.5, "label_fractions": [1.0], "seeds": [0, 1]}))
    record_run(str(run), name="run_info.json")
    rng = np.random.default_rng(0)
    base = rng.random((3, 3, 1, 1))

    def images(n):  # three flat colours with noise: "real" and "synthetic" images of one distribution
        return torch.as_tensor(base[np.arange(n) % 3] * 0.7 + rng.random((n, 3, 32, 32)) * 0.3).float()

    save_grid(images(8), run / "ldm" / "samples" / "contact_sheet.png")
    for name, n in (("real", 12), ("synthetic", 10)):
        (root / name).mkdir()
        for i, im in enumerate(images(n)):
            Image.fromarray((im.permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(root / name / f"{i}.png")
    shutil.copy(root / "real" / "0.png", root / "synthetic" / "copy.png")  # a near copy, and an outlier:
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / "synthetic" / "noise.png")
    items = {name: [{"image": str(p)} for p in sorted((root / name).glob("*.png"))] for name in ("real", "synthetic")}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        curate(items["real"], items["synthetic"], run / "ldm" / "curation", image_size=32, ms_ssim_pairs=10,
               copy_kept=False)
    finally:
        torch.set_num_threads(threads)
    return run


def test_report_html_reads_as_a_page_in_a_browser(tmp_path):
    import dcl_cstp_ext.pipeline  # noqa: F401  first: imported alone, reports.pipeline_report is in a circle with it
    from dcl_cstp_ext.reports.pipeline_report import write_report

    require_browser()
    run = _tiny_run(tmp_path)
    md = write_report(run).read_text()
    assert "### Curation of synthetic images" in md and "#### Measures" in md  # one level below "Synthetic images"
    assert "![Most realistic kept samples](ldm/curation/best.png)" in md and "```" not in md
    page = run / "report.html"
    text = page.read_text()
    assert "<pre>" not in text and "<h3>Curation of synthetic images</h3>" in text
    verdict = assert_reads_as_a_page(page, tmp_path)
    pictures = json.loads((run / "ldm" / "curation" / "curation.json").read_text())["pictures"]
    assert len(pictures) == 6 and len(verdict["images"]) == 1 + 6  # the contact sheet and every curation picture
    shot = screenshot(page, tmp_path / "report.png", tmp_path, height=min(verdict["height"], 12000))
    keep = os.environ.get("DCL_CSTP_KEEP_SCREENSHOT")
    if keep:  # to look at the page: DCL_CSTP_KEEP_SCREENSHOT=/some/report.png
        shutil.copy(shot, keep)
