"""Before the window opens on Linux/X11: name the Debian/Ubuntu packages Qt's xcb plugin lacks.

Qt itself only says it "could not load the Qt platform plugin xcb" and suggests reinstalling,
which does not help. ``python -m shpers_gui.platform_check`` lists the plugin's missing shared
libraries (``ldd``) and the packages that provide them, and exits 1 when some are missing.
"""

from __future__ import annotations

import ctypes.util
import os
import re
import subprocess
import sys
from pathlib import Path

# Shared library (as ldd names it) -> Debian/Ubuntu package, where the name does not follow the rule.
PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libOpenGL.so.0": "libopengl0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libX11-xcb.so.1": "libx11-xcb1",
}


def package_for(library: str) -> str:
    """The package that usually ships ``library`` ("libfoo.so.3" -> "libfoo3", "libfoo2.so.1" -> "libfoo2-1")."""
    if library in PACKAGES:
        return PACKAGES[library]
    match = re.match(r"(lib[\w+.-]+?)\.so\.(\d+)", library)
    if not match:
        return library
    name, major = match.group(1).lower(), match.group(2)
    return f"{name}-{major}" if name[-1].isdigit() else f"{name}{major}"


def xcb_plugin() -> Path | None:
    try:
        import PySide6
    except ImportError:
        return None
    plugin = Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    return plugin if plugin.is_file() else None


def missing_libraries(plugin: Path) -> list[str]:
    """Shared libraries the plugin needs and the loader cannot find (Qt also dlopens xcb-cursor)."""
    try:
        out = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    missing = sorted({m.group(1) for m in re.finditer(r"^\s*(\S+) => not found", out, re.MULTILINE)})
    if ctypes.util.find_library("xcb-cursor") is None and "libxcb-cursor.so.0" not in missing:
        missing.append("libxcb-cursor.so.0")
    return missing


def check() -> str:
    """An empty string when the xcb plugin can load (or is not going to be used), else what to install."""
    if not sys.platform.startswith("linux"):
        return ""
    if os.environ.get("QT_QPA_PLATFORM", "xcb").split(":")[0] != "xcb":
        return ""
    if not os.environ.get("DISPLAY") and os.environ.get("WAYLAND_DISPLAY"):
        return ""  # Qt picks its Wayland plugin
    plugin = xcb_plugin()
    if plugin is None:
        return ""
    missing = missing_libraries(plugin)
    if not missing:
        return ""
    packages = sorted({package_for(lib) for lib in missing})
    return (f"The Qt xcb platform plugin cannot load: {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} missing.\n"
            f"On Debian/Ubuntu install them with:\n    sudo apt-get install {' '.join(packages)}\n"
            "(No display at all? Run under xvfb-run, or set QT_QPA_PLATFORM=offscreen.)")


def main() -> int:
    problem = check()
    if problem:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
