"""Claims judged in chapters/setting.ipynb (Sections 1.2–1.4)."""
from fbsgd.verdicts import Claim

CLAIMS = [
    Claim(id="setting.closed_form", chapter="setting", ref="Section 1.4, eq. (6b)", source="book",
          text="The perturbed passes carry a backward perturbation ε₍N₎ to the first weight gradient as the product "
               "W₂ᵀ⋯W₍N−1₎ᵀ ε₍N₎ xᵀ"),
    Claim(id="setting.geometric_amplification", chapter="setting", ref="Section 1.4, eq. (6b)", source="paper",
          text="A backward perturbation at the deepest operator is multiplied geometrically with depth, by the "
               "layers' operator norm s per layer when the layers stretch every vector by s"),
    Claim(id="setting.gaussian_factor", chapter="setting", ref="Section 1.4, eq. (6b)", source="book",
          text="For Gaussian layers of operator norm s, which are not aligned with the error, the error changes "
               "by a factor per layer smaller than s"),
]
