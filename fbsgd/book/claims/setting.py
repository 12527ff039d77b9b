"""Claims judged in chapters/setting.ipynb (Sections 1.2–1.4)."""
from fbsgd.book.verdicts import Claim

CLAIMS = [
    Claim(id="setting.closed_form", chapter="setting", ref="Section 1.4, eq. (6b)", source="book",
          text="A backward perturbation ε_N at the deepest operator changes the first weight gradient by "
               "‖ũ₁ − u₁‖ = ‖W₂ᵀ⋯W_(N−1)ᵀ ε_N‖·‖x‖, the norm of the product (6b)",
          section="Section 1", decided_by="fig-setting-depth"),
    Claim(id="setting.geometric_amplification", chapter="setting", ref="Section 1.4, eq. (6b)", source="paper",
          text="A backward perturbation at the deepest operator is multiplied geometrically with depth, by the "
               "layers' operator norm s per layer when the layers stretch every vector by s",
          section="Section 1", decided_by="fig-setting-depth"),
    Claim(id="setting.gaussian_factor", chapter="setting", ref="Section 1.4, eq. (6b)", source="book",
          text="For Gaussian layers of operator norm s, which are not aligned with the error, the error changes "
               "by a factor per layer smaller than s",
          section="Section 1", decided_by="fig-setting-depth"),
]
