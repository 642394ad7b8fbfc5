"""An nbgrader preprocessor that opens every released notebook with two cells: badges and an install.

Why: a student with only a browser should get from the release to a running notebook in one click.
The badge cell opens the notebook in Google Colab (or Binder, which builds environment.yml); the
install cell then installs the course library when it is missing, so nothing else is needed. In
JupyterLab from the student bundle (`pip install -e .` already done) `dlcourse` is importable and
the install cell does nothing, so the same notebook runs unchanged in both places.

What the install cell installs: the `dlcourse` package from the repository's `course/` folder with
`pip install --no-deps` (so Colab keeps the torch and torchvision it ships with: no 2 GB download,
no CUDA build that does not match Colab's driver), then, by name and without pins, only those of
the library's other dependencies (course/pyproject.toml) that cannot be imported. Colab has nearly
all of them; a pin would replace Colab's versions for nothing.

One setting, the public repository (nbgrader_config.py):

    c.ColabCells.repository = "https://github.com/<owner>/<repo>"
    c.ColabCells.branch = "main"

It runs at release time, last in GenerateAssignment's preprocessors, so the cells are in every
release (`python -m autograder release`, `nbgrader generate_assignment`) and never in solutions/.
The cells carry no nbgrader metadata: they are not graded, and nbgrader's checksums and validation
ignore them.
"""
from __future__ import annotations

import pprint
import re
import tomllib
from pathlib import Path

import nbformat
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode

PLACEHOLDER = "https://github.com/YOUR-ORG/dlcourse"
CELL_TAG = "dlcourse-setup"                # both cells carry it, so tools and tests can find them
COURSE_PYPROJECT = Path(__file__).resolve().parent.parent / "course" / "pyproject.toml"
KEPT = {"torch", "torchvision"}            # the platform's own builds are kept
FRONT_ENDS = {"jupyterlab", "notebook"}    # the notebook runs in one already; the library does not import them
IMPORT_NAMES = {"scikit-learn": "sklearn", "scikit-image": "skimage", "jupyter-client": "jupyter_client"}

INSTALL_TEMPLATE = '''\
# Set-up for Google Colab or any Python without the course library. Where `dlcourse` can already be
# imported (JupyterLab with the course bundle installed) this cell does nothing.
import importlib
import importlib.util
import subprocess
import sys

PACKAGE = {package!r}
DEPENDENCIES = {dependencies}    # distribution: import name

if importlib.util.find_spec("dlcourse") is None:
    # --no-deps keeps the torch and torchvision that Colab ships with (no download, a matching CUDA build)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", PACKAGE], check=True)
    missing = [pkg for pkg, module in DEPENDENCIES.items() if importlib.util.find_spec(module) is None]
    if missing:                              # only what the platform lacks, at the versions pip picks
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)
    importlib.invalidate_caches()
    print("installed the course library dlcourse" + (" and " + ", ".join(missing) if missing else ""))
'''


def library_dependencies(pyproject: Path = COURSE_PYPROJECT) -> dict[str, str]:
    """{distribution name: import name} of dlcourse's dependencies, without torch and torchvision (kept
    as the platform has them) and the notebook front-ends (the notebook already runs in one)."""
    names = [re.split(r"[<>=!~;\[ ]", dep, maxsplit=1)[0].strip()
             for dep in tomllib.loads(pyproject.read_text())["project"]["dependencies"]]
    return {n: IMPORT_NAMES.get(n, n.replace("-", "_")) for n in names if n not in KEPT | FRONT_ENDS}


def github_parts(url: str) -> str:
    """"owner/repo" of a GitHub URL (https://github.com/owner/repo[.git][/])."""
    match = re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+?)(?:\.git)?/?", url.strip())
    if not match:
        raise ValueError(f"ColabCells.repository must be a GitHub URL like https://github.com/owner/repo, "
                         f"got {url!r}")
    return f"{match[1]}/{match[2]}"


def setup_cells(repository: str, branch: str, assignment: str, notebook: str) -> list:
    """[badge Markdown cell, install code cell] for course/<assignment>/<notebook>.ipynb."""
    slug = github_parts(repository)
    path = f"course/{assignment}/{notebook}.ipynb"
    colab = f"https://colab.research.google.com/github/{slug}/blob/{branch}/{path}"
    binder = f"https://mybinder.org/v2/gh/{slug}/{branch}?urlpath=lab/tree/{path}"
    badges = (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab}) "
              f"[![Binder](https://mybinder.org/badge_logo.svg)]({binder})\n\n"
              "In Colab or Binder, run the next cell first: it installs the course library `dlcourse` (in Colab "
              "without replacing Colab's PyTorch). In JupyterLab with the course bundle installed it does nothing.")
    package = f"dlcourse @ git+{repository.strip().removesuffix('/')}.git@{branch}#subdirectory=course"
    package = package.replace(".git.git", ".git")
    deps = pprint.pformat(library_dependencies(), width=100, sort_dicts=False).replace("\n", "\n" + " " * 15)
    install = INSTALL_TEMPLATE.format(package=package, dependencies=deps)
    cells = [nbformat.v4.new_markdown_cell(badges, metadata={"tags": [CELL_TAG]}),
             nbformat.v4.new_code_cell(install, metadata={"tags": [CELL_TAG]})]
    for cell, role in zip(cells, ("badges", "install")):
        cell.id = f"{CELL_TAG}-{role}"       # fixed ids: regenerating a release gives the same notebook
    return cells


class ColabCells(NbGraderPreprocessor):
    """Put the badge cell and the install cell at the top of each generated notebook (once)."""

    repository = Unicode(PLACEHOLDER, help="The course's public GitHub repository; the badges open its "
                         "course/<assignment>/ notebooks and the install cell installs dlcourse from it. "
                         "The default is a placeholder: set it in nbgrader_config.py.").tag(config=True)
    branch = Unicode("main", help="The branch (or tag) the badges and the install cell use.").tag(config=True)

    def preprocess(self, nb, resources):
        if self.repository == PLACEHOLDER:
            self.log.warning("ColabCells.repository is the placeholder %s: the Colab badge and the install "
                             "cell point nowhere until nbgrader_config.py names the course's repository",
                             PLACEHOLDER)
        info = resources.get("nbgrader", {})
        assignment, notebook = info.get("assignment"), info.get("notebook")
        nb.cells = [c for c in nb.cells if CELL_TAG not in c.get("metadata", {}).get("tags", [])]
        cells = setup_cells(self.repository, self.branch, assignment, notebook)
        if (nb.nbformat, nb.nbformat_minor) < (4, 5):         # cell ids exist from nbformat 4.5 on
            for cell in cells:
                del cell["id"]
        nb.cells[:0] = cells
        return nb, resources
