"""Before the window starts: are the system libraries of Qt's X11 platform plugin there?

Qt aborts with "Could not load the Qt platform plugin xcb" and a wall of text when
one of them is missing, which is common on a fresh Debian or Ubuntu desktop (the
PySide6 wheel brings Qt, not the X11 helper libraries). This module finds the
missing ones first and names the packages that hold them. It does not import Qt's
GUI modules. The quick test is the dynamic linker loading the plugin, as Qt is about
to; only when that fails does ``ldd`` list every library that is missing.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import re
import shutil
import sys
from pathlib import Path

# shared library (as the xcb plugin and libQt6XcbQpa link it) -> Debian/Ubuntu package
# (from `dpkg -S` on Debian 12; Ubuntu uses the same names)
XCB_PACKAGES = {
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
}

_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found", re.M)


def uses_xcb(environ=None, platform: str | None = None) -> bool:
    """True when Qt would start on X11: Linux, ``DISPLAY`` set, no other platform asked for."""
    env = os.environ if environ is None else environ
    if (platform or sys.platform) != "linux" or not env.get("DISPLAY"):
        return False
    asked = env.get("QT_QPA_PLATFORM", "").strip()
    return not asked or asked.split(":", 1)[0].split(";", 1)[0] == "xcb"


def xcb_plugin_files() -> list:
    """The xcb platform plugin of the installed PySide6 and Qt's xcb library beside it."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return []
    qt = Path(list(spec.submodule_search_locations)[0]) / "Qt"
    files = [qt / "plugins" / "platforms" / "libqxcb.so"]
    files += sorted((qt / "lib").glob("libQt6XcbQpa.so*"))[:1]
    return [f for f in files if f.is_file()]


def loads(files) -> bool:
    """Whether the dynamic linker loads every one of ``files`` and all they link."""
    for f in files:
        try:
            ctypes.CDLL(str(f), mode=os.RTLD_LAZY)  # Qt loads the same files next
        except OSError:
            return False
    return True


def run_ldd(path: Path) -> str:
    """``ldd``'s report on ``path`` ("" when ldd is missing or fails)."""
    import subprocess  # noqa: PLC0415 - only when the plugin failed to load

    ldd = shutil.which("ldd")
    if ldd is None:
        return ""
    try:
        out = subprocess.run([ldd, str(path)], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout


def missing_libraries(files=None, ldd=None) -> list:
    """Shared libraries the xcb plugin needs and the dynamic linker cannot find."""
    files = xcb_plugin_files() if files is None else files
    ldd = ldd or run_ldd
    missing = []
    for f in files:
        for name in _NOT_FOUND.findall(ldd(f)):
            if name not in missing and not name.startswith("libQt6"):
                missing.append(name)
    return missing


def advice(missing: list) -> str:
    """The one message for the user: what is missing and the line that installs it."""
    packages = []
    for lib in missing:
        pkg = XCB_PACKAGES.get(lib)
        if pkg and pkg not in packages:
            packages.append(pkg)
    unknown = [lib for lib in missing if lib not in XCB_PACKAGES]
    text = ("backprop-studio: the window cannot start: Qt's X11 platform plugin (xcb) needs "
            f"system libraries that are not installed: {', '.join(missing)}.")
    if packages:
        text += ("\nOn Debian or Ubuntu, install them with:\n    sudo apt-get install "
                 + " ".join(packages))
    if unknown:
        text += ("\nInstall the package that provides " + ", ".join(unknown)
                 + " with your system's package manager.")
    text += ("\n(The command-line tools work without them: backprop-studio train, eval, "
             "render ...)")
    return text


def check_gui_libraries(environ=None, platform=None, ldd=None, files=None,
                        stream=None) -> int | None:
    """Call before the QApplication exists: an exit code (and one message) when Qt would
    abort for want of system libraries, else ``None``."""
    if not uses_xcb(environ, platform):
        return None
    files = xcb_plugin_files() if files is None else files
    if loads(files):
        return None
    missing = missing_libraries(files, ldd)
    if not missing:
        return None
    print(advice(missing), file=stream or sys.stderr)
    return 1
