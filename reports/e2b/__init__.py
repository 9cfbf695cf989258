"""ICH E2B(R3) ICSR files: a writer (serious cases → one MCCI_IN200100UV01 batch per regulator), regional
profiles, business rules and XSD validation (the ICH schema is vendored in ``schema/``, FDA's rule tables in
``fda_refs/``). Every file is validated against the schema and its profile's rules before it is written as final.
Reading E2B files (and the regulator's acknowledgments) is the warehouse's job (``warehouse/inputs/regulator``).
"""
