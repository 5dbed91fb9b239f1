"""The Persona × method grid: each persona's score in each run, coloured; click for the replies."""

from __future__ import annotations

import html
import math
import textwrap

from PySide6.QtCore import QSortFilterProxyModel, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableView,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from shpers_core.evaluation.metrics import METRIC_NAMES
from shpers_gui import engine
from shpers_gui.widgets.table_model import RowTableModel

SORT_ROLE = Qt.ItemDataRole.UserRole + 1


def score_colour(value: float, lo: float, hi: float) -> QColor:
    """Red (worst in the grid) through pale yellow to green (best), light enough for black text."""
    t = 0.5 if hi <= lo else (value - lo) / (hi - lo)
    if t < 0.5:
        a, b, u = (244, 160, 150), (250, 238, 180), t / 0.5
    else:
        a, b, u = (250, 238, 180), (150, 215, 150), (t - 0.5) / 0.5
    return QColor(*(round(x + (y - x) * u) for x, y in zip(a, b)))


HEADER_CHARS = 22
"""Characters a line of a run's column head holds at the default column width."""
HEADER_LINES = 4
"""Lines a run's column head takes at most; a longer name ends in "…" (the full name is its tooltip)."""


def column_title(label: str) -> str:
    """A run's name over up to four lines: study rows are long ("Unified + learned persona prefix (KV,
    random init) (1 of 10 epochs, ...)") and differ both at the start and in the middle, so one line
    elided anywhere hides what tells two columns apart."""
    return "\n".join(textwrap.wrap(label, HEADER_CHARS, max_lines=HEADER_LINES, placeholder=" …"))


class PersonaGridModel(RowTableModel):
    """Rows: personas; column 0 the persona id, then one column per finished run."""

    def __init__(self, session, parent=None):
        super().__init__(lambda: len(self.personas), parent)
        self.session = session
        self.metric = METRIC_NAMES[0]
        self.runs = []
        self.personas: list[str] = []
        self.scores: dict[str, dict[str, float]] = {}
        self.lo, self.hi = 0.0, 1.0

    def refresh(self) -> None:
        store = self.session.store()
        runs = list(reversed(store.list_runs(status="finished")))
        scores = {r.id: store.persona_scores(r.id, self.metric) for r in runs}
        values = [v for s in scores.values() for v in s.values() if not math.isnan(v)]

        def update() -> None:
            self.scores = scores
            self.runs = [r for r in runs if scores[r.id]]
            self.personas = sorted({p for s in scores.values() for p in s})
            self.lo, self.hi = (min(values), max(values)) if values else (0.0, 1.0)

        self.reset_with(update)


    def columns(self) -> list[str]:
        return ["Persona", *(column_title(r.label) for r in self.runs)]

    def row_header(self, section: int) -> str | None:
        # Persona ids as row heads: they stay in view while the run columns scroll.
        return self.personas[section] if section < len(self.personas) else None

    def column_tooltip(self, section: int) -> str | None:
        if section == 0:
            return None
        r = self.runs[section - 1]
        return f"{r.label}\n{r.method} on {r.base_model}\n{r.id}"

    def value(self, row: int, col: int) -> float | None:
        return self.scores[self.runs[col - 1].id].get(self.personas[row])

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        row, col = index.row(), index.column()
        if col == 0:
            return self.personas[row] if role in (Qt.ItemDataRole.DisplayRole, SORT_ROLE) else None
        v = self.value(row, col)
        if role == Qt.ItemDataRole.DisplayRole:
            return "not run" if v is None else f"{v:.3f}"
        if role == Qt.ItemDataRole.ToolTipRole:
            run = self.runs[col - 1]
            return (f"{run.label} did not cover {self.personas[row]}" if v is None else
                    f"{self.personas[row]} in {run.label}: {v:.3f} (click for the replies)")
        if role == SORT_ROLE:
            return -math.inf if v is None or math.isnan(v) else v
        if role == Qt.ItemDataRole.BackgroundRole and v is not None and not math.isnan(v):
            return score_colour(v, self.lo, self.hi)
        if role == Qt.ItemDataRole.ForegroundRole:
            return QColor("#999999") if v is None else QColor("black")
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(Qt.AlignmentFlag.AlignCenter)
        return None


class PersonaGridView(QWidget):
    """The Grid tab."""

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.model = PersonaGridModel(session, self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.metric = QComboBox()
        for m in METRIC_NAMES:
            self.metric.addItem(m.replace("_", " "), m)
        self.metric.currentIndexChanged.connect(self._metric_changed)
        self.table = QTableView()
        # Run names differ at their ends ("... prefix" vs "... prefix (KV)"): keep both ends visible.
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.horizontalHeader().setTextElideMode(Qt.TextElideMode.ElideNone)  # see column_title
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.table.setColumnHidden(0, True)  # shown as the fixed row heads instead
        self.table.verticalHeader().setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setDefaultSectionSize(160)
        self.table.clicked.connect(self._cell_clicked)
        self.replies = QTextBrowser()
        self.replies.setPlaceholderText("Click a score to read that persona's test replies in that run, "
                                        "next to the references.")
        self.beside = QComboBox()
        self.beside.setToolTip("Show this run's reply to the same turn beside the clicked one")
        self.beside.setMinimumContentsLength(14)
        self.beside.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.beside.currentIndexChanged.connect(lambda _i: self._reshow())
        self.order = QComboBox()
        self.order.addItem("turns in order", "order")
        self.order.addItem("lowest score first", "lowest")
        self.order.setToolTip("The clicked persona's test turns in the dialogues' order, or those where the run "
                              "scored lowest (with a run beside it: lowest against that run) first")
        self.order.currentIndexChanged.connect(lambda _i: self._reshow())
        # Above the replies, which it orders: shown whole where there is room, and may shrink (an explicit
        # minimum instead of its text's width) so the tab still fits 1024 pixels.
        self.order.setMinimumWidth(90)
        by_persona = QPushButton("Sort by persona")
        by_persona.clicked.connect(lambda: self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder))
        top = QHBoxLayout()
        top.addWidget(QLabel("Metric:"))
        top.addWidget(self.metric)
        top.addWidget(QLabel("Beside:"))
        top.addWidget(self.beside)
        top.addWidget(by_persona)
        self.info = QLabel()
        self.info.setWordWrap(True)  # a narrow window wraps it rather than widening the tab
        top.addWidget(self.info, 1)
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addLayout(top)
        ll.addWidget(self.table)
        split = QSplitter(Qt.Orientation.Horizontal)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        order_bar = QHBoxLayout()
        order_bar.addWidget(self.order)
        order_bar.addStretch(1)
        rl.addLayout(order_bar)
        rl.addWidget(self.replies)
        split.addWidget(left)
        split.addWidget(right)
        split.setSizes([760, 560])
        lay = QVBoxLayout(self)
        lay.addWidget(split)
        self._shown: tuple[str, str] | None = None
        session.runs_changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        self.model.refresh()
        self.table.setColumnHidden(0, True)
        n = len(self.model.runs)
        self.info.setText(f"{len(self.model.personas)} personas × {n} finished runs"
                          + ("" if n else " — finish a run to fill the grid"))
        current = self.beside.currentData()
        self.beside.blockSignals(True)
        self.beside.clear()
        self.beside.addItem("(none)", None)
        for r in self.model.runs:
            self.beside.addItem(r.label, r.id)
        self.beside.setCurrentIndex(max(self.beside.findData(current), 0))
        self.beside.blockSignals(False)

    def _reshow(self) -> None:
        if self._shown is not None:
            self.show_replies(*self._shown)

    def _metric_changed(self) -> None:
        self.model.metric = self.metric.currentData()
        self.refresh()
        self._reshow()  # the replies' scores follow the metric

    def _cell_clicked(self, index) -> None:
        src = self.proxy.mapToSource(index)
        if src.column() == 0:
            return
        self.show_replies(self.model.runs[src.column() - 1].id, self.model.personas[src.row()])

    def show_replies(self, run_id: str, persona_id: str) -> None:
        """Every test turn of ``persona_id`` in ``run_id``: the history before it, the reply (and the
        "Beside" run's reply to the same turn) and the reference, each reply with what produced it."""
        self._shown = (run_id, persona_id)
        store = self.session.store()
        run = store.get_run(run_id)
        if run.personas and persona_id not in run.personas:
            self.replies.setHtml(f"<h3>{html.escape(persona_id)} · {html.escape(run.label)}</h3>"
                                 f"<p>{html.escape(run.label)} did not cover {html.escape(persona_id)}: it was trained "
                                 f"and evaluated on {len(run.personas)} other persona(s), so there is nothing to show.</p>")
            return
        other_id = self.beside.currentData()
        other = store.get_run(other_id) if other_id and other_id != run.id else None
        metric = self.model.metric
        theirs = store.predictions(other.id, persona_id) if other else []
        rows = engine.get("pair_replies")(store.predictions(run_id, persona_id), theirs)
        lowest = self.order.currentData() == "lowest"
        if lowest:
            rows = engine.get("lowest_first")(rows, metric, against_beside=other is not None)
        order = (f"lowest {metric.replace('_', ' ')}{' against the run beside' if other else ''} first" if lowest
                 else "in the dialogues' order")
        # With a run beside, the replies are headed A and B: run names are long and would fill the cells.
        out = [f"<h3>{html.escape(persona_id)} · {'A: ' if other else ''}{html.escape(run.label)}</h3>",
               f"<p style='color:#555'>{len(rows)} test turns, {order} · {html.escape(run.method)} on "
               f"{html.escape(run.base_model)} · run {html.escape(run.id)}<br>"
               f"answered by {html.escape(self._source(run.id, persona_id))}"]
        if other is not None:
            out.append(f"<br>B, beside: {html.escape(other.label)} ({html.escape(other.method)}), answered by "
                       f"{html.escape(self._source(other.id, persona_id))}"
                       + ("" if theirs else " — it has no replies for this persona"))
        out.append("</p>")
        if not rows:
            out.append("<p>This run stored no replies for this persona.</p>")
        for row in rows:
            p = row.mine
            out.append("<hr><p style='color:#555'>"
                       f"{html.escape(p.dialogue_id)} · turn {p.turn + 1}{' · persona-dependent ★' if p.persona_dependent else ''}</p>")
            for m in p.history:
                role, text = engine.get("message_role")(m), engine.get("message_text")(m)
                colour = "#1f4e79" if role == "user" else "#2e7d32"
                out.append(f"<p style='margin:0 0 2px 0'><b style='color:{colour}'>{html.escape(role)}</b> "
                           f"{html.escape(text)}</p>")
            cells = [self._cell("A" if other else "reply", p, "#eef5ff", metric)]
            if other is not None:
                cells.append(self._cell("B", row.beside, "#fff4e5", metric))
            width = 100 // (len(cells) + 1)
            cells.append(f"<td width='{width}%' valign='top' style='background:#eef8ee'><b>reference</b>"
                         f"{' ★' if p.persona_dependent else ''}<br>{html.escape(p.reference)}</td>")
            out.append("<table width='100%' cellspacing='4'><tr>"
                       + "".join(c.replace("WIDTH", str(width)) for c in cells) + "</tr></table>")
        self.replies.setHtml("".join(out))

    def _source(self, run_id: str, persona_id: str) -> str:
        recipe = engine.get("run_recipes")(self.session.workspace, run_id).get(persona_id)
        return engine.get("describe_recipe")(recipe, run_id) if recipe is not None else "(no plan recorded)"

    @staticmethod
    def _cell(label: str, p, colour: str, metric: str) -> str:
        if p is None:
            return f"<td width='WIDTH%' valign='top' style='background:{colour}'><b>{html.escape(label)}</b><br>" \
                   "<i>no reply to this turn</i></td>"
        score = engine.get("turn_score")(p, metric)
        return (f"<td width='WIDTH%' valign='top' style='background:{colour}'><b>{html.escape(label)}</b>"
                f"{'' if score is None else f' · {score:.3f}'}<br>{html.escape(p.prediction)}</td>")

