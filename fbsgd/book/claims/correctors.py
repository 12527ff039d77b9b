"""Claims judged in chapters/correctors.ipynb: the book's measurements of the two correctors
Section 8 of the paper leaves open (none of these is a claim the paper makes)."""
from fbsgd.book.verdicts import Claim

_C = "correctors"
_S8 = "Section 8 (future work)"

CLAIMS = [
    Claim(id=f"{_C}.ef_forward", chapter=_C, section="Section 8", decided_by="fig-correctors-gamma", ref=f"{_S8}; Figure 4 set-up", source="book",
          text="Error feedback on the compressed forward message restores the error-free small-step behaviour wherever the plain compressor leaves a floor"),
    Claim(id=f"{_C}.ef_backward", chapter=_C, section="Section 8", decided_by="fig-correctors-gamma", ref=f"{_S8}; Figure 4 set-up", source="book",
          text="Error feedback on the compressed backward message restores the error-free small-step behaviour wherever the plain compressor leaves a floor"),
    Claim(id=f"{_C}.delta_forward", chapter=_C, section="Section 8", decided_by="fig-correctors-gamma", ref=f"{_S8}; Figure 4 set-up", source="book",
          text="Delta-based compression of the forward message (receiver keeps a copy) restores the error-free small-step behaviour wherever the plain compressor leaves a floor"),
    Claim(id=f"{_C}.delta_backward", chapter=_C, section="Section 8", decided_by="fig-correctors-gamma", ref=f"{_S8}; Figure 4 set-up", source="book",
          text="Delta-based compression of the backward message restores the error-free small-step behaviour wherever the plain compressor leaves a floor"),
    Claim(id=f"{_C}.stochastic_rounding", chapter=_C, section="Section 8", decided_by="fig-correctors-gamma", ref=f"{_S8}; Figure 4 set-up", source="book",
          text="Stochastic instead of nearest rounding to float8 removes the rounding floor"),
    Claim(id=f"{_C}.debias_second_order", chapter=_C, section="Section 8", decided_by="fig-correctors-debias", ref=f"{_S8}; Section 7.2.1, Figure 4", source="book",
          text="The second-order de-biasing of the backward message removes the floor of zero-mean uniform forward noise"),
    Claim(id=f"{_C}.debias_exact", chapter=_C, section="Section 8", decided_by="fig-correctors-debias", ref=f"{_S8}; Section 7.2.1, Figure 4", source="book",
          text="The exact de-biasing for the uniform law removes the floor of zero-mean uniform forward noise"),
    Claim(id=f"{_C}.uncorrected_floor_predicted", chapter=_C, section="Section 7", decided_by="fig-correctors-debias", ref="Section 7.2.1, Figure 4", source="book",
          text="Without correction the floor of uniform forward noise is the predicted γ → 0 limit"),
    Claim(id=f"{_C}.compression_predicted", chapter=_C, section="Section 7", decided_by="fig-correctors-gamma", ref="Section 7.2.1, Figure 4 set-up", source="book",
          text="The γ → 0 limit computed from each compressor's and corrector's conditional law given its input (for error feedback and delta compression: their settled law at a frozen input) predicts the floor, or the divergence, that each leaves"),
    Claim(id=f"{_C}.a3_error_feedback", chapter=_C, section="Appendix A", decided_by="appendix-a-3-revisited-the-top-1-example-with-correctors", ref=f"{_S8}; Appendix A.3, Figure 9", source="book",
          text="With error feedback the Top-1 example converges wherever the uncompressed iteration is stable"),
    Claim(id=f"{_C}.a3_delta", chapter=_C, section="Appendix A", decided_by="appendix-a-3-revisited-the-top-1-example-with-correctors", ref=f"{_S8}; Appendix A.3, Figure 9", source="book",
          text="With delta compression the Top-1 example converges wherever the uncompressed iteration is stable"),
]
