"""Hand-labelled paragraphs in the style of real reasoning traces (written for these tests).

Each label is the conclusion the paragraph states as the result of its reasoning at that point, or None
when it states none (a lead-in, a question, a plan, a hypothesis, a step inside a calculation, a list of
candidates, an equation still to solve). `FORMS` holds one case per form the `reasoning` extractor reads,
`NOT_ANSWERS` what it must not read, `HARD` cases a reader would label but the extractor may miss (a miss
costs a boundary, not a wrong answer), and `SECOND_BATCH` a run of paragraphs written and labelled before
the extractor ever read them. `WORD_PROBLEMS`, `CHOICES`, `BY_CONTENT` (read with `OPTIONS_QUESTION`'s options)
and `LONG_REMARKS` hold the word-problem, multiple-choice and closing-remark forms, each with what must not be
read. Precision is measured over all of them.
"""

import pytest

FORMS = [
    # prose conclusions
    pytest.param("So the sum is 70.", "70", id="prose-so-is"),
    pytest.param("Therefore, there are 588 ways.", "588", id="prose-there-are-n-nouns"),
    pytest.param("That gives b = 21.", "21", id="prose-gives-equation"),
    pytest.param("Thus, the area of the triangle is 468.", "468", id="prose-thus-is"),
    pytest.param("Hence the remainder when N is divided by 1000 is 16.", "16", id="prose-hence"),
    pytest.param("So, adding everything up, the total comes to 1,024.", "1024", id="prose-comes-to-thousands"),
    pytest.param("Putting it together, the number of valid pairs is 117.", "117", id="prose-number-of"),
    pytest.param("Which means the answer should be 204.", "204", id="prose-should-be"),
    pytest.param("So the minimum value equals -4.", "-4", id="prose-equals-negative"),
    pytest.param("Then the length of AB works out to 13.", "13", id="prose-works-out-to"),
    pytest.param("Hmm, so the count is 36.", "36", id="prose-hmm-so"),
    pytest.param("So it's 45.", "45", id="prose-its"),
    pytest.param("So the smallest such n is 12.", "12", id="prose-smallest"),
    pytest.param("Therefore, it is equal to 91.", "91", id="prose-equal-to"),
    pytest.param("Which gives us 2016 divided by 1000 with a remainder of 16.", "16", id="prose-remainder-of"),
    pytest.param("So there are 3 solutions.", "3", id="prose-n-solutions"),
    pytest.param("So angle ABC is 36 degrees.", "36", id="prose-degrees"),
    pytest.param(
        "Wait, let me recount. Actually there are 7 such numbers, not 6, so the total is 7 + 5 = 12.",
        "12",
        id="prose-recount-corrects",
    ),
    pytest.param("So, a = 2, b = 3, and c = 5, which means a + b + c = 10.", "10", id="prose-which-means"),
    pytest.param("Thus the sides are 5, 12 and 13, and the area is (5 * 12)/2 = 30.", "30", id="prose-area-after-list"),
    pytest.param("So the largest possible value of k is 2^{10} - 1 = 1023.", "1023", id="prose-power"),
    pytest.param("And the perimeter is 4 * 13 = 52 units.", "52", id="prose-units"),
    pytest.param("So we get 2^10 = 1024 subsets.", "1024", id="prose-we-get-nouns"),
    # an equation closing the paragraph
    pytest.param("21 + 49 = 70", "70", id="equation-bare"),
    pytest.param("(9b + 7) - (9b + 63) = 7 - 63 = -56", "-56", id="equation-chain-negative"),
    pytest.param("Thus, area = 12 * 39 = 468.", "468", id="equation-named"),
    pytest.param("\\[\nm + n = 93 + 13 = 106\n\\]", "106", id="equation-display"),
    pytest.param("So, 2025 - 1296 = 729.", "729", id="equation-so"),
    pytest.param("N mod 1000 = 2016 mod 1000 = 16.", "16", id="equation-mod"),
    pytest.param("f(5) = 25 - 10 + 1 = 16", "16", id="equation-function"),
    pytest.param("x_{10} = 0.5764", "0.5764", id="equation-subscript-decimal"),
    pytest.param("= 336°", "336", id="equation-continued-degrees"),
    pytest.param("Now add them:\n(252 + 144) + (252 - 144) = 504", "504", id="equation-after-lead-in-line"),
    pytest.param("So, m = 93, n = 13, m + n = 106.", "106", id="equation-last-of-several"),
    # bold
    pytest.param("**70**", "70", id="bold-alone"),
    pytest.param("So the answer is **588**.", "588", id="bold-in-sentence"),
    pytest.param("**Final Answer**\nThe sum is **49**.", "49", id="bold-after-heading"),
    pytest.param("**Answer: 117**", "117", id="bold-labelled"),
    # boxed
    pytest.param("So the answer is \\boxed{70}.", "70", id="boxed"),
    pytest.param("\\[\n\\boxed{\\frac{3}{4}}\n\\]", "\\frac{3}{4}", id="boxed-fraction-display"),
    pytest.param("Therefore, the final answer is \\(\\boxed{277}\\).", "277", id="boxed-inline-math"),
    # $...$ and \( ... \)
    pytest.param("So $m+n = 277$.", "277", id="dollar-equation"),
    pytest.param("Thus the sum equals $\\frac{17}{4}$.", "\\frac{17}{4}", id="dollar-fraction"),
    pytest.param("Therefore $x = -\\frac{1}{2}$.", "-\\frac{1}{2}", id="dollar-negative-fraction"),
    pytest.param("The maximum is $2\\sqrt{3}$.", "2\\sqrt{3}", id="dollar-sqrt"),
    pytest.param("The sum of these bases is \\( 21 + 49 = 70 \\).", "70", id="paren-math-equation"),
    pytest.param("So the perimeter is \\( 20 \\).", "20", id="paren-math-number"),
    pytest.param("Therefore, \\( p = \\frac{5}{7} \\).", "\\frac{5}{7}", id="paren-math-fraction"),
    pytest.param("So \\( |z| = \\sqrt{13} \\).", "\\sqrt{13}", id="paren-math-sqrt"),
    pytest.param("So the expected value is \\(\\dfrac{7}{2}\\).", "\\dfrac{7}{2}", id="paren-math-dfrac"),
    # fractions and expressions
    pytest.param("So the ratio is 5/7.", "5/7", id="fraction-slash"),
    pytest.param("That simplifies to \\frac{35}{12}.", "\\frac{35}{12}", id="fraction-latex"),
    pytest.param("So p = 1441/2500.", "1441/2500", id="fraction-assignment"),
    pytest.param("So the area is 12 + 6\\sqrt{3}.", "12 + 6\\sqrt{3}", id="expression-sqrt"),
    pytest.param("Therefore the distance is 2√5.", "2\\sqrt{5}", id="expression-unicode-root"),
    pytest.param("So the value is 3π/4.", "3\\pi/4", id="expression-pi"),
    # intervals
    pytest.param("So the solution set is [1, 3).", "[1, 3)", id="interval-half-open"),
    pytest.param("Therefore $x \\in [-1, 4)$.", "[-1, 4)", id="interval-in"),
    pytest.param("So x lies in the interval (2, 5].", "(2, 5]", id="interval-prose"),
    # a multiple-choice letter, where an answer is named as such
    pytest.param("So the correct option is B.", "B", id="choice-option"),
    pytest.param("Therefore, the answer is (C).", "C", id="choice-parenthesised"),
    pytest.param("Comparing with the choices, the answer must be D.", "D", id="choice-must-be"),
    pytest.param("**(A)**", "A", id="choice-bold"),
    # negatives
    pytest.param("So the minimum is -12.", "-12", id="negative"),
    pytest.param("Thus y = −3.", "-3", id="negative-unicode-minus"),
    pytest.param("So the slope is -\\frac{2}{3}.", "-\\frac{2}{3}", id="negative-fraction"),
    # explicit answers anywhere in the paragraph
    pytest.param("Therefore, the answer is 70. Hmm, that seems right.", "70", id="named-then-remark"),
    pytest.param("I think the final answer is 204, but let me be careful.", "204", id="named-then-but"),
]

NOT_ANSWERS = [
    pytest.param("First, 9 * 7 = 63, and we still need to add 5.", None, id="mid-calculation"),
    pytest.param("So, subtracting that from \\( 9b + 7 \\), we get:", None, id="lead-in-colon"),
    pytest.param("Let me compute 56 divided by 8 first and then see.", None, id="plan"),
    pytest.param("Then 3 * 4 = 12, 12 + 5 = 17, and multiplying by 2 gives", None, id="unfinished-calculation"),
    pytest.param("We know that 2^10 = 1024, which is more than 1000.", None, id="quantity-then-comparison"),
    pytest.param("So the sum is 21 + 49, which I'll compute next.", None, id="sum-to-compute"),
    pytest.param("Wait, is 70 really right?", None, id="question"),
    pytest.param("Let b = 21.", None, id="hypothesis-let"),
    pytest.param("Suppose n = 5. Then the sum would need to be even.", None, id="hypothesis-then-prose"),
    pytest.param("Let me plug in n = 10:", None, id="trial-lead-in"),
    pytest.param("Let me try b = 10, d = 12.", None, id="trial"),
    pytest.param("Consider x = 2 as a test value.", None, id="test-value"),
    pytest.param("The divisors of 56 are 1, 2, 4, 7, 8, 14, 28, 56.", None, id="list"),
    pytest.param("The first few terms are 1, 3, 6, 10, 15.", None, id="list-of-terms"),
    pytest.param("Since 7 divides 56, b + 7 could be 7, 8, 14, 28 or 56.", None, id="candidates"),
    pytest.param("So b could be 21 or 49.", None, id="two-candidates"),
    pytest.param("So \\( 17_b = b + 7 \\) and \\( 97_b = 9b + 7 \\).", None, id="free-variables"),
    pytest.param("So, \\( \\frac{9b + 7}{b + 7} = 9 - \\frac{56}{b + 7} \\).", None, id="free-variable-fraction"),
    pytest.param("Now we need to solve 3x^2 - 5x + 2 = 0.", None, id="equation-to-solve-zero"),
    pytest.param("So 4x + 3 = 19.", None, id="equation-to-solve"),
    pytest.param("So x^2 = 49", None, id="equation-square"),
    pytest.param("Now, the equation x^2 + y^2 = 25 describes a circle.", None, id="equation-described"),
    pytest.param("For k = 3, the count is the same as before.", None, id="case-prose"),
    pytest.param("Wait, no, the pattern repeats when stepping by m = 2.", None, id="condition-by"),
    pytest.param("That is more than the bound D = 48.", None, id="condition-than"),
    pytest.param("That's roughly 3.14.", None, id="estimate"),
    pytest.param("So x ≈ 0.577.", None, id="estimate-symbol"),
    pytest.param("Hmm, so we have 12 possibilities for the first digit and 10 for the second.", None, id="two-counts"),
    pytest.param("Let me double-check the case b = 49.", None, id="recheck-announcement"),
    pytest.param("Wait, that can't be right, since 2016 is bigger than 1000.", None, id="objection"),
    pytest.param("Step 1: find all divisors of 56.", None, id="step-heading"),
    pytest.param("The problem says the sides are 13, 14 and 15.", None, id="restated-data"),
    pytest.param("I need to find the number of subsets with sum 0 mod 3.", None, id="goal"),
    pytest.param("Maybe the answer is different.", None, id="answer-word-no-value"),
    pytest.param("Let me check if the answer is correct.", None, id="answer-word-check"),
    pytest.param("Hmm, 17 is prime.", None, id="property"),
    pytest.param("At t = 0 the particle is at the origin.", None, id="condition-at"),
    pytest.param("Multiply both sides by 4:", None, id="instruction"),
    pytest.param("**Step 2: Count the pairs**", None, id="bold-heading"),
    pytest.param("**Final Answer**", None, id="bold-final-answer-heading"),
    pytest.param("**Case 2: b = 49**", None, id="bold-case"),
    pytest.param("So we need $k \\geq 5$.", None, id="inequality"),
    pytest.param(
        "Okay, so I have this problem: find the sum of all bases b > 9 for which 17_b divides 97_b.",
        None,
        id="problem-restatement",
    ),
]

HARD = [
    pytest.param(
        "So the number of ordered pairs is 117. But let me double-check that.", "117", id="answer-then-announcement"
    ),
    pytest.param("So the sum is 70. Is that right?", "70", id="answer-then-question"),
    pytest.param("Wait, so the total is actually 84, not 72.", "84", id="correction-with-not"),
    pytest.param("So that's 15 subsets in total.", "15", id="nouns-with-preposition"),
    pytest.param("Therefore, there are 588 ways to arrange them.", "588", id="nouns-with-clause"),
    pytest.param("So b = 21 or b = 49.", None, id="two-solutions-as-equations"),
    pytest.param("Thus, 39 is better.", None, id="value-before-verb"),
]
# A second batch, written and labelled before the extractor was run on it (its first score is reported).
SECOND_BATCH = [
    pytest.param(
        "Okay, let me see. The triangle has sides 7, 24 and 25, so it is a right triangle.",
        None,
        id="b2-fact-about-data",
    ),
    pytest.param("The legs are 7 and 24, so the area is (7 * 24) / 2 = 84.", "84", id="b2-area"),
    pytest.param("Hmm, then the inradius is r = Area / s = 84 / 28 = 3.", "3", id="b2-inradius"),
    pytest.param("Wait, s is the semiperimeter: (7 + 24 + 25) / 2 = 28. Yes.", "28", id="b2-semiperimeter-yes"),
    pytest.param(
        "So the inradius is 3, and the circumradius is half the hypotenuse, 25/2.", "25/2", id="b2-two-results-last"
    ),
    pytest.param("Let me think about how many multiples of 7 are below 1000.", None, id="b2-plan"),
    pytest.param("That's floor(999 / 7) = 142.", "142", id="b2-floor"),
    pytest.param(
        "Similarly for 11: floor(999/11) = 90, and for 77: floor(999/77) = 12.", "12", id="b2-last-of-parallel"
    ),
    pytest.param("By inclusion-exclusion, the count is 142 + 90 - 12 = 220.", "220", id="b2-inclusion-exclusion"),
    pytest.param(
        "Hold on, the problem asks for numbers divisible by 7 or 11 but not both, so I need to subtract the 12 twice.",
        None,
        id="b2-plan-with-number",
    ),
    pytest.param("That gives 220 - 12 = 208.", "208", id="b2-that-gives"),
    pytest.param("So the answer would be 208.", "208", id="b2-would-be"),
    pytest.param("Now I want to solve x^2 - 5x + 6 = 0.", None, id="b2-equation-to-solve"),
    pytest.param("It factors as (x - 2)(x - 3) = 0, so x = 2 or x = 3.", None, id="b2-two-roots"),
    pytest.param("The larger root is 3.", "3", id="b2-larger-root"),
    pytest.param("Then the sum of the squares of the roots is 2^2 + 3^2 = 13.", "13", id="b2-sum-of-squares"),
    pytest.param("Is there a faster way? By Vieta, r + s = 5 and rs = 6.", None, id="b2-vieta-two-facts"),
    pytest.param("So r^2 + s^2 = (r + s)^2 - 2rs = 25 - 12 = 13, which matches.", "13", id="b2-matches"),
    pytest.param(
        "Now for the probability part. There are \\( \\binom{10}{3} = 120 \\) ways to choose the three balls.",
        "120",
        id="b2-binomial-then-nouns",
    ),
    pytest.param("The favourable outcomes number \\( \\binom{4}{2}\\binom{6}{1} = 36 \\).", "36", id="b2-favourable"),
    pytest.param(
        "So the probability is \\( \\frac{36}{120} = \\frac{3}{10} \\).", "\\frac{3}{10}", id="b2-probability"
    ),
    pytest.param("Therefore, m = 3 and n = 10, and m + n = 13.", "13", id="b2-m-plus-n"),
    pytest.param("I need to be careful about whether the balls are replaced.", None, id="b2-caution"),
    pytest.param("They are not replaced, so my count stands.", None, id="b2-confirmation-no-value"),
    pytest.param("**Answer:** 13", "13", id="b2-bold-label-outside"),
    pytest.param("Let's compute the first few terms: a_1 = 1, a_2 = 3, a_3 = 7, a_4 = 15.", None, id="b2-terms"),
    pytest.param("It looks like a_n = 2^n - 1.", None, id="b2-formula"),
    pytest.param("So a_{10} = 2^{10} - 1 = 1023.", "1023", id="b2-tenth-term"),
    pytest.param("Then the remainder of 1023 when divided by 100 is 23.", "23", id="b2-remainder"),
    pytest.param("Wait, maybe I misread: the recurrence is a_{n+1} = 2a_n + 1 with a_1 = 1.", None, id="b2-recurrence"),
    pytest.param("Yes, that's what I used, so the remainder is still 23.", "23", id="b2-still"),
    pytest.param(
        "Alternatively, working mod 100 directly: 2^{10} = 1024 ≡ 24, so a_{10} ≡ 23.", None, id="b2-congruence"
    ),
    pytest.param("The answer is $\\boxed{23}$.", "23", id="b2-boxed-dollar"),
    pytest.param("The interval where f is increasing is $(1, \\infty)$.", "(1, \\infty)", id="b2-interval-infinity"),
    pytest.param("So f'(x) = 3x^2 - 6x, which is zero at x = 0 and x = 2.", None, id="b2-critical-points"),
    pytest.param("f(2) = 8 - 12 + 5 = 1, so the local minimum value is 1.", "1", id="b2-local-min"),
    pytest.param(
        "Since the leading coefficient is positive, the minimum on [0, 3] is at x = 2 or at an endpoint.",
        None,
        id="b2-reasoning",
    ),
    pytest.param("f(0) = 5 and f(3) = 27 - 27 + 5 = 5.", "5", id="b2-endpoints"),
    pytest.param("So the minimum on the interval is 1 and the maximum is 5.", "5", id="b2-min-and-max"),
    pytest.param("Which option matches? (A) 1, (B) 3, (C) 5, (D) 7.", None, id="b2-options-question"),
    pytest.param("The maximum is 5, so the answer is (C).", "C", id="b2-choice"),
    pytest.param(
        "Hmm, let me reconsider whether the problem wants the maximum or the minimum.", None, id="b2-reconsider"
    ),
    pytest.param("It asks for the maximum, so (C) it is.", None, id="b2-choice-inverted"),
    pytest.param("Converting 0.375 to a fraction gives 3/8.", "3/8", id="b2-fraction"),
    pytest.param("The slope of the line through (1, 2) and (4, -7) is (-7 - 2)/(4 - 1) = -3.", "-3", id="b2-slope"),
    pytest.param("So the line is y = -3x + 5.", None, id="b2-line-equation"),
    pytest.param("Its y-intercept is 5 and its x-intercept is 5/3.", "5/3", id="b2-intercepts"),
    pytest.param("Let me double-check with x = 5/3: y = -5 + 5 = 0. Good.", None, id="b2-check-good"),
    pytest.param("The number of diagonals of a 12-gon is 12 * 9 / 2 = 54.", "54", id="b2-diagonals"),
    pytest.param(
        "Each vertex connects to 9 others by diagonals, since it can't connect to itself or its two neighbours.",
        None,
        id="b2-explanation",
    ),
]
# Paragraphs that close on remarks after their statement: doubts and announced re-checks are skipped, plans and
# refutations are not.
CLOSING_REMARKS = [
    pytest.param(
        "So the total comes to 2016, and 2016 mod 1000 is 16. But that seems too small. Maybe I overlooked some cases?",
        "16",
        id="remarks-doubt-then-question",
    ),
    pytest.param(
        "Then the sum is 21 + 49 = 70. Hmm, is that the answer? Wait, I may have skipped the negative divisors.",
        "70",
        id="remarks-question-then-turn",
    ),
    pytest.param(
        "So m + n = 31 + 6 = 37. But the problem may have extra conditions, so maybe I need to verify.",
        "37",
        id="remarks-verify-inside",
    ),
    pytest.param(
        "Adding up, the count is 117. That seems straightforward, but perhaps I made an error. Let me check once more.",
        "117",
        id="remarks-three",
    ),
    pytest.param("The height is 2 * 3 = 6. Yes, that seems right.", "6", id="remarks-affirmation"),
    pytest.param(
        "The area of the trapezoid is 72 and its inradius is 3. I need to find the sum of the squares of the bases. "
        "Okay, let me think it through.",
        None,
        id="remarks-data-then-plan",
    ),
    pytest.param("Earlier I thought the count was 9. Clearly I made a mistake there.", None, id="remarks-refutation"),
    pytest.param("So DEGF has area 288. Maybe I can use that to find the height.", None, id="remarks-plan-maybe"),
    pytest.param(
        "Each square then has C(4, 2) = 6 choices. The trouble is that the squares share edges, so the choices are "
        "not independent.",
        None,
        id="remarks-objection-is-that-the",
    ),
    pytest.param("The perimeter is 84. Not sure how that helps.", None, id="remarks-not-sure-how"),
    pytest.param(
        "So the probability is 2/15. Perhaps we can model this with coordinates instead.", None, id="remarks-plan"
    ),
    pytest.param("So m + n = 106?", None, id="remarks-question-only"),
]
# Word-problem conclusions with a subject and a verb, money, units and percentages (written for these tests).
WORD_PROBLEMS = [
    pytest.param(
        "Therefore, the bakery will earn $37.50 from muffins over 5 days.", "37.50", id="wp-money-then-phrase"
    ),
    pytest.param("So each cousin gets $15.", "15", id="wp-each-gets-money"),
    pytest.param("So, 23 students stayed after class.", "23", id="wp-number-as-subject"),
    pytest.param("So that comes out to 9 kilometers.", "9", id="wp-comes-out-to"),
    pytest.param("Therefore, the farmer had 340 apples before the storm hit.", "340", id="wp-long-tail"),
    pytest.param("So, the trip would take 4 hours to cover 240 miles at 60 mph.", "4", id="wp-numbers-in-phrases"),
    pytest.param("So Maria needs 7 cups of flour.", "7", id="wp-needs-nouns-of"),
    pytest.param("So, he saves 12 dollars per week.", "12", id="wp-per-unit"),
    pytest.param(
        "Dividing the 90 marbles among 6 jars leaves 15 marbles in each jar, leaving 15.", "15", id="wp-leaving"
    ),
    pytest.param("Taking away the 8 broken ones, Leo is left with 27 cards.", "27", id="wp-left-with"),
    pytest.param("She walked 3 miles on Monday and 5 on Tuesday, totaling 8 miles.", "8", id="wp-totaling"),
    pytest.param("Then 36 plus 14 gives a total of 50 stamps.", "50", id="wp-total-of"),
    pytest.param("So the tank holds a volume of 120 liters.", "120", id="wp-volume-of"),
    pytest.param("So, Nina has 6 more stickers than Omar.", "6", id="wp-more-than-name"),
    pytest.param("So the discount is 20%.", "20", id="wp-percent"),
    pytest.param("So, the car goes 88 km/h.", "88", id="wp-unit-with-slash"),
    pytest.param("Counting the rows, 4 DVDs + 5 DVDs + 2 DVDs = 11 DVDs.", "11", id="wp-capital-units"),
    pytest.param("The last layer holds 16 x 4 = 64 bricks.", "64", id="wp-x-as-times"),
    pytest.param("Adding the jars: 12 (plum) + 9 (fig) + 7 (pear) = 28.", "28", id="wp-annotated-sum"),
    pytest.param("Time needed for 30 laps = 45 minutes.", "45", id="wp-named-quantity-for"),
    pytest.param("Solving for y gives y = 14.", "14", id="wp-solving-for-gives"),
    pytest.param("Divide both sides by 3: k = 11.", "11", id="wp-colon-resets-equation"),
    pytest.param("So the chance is 3/12, which reduces to 1/4, or 25%.", "25", id="wp-last-form"),
    pytest.param("So, 72 is the answer.", "72", id="wp-value-is-the-answer"),
    pytest.param(
        "After the refill, the jug is brought to 30 ounces, bringing the total to 30.", "30", id="wp-bringing-to"
    ),
]
# What a word-problem reader must not read (written for these tests).
WORD_PROBLEM_NON_FORMS = [
    pytest.param("So, I need to find how much 4 tickets cost.", None, id="wpn-plan"),
    pytest.param("So she has 5 apples and 3 pears.", None, id="wpn-two-amounts"),
    pytest.param("So maybe he paid $40.", None, id="wpn-hedge"),
    pytest.param("So, if each box holds 12, there are more boxes.", None, id="wpn-condition"),
    pytest.param("So, she read more than 30 pages.", None, id="wpn-bound"),
    pytest.param("So, it is about 45 minutes.", None, id="wpn-estimate"),
    pytest.param("So, 15 is too many.", None, id="wpn-judged-value"),
    pytest.param("So, Statement 2 is false.", None, id="wpn-label"),
    pytest.param("Kim bought 18 pencils at the store.", None, id="wpn-restated-given"),
    pytest.param("So, 12 divided by 4 is what we need next.", None, id="wpn-calculation-plan"),
    pytest.param("So, how many pies did she bake on 2 days?", None, id="wpn-question"),
    pytest.param("So, the price was not $20.", None, id="wpn-negation"),
    pytest.param("So the value lies between 3 and 9.", None, id="wpn-range"),
    pytest.param("So my earlier count of 42 boxes was wrong.", None, id="wpn-refuted"),
    pytest.param("Let me redo it with k = 4 instead of n = 6.", None, id="wpn-instead-of"),
]
# Multiple-choice conclusions; `OPTIONS` is the question's list for the cases read by their content.
OPTIONS_QUESTION = "Which is the stopping distance?\nA: 12 m\nB: 18 m\nC: 24 m\nD: Ethics of care\n"
CHOICES = [
    pytest.param("So the only option that fits is B.", "B", id="mc-option-that-fits"),
    pytest.param("Therefore, the answer should be C. 4.2 eV", "C", id="mc-letter-then-text"),
    pytest.param("So the correct choice is (D) 12 J.", "D", id="mc-parenthesised-letter-and-text"),
    pytest.param("So, the answer would be G: 62 workers. Let me verify again.", "G", id="mc-letter-colon-text"),
    pytest.param("So the total is $1,200, which is option F.", "F", id="mc-which-is-option"),
    pytest.param("That rounds to 0.83. So option A.", "A", id="mc-so-option"),
    pytest.param("H", "H", id="mc-lone-letter"),
    pytest.param("**E**", "E", id="mc-lone-bold-letter"),
]
CHOICE_NON_FORMS = [
    pytest.param("Maybe the answer is C.", None, id="mcn-hedge-before"),
    pytest.param("Therefore, option J might be the correct answer.", None, id="mcn-hedge-after"),
    pytest.param("So option A or B.", None, id="mcn-two-letters"),
    pytest.param("Option C is 4.2 eV, which is too large.", None, id="mcn-option-described"),
    pytest.param("D: $175,000", None, id="mcn-option-listed"),
    pytest.param("So option C is possible, but let me check the others.", None, id="mcn-possible"),
    pytest.param("**A. Setting up the problem**", None, id="mcn-bold-heading-with-letter"),
    pytest.param("The answer choices are A: 10, B: 12, C: 14.", None, id="mcn-choices-listed"),
]
BY_CONTENT = [
    pytest.param("So the stopping distance is 18 m.", "B", id="content-number-with-unit"),
    pytest.param("So the answer is Ethics of care.", "D", id="content-text-named"),
    pytest.param("So the distance is 30 m.", "30", id="content-no-option-keeps-value"),
    pytest.param("So the answer is C.", "C", id="content-letter-stays"),
]
# A result followed by four or more remarks that doubt it, echo it or re-check it (written for these tests).
LONG_REMARKS = [
    pytest.param(
        "So she was 104 years old. Wait, 104? That seems very old. Is that right? Let me check.",
        "104",
        id="long-echo-then-three",
    ),
    pytest.param(
        "So the total comes to 58. Hmm. That seems low. Did I miss a box? Maybe I made an error. Let me re-check.",
        "58",
        id="long-five-remarks",
    ),
    pytest.param("So, 35 cars had left. So, how many cars were still parked?", "35", id="long-digit-free-question"),
    pytest.param("So 80 + 4 is 84. Yep, that adds up.", "84", id="long-confirmation"),
    pytest.param("So the total is 742. So that's the answer.", "742", id="long-thats-the-answer"),
    pytest.param("So the total is 117. Wait, 109?", None, id="long-echo-of-another-value"),
]
