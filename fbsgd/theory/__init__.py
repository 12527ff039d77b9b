"""The paper's formulas, evaluated: the error bounds of Section 4 (Lemmas 1–2, eqs. (21), (33)),
the rate bounds of Section 5 ((34), (38)), the γ → 0 limits of the perturbed fixed points,
the closed forms of the Section 7 logistic chain, and Table 1's budgets.  Theory imports
the library only."""
