"""The trial (issue 29): the race's arithmetic against known answers, the split and its refusals, the
candidates, and real races on the ResNet sample: a null case (every start learns the task perfectly:
the trial must not override the rule), a known loser (a start with NaN weights is dropped at the first
rung), the advice following a clear winner into ``reinit --strategy auto``, byte-identical reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import plastic
from plastic.decide.race import Score, default_budget, margin, rungs, survivors
from plastic.measure.finetune import stratified_split
from tests.conftest import CALIB, RESNET, expect_error

COLORS = [(220, 30, 30), (30, 200, 40), (40, 60, 230)]


def colours(root: Path, per_class: int = 8, classes: int = 3) -> Path:
    """Solid-colour images with a little noise, one class per colour: every start can learn them."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(per_class):
            img = np.clip(np.array(COLORS[c]) + rng.normal(0, 8, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / f"c{c}" / f"{i}.png")
    return root


# --- arithmetic -----------------------------------------------------------------------------------------


def test_budget_and_rungs_are_the_preregistered_ones() -> None:
    assert default_budget(150, 32) == 40  # 4 passes = 20 steps, raised to the floor of 40
    assert default_budget(1500, 32) == 188  # 4 x ceil(1500 / 32)
    assert default_budget(100_000, 32) == 400
    assert rungs(40) == [10, 20, 40]
    assert rungs(4) == [1, 2, 4]


def test_successive_halving_keeps_the_better_half_never_fewer_than_two() -> None:
    scores = {i: Score(acc, 1.0) for i, acc in enumerate([0.1, 0.9, 0.5, 0.7, 0.2, 0.8, 0.3, 0.6])}
    assert survivors(scores, list(range(8))) == [1, 5, 3, 7]
    assert survivors({0: Score(0.5, 2.0), 1: Score(0.5, 1.0), 2: Score(0.1, 0.1)}, [0, 1, 2]) == [1, 0]
    assert len(survivors({0: Score(0.5, 1.0), 1: Score(0.4, 1.0)}, [0, 1])) == 2


def test_bootstrap_margin_known_answers() -> None:
    same = margin([True, False] * 20, [True, False] * 20, seed=0, steps=10)
    assert same.difference == same.low == same.high == 0.0 and not same.clear
    better = margin([True] * 40, [False] * 40, seed=0, steps=10)
    assert better.difference == better.low == 1.0 and better.clear
    # 3 of 40 images apart, either way: the interval straddles 0
    mixed = margin([True] * 22 + [False] * 18, [True] * 19 + [False] * 18 + [True] * 3, seed=0, steps=10)
    assert mixed.low < 0 < mixed.high and not mixed.clear
    assert margin([True, False] * 20, [False] * 40, seed=1, steps=1) == margin(
        [True, False] * 20, [False] * 40, seed=1, steps=1
    )


def test_split_is_stratified_seeded_and_refuses_what_it_cannot_split() -> None:
    labels = torch.tensor([0] * 20 + [1] * 4 + [2] * 9)
    train, val = stratified_split(labels, ["a", "b", "c"], seed=3)
    assert sorted(train + val) == list(range(33)) and not set(train) & set(val)
    per_class = [sum(int(labels[i]) == c for i in val) for c in range(3)]
    assert per_class == [5, 2, 2]  # a quarter, at least 2 on each side
    assert (train, val) == stratified_split(labels, ["a", "b", "c"], seed=3)
    with pytest.raises(plastic.PlasticError, match="'b' has 3 readable"):
        stratified_split(torch.tensor([0] * 5 + [1] * 3), ["a", "b"], seed=0)
    with pytest.raises(plastic.PlasticError, match="at least 2 classes"):
        stratified_split(torch.tensor([0] * 8), ["a"], seed=0)


# --- refusals, before the statistics pass ---------------------------------------------------------------


def test_refusals_name_what_is_missing(cli: Any, tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, f in enumerate(sorted((CALIB / "cat").iterdir())[:4]):
        (flat / f"{i}.png").write_bytes(f.read_bytes())
    expect_error(cli("diagnose", RESNET, "-d", flat, "--trial"), "labelled images", "--trial-data")
    one = tmp_path / "one"
    (one / "cat").mkdir(parents=True)
    for f in sorted((CALIB / "cat").iterdir()):
        (one / "cat" / f.name).write_bytes(f.read_bytes())
    expect_error(cli("diagnose", RESNET, "-d", CALIB, "--trial-data", one), "at least 2 classes")
    few = colours(tmp_path / "few", per_class=3)
    expect_error(cli("diagnose", RESNET, "-d", CALIB, "--trial-data", few), "at least 4 images per class")
    expect_error(cli("diagnose", RESNET, "-d", CALIB, "--trial", "--trial-budget", "2"), "--trial-budget")


def test_a_model_without_classifier_is_refused() -> None:
    import timm

    from plastic.model.heads import replace_heads

    with pytest.raises(plastic.PlasticError, match="no classifier to replace"):
        replace_heads(timm.create_model("test_resnet", num_classes=0), 3, seed=0)
    model = timm.create_model("test_resnet", num_classes=10)
    assert replace_heads(model, 3, seed=0) == ["fc"] and model.fc.out_features == 3


# --- real races -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def colour_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return colours(tmp_path_factory.mktemp("trial") / "colours")


def test_null_case_every_start_learns_so_the_trial_does_not_override_the_rule(colour_folder: Path) -> None:
    report = plastic.diagnose_checkpoint(RESNET, CALIB, device="cpu", max_images=16, trial_data=colour_folder,
                                         trial_budget=16)  # fmt: skip
    doc = report.to_dict()
    trial = doc["trial"]
    assert trial is not None and doc["schema_version"] == 2
    names = [c["name"] for c in trial["candidates"]]
    assert len(names) == len(set(names)) and {"fine-tune @ 1x", "fine-tune @ 3x"} <= set(names)
    assert trial["recipe"]["rungs"] == [4, 8, 16] and trial["data"]["validation_images"] == 6
    reached = sorted(len(c["rungs"]) for c in trial["candidates"])
    n = len(names)
    assert reached.count(3) == 2 and reached.count(1) == n - max(2, n // 2)  # halving: n -> n/2 -> 2
    finals = [c["rungs"][-1]["accuracy"] for c in trial["candidates"] if len(c["rungs"]) == 3]
    assert finals == [1.0, 1.0]  # solid colours: both finalists perfect
    assert not trial["decided"] and doc["recommendation"]["lr_scale"] == 1.0
    rule_only = plastic.diagnose_checkpoint(RESNET, CALIB, device="cpu", max_images=16).to_dict()
    for key in ("action", "strategy", "options", "layers", "commands"):
        assert doc["recommendation"][key] == rule_only["recommendation"][key]
    steps = sum(c["rungs"][-1]["steps"] for c in trial["candidates"])
    assert trial["steps_trained"] == steps


def test_a_dead_top_stage_cannot_be_fine_tuned_and_loses_at_the_first_rung(
    colour_folder: Path, tmp_path: Path
) -> None:
    """The known loser: every weight of the top stage zero (batch-norm scales too), so its output, and
    every gradient through it, is exactly zero: fine-tuning as is can only fit the head's bias (one class
    for every image: chance), while any start that re-initializes the stage learns the colours."""
    state = load_file(RESNET)
    for k, v in state.items():
        if k.startswith("layer4.") and v.is_floating_point() and "running_var" not in k:
            v.zero_()
    dead = tmp_path / "dead.safetensors"
    with safe_open(RESNET, "pt") as f:
        save_file(state, dead, metadata=f.metadata())  # its architecture and 32 px input, as the sample
    doc = plastic.diagnose_checkpoint(dead, CALIB, device="cpu", max_images=16, trial_data=colour_folder,
                                      trial_budget=16).to_dict()  # fmt: skip
    trial = doc["trial"]
    tuned = [c for c in trial["candidates"] if c["start"] == "fine-tune"]
    assert len(tuned) == 2
    for c in tuned:
        assert len(c["rungs"]) == 1 and c["rungs"][0]["accuracy"] == pytest.approx(1 / 3), c  # out at once
    assert not trial["winner"].startswith("fine-tune")
    winner = next(c for c in trial["candidates"] if c["name"] == trial["winner"])
    assert winner["rungs"][-1]["accuracy"] == 1.0 and winner["changed_tensors"] > 0


def test_the_advice_follows_a_clear_winner_and_reinit_auto_writes_it(tmp_path: Path) -> None:
    from plastic.decide.race import Margin
    from plastic.pipelines.trial import follow

    report = plastic.diagnose_checkpoint(
        RESNET, CALIB, device="cpu", max_images=40, trial=True, trial_budget=4
    )
    result = report.trial
    assert result is not None and report.recommendation is not None
    deeper = next(i for i, c in enumerate(result.candidates) if "one stage deeper" in c.start.roles)
    result.winner, result.decided = (
        deeper + 1,
        True,
    )  # the deeper start at 3x, clearly ahead (as a race may end)
    result.over_rule = Margin(0.3, 0.1, 0.5, 4)
    heads = {la.name for la in report.layers if la.classifier}
    rule = report.recommendation
    report.recommendation = follow(rule, result, report.stages, heads)
    start = result.candidates[deeper].start.options["from_block"]
    assert report.recommendation.options == {"from_block": start} and report.recommendation.lr_scale == 3.0
    assert report.recommendation.alternatives[0].startswith("the rule's pick was")
    out = tmp_path / "won.safetensors"
    plastic.reinit_checkpoint(RESNET, "auto", out, report=report.to_dict())
    changed = {k for k, v in load_file(out).items() if not torch.equal(v, load_file(RESNET)[k])}
    assert changed and all(k.startswith((start.split(".")[0], "layer4", "fc")) for k in changed)
    assert any(k.startswith(start) for k in changed)


def test_same_seed_same_report_and_the_pipe_into_reinit(cli: Any, tmp_path: Path) -> None:
    args = ["diagnose", RESNET, "-d", CALIB, "--max-images", "40", "--trial", "--trial-budget", "4",
            "--device", "cpu", "--json", "-q"]  # fmt: skip
    threads = torch.get_num_threads()
    runs = [cli(*args) for _ in range(2)]
    assert torch.get_num_threads() == threads  # the race's one thread is given back
    docs = []
    for r in runs:
        assert r.code == 0, r.stderr[-2000:]
        doc = json.loads(r.stdout)
        doc.pop("timing")
        docs.append(doc)
    assert docs[0] == docs[1] and docs[0]["trial"]["recipe"]["threads"] == 1
    report = tmp_path / "r.json"
    report.write_text(runs[0].stdout)
    out = tmp_path / "piped.safetensors"
    done = cli("reinit", "--report", report, "--strategy", "auto", "-o", out)
    assert done.code == 0, done.stderr[-2000:]
    assert out.exists()


def test_people_see_the_race_and_the_rate(cli: Any, tmp_path: Path) -> None:
    png = tmp_path / "race.png"
    res = cli("diagnose", RESNET, "-d", CALIB, "--max-images", "40", "--trial", "--trial-budget", "4",
              "--device", "cpu", "--plot", png)  # fmt: skip
    assert res.code == 0, res.stderr[-2000:]
    assert "the trial's rate" in res.stdout and "fine-tune @ 3x" in res.stdout
    assert "trial: 10 classes, 20 images to train, 20 to validate" in res.stdout
    assert png.read_bytes().startswith(b"\x89PNG")


def test_diagnose_model_runs_the_same_trial_on_tensors() -> None:
    import timm

    model = timm.create_model("test_resnet", num_classes=10)
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(24) % 3
    images = torch.randn(24, 3, 32, 32, generator=gen) + labels.view(-1, 1, 1, 1).float()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = plastic.diagnose_model(model, images, labels=labels, trial=True, trial_budget=4)
    assert report.trial is not None and report.to_dict()["trial"]["data"]["validation_images"] == 6
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # candidates are copies
    with pytest.raises(plastic.PlasticError, match="needs labels"):
        plastic.diagnose_model(model, images, trial=True, trial_budget=4)


def test_a_version_1_report_is_still_read(tmp_path: Path) -> None:
    doc = json_doc_from(plastic.diagnose_checkpoint(RESNET, CALIB, device="cpu", max_images=16).to_dict())
    doc["schema_version"] = 1
    del doc["trial"], doc["recommendation"]["lr_scale"]
    out = tmp_path / "v1.safetensors"
    plastic.reinit_checkpoint(RESNET, "auto", out, report=doc)
    assert out.exists()


def json_doc_from(doc: Any) -> dict[str, Any]:
    return dict(json.loads(json.dumps(doc)))


def test_the_trial_on_a_torchvision_and_a_transformers_checkpoint(
    colour_folder: Path, tmp_path: Path
) -> None:
    """The other two families: a torchvision SqueezeNet .pth (no batch norm; its head is a 1x1
    convolution) and a transformers ViT folder (``classifier``, logits in ``.logits``): the race runs
    and its winner learns the colours."""
    import warnings

    import torchvision
    import transformers

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tv = torchvision.models.get_model("squeezenet1_1", weights=None, num_classes=10)
    torch.save(tv.state_dict(), tmp_path / "squeeze.pth")
    sizes = {"hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 2, "intermediate_size": 64}
    config = transformers.ViTConfig(**sizes, image_size=32, patch_size=8, num_labels=5)
    transformers.ViTForImageClassification(config).save_pretrained(tmp_path / "vit")
    for ckpt, family, px in (
        (tmp_path / "squeeze.pth", "torchvision", 64),
        (tmp_path / "vit", "transformers", 32),
    ):
        doc = plastic.diagnose_checkpoint(ckpt, CALIB, device="cpu", max_images=8, input_size=(3, px, px),
                                          trial_data=colour_folder, trial_budget=16).to_dict()  # fmt: skip
        assert doc["arch"]["family"] == family
        trial = doc["trial"]
        assert len(trial["candidates"]) >= 4 and trial["data"]["classes"] == ["c0", "c1", "c2"]
        winner = next(c for c in trial["candidates"] if c["name"] == trial["winner"])
        assert winner["rungs"][-1]["accuracy"] > 1 / 3, (family, winner)  # above chance on the colours
