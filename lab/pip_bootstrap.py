"""Stands in for pip's get-pip.py when ansible-test bootstraps pip in its sanity venvs.

ansible-test downloads get-pip.py from a host that is out of reach here, but it first looks in its
cache (~/.ansible/test/cache/get_pip_<version>.py). This file, copied there, does what get-pip.py
does: it runs pip from the wheel CPython bundles (ensurepip) to install the requested pip version
and packages from the package index that is reachable.
"""

import ensurepip
import sys
from pathlib import Path

bundled = sorted((Path(ensurepip.__file__).parent / "_bundled").glob("pip-*.whl"))
if not bundled:
    sys.exit("pip_bootstrap: this Python has no bundled pip wheel (ensurepip/_bundled)")
sys.path.insert(0, str(bundled[-1]))

from pip._internal.cli.main import main  # noqa: E402  (importable only once the wheel is on sys.path)

# get-pip.py's own flags: it installs setuptools and wheel beside pip unless told not to.
args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
args += [name for name in ("setuptools", "wheel") if f"--no-{name}" not in sys.argv[1:]]
sys.exit(main(["install", "--upgrade", "--force-reinstall", *args]))
