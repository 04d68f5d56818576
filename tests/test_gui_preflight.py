"""Starting the window on a machine that lacks X11 libraries Qt needs: one clear message."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import qt_preflight

# what ldd prints for the xcb plugin on a fresh Debian 12 desktop
LDD_FRESH_DEBIAN = """\
\tlinux-vdso.so.1 (0x00007ffd5b3f2000)
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/plugins/platforms/../../lib/libQt6XcbQpa.so.6 (0x1)
\tlibGL.so.1 => /lib/x86_64-linux-gnu/libGL.so.1 (0x00007f4f3c5d1000)
\tlibxkbcommon-x11.so.0 => /lib/x86_64-linux-gnu/libxkbcommon-x11.so.0 (0x00007f4f3c5c7000)
\tlibxcb-cursor.so.0 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibxcb.so.1 => /lib/x86_64-linux-gnu/libxcb.so.1 (0x00007f4f3c59d000)
"""
LDD_QPA = LDD_FRESH_DEBIAN + "\tlibxcb-render-util.so.0 => not found\n"


def fake_ldd(path: Path) -> str:
    return LDD_QPA if "XcbQpa" in path.name else LDD_FRESH_DEBIAN


FILES = [Path("libqxcb.so"), Path("libQt6XcbQpa.so.6")]


def test_the_missing_libraries_are_read_from_ldd():
    """libraries ldd reports 'not found' for the plugin or Qt's xcb library are listed once"""
    assert qt_preflight.missing_libraries(FILES, fake_ldd) == [
        "libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1",
        "libxcb-render-util.so.0"]


def test_the_message_names_the_packages_and_the_install_line(capsys):
    """a fresh Debian box prints one message naming the packages and the apt-get line"""
    code = qt_preflight.check_gui_libraries({"DISPLAY": ":0"}, "linux", fake_ldd, FILES)
    err = capsys.readouterr().err
    assert code == 1
    assert ("sudo apt-get install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 "
            "libxcb-render-util0") in err
    assert err.count("cannot start") == 1 and "Traceback" not in err


@pytest.mark.parametrize("env, platform", [
    ({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"}, "linux"),
    ({}, "linux"),
    ({"DISPLAY": ":0"}, "darwin"),
])
def test_no_check_when_qt_would_not_use_x11(env, platform):
    """headless, another platform plugin asked for, or not Linux: nothing is checked"""
    def ldd(_path):
        raise AssertionError("ldd should not run")
    assert qt_preflight.check_gui_libraries(env, platform, ldd, FILES) is None


def test_an_explicit_xcb_platform_is_checked(capsys):
    """QT_QPA_PLATFORM=xcb is checked like the default"""
    assert qt_preflight.check_gui_libraries({"DISPLAY": ":1", "QT_QPA_PLATFORM": "xcb"},
                                            "linux", fake_ldd, FILES) == 1


def test_a_plugin_the_linker_loads_is_not_given_to_ldd():
    """where the installed xcb plugin and all it links load, the check ends there: no ldd
    process at every start"""
    files = qt_preflight.xcb_plugin_files()
    if not files or not qt_preflight.loads(files):
        pytest.skip("the xcb plugin or a library it links is not installed here")

    def ldd(_path):
        raise AssertionError("ldd should not run")
    assert qt_preflight.check_gui_libraries({"DISPLAY": ":0"}, "linux", ldd, files) is None


def test_a_plugin_that_does_not_load_is_not_passed(tmp_path):
    """a plugin file the linker refuses is never taken for loadable"""
    bad = tmp_path / "libqxcb.so"
    bad.write_bytes(b"not a shared library")
    assert not qt_preflight.loads([bad])
    assert not qt_preflight.loads([tmp_path / "missing.so"])


def test_every_library_the_installed_plugin_links_has_a_package():
    """each X11/GL library the installed xcb plugin needs is in the package map"""
    import subprocess

    files = qt_preflight.xcb_plugin_files()
    if not files:
        pytest.skip("PySide6 without the xcb plugin")
    needed = set()
    for f in files:
        out = subprocess.run(["readelf", "-d", str(f)], capture_output=True, text=True)
        if out.returncode != 0:
            pytest.skip("no readelf")
        needed |= {line.split("[", 1)[1].rstrip("]") for line in out.stdout.splitlines()
                   if "(NEEDED)" in line}
    system = {n for n in needed if not n.startswith(("libQt6", "libstdc++", "libm.", "libc.",
                                                     "libgcc_s"))}
    assert system <= set(qt_preflight.XCB_PACKAGES), system - set(qt_preflight.XCB_PACKAGES)


def test_backprop_studio_stops_before_qt_with_the_message(monkeypatch, capsys):
    """`backprop-studio` on a box without libxcb-icccm4 exits 1 with the message; no window
    (and no Qt abort) is attempted"""
    import app.main_window as mw
    from app.cli import main

    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.setattr(qt_preflight, "run_ldd", fake_ldd)
    monkeypatch.setattr(qt_preflight, "xcb_plugin_files", lambda: FILES)

    def no_app(*_a, **_k):
        raise AssertionError("Qt was started")

    monkeypatch.setattr(mw, "make_app", no_app)
    assert main([]) == 1
    assert "libxcb-icccm4" in capsys.readouterr().err
