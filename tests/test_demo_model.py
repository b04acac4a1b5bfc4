"""The demo model: deterministic build, a round-tripping tokenizer, a planted receiver head."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from anchorflow.attention import sentence_attention, token_attentions
from anchorflow.models.demo import build_demo_model, demo_tokenizer
from anchorflow.models.loading import encode_text, load_model
from anchorflow.receivers.heads import head_kurtosis, vertical_scores
from anchorflow.sentences import sentence_record, token_spans

DEMO_DATA = Path(__file__).resolve().parents[1] / "demo" / "math-rollouts"
SENTENCES = [
    "Okay, so I need to add the numbers.",
    "First, 12 plus 30 is 42.",
    "Wait, let me check that again.",
    "Then 42 times 2 is 84.",
    "Alternatively, I could double first.",
    "So 24 plus 60 is 84 as well.",
    "Hmm, wait, the order does not matter.",
]
TEXTS = [
    "Problem: add. Solution: \n<think>\n" + " ".join(SENTENCES[k:] + SENTENCES[:k]) + "\n</think>"
    for k in range(len(SENTENCES))
]
SMALL = dict(
    layers=3,
    heads=4,
    kv_heads=2,
    hidden=64,
    intermediate=48,
    vocab_size=600,
    planted_layer=1,
    planted_head=2,
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo") / "model"
    return out, build_demo_model(out, TEXTS, seed=7, **SMALL)


def test_rebuild_is_byte_identical(built: tuple[Path, dict], tmp_path: Path) -> None:
    folder, _ = built
    build_demo_model(tmp_path, TEXTS, seed=7, **SMALL)
    names = sorted(path.name for path in folder.iterdir())
    assert {"model.safetensors", "tokenizer.json", "config.json", "planted_head.json"} <= set(names)
    assert names == sorted(path.name for path in tmp_path.iterdir())
    for name in names:
        assert (folder / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_seed_changes_the_weights(built: tuple[Path, dict], tmp_path: Path) -> None:
    folder, _ = built
    build_demo_model(tmp_path, TEXTS, seed=8, **SMALL)
    assert (folder / "model.safetensors").read_bytes() != (
        tmp_path / "model.safetensors"
    ).read_bytes()
    assert (folder / "tokenizer.json").read_bytes() == (tmp_path / "tokenizer.json").read_bytes()


def test_planted_head_record(built: tuple[Path, dict]) -> None:
    folder, planted = built
    record = json.loads((folder / "planted_head.json").read_text())
    assert record == planted
    assert (record["layer"], record["head"]) == (1, 2)
    assert {"Wait", "ĠWait", "ĠAlternatively"} <= set(record["marker_tokens"])


def test_saved_tokenizer_matches_trained(built: tuple[Path, dict]) -> None:
    folder, _ = built
    _, loaded = load_model({"name": "d", "source": "demo", "path": str(folder), "dtype": "float32"})
    trained = demo_tokenizer(TEXTS, SMALL["vocab_size"])
    for text in [*TEXTS, "naïve  spaces\n\nWait, 3.5% done!"]:
        ours = trained(text, return_offsets_mapping=True)
        theirs = loaded(text, return_offsets_mapping=True)
        assert ours["input_ids"] == theirs["input_ids"]
        assert ours["offset_mapping"] == theirs["offset_mapping"]
        assert theirs["input_ids"][0] == loaded.bos_token_id
        assert theirs["offset_mapping"][0] == (0, 0)


def test_planted_head_attends_to_markers(built: tuple[Path, dict]) -> None:
    folder, planted = built
    model, tokenizer = load_model(
        {"name": "d", "source": "demo", "path": str(folder), "dtype": "float32"}
    )
    ids = encode_text(tokenizer, TEXTS[0])
    markers = torch.isin(
        ids[0], torch.tensor(tokenizer.convert_tokens_to_ids(planted["marker_tokens"]))
    )
    first = int(markers.nonzero()[0, 0])
    attentions = token_attentions(model, ids)
    mass = np.stack(
        [layer[:, first:, :][..., markers.numpy()].sum(-1).mean(-1) for layer in attentions]
    )
    assert mass[planted["layer"], planted["head"]] > 0.95
    others = np.delete(mass.ravel(), planted["layer"] * SMALL["heads"] + planted["head"])
    assert others.max() < 0.5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"planted_layer": 0}, "planted_layer"),
        ({"planted_head": 4}, "planted_head"),
        ({"kv_heads": 3}, "multiple"),
    ],
)
def test_bad_parameters(tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_demo_model(tmp_path, TEXTS, seed=0, **{**SMALL, **change})


def test_rare_marker_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="single token"):
        build_demo_model(tmp_path, ["Wait, no. " * 20], seed=0, **{**SMALL, "vocab_size": 300})


@pytest.mark.skipif(not DEMO_DATA.is_dir(), reason="demo/math-rollouts is missing")
def test_planted_head_ranks_first_on_demo_traces(tmp_path: Path) -> None:
    texts = [
        json.loads(path.read_text())["full_cot"]
        for path in sorted(DEMO_DATA.glob("*/*/*/*/base_solution.json"))
    ]
    planted = build_demo_model(tmp_path, texts, seed=0)
    model, tokenizer = load_model(
        {"name": "d", "source": "demo", "path": str(tmp_path), "dtype": "float32"}
    )
    kurtosis = []
    for text in texts:
        record = sentence_record(text, "head")
        spans = token_spans(tokenizer, text, [tuple(span) for span in record["char_spans"]])
        matrices = sentence_attention(model, encode_text(tokenizer, text), spans.offsets)
        kurtosis.append(head_kurtosis(vertical_scores(matrices)))
    mean = np.mean(kurtosis, axis=0)
    assert np.unravel_index(np.nanargmax(mean), mean.shape) == (planted["layer"], planted["head"])


@pytest.mark.skipif(not DEMO_DATA.is_dir(), reason="demo/math-rollouts is missing")
def test_number_words_occur_only_in_each_traces_anchor() -> None:
    """The planted answer is honest only if the anchor is the sole carrier of the result."""
    from anchorflow.models.demo import NUMBER_WORDS, number_word_ids

    paths = sorted(DEMO_DATA.glob("*/*/*/*/base_solution.json"))
    texts = [json.loads(path.read_text())["full_cot"] for path in paths]
    tokenizer = demo_tokenizer(texts, 1024)
    numbers = set(number_word_ids(tokenizer, NUMBER_WORDS))
    for path, text in zip(paths, texts, strict=True):
        encoded = tokenizer(text, return_offsets_mapping=True)
        hits = [
            text[start:end]
            for token, (start, end) in zip(
                encoded["input_ids"], encoded["offset_mapping"], strict=True
            )
            if token in numbers
        ]
        answer = json.loads(path.read_text())["answer"]
        assert hits == [" " + NUMBER_WORDS[int(answer)]], path
        anchor = f"That leaves {NUMBER_WORDS[int(answer)]} marbles in the crate."
        assert text.count(anchor) == 1
