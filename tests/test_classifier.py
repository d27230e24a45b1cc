import json

import pytest
import torch

from pqstudy.metrics.classifier import (
    ClassifierConfig,
    ImageClassifier,
    accuracy,
    classifier_for,
    classify,
    train_classifier,
)

TINY = ClassifierConfig(width=4, feature_dim=24, epochs=3, batch_size=32, lr=0.1)
# Enough to learn the toy task on every CPU: over seeds 0-15 at the AVX-512, AVX2 and scalar levels of an AMD EPYC
# (tests/isa.py) it reached test accuracy 1.0 every time, on both toy sets below. TINY (18 steps, width 4) is
# bimodal instead: 0.33, 0.67 or 1.0 by seed and instruction set (0.67 for seed 0 on that EPYC, 1.0 on a Xeon).
LEARNS = ClassifierConfig(width=8, feature_dim=24, epochs=8, batch_size=32, lr=0.03)


def coloured_images(per_class: int, *, classes: int = 3, size: int = 32, seed: int = 0):
    """uint8 images (classes·per_class, 3, size, size): class c is one flat colour plus noise, labels long."""
    g = torch.Generator().manual_seed(seed)
    colours = torch.tensor([[200, 40, 40], [40, 200, 40], [40, 40, 200], [200, 200, 40]])[:classes]
    labels = torch.arange(classes).repeat_interleave(per_class)
    noise = 40 * torch.randn(len(labels), 3, size, size, generator=g)
    images = (colours[labels][:, :, None, None] + noise).round().clamp(0, 255).to(torch.uint8)
    order = torch.randperm(len(labels), generator=g)
    return images[order], labels[order]


@pytest.fixture(scope="module")
def data():
    return (*coloured_images(64), *coloured_images(16, seed=1))


@pytest.fixture(scope="module")
def trained(data):
    return train_classifier(*data, cfg=TINY, num_classes=3)


@pytest.mark.parametrize("size", [32, 16, 48])
@pytest.mark.parametrize("feature_dim, dims", [(0, 16), (24, 24)])  # 0: the pooled 4·width channels
def test_shapes_at_any_input_size(size, feature_dim, dims):
    model = ImageClassifier(width=4, feature_dim=feature_dim, num_classes=3).eval()
    x = torch.rand(5, 3, size, size) * 2 - 1
    assert model.features(x).shape == (5, dims) and model(x).shape == (5, 3)
    feats, logits = classify(model, ((x + 1) * 127.5).round().to(torch.uint8), batch_size=2)
    assert feats.shape == (5, dims) and logits.shape == (5, 3)


def test_classify_matches_forward_on_uint8_and_float(trained, data):
    model, _ = trained
    images = data[2][:7]
    x = images.float() / 127.5 - 1
    feats, logits = classify(model, images, batch_size=3)
    assert torch.allclose(feats, model.features(x), atol=1e-5)
    assert torch.allclose(logits, model(x), atol=1e-5)
    assert torch.allclose(classify(model, x, batch_size=7)[1], logits, atol=1e-5)


def test_training_raises_accuracy(data):
    model, info = train_classifier(*data, cfg=LEARNS, num_classes=3)
    untrained = ImageClassifier(width=8, feature_dim=24, num_classes=3).eval()
    before = accuracy(untrained, data[2], data[3])
    assert info["test_accuracy"] >= 0.9 > before + 0.3
    assert info["test_accuracy"] == accuracy(model, data[2], data[3])


def test_training_records_what_it_did(trained, data):
    model, info = trained
    assert info["test_accuracy"] == accuracy(model, data[2], data[3])
    assert info["steps"] == 3 * 6 and info["epochs"] == 3 and info["feature_dim"] == 24
    assert info["params"] == sum(p.numel() for p in model.parameters())
    assert info["width"] == 4 and info["seed"] == 0 and info["train_seconds"] > 0


def test_training_is_deterministic_and_leaves_the_global_rng_alone(trained, data):
    state = torch.get_rng_state()
    again, _ = train_classifier(*data, cfg=TINY, num_classes=3)
    assert torch.equal(torch.get_rng_state(), state)
    a, b = trained[0].state_dict(), again.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    other, _ = train_classifier(*data, cfg=ClassifierConfig(**{**TINY.__dict__, "seed": 1}), num_classes=3)
    assert not torch.equal(other.state_dict()["head.weight"], a["head.weight"])


def test_other_image_sizes_are_resized_for_training():
    train = coloured_images(96, classes=2, size=16)
    test = coloured_images(8, classes=2, size=16, seed=1)
    model, info = train_classifier(*train, *test, cfg=LEARNS, num_classes=2)
    assert info["test_accuracy"] >= 0.9


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_cache_is_used_once_written(data, tmp_path):
    first, info = classifier_for(*data, key="toy-1", cache_dir=tmp_path, cfg=TINY, num_classes=3)
    assert info["cache"] == "trained" and info["provenance"]["key"] == "toy-1"
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and files[0].endswith(".json") and files[1].endswith(".pt")
    second, info2 = classifier_for(*data, key="toy-1", cache_dir=tmp_path, cfg=TINY, num_classes=3)
    assert info2["cache"] == "hit" and info2["test_accuracy"] == info["test_accuracy"]
    assert _same_weights(first, second) and not second.training
    # another data key or config is another file
    _, info3 = classifier_for(*data, key="toy-2", cache_dir=tmp_path, cfg=TINY, num_classes=3)
    assert info3["cache"] == "trained" and info3["cache_file"] != info["cache_file"]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other-weights", "other-key", "no-json"])
def test_a_damaged_or_mismatched_cache_is_retrained(data, tmp_path, damage):
    model, info = classifier_for(*data, key="toy", cache_dir=tmp_path, cfg=TINY, num_classes=3)
    pt = tmp_path / info["cache_file"].rsplit("/", 1)[-1]
    meta = pt.with_suffix(".json")
    if damage == "garbage":
        pt.write_bytes(b"not a checkpoint")
    elif damage == "truncated":
        pt.write_bytes(pt.read_bytes()[:100])
    elif damage == "other-weights":  # a valid state dict, but not the one the .json recorded
        torch.save(ImageClassifier(width=4, feature_dim=24, num_classes=3).state_dict(), pt)
    elif damage == "other-key":
        record = json.loads(meta.read_text())
        record["provenance"]["key"] = "someone else's data"
        meta.write_text(json.dumps(record))
    else:
        meta.unlink()
    with pytest.warns(UserWarning, match="not used, retraining"):
        again, info2 = classifier_for(*data, key="toy", cache_dir=tmp_path, cfg=TINY, num_classes=3)
    assert info2["cache"] == "trained" and _same_weights(model, again)  # deterministic retraining
    assert classifier_for(*data, key="toy", cache_dir=tmp_path, cfg=TINY, num_classes=3)[1]["cache"] == "hit"


def _bad(data, **change):
    args = dict(zip(["train_images", "train_labels", "test_images", "test_labels"], data, strict=True))
    return {**args, **change}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"train_labels": torch.tensor([0, 1, 3] * 64)}, "train_labels: values in 0..3, expected 0..2"),
        ({"test_labels": torch.full((48,), -1)}, "test_labels: values in -1..-1"),
        ({"train_labels": torch.zeros(100, dtype=torch.long)}, "train_labels: 100 labels for 192 train images"),
        ({"train_labels": torch.zeros(192)}, "train_labels: expected long"),
        ({"test_images": torch.zeros(48, 3, 32, 32)}, "test_images: expected uint8"),
        ({"train_images": torch.zeros(192, 1, 32, 32, dtype=torch.uint8)}, "train_images: expected uint8 \\(N, 3"),
        ({"num_classes": 1}, "num_classes=1"),
        ({"cfg": "big"}, "cfg: expected a ClassifierConfig"),
    ],
)
def test_bad_input_is_refused_before_training(data, change, message):
    kwargs = {"cfg": TINY, "num_classes": 3, **_bad(data, **change)}
    with pytest.raises(ValueError, match=message):
        train_classifier(**kwargs)


@pytest.mark.parametrize(
    "field, value",
    [
        ("width", 0),
        ("epochs", 1.5),
        ("batch_size", True),
        ("lr", 0.0),
        ("lr", float("nan")),
        ("warmup", 1.0),
        ("weight_decay", -1e-4),
        ("label_smoothing", 1.0),
        ("translate", 16),
        ("feature_dim", -1),
        ("augment", 1),
        ("seed", -1),
    ],
)
def test_bad_config_is_refused(field, value):
    with pytest.raises(ValueError, match=f"ClassifierConfig.{field}="):
        ClassifierConfig(**{field: value})


def test_bad_cache_arguments_are_refused(data, tmp_path):
    with pytest.raises(ValueError, match="key=''"):
        classifier_for(*data, key="", cache_dir=tmp_path, cfg=TINY, num_classes=3)
    with pytest.raises(ValueError, match="train_labels: values in 0..2, expected 0..1"):
        classifier_for(*data, key="toy", cache_dir=tmp_path, cfg=TINY, num_classes=2)
    assert not list(tmp_path.iterdir())
