"""Result digests: which files count, the manifest format, and the check's verdicts."""

from __future__ import annotations

from pathlib import Path

import pytest

from anchorflow.digest import (
    digest_differences,
    main,
    manifest_text,
    read_manifest,
    result_digests,
)


def results_tree(root: Path) -> Path:
    for relative, text in {
        "receivers/m/receiver_heads.tsv": "layer\thead\n2\t1\n",
        "figures/m/figure4.png": "png bytes",
        "logs/receiver_heads/m.log": "a log",
        "store/attention/abc.npz": "store",
        "benchmarks/x.tsv": "seconds",
        "report.html": "dated",
        "receivers/m/timing.json": "{}",
    }.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_logs_store_benchmarks_and_timings_are_left_out(tmp_path: Path) -> None:
    digests = result_digests(results_tree(tmp_path))
    assert sorted(digests) == ["figures/m/figure4.png", "receivers/m/receiver_heads.tsv"]
    assert len(digests["figures/m/figure4.png"]) == 64


def test_manifest_round_trip_and_differences(tmp_path: Path) -> None:
    results = results_tree(tmp_path / "run")
    manifest = tmp_path / "results.sha256"
    manifest.write_text(manifest_text(result_digests(results)))
    assert read_manifest(manifest) == result_digests(results)
    (results / "receivers/m/receiver_heads.tsv").write_text("layer\thead\n2\t2\n")
    (results / "figures/m/figure4.png").unlink()
    (results / "receivers/m/extra.tsv").write_text("x\n")
    assert digest_differences(read_manifest(manifest), result_digests(results)) == [
        "missing: figures/m/figure4.png",
        "unexpected: receivers/m/extra.tsv",
        "differs: receivers/m/receiver_heads.tsv",
    ]


def test_command_checks_and_writes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = results_tree(tmp_path / "run")
    manifest = tmp_path / "results.sha256"
    assert main([str(results), "--write", str(manifest)]) == 0
    assert main([str(results), "--check", str(manifest)]) == 0
    (results / "figures/m/figure4.png").write_text("other png bytes")
    assert main([str(results), "--check", str(manifest)]) == 1
    assert "differs: figures/m/figure4.png" in capsys.readouterr().out


def test_malformed_manifest_is_refused(tmp_path: Path) -> None:
    manifest = tmp_path / "results.sha256"
    manifest.write_text("not-a-digest receivers/m/receiver_heads.tsv\n")
    with pytest.raises(ValueError, match="results.sha256:1"):
        read_manifest(manifest)
