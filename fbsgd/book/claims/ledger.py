"""Claims judged on the claims-ledger page."""
from fbsgd.book.verdicts import Claim

CLAIMS = [
    Claim("ledger.complete", "ledger", "the book's claims ledger", "book",
          "Every claim that a chapter promises to judge was judged in this build, with one of the four outcomes"),
    Claim("ledger.linked", "ledger", "the book's claims ledger", "book",
          "Every row of the ledger links to the figure or table that decides it"),
    Claim("ledger.consistent", "ledger", "the book's claims ledger", "book",
          "No two verdicts of the book find the same fact about a mechanism differently (for example one chapter "
          "finding a floor that another finds absent)", decided_by="ledger-facts"),
]
