"""The project's result pages, generated from committed JSON (``masra results``).

Results are data: ``masra ablate`` writes ``ablation.json`` and ``masra bench ... --json`` a benchmark file; each
one that the docs report is copied under ``docs/results/`` with an entry file naming the exact command and the
machine that produced it::

    docs/results/ablations/NAME/entry.json      {"name", "kind": "ablation", "command", "machine"[, "superseded_by"]
                                                [, "in_headline": false]}
    docs/results/ablations/NAME/ablation.json   the ablation's table (masra.lab.demo.ablation_table)
    docs/results/ablations/NAME/curves.{json,png}   its learning curves, when it has them
    docs/results/bench/NAME/entry.json          {"name", "kind": "bench", "command", "machine"}
    docs/results/bench/NAME/bench.json          the output of masra bench --json

From those files alone this module writes ``docs/results.md`` (every table) and the README's headline table
between its two markers (leaving out entries ``superseded_by`` a later one: results of code before a method
change, kept on the page for comparison; and checks recorded ``in_headline: false``, such as bf16 against
float32, which are not gains); ``check`` says which of those files differ from what the JSON gives, so a number
edited by hand fails.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from masra.config import MASRA_PARTS, flatten_dotted
from masra.data.jsonl import write_json
from masra.errors import MasraError
from masra.lab.demo.ablation_table import PAIRED_METRICS, format_interval, markdown_table, read_table, row_of

RESULTS_DIR = Path("docs") / "results"
RESULTS_PAGE = Path("docs") / "results.md"
README = Path("README.md")
HEADLINE_START = "<!-- results:headline:start -->"
HEADLINE_END = "<!-- results:headline:end -->"
ENTRY_FILE = "entry.json"
# kind -> (folder under docs/results, the data file, optional companion files copied when present)
KINDS = {"ablation": ("ablations", "ablation.json", ("curves.json", "curves.png")), "bench": ("bench", "bench.json", ())}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class Entry:
    """One recorded result: where it lies and how it was made."""

    kind: str
    name: str
    folder: Path
    command: str
    machine: str
    superseded_by: str | None = None
    in_headline: bool = True  # False: a check (e.g. bf16 against float32), on the page but not in the headline

    @property
    def data_file(self) -> Path:
        return self.folder / KINDS[self.kind][1]


def add_result(
    root: Path,
    kind: str,
    source: Path,
    *,
    name: str,
    command: str,
    machine: str,
    replace: bool = False,
    supersedes: str | None = None,
    in_headline: bool = True,
) -> Entry:
    """Copy a result into ``root/docs/results``: for an ablation, ``source`` is its output folder (its table and
    curves are copied, never its runs or data); for a benchmark, the JSON file ``masra bench --json`` wrote.
    An existing entry of that name is an error unless ``replace``. ``supersedes``: an existing entry of the same
    kind that this one replaces as the current result (it stays on the page, marked, and leaves the headline).
    ``in_headline=False`` (ablations): on the page, not in the README's headline."""
    folder_name, data_name, companions = KINDS[kind]
    if not _NAME.fullmatch(name):
        raise MasraError("use letters, digits, '_', '-' and '.' (starting with a letter or digit)", field="name")
    old = None
    if supersedes is not None:
        if supersedes == name:
            raise MasraError("an entry cannot supersede itself", field="supersedes")
        old = _read_entry(kind, root / RESULTS_DIR / folder_name / supersedes)
    for field, value in (("command", command), ("machine", machine)):
        if not value.strip():
            raise MasraError("say how the result was produced", field=field)
    source_dir = source if kind == "ablation" else source.parent
    data = source / data_name if kind == "ablation" else source
    _read_data(kind, data)  # only a valid result is recorded
    folder = root / RESULTS_DIR / folder_name / name
    if folder.exists() and not replace:
        raise MasraError("an entry of this name exists; pass --replace to overwrite it", file=folder)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in (data_name, *companions):  # the files an entry consists of; nothing else is touched
        (folder / stale).unlink(missing_ok=True)
    shutil.copyfile(data, folder / data_name)
    for companion in companions:
        if (source_dir / companion).is_file():
            shutil.copyfile(source_dir / companion, folder / companion)
    values = {"name": name, "kind": kind, "command": command.strip(), "machine": machine.strip()}
    write_json(folder / ENTRY_FILE, values if in_headline else values | {"in_headline": False})
    if old is not None:
        values = json.loads((old.folder / ENTRY_FILE).read_text())
        write_json(old.folder / ENTRY_FILE, values | {"superseded_by": name})
    return _read_entry(kind, folder)


def entries(root: Path, kind: str) -> list[Entry]:
    """The recorded entries of ``kind``, by name."""
    base = root / RESULTS_DIR / KINDS[kind][0]
    if not base.is_dir():
        return []
    return [_read_entry(kind, folder) for folder in sorted(base.iterdir()) if folder.is_dir()]


def _read_entry(kind: str, folder: Path) -> Entry:
    path = folder / ENTRY_FILE
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise MasraError("result folder without its entry file", file=path) from None
    except json.JSONDecodeError as err:
        raise MasraError(f"invalid JSON: {err.msg}", file=path, line=err.lineno) from None
    for key in ("name", "command", "machine"):
        if not isinstance(values.get(key), str) or not values[key]:
            raise MasraError("missing or empty", file=path, field=key)
    if values["name"] != folder.name or values.get("kind") != kind:
        raise MasraError(f"names {values['name']!r} of kind {values.get('kind')!r}, but lies in {folder}", file=path)
    superseded_by = values.get("superseded_by")
    if superseded_by is not None and not (isinstance(superseded_by, str) and superseded_by):
        raise MasraError("must name the entry that supersedes this one", file=path, field="superseded_by")
    in_headline = values.get("in_headline", True)
    if not isinstance(in_headline, bool):
        raise MasraError("must be true or false", file=path, field="in_headline")
    entry = Entry(kind, values["name"], folder, values["command"], values["machine"], superseded_by, in_headline)
    if not entry.data_file.is_file():
        raise MasraError("entry without its data file", file=entry.data_file)
    return entry


def _read_data(kind: str, path: Path) -> dict[str, Any]:
    if kind == "ablation":
        return read_table(path)
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise MasraError("no such benchmark file", file=path) from None
    except json.JSONDecodeError as err:
        raise MasraError(f"invalid JSON: {err.msg}", file=path, line=err.lineno) from None
    if not isinstance(values, dict) or not isinstance(values.get("rows"), list) or "bench" not in values:
        raise MasraError("not a masra bench --json file (needs bench and rows)", file=path)
    if not all(isinstance(row, dict) for row in values["rows"]):
        raise MasraError("every row must be an object", file=path, field="rows")
    return values


def _provenance(entry: Entry) -> list[str]:
    superseded = []
    if entry.superseded_by is not None:
        superseded = [f"Superseded by [{entry.superseded_by}](#{entry.superseded_by.lower().replace('.', '')}): measured "
                      "on earlier code, kept for comparison (not in the README's headline).", ""]
    if not entry.in_headline:
        superseded += ["A check, not a gain: not in the README's headline.", ""]
    return [*superseded, f"Command: `{entry.command}`  ", f"Machine: {entry.machine}  ",
            f"Data: [{entry.data_file.name}](results/{entry.data_file.relative_to(entry.folder.parents[1]).as_posix()})",
            ""]


def _ablation_sections(root: Path) -> list[str]:
    recorded = [(entry, read_table(entry.data_file)) for entry in entries(root, "ablation")]
    if not recorded:
        return ["No ablation recorded yet (`masra results add-ablation`).", ""]
    recorded.sort(key=lambda pair: (pair[1]["data"], pair[1]["epochs"], pair[0].name))
    lines: list[str] = []
    data = None
    for entry, table in recorded:
        if table["data"] != data:
            data = table["data"]
            lines += [f"### Data: {data}", ""]
        lines += [f"#### {entry.name}", "", *_provenance(entry), markdown_table(table)]
        if (entry.folder / "curves.png").is_file():
            relative = (entry.folder / "curves.png").relative_to(root / RESULTS_DIR).as_posix()
            lines += [f"Learning curves (val, every epoch, mean ± std over seeds): ![{entry.name}](results/{relative})", ""]
    return lines


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


# A bench column's unit by the end of its key: (header suffix, value -> cell). Times in ms, memory in MB (10^6
# bytes), ratios as "0.78x"; CPU times (user / system seconds of the process) stay in seconds.
_BENCH_UNITS: list[tuple[Callable[[str], bool], str, Callable[[float], str]]] = [
    (lambda key: key.endswith(("user_seconds", "system_seconds")), " (s)", lambda v: f"{v:.2f}"),
    (lambda key: key.endswith("seconds"), " (ms)", lambda v: f"{v * 1e3:.1f}"),
    (lambda key: key.endswith("bytes"), " (MB)", lambda v: f"{v / 1e6:.0f}"),
    (lambda key: key.split(".")[0].startswith("vs_"), "", lambda v: f"{v:.2f}x"),
]


def _bench_column(key: str) -> tuple[str, Callable[[Any], str]]:
    """(header, cell formatter) of a flattened bench key."""
    for matches, suffix, unit in _BENCH_UNITS:
        if matches(key):
            return re.sub(r"[._]?(seconds|bytes)$", "", key) + suffix, (
                lambda value: unit(value) if isinstance(value, (int, float)) and not isinstance(value, bool)
                else _cell(value))
    return key, _cell


def _bench_sections(root: Path) -> list[str]:
    recorded = entries(root, "bench")
    if not recorded:
        return ["No benchmark recorded yet (`masra results add-bench`).", ""]
    lines: list[str] = []
    for entry in recorded:
        values = _read_data("bench", entry.data_file)
        rows = [flatten_dotted(row) for row in values["rows"]]
        keys = list(dict.fromkeys(key for row in rows for key in row))
        columns = [_bench_column(key) for key in keys]
        cpu = values.get("cpu")
        lines += [f"### {entry.name}", "", f"`masra bench {values['bench']}` on {values.get('device', 'a device not recorded')}.",
                  "", *_provenance(entry)]
        if isinstance(cpu, dict):
            lines += [f"CPU: {cpu.get('model')}, torch ISA {cpu.get('isa')}, native bf16 {cpu.get('native_bf16')}, "
                      f"AMX {cpu.get('amx')}", ""]
        lines += ["| " + " | ".join(header for header, _ in columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(cell(row.get(key)) for key, (_, cell) in zip(keys, columns)) + " |"
                  for row in rows]
        lines.append("")
    return lines


def results_page(root: Path) -> str:
    """The text of docs/results.md."""
    lines = [
        "# Results",
        "",
        "<!-- Generated by `masra results` from docs/results/: do not edit by hand. -->",
        "Every table below is generated by `masra results` from the JSON committed under",
        "[docs/results/](results/), each with the command and the machine that produced it. To add a result:",
        "`masra results add-ablation DIR --name NAME --command \"...\" --machine \"...\"` (or `add-bench FILE ...`),",
        "then `masra results`; `masra results --check` fails when this page or the README's headline table",
        "differs from the JSON.",
        "",
        "## Ablations",
        "",
        *_ablation_sections(root),
        "## Benchmarks",
        "",
        *_bench_sections(root),
    ]
    return "\n".join(lines).rstrip("\n") + "\n"


def headline(root: Path) -> str:
    """The README's headline table: baseline against MASRA (all parts) in every current recorded ablation with both
    (but those recorded as not in the headline)."""
    current = [(entry, table) for entry, table in _current_tables(root) if entry.in_headline]
    rows = []
    for entry, table in current:
        base, full = row_of(table, "baseline"), row_of(table, "all")
        if base is None or full is None:
            continue
        cells = [entry.name, table["data"], str(table["epochs"]), str(len(table["seeds"]))]
        for key in PAIRED_METRICS:
            cells += [f"{row['last'][key]['mean']:.2f} ± {row['last'][key]['std']:.2f}" for row in (base, full)]
            cells.append(format_interval(full["paired"]["baseline"][key]))
        rows.append((table["data"], table["epochs"], entry.name, "| " + " | ".join(cells) + " |"))
    if not rows:
        return "No results recorded yet: see [docs/results.md](docs/results.md)."
    header = ["experiment", "data", "epochs", "seeds"]
    for key in PAIRED_METRICS:
        header += [f"{key} baseline", f"{key} MASRA", "Δ [95 % CI]"]
    lines = ["| " + " | ".join(header) + " |", "|---|---|---:|---:|" + "---:|" * (3 * len(PAIRED_METRICS))]
    lines += [row for *_, row in sorted(rows)]
    lines += ["", "Val metrics at the last epoch, mean ± std over seeds; Δ = MASRA (all parts) − baseline on the same "
              "seed, with its 95 % t-interval. Commands, machines and every other table: "
              "[docs/results.md](docs/results.md)."]
    return "\n".join(lines + _leave_one_out(current))


LEAVE_ONE_OUT_PREFIX = "all_but_"


def _current_tables(root: Path) -> list[tuple[Entry, dict[str, Any]]]:
    """(entry, its ablation table) of every recorded ablation that no other supersedes."""
    return [(entry, read_table(entry.data_file)) for entry in entries(root, "ablation") if entry.superseded_by is None]


def _leave_one_out(current: list[tuple[Entry, dict[str, Any]]]) -> list[str]:
    """What removing each part costs in every ``current`` ablation that leaves out each MASRA part in turn:
    "all but X" against all parts on the same seed (lines to append to the headline; none without such an
    ablation). A screen of one part is left to docs/results.md."""
    rows = []
    for entry, table in current:
        left_out = {row["variant"].removeprefix(LEAVE_ONE_OUT_PREFIX): row for row in table["variants"]
                    if row["variant"].startswith(LEAVE_ONE_OUT_PREFIX) and "all" in row["paired"]}
        if set(left_out) != set(MASRA_PARTS):
            continue
        cells = [entry.name, table["data"]]
        for part in MASRA_PARTS:
            paired = left_out[part]["paired"]["all"]
            cells.append("<br>".join(f"{short} {format_interval(paired[key])}"
                                     for short, key in zip(("MR", "HL"), PAIRED_METRICS)))
        rows.append((table["data"], entry.name, "| " + " | ".join(cells) + " |"))
    if not rows:
        return []
    header = ["experiment", "data", *(f"all but {part.upper()}" for part in MASRA_PARTS)]
    return ["", f"Each part's place: all parts but X against all parts, same seed, last epoch, Δ [95 % CI] of "
            f"{PAIRED_METRICS[0]} (MR) and {PAIRED_METRICS[1]} (HL); Δ < 0: leaving X out costs that much:", "",
            "| " + " | ".join(header) + " |", "|---|---|" + "---:|" * len(MASRA_PARTS),
            *(row for *_, row in sorted(rows))]


def readme_with_headline(readme: str, table: str, path: Path = README) -> str:
    """``readme`` with the text between the headline markers replaced by ``table``; the rest unchanged."""
    start, end = readme.find(HEADLINE_START), readme.find(HEADLINE_END)
    for marker, at in ((HEADLINE_START, start), (HEADLINE_END, end)):
        if at < 0 or readme.count(marker) != 1:
            raise MasraError(f"needs the marker {marker} exactly once (the headline table goes between "
                             f"{HEADLINE_START} and {HEADLINE_END})", file=path)
    if end < start:
        raise MasraError(f"{HEADLINE_END} comes before {HEADLINE_START}", file=path)
    return f"{readme[:start + len(HEADLINE_START)]}\n{table}\n{readme[end:]}"


def generated(root: Path) -> dict[Path, str]:
    """Path (relative to ``root``) -> the text the JSON under docs/results gives it."""
    readme_path = root / README
    if not readme_path.is_file():
        raise MasraError("no README.md here: run masra results in the repository root (or pass --root)", file=root)
    return {RESULTS_PAGE: results_page(root),
            README: readme_with_headline(readme_path.read_text(), headline(root), readme_path)}


def write_results(root: Path) -> list[Path]:
    """Write docs/results.md and the README's headline; return the files whose text changed."""
    changed = []
    for relative, text in generated(root).items():
        path = root / relative
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            changed.append(relative)
    return changed


def check_results(root: Path) -> list[Path]:
    """The files whose committed text differs from what the JSON gives (empty: all up to date)."""
    return [relative for relative, text in generated(root).items()
            if not (root / relative).is_file() or (root / relative).read_text() != text]
