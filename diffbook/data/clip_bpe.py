"""CLIP's byte-pair-encoding (BPE) tokenizer, read from its real vocabulary: how a prompt becomes token ids.

The vocabulary file ``clip_bpe_vocab_16e6.txt.gz`` ships inside this package: it is the file OpenAI's CLIP
(Radford et al. 2021) and ``open-clip-torch`` 3.3.0 ship (MIT licence, Copyright (c) 2021 OpenAI), byte for byte
(SHA-256 checked on load), so no other package, and none of their torchvision-dependent modules, is needed.
It lists 48,894 merges; with the 256 byte symbols, their 256 end-of-word forms and the two special tokens
``<start_of_text>`` and ``<end_of_text>`` the vocabulary has 49,408 tokens.

How a text is tokenized (Sennrich et al. 2016's BPE on bytes, as in GPT-2 and CLIP):

1. clean: unescape HTML entities, collapse white space, lower-case (CLIP also runs ``ftfy.fix_text``, which
   repairs broken Unicode and changes nothing in clean text; it is left out here);
2. split into words, numbers (one digit each) and runs of punctuation;
3. map each word's UTF-8 bytes to printable stand-in characters and mark its last symbol with ``</w>``;
4. repeatedly merge the adjacent pair that comes first in the merge list, until no listed pair is left;
5. look every resulting piece up in the vocabulary.

Every string can be encoded (the 256 byte symbols cover any input); unknown ids cannot be decoded.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import html
import re
from pathlib import Path

__all__ = ["VOCAB_FILE", "VOCAB_SHA256", "VOCAB_SIZE", "ClipTokenizer", "tokenizer", "clean"]

VOCAB_FILE = Path(__file__).resolve().parent / "clip_bpe_vocab_16e6.txt.gz"
VOCAB_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
VOCAB_SIZE = 49408
N_MERGES = VOCAB_SIZE - 2 * 256 - 2  # 48,894

# words (runs of letters), single digits, runs of other non-space symbols, and English contractions
_PATTERN = re.compile(r"<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|(?:[^\s\w]|_)+",
                      re.IGNORECASE)


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's (and GPT-2's) table from the 256 byte values to printable characters (printable bytes map to
    themselves; the others to code points from 256 on), so BPE never sees white space or control characters."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def clean(text: str) -> str:
    """CLIP's text cleaning without ftfy: HTML entities unescaped (twice), white space collapsed, lower case."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}.")
    return " ".join(html.unescape(html.unescape(text)).split()).lower()


class ClipTokenizer:
    """CLIP's BPE tokenizer: :meth:`encode` (text -> ids), :meth:`decode` (ids -> text), :meth:`pieces`.

    ``sot`` and ``eot`` are the ids of ``<start_of_text>`` (49406) and ``<end_of_text>`` (49407);
    ``__call__(texts, context_length)`` pads to a [N, context_length] batch like CLIP's ``tokenize``.
    """

    def __init__(self, path: Path = VOCAB_FILE):
        data = Path(path).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest != VOCAB_SHA256:
            raise ValueError(f"{path} has SHA-256 {digest[:12]}..., not CLIP's vocabulary ({VOCAB_SHA256[:12]}...); "
                             "reinstall diffbook.")
        merges = gzip.decompress(data).decode("utf-8").split("\n")[1:N_MERGES + 1]
        merges = [tuple(m.split()) for m in merges]
        self.byte_encoder = _bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        vocab = list(self.byte_encoder.values())
        vocab += [v + "</w>" for v in vocab] + ["".join(m) for m in merges] + ["<start_of_text>", "<end_of_text>"]
        self.encoder = {piece: i for i, piece in enumerate(vocab)}
        self.decoder = vocab
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.sot, self.eot = self.encoder["<start_of_text>"], self.encoder["<end_of_text>"]
        self.vocab_size = len(vocab)
        self._cache: dict[str, tuple[str, ...]] = {}

    def bpe(self, word: str) -> tuple[str, ...]:
        """The BPE pieces of one pre-split word (already in byte symbols): merge the best-ranked pair until none
        of the word's adjacent pairs is in the merge list."""
        if word in self._cache:
            return self._cache[word]
        symbols = list(word[:-1]) + [word[-1] + "</w>"]
        while len(symbols) > 1:
            pairs = [(self.ranks.get(p, float("inf")), i) for i, p in enumerate(zip(symbols, symbols[1:]))]
            rank, _ = min(pairs)
            if rank == float("inf"):
                break
            first, second = next(p for p in zip(symbols, symbols[1:]) if self.ranks.get(p) == rank)
            merged, i = [], 0
            while i < len(symbols):
                if i < len(symbols) - 1 and symbols[i] == first and symbols[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        self._cache[word] = tuple(symbols)
        return self._cache[word]

    def pieces(self, text: str) -> list[str]:
        """The token strings of ``text`` (``</w>`` marks the end of a word), e.g. 'hello world' ->
        ['hello</w>', 'world</w>']."""
        out = []
        for word in _PATTERN.findall(clean(text)):
            if word in ("<start_of_text>", "<end_of_text>"):
                out.append(word)
                continue
            out.extend(self.bpe("".join(self.byte_encoder[b] for b in word.encode("utf-8"))))
        return out

    def encode(self, text: str) -> list[int]:
        """The token ids of ``text`` (without the start and end tokens)."""
        return [self.encoder[p] for p in self.pieces(text)]

    def decode(self, ids) -> str:
        """The text of token ids (start/end tokens dropped, ``</w>`` read as a space, trailing space removed).

        Raises ValueError for an id outside 0 .. 49,407."""
        ids = [int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"token ids must lie in 0..{self.vocab_size - 1}, got {bad[:5]}.")
        text = "".join(self.decoder[i] for i in ids if i not in (self.sot, self.eot))
        raw = bytearray(self.byte_decoder[c] for c in text)
        return raw.decode("utf-8", errors="replace").replace("</w>", " ").strip()

    def __call__(self, texts, context_length: int = 77):
        """A LongTensor [N, context_length]: start token, ids, end token, zeros (CLIP's padding); too long texts
        are cut and end with the end token, as CLIP does."""
        import torch

        texts = [texts] if isinstance(texts, str) else list(texts)
        out = torch.zeros(len(texts), context_length, dtype=torch.long)
        for row, text in zip(out, texts):
            ids = [self.sot, *self.encode(text), self.eot]
            if len(ids) > context_length:
                ids = ids[:context_length - 1] + [self.eot]
            row[:len(ids)] = torch.tensor(ids)
        return out


@functools.lru_cache(maxsize=1)
def tokenizer() -> ClipTokenizer:
    """The tokenizer of the shipped vocabulary (built once per process, about a second)."""
    return ClipTokenizer()
