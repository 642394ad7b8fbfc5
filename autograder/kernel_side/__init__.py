"""Code that runs inside the student's kernel, and nothing else of the grader does.

dispatcher.py is sent into the kernel as source and executed there as soon as the kernel starts
(autograder/kernel_process.py, `bootstrap_code`): it runs the hidden suite's calls into the notebook under
the forbidden-operation guard and passes values back and forth through files. It imports only the
standard library, torch and IPython (tests/test_layout.py checks), so nothing of the grader or the
suites can reach the student's process by import. The grader imports it too, for its constants
(the op groups) and for unit tests.
"""
