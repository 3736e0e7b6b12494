"""Text conditioning: a prompt -> token ids -> learned embeddings -> a small Transformer -> vectors that a U-Net
reads through cross-attention.

Two encoders of one architecture that differ only in what a token is (the experiment of chapter "Why text-to-image
models cannot spell", after Liu et al. 2022):

- ``kind="token"``: CLIP's byte-pair-encoding tokens (:mod:`diffbook.data.clip_bpe`); the embedding table has a
  row for each CLIP id in ``token_ids`` (the ids of the experiment's words) and one row for any other id;
- ``kind="char"``: the UTF-8 bytes of the prompt, one row per byte value (as ByT5, Xue et al. 2022).

Both add a learned position embedding and run ``layers`` pre-norm Transformer layers over the sequence
``[start, t_1, ..., t_k, end, pad, ...]`` (length ``max_len``). :class:`TextUNet` is the denoising network
eps_hat(x_t, t, tokens): a diffusers ``UNet2DConditionModel`` whose cross-attention layers attend to the encoder's
vectors (Rombach et al. 2022), with two coordinate channels added to its input so that a column of the image
"knows" where it is. The empty prompt ``""`` (start and end tokens only) is the null condition of classifier-free
guidance.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PAD", "START", "END", "TextEncoder", "TextUNet", "TEXT_UNET", "TEXT_UNET_TINY"]

PAD, START, END = 0, 1, 2  # the special rows of both embedding tables
_SPECIAL = 3

#: The U-Net of the spelling experiment (16x48 images; about 1M parameters with its encoder).
TEXT_UNET = dict(sample_size=(16, 48), block_out_channels=(32, 64, 64), layers_per_block=1,
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), norm_num_groups=8,
                 attention_head_dim=8)
#: A tiny one for smoke runs and tests.
TEXT_UNET_TINY = dict(TEXT_UNET, block_out_channels=(8, 16, 16), norm_num_groups=4, attention_head_dim=4)


class TextEncoder(nn.Module):
    """Prompt -> vectors [B, max_len, dim] (and the mask of real positions), token- or character-level.

    ``tokenize(prompts)`` turns strings into the id batch [B, max_len] that ``forward`` takes; ids of a prompt too
    long for ``max_len`` are an error (the experiment's words fit: at most 4 characters, so at most 4 tokens).
    """

    def __init__(self, kind: str, dim: int = 64, layers: int = 2, heads: int = 4, max_len: int = 6,
                 token_ids=None):
        super().__init__()
        if kind not in ("token", "char"):
            raise ValueError(f"kind must be 'token' (CLIP BPE) or 'char' (bytes), got {kind!r}.")
        if kind == "token" and not token_ids:
            raise ValueError("a token-level encoder needs token_ids: the CLIP ids that get their own embedding row.")
        self.kind, self.dim, self.max_len = kind, dim, max_len
        self.token_ids = sorted(int(i) for i in token_ids) if kind == "token" else None
        n_rows = _SPECIAL + (len(self.token_ids) + 1 if kind == "token" else 256)  # token: + one "other id" row
        self.config = dict(kind=kind, dim=dim, layers=layers, heads=heads, max_len=max_len,
                           token_ids=self.token_ids)
        self.embed = nn.Embedding(n_rows, dim)
        self.position = nn.Parameter(torch.randn(max_len, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        if kind == "token":
            self.register_buffer("clip_ids", torch.tensor(self.token_ids, dtype=torch.long), persistent=False)

    # ------------------------------------------------------------------------------------------ prompts -> ids
    def units(self, prompt: str) -> list:
        """What this encoder sees of a prompt: its CLIP pieces (token) or its bytes (char)."""
        if self.kind == "char":
            return list(prompt.encode("utf-8"))
        from ..data.clip_bpe import tokenizer

        return tokenizer().encode(prompt)

    def row_of(self, unit) -> int:
        """The embedding row of one unit (a CLIP id or a byte)."""
        if self.kind == "char":
            return _SPECIAL + int(unit)
        k = int(torch.searchsorted(torch.tensor(self.token_ids), int(unit)))
        known = k < len(self.token_ids) and self.token_ids[k] == int(unit)
        return _SPECIAL + (k if known else len(self.token_ids))

    def tokenize(self, prompts) -> torch.Tensor:
        """Prompts (a list of strings) -> ids [B, max_len]: start, one row per unit, end, padding."""
        if isinstance(prompts, str):
            raise TypeError("tokenize takes a list of prompts; wrap one prompt in a list.")
        out = torch.full((len(prompts), self.max_len), PAD, dtype=torch.long)
        for b, prompt in enumerate(prompts):
            if not isinstance(prompt, str):
                raise TypeError(f"prompts must be strings, got {type(prompt).__name__}.")
            rows = [START, *(self.row_of(u) for u in self.units(prompt)), END]
            if len(rows) > self.max_len:
                raise ValueError(f"{prompt!r} is {len(rows) - 2} {self.kind} units long; this encoder takes at "
                                 f"most {self.max_len - 2}.")
            out[b, :len(rows)] = torch.tensor(rows)
        return out

    def known(self, prompt: str) -> bool:
        """Whether every unit of the prompt has its own embedding row (always true for bytes)."""
        return self.kind == "char" or all(int(u) in set(self.token_ids) for u in self.units(prompt))

    # ------------------------------------------------------------------------------------------ ids -> vectors
    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids [B, max_len] -> (vectors [B, max_len, dim], mask [B, max_len] of real positions)."""
        if tokens.dim() != 2 or tokens.shape[1] != self.max_len or tokens.dtype != torch.long:
            raise ValueError(f"tokens must be a LongTensor [B, {self.max_len}] from .tokenize(prompts), got "
                             f"{tuple(tokens.shape)} {tokens.dtype}.")
        mask = tokens != PAD
        h = self.embed(tokens) + self.position  # (B, L, dim)
        h = self.layers(h, src_key_padding_mask=~mask)
        return self.norm(h), mask


class TextUNet(nn.Module):
    """eps_hat(x_t, t, tokens): a text encoder and a cross-attention U-Net (diffusers ``UNet2DConditionModel``).

    Conditions on text through the U-Net's cross-attention layers (queries from the image features,
    keys and values from the encoder's vectors; padding masked). ``config`` holds the image shape
    (``in_channels`` = 1, ``sample_size``), so diffbook's input checks apply.
    """

    def __init__(self, unet: dict, encoder: dict):
        super().__init__()
        from diffusers import UNet2DConditionModel

        self.encoder = TextEncoder(**encoder)
        cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in unet.items()}
        self.unet = UNet2DConditionModel(in_channels=3, out_channels=1, cross_attention_dim=self.encoder.dim,
                                         **cfg)
        self.config = dict(in_channels=1, sample_size=tuple(cfg["sample_size"]), unet=unet,
                           encoder=self.encoder.config)
        H, W = cfg["sample_size"]
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, H), torch.linspace(-1, 1, W), indexing="ij")
        self.register_buffer("coords", torch.stack([ys, xs])[None], persistent=False)  # (1, 2, H, W)

    def tokenize(self, prompts) -> torch.Tensor:
        """Prompts -> the id batch that ``forward`` takes as ``tokens`` (see :meth:`TextEncoder.tokenize`)."""
        return self.encoder.tokenize(prompts).to(self.coords.device)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """x_t [B, 1, H, W], t [B], tokens [B, max_len] -> eps_hat [B, 1, H, W]."""
        context, mask = self.encoder(tokens)
        x_in = torch.cat([x_t, self.coords.expand(x_t.shape[0], -1, -1, -1).to(x_t.dtype)], dim=1)
        return self.unet(x_in, t, encoder_hidden_states=context,
                         encoder_attention_mask=mask.to(x_t.dtype)).sample
