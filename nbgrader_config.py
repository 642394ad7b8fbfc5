"""nbgrader's configuration for this course; every nbgrader command finds it at the repository root.

    nbgrader generate_assignment 01_convolution   # solutions/ -> course/ (the release students get)
    nbgrader autograde 01_convolution             # nbgrader's own grading (see README: prefer ours)
    nbgrader generate_feedback 01_convolution
    nbgrader export

Our own grader (`python -m autograder grade ...`) reads the same folders and writes its scores
into the same gradebook, so formgrader and `nbgrader export` show them.
"""
from pathlib import Path

c = get_config()  # noqa: F821  (nbgrader injects get_config)

# An absolute root computed from this file's own location, so commands work from any folder.
ROOT = Path(__file__).resolve().parent

c.CourseDirectory.root = str(ROOT)
c.CourseDirectory.course_id = "dlcourse"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "course"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"
# Only real assignments, never the helper library or data folders that also live in course/.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "data", "runs", "checkpoints"]
c.CourseDirectory.db_url = f"sqlite:///{ROOT / 'gradebook.db'}"

# The default exchange (/srv/nbgrader/exchange) needs root to create; this one any user can write.
c.Exchange.root = str(ROOT / "exchange")

# Our grader's settings (autograder/settings.py lists every one and its default; the command line
# overrides them: `python -m autograder grade ... --cell-timeout 300 --memory 4096 --run-size tiny`).
# Uncomment to change one for the whole course:
# c.Autograder.cell_timeout = 120        # seconds per notebook cell (a stuck cell fails, the batch goes on)
# c.Autograder.call_timeout = 60         # seconds per call of a student function by a hidden test
# c.Autograder.total_timeout = 900       # seconds for the whole notebook
# c.Autograder.memory_mb = 2048          # memory of all a submission's processes
# c.Autograder.gpu = False               # let the kernel see CUDA devices
# c.Autograder.run_size = None           # "tiny": DLCOURSE_RUN_SIZE=tiny, smoke-sized demonstrations
# c.Autograder.workers = 2               # submissions graded at once (default: half the CPU cores)

# nbgrader's own autograde stops a stuck cell after the same per-cell time as our grader.
from autograder.settings import Settings  # noqa: E402

c.Execute.timeout = int(Settings().replace(dict(c.Autograder)).limits.cell_timeout)
c.Execute.interrupt_on_timeout = True

# Every release opens with a Colab/Binder badge cell and a cell that installs the course library where it
# is missing (autograder/colab.py), added by one preprocessor after nbgrader's own. The badges and the
# install point at the course's public repository: SET IT HERE (the default is a placeholder), then run
# `python -m autograder release` again.
c.ColabCells.repository = "https://github.com/YOUR-ORG/dlcourse"     # placeholder: the course's repository
c.ColabCells.branch = "main"
# The preprocessor list names classes, so reading it imports nbgrader (0.55 s). Only a process that
# runs nbgrader uses it, and such a process has imported nbgrader before it reads this file; our
# grader reads only c.Autograder and skips it, so that every grading command starts its kernels
# that much sooner.
import sys  # noqa: E402

if "nbgrader" in sys.modules:
    from autograder.colab import ColabCells
    from nbgrader.converters import GenerateAssignment

    c.GenerateAssignment.preprocessors = [*GenerateAssignment.class_traits()["preprocessors"].default(),
                                          ColabCells]

# Students see this stub where the solution was.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# nbgrader gives 0 points to a test cell that wrote anything to stderr. torch, numpy and
# matplotlib print harmless warnings there (UserWarning, DeprecationWarning, FutureWarning,
# tqdm's progress bars), so those lines are removed before grading.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = r"(?:\w+Warning:|warnings\.warn\(|\d+%\|)"
