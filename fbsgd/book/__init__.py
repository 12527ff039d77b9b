"""The book's machinery: checked notebook parameters (``params``), claims and verdicts
(``claims/``, ``verdicts``, ``ledger``), tables and downloads (``report``, ``downloads``),
the build status (``status``) and the figure style every chapter shares (``figures``).
The book imports the library, the theory and the engine."""
