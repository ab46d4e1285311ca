"""The corpus (models/train/build_corpus.py's jsonl) as token ids for training and evaluation.

Documents are tokenized by the LLM's own tokenizer, shuffled with a fixed seed and joined with the
tokenizer's EOS token between them (SmolLM2-Instruct's is <|im_end|>, id 2) into one stream; training windows are cut from that stream, so a
window may span the end of one document and the start of the next (as in LLM pre-training)."""
import hashlib
import json
from pathlib import Path

import numpy as np
import torch

CORPUS = Path("models/train/corpus")


def read_documents(split, corpus=CORPUS):
    path = Path(corpus) / f"{split}.jsonl"
    if not path.exists():
        raise SystemExit(f"{path}: missing (run models/train/build_corpus.py where the Debian packages are)")
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def tokenize_documents(tokenizer, docs):
    """Token ids per document, no BOS (SmolLM2 adds none)."""
    return tokenizer([d["text"] for d in docs], add_special_tokens=False).input_ids


def token_stream(tokenizer, split, seed, corpus=CORPUS):
    """All documents of a split as one uint16 stream (cached beside the jsonl, keyed by its hash)."""
    path = Path(corpus) / f"{split}.jsonl"
    key = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    cache = Path(corpus) / f"{split}-{key}-seed{seed}.u16"
    if cache.exists():
        return np.fromfile(cache, dtype=np.uint16)
    docs = read_documents(split, corpus)
    ids = tokenize_documents(tokenizer, docs)
    order = np.random.default_rng(seed).permutation(len(ids))
    eos = tokenizer.eos_token_id
    parts = []
    for i in order:
        parts.append(np.asarray(ids[i], dtype=np.uint16))
        parts.append(np.asarray([eos], dtype=np.uint16))
    stream = np.concatenate(parts)
    stream.tofile(cache)
    return stream


def sample_windows(stream, length, count, generator):
    """`count` windows of `length` tokens at random offsets -> LongTensor [count, length]."""
    starts = torch.randint(0, len(stream) - length, (count,), generator=generator)
    return torch.stack([torch.from_numpy(stream[s:s + length].astype(np.int64)) for s in starts.tolist()])


def document_windows(documents_ids, length, max_windows):
    """Evaluation windows: the first `length` tokens of each document (token id lists, from
    tokenize_documents) that has that many."""
    out = []
    for ids in documents_ids:
        if len(ids) >= length:
            out.append(torch.tensor(ids[:length], dtype=torch.int64))
        if len(out) == max_windows:
            break
    return torch.stack(out) if out else torch.empty(0, length, dtype=torch.int64)
