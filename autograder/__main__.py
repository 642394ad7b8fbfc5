"""The dlcourse autograder: hidden pytest suites graded outside the student's process."""
import sys

from autograder.cli import main

if __name__ == "__main__":        # not when multiprocessing imports the parent's main module
    sys.exit(main())
