"""Recorded traces in the style of real reasoning models (written for these tests): several paragraphs,
re-checks, answers in prose and LaTeX, a wrong answer corrected later, a trace cut off without `</think>`.

Each is `(id, gold, thinking, final)`; `final` is what follows `</think>` (None: the trace was cut off).
"""

BASES = (
    "bases",
    "70",
    "Okay, so I need to find the sum of all integer bases \\( b > 9 \\) for which \\( 17_b \\) divides \\( 97_b \\). "
    "Let me start by writing both numbers in base 10.\n\n"
    "In base \\( b \\), \\( 17_b = b + 7 \\) and \\( 97_b = 9b + 7 \\).\n\n"
    "So I need \\( b + 7 \\) to divide \\( 9b + 7 \\). Writing \\( 9b + 7 = 9(b + 7) - 56 \\), that means "
    "\\( b + 7 \\) must divide 56.\n\n"
    "The divisors of 56 are 1, 2, 4, 7, 8, 14, 28, 56. Since \\( b > 9 \\), \\( b + 7 > 16 \\), which leaves "
    "28 and 56, so b = 21 or b = 49.\n\n"
    "The sum of these bases is \\( 21 + 49 = 70 \\).\n\n"
    "Wait, let me double-check that both bases really work. For b = 21: 17_21 = 28 and 97_21 = 196, and "
    "196 / 28 = 7. Good.\n\n"
    "For b = 49: 17_49 = 56 and 97_49 = 448 = 8 * 56. Good.\n\n"
    "So the sum is 70.\n\n",
    "The bases are 21 and 49, so the sum is \\(\\boxed{70}\\).",
)

CORRECTED = (
    "corrected",
    "84",
    "Let me count the arrangements by cases on where the two red beads go.\n\n"
    "Case 1: the red beads are adjacent. There are 6 positions for the pair, and the other beads can be "
    "arranged in 12 ways, so 6 * 12 = 72.\n\n"
    "Case 2: they are not adjacent. Hmm, I think this case is impossible here.\n\n"
    "So the total is 72.\n\n"
    "Wait, that doesn't seem right. If the red beads are two apart there are still valid arrangements, so "
    "case 2 is not empty.\n\n"
    "Recounting case 2: 1 way to place them apart times 12 arrangements of the rest gives 12.\n\n"
    "So the total is actually 72 + 12 = 84.\n\n"
    "Let me verify with a complementary count: 120 arrangements in all, 36 of them invalid, and "
    "120 - 36 = 84. That matches.\n\n",
    "**Answer:** \\boxed{84}",
)

FRACTION = (
    "fraction",
    "3/8",
    "We flip three fair coins and want the probability of exactly two heads.\n\n"
    "There are \\( 2^3 = 8 \\) equally likely outcomes.\n\n"
    "Exactly two heads: HHT, HTH, THH, which is 3 outcomes.\n\n"
    "Therefore, \\( p = \\frac{3}{8} \\).\n\n"
    "Alternatively, by the binomial formula, \\( \\binom{3}{2} (1/2)^3 = 3/8 \\). Same answer.\n\n",
    "The probability is $\\frac{3}{8}$, so the answer is \\boxed{\\frac{3}{8}}.",
)

CUT_OFF = (
    "cut-off",
    "376",
    "We need the remainder when \\( 2^{100} \\) is divided by 1000... Let me think about this using CRT.\n\n"
    "Modulo 8, \\( 2^{100} \\equiv 0 \\).\n\n"
    "Modulo 125, Euler's theorem gives \\( 2^{100} \\equiv 1 \\), so the remainder is 376.\n\n"
    "Hmm, let me combine the two congruences more carefully. We need x = 0 mod 8 and x = 1 mod 125.\n\n"
    "Trying x = 376: 376 = 47 * 8, and 376 - 1 = 375 = 3 * 125. So",
    None,
)

WRONG = (
    "wrong",
    "12",
    "The polygon has 5 sides, so it has 5 * (5 - 3) / 2 diagonals.\n\n"
    "That is 5 * 2 / 2 = 5.\n\n"
    "So the answer is 5.\n\n",
    "There are \\boxed{5} diagonals.",
)

TRACES = [BASES, CORRECTED, FRACTION, CUT_OFF, WRONG]
