"""Tokenizing tasks: token ids and loss masks per split, and the batch collator.

:func:`tokenize` (and :meth:`~lensllm_nb.collection.data.TaskData.tokenize`) runs
``datasets.Dataset.map(batched=True)``, so a large dataset is tokenized in batches
into Arrow and cached, not held as Python lists; :class:`Collator` pads batches.
"""

from __future__ import annotations

import numbers
from contextlib import contextmanager
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["TokenizedTask", "Collator", "tokenize"]


@dataclass(frozen=True)
class TokenizedTask:
    """Token ids of every split, ready for :class:`Collator`.

    Each split is a ``datasets.Dataset`` with columns ``input_ids``, ``labels``
    and ``length`` (the longer of the two), in the row order of
    :attr:`TaskData.pool_`, ``test_`` and ``validation_``. Arrow-backed (memory
    mapped for file and hub data), so a large pool is not held as Python lists.
    """

    pool: object
    test: object
    validation: object | None

    def rows(self, split, indices=None) -> list:
        """Rows of `split` (``"pool"``, ``"test"`` or ``"validation"``) as dicts of Python lists.

        Parameters
        ----------
        split : str
        indices : sequence of int, optional
            Row positions, in the order wanted; default every row.
        """
        ds = getattr(self, split)
        if indices is not None:
            ds = ds.select([int(i) for i in indices])
        columns = ds[:] if len(ds) else {"input_ids": [], "labels": []}
        return [{"input_ids": i, "labels": l} for i, l in zip(columns["input_ids"], columns["labels"])]

    def longest(self) -> int:
        """The most tokens of any input or label sequence, over every split."""
        splits = [ds for ds in (self.pool, self.test, self.validation) if ds is not None and len(ds)]
        return max(max(ds["length"][:]) for ds in splits)


def tokenize(
    examples,
    tokenizer,
    *,
    format,
    text_column="text",
    input_column="input",
    target_column="target",
    encoder_decoder=False,
    max_input_length=128,
    max_target_length=64,
    separator="\n",
):
    """Tokenize rows into ``input_ids`` and ``labels`` with the loss mask applied.

    Parameters
    ----------
    examples : datasets.Dataset or list of dict
        Rows with the columns of `format`.
    tokenizer : transformers.PreTrainedTokenizerBase
    format : {"text", "pairs"}
    text_column, input_column, target_column : str
    encoder_decoder : bool
        For ``"pairs"``: the input goes to the encoder and the target is the
        decoder's labels. Otherwise input, `separator` and target form one causal
        sequence whose prompt labels are ``-100``.
    max_input_length : int
        Token budget of the input (the whole text for ``"text"``), special tokens
        and the separator included; the input is cut at the end.
    max_target_length : int
        Token budget of the target, the end-of-sequence token included.
    separator : str
        Text between input and target in a causal sequence.

    Returns
    -------
    datasets.Dataset or list of dict
        For a Dataset: a Dataset with columns ``input_ids``, ``labels`` and
        ``length``, made with ``Dataset.map(batched=True)`` (cached on disk for
        file and hub data, so a second call with the same tokenizer reads the
        cache). For a list: ``{"input_ids": list[int], "labels": list[int]}``
        per row. For causal models `labels` is aligned with `input_ids` (the
        model shifts); for encoder-decoder models it holds the target ids.
    """
    if format not in ("text", "pairs"):
        raise ConfigError(f"`format` must be 'text' or 'pairs'; got {format!r}.")
    for arg, value in (("max_input_length", max_input_length), ("max_target_length", max_target_length)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 4:
            raise ConfigError(f"`{arg}` must be an integer of at least 4 tokens; got {value!r}.")
    if format == "text" and encoder_decoder:
        raise ConfigError(
            "The 'text' format trains a causal language model, but the model is an "
            "encoder-decoder; use an input/target dataset or a causal model."
        )
    encoder = _Encoder(
        tokenizer, format=format, columns=(text_column, input_column, target_column),
        encoder_decoder=encoder_decoder, max_input_length=max_input_length,
        max_target_length=max_target_length, separator=separator,
    )
    if isinstance(examples, list):
        out = encoder({c: _column(examples, c) for c in encoder.reads})
        return [{"input_ids": i, "labels": t} for i, t in zip(out["input_ids"], out["labels"])]
    with _quiet_datasets():
        return examples.map(encoder, batched=True, remove_columns=list(examples.column_names))


class _Encoder:
    """The batched tokenizing function of :func:`tokenize` (a ``Dataset.map`` function).

    A class rather than a closure so that ``datasets`` fingerprints it by its
    settings and the tokenizer, and reuses the cached result of an equal call.
    """

    def __init__(self, tokenizer, *, format, columns, encoder_decoder, max_input_length,
                 max_target_length, separator):
        self.tokenizer = tokenizer
        self.format = format
        self.text_column, self.input_column, self.target_column = columns
        self.encoder_decoder = encoder_decoder
        self.max_input_length = max_input_length
        self.max_target_length = max_target_length
        self.separator = separator
        self.reads = (self.text_column,) if format == "text" else (self.input_column, self.target_column)
        eos = tokenizer.eos_token_id
        self.prefix = _bos_prefix(tokenizer)
        self.suffix = [] if eos is None else [eos]
        self.sep = self._encode([separator])[0] if separator and format == "pairs" else []
        if format == "pairs" and not encoder_decoder and max_input_length - len(self.prefix) - len(self.sep) < 1:
            raise ConfigError(
                f"`max_input_length`={max_input_length} leaves no room for the input after "
                f"the separator ({len(self.sep)} tokens); raise it."
            )

    def __call__(self, batch) -> dict:
        if self.format == "text":
            budget = self.max_input_length - len(self.prefix) - len(self.suffix)
            ids = [self.prefix + row[:budget] + self.suffix for row in self._encode(batch[self.text_column])]
            return _with_length(ids, [list(row) for row in ids])
        targets = [t[: self.max_target_length - len(self.suffix)] + self.suffix
                   for t in self._encode(batch[self.target_column])]
        if self.encoder_decoder:
            # The tokenizer's own special tokens (e.g. T5's trailing </s>) belong to
            # the encoder input, so let it add them and truncate around them.
            inputs = self.tokenizer(list(batch[self.input_column]), add_special_tokens=True,
                                    truncation=True, max_length=self.max_input_length)["input_ids"]
            return _with_length(inputs, targets)
        budget = self.max_input_length - len(self.prefix) - len(self.sep)
        ids, labels = [], []
        for row, target in zip(self._encode(batch[self.input_column]), targets):
            # Cut the input, not the separator, so the model always sees where the
            # target starts.
            prompt = self.prefix + row[:budget] + self.sep
            ids.append(prompt + target)
            labels.append([-100] * len(prompt) + target)
        return _with_length(ids, labels)

    def _encode(self, texts):
        return self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]


def _with_length(ids, labels):
    return {"input_ids": ids, "labels": labels, "length": [max(len(i), len(t)) for i, t in zip(ids, labels)]}


class Collator:
    """Pad tokenized rows into a batch of tensors (a ``DataLoader`` ``collate_fn``).

    Parameters
    ----------
    pad_token_id : int
        Id used to pad `input_ids` on the right; `labels` are padded with -100 and
        `attention_mask` marks real tokens.
    decoder_start_token_id : int, optional
        Set for encoder-decoder models: the batch then also holds
        ``decoder_input_ids``, the labels shifted right behind this id.
    """

    def __init__(self, pad_token_id, *, decoder_start_token_id=None):
        self.pad_token_id = pad_token_id
        self.decoder_start_token_id = decoder_start_token_id

    def __call__(self, features) -> dict:
        import torch

        if not features:
            raise ConfigError("Cannot collate an empty batch.")
        batch = {
            "input_ids": _pad([f["input_ids"] for f in features], self.pad_token_id),
            "attention_mask": _pad([[1] * len(f["input_ids"]) for f in features], 0),
            "labels": _pad([f["labels"] for f in features], -100),
        }
        if self.decoder_start_token_id is not None:
            decoder = [
                [self.decoder_start_token_id] + [t if t != -100 else self.pad_token_id for t in f["labels"][:-1]]
                for f in features
            ]
            batch["decoder_input_ids"] = _pad(decoder, self.pad_token_id)
        return {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}


def _column(examples, column):
    """The values of one column as a list (from a Dataset or a list of dicts)."""
    if isinstance(examples, list):
        return [row[column] for row in examples]
    # datasets >= 4 returns a lazy Column; slicing it materialises a list fast.
    return examples[column][:]



@contextmanager
def _quiet_datasets():
    """Hide the "Generating train split" bars of a local file load, then restore."""
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            enable_progress_bars()



def _bos_prefix(tokenizer):
    # Tokenizers that add BOS (Llama-style) do so for every sequence; reuse it so
    # fine-tuning sees the same framing as pretraining. EOS added by the
    # tokenizer is not wanted in the middle of a prompt, so only BOS is kept.
    bos = tokenizer.bos_token_id
    if bos is None:
        return []
    probe = tokenizer("", add_special_tokens=True)["input_ids"]
    return [bos] if probe[:1] == [bos] else []



def _pad(rows, value):
    width = max(len(r) for r in rows)
    return [list(r) + [value] * (width - len(r)) for r in rows]
