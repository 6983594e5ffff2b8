"""The 18-question test of the registration: its answer key and its score.

The test ranks applicants, it never refuses anyone: every complete answer sheet gets a score
from 0 to `QUESTIONS` (one point per answer that matches `ANSWER_KEY`).
"""

from __future__ import annotations

from collections.abc import Sequence

QUESTIONS = 18
CHOICES = ("A", "B", "C", "D")

ANSWER_KEY = "BCADDBACBDCABDACBD"
"""Which answer scores each of the 18 questions."""


def score(answers: Sequence[str] | str) -> int:
    """Points of an answer sheet of exactly `QUESTIONS` answers (ValueError otherwise)."""
    if len(answers) != QUESTIONS:
        raise ValueError(f"the test has {QUESTIONS} questions, got {len(answers)} answers")
    return sum(a == k for a, k in zip(answers, ANSWER_KEY, strict=True))
