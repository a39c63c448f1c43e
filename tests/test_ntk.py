"""Tests of the sketched empirical NTK (lensllm_nb.collection.ntk) on tiny random models."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from lensllm_nb.collection.ntk import NTKFeatures, compute_ntk, pairwise_ntk, per_example_losses  # noqa: E402
from lensllm_nb.errors import ConfigError  # noqa: E402

N, LENGTH, VOCAB = 6, 8, 97


def _relative_error(approx, exact):
    return np.linalg.norm(approx - exact) / np.linalg.norm(exact)


def _gpt2():
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=VOCAB, n_positions=32,
                                     bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config)
    ids = torch.randint(0, VOCAB, (N, LENGTH))
    mask = torch.ones_like(ids)
    mask[1, -2:] = 0  # a right-padded example: no attention, no loss there
    labels = ids.masked_fill(mask == 0, -100)
    return model, {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _t5():
    torch.manual_seed(0)
    config = transformers.T5Config(vocab_size=VOCAB, d_model=32, d_kv=8, num_heads=2, d_ff=64, num_layers=1,
                                   num_decoder_layers=1, decoder_start_token_id=0, pad_token_id=0,
                                   eos_token_id=1)
    model = transformers.T5ForConditionalGeneration(config)
    ids = torch.randint(2, VOCAB, (N, LENGTH))
    labels = torch.randint(2, VOCAB, (N, 5))
    labels[0, 3:] = -100
    return model, {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


@pytest.fixture(scope="module", params=["gpt2", "t5"])
def case(request):
    model, batch = {"gpt2": _gpt2, "t5": _t5}[request.param]()
    return model, batch, compute_ntk(model, batch, sketch="exact")


@pytest.fixture(scope="module")
def gpt2():
    return _gpt2()


@pytest.mark.parametrize("sketch", ["countsketch", "rademacher"])
def test_sketch_is_close_to_exact_ntk(case, sketch):
    model, batch, exact = case
    # micro_batch=N draws the dense Rademacher matrix once instead of per example.
    sketched = compute_ntk(model, batch, sketch=sketch, sketch_dim=4096, micro_batch=N)
    assert sketched.gram.shape == (N, N) and sketched.sketch_dim == 4096
    assert _relative_error(sketched.gram, exact.gram) <= 0.10
    np.testing.assert_allclose(sketched.f0, exact.f0, rtol=1e-5)


def test_exact_ntk_equals_pairwise_ntk(case):
    model, batch, exact = case
    reference = pairwise_ntk(model, batch)
    assert _relative_error(exact.gram, reference) <= 1e-5
    assert exact.sketch_dim == exact.n_params == sum(p.numel() for p in model.parameters())


def test_gram_is_symmetric_psd_with_sorted_clipped_spectrum(case):
    model, batch, exact = case
    sketched = compute_ntk(model, batch, sketch_dim=256)
    for features in (exact, sketched):
        np.testing.assert_array_equal(features.gram, features.gram.T)
        assert np.linalg.eigvalsh(features.gram).min() >= -1e-9 * features.eigvals[0]
        assert np.all(features.eigvals >= 0) and np.all(np.diff(features.eigvals) <= 0)
        rebuilt = features.eigvecs @ np.diag(features.eigvals) @ features.eigvecs.T
        np.testing.assert_allclose(rebuilt, features.gram, atol=1e-9 * features.eigvals[0])


def test_per_example_losses_match_the_models_own_loss(case):
    model, batch, _ = case
    model.eval()
    with torch.no_grad():
        losses = per_example_losses(model, batch)
        for i in range(N):
            one = {key: value[i:i + 1] for key, value in batch.items()}
            assert losses[i].item() == pytest.approx(model(**one).loss.item(), rel=1e-5)


def test_F_decays_from_the_initial_residual(gpt2):
    features = compute_ntk(*gpt2, sketch_dim=512)
    residual = features.f0 - features.target
    assert features.F(0.0) == pytest.approx(float(residual @ residual), rel=1e-12)
    assert isinstance(features.F(1.0), float)
    times = np.linspace(0.0, 1.0, 50)
    values = features.F(times)
    assert values.shape == times.shape and np.all(np.diff(values) < 0)
    assert features.F(times.reshape(5, 10)).shape == (5, 10)
    assert features.F(0.3, eta=2.0) == pytest.approx(features.F(0.6), rel=1e-12)
    with pytest.raises(ConfigError, match="`t`"):
        features.F(-1.0)
    with pytest.raises(ConfigError, match="`eta`"):
        features.F(1.0, eta=0)


def test_target_moves_the_residual(gpt2):
    model, batch = gpt2
    target = np.full(N, 1.0)
    features = compute_ntk(model, batch, sketch_dim=64, target=target)
    np.testing.assert_array_equal(features.target, target)
    assert features.F(0.0) == pytest.approx(float(np.sum((features.f0 - 1.0) ** 2)))


@pytest.mark.parametrize("sketch", ["countsketch", "rademacher"])
def test_same_seed_gives_identical_sketch(gpt2, sketch):
    model, batch = gpt2
    first = compute_ntk(model, batch, sketch=sketch, sketch_dim=128, seed=3)
    again = compute_ntk(model, batch, sketch=sketch, sketch_dim=128, seed=3)
    other = compute_ntk(model, batch, sketch=sketch, sketch_dim=128, seed=4)
    np.testing.assert_array_equal(first.gram, again.gram)
    assert not np.allclose(first.gram, other.gram)


def test_micro_batch_does_not_change_the_sketch(gpt2):
    model, batch = gpt2
    single = compute_ntk(model, batch, sketch_dim=1024, micro_batch=1)
    grouped = compute_ntk(model, batch, sketch_dim=1024, micro_batch=4)
    np.testing.assert_allclose(grouped.gram, single.gram, rtol=1e-5, atol=1e-6 * single.eigvals[0])


def test_model_weights_grads_and_modes_are_left_alone(gpt2):
    model, batch = gpt2
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    model.transformer.h[0].eval()  # a user-chosen mix of modes must survive
    batch_before = {k: v.clone() for k, v in batch.items()}
    compute_ntk(model, batch, sketch_dim=64)
    pairwise_ntk(model, {k: v[:2] for k, v in batch.items()})
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())
    assert model.training and model.transformer.training and not model.transformer.h[0].training
    assert all(torch.equal(batch_before[k], batch[k]) for k in batch)
    model.eval()


def test_frozen_parameters_are_skipped():
    model, batch = _gpt2()
    full = compute_ntk(model, batch, sketch="exact")
    model.transformer.wpe.weight.requires_grad_(False)
    partial = compute_ntk(model, batch, sketch="exact")
    assert partial.n_params == full.n_params - model.transformer.wpe.weight.numel()
    assert np.all(np.diag(partial.gram) <= np.diag(full.gram) + 1e-9)
    assert model.transformer.wpe.weight.requires_grad is False


def test_features_round_trip_through_json(gpt2):
    features = compute_ntk(*gpt2, sketch_dim=64, seed=5)
    stored = json.loads(json.dumps(features.to_dict(), allow_nan=False))
    assert stored["spectrum"]["top_eigenvalue"] == pytest.approx(features.eigvals[0])
    back = NTKFeatures.from_dict(stored)
    for name in ("gram", "eigvals", "eigvecs", "f0", "target"):
        np.testing.assert_array_equal(getattr(back, name), getattr(features, name))
    assert (back.sketch, back.sketch_dim, back.seed, back.n_params) == ("countsketch", 64, 5, features.n_params)
    summary = features.spectrum_summary()
    assert summary["trace"] == pytest.approx(np.trace(features.gram))
    assert 1.0 <= summary["effective_rank_trace"] <= N
    assert 1.0 <= summary["effective_rank_entropy"] <= N
    assert summary["condition_number"] >= 1.0


def test_from_gram_builds_features_for_a_synthetic_kernel():
    gram = np.array([[2.0, 1.0], [1.0, 2.0]])
    features = NTKFeatures.from_gram(gram, f0=[1.0, 0.0])
    np.testing.assert_allclose(features.eigvals, [3.0, 1.0])
    # Residual (1, 0) = (e1 + e2)/2 + (e1 − e2)/2 in the eigenbasis.
    assert features.F(1.0) == pytest.approx(0.5 * np.exp(-6.0) + 0.5 * np.exp(-2.0))
    assert gram[0, 1] == 1.0  # input not mutated
    with pytest.raises(ConfigError, match="`gram`"):
        NTKFeatures.from_gram(np.ones((2, 3)), f0=[1.0, 0.0])
    with pytest.raises(ConfigError, match="`f0`"):
        NTKFeatures.from_gram(gram, f0=[1.0, np.nan])


@pytest.mark.parametrize("kwargs, argument, value", [
    ({"sketch_dim": 0}, "sketch_dim", "0"),
    ({"sketch_dim": -8}, "sketch_dim", "-8"),
    ({"sketch_dim": 64.5}, "sketch_dim", "64.5"),
    ({"sketch": "gaussian"}, "sketch", "'gaussian'"),
    ({"micro_batch": 0}, "micro_batch", "0"),
    ({"seed": -1}, "seed", "-1"),
    ({"device": "nonsense"}, "device", "'nonsense'"),
])
def test_bad_arguments_raise_config_error(gpt2, kwargs, argument, value):
    model, batch = gpt2
    with pytest.raises(ConfigError) as info:
        compute_ntk(model, batch, **kwargs)
    message = str(info.value)
    assert f"`{argument}`" in message and value in message and "pass" in message


@pytest.mark.parametrize("make_batch", [
    lambda b: {k: v[:0] for k, v in b.items()},
    lambda b: {},
    lambda b: {"input_ids": b["input_ids"]},
    lambda b: {**b, "labels": b["labels"][:3]},
    lambda b: {k: v.tolist() for k, v in b.items()},
    lambda b: {**b, "labels": torch.full_like(b["labels"], -100)},
])
def test_bad_batches_raise_config_error(gpt2, make_batch):
    model, batch = gpt2
    with pytest.raises(ConfigError, match="`batch"):
        compute_ntk(model, make_batch(batch))


def test_model_without_trainable_parameters_is_refused():
    model, batch = _gpt2()
    model.requires_grad_(False)
    with pytest.raises(ConfigError, match="`model`.*requires_grad"):
        compute_ntk(model, batch)


def test_target_of_the_wrong_length_is_refused_before_computing(gpt2):
    model, batch = gpt2
    with pytest.raises(ConfigError, match="`target`.*length 6"):
        compute_ntk(model, batch, target=np.zeros(3))
