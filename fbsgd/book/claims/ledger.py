"""Claims judged on the claims-ledger page."""
from fbsgd.book.verdicts import Claim

CLAIMS = [
    Claim("ledger.complete", "ledger", "the book's claims ledger", "book",
          "Every claim that a chapter promises to judge was judged in this build, with one of the four outcomes"),
]
