"""Claims judged in chapters/formats.ipynb: scaled low-precision formats as trained (per-tensor FP8, OCP
MX, NVFP4).  The paper models δ and ε abstractly; every claim here is the book's own probe."""
from fbsgd.book.verdicts import Claim

_C = "formats"

# name -> (part of the paper, the figure of the chapter's page that decides it, the claim in words)
_CLAIMS = {
    "classes_scale_rule": ("Section 6", "fig-formats-classes",
                           "The scale rule decides bias: with the scale rounded up, stochastic rounding of a scaled format "
                           "is zero-mean given its input; with the OCP MX scale (or NVFP4's nearest block scale) a "
                           "block's largest values are clipped and it is biased, stochastic rounding or not"),
    "fig4_prediction": ("Section 7", "fig-formats-4",
                        "On the Section 7 chain each scaled format's stable gradient norm at small step sizes is its "
                        "γ → 0 prediction from its conditional law"),
    "fig4_ceil_sr_no_floor": ("Section 7", "fig-formats-4",
                              "On the Section 7 chain a scaled format with the scale rounded up and stochastic "
                              "rounding on the backward message leaves no floor"),
    "digits_site": ("Section 4", "fig-formats-digits",
                    "On a real network and real data (digits MLP) the forward site dominates: a recipe's format at the "
                    "activations moves the stable gradient norm more than at the gradients"),
    "digits_sr_no_floor": ("Section 7", "fig-formats-digits",
                           "On the digits MLP, FP4 recipes with stochastic rounding on the gradients leave the stable "
                           "gradient norm at the full-precision run's (no floor from the backward site)"),
    "digits_depth": ("Section 4", "fig-formats-digits",
                     "On the digits MLP, depth amplifies a recipe's effect on the stable gradient norm"),
}

CLAIMS = [Claim(id=f"{_C}.{name}", chapter=_C, section=section, decided_by=fig, ref="beyond the paper; scaled formats",
                source="book", text=text)
          for name, (section, fig, text) in _CLAIMS.items()]
