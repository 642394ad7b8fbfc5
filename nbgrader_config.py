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

# A stuck cell (an infinite loop, a huge download) fails after this many seconds instead of
# hanging the whole batch.
c.Execute.timeout = 300
c.Execute.interrupt_on_timeout = True

# Students see this stub where the solution was.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# nbgrader gives 0 points to a test cell that wrote anything to stderr. torch, numpy and
# matplotlib print harmless warnings there (UserWarning, DeprecationWarning, FutureWarning,
# tqdm's progress bars), so those lines are removed before grading.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = r"(?:\w+Warning:|warnings\.warn\(|\d+%\|)"
