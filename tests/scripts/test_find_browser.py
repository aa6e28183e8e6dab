"""scripts/find-browser, the Makefile's choice of browser: each way it can find one, in its order.

The real commands (Playwright's driver, apt-get, `id -u`) are replaced by small scripts through the
variables the script documents, and PATH holds only a folder the test controls, so every branch runs
here whatever is installed on the machine.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "find-browser"


def executable(path: Path, body: str = "exit 0") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The script with PATH = tmp_path/bin only, not root, and no Playwright unless ``env`` adds one."""
    base = {"PATH": str(tmp_path / "bin"), "HOME": str(tmp_path), "FIND_BROWSER_UID": "1000",
            "FIND_BROWSER_PYTHON": str(executable(tmp_path / "tools" / "python", "exit 1")),
            "FIND_BROWSER_PLAYWRIGHT": str(executable(tmp_path / "tools" / "playwright", "exit 1")),
            "FIND_BROWSER_APT": "apt-get"}
    (tmp_path / "bin").mkdir(exist_ok=True)
    return subprocess.run(["/bin/bash", str(SCRIPT)], env={**base, **env}, capture_output=True, text=True,
                          timeout=60)


def test_an_explicit_browser_wins(tmp_path: Path) -> None:
    mine = executable(tmp_path / "opt" / "my-chrome")
    executable(tmp_path / "bin" / "chromium")
    done = run(tmp_path, HEARTRISK_BROWSER=str(mine))
    assert done.returncode == 0 and done.stdout.strip() == str(mine)
    assert "HEARTRISK_BROWSER" in done.stderr


def test_an_explicit_browser_that_is_missing_is_refused(tmp_path: Path) -> None:
    done = run(tmp_path, HEARTRISK_BROWSER=str(tmp_path / "nowhere"))
    assert done.returncode == 1 and done.stdout == ""
    assert "not an executable" in done.stderr


def test_a_system_chromium_comes_first(tmp_path: Path) -> None:
    system = executable(tmp_path / "bin" / "chromium")
    done = run(tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == str(system)
    assert "system Chromium" in done.stderr


def test_playwrights_browser_when_it_is_already_there(tmp_path: Path) -> None:
    own = executable(tmp_path / "ms-playwright" / "chrome")
    python = executable(tmp_path / "tools" / "py-ok", f"cat >/dev/null; echo {own}")
    done = run(tmp_path, FIND_BROWSER_PYTHON=str(python))
    assert done.returncode == 0 and done.stdout.strip() == str(own)
    assert "Playwright's own Chromium" in done.stderr


def test_playwright_installs_its_browser_when_missing(tmp_path: Path) -> None:
    own = tmp_path / "ms-playwright" / "chrome"
    python = executable(tmp_path / "tools" / "py-ok", f"cat >/dev/null; echo {own}")
    installer = executable(tmp_path / "tools" / "pw",
                           f'[ "$1 $2" = "install chromium" ] || exit 3\n'
                           f'/bin/mkdir -p {own.parent}; echo "#!/bin/sh" > {own}; /bin/chmod +x {own}')
    done = run(tmp_path, FIND_BROWSER_PYTHON=str(python), FIND_BROWSER_PLAYWRIGHT=str(installer))
    assert done.returncode == 0 and done.stdout.strip() == str(own)
    assert "just installed" in done.stderr


def test_root_falls_back_to_apt_get(tmp_path: Path) -> None:
    apt = executable(tmp_path / "bin" / "apt-get",
                     f'[ "$1 $2 $3" = "install -y -qq" ] && [ "$4" = chromium ] || exit 0\n'
                     f'echo "#!/bin/sh" > {tmp_path}/bin/chromium; /bin/chmod +x {tmp_path}/bin/chromium')
    done = run(tmp_path, FIND_BROWSER_UID="0", FIND_BROWSER_APT=str(apt))
    assert done.returncode == 0 and done.stdout.strip() == str(tmp_path / "bin" / "chromium")
    assert "apt-get" in done.stderr and "just installed" in done.stderr


def test_no_way_to_a_browser_says_what_to_do(tmp_path: Path) -> None:
    executable(tmp_path / "bin" / "apt-get", f'echo "#!/bin/sh" > {tmp_path}/bin/chromium')
    done = run(tmp_path)  # not root: apt-get is not tried
    assert done.returncode == 1 and done.stdout == ""
    assert "apt-get install chromium" in done.stderr and "playwright install chromium" in done.stderr
    assert not (tmp_path / "bin" / "chromium").exists()


def test_the_makefile_passes_the_choice_to_the_tests() -> None:
    makefile = (SCRIPT.parents[1] / "Makefile").read_text()
    for target in ("test:", "test-reliability:", "docs-images:"):
        recipe = makefile.split(f"\n{target}", 1)[1].split("\n\n", 1)[0]
        assert "$(FIND_BROWSER)" in recipe, target
    assert "HEARTRISK_BROWSER" in makefile and os.access(SCRIPT, os.X_OK)
