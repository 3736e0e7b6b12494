"""The words of the spelling experiment: a training set and held-out sets that separate what a token-level and a
character-level text encoder can know.

All words are 3 or 4 lower-case letters (they fit the 16x48 images of :mod:`diffbook.data.text`). Two sources:

- *common words*: CLIP's vocabulary entries that are a whole 3-4 letter word (``cat</w>``), taken in the order
  of CLIP's merge list (frequent first), so each is ONE token;
- *random strings*: uniform random letters that CLIP splits into two or more pieces (``qvx`` -> ``q`` ``vx``).

The sets (:func:`word_sets`, deterministic for a seed):

- ``train``: common words and random strings that both text-to-image models see in training;
- ``seen``: a sample of ``train``, to measure spelling on words the models were trained on;
- ``heldout_word``: common words never trained on: one token each, whose id never occurs in training;
- ``heldout_seen_tokens``: random strings never trained on whose every piece occurs in training words;
- ``heldout_unseen_tokens``: random strings never trained on with at least one piece that no training word has.

For a character-level encoder every held-out word is known letters in a new order; for a token-level encoder the
three held-out sets differ in whether its embedding rows for the word were ever trained.
"""

from __future__ import annotations

import functools
import random
import re

from .clip_bpe import tokenizer

__all__ = ["common_words", "word_sets", "token_ids", "SETS"]

#: The evaluation sets, in the order the chapter reports them.
SETS = ("seen", "heldout_seen_tokens", "heldout_unseen_tokens", "heldout_word")


@functools.lru_cache(maxsize=1)
def common_words() -> tuple[str, ...]:
    """CLIP's single-token 3-4 letter words (``[a-z]{3,4}</w>`` entries), in merge order (most frequent first)."""
    return tuple(p[:-4] for p in tokenizer().decoder if re.fullmatch(r"[a-z]{3,4}</w>", p))


def _random_string(rng: random.Random) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.choice((3, 4))))


@functools.lru_cache(maxsize=8)
def word_sets(seed: int = 0, n_common: int = 700, n_random: int = 700, n_eval: int = 100,
              pool: int = 1500) -> dict[str, tuple[str, ...]]:
    """The experiment's word sets (see the module docstring); ``pool`` most frequent common words are the source
    of ``train``'s common words and of ``heldout_word``. Returns a dict of tuples of words."""
    tok = tokenizer()
    rng = random.Random(seed)
    common = list(common_words()[:pool])
    rng.shuffle(common)
    train_common, heldout_word = common[:n_common], common[n_common:n_common + n_eval]
    all_common = set(common_words())
    train_random: list[str] = []
    taken = set(all_common)
    while len(train_random) < n_random:
        s = _random_string(rng)
        if s not in taken and len(tok.encode(s)) >= 2:
            taken.add(s)
            train_random.append(s)
    train = train_common + train_random
    seen_ids = {i for w in train for i in tok.encode(w)}
    seen_tokens: list[str] = []
    unseen_tokens: list[str] = []
    while len(seen_tokens) < n_eval or len(unseen_tokens) < n_eval:
        s = _random_string(rng)
        ids = tok.encode(s)
        if s in taken or len(ids) < 2:
            continue
        taken.add(s)
        target = seen_tokens if set(ids) <= seen_ids else unseen_tokens
        if len(target) < n_eval:
            target.append(s)
    seen = random.Random(seed + 1).sample(train, n_eval)
    return dict(train=tuple(train), seen=tuple(seen), heldout_seen_tokens=tuple(seen_tokens),
                heldout_unseen_tokens=tuple(unseen_tokens), heldout_word=tuple(heldout_word))


def token_ids(sets: dict) -> list[int]:
    """Every CLIP id that occurs in any of the sets: the rows of a token-level encoder's embedding table."""
    tok = tokenizer()
    return sorted({i for words in sets.values() for w in words for i in tok.encode(w)})
