"""nbgrader's configuration for the course's assignments (this folder is nbgrader's course directory).

source/<name>/<name>.ipynb   one notebook per assignment: solutions and hidden tests (the instructor's copy)
release/<name>/<name>.ipynb  the student versions, written by `make assignments` (nbgrader generate_assignment)
submitted/, autograded/, feedback/, gradebook.db   the instructor's grading, never committed (.gitignore)

Students need nothing but the release notebook (Python, NumPy, Matplotlib: what Colab has); nbgrader is
the instructor's tool only. tests/test_assignments.py checks both versions (README: Assignments and grading).
"""
import os

c = get_config()  # noqa: F821 - nbgrader's config loader defines it

c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = "ai-music-rnn"
# A solution cell of the student version holds this stub; a cell that still raises it fails its checks.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
# Each assignment runs in seconds on a CPU; a cell that takes longer than this is a bug.
c.ExecutePreprocessor.timeout = 120
