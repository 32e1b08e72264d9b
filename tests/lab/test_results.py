"""``masra results``: recording results under docs/results, the pages generated from them, and ``--check``, on
small synthetic JSON in a temporary checkout; and the check on this repository's committed files."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from masra.cli.main import main
from masra.data.jsonl import write_json
from masra.errors import MasraError
from masra.lab.demo.ablation_table import PAIRED_METRICS, aggregate, paired_interval
from masra.lab.demo.training import KEY_METRICS
from masra.lab.results import HEADLINE_END, HEADLINE_START, add_result, check_results, headline, readme_with_headline

REPO = Path(__file__).resolve().parents[2]
README_TEXT = f"# masra\n\nintro\n\n{HEADLINE_START}\nplaceholder\n{HEADLINE_END}\n\nrest\n"


def _run(variant: str, seed: int, offset: float) -> dict:
    last = {key: offset + seed + i for i, key in enumerate(KEY_METRICS)}
    best = {key: value + 2.0 for key, value in last.items()}
    return {"variant": variant, "parts": [], "overrides": [], "seed": seed,
            "last": {"epoch": 5, "brief": last}, "best": {"epoch": 4, "brief": best}, "diagnostics": {}}


def _ablation_dir(path: Path, *, data: str = "planted", epochs: int = 5) -> Path:
    """A folder as masra ablate leaves it: a table (synthetic numbers), curves, and runs that must not be copied."""
    seeds = [0, 1, 2]
    gains = {0: 1.0, 1: 3.0, 2: 2.5}  # MASRA - baseline per seed
    runs = {"baseline": [_run("baseline", s, 10.0) for s in seeds],
            "all": [_run("all", s, 10.0 + gains[s]) for s in seeds]}
    table = aggregate(runs, seeds=seeds, epochs=epochs, data=data, data_seed=0, source=f"{data} demo data",
                      protocol=["train.eval_every=1"], overrides=[])
    write_json(path / "ablation.json", table)
    write_json(path / "curves.json", {"curves": {}})
    (path / "curves.png").write_bytes(b"\x89PNG fake")
    (path / "runs" / "all" / "seed0").mkdir(parents=True)
    (path / "runs" / "all" / "seed0" / "model.safetensors").write_bytes(b"weights")
    return path


@pytest.fixture
def checkout(tmp_path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "README.md").write_text(README_TEXT)
    return root


def _add(root: Path, source: Path, name: str, *extra: str) -> int:
    return main(["results", "--root", str(root), "add-ablation", str(source), "--name", name,
                 "--command", f"masra ablate --out {name}", "--machine", "2-core CPU", *extra])


def test_recorded_ablations_give_the_results_page_and_the_readme_headline(checkout, tmp_path):
    assert _add(checkout, _ablation_dir(tmp_path / "a"), "planted_5") == 0
    assert _add(checkout, _ablation_dir(tmp_path / "b", data="hard", epochs=15), "hard_15") == 0
    entry = checkout / "docs" / "results" / "ablations" / "planted_5"
    assert sorted(p.name for p in entry.iterdir()) == ["ablation.json", "curves.json", "curves.png", "entry.json"]
    assert json.loads((entry / "entry.json").read_text())["command"] == "masra ablate --out planted_5"

    assert main(["results", "--root", str(checkout), "--check"]) == 1  # nothing generated yet
    assert main(["results", "--root", str(checkout)]) == 0
    assert main(["results", "--root", str(checkout), "--check"]) == 0

    page = (checkout / "docs" / "results.md").read_text()
    assert page.index("### Data: hard") < page.index("### Data: planted")
    assert "Command: `masra ablate --out hard_15`" in page and "Machine: 2-core CPU" in page
    assert "![planted_5](results/ablations/planted_5/curves.png)" in page
    assert f"| all | {10 + 1 + 6.5 / 3:.2f} ± " in page  # last-epoch MR-full-mAP mean: 10 + seed mean 1 + gain mean

    readme = (checkout / "README.md").read_text()
    assert readme.startswith("# masra\n\nintro\n\n") and readme.endswith(f"{HEADLINE_END}\n\nrest\n")
    rows = [line for line in readme.splitlines() if line.startswith("| planted_5")]
    gain = paired_interval([1.0, 3.0, 2.5])
    expected_delta = f"{gain['mean']:+.2f} [{gain['low']:+.2f}, {gain['high']:+.2f}]"
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[:4] == ["planted_5", "planted", "5", "3"]
    assert cells[4:7] == ["11.00 ± 1.00", f"{11 + 6.5 / 3:.2f} ± {statistics.stdev([11.0, 14.0, 14.5]):.2f}", expected_delta]
    assert len(cells) == 4 + 3 * len(PAIRED_METRICS)

    (checkout / "README.md").write_text(readme.replace(expected_delta, "+9.99 [+8.00, +11.00]", 1))
    assert check_results(checkout) == [Path("README.md")]  # a number edited by hand fails the check
    page_path = checkout / "docs" / "results.md"
    page_path.write_text(page_path.read_text() + "\nmore\n")
    assert check_results(checkout) == [Path("docs/results.md"), Path("README.md")]


def test_an_entry_is_never_overwritten_without_replace(checkout, tmp_path, capsys):
    source = _ablation_dir(tmp_path / "a")
    assert _add(checkout, source, "planted_5") == 0
    entry = checkout / "docs" / "results" / "ablations" / "planted_5"
    before = (entry / "ablation.json").read_text()
    (source / "curves.png").unlink()
    write_json(source / "ablation.json", {**json.loads(before), "epochs": 6})
    assert _add(checkout, source, "planted_5") == 1
    assert "pass --replace" in capsys.readouterr().err
    assert (entry / "ablation.json").read_text() == before
    assert _add(checkout, source, "planted_5", "--replace") == 0
    assert json.loads((entry / "ablation.json").read_text())["epochs"] == 6
    assert not (entry / "curves.png").exists()  # the entry is the new result only


def test_a_superseded_entry_stays_on_the_page_marked_and_leaves_the_headline(checkout, tmp_path):
    assert _add(checkout, _ablation_dir(tmp_path / "a"), "bar_v1") == 0
    source = _ablation_dir(tmp_path / "b")
    assert _add(checkout, source, "bar", "--supersedes", "missing") == 1
    assert not (checkout / "docs" / "results" / "ablations" / "bar").exists()  # refused before writing anything
    assert _add(checkout, source, "bar", "--supersedes", "bar_v1") == 0
    old = json.loads((checkout / "docs" / "results" / "ablations" / "bar_v1" / "entry.json").read_text())
    assert old["superseded_by"] == "bar" and old["command"] == "masra ablate --out bar_v1"
    assert main(["results", "--root", str(checkout)]) == 0
    page = (checkout / "docs" / "results.md").read_text()
    old_section = page[page.index("#### bar_v1"):]
    assert old_section.index("Superseded by [bar](#bar)") < old_section.index("Command:")
    assert "Superseded" not in page[page.index("#### bar\n"):page.index("#### bar_v1")]
    rows = [line.split("|")[1].strip() for line in headline(checkout).splitlines()[2:] if line.startswith("| ")]
    assert rows == ["bar"]


def test_a_check_recorded_out_of_the_headline_stays_on_the_page_only(checkout, tmp_path):
    assert _add(checkout, _ablation_dir(tmp_path / "a"), "gain") == 0
    assert _add(checkout, _ablation_dir(tmp_path / "b"), "bf16_check", "--not-in-headline") == 0
    entry = json.loads((checkout / "docs" / "results" / "ablations" / "bf16_check" / "entry.json").read_text())
    assert entry["in_headline"] is False
    assert "in_headline" not in json.loads((checkout / "docs" / "results" / "ablations" / "gain" / "entry.json").read_text())
    assert main(["results", "--root", str(checkout)]) == 0
    page = (checkout / "docs" / "results.md").read_text()
    section = page[page.index("#### bf16_check"):page.index("#### gain")]
    assert section.index("A check, not a gain") < section.index("Command:")
    assert "A check" not in page[page.index("#### gain"):]
    rows = [line.split("|")[1].strip() for line in headline(checkout).splitlines()[2:] if line.startswith("| ")]
    assert rows == ["gain"]
    (checkout / "docs" / "results" / "ablations" / "bf16_check" / "entry.json").write_text(
        json.dumps(entry | {"in_headline": "no"}))
    with pytest.raises(MasraError, match="true or false") as err:
        headline(checkout)
    assert "in_headline" in str(err.value) and "bf16_check" in str(err.value)


def test_bad_results_are_refused_with_their_file(checkout, tmp_path):
    (tmp_path / "old").mkdir()
    write_json(tmp_path / "old" / "ablation.json", {"metrics": list(KEY_METRICS), "variants": []})
    with pytest.raises(MasraError, match="format") as err:
        add_result(checkout, "ablation", tmp_path / "old", name="old", command="c", machine="m")
    assert "ablation.json" in str(err.value)
    assert main(["results", "--root", str(checkout), "add-ablation", str(_ablation_dir(tmp_path / "a")), "--name",
                 "../escape", "--command", "c", "--machine", "m"]) == 1
    assert not (checkout / "docs").exists()


def test_a_benchmark_file_becomes_a_table(checkout, tmp_path):
    bench = tmp_path / "sora.json"
    write_json(bench, {"bench": "sora", "device": "cpu", "cpu": {"model": "Xeon", "isa": "AVX512", "native_bf16": True,
                                                                  "amx": False}, "rows": [
        {"length": 75, "banded": {"seconds": 0.00125, "peak_bytes": 1_000_000, "user_seconds": 0.5}, "vs_dense": 0.25,
         "ok": True},
        {"length": 300, "banded": {"seconds": 0.005, "peak_bytes": 4_200_000, "user_seconds": 1.25}, "vs_dense": 1,
         "ok": True}]})
    assert main(["results", "--root", str(checkout), "add-bench", str(bench), "--name", "sora_cpu",
                 "--command", "masra bench --json sora.json sora", "--machine", "2-core CPU"]) == 0
    assert main(["results", "--root", str(checkout)]) == 0
    page = (checkout / "docs" / "results.md").read_text()
    assert "### sora_cpu\n\n`masra bench sora` on cpu." in page
    assert "CPU: Xeon, torch ISA AVX512, native bf16 True, AMX False" in page
    # Times in ms, memory in MB, CPU times in s, ratios with an x; other columns as they are.
    assert "| length | banded (ms) | banded.peak (MB) | banded.user (s) | vs_dense | ok |" in page
    assert "| 75 | 1.2 | 1 | 0.50 | 0.25x | True |" in page
    assert "| 300 | 5.0 | 4 | 1.25 | 1.00x | True |" in page
    assert "No ablation recorded yet" in page
    assert "No results recorded yet" in (checkout / "README.md").read_text()  # no baseline-vs-MASRA ablation


def test_the_readme_needs_both_markers_once(tmp_path):
    table = "| a |"
    assert readme_with_headline(README_TEXT, table) == README_TEXT.replace("placeholder", table)
    for broken in (README_TEXT.replace(HEADLINE_END, ""), README_TEXT.replace(HEADLINE_START, ""),
                   README_TEXT + HEADLINE_START + "\n"):
        with pytest.raises(MasraError, match="marker"):
            readme_with_headline(broken, table)
    (tmp_path / "README.md").write_text("# no markers\n")
    assert main(["results", "--root", str(tmp_path)]) == 1
    assert headline(tmp_path).startswith("No results recorded yet")


def test_the_committed_docs_are_what_the_committed_json_gives():
    """A number edited by hand in docs/results.md or in the README's headline table fails here (and in CI)."""
    assert check_results(REPO) == [], "run `masra results` and commit docs/results.md and README.md"


def _leave_one_out_dir(path: Path, parts: tuple[str, ...]) -> Path:
    """An ablation with baseline, all and "all but X" for each of ``parts``: leaving out the i-th part costs i + 1
    (MR) on every seed, and nothing on HL."""
    seeds = [0, 1, 2]
    runs = {"baseline": [_run("baseline", s, 10.0) for s in seeds], "all": [_run("all", s, 12.0) for s in seeds]}
    for i, part in enumerate(parts):
        runs[f"all_but_{part}"] = [_run(f"all_but_{part}", s, 12.0) for s in seeds]
        for run in runs[f"all_but_{part}"]:
            run["last"]["brief"]["MR-full-mAP"] -= i + 1
    write_json(path / "ablation.json", aggregate(runs, seeds=seeds, epochs=5, data="hard", data_seed=0,
                                                 source="hard demo data", protocol=[], overrides=[]))
    write_json(path / "curves.json", {"curves": {}})
    return path


def test_the_headline_shows_each_parts_place_from_a_full_leave_one_out(checkout, tmp_path):
    parts = ("dai", "sora", "sge", "esta", "lrca")
    assert _add(checkout, _leave_one_out_dir(tmp_path / "full", parts), "bar") == 0
    assert _add(checkout, _leave_one_out_dir(tmp_path / "one", ("sge",)), "sge_screen") == 0
    table = headline(checkout)
    assert "Each part's place" in table
    parts_table = table.split("Each part's place")[1]
    row = next(line for line in parts_table.splitlines() if line.startswith("| bar | hard |"))
    cells = row.strip("| ").split(" | ")[2:]
    assert len(cells) == len(parts)
    for i, cell in enumerate(cells):  # MASRA_PARTS' order: leaving out the i-th part costs i + 1 MR, no HL
        assert cell.startswith(f"MR {-(i + 1):+.2f} [{-(i + 1):+.2f}, {-(i + 1):+.2f}]<br>HL +0.00 [")
    assert "| sge_screen |" not in parts_table  # one part's screen: no leave-one-out row
    assert "Each part's place" not in headline(_checkout_with(tmp_path / "screen_only", tmp_path / "one"))


def _checkout_with(root: Path, ablation: Path) -> Path:
    root.mkdir()
    (root / "README.md").write_text(README_TEXT)
    assert _add(root, ablation, "only") == 0
    return root
