"""Plots people can read: properties checked on the matplotlib objects, not on pixels.

Configurations that differ only by learning rate look different, coinciding points say how many
they are, learning-rate axes are logarithmic, energy axes are in the unit of their numbers,
titles fit the figure, confidence bands lie under their lines, and the Pareto plot names the
recommended variant.
"""

from __future__ import annotations

from typing import Any

import pytest
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.lines import Line2D

from tests.analysis.analysis_fixtures import grid_records, make_record
from wattwise.analysis import plots
from wattwise.analysis.metrics import analyze
from wattwise.analysis.recommendation import recommend


def _scatter_styles(ax: Any) -> list[tuple[str, tuple[float, ...], int]]:
    """(marker path vertices as a key, colour, point count) of each scatter on ``ax``."""
    styles = []
    for c in ax.collections:
        if isinstance(c, PathCollection) and len(c.get_offsets()):
            path = c.get_paths()[0]
            color = tuple(c.get_facecolor()[0]) if len(c.get_facecolor()) else ()
            styles.append((repr(path.vertices.round(3).tolist()), color, len(c.get_offsets())))
    return styles


def test_configurations_that_differ_only_by_lr_look_different() -> None:
    records = [
        make_record("a", lr=0.01, accuracy=0.90, train_energy_j=1000.0),
        make_record("b", lr=0.1, accuracy=0.92, train_energy_j=1200.0),
    ]
    fig = plots.render_pareto(plots.pareto_data(records, by="train"))
    ax = fig.axes[0]
    points = [s for s in _scatter_styles(ax) if s[2] == 1 and s[1] and s[1][3] > 0]
    assert len(points) >= 2
    assert len({(marker, color) for marker, color, _ in points}) >= 2, points
    labels = ax.get_legend_handles_labels()[1]
    assert any("lr 0.01" in label for label in labels)
    assert any("lr 0.1" in label for label in labels)
    # the history plot too: one line per configuration, and these two do not look the same
    history = plots.render_history(plots.history_data(records))
    lines = [line for line in history.axes[0].get_lines() if len(line.get_xdata()) > 1]
    assert len({(line.get_marker(), line.get_color(), line.get_linestyle())
                for line in lines}) == 2  # fmt: skip


def test_identical_points_show_their_count() -> None:
    records = [
        make_record("a", technique="quantize:int8", lr=0.01),
        make_record("b", technique="quantize:int8", lr=0.1),  # the same numbers as "a"
        make_record("c", accuracy=0.95, train_energy_j=2000.0),
    ]
    fig = plots.render_pareto(plots.pareto_data(records, by="train"))
    ax = fig.axes[0]
    assert any(t.get_text() == "×2" for t in ax.texts), [t.get_text() for t in ax.texts]
    drawn = [c for c in ax.collections if isinstance(c, PathCollection) and c.get_alpha()]
    assert drawn and all(c.get_alpha() < 1 for c in drawn)  # one does not hide the other


def test_learning_rate_axes_are_logarithmic() -> None:
    fig = plots.render_hyperparameter(plots.hyperparameter_data(grid_records(), "lr"))
    assert [ax.get_xscale() for ax in fig.axes[:2]] == ["log", "log"]


def test_energy_axes_take_the_unit_of_their_numbers() -> None:
    small = [
        make_record("a", train_energy_j=2.6, j_per_image=0.0026),
        make_record("b", technique="quantize:int8", train_energy_j=1.3, j_per_image=0.0013),
    ]
    data = plots.pareto_data(small, by="train")
    assert data.unit.symbol == "J" and data.x_label == "training energy (J)"
    assert sorted(p.energy for p in data.points) == pytest.approx([1.3, 2.6])
    inference = plots.pareto_data(small, by="inference")
    assert inference.x_label == "inference energy (mJ/image)"
    assert plots.render_pareto(data).axes[0].get_xlabel().startswith("training energy (J)")
    grid = plots.pareto_data(grid_records(), by="train")
    assert grid.unit.symbol == "kJ"  # about 1 to 1.5 kJ
    history = plots.render_history(plots.history_data(small))
    assert history.axes[1].get_ylabel() == "cumulative training energy (J)"
    bs = plots.render_hyperparameter(plots.hyperparameter_data(grid_records(), "batch_size"))
    assert bs.axes[0].get_ylabel() == "training energy (kJ)"
    efficiency = plots.efficiency_data(small, metric="accuracy_per_j_per_image")
    assert efficiency.y_label == "correct predictions per joule (1/J)"


def test_the_memory_title_fits_the_figure() -> None:
    records = [make_record(f"m{i}", lr=0.01 * (i + 1), peak_rss_bytes=(i + 1) * 2**29)
               for i in range(2)]  # fmt: skip
    data = plots.memory_data(records)
    assert data.note is not None and len(data.note) > 100  # the long CPU note
    fig = plots.render_memory(data)
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    fig.draw(renderer)
    box = fig.bbox
    for ax in fig.axes:
        title = ax.title.get_window_extent(renderer)
        assert box.x0 - 1 <= title.x0 and title.x1 <= box.x1 + 1, (title, box)
        assert title.y1 <= box.y1 + 1


def test_confidence_bands_lie_under_their_lines_and_are_named() -> None:
    fig = plots.render_hyperparameter(plots.hyperparameter_data(grid_records(), "batch_size"))
    for ax in fig.axes[:2]:
        bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
        lines = [line for line in ax.get_lines() if len(line.get_xdata()) > 1]
        assert bands and lines
        assert max(b.get_zorder() for b in bands) < min(line.get_zorder() for line in lines)
        assert all(0.1 <= (b.get_alpha() or 0) <= 0.35 for b in bands)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert any("95 % CI" in label for label in labels), labels


def test_the_pareto_plot_marks_and_names_the_recommended_variant() -> None:
    analysis = analyze(grid_records())
    (rec,) = recommend(analysis.variants, floor_points=1.0, by="inference")
    assert rec.chosen is not None
    data = plots.pareto_data(analysis, by="inference")
    assert [data.points[i].label for i in data.recommended] == [rec.chosen.label]
    ax = plots.render_pareto(data).axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert any(t.startswith("recommended") and rec.chosen.technique in t for t in texts), texts
    assert "recommended" in " ".join(ax.get_legend_handles_labels()[1])
    # the report passes its own recommendation (its floor and basis): the plot marks that one
    other = plots.pareto_data(analysis, by="inference", recommended=())
    assert other.recommended == ()
    assert not any(t.get_text().startswith("recommended") for t in
                   plots.render_pareto(other).axes[0].texts)  # fmt: skip
    assert all(isinstance(line, Line2D) for line in ax.get_lines())


@pytest.mark.parametrize("corner", ["top left", "top right", "bottom left", "bottom right"])
def test_the_recommended_variants_label_stays_inside_the_axes(corner: str) -> None:
    """Wherever the star is (the demo's sits top left: cheapest and as accurate), its label
    goes towards the middle: never over the title or out of the plot."""
    top, left = corner.startswith("top"), corner.endswith("left")
    star = plots.ParetoPoint(
        "digits · resnet18 · prune:structured:0.5,quantize:int8 · bs 64 · lr 0.05 · 5 ep",
        "prune:structured:0.5,quantize:int8",
        0.97 if top else 0.90,
        1.4 if left else 7.4,
    )
    others = (
        plots.ParetoPoint("a", "baseline", 0.935, 4.0),
        plots.ParetoPoint("b", "compile", 0.95 if top else 0.92, 5.6 if left else 2.0),
    )
    data = plots.ParetoData("inference", "inference energy (mJ/image)", (star, *others), ((0,),),
                            None, recommended=(0,))  # fmt: skip
    ax = plots.render_pareto(data).axes[0]
    ax.figure.canvas.draw()
    box = ax.get_window_extent()
    (label,) = [t for t in ax.texts if t.get_text().startswith("recommended")]
    placed = label.get_window_extent()
    assert box.x0 <= placed.x0 and placed.x1 <= box.x1, (corner, placed, box)
    assert box.y0 <= placed.y0 and placed.y1 <= box.y1, (corner, placed, box)
