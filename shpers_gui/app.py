"""``python -m shpers_gui [--workspace DIR] [--dataset FILE]``: open the app."""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="shpers-app", description=__doc__)
    parser.add_argument("--workspace", default=os.environ.get("SHPERS_WORKSPACE"),
                        help="workspace folder (default: $SHPERS_WORKSPACE or the per-user data folder)")
    parser.add_argument("--dataset", help="open this dataset instead of the workspace's own")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TQDM_DISABLE", "1")  # tqdm reads it once, at import; jobs' child processes inherit it
    args = parse_args(argv)
    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication

    pg.setConfigOptions(antialias=True, foreground="k")
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("shpers")
    app.setOrganizationName("shpers")
    from shpers_gui.main_window import MainWindow
    from shpers_gui.session import Session

    session = Session(args.workspace)
    window = MainWindow(session)
    window.show()
    if args.dataset:
        window.load_dataset(args.dataset)
    else:
        window.start()
    return app.exec()


if __name__ == "__main__":
    raise SystemExit(main())
