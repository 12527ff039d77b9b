"""Each chapter's study code, one folder per chapter: ``study.py`` runs and measures,
``verdicts.py`` decides, ``figures.py`` draws; studies shared by several chapters
(``rates`` for Sections 5–6, ``section7`` for the Section 7 experiments) have folders
of their own.  Studies import the library, the theory, the engine and the book."""
