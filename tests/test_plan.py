"""``python -m interleaved_sampler plan``: the printed plan is what the loader really does."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from scenarios import Scenario, scenarios
from torch.utils.data import SequentialSampler

from interleaved_sampler import InterleavedSampler, SamplerIntervalConfig
from interleaved_sampler.batching import InterleavedBatchSampler
from interleaved_sampler.cli import main
from interleaved_sampler.extras import MissingExtraError
from interleaved_sampler.plan import RunPlan
from interleaved_sampler.timeline import plot_timeline, segments

EXAMPLE = Path(__file__).parent.parent / "docs" / "plan_example.yaml"


def plan_output(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    assert main(["plan", *argv]) == 0
    return capsys.readouterr().out.splitlines()


def table_after(lines: list[str], header_start: str) -> list[list[str]]:
    """The rows (split on whitespace) of the table whose header starts with ``header_start``."""
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start)) + 1
    rows = []
    for line in lines[start:]:
        if not line or line.startswith("...") or ":" in line:  # the table's end
            break
        rows.append(line.split())
    return rows


def loader_of(plan: RunPlan) -> Any:
    """The real loader of the plan's run, over datasets of the plan's lengths."""
    sampler = InterleavedSampler(
        SequentialSampler(range(plan.length)),
        plan.config,
        callback_samplers=[
            SamplerIntervalConfig(
                SequentialSampler(range(len(c.sampler))),
                every_n_epochs=c.every_n_epochs,
                every_n_updates=c.every_n_updates,
                every_n_samples=c.every_n_samples,
                batch_size=c.batch_size,
                name=c.name,
            )
            for c in plan.callbacks
        ],
    )
    return sampler.get_data_loader(tagged=True)


def test_documented_example_matches_the_loaders_batches(
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines = plan_output(capsys, "--config", str(EXAMPLE))
    batches = list(loader_of(RunPlan.from_dict(yaml.safe_load(EXAMPLE.read_text()))))
    passes = [
        [
            str(i),
            b.source,
            str(b.progress.epoch),
            str(b.progress.update),
            str(b.progress.sample),
            str(b.batches_in_pass),
        ]
        for i, b in enumerate(batches)
        if b.source != "train" and b.batch_in_pass == 0
    ]
    assert table_after(lines, "at batch") == passes
    train = sum(b.source == "train" for b in batches)
    total = f"total: {len(batches)} batches = {train} training + {len(batches) - train} callback"
    assert total in lines
    for name, *_, passes_, batch_count in table_after(lines, "callback    length"):
        assert int(passes_) == sum(b.source == name and b.batch_in_pass == 0 for b in batches)
        assert int(batch_count) == sum(b.source == name for b in batches)
    # the numbers docs/cli.md quotes for this example
    assert total == "total: 82 batches = 64 training + 18 callback"


def plan_dict(scenario: Scenario) -> dict[str, Any]:
    callbacks = [
        {"length": len(c.sampler.build()), **c.due(), "batch_size": c.batch_size}
        for c in scenario.callbacks
    ]
    return {
        "length": len(scenario.main.build()),
        "batch_size": scenario.batch_size,
        "drop_last": scenario.drop_last,
        "evaluation": scenario.evaluation,
        **scenario.stops,
        **scenario.start,
        "callbacks": callbacks,
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_segments_are_the_loaders_batches_grouped_by_source(scenario: Scenario) -> None:
    try:
        sampler = scenario.sampler()
    except ValueError:
        return
    schedule = RunPlan.from_dict(plan_dict(scenario)).schedule()
    assert schedule == sampler.schedule
    expanded = [s.source_index for s in segments(schedule) for _ in range(s.batches)]
    tagged = InterleavedBatchSampler(schedule, sampler.sources, tagged=True)
    tags = [batch.tag for batch in tagged]
    assert expanded == [batch.source_index for batch in sampler.batch_sampler]
    for segment in segments(schedule):
        assert tags[segment.start].progress == segment.progress
        assert tags[segment.start].batch_in_pass == 0 or segment.source_index == 0


def test_flags_override_the_file_and_json_works(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"length": 50, "batch_size": 10, "max_epochs": 3}))
    lines = plan_output(
        capsys,
        "--config",
        str(config),
        "--max-updates",
        "7",
        "--callback",
        "name=val,length=25,every_n_updates=2,batch_size=10",
    )
    assert (
        "training: from epoch 0, update 0, sample 0 to epoch 1, update 7, sample 70: 7 batches"
        in (lines)
    )
    assert table_after(lines, "at batch") == [
        [str(at), "val", str(u // 5), str(u), str(10 * u), "3"]
        for at, u in ((2, 2), (7, 4), (12, 6))
    ]
    assert "total: 16 batches = 7 training + 9 callback" in lines


def test_a_run_split_over_ranks_shows_the_per_rank_batch_sizes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = ["--length", "64", "--batch-size", "16", "--max-epochs", "1", "--num-replicas", "4"]
    lines = plan_output(capsys, *run, "--callback", "name=val,length=10,every_n_epochs=1")
    assert lines[0].startswith("main: 64 indices per epoch, batch_size 16 (4/rank)")
    assert lines[1].startswith("split over 4 ranks: every count below is the global run's")
    assert table_after(lines, "callback")[0][:4] == ["val", "10", "16", "(4/rank)"]
    assert "total: 5 batches = 4 training + 1 callback" in lines
    with pytest.raises(SystemExit, match=r"batch_size=16 must be a multiple of num_replicas=3"):
        main(["plan", *run[:-1], "3"])


def test_max_passes_shortens_the_list(capsys: pytest.CaptureFixture[str]) -> None:
    lines = plan_output(
        capsys,
        "--length",
        "10",
        "--batch-size",
        "1",
        "--max-updates",
        "100",
        "--callback",
        "length=3,every_n_updates=1",
        "--max-passes",
        "2",
    )
    assert len(table_after(lines, "at batch")) == 2
    assert lines[-1] == "... 98 more passes"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--length", "10", "--max-epochs", "1"], "batch_size"),
        (["--batch-size", "2", "--max-epochs", "1"], "missing length: pass --length N"),
        (
            ["--length", "10", "--batch-size", "0", "--max-epochs", "-1"],
            r"batch_size: must be a positive integer \(>= 1\), got 0; max_epochs: must be",
        ),
        (
            [
                "--length",
                "10",
                "--batch-size",
                "2",
                "--max-epochs",
                "1",
                "--callback",
                "length=0,every_n_epochs=1",
            ],
            r"callbacks\[0\].length",
        ),
        (
            [
                "--length",
                "10",
                "--batch-size",
                "2",
                "--max-epochs",
                "1",
                "--callback",
                "length=3,every_n_epochs=1,every_n_updates=2",
            ],
            "exactly one of",
        ),
    ],
)
def test_invalid_runs_get_a_clear_message(argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit, match=message) as error:
        main(["plan", *argv])
    assert "\n" not in str(error.value.code)  # one line, also for pydantic's errors


def test_no_arguments_names_the_flags_to_pass() -> None:
    with pytest.raises(SystemExit) as error:
        main(["plan"])
    assert error.value.code == (
        "plan: invalid run: missing length, batch_size, a stop limit: pass --length N "
        "--batch-size N --max-epochs N (or --max-updates, --max-samples), or --config FILE "
        "with them (plan --help shows an example)"
    )


def test_an_incomplete_file_says_what_it_lacks(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("length: 10\nbatch_size: 2\n")
    with pytest.raises(SystemExit, match="missing a stop limit: pass --max-epochs N") as error:
        main(["plan", "--config", str(config)])
    assert str(error.value.code).endswith(
        "or put them in the --config file (plan --help shows an example)"
    )


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.yaml", None, "cannot read the --config file {path}: No such file or directory"),
        ("folder", "", "cannot read the --config file {path}: Is a directory"),
        ("run.yaml", "length: [\n", "the --config file {path} is not valid YAML: expected the"),
        ("run.json", "{", "the --config file {path} is not valid JSON: Expecting property name"),
        ("run.yaml", "- 1\n", "the --config file {path} holds no mapping"),
    ],
    ids=["missing", "directory", "yaml", "json", "no-mapping"],
)
def test_a_bad_config_file_is_one_line_naming_it(
    tmp_path: Path, name: str, content: str | None, message: str
) -> None:
    path = tmp_path / name
    if name == "folder":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    with pytest.raises(SystemExit) as error:
        main(["plan", "--config", str(path)])
    text = str(error.value.code)
    assert text.startswith("plan: " + message.format(path=path)), text
    assert "\n" not in text


def test_at_updates_from_a_flag_equals_the_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run = ["--length", "10", "--batch-size", "2", "--max-epochs", "2"]
    config = tmp_path / "run.yaml"
    config.write_text("callbacks:\n  - {name: probe, length: 3, at_updates: [2, 7, 9]}\n")
    from_file = plan_output(capsys, "--config", str(config), *run)
    from_flag = plan_output(capsys, *run, "--callback", "name=probe,length=3,at_updates=[2, 7,9]")
    assert from_flag == from_file
    assert table_after(from_flag, "callback")[0][4:] == [
        "at_updates",
        "=",
        "[2,",
        "7,",
        "9]",
        "3",
        "6",
    ]
    assert [row[3] for row in table_after(from_flag, "at batch")] == ["2", "7", "9"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("7", "at_updates='7' is not a list: write the updates in brackets, e.g. at_updates=[500"),
        ("[7,x]", "at_updates='x' is not an integer"),
    ],
)
def test_at_updates_in_a_flag_must_be_a_list_of_integers(
    capsys: pytest.CaptureFixture[str], value: str, message: str
) -> None:
    with pytest.raises(SystemExit):
        main(["plan", "--callback", f"length=3,at_updates={value}"])
    assert message in capsys.readouterr().err


def test_the_help_and_the_docs_name_the_timeline_alike(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["plan", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    docs = " ".join((EXAMPLE.parent / "cli.md").read_text().split())
    assert "--plot FILE.png draw the run's timeline into this PNG file" in help_text
    assert (
        "--plot FILE.png draws the run's timeline (needs matplotlib: the plot extra)" in help_text
    )
    assert "`--plot FILE.png` draws the run's timeline (needs matplotlib, the `plot` extra)" in docs


def test_unknown_callback_key_is_an_argument_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["plan", "--callback", "lenght=3"])
    assert "'lenght=3': expected key=value with key in name, length" in capsys.readouterr().err


def test_plot_writes_a_png(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    picture = tmp_path / "timeline.png"
    lines = plan_output(capsys, "--config", str(EXAMPLE), "--plot", str(picture))
    assert lines[-1] == f"timeline: {picture}"
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # makes the import fail
    plan = RunPlan.from_dict({"length": 10, "batch_size": 4, "max_epochs": 1})
    with pytest.raises(MissingExtraError, match=r"pip install -e '\.\[plot\]'.*sampler\[plot\]'"):
        plot_timeline(plan.schedule(), plan.names, tmp_path / "t.png")
    assert not (tmp_path / "t.png").exists()
