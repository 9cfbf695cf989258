"""The generator's GS1 check digit is its own implementation: an independent oracle for the parser's."""

from hypothesis import given
from hypothesis import strategies as st

from sample_data.codes import gs1_check_digit as generator_check_digit
from sample_data.codes import ndc_gtin14
from warehouse.linkage.pack_codes import gs1_check_digit as parser_check_digit


@given(st.text(alphabet="0123456789", min_size=1, max_size=17))
def test_generator_and_parser_agree_on_every_body(body):
    assert generator_check_digit(body) == parser_check_digit(body)


def test_published_example():
    # DSCSA example: NDC 59572-215-93 -> GTIN-14 00359572215931
    assert ndc_gtin14("59572-215-93") == "00359572215931"
    assert generator_check_digit("0035957221593") == "1"
