"""`make run` names the packages Qt's xcb plugin lacks instead of Qt's misleading message."""

from __future__ import annotations

import pytest

from shpers_gui import platform_check


@pytest.mark.parametrize("library, package", [
    ("libxcb-icccm.so.4", "libxcb-icccm4"), ("libxcb-keysyms.so.1", "libxcb-keysyms1"),
    ("libxcb-cursor.so.0", "libxcb-cursor0"), ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0"),
    ("libxcb-sync.so.1", "libxcb-sync1"), ("libfoo2.so.3", "libfoo2-3"),
])
def test_libraries_map_to_debian_packages(library, package):
    assert platform_check.package_for(library) == package


def test_missing_libraries_are_named_with_an_apt_line(monkeypatch, tmp_path):
    monkeypatch.setattr(platform_check.sys, "platform", "linux")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(platform_check, "xcb_plugin", lambda: tmp_path / "libqxcb.so")
    monkeypatch.setattr(platform_check, "missing_libraries", lambda _p: ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"])
    text = platform_check.check()
    assert "sudo apt-get install libxcb-icccm4 libxcb-keysyms1" in text
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert platform_check.check() == ""


def test_the_real_plugin_is_checked_with_ldd():
    plugin = platform_check.xcb_plugin()
    if plugin is None:
        pytest.skip("PySide6 has no xcb plugin here")
    missing = platform_check.missing_libraries(plugin)
    assert all(lib.startswith("lib") and ".so" in lib for lib in missing)
