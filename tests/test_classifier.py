"""Tests of diffbook.classifier: the shipped feature classifier, its features, and the training command."""

import json

import pytest
import torch

from diffbook import zoo
from diffbook.data.fashion import load_fashion_mnist
from diffbook.eval.metrics import frechet_distance
from diffbook.nets import classifier
from diffbook.nets.classifier import FashionClassifier, extract_features, predict
from diffbook.train import classifier as train_clf
from diffbook.train.classifier import augment
from diffbook.zoo import registry


def load_classifier(root=None):
    return zoo.load_network("fmnist-clf", root)[0]


@pytest.fixture(scope="module")
def shipped():
    return load_classifier()


@pytest.fixture(scope="module")
def test_set():
    x, y = load_fashion_mnist("test")
    return x[:2000], y[:2000]


@pytest.fixture(scope="module")
def test_feats(shipped, test_set):
    return extract_features(shipped, test_set[0])


def test_shipped_classifier_reaches_92_percent_and_its_card_is_honest(shipped, test_set, test_feats):
    x, y = test_set
    assert torch.equal(shipped.head(test_feats[:50]).argmax(1), predict(shipped, x[:50]))  # logits = head(features)
    acc = (shipped.head(test_feats).argmax(1) == y).double().mean().item()
    assert acc >= 0.92, f"accuracy on the first 2,000 test images is {acc:.4f}"
    _, card = registry.load_state("fmnist-clf")
    assert abs(acc - card["test_accuracy_first_2000"]) <= 1 / 2000 + 1e-12  # what the card claims is what ships
    assert card["test_accuracy"] >= 0.92 and card["arch"] == "classifier"
    assert card["config"] == shipped.config


def test_features_shape_sign_and_batch_independence(shipped, test_set, test_feats):
    x, _ = test_set
    assert test_feats.shape == (2000, 128) and test_feats.dtype == torch.float32
    assert (test_feats >= 0).all()  # after ReLU
    assert (test_feats > 0).any(dim=0).sum() > 64  # most units are used
    alone = extract_features(shipped, x[:7])  # eval mode: a sample's features do not depend on its batch
    assert torch.allclose(alone, test_feats[:7], atol=1e-5)


def test_fd_floor_is_far_below_fd_to_noised_images(shipped, test_set, test_feats):
    x, _ = test_set
    floor = frechet_distance(test_feats[:1000], test_feats[1000:])
    noisy = x[1000:] + 0.5 * torch.randn(x[1000:].shape, generator=torch.Generator().manual_seed(0))
    noised = frechet_distance(test_feats[:1000], extract_features(shipped, noisy))
    assert noised > 20 * floor, (floor, noised)


def test_augment_translates_and_flips_within_the_frame():
    x, _ = load_fashion_mnist("test")
    x = x[:16]
    out = augment(x, generator=torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), value=-1.0)
    for i in range(len(x)):  # each output is one of the 25 shifts of its input, flipped or not
        options = [padded[i, :, dy : dy + 32, dx : dx + 32] for dy in range(5) for dx in range(5)]
        options += [o.flip(-1) for o in options]
        assert any(torch.equal(out[i], o) for o in options)
    assert not torch.equal(out, x)


def test_training_is_seeded_and_the_command_registers_a_loadable_model(tmp_path):
    args = dict(epochs=1, batch=64, lr=0.05, seed=3, n_train=128, n_test=100, log=lambda *_: None)
    direct, hist = train_clf.train_classifier(**args)
    assert len(hist["test_accuracy"]) == 1 and hist["train_loss"][0] > 0
    assert train_clf.main(["--epochs", "1", "--batch", "64", "--lr", "0.05", "--n-train", "128", "--n-test", "100",
                            "--seed", "3", "--threads", str(torch.get_num_threads()), "--out", str(tmp_path)]) == 0
    reg = json.loads((tmp_path / "registry.json").read_text())
    assert reg["fmnist-clf"]["sha256"] == registry.sha256_file(tmp_path / "fmnist-clf.safetensors")
    card = json.loads((tmp_path / "fmnist-clf.json").read_text())
    assert card["data"]["test"] == "first 100 Fashion-MNIST test images" and 0 <= card["test_accuracy"] <= 1
    assert card["training"]["epochs"] == 1 and card["command"].startswith("python -m diffbook.train.classifier --epochs 1")
    loaded = load_classifier(tmp_path)
    for k, v in direct.state_dict().items():  # same seed, same weights (the file stores them in fp16)
        w = loaded.state_dict()[k]
        assert torch.equal(w, v.half().float()) if v.is_floating_point() else torch.equal(w, v), k
    other, _ = train_clf.train_classifier(**{**args, "seed": 4, "n_train": 64, "n_test": 1})
    assert not torch.equal(other.head.weight, direct.head.weight)


def test_bad_inputs_raise_one_clear_error(shipped, tmp_path):
    with pytest.raises(ValueError, match=r"\[N, 1, 32, 32\]"):
        shipped.features(torch.zeros(4, 1, 28, 28))
    with pytest.raises(ValueError, match="NaN"):
        extract_features(shipped, torch.full((2, 1, 32, 32), float("nan")))
    with pytest.raises(ValueError, match="labels"):
        classifier.evaluate_accuracy(shipped, torch.zeros(3, 1, 32, 32), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="epochs"):
        train_clf.train_classifier(epochs=0)
    with pytest.raises(ValueError, match="divisible"):
        FashionClassifier(image_size=30)
    with pytest.raises(zoo.ZooError, match="unknown model"):
        load_classifier(root=tmp_path)  # an empty zoo folder


def test_predictions_from_features_equal_predictions_from_images(shipped, test_set, test_feats):
    # the evaluations classify generated images from the features they already computed for the FD
    noisy = (test_set[0][:300] + 0.5 * torch.randn(300, 1, 32, 32, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(classifier.predict_from_features(shipped, test_feats), predict(shipped, test_set[0]))
    assert torch.equal(classifier.predict_from_features(shipped, extract_features(shipped, noisy)),
                       predict(shipped, noisy))
