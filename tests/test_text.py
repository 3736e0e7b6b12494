"""The spelling experiment's parts: CLIP's BPE tokenizer (against open_clip's where it is installed), the word
renderer, the word sets, the token- and character-level encoders, the text-conditioned denoiser with guidance and
prompt dropout, the OCR and a smoke training run of a text-to-image model."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffbook.data import clip_bpe
from diffbook.data.clip_bpe import clean, tokenizer
from diffbook.data.text import MAX_LEN, check_word, random_strings, render_word, render_words, slot_bounds
from diffbook.data.words import SETS, token_ids, word_sets
from diffbook.nets.ocr import BLANK, SlotOCR, read, targets
from diffbook.nets.text_encoders import END, PAD, START, TEXT_UNET_TINY, TextEncoder, TextUNet
from diffbook.train.text2img import drop_prompts

torch.set_num_threads(1)


# ------------------------------------------------------------------------------------------------ tokenizer
def test_vocabulary_has_clips_49408_tokens_and_special_ids():
    tok = tokenizer()
    assert tok.vocab_size == clip_bpe.VOCAB_SIZE == 49408
    assert (tok.sot, tok.eot) == (49406, 49407)
    assert tok.pieces("a photo of a cat") == ["a</w>", "photo</w>", "of</w>", "a</w>", "cat</w>"]


def test_an_unseen_spelling_explodes_into_pieces_and_ids_carry_no_letters():
    tok = tokenizer()
    assert len(tok.encode("cat")) == 1 and len(tok.encode("qzxv")) > 1
    # neighbouring ids are unrelated words: the id says nothing about the letters
    i = tok.encode("cat")[0]
    assert tok.decode([i + 1]) != "cat" and not tok.decode([i + 1]).startswith("ca")


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40))
def test_round_trip_ids_to_text(text):
    """decode(encode(text)) gives the cleaned text back, up to spaces (a word's end decodes as a space)."""
    tok = tokenizer()
    assert tok.decode(tok.encode(text)).replace(" ", "") == clean(text).replace(" ", "")


@pytest.mark.parametrize("text", ["hello world", "don't stop", "a cat sat on the mat", "x-ray 2026"])
def test_round_trip_exact_on_words(text):
    tok = tokenizer()
    assert tok.decode(tok.encode(text)).replace(" ", "") == text.replace(" ", "")
    row = tok(text)[0].tolist()  # start, ids, end, then padding with id 0 (which is the token "!")
    assert tok.decode(row[:row.index(tok.eot) + 1]) == tok.decode(tok.encode(text))


def test_clear_errors_for_unknown_input():
    tok = tokenizer()
    with pytest.raises(ValueError, match="token ids must lie in 0..49407"):
        tok.decode([49408])
    with pytest.raises(ValueError, match="token ids must lie"):
        tok.decode([-1])
    with pytest.raises(TypeError, match="text must be a string"):
        tok.encode(123)


def test_batch_is_padded_like_clips_tokenize():
    tok = tokenizer()
    ids = tok(["a cat", "dog"], context_length=8)
    assert ids.shape == (2, 8) and ids.dtype == torch.long
    assert ids[0].tolist()[:4] == [tok.sot, *tok.encode("a cat"), tok.eot] and ids[0, 4:].eq(0).all()
    long = tok(["word " * 100], context_length=77)
    assert long.shape == (1, 77) and long[0, -1] == tok.eot


def test_corrupt_vocabulary_file_is_refused(tmp_path):
    bad = tmp_path / "vocab.txt.gz"
    bad.write_bytes(b"not the vocabulary")
    with pytest.raises(ValueError, match="not CLIP's vocabulary"):
        clip_bpe.ClipTokenizer(bad)


def _open_clip_tokenizer():
    spec = importlib.util.find_spec("open_clip")
    if spec is None or importlib.util.find_spec("ftfy") is None or importlib.util.find_spec("regex") is None:
        pytest.skip("open-clip-torch (installed with --no-deps), ftfy and regex are needed for the peer check")
    path = Path(spec.submodule_search_locations[0])
    mod_spec = importlib.util.spec_from_file_location("_open_clip_tokenizer", path / "tokenizer.py")
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)  # the tokenizer module alone: no torchvision-dependent import
    return mod, path


def test_agrees_with_open_clip_and_ships_the_same_file():
    mod, path = _open_clip_tokenizer()
    assert (path / "bpe_simple_vocab_16e6.txt.gz").read_bytes() == clip_bpe.VOCAB_FILE.read_bytes()
    ref, tok = mod.SimpleTokenizer(), tokenizer()
    rng = random.Random(0)
    texts = ["a photo of a cat", "Hello, World!!", "don't stop_me now_!", "x-ray &amp; 2026", "café naïve"]
    texts += ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(1, 8))) for _ in range(400)]
    assert [tok.encode(t) for t in texts] == [ref.encode(t) for t in texts]
    assert torch.equal(tok(texts[:5]), ref(texts[:5]))


# ------------------------------------------------------------------------------------------------ renderer
def test_rendering_is_deterministic_and_in_range():
    a, b = render_words(["cat", "jump"]), render_words(["cat", "jump"])
    assert a.shape == (2, 1, 16, 48) and torch.equal(a, b)
    assert a.min() == -1 and a.max() == 1
    assert not torch.equal(render_word("cat"), render_word("cot"))


def test_each_character_stays_in_its_slot():
    bounds = slot_bounds()
    for k in range(MAX_LEN):
        word = "x" * (k + 1)
        ink = (render_word(word)[0] > -0.5).any(0).nonzero().flatten()
        lo, hi = bounds[0][0], bounds[k][1]
        assert ink.min() >= lo - 1 and ink.max() <= hi, (word, ink.min(), ink.max(), bounds)


@pytest.mark.parametrize("word, error", [("中", "no glyph"), ("a\u0378", "no glyph"), ("", "1 to 4"),
                                         ("toolong", "1 to 4"), ("a b", "no glyph"), (3, "must be a string")])
def test_renderer_fails_clearly(word, error):
    with pytest.raises((ValueError, TypeError), match=error):
        check_word(word)


def test_random_strings_are_seeded():
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert random_strings(20, g1) == random_strings(20, g2)


# ------------------------------------------------------------------------------------------------ word sets
def test_word_sets_separate_what_a_token_encoder_can_know():
    sets, tok = word_sets(0), tokenizer()
    train_ids = {i for w in sets["train"] for i in tok.encode(w)}
    assert len(set(sets["train"])) == len(sets["train"]) == 1400
    for name in SETS:
        assert len(sets[name]) == 100
        if name != "seen":
            assert not set(sets[name]) & set(sets["train"]), name
    assert set(sets["seen"]) <= set(sets["train"])
    assert all(len(tok.encode(w)) == 1 and tok.encode(w)[0] not in train_ids for w in sets["heldout_word"])
    assert all(set(tok.encode(w)) <= train_ids for w in sets["heldout_seen_tokens"])
    assert all(not set(tok.encode(w)) <= train_ids for w in sets["heldout_unseen_tokens"])
    assert word_sets(0) == sets and word_sets(1)["train"] != sets["train"]


# ------------------------------------------------------------------------------------------------ encoders
def test_token_and_char_encoders_share_their_body():
    sets = word_sets(0)
    enc_t = TextEncoder("token", dim=16, layers=1, token_ids=token_ids(sets))
    enc_c = TextEncoder("char", dim=16, layers=1)
    body = {n: p.shape for n, p in enc_t.named_parameters() if not n.startswith("embed")}
    assert body == {n: p.shape for n, p in enc_c.named_parameters() if not n.startswith("embed")}
    ids = enc_c.tokenize(["cat", ""])
    assert ids[0].tolist() == [START, 3 + ord("c"), 3 + ord("a"), 3 + ord("t"), END, PAD]
    assert ids[1].tolist() == [START, END, PAD, PAD, PAD, PAD]
    out, mask = enc_t(enc_t.tokenize(["cat", "qzxv"]))
    assert out.shape == (2, 6, 16) and mask.sum(1).tolist() == [3, 2 + len(tokenizer().encode("qzxv"))]
    assert enc_t.known("cat") and not enc_t.known("zebra")
    with pytest.raises(ValueError, match="at most 4"):
        enc_c.tokenize(["toolong"])
    with pytest.raises(ValueError, match="needs token_ids"):
        TextEncoder("token")


def test_text_denoiser_shapes_guidance_and_prompt_dropout():
    from diffbook.denoisers import from_eps_model
    from diffbook.guidance import cfg
    from diffbook.schedules import betas_to_alpha_bar, linear_betas

    torch.manual_seed(0)
    net = TextUNet(TEXT_UNET_TINY, dict(kind="char", dim=16, layers=1)).eval()
    D = from_eps_model(net, betas_to_alpha_bar(linear_betas(1000)))
    x, sigma = torch.randn(3, 1, 16, 48), torch.full((3,), 2.0)
    tokens, null = net.tokenize(["cat", "dog", "sun"]), net.tokenize([""] * 3)
    with torch.no_grad():
        cond, uncond = D(x, sigma, tokens=tokens), D(x, sigma, tokens=null)
        assert cond.shape == x.shape
        assert torch.allclose(cfg(D, 0.0, {"tokens": null})(x, sigma, tokens=tokens), cond, atol=1e-5)
        assert torch.allclose(cfg(D, -1.0, {"tokens": null})(x, sigma, tokens=tokens), uncond, atol=1e-5)
    with pytest.raises(ValueError, match="shape"):
        D(torch.randn(3, 1, 32, 32), sigma, tokens=tokens)
    g = torch.Generator().manual_seed(0)
    many = net.tokenize(["cat"] * 2000)
    assert torch.equal(drop_prompts(many, null[:1], 0.0, g), many)
    assert (drop_prompts(many, null[:1], 1.0, g) == null[:1]).all()
    frac = (drop_prompts(many, null[:1], 0.1, g) == null[:1]).all(1).double().mean().item()
    assert 0.08 < frac < 0.12


# ------------------------------------------------------------------------------------------------ OCR
def test_ocr_targets_and_reading():
    t = targets(["cat", "jump"])
    assert t.tolist() == [[2, 0, 19, BLANK], [9, 20, 12, 15]]
    with pytest.raises(ValueError, match="lower-case letters"):
        targets(["Cat"])
    ocr = SlotOCR((4, 4, 4)).eval()
    assert len(read(ocr, render_words(["cat", "jump"]))) == 2


def test_shipped_ocr_reads_renders_above_the_bar():
    """The shipped OCR model reads clean renders of fresh random strings with >= 98% exact-word accuracy, and
    ``diffbook.load`` returns the same judge as ``load_text_model``."""
    import diffbook
    from diffbook.eval.spelling import spelling_scores
    from diffbook.zoo.text import OCRModel, load_text_model

    ocr = load_text_model("text-ocr")
    assert isinstance(diffbook.load("text-ocr"), OCRModel)
    words = random_strings(500, torch.Generator().manual_seed(99))
    scores = spelling_scores(ocr.net, words, render_words(words))
    assert scores["word_accuracy"] >= 0.98 and scores["char_accuracy"] >= 0.99, scores


# ------------------------------------------------------------------------------------------------ training
def test_text_models_are_registered_training_recipes():
    from diffbook.train import recipes
    from diffbook.train.ocr import OCRObjective
    from diffbook.train.text2img import TextDiffusionObjective

    for name in ("text-token", "text-char"):
        assert recipes.objective_class(name) is TextDiffusionObjective
        assert {"smoke", "cpu", "release"} <= set(recipes.CONFIGS[name])
    assert recipes.objective_class("text-ocr") is OCRObjective
    # the two models of the experiment differ in the encoder's kind only
    a, b = recipes.get_config("text-token", "cpu"), recipes.get_config("text-char", "cpu")
    assert a.pop("kind") == "token" and b.pop("kind") == "char" and a == b


def test_smoke_training_writes_a_loadable_text_model(tmp_path):
    import diffbook
    from diffbook.train.loop import train
    from diffbook.zoo.text import TextToImageModel, load_text_model

    card = train("text-char", "smoke", tmp_path, steps=2)
    assert isinstance(diffbook.load("text-char", tmp_path), TextToImageModel)
    assert card["arch"] == "text-unet" and card["steps"] == 2 and "words" in card["data"]
    model = load_text_model("text-char", tmp_path)
    images = model.sample(["cat", "qzx"], guidance=1.0, steps=2)
    assert images.shape == (2, 1, 16, 48) and images.abs().max() <= 1


def test_shipped_spelling_results_are_complete_with_provenance():
    """The spelling sweep shipped with the book: every model, word set and seed, consistent with its own settings,
    and the judge's ceiling on clean renders above the bar."""
    from diffbook.data.words import SETS, word_sets
    from diffbook.eval.spelling import MODELS, decode_images
    from diffbook.zoo import results

    res = results.load("spelling")   # python -m diffbook sweep spelling
    for key in ("command", "commit", "device", "date", "wall_s", "settings", "rows", "cards"):
        assert key in res, key
    seeds = res["settings"]["seeds"]
    assert len(seeds) >= 3
    assert {(r["model"], r["set"], r["seed"]) for r in res["rows"]} == {
        (m, s, seed) for m in MODELS for s in SETS for seed in seeds}
    assert res["sets"] == {k: list(v) for k, v in word_sets(res["settings"]["word_seed"]).items() if k in SETS}
    assert all(v["word_accuracy"] >= 0.99 for v in res["ocr_on_renders"].values())
    for r in res["rows"]:
        # a word read exactly has all its letters right: word accuracy <= character accuracy
        assert 0 <= r["word_accuracy"] <= r["char_accuracy"] + 1e-9 and r["char_accuracy"] <= 1
        assert r["n_words"] == len(res["sets"][r["set"]])
    g = res["gallery"]["text-char/seen"]
    assert decode_images(g["images"], (len(g["words"]), 1, 16, 48)).abs().max() <= 1
