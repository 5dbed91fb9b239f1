"""A method's parameter form, built from the engine's parameter dataclasses.

Fields, defaults, ranges, choices and tooltips all come from ``parameter_groups`` /
``default_params`` / ``Params.specs()``, and each field is checked with ``Params.check_value``,
the rules the engine validates with; the app holds no copy of them.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from shpers_core.jobs.spec import default_params, parameter_groups, resolve_key
from shpers_core.params import ParamError, Params, ParamSpec, coerce

_INT_LIMIT = 2**31 - 1


def _tooltip(spec: ParamSpec, default: Any) -> str:
    lines = [spec.help]
    if spec.min is not None or spec.max is not None:
        lo = "" if spec.min is None else f"{'>' if spec.min_exclusive else '≥'} {spec.min:g}"
        hi = "" if spec.max is None else f"≤ {spec.max:g}"
        lines.append("Range: " + ", ".join(x for x in (lo, hi) if x))
    if spec.choices:
        lines.append("Choices: " + ", ".join(map(str, spec.choices)))
    lines.append(f"Default: {_text(default)}")
    return "\n".join(lines)


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return repr(value) if isinstance(value, float) else str(value)


class _Field:
    """One editor and how to read, write and check its value."""

    def __init__(self, group: str, cls: type[Params], spec: ParamSpec, default: Any):
        self.group, self.cls, self.spec, self.default = group, cls, spec, default
        if spec.choices and spec.type is not list:
            w = QComboBox()
            for c in spec.choices:
                w.addItem(str(c), c)
            w.currentIndexChanged.connect(lambda _i: self._changed())
        elif spec.type is bool:
            w = QCheckBox()
            w.toggled.connect(lambda _b: self._changed())
        elif spec.type is int:
            w = QSpinBox()
            lo = -_INT_LIMIT if spec.min is None else int(spec.min) + (1 if spec.min_exclusive else 0)
            w.setRange(lo, _INT_LIMIT if spec.max is None else int(spec.max))
            w.setSpecialValueText("")
            w.valueChanged.connect(lambda _v: self._changed())
        else:
            # Floats in a line edit: spin boxes round 5e-4 to their fixed decimals.
            w = QLineEdit()
            w.textChanged.connect(lambda _t: self._changed())
            if spec.type is list:
                w.setPlaceholderText("comma-separated")
        w.setToolTip(_tooltip(spec, default))
        w.setObjectName(f"{group}.{spec.name}")
        self.widget = w
        self.on_change = None
        self.set(default)

    @property
    def key(self) -> str:
        return f"{self.group}.{self.spec.name}"

    def set(self, value: Any) -> None:
        w = self.widget
        if isinstance(w, QComboBox):
            i = w.findData(value)
            w.setCurrentIndex(max(i, 0))
        elif isinstance(w, QCheckBox):
            w.setChecked(bool(value))
        elif isinstance(w, QSpinBox):
            w.setValue(int(value))
        else:
            w.setText(_text(value))

    def value(self) -> Any:
        """The typed value; raises :class:`ParamError` naming the field when it is not valid."""
        w = self.widget
        if isinstance(w, QComboBox):
            value = w.currentData()
        elif isinstance(w, QCheckBox):
            value = w.isChecked()
        elif isinstance(w, QSpinBox):
            value = w.value()
        else:
            # An empty field is an error, never the default in disguise: an emptied number does not
            # parse, and an empty list with a default fails the engine's check.
            value = coerce(self.spec, w.text())
        return self.cls.check_value(self.spec.name, value)

    def _changed(self) -> None:
        ok = True
        try:
            self.value()
        except ParamError:
            ok = False
        self.widget.setStyleSheet("" if ok else "background: #ffd6d6;")
        if self.on_change:
            self.on_change()


class ParamForm(QWidget):
    """One group box per parameter group of a method; ``values()`` feeds ``build_spec``."""

    changed = Signal()

    def __init__(self, method: str | None = None, parent=None):
        super().__init__(parent)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self.fields: dict[str, _Field] = {}
        self.method = ""
        if method:
            self.set_method(method)

    def set_method(self, method: str) -> None:
        while self._layout.count():
            item = self._layout.takeAt(0)
            w = item.widget()
            if w is not None:
                # Detach now: deleteLater alone leaves the old boxes drawn until the loop spins.
                w.setParent(None)
                w.deleteLater()
        self.fields = {}
        self.method = method
        for group, cls in parameter_groups(method).items():
            defaults = default_params(method, group)
            specs = cls.specs()
            if not specs:
                continue
            box = QGroupBox(cls.title or group)
            box.setObjectName(group)
            form = QFormLayout(box)
            for spec in specs:
                f = _Field(group, cls, spec, getattr(defaults, spec.name))
                f.on_change = self.changed.emit
                self.fields[f.key] = f
                form.addRow(spec.name.replace("_", " "), f.widget)
                form.labelForField(f.widget).setToolTip(f.widget.toolTip())
            self._layout.addWidget(box)
        self._layout.addStretch(1)
        self.changed.emit()

    def specs(self) -> dict[str, ParamSpec]:
        """Qualified name (``train.learning_rate``) to its spec, for the sweep chooser."""
        return {k: f.spec for k, f in self.fields.items()}

    def values(self) -> dict[str, Any]:
        """Every field as ``{"group.name": typed value}``; raises ParamError on the first bad one."""
        return {k: f.value() for k, f in self.fields.items()}

    def overrides(self) -> dict[str, Any]:
        """Only the fields that differ from the engine's defaults."""
        return {k: v for k, v in self.values().items() if v != self.fields[k].default}

    def set_values(self, values: dict[str, Any]) -> None:
        """Set fields from ``{"group.name" or bare name: value}``; unknown names are ignored."""
        for key, value in values.items():
            try:
                group, name = resolve_key(self.method, key)
            except ParamError:
                continue
            field = self.fields.get(f"{group}.{name}")
            if field is not None:
                field.set(value)

    def reset(self) -> None:
        for f in self.fields.values():
            f.set(f.default)
