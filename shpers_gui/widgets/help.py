"""The Help menu's pages: first steps, keyboard shortcuts, what ★ means, and About."""

from __future__ import annotations

import html
import platform
from importlib import metadata

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout

FIRST_STEPS = """
<h3>First steps</h3>
<ol>
<li><b>Data.</b> The workspace's dataset loads at start (a synthetic one is generated the first time).
File ▸ Open dataset… loads your own JSON/JSONL; File ▸ Generate dataset… makes a new synthetic one.
The <i>Personas</i> tab lists the personas, their dialogues by split and the persona map.</li>
<li><b>Launch unified LoRA.</b> In <i>Launch</i>, pick “Unified LoRA”, a base model and the personas
(checked ones are trained and evaluated), read the cost estimate, then <i>Queue job</i> (Ctrl+R).
<i>Jobs</i> shows progress, the whole job's ETA, live loss curves and the log.</li>
<li><b>Compare.</b> Train a second method the same way. In <i>Results</i>, select two finished runs:
the pane below compares them persona by persona (bootstrap interval, Wilcoxon test, wins/ties/losses)
on the turns and metric you choose. <i>Table 5.1</i> (Ctrl+T) puts every run against the unified run of
its own model and dataset, with Holm-corrected p-values, an interval for each difference that holds
together with the others, and a verdict per row; runs that differ only in their training seed share a row
(Study seeds on the Launch tab repeats the whole study over seeds; <i>Run the whole study</i> on a
workspace where it stopped offers to continue it). Its <i>Differences</i> tab draws
each row's difference and interval on one axis, so rows whose interval crosses zero stand out; its
<i>Findings</i> tab answers the study's questions RQ1-RQ4 in words from the same rows; <i>Export report…</i>
writes the findings, the table and its forest plots as one Markdown file to share.
To read why a row wins or loses, click a persona's score in <i>Grid</i>: its test replies show beside the
references and, with <i>Beside</i>, another run's; <i>lowest score first</i> puts the turns it lost most on
first (<code>shpers runs replies RUN --beside OTHER --worst 10</code> from a terminal). To try one change,
right-click a run in <i>Results</i> ▸ <i>Run again with changes…</i>: its settings fill the Launch tab
(<code>shpers run --like RUN --param …</code> from a terminal); a merge or prefix run again builds on the
run it built on (<i>Builds on</i>, which may name another). To see how a score moves with one
parameter, queue a <i>Sweep</i> on the Launch tab, select its runs (or one of them) in <i>Results</i> and
press <i>Against a parameter…</i>: each value's score with its interval and final validation loss, paired with the
default's value (<code>shpers runs effect RUN</code>).</li>
<li><b>Chat.</b> In <i>Chat</i>, pick a persona and a run; put a second run <i>Beside</i> it to see both
answer the same conversation. <i>Load a test dialogue</i> shows the reference reply next to them.
From a terminal, <code>shpers chat RUN --persona ID</code> answers the same way
(<code>--test-dialogue</code> replays a test dialogue).</li>
<li><b>Stopping and coming back.</b> <i>Cancel</i> (Ctrl+.) stops a job at its next step with a checkpoint;
<i>Resume</i> in its Jobs row, or <i>Resume from checkpoint</i> in the Results tab's menu after a restart,
continues it in the same run. <i>Run next</i> moves a waiting job ahead of the others. Jobs running or
waiting when the window closes are offered again, in the Jobs tab, the next time this workspace opens.</li>
</ol>
"""

STAR = """
<h3>What ★ means</h3>
<p>★ marks a <b>persona-dependent turn</b>: a reply that depends on the persona's own preferences
(their usual temperature, their name for a room, the device they mean by “the lights”), as opposed to a
request any assistant answers the same way. Scores are reported for all turns and split into
persona-dependent (★) turns and the others, because personalisation should help mostly on the ★ turns.</p>
"""


def shortcuts_html(shortcuts: dict[str, str]) -> str:
    rows = "".join(f"<tr><td style='padding-right:16px'>{html.escape(k)}</td><td><b>{html.escape(v)}</b></td></tr>"
                   for k, v in sorted(shortcuts.items(), key=lambda kv: kv[1]))
    extra = ("<tr><td style='padding-right:16px'>Stop the chat reply</td><td><b>Esc</b></td></tr>"
             "<tr><td style='padding-right:16px'>Send a chat message</td><td><b>Enter</b></td></tr>")
    return f"<h3>Keyboard shortcuts</h3><table>{rows}{extra}</table>"


def _version(*distributions: str) -> str:
    """The installed version of the first of ``distributions`` present (PySide6 ships as "-Essentials")."""
    for name in distributions:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "not installed"


def about_html(device: str) -> str:
    """Versions of shpers and what it runs on, and the device jobs use."""
    from PySide6.QtCore import qVersion

    packages = [("torch",), ("transformers",), ("peft",), ("sentence-transformers",), ("PySide6", "PySide6-Essentials"),
                ("pyqtgraph",), ("scipy",), ("numpy",)]
    rows = "".join(f"<tr><td style='padding-right:16px'>{p[0]}</td><td>{html.escape(_version(*p))}</td></tr>"
                   for p in packages)
    rows += f"<tr><td style='padding-right:16px'>Qt</td><td>{html.escape(qVersion())}</td></tr>"
    return (f"<h3>shpers {html.escape(_version('shpers'))}</h3>"
            "<p>A desktop lab for personalising small chat models as smart-home assistants: train, compare and "
            "chat with per-persona, cluster, merged and prompted variants.</p>"
            f"<p><b>Device:</b> {html.escape(device)}<br><b>Python:</b> {platform.python_version()} on "
            f"{html.escape(platform.platform(terse=True))}</p><table>{rows}</table>")


def show_page(parent, title: str, body: str) -> QDialog:
    dialog = QDialog(parent)
    dialog.setWindowTitle(title)
    text = QTextBrowser()
    text.setOpenExternalLinks(True)
    text.setHtml(body)
    box = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
    box.rejected.connect(dialog.reject)
    lay = QVBoxLayout(dialog)
    lay.addWidget(text)
    lay.addWidget(box)
    dialog.resize(620, 460)
    dialog.show()
    return dialog
