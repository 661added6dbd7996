"""One run's gap table (``reporting.gap``) and ``collect_results.py --show --teacher`` (fast)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from samd_common.data.tasks import TASKS
from samd_common.reporting.gap import format_gap_table, run_gap_table
from samd_common.reporting.tables import gap_share

REPO = Path(__file__).resolve().parents[1]


def scores(id_score: float, ood_score: float, dims=(384, 192, 96)) -> dict[str, float]:
    """Every in-domain task at ``id_score``, every OOD task at ``ood_score``, 1 less per halving."""
    out = {}
    for t in TASKS.values():
        for i, d in enumerate(dims):
            out[f"{t.name}/{t.main_score}@{d}"] = (ood_score if t.ood else id_score) - i
    return out


def test_known_gap_shares_at_full_and_quarter_dim():
    table = run_gap_table(scores(70, 60), scores(75, 61), scores(80, 70))
    assert sorted({d for d, _ in table.index}, reverse=True) == [384, 96]  # full and a quarter
    row = table.loc[(384, "avg ID")]
    assert (row.before, row.after, row.teacher, row.gain) == (70, 75, 80, 5)
    assert row["gap %"] == pytest.approx(50.0)
    assert table.loc[(384, "avg OOD"), "gap %"] == pytest.approx(10.0)
    assert table.loc[(96, "sts ID"), "before"] == 68  # two halvings below 384
    assert table.loc[(96, "sts ID"), "gap %"] == pytest.approx(50.0)
    assert table.loc[(384, "classification OOD"), "gap %"] == pytest.approx(10.0)


def test_no_gap_when_the_teacher_is_not_ahead():
    table = run_gap_table(scores(70, 60), scores(72, 62), scores(70, 50))
    assert math.isnan(table.loc[(384, "avg ID"), "gap %"])  # teacher == student: nothing to recover
    assert math.isnan(table.loc[(384, "avg OOD"), "gap %"])  # teacher behind
    assert table.loc[(384, "avg ID"), "gain"] == 2
    assert "-" in format_gap_table(table).splitlines()[2]


def test_one_gap_rule_for_a_run_and_a_sweep():
    """``gap_share`` is the rule of both tables: a loss is negative, a teacher behind is NaN."""
    assert gap_share(75, 70, 80) == pytest.approx(50.0)
    assert gap_share(68, 70, 80) == pytest.approx(-20.0)  # the student lost ground
    assert math.isnan(gap_share(75, 70, 60))  # teacher behind: not a "−50 %" gain
    assert math.isnan(gap_share(75, 70, 70))


def test_teacher_without_the_dim_is_read_at_its_largest():
    teacher = scores(80, 70, dims=(768, 384))  # a wider teacher, never evaluated at 96
    table = run_gap_table(scores(70, 60), scores(71, 60), teacher, dims=[96])
    assert table.loc[(96, "avg ID"), "teacher"] == 80  # its 768-dim score
    assert table.loc[(96, "avg ID"), "gap %"] == pytest.approx(100 * 1 / 12)


def test_mteb_only_scores_are_refused_with_a_reason():
    mteb = {"Banking77Classification/accuracy@384": 80.0}
    with pytest.raises(ValueError, match="suite scores"):
        run_gap_table(mteb, mteb, scores(80, 70))


def _script():
    spec = importlib.util.spec_from_file_location("cr", REPO / "scripts" / "collect_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_show_with_teacher_prints_the_distillation_summary(tmp_path, capsys):
    run = tmp_path / "results.json"
    run.write_text(
        json.dumps(
            {
                "method": "SAMD",
                "model": "minilm-l3",
                "teacher": "e5-small",
                "metrics": scores(75, 61),
                "metrics_before": scores(70, 60),
            }
        )
    )
    ref = tmp_path / "teacher.json"
    ref.write_text(json.dumps({"method": "eval", "model": "e5-small", "metrics": scores(80, 70)}))
    cr = _script()
    assert cr.main(["--show", str(run), "--teacher", str(ref)]) == 0
    out = capsys.readouterr().out
    assert "teacher e5-small" in out
    line = next(x for x in out.splitlines() if "avg ID" in x)  # the first: @384
    assert line.split()[-5:] == ["70.00", "75.00", "80.00", "+5.00", "50"]
    with pytest.raises(SystemExit):  # --teacher belongs to --show
        cr.main([str(tmp_path), "--teacher", str(ref)])
