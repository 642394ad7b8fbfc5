"""The dlcourse autograder: hidden pytest suites graded outside the student's process."""
