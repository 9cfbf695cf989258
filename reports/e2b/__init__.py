"""ICH E2B(R3) ICSR files: a writer (serious cases → one MCCI_IN200100UV01 batch), a reader, and XSD validation.

The element order and code systems follow FDA's example instances and the ICH schema
(``../shared/data/e2b_r3``); every file is validated against the ICH XSD before it is written as final.
"""
