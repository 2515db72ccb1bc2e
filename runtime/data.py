"""Calibration / evaluation data: ``.npy``, ``.npz``, a folder of images or a text file → model feeds.

* ``.npy``: one array for the model's single input.
* ``.npz``: arrays named like the model inputs, or one array for a single-input model;
  optional ``labels`` (int, [N]).
* folder of images (needs Pillow, ``pip install vitc[images]``): files sorted by path; if the
  images sit in class sub-folders, labels are the sorted sub-folder indices. Preprocessing
  presets: ``imagenet`` (resize shorter side to size/0.875, centre crop, ImageNet mean/std),
  ``unit`` (resize to the input size, scale to [0, 1]).
* text (``.txt``/``.tsv``, one example per line, optionally ``label<TAB>text``; needs
  ``tokenizers``, ``pip install vitc[text]``): tokenised with a ``tokenizer.json`` (any
  Hugging Face tokenizer) or a WordPiece ``vocab.txt`` — given with ``--tokenizer``, else found
  beside the text file. Fills the model's ``input_ids``, ``attention_mask``, ``token_type_ids``
  and ``position_ids`` inputs; padded to the model's static sequence length, else to the longest
  line (at most :data:`MAX_TEXT_TOKENS`).
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from vitc.core.errors import VitcInputError
from vitc.runtime.shapes import InputSpec, input_specs

LABEL_KEYS = ("labels", "label", "y", "targets")
TEXT_SUFFIXES = {".txt", ".tsv"}
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
MAX_TEXT_TOKENS = 512
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm", ".pgm", ".tif", ".tiff"}
PRESETS = {
    "imagenet": {"crop_ratio": 0.875, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)},
    "unit": {"crop_ratio": 1.0, "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)},
}


@dataclass
class Dataset:
    feeds: dict[str, np.ndarray]      # each [N, ...]
    labels: np.ndarray | None
    source: str                       # path, or "synthetic"

    @property
    def size(self) -> int:
        return len(next(iter(self.feeds.values())))

    def rows(self, idx: np.ndarray) -> "Dataset":
        """The samples at indices ``idx`` (in that order)."""
        return Dataset({k: v[idx] for k, v in self.feeds.items()},
                       None if self.labels is None else self.labels[idx], self.source)

    def take(self, n: int | None) -> "Dataset":
        if n is not None and n < 1:
            raise VitcInputError(f"sample count must be at least 1 (got {n})")
        if n is None or n >= self.size:
            return self
        return Dataset({k: v[:n] for k, v in self.feeds.items()},
                       None if self.labels is None else self.labels[:n], self.source)


def _check_against(spec: InputSpec, arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.dtype.kind not in "biuf":
        raise VitcInputError(f"{path.name}: array for input '{spec.name}' has dtype {arr.dtype}, not numbers")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise VitcInputError(f"{path.name}: array for input '{spec.name}' holds {bad} non-finite values (NaN/Inf)")
    if arr.ndim != len(spec.shape):
        raise VitcInputError(f"{path.name}: array for input '{spec.name}' has rank {arr.ndim}, model expects "
                             f"{len(spec.shape)}")
    for axis, (want, got) in enumerate(zip(spec.shape, arr.shape)):
        if axis > 0 and isinstance(want, int) and want > 0 and want != got:
            raise VitcInputError(f"{path.name}: input '{spec.name}' axis {axis} is {got}, model expects {want}")
    return arr.astype(spec.dtype, copy=False)


def load_dataset(path: str | Path, model: onnx.ModelProto, preset: str = "imagenet",
                 tokenizer: str | Path | None = None) -> Dataset:
    """Read ``path`` into feeds for ``model``'s inputs (see module doc)."""
    p = Path(path)
    if not p.exists():
        raise VitcInputError(f"calibration/input data not found: {p}")
    specs = input_specs(model)
    if p.is_dir():
        return _load_images(p, specs, preset)
    if p.suffix.lower() in TEXT_SUFFIXES:
        return _load_text(p, specs, tokenizer)
    if tokenizer is not None:
        raise VitcInputError(f"--tokenizer applies to text data (.txt/.tsv), not {p.name}")
    try:
        data = np.load(p, allow_pickle=False)
        if isinstance(data, np.ndarray):
            arrays, labels = {"": data}, None
        else:
            with data:
                arrays = {k: data[k] for k in data.files}
            labels = next((arrays.pop(k) for k in LABEL_KEYS if k in arrays), None)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        why = "object arrays are not data" if "allow_pickle" in str(exc) else type(exc).__name__
        raise VitcInputError(f"cannot read {p.name} as .npy/.npz ({why})") from None
    feeds = {}
    names = {s.name for s in specs}
    if set(arrays) & names:
        missing = names - set(arrays)
        if missing:
            raise VitcInputError(f"{p.name} lacks arrays for model inputs: {', '.join(sorted(missing))}")
        feeds = {s.name: _check_against(s, arrays[s.name], p) for s in specs}
    elif len(arrays) == 1 and len(specs) == 1:
        feeds = {specs[0].name: _check_against(specs[0], next(iter(arrays.values())), p)}
    else:
        raise VitcInputError(f"{p.name}: arrays {sorted(arrays)} do not match model inputs {sorted(names)}")
    sizes = {len(v) for v in feeds.values()}
    if len(sizes) != 1 or 0 in sizes:
        raise VitcInputError(f"{p.name}: input arrays have different or zero sample counts {sorted(sizes)}")
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if labels.dtype.kind not in "biu" and not (labels.dtype.kind == "f" and np.isfinite(labels).all()
                                                  and np.all(labels == np.round(labels))):
            raise VitcInputError(f"{p.name}: 'labels' must be integer class indices (got dtype {labels.dtype})")
        labels = labels.astype(np.int64)
        if len(labels) != sizes.pop():
            raise VitcInputError(f"{p.name}: {len(labels)} labels for {len(next(iter(feeds.values())))} samples")
    return Dataset(feeds, labels, str(p))


def _load_images(folder: Path, specs: list[InputSpec], preset: str) -> Dataset:
    try:
        from PIL import Image
    except ImportError:
        raise VitcInputError("reading an image folder needs Pillow: pip install 'vitc[images]'") from None
    if preset not in PRESETS:
        raise VitcInputError(f"unknown preprocessing preset '{preset}' (choose from {', '.join(PRESETS)})")
    if len(specs) != 1 or len(specs[0].shape) != 4:
        raise VitcInputError("an image folder can only feed a model with one [B, C, H, W] input")
    spec = specs[0]
    _, chans, height, width = spec.shape
    if not all(isinstance(x, int) and x > 0 for x in (chans, height, width)):
        raise VitcInputError(f"input '{spec.name}' needs static C, H, W to read images")
    files = sorted(f for f in folder.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise VitcInputError(f"no images found in {folder}")
    classes = sorted({f.parent for f in files} - {folder})
    cfg = PRESETS[preset]
    mean = np.asarray(cfg["mean"][:chans], np.float32).reshape(-1, 1, 1)
    std = np.asarray(cfg["std"][:chans], np.float32).reshape(-1, 1, 1)
    batch = []
    for f in files:
        try:
            img = Image.open(f).convert("L" if chans == 1 else "RGB")
        except OSError:
            raise VitcInputError(f"cannot read image {f}") from None
        scale = max(height, width) / cfg["crop_ratio"] / min(img.size)
        img = img.resize((max(width, round(img.size[0] * scale)), max(height, round(img.size[1] * scale))),
                         Image.BILINEAR)
        left, top = (img.size[0] - width) // 2, (img.size[1] - height) // 2
        arr = np.asarray(img.crop((left, top, left + width, top + height)), np.float32) / 255.0
        arr = arr.reshape(height, width, -1).transpose(2, 0, 1)
        batch.append((arr - mean) / std)
    labels = np.asarray([classes.index(f.parent) for f in files], np.int64) if classes else None
    return Dataset({spec.name: np.stack(batch).astype(spec.dtype)}, labels, str(folder))


def _tokenizer(text_file: Path, given: str | Path | None):
    """A ``tokenizers`` tokenizer from ``given`` or a tokenizer file beside ``text_file``."""
    try:
        import tokenizers
    except ImportError:
        raise VitcInputError("reading text needs the tokenizers package: pip install 'vitc[text]'") from None
    if given is not None:
        path = Path(given)
        if not path.is_file():
            raise VitcInputError(f"tokenizer file not found: {path}")
    else:
        path = next((text_file.parent / n for n in TOKENIZER_FILES if (text_file.parent / n).is_file()), None)
        if path is None:
            raise VitcInputError(f"no tokenizer for {text_file.name}: give --tokenizer tokenizer.json|vocab.txt "
                                 f"or put one beside it")
    try:
        if path.suffix == ".json":
            return tokenizers.Tokenizer.from_file(str(path))
        vocab = [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines()]
        if "[CLS]" not in vocab or "[SEP]" not in vocab:
            raise ValueError("not a WordPiece vocabulary with [CLS] and [SEP]")
        plain = [w for w in vocab if w.isalpha()]
        lowercase = not any(w != w.lower() for w in plain)
        return tokenizers.BertWordPieceTokenizer(str(path), lowercase=lowercase)
    except (ValueError, OSError, UnicodeDecodeError, Exception) as exc:  # noqa: BLE001 - tokenizers raises bare Exception
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise VitcInputError(f"cannot read tokenizer {path.name}: {first}") from None


def _load_text(p: Path, specs: list[InputSpec], tokenizer) -> Dataset:
    try:
        lines = [line for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise VitcInputError(f"{p.name} is not UTF-8 text") from None
    if not lines:
        raise VitcInputError(f"{p.name} holds no text")
    labels = None
    parts = [line.split("\t", 1) for line in lines]
    if all(len(x) == 2 and x[0].strip().lstrip("-").isdigit() for x in parts):
        labels = np.asarray([int(x[0]) for x in parts], np.int64)
        lines = [x[1] for x in parts]
    roles = {"input_ids": None, "attention_mask": None, "token_type_ids": None, "position_ids": None}
    for spec in specs:
        role = next((r for r in roles if r in spec.name.lower()), None)
        if role is None or len(spec.shape) != 2:
            raise VitcInputError(f"text data cannot fill model input '{spec.name}' (text fills 2-D "
                                 f"{', '.join(roles)} inputs)")
        roles[role] = spec
    if roles["input_ids"] is None:
        raise VitcInputError("text data needs a model input named like input_ids")
    tok = _tokenizer(p, tokenizer)
    seq = roles["input_ids"].shape[1]
    encodings = tok.encode_batch(lines)
    length = seq if isinstance(seq, int) and seq > 0 else min(MAX_TEXT_TOKENS, max(len(e.ids) for e in encodings))
    ids = np.zeros((len(lines), length), np.int64)
    mask = np.zeros_like(ids)
    types = np.zeros_like(ids)
    for i, e in enumerate(encodings):
        n = min(length, len(e.ids))
        ids[i, :n], mask[i, :n], types[i, :n] = e.ids[:n], e.attention_mask[:n], e.type_ids[:n]
    values = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types,
              "position_ids": np.broadcast_to(np.arange(length, dtype=np.int64), ids.shape).copy()}
    feeds = {spec.name: values[role].astype(spec.dtype) for role, spec in roles.items() if spec is not None}
    return Dataset(feeds, labels, str(p))
