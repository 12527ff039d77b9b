"""Claims judged on the errata page."""
from fbsgd.book.verdicts import Claim

CLAIMS = [
    Claim("errata.complete", "errata", "the book's errata", "book",
          "The errata are drawn from the verdicts of every chapter of this build (none is missing)"),
]
