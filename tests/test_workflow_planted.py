"""End to end: the demo's intervention tables meet the planted-answer targets, for the default
placement (the session's demo run) and for a second planted (layer, head, seed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import DEMO_CONFIG, WorkflowCopy, copy_workflow, run_snakemake

from anchorflow.explorer.pages import explorer_pages
from anchorflow.interventions.checks import check_run, merged_config

pytestmark = pytest.mark.slow
MODEL = "demo-qwen2"


def tsv(results: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(results / "interventions" / MODEL / name, sep="\t")


def check_targets(results: Path, layer: int, head: int) -> None:
    receivers = pd.read_csv(results / "receivers" / MODEL / "receiver_heads.tsv", sep="\t")
    assert tuple(receivers.iloc[0][["layer", "head"]]) == (layer, head)
    resolved = json.loads((results / "interventions" / MODEL / "conditions.json").read_text())
    assert resolved["params"]["receivers_source"] == "receiver_heads.tsv"
    assert resolved["params"]["receivers"][0] == [layer, head]

    ablation = tsv(results, "ablation/ablation.tsv").set_index("k")
    assert {"receiver_accuracy", "random_mean", "n_draws"} <= set(ablation.columns)
    baseline = ablation.loc[0, "receiver_accuracy"]
    assert ablation.loc[0, "n"] >= 40 and baseline >= 0.8
    assert ablation.loc[1, "receiver_accuracy"] <= 0.2
    assert (
        ablation.loc[1, "n_draws"] >= 10 and abs(ablation.loc[1, "random_mean"] - baseline) <= 0.1
    )
    draws = tsv(results, "ablation/ablation_draws.tsv")
    receiver_set = {tuple(h) for h in resolved["params"]["receivers"]}
    for heads in draws["heads"]:
        drawn = {tuple(int(x) for x in h[1:].split("H")) for h in heads.split()}
        assert not drawn & receiver_set

    amplification = tsv(results, "amplification/amplification.tsv")
    top10 = amplification[(amplification["k"] == 1) & (amplification["scale"] == 10)].iloc[0]
    assert top10["receiver_accuracy"] < baseline and top10["n_draws"] >= 10
    assert set(amplification["scale"]) >= {0, 1.2, 1.5, 5, 10}

    patching = tsv(results, "patching/patching.tsv").set_index("condition")
    assert patching.loc["anchor", "accuracy"] <= 0.2 and patching.loc["anchor", "n_draws"] >= 10
    assert patching.loc["anchor", "random_mean"] >= baseline - 0.2
    failure = tsv(results, "amplification/failure_modes.tsv")
    looped = failure[(failure["kind"] == "receivers") & (failure["scale"] == 10)].iloc[0]
    assert looped["repetition_loop_rate"] > 0.5 and looped["no_box_rate"] > 0.5
    strata = tsv(results, "ablation/strata.tsv")
    assert set(strata["stratum_rule"]) == {"level"} and strata["stratum"].nunique() >= 2
    controls = tsv(results, "counterfactual/controls.tsv").set_index("kind")
    assert controls.loc["random", "n_conditions"] >= 10
    check_blackbox_answer(results)
    check_counterfactual_answer(results)
    check_attention_answer(results, baseline)


def attention_rows(results: Path, experiment: str, control: str) -> pd.DataFrame:
    table = tsv(results, f"{experiment}/{experiment}.tsv")
    assert table.iloc[0]["condition"] == "baseline" and table.iloc[0]["n"] >= 40
    rows = table[table["control"] == control].set_index("condition")
    assert (rows["n"] >= 40).all() and (rows["n_draws"] >= 10).all()
    return rows


def check_attention_answer(results: Path, baseline: float) -> None:
    """The attention interventions find the planted answer (issue #27's targets): the planted
    head's attention to the anchor suppressed, its pattern made uniform or the anchor rerouted
    break the answer; the same suppression of a control sentence and the hub on the anchor keep
    it; random heads under each op stay near the baseline; x5 switched on by the trigger keeps
    the answer that static x5 breaks."""
    heads = attention_rows(results, "anchor_attention", "random heads")
    sentences = attention_rows(results, "anchor_attention", "control sentences")
    assert heads.loc["top1_anchor_x0", "accuracy"] <= 0.2
    assert sentences.loc["top1_anchor_x0", "control_mean"] >= 0.8
    patterns = attention_rows(results, "attention_patterns", "random heads")
    assert patterns.loc["top1_uniform", "accuracy"] <= 0.2
    assert patterns.loc["top1_hub", "accuracy"] >= 0.8
    reroute = attention_rows(results, "reroute", "random heads")
    assert reroute.loc["top1_reroute", "accuracy"] <= 0.2
    for table in (heads, patterns, reroute):
        assert (table["control_mean"] - baseline).abs().max() <= 0.1
    dynamic = attention_rows(results, "dynamic_amplification", "random heads")
    assert dynamic.loc["top1_static_x5", "accuracy"] <= 0.2
    assert dynamic.loc["top1_dynamic_x5", "accuracy"] >= 0.8
    assert dynamic.loc["top1_dynamic_x5", "mean_gated_steps"] > 0
    acted = tsv(results, "anchor_attention/acted_on.tsv")
    records = {
        r["trace"]: r for r in map(json.loads, (results / "rollouts" / "records.jsonl").open())
    }
    for row in acted[acted["condition"] == "anchor"].itertuples():
        assert records[row.trace]["chunks"][int(row.chunk_idx)].startswith("That leaves")


def check_counterfactual_answer(results: Path) -> None:
    """Counterfactual importance under ablation finds the planted answer: ablating the
    receiver heads takes the most importance from the anchor sentence, which random draws
    leave alone."""
    top = tsv(results, "counterfactual/top_changes.tsv")
    first = top[(top["kind"] == "receivers") & (top["direction"] == "decrease")].iloc[0]
    records = [json.loads(line) for line in (results / "rollouts" / "records.jsonl").open()]
    (record,) = [r for r in records if r["trace"] == first["trace"]]
    assert record["chunks"][int(first["sentence"])].startswith("That leaves")
    changes = tsv(results, "counterfactual/changes.tsv")
    anchor = changes[(changes["sentence"] == first["sentence"]) & (changes["kind"] == "random")]
    assert (anchor["change"].abs() < abs(first["change"]) / 2).all()
    # The explorer shows the change and the model-embedding importance, and links the tables.
    pages, _, links = explorer_pages(results, {MODEL: record["rollouts"]}, MODEL)
    (page,) = [p for p in pages if p.trace == first["trace"]]
    position = page.chunk_idx.index(int(first["sentence"]))
    assert page.measures["ablation_change_kl"][position] == pytest.approx(first["change"], abs=1e-3)
    assert "ablation_importance_kl_model_embeddings" in page.measures
    targets = {href.rsplit("/", 1)[-1] for _, href in links}
    assert {"top_changes.tsv", "dropdown_growth.tsv", "correlations.md"} <= targets


def check_blackbox_answer(results: Path) -> None:
    """The white-box / black-box validation finds the planted answer: in every trace the top
    receiver-score sentence is the anchor, whose dataset importances are planted highest."""
    table = pd.read_csv(results / "receivers" / MODEL / "blackbox" / "correlations.tsv", sep="\t")
    pooled = table[(table["scope"] == "all") & (table["score"] == "receiver_score_depth_off")]
    importances = pooled[pooled["metric"].str.contains("_importance_")].set_index("metric")
    assert len(importances) == 6 and (importances["top_sentence_agreement"] == 1.0).all()
    assert importances.loc["counterfactual_importance_kl", "rho"] > 0


def test_demo_run_tables_are_complete(demo_baseline: WorkflowCopy) -> None:
    """The completeness check CI runs on the real tier passes on the demo run, and fails when a
    condition loses a generation."""
    config = merged_config(["demo/config.yaml"], demo_baseline.root)
    assert check_run(config, demo_baseline.root) == []
    scored = demo_baseline.results / "interventions" / MODEL / "ablation" / "accuracy.tsv"
    table = pd.read_csv(scored, sep="\t")
    table.loc[table["condition"] == "top1_zero", "n"] -= 1
    damaged = demo_baseline.root / "damaged"
    folder = damaged / "results" / "demo"
    shutil.copytree(demo_baseline.results, folder)
    for name in ("config.yaml", "schemas", "demo"):
        source = demo_baseline.root / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, damaged / name)
    table.to_csv(
        folder / "interventions" / MODEL / "ablation" / "accuracy.tsv", sep="\t", index=False
    )
    assert check_run(config, damaged) == ["ablation: top1_zero has n = 39 < 40"]


def test_demo_run_meets_the_planted_targets(demo_baseline: WorkflowCopy) -> None:
    check_targets(demo_baseline.results, layer=2, head=1)


def test_a_second_placement_meets_the_planted_targets(tmp_path: Path) -> None:
    workflow = copy_workflow(tmp_path / "workflow")
    config = yaml.safe_load((workflow.root / DEMO_CONFIG).read_text())
    demo = config["models"][0]["demo"]
    demo.update(seed=5, planted_layer=1, planted_head=3)
    overlay = workflow.root / "placement.yaml"
    overlay.write_text(yaml.safe_dump({"models": config["models"]}))
    blackbox = f"results/demo/receivers/{MODEL}/blackbox/correlations.tsv"
    run_snakemake(
        workflow,
        *("interventions_all", blackbox, "--cores", "2", "--configfile", DEMO_CONFIG),
        str(overlay),
    )
    check_targets(workflow.results, layer=1, head=3)


def test_conditions_with_config_heads_and_no_patching(tmp_path: Path) -> None:
    """intervention_conditions without its optional inputs: the heads named in the config (no
    receiver_heads.tsv) and every sentence experiment off (no receiver scores, no records); the
    dynamic experiment, which needs neither, targets the config's heads."""
    workflow = copy_workflow(tmp_path / "workflow")
    overlay = workflow.root / "config-heads.yaml"
    overlay.write_text(
        yaml.safe_dump(
            {
                "interventions": {
                    "receiver_heads": {"heads": [[3, 0], [2, 1]]},
                    **{
                        name: {"enabled": False}
                        for name in (
                            "patching",
                            "anchor_attention",
                            "attention_patterns",
                            "reroute",
                        )
                    },
                }
            }
        )
    )
    target = f"results/demo/interventions/{MODEL}/conditions.json"
    run_snakemake(workflow, target, "--cores", "2", "--configfile", DEMO_CONFIG, str(overlay))
    resolved = json.loads((workflow.root / target).read_text())
    assert resolved["params"]["receivers_source"] == "config"
    assert resolved["params"]["receivers"] == [[3, 0], [2, 1]]
    assert "patching" not in resolved["conditions"] and resolved["patching_sentences"] == []
    assert "reroute" not in resolved["conditions"] and resolved["attention_sentences"] == {}
    assert resolved["conditions"]["dynamic_amplification"]["top1_dynamic_x5"]["heads"] == [[3, 0]]
    assert not (workflow.results / "receivers").exists()
