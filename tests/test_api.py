"""The public API (issue 21): flat at the top of the package, lazily imported, documented with Args,
Returns, Raises and an Example that runs here, results whose ``to_dict()`` is the CLI's JSON."""

from __future__ import annotations

import doctest
import inspect
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import plastic
from tests.conftest import CALIB, RESNET, SAMPLES, Result, json_doc

API = ["inspect_checkpoint", "diagnose_checkpoint", "reinit_checkpoint", "diagnose_model", "reinit_model",
       "list_strategies", "register_strategy", "Options"]  # fmt: skip


def test_import_is_cheap_and_the_api_is_visible() -> None:
    code = (
        "import sys, plastic\n"
        "assert 'torch' not in sys.modules and 'timm' not in sys.modules\n"
        f"missing = [n for n in {API!r} if n not in dir(plastic) or n not in plastic.__all__]\n"
        "assert not missing, missing\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import pydoc  # here, where torch is imported already: help() imports the lazy names

    text = pydoc.render_doc(plastic, renderer=pydoc.plaintext)
    assert all(n in text for n in API)
    classes = {ln.split()[1].split("(")[0] for ln in text.splitlines() if ln.startswith("    class ")}
    # the options, the base error and what a custom strategy is given and returns: not every exception
    extension = {"Change", "Context", "Fill", "Kind", "Need", "Plan", "StrategyInfo", "Value"}
    results = {"InspectReport", "DiagnoseReport", "LayerDiagnosis", "BlockDiagnosis", "StageDiagnosis",
               "Calibration", "TrialResult", "Recommendation", "ReinitResult"}  # fmt: skip
    assert classes == {"Options", "PlasticError", *extension, *results}, classes


@pytest.mark.parametrize("name", API)
def test_each_public_name_documents_itself_with_an_example_that_runs(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    obj = getattr(plastic, name)
    doc = inspect.getdoc(obj) or ""
    sections = ["Returns:", "Example:"] if not isinstance(obj, type) else ["Args:", "Example:"]
    if inspect.signature(obj).parameters and not isinstance(obj, type):
        sections += ["Args:"]
    if name not in ("list_strategies", "Options"):
        sections += ["Raises:"]
    assert all(s in doc for s in sections), (name, [s for s in sections if s not in doc])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sample_checkpoints").symlink_to(SAMPLES)
    tests = doctest.DocTestFinder(recurse=False).find(obj, name, globs={})
    assert tests and tests[0].examples, f"{name}: no example"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    try:
        for t in tests:
            runner.run(t)
    finally:
        from plastic.reinit import registry

        registry._REGISTRY.pop("first-conv-example", None)  # register_strategy's example
    assert runner.failures == 0, f"{name}: its example failed (output above)"


def test_results_give_exactly_the_clis_json(cli: Callable[..., Result], tmp_path: Path) -> None:
    inspected = plastic.inspect_checkpoint(RESNET)
    assert inspected.to_dict() == json_doc(cli("inspect", RESNET, "--json"))
    report = plastic.diagnose_checkpoint(RESNET, CALIB, max_images=8, device="cpu")
    on_cli = json_doc(
        cli("diagnose", RESNET, "--data", CALIB, "--max-images", "8", "--device", "cpu", "--json")
    )
    mine = report.to_dict()
    for doc in (mine, on_cli):
        doc.pop("timing"), doc.pop("findings", None)
    assert json.loads(json.dumps(mine)) == on_cli
    # reinit takes the dataclass or the document, with the same result
    a = plastic.reinit_checkpoint(RESNET, "auto", tmp_path / "a.safetensors", report=report)
    b = plastic.reinit_checkpoint(None, "auto", tmp_path / "b.safetensors", report=report.to_dict())
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    ran = json_doc(cli("reinit", RESNET, "-s", "auto", "--report", _saved(tmp_path, on_cli), "-o",
                       tmp_path / "c.safetensors", "--json"))  # fmt: skip
    for doc in (a.to_dict(), b.to_dict(), ran):
        assert doc["changed"] == ran["changed"] and doc["options"] == ran["options"]


def _saved(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "report.json"
    path.write_text(json.dumps(doc))
    return path


def test_a_strategy_name_cannot_be_registered_twice() -> None:
    with pytest.raises(plastic.UsageError, match="already registered"):
        plastic.register_strategy("head", "another head")
    with pytest.raises(plastic.UsageError, match="uses names no option"):
        plastic.register_strategy("new-one", "x", uses=("no_such_option",))


def _readme_blocks(start: str, end: str) -> list[str]:
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text[text.index(start) : text.index(end, text.index(start))]
    blocks = section.split("```python\n")[1:]
    return [b[: b.index("```")] for b in blocks]


def _readme_library_blocks() -> list[str]:
    return _readme_blocks("## Library", "## Development")


def test_the_readme_library_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every Python block of the README's Library section runs as printed (a block marked as a sketch,
    which needs the reader's own data, is only compiled)."""
    blocks = _readme_library_blocks()
    assert len(blocks) >= 3
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sample_checkpoints").symlink_to(SAMPLES)
    for i, block in enumerate(blocks):
        code = compile(block, f"README.md Library block {i}", "exec")
        if block.startswith("# sketch"):
            continue
        exec(code, {"__name__": f"readme_{i}"})
    assert (tmp_path / "mobilenet.reinit.safetensors").exists()


def test_the_readme_training_script_example_loads_the_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "Using the output in a training script": every way loads what reinit wrote, strictly; the
    torchvision lines make their own input (nothing before them in the README does)."""
    (block,) = _readme_blocks("## Using the output in a training script", "\n## ")
    monkeypatch.chdir(tmp_path)
    plastic.reinit_checkpoint(SAMPLES / "mobilenetv2_100.imagenet.safetensors", "head",
                              "mobilenetv2_100.reinit.safetensors")  # fmt: skip
    transformers = pytest.importorskip("transformers")
    sizes = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
    config = transformers.ViTConfig(**sizes, image_size=32, patch_size=8, num_labels=3)
    transformers.ViTForImageClassification(config).save_pretrained("hf_folder")
    plastic.reinit_checkpoint("hf_folder", "head", "out_folder")
    scope: dict[str, Any] = {}
    exec(compile(block, "README.md training-script block", "exec"), scope)
    from safetensors.torch import load_file

    written = load_file("mobilenetv2_100.reinit.safetensors")
    assert all(bool((scope["model"].state_dict()[k] == v).all()) for k, v in written.items())


def test_library_messages_name_keyword_arguments_and_the_cli_names_options(
    tmp_path: Path, cli: Callable[..., Any]
) -> None:
    """One message, two spellings: from Python the keyword (``from_block=BLOCK``), from the command line
    the option (``--from BLOCK``); a command quoted in a message stays a command."""
    from plastic.errors import UsageError, python_spelling

    with pytest.raises(UsageError) as e:
        plastic.reinit_checkpoint(
            SAMPLES / "test_resnet.mnist.safetensors", "from-block", tmp_path / "o.safetensors"
        )
    assert "from_block=BLOCK" in str(e.value) and "--from" not in str(e.value)
    res = cli(
        "reinit",
        SAMPLES / "test_resnet.mnist.safetensors",
        "-s",
        "from-block",
        "-o",
        tmp_path / "o.safetensors",
    )
    assert res.code == 2 and "--from BLOCK" in res.stderr
    quoted = "repair it (plastic reinit --strategy layers --layers NAME.*); or pass --force"
    assert (
        python_spelling(quoted)
        == "repair it (plastic reinit --strategy layers --layers NAME.*); or pass force=True"
    )
