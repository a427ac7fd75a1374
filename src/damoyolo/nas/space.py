"""Search form, detector form and the k1kx / kxkx search spaces of MAE-NAS.

*Detector form* is what the detector builds (:class:`damoyolo.models.backbones.TinyNASRes` /
``TinyNASCSP``): the stem takes the 3-channel RGB image and is preceded by a Focus
(space-to-depth) layer.  *Search form* is what the search scores and costs: the Focus is replaced
by its output, a 12-channel input at half the image resolution (320 x 320 for a 640 image), so
the stem is a 12-channel 3x3 convolution.  :func:`to_search_form` / :func:`to_detector_form`
convert by swapping the stem's input channels; nothing else changes.

The search space mutates one block at a time:

* the stem: its output channels (scaled, at most 32 and at most the next block's output);
* a super-block: ``out`` (scaled, clamped to the block's channel range, at least its input and at
  most the next block's output; the next block's ``btn`` is clamped to the new value), ``btn``
  (scaled, at most ``out``) or ``L`` (+-1 or +-2, at least 1, at most 2 for block 1 and at most
  ``budget_layers // 2 // (n_blocks - 2)`` for the others);
* after every mutation ``out / 10 <= btn <= out`` (the lower bound rounded to 8), channels are rounded to
  multiples of 8 and the input channels follow the previous block's output.

Unlike the official search, every block (the last included) can be picked, and all randomness
comes from the ``random.Random`` passed in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Sequence

from ..config import ConfigError
from ..models.backbones.structure import K1KX, KXKX, STEM, BlockSpec, StructureError, \
    validate_structure
from .cost import count_layers

__all__ = ["FOCUS_CHANNELS", "to_search_form", "to_detector_form", "search_resolution",
           "round_channels", "SearchSpace", "initial_structure"]

FOCUS_CHANNELS = 12  # 3 RGB channels x 2 x 2 space-to-depth


def _stem_input(blocks: Sequence[BlockSpec], want: int, other: int, forms: str
                ) -> list[BlockSpec]:
    """``blocks`` with the stem taking ``want`` channels (from ``other``; unchanged when it
    already takes ``want``)."""
    blocks = list(blocks)
    stem = blocks[0]
    if stem.kind != STEM:
        raise StructureError("structure must start with a stem block")
    if stem.in_channels == other:
        blocks[0] = replace(stem, in_channels=want)
    elif stem.in_channels != want:
        raise StructureError(f"stem takes {stem.in_channels} channels; expected {forms}")
    return blocks


def to_search_form(blocks: Sequence[BlockSpec]) -> list[BlockSpec]:
    """Detector form (stem from 3 RGB channels after Focus) -> search form (12-channel stem).
    A structure already in search form is returned unchanged."""
    return _stem_input(blocks, FOCUS_CHANNELS, 3,
                       f"3 (detector form) or {FOCUS_CHANNELS} (search form)")


def to_detector_form(blocks: Sequence[BlockSpec]) -> list[BlockSpec]:
    """Search form (12-channel stem) -> detector form (3-channel stem behind a Focus layer).
    A structure already in detector form is returned unchanged."""
    return _stem_input(blocks, 3, FOCUS_CHANNELS,
                       f"{FOCUS_CHANNELS} (search form) or 3 (detector form)")


def search_resolution(image_size: int) -> int:
    """Resolution of the search-form input for a detector image size (Focus halves it)."""
    return int(image_size) // 2


def round_channels(x: float, base: int = 8) -> int:
    """Nearest multiple of ``base``, at least ``base`` (Python's round: halves to even)."""
    return max(base, int(round(x / float(base))) * base)


def initial_structure(kind: str = K1KX) -> list[BlockSpec]:
    """The small starting network of the official DAMO-YOLO searches (search form)."""
    if kind not in (K1KX, KXKX):
        raise ConfigError(f"unknown space {kind!r}; expected 'k1kx' or 'kxkx'")
    rows = [(32, 48, 2, 32), (48, 96, 2, 48), (96, 96, 2, 96), (96, 192, 1, 96), (192, 384, 2, 192)]
    blocks = [BlockSpec(STEM, FOCUS_CHANNELS, 32, 3, 1)]
    blocks += [BlockSpec(kind, i, o, 3, s, btn, 1) for i, o, s, btn in rows]
    return blocks


DEFAULT_CHANNEL_RANGES: tuple = (None, None, (64, 128), None, (128, 256), (256, 512))


@dataclass(frozen=True)
class SearchSpace:
    """Mutation rules of the k1kx / kxkx spaces (see the module docstring).

    kind: ``"k1kx"`` or ``"kxkx"``; channel_ranges: per block index ``(min, max)`` output
    channels or ``None``; budget_layers: depth budget (caps ``L``; ``None`` for no cap).
    """

    kind: str = K1KX
    channel_ranges: tuple = DEFAULT_CHANNEL_RANGES
    budget_layers: int | None = None
    channel_scales: tuple[float, ...] = (2.0, 1.5, 1.25, 0.8, 0.6, 0.5)
    layer_steps: tuple[int, ...] = (-2, -1, 1, 2)
    max_channels: int = 2048
    max_stem_channels: int = 32
    btn_min_ratio: float = 10.0
    mutations_per_child: int = 2

    def __post_init__(self):
        if self.kind not in (K1KX, KXKX):
            raise ConfigError(f"unknown space {self.kind!r}; expected 'k1kx' or 'kxkx'")

    # ------------------------------------------------------------------ helpers
    def layer_cap(self, index: int, n_blocks: int) -> int | None:
        """Largest ``L`` allowed for block ``index``."""
        if index == 1:
            return 2
        if self.budget_layers:
            return max(1, int(self.budget_layers // 2 // max(1, n_blocks - 2)))
        return None

    def channel_range(self, index: int):
        if index < len(self.channel_ranges):
            return self.channel_ranges[index]
        return None

    def _scale(self, channels: int, rng: random.Random) -> int:
        return min(self.max_channels, round_channels(rng.choice(self.channel_scales) * channels))

    # ------------------------------------------------------------------ mutation
    def mutate_block(self, blocks: Sequence[BlockSpec], index: int,
                     rng: random.Random) -> list[BlockSpec]:
        """Return a copy of ``blocks`` with block ``index`` mutated (channel chain repaired)."""
        new = list(blocks)
        b = new[index]
        last = index == len(new) - 1
        if b.kind == STEM:
            out = min(self.max_stem_channels, self._scale(b.out_channels, rng))
            if not last:
                out = min(new[index + 1].out_channels, out)
            new[index] = replace(b, out_channels=out)
        else:
            method = rng.choice(("out", "btn", "L"))
            out, btn, L = b.out_channels, b.btn, b.num_layers
            if method == "out":
                out = self._scale(out, rng)
                rg = self.channel_range(index)
                if rg is not None:
                    out = max(rg[0], min(rg[1], out))
                out = max(b.in_channels, out)
                if not last:
                    nxt = new[index + 1]
                    out = min(nxt.out_channels, out)
                    if nxt.kind != STEM and nxt.btn > out:
                        new[index + 1] = replace(nxt, btn=out)
            elif method == "btn":
                btn = min(out, self._scale(btn, rng))
            else:
                for _ in range(len(self.layer_steps)):
                    L2 = max(1, L + rng.choice(self.layer_steps))
                    if L2 != L:
                        break
                cap = self.layer_cap(index, len(new))
                L = L2 if cap is None else min(cap, L2)
            btn = min(btn, out)
            if btn < out / self.btn_min_ratio:
                btn = round_channels(out / self.btn_min_ratio)
            new[index] = replace(b, out_channels=out, btn=btn, num_layers=L)
        for i in range(1, len(new)):
            if new[i].in_channels != new[i - 1].out_channels:
                new[i] = replace(new[i], in_channels=new[i - 1].out_channels)
        return new

    def mutate(self, blocks: Sequence[BlockSpec], rng: random.Random) -> list[BlockSpec]:
        """A child of ``blocks``: ``mutations_per_child`` block mutations, each on a block drawn
        uniformly from all blocks (the last included); a mutation that breaks the depth budget is
        redrawn (at most ``len(blocks)`` tries, then skipped)."""
        cur = list(blocks)
        for _ in range(self.mutations_per_child):
            for _try in range(len(cur)):
                cand = self.mutate_block(cur, rng.randrange(len(cur)), rng)
                if self.budget_layers is None or count_layers(cand) <= self.budget_layers:
                    cur = cand
                    break
        return cur

    def check(self, blocks: Sequence[BlockSpec]) -> list[str]:
        """Violations of the space's invariants (empty when the structure belongs to it)."""
        errs = []
        try:
            validate_structure(list(blocks))
        except ValueError as e:
            errs.append(str(e))
        for i, b in enumerate(blocks):
            if b.out_channels % 8:
                errs.append(f"block {i}: out {b.out_channels} not a multiple of 8")
            if b.kind == STEM:
                continue
            if b.kind != self.kind:
                errs.append(f"block {i}: kind {b.kind} not {self.kind}")
            if b.btn % 8:
                errs.append(f"block {i}: btn {b.btn} not a multiple of 8")
            low = b.out_channels / self.btn_min_ratio
            if not (min(low, round_channels(low)) <= b.btn <= b.out_channels):
                errs.append(f"block {i}: btn {b.btn} outside [out/{self.btn_min_ratio:g} "
                            f"(rounded to 8), out]")
            rg = self.channel_range(i)
            if rg is not None and not (rg[0] <= b.out_channels <= rg[1]) \
                    and b.out_channels != b.in_channels:
                errs.append(f"block {i}: out {b.out_channels} outside {rg}")
            cap = self.layer_cap(i, len(blocks))
            if cap is not None and b.num_layers > cap:
                errs.append(f"block {i}: L {b.num_layers} above cap {cap}")
        if self.budget_layers is not None and count_layers(blocks) > self.budget_layers:
            errs.append(f"{count_layers(blocks)} layers above budget {self.budget_layers}")
        return errs
