"""Classification metrics, losses and probabilities of dcl_cstp_ext (metrics, losses, transforms, reports) on hand-made cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import precision_score, recall_score, roc_auc_score

from dcl_cstp_ext.engines import stacked_output
from dcl_cstp_ext.losses import build_classification_loss
from dcl_cstp_ext.metrics import (
    accuracy,
    classification_metrics,
    confusion_matrix,
    macro_precision,
    macro_recall,
    per_class_precision,
    per_class_recall,
    roc_auc_ovr,
)
from dcl_cstp_ext.reports import ClassificationReport, plot_confusion_matrix
from dcl_cstp_ext.transforms import ToChannelsd, class_probabilities, classification_augmentation

# 3 classes, 10 images: true 4 / 3 / 3
Y_TRUE = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
Y_PRED = [0, 0, 1, 2, 1, 1, 0, 2, 2, 1]


def test_confusion_matrix_rows_are_truth_columns_predictions():
    cm = confusion_matrix(Y_TRUE, Y_PRED, 3)
    np.testing.assert_array_equal(cm, [[2, 1, 1], [1, 2, 0], [0, 1, 2]])
    assert cm.sum() == 10
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="length"):
        confusion_matrix([0, 1], [0], 3)


def test_hand_computed_values():
    cm = confusion_matrix(Y_TRUE, Y_PRED, 3)
    assert accuracy(cm) == pytest.approx(6 / 10)
    np.testing.assert_allclose(per_class_recall(cm), [2 / 4, 2 / 3, 2 / 3])
    np.testing.assert_allclose(per_class_precision(cm), [2 / 3, 2 / 4, 2 / 3])
    assert macro_recall(cm) == pytest.approx((0.5 + 2 / 3 + 2 / 3) / 3)
    assert macro_precision(cm) == pytest.approx((2 / 3 + 0.5 + 2 / 3) / 3)


def test_matches_sklearn_when_every_class_occurs():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    y[:4] = [0, 1, 2, 3]
    logits = rng.normal(size=(200, 4)) + 1.5 * np.eye(4)[y]
    probs = torch.softmax(torch.as_tensor(logits), 1).numpy()
    pred = probs.argmax(1)
    m = classification_metrics(y, pred, probs, ["a", "b", "c", "d"])["summary"]
    assert m["accuracy"] == pytest.approx(float((pred == y).mean()))
    assert m["macro_recall"] == pytest.approx(recall_score(y, pred, average="macro"))
    assert m["macro_precision"] == pytest.approx(precision_score(y, pred, average="macro", zero_division=0))
    assert m["roc_auc_macro_ovr"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    assert 0.5 < m["accuracy"] < 1.0  # an informative case, not a trivial one


def test_never_predicted_and_absent_classes():
    # class 1 is present (2 images) but never predicted; class 2 is neither present nor predicted
    cm = confusion_matrix([0, 0, 1, 1], [0, 0, 0, 0], 3)
    rec, prec = per_class_recall(cm), per_class_precision(cm)
    np.testing.assert_allclose(rec[:2], [1.0, 0.0])
    assert math.isnan(rec[2])
    np.testing.assert_allclose(prec[:2], [0.5, 0.0])  # missed class: precision 0, not undefined
    assert math.isnan(prec[2])
    assert macro_recall(cm) == pytest.approx(0.5)  # over the two classes present
    assert macro_precision(cm) == pytest.approx(0.25)
    # a class predicted but absent from the truth: recall undefined, precision 0
    cm = confusion_matrix([0, 0], [0, 1], 2)
    assert math.isnan(per_class_recall(cm)[1]) and per_class_precision(cm)[1] == 0.0
    assert math.isnan(accuracy(np.zeros((2, 2), dtype=int)))


def test_roc_auc_ovr_known_values_and_undefined_classes():
    y = [0, 0, 1, 1]
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.7, 0.3], [0.2, 0.8]])
    macro, per_class = roc_auc_ovr(y, probs)
    # class 1 scores: negatives 0.1, 0.4; positives 0.3, 0.8 -> 3 of 4 pairs ordered
    np.testing.assert_allclose(per_class, [0.75, 0.75])
    assert macro == pytest.approx(0.75)
    macro, per_class = roc_auc_ovr([0, 0, 1, 1], np.array([[0.5, 0.5, 0.0]] * 4))
    assert math.isnan(per_class[2]) and macro == pytest.approx(0.5)  # class 2 has no positive
    assert math.isnan(roc_auc_ovr([0, 0], np.array([[0.5, 0.5]] * 2))[0])


def test_report_structure_and_json_safety():
    out = classification_metrics([0, 0, 1], [0, 1, 1], np.array([[0.8, 0.2, 0.0], [0.4, 0.6, 0.0], [0.1, 0.9, 0.0]]),
                                 ["x", "y", "z"])
    assert out["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]
    assert out["per_class"]["z"]["support"] == 0 and math.isnan(out["per_class"]["z"]["recall"])
    assert out["per_class"]["x"]["f1"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="class names"):
        classification_metrics([0], [0], class_names=["a"], num_classes=2)


def test_losses_bce_one_hot_and_ce():
    logits = torch.tensor([[2.0, -1.0, 0.0], [0.0, 0.0, 3.0]])
    target = torch.tensor([0, 2])
    bce = build_classification_loss("bce", 3)
    onehot = torch.tensor([[1.0, 0, 0], [0, 0, 1.0]])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, onehot)
    torch.testing.assert_close(bce(logits, target), expected)
    torch.testing.assert_close(bce(logits, target[:, None]), expected)
    torch.testing.assert_close(bce(logits, onehot), expected)
    ce = build_classification_loss("ce", 3)
    torch.testing.assert_close(ce(logits, target), torch.nn.functional.cross_entropy(logits, target))
    smooth = build_classification_loss("bce", 3, label_smoothing=0.3)
    soft = onehot * 0.7 + 0.1
    torch.testing.assert_close(smooth(logits, target), torch.nn.functional.binary_cross_entropy_with_logits(logits, soft))
    with pytest.raises(ValueError, match="unknown loss"):
        build_classification_loss("focal", 3)


def test_probabilities_sum_to_one_and_keep_the_argmax():
    logits = torch.tensor([[2.0, -1.0, 0.5], [-3.0, -2.0, -4.0]])
    for act in ("softmax", "sigmoid"):
        p = class_probabilities(logits, act)
        torch.testing.assert_close(p.sum(1), torch.ones(2))
        assert torch.equal(p.argmax(1), logits.argmax(1))
    s = torch.sigmoid(logits)
    torch.testing.assert_close(class_probabilities(logits, "sigmoid"), s / s.sum(1, keepdim=True))
    with pytest.raises(ValueError):
        class_probabilities(logits, "relu")


def test_stacked_output_reads_decollated_items_with_index_or_one_hot_labels():
    items = [{"pred": torch.tensor([0.7, 0.3]), "label": torch.tensor([0.0, 1.0])},
             {"pred": torch.tensor([0.2, 0.8]), "label": torch.tensor(0)}]
    probs, labels = stacked_output("pred", "label")(items)
    assert probs.shape == (2, 2) and labels.tolist() == [1, 0]


def test_augmentation_output_and_channels():
    aug = classification_augmentation(32, channels=3, flip_prob=0.5)
    aug.set_random_state(seed=0)
    out = aug({"image": torch.rand(1, 48, 40), "label": torch.tensor(1)})
    assert out["image"].shape == (3, 32, 32) and out["image"].dtype == torch.float32
    assert 0.0 <= float(out["image"].min()) and float(out["image"].max()) <= 1.0
    assert torch.equal(out["image"][0], out["image"][2])  # grey repeated
    grey = ToChannelsd("image", 1)({"image": torch.ones(3, 4, 4)})["image"]
    torch.testing.assert_close(grey, torch.ones(1, 4, 4))


def test_report_writes_csv_metrics_and_png(tmp_path):
    from ignite.engine import Engine

    names = ["a", "b"]
    batches = [[{"pred": torch.tensor([0.9, 0.1]), "label": torch.tensor([1.0, 0.0])},
                {"pred": torch.tensor([0.3, 0.7]), "label": torch.tensor([1.0, 0.0])}],
               [{"pred": torch.tensor([0.4, 0.6]), "label": torch.tensor([0.0, 1.0])}]]
    engine = Engine(lambda e, b: b)
    report = ClassificationReport(str(tmp_path), names, split="validation")
    report.attach(engine)
    engine.run(batches, max_epochs=1)
    rows = (tmp_path / "predictions.csv").read_text().splitlines()
    assert rows[0] == "file,label,true_class,pred,pred_class,prob_a,prob_b" and len(rows) == 4
    assert rows[2].split(",")[3:5] == ["1", "b"]
    import json

    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["summary"]["accuracy"] == pytest.approx(2 / 3) and m["split"] == "validation"
    assert m["per_class"]["b"]["precision"] == pytest.approx(0.5)
    assert (tmp_path / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert engine.state.metrics["report_accuracy"] == pytest.approx(2 / 3)


def test_plot_confusion_matrix_writes_png(tmp_path):
    path = plot_confusion_matrix(np.array([[3, 1], [0, 0]]), ["x", "y"], tmp_path / "sub" / "cm.png", "t")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_validation_log_keeps_numpy_and_tensor_metrics(tmp_path):
    import json

    from ignite.engine import Engine

    from dcl_cstp_ext.engines import ValidationLog

    engine = Engine(lambda e, b: None)
    engine.state.epoch = 3
    engine.state.metrics = {"acc": 0.5, "auc": np.float32(0.75), "t": torch.tensor(0.25), "vec": torch.ones(2)}
    engine.state.best_metric, engine.state.best_metric_epoch = 0.5, 3
    ValidationLog(str(tmp_path))(engine)
    row = json.loads((tmp_path / "val_metrics.jsonl").read_text())
    assert row == {"epoch": 3, "acc": 0.5, "auc": 0.75, "t": 0.25, "best_metric": 0.5, "best_metric_epoch": 3}
